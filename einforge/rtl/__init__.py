"""Lowering cascades to Amaranth RTL: PE templates, arrays, controllers, Verilog and synthesis."""

from ._errors import RTLError
from ._lower import Design, gemm_roles, lower
from ._export import export_verilog, synthesize, write_design

__all__ = ["RTLError", "Design", "gemm_roles", "lower", "export_verilog", "synthesize", "write_design"]
