"""einforge: design attention accelerators from their algorithms.

Areas: :mod:`einforge.einsum` (the cascade language), :mod:`einforge.arch` (cost model),
:mod:`einforge.rtl` (Amaranth lowering) and :mod:`einforge.sim` (cocotb verification).
"""

__version__ = "0.1.0"
