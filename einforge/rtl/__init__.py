"""Lowering cascades to Amaranth RTL: PE templates, arrays, controllers, Verilog and synthesis."""

from ._errors import RTLError
from ._export import export_verilog, synthesize, write_design
from ._lower import Design, gemm_roles, lower, model_latency
from ._timing import MemoryModel, StreamTiming, stream_timing

__all__ = ["RTLError", "Design", "gemm_roles", "lower", "export_verilog", "synthesize", "write_design",
           "MemoryModel", "StreamTiming", "stream_timing", "model_latency"]
