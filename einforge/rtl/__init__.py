"""Lowering cascades to Amaranth RTL: PE templates, arrays, controllers, Verilog and synthesis."""

from ._errors import RTLError
from ._export import export_verilog, synthesize, write_design
from ._lower import Design, gemm_roles, lower

__all__ = ["RTLError", "Design", "gemm_roles", "lower", "export_verilog", "synthesize", "write_design"]
