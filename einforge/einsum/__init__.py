"""The Extended Einsum language: cascades, their IR, the reference executor and the attention library."""

from ._cascade import Cascade, IterativeRank, TensorInfo, parse_cascade
from ._errors import CascadeError, Source, Span
from ._ir import (
    Access,
    BinOp,
    Call,
    Compare,
    Const,
    Einsum,
    Num,
    RankDecl,
    SizeRef,
    Sym,
    TensorDecl,
    Var,
)
from ._ops import DEFAULT_OPERATORS, Operator, OperatorTable

__all__ = [
    "CascadeError", "Source", "Span",
    "Access", "BinOp", "Call", "Compare", "Const", "Einsum", "Num", "RankDecl", "SizeRef", "Sym",
    "TensorDecl", "Var",
    "DEFAULT_OPERATORS", "Operator", "OperatorTable",
    "Cascade", "IterativeRank", "TensorInfo", "parse_cascade",
]
from ._execute import evaluate, resolve_sizes, tensor_shape
from ._numbers import FLOAT64, Float64, NumberSystem

__all__ += ["FLOAT64", "Float64", "NumberSystem", "evaluate", "resolve_sizes", "tensor_shape"]
from ._library import LIBRARY_DIR, LibraryEntry, library, load_cascade, random_inputs
from ._teaal import parse_teaal

__all__ += ["LIBRARY_DIR", "LibraryEntry", "library", "load_cascade", "random_inputs", "parse_teaal"]
from ._passes import Analysis, PassReport, analyze, passes, rank_symbols

__all__ += ["Analysis", "PassReport", "analyze", "passes", "rank_symbols"]
from ._rewrite import check_equivalent, compare_outputs, defer_division, running_max

__all__ += ["check_equivalent", "compare_outputs", "defer_division", "running_max"]
from ._plot import plot_cascade

__all__ += ["plot_cascade"]
from ._fixed import FixedPoint

__all__ += ["FixedPoint"]
from ._presence import presence_filters

__all__ += ["presence_filters"]
from ._roles import Roles, roles

__all__ += ["Roles", "roles"]
from ._rename import rename

__all__ += ["rename"]
