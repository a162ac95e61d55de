"""The simulation build cache is keyed on the toolchain as well as the Verilog: a build made by another
environment (another venv, another cocotb) references that environment's files and must not be reused."""

import sys

from einforge.sim import _runner


def test_toolchain_fingerprint_names_the_environment(monkeypatch):
    a = _runner._toolchain("icarus")
    assert a != _runner._toolchain("verilator")
    monkeypatch.setattr(sys, "executable", "/elsewhere/.venv/bin/python")
    assert _runner._toolchain("icarus") != a
