"""Architectures, workloads, bindings and the spatial-array cost model."""

from ._binding import BINDINGS, Binding, bind_arrays, binding_yaml, load_binding
from ._designs import DESIGNS, design, end_to_end, evaluate, evaluate_design
from ._flat import flat_dataflow
from ._model import EinsumCost, Report
from ._spec import (
    ArchError,
    Architecture,
    AreaTable,
    EnergyTable,
    GlobalBuffer,
    PEArray,
    architectures,
    load_architecture,
    parse_quantity,
)
from ._workload import BoundSizes, Workload, bind_sizes, load_workload, parse_seq, workloads

__all__ = [
    "Architecture", "ArchError", "AreaTable", "EnergyTable", "GlobalBuffer", "PEArray", "architectures",
    "load_architecture", "parse_quantity",
    "BoundSizes", "Workload", "bind_sizes", "load_workload", "parse_seq", "workloads",
    "BINDINGS", "Binding", "bind_arrays", "binding_yaml", "load_binding",
    "EinsumCost", "Report", "flat_dataflow",
    "design", "DESIGNS", "evaluate_design", "evaluate", "end_to_end",
]
from ._sweep import SweepSpec, load_sweep, pareto_front, pareto_sweep, run_sweep, scaled_fusemax, write_table

__all__ += ["SweepSpec", "load_sweep", "pareto_front", "pareto_sweep", "run_sweep", "scaled_fusemax", "write_table"]
from ._figures import ATTENTION_DESIGNS, MODELS, SEQS, evaluation_table, figures, headline_ratios

__all__ += ["ATTENTION_DESIGNS", "MODELS", "SEQS", "evaluation_table", "figures", "headline_ratios"]
from ._search import OBJECTIVES, SearchResult, search

__all__ += ["OBJECTIVES", "SearchResult", "search"]
