"""The Extended Einsum language: cascades, their IR, the reference executor and the attention library.

Names load on first use, so that a command pays only for what it touches (numpy for the executor,
sympy for pass analysis, matplotlib for plots).
"""

from .._lazy import lazy_names

_MODULES = {
    "_errors": ["CascadeError", "Source", "Span"],
    "_ir": ["Access", "BinOp", "Call", "Compare", "Const", "Einsum", "Num", "Position", "RankDecl", "SizeRef", "Sym",
            "TensorDecl", "Var", "is_constant", "positions", "product_factors", "fold_target", "Read",
            "read_nodes", "reads_of"],
    "_ops": ["DEFAULT_OPERATORS", "DIVIDER_STEPS", "Operator", "OperatorTable", "unit_recipe"],
    "_cascade": ["Cascade", "IterativeRank", "TensorInfo", "parse_cascade"],
    "_numbers": ["FLOAT64", "Float64", "NumberSystem"],
    "_execute": ["evaluate", "tensor_shape"],
    "_sizes": ["resolve_sizes"],
    "_library": ["LIBRARY_DIR", "LibraryEntry", "library", "load_cascade", "random_inputs"],
    "_teaal": ["parse_teaal"],
    "_passes": ["Analysis", "PassReport", "analyze", "passes", "rank_symbols"],
    "_rewrite": ["check_equivalent", "compare_outputs", "defer_division", "host_layouts", "running_max", "subcascade"],
    "_plot": ["plot_cascade"],
    "_fixed": ["FixedPoint"],
    "_bounds": ["ErrorBounds", "format_error", "within_bounds"],
    "_presence": ["presence_filters"],
    "_roles": ["Roles", "roles"],
    "_rename": ["rename"],
}
__all__, __getattr__, __dir__ = lazy_names(__name__, globals(), _MODULES)
