"""Architectures, workloads, bindings, the spatial-array cost model and the mapper.

Names load on first use (a command that only evaluates does not load the figures' plotting).
"""

from .._lazy import lazy_names

_MODULES = {
    "_spec": ["Architecture", "ArchError", "AreaTable", "EnergyTable", "GlobalBuffer", "PEArray", "architectures",
              "load_architecture", "parse_quantity"],
    "_workload": ["BoundSizes", "Workload", "bind_sizes", "load_workload", "parse_seq", "workloads"],
    "_binding": ["BINDINGS", "Binding", "bind_arrays", "binding_yaml", "load_binding"],
    "_report": ["EinsumCost", "Report"],
    "_flat": ["flat_dataflow"],
    "_designs": ["design", "DESIGNS", "evaluate_design", "evaluate", "price", "end_to_end"],
    "_sweep": ["SweepSpec", "load_sweep", "pareto_front", "pareto_sweep", "run_sweep", "scaled_fusemax", "sweep_columns",
               "sweep_groups", "evaluate_groups", "write_table"],
    "_store": ["ResultStore", "point_key"],
    "_dist": ["run_distributed", "client_for", "as_completed_results", "run_into_store"],
    "_plot": ["load_results", "plot_results"],
    "_parallel": ["Interconnect", "all_reduce", "all_gather", "reduce_scatter", "all_to_all", "ParallelReport",
                  "ulysses", "ring_attention", "tensor_parallel", "megatron_sp", "usp"],
    "_llm": ["DecoderModel", "LayerOp", "LayerReport", "Generation", "DecodeOnChips", "load_model", "models",
             "layer_ops", "evaluate_layer", "generate", "decode_on_chips"],
    "_figures": ["ATTENTION_DESIGNS", "MODELS", "SEQS", "evaluation_table", "figures", "headline_ratios"],
    "_search": ["OBJECTIVES", "SearchResult", "search"],
}
__all__, __getattr__, __dir__ = lazy_names(__name__, globals(), _MODULES)
