"""The engine's units: one Verilog module each, one multiplier per PE and lane, wide enough."""

import re

import numpy as np
import pytest

from einforge.einsum import FixedPoint, library
from einforge.rtl import export_verilog, lower
from einforge.rtl._units import mul_width

LIB = library()


@pytest.fixture(scope="module")
def verilog():
    d = lower(LIB["attention-1pass"].load(), "arch", (2, 3), FixedPoint(8, 8), {"M": 8, "P": 6, "E": 2, "F": 2})
    return d.name, export_verilog(d)


def _modules(text):
    return {m.group(1).lstrip("\\"): m.start() for m in re.finditer(r"^module (\S+?) ?\(", text, re.M)}


def test_pes_lanes_buffers_and_controller_are_modules_of_their_own(verilog):
    name, text = verilog
    got = set(_modules(text))
    want = ({name, f"{name}.controller", f"{name}.loader", f"{name}.output"} | {f"{name}.pe{i}_{j}" for i in range(2) for j in range(3)}
            | {f"{name}.lane{j}" for j in range(3)} | {f"{name}.colbuf{j}" for j in range(3)}
            | {f"{name}.rowbuf{i}" for i in range(2)})
    assert got == want


def _body(text, module):
    start = re.search(rf"^module \\?{re.escape(module)} ?\(", text, re.M)
    return text[start.start():text.index("endmodule", start.end())]


def test_the_top_module_computes_nothing_itself(verilog):
    """Beside the wiring, the top holds only the instruction's register stages down the rows."""
    name, text = verilog
    top = _body(text, name)
    assert not re.search(r" [*/+-] ", top.replace("\\", ""))
    assert "alu_" not in top


@pytest.mark.parametrize("unit", ["pe0_0", "pe1_2", "lane0"])
def test_mac_multiply_and_exp_share_one_multiplier(verilog, unit):
    name, text = verilog
    body = _body(text, f"{name}.{unit}")
    products = re.findall(r"\$signed\([^)]*\) \* \$signed\(", body)
    assert len(products) == 1, products


@pytest.mark.parametrize("int_bits,frac_bits", [(i, f) for i in (1, 2, 4, 8, 12) for f in (0, 1, 3, 6, 8, 10, 12, 14)
                                                if i + f <= 20])
def test_the_horner_state_fits_the_shared_multiplier(int_bits, frac_bits):
    """Every exp step's value, for every word t = x log2(e), stays in [0, 2**(frac + 2)): the
    shared multiplier's ``mul_width`` operands (and the ``frac + 2``-bit fraction) hold it."""
    q = FixedPoint(int_bits, frac_bits)
    t = np.arange(q.lo, q.hi + 1, dtype=np.int64)
    f = t - ((t >> frac_bits) << frac_bits)
    assert f.min() >= 0 and f.max() < 2 ** frac_bits <= 2 ** (frac_bits + 1)
    coeffs = q.exp_constants()["coeffs"]
    p = np.full_like(t, coeffs[0])
    bound = 2 ** (frac_bits + 2)
    for c in coeffs[1:]:
        p = (p * f + (c << frac_bits) + (1 << frac_bits >> 1)) >> frac_bits if frac_bits else p * f + c
        assert p.min() >= 0 and p.max() < bound
    assert bound <= 2 ** (mul_width(q) - 1)


@pytest.mark.parametrize("name,binding", [("attention-1pass", "fusemax"), ("attention-sigmoid-tiled", "arch")])
def test_the_engine_is_at_most_twice_as_deep_as_the_gemm_array(tmp_path, name, binding):
    """Timing closure by construction: every path of the engine (fetch, decode, the ALU with its shared
    multiplier and exp, the divider's steps, PE dividers included) is at most twice as many gate levels
    as the systolic GEMM array's MAC path at the same word width (yosys + abc, two-input gates)."""
    from einforge.einsum import parse_cascade
    from einforge.rtl import synthesize, write_design

    gemm = lower(parse_cascade("ranks M=4 K=3 N=4\ninput A[k,m] B[k,n]\nC[m,n] = A[k,m] * B[k,n]\n"), None, (2, 2),
                 FixedPoint(8, 8), {})
    engine = lower(LIB[name].load(), binding, (2, 2), FixedPoint(8, 8), {"M": 8, "P": 4, "E": 2, "F": 2})
    depth = {}
    for d in (gemm, engine):
        files = write_design(d, tmp_path / d.name)
        depth[d.name] = synthesize(files["verilog"], d.name)["logic_depth"]
    assert depth[engine.name] <= 2 * depth[gemm.name], depth


def test_the_iterative_dividers_table_rows_follow_from_the_dividers():
    """The divstep rows of the 45 nm tables are derived (their sources say how) from the div rows
    and the divider's step count and state; they must move with DIVIDER_STEPS and the RTL's widths."""
    from einforge.arch import load_architecture
    from einforge.einsum import DIVIDER_STEPS

    a = load_architecture("fusemax")
    energy, area = dict(a.energy.compute), dict(a.area.compute)
    assert energy["divstep"] == pytest.approx(energy["div"] / DIVIDER_STEPS, abs=1e-6)
    W, F = 16, 8                                              # the tables' word width
    nb = -(-(W + F) // (DIVIDER_STEPS - 2)) * (DIVIDER_STEPS - 2)
    flops = (W + 1) + nb + nb + W + 4                         # remainder, numerator, quotient, divisor, flags
    assert area["divstep"] == pytest.approx(area["div"] / (DIVIDER_STEPS - 2) + flops * 4.522, abs=0.1)
