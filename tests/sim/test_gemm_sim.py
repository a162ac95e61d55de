"""cocotb simulation of the GEMM array against the fixed-point golden model."""

import json
import math

import numpy as np
import pytest
from click.testing import CliRunner

from einforge.cli import main
from einforge.einsum import FixedPoint, parse_cascade
from einforge.rtl import lower
from einforge.sim import SimError, golden, simulate, simulators, stimuli

GEMM = "ranks K={k} M={m} N={n}\ninput A[k,m] B[k,n]\nZ[m,n] = A[k,m] * B[k,n]\n"
needs_icarus = pytest.mark.skipif(not simulators()["icarus"], reason="Icarus Verilog is not installed")


@needs_icarus
@pytest.mark.parametrize("k,m,n,r,c", [(8, 6, 5, 4, 4), (3, 9, 2, 2, 4), (12, 8, 8, 8, 8), (5, 3, 7, 4, 2)])
def test_gemm_bit_exact_and_cycles(k, m, n, r, c):
    d = lower(parse_cascade(GEMM.format(k=k, m=m, n=n)), array=(r, c), numbers=FixedPoint(6, 10))
    res = simulate(d, seed=k)
    assert res.passed and res.bit_exact
    assert res.cycles == math.ceil(m / r) * math.ceil(n / c) * (k + r + c - 2)   # SCALE-Sim's OS formula
    assert abs(res.cycles - res.model_cycles) <= 0.05 * res.model_cycles
    # exact products, one rounding: within half an LSB of float64 on the same (quantized) operands
    assert res.max_abs_error_vs_float <= 0.5 / (1 << 10) + 1e-12
    # ... the verdict's derived bound says so too: exact operands, so the rounding is all there is
    assert res.max_abs_error_vs_float <= res.error_bound_vs_float <= 0.5 / (1 << 10)


@needs_icarus
@pytest.mark.parametrize("text,used", [
    ("ranks K=9 M=7\ninput A[k,m] X[k]\nY[m] = A[k,m] * X[k]\n", ("M", None)),          # matrix-vector
    ("ranks K=9 N=6\ninput X[k] B[k,n]\nY[n] = X[k] * B[k,n]\n", ("N", None)),          # vector-matrix
    ("ranks K=5 C=6 H=3\ninput Q[k,h] W[k,h,c]\nY[c,h] = Q[k,h] * W[k,h,c]\n", ("C", None)),  # per head
])
def test_matrix_vector_products_use_one_row_or_column(text, used):
    """An operand with no output rank of its own (a vector, MLA decode's query per head) takes
    one column: each tile costs K + R + C - 2 cycles as a GEMM's, the cost model says so too."""
    d = lower(parse_cascade(text), array=(4, 4), numbers=FixedPoint(6, 10))
    m = d.manifest["mapping"]
    assert (m["rows"], m["cols"]) == used
    rows = d.sizes[used[0]]
    batch = math.prod(d.sizes[b] for b in m["batch"])
    res = simulate(d, seed=2)
    assert res.passed and res.bit_exact and res.present_lanes == rows * batch
    assert res.cycles == res.model_cycles == batch * math.ceil(rows / 4) * (d.sizes[m["reduced"]] + 4 + 4 - 2)


@needs_icarus
@pytest.mark.parametrize("kind", ["zeros", "extremes", "alternating", "ones"])
def test_gemm_corners(kind):
    d = lower(parse_cascade(GEMM.format(k=6, m=5, n=6)), array=(4, 4), numbers=FixedPoint(6, 10))
    res = simulate(d, kind=kind, seed=1)
    assert res.bit_exact, res.details["mismatches"]
    if kind == "extremes":   # products of the largest values saturate: the golden model saturates too,
        q = d.numbers        # and the verdict says the format cannot hold these values
        out = golden(d, stimuli(d, 1, "extremes"))["Z"]
        assert np.any(out == q.hi) or np.any(out == q.lo)
        assert not res.accurate and not res.passed
    else:
        assert res.passed


@needs_icarus
def test_backpressure_and_input_gaps_keep_results_exact():
    d = lower(parse_cascade(GEMM.format(k=4, m=9, n=9)), array=(4, 4))
    res = simulate(d, seed=5, input_gaps=0.4, output_gaps=0.7)
    assert res.passed
    assert res.cycles >= d.manifest["rtl_cycles"]        # stalls only add cycles


@needs_icarus
def test_qk_and_batched_gemm():
    qk = parse_cascade("ranks E=8 M=12 P=6\ninput Q[e,p] K[e,m]\nQK[m,p] = Q[e,p] * K[e,m]\n")
    assert simulate(lower(qk, array=(4, 4)), seed=2).passed
    bg = parse_cascade("ranks L=2 K=5 M=7 N=9\ninput A[l,m,k] B[k,l,n]\nZ[n,l,m] = A[l,m,k] * B[k,l,n]\n")
    res = simulate(lower(bg, array=(4, 4)), seed=3)
    assert res.passed and res.cycles == 2 * 2 * 3 * (5 + 4 + 4 - 2)


@pytest.mark.skipif(not simulators()["verilator"], reason="Verilator is not installed")
def test_gemm_on_verilator():
    d = lower(parse_cascade(GEMM.format(k=8, m=6, n=5)), array=(4, 4))
    res = simulate(d, sim="verilator", seed=4)
    assert res.passed and res.cycles == 2 * 2 * (8 + 4 + 4 - 2)


def test_unknown_simulator_is_a_clear_error():
    d = lower(parse_cascade(GEMM.format(k=2, m=2, n=2)), array=(2, 2))
    with pytest.raises(SimError, match="unknown simulator 'vcs'"):
        simulate(d, sim="vcs")


@needs_icarus
def test_rtl_test_command_contract(tmp_path):
    f = tmp_path / "g.cascade"
    f.write_text(GEMM.format(k=4, m=4, n=4))
    r = CliRunner().invoke(main, ["rtl", "test", str(f), "--array", "2x2", "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert set(out) == {"design", "sim", "passed", "bit_exact", "accurate", "saturated", "compared_lanes",
                        "present_lanes", "done", "failed_checks", "cycles", "model_cycles",
                        "max_abs_error_vs_float", "error_bound_vs_float", "seconds", "jobs", "files", "defaults_used", "memory",
                        "first_input_to_last_output", "model_first_input_to_last_output", "cost_model_latency"}
    # the simulator and the memory were not chosen: the faster simulator installed ran, one word a
    # cycle, and the output says so; the GEMM array has no streaming timing model
    assert out["defaults_used"] == {"sim": out["sim"], "bandwidth": "1 word a cycle", "fifo": "unbounded"}
    assert out["sim"] == ("verilator" if simulators()["verilator"] else "icarus")
    assert out["model_first_input_to_last_output"] is None and out["cost_model_latency"] is None
    # the default suite: six stimuli, every lane of Z in each
    assert len(out["jobs"]) == 6 and out["compared_lanes"] == 6 * 16 and out["present_lanes"] == 6 * 16
    assert out["done"] and out["files"] is None
    assert out["passed"] and out["cycles"] == 4 * (4 + 2 + 2 - 2)
    r = CliRunner().invoke(main, ["rtl", "generate", str(f), "--array", "2x2", "-o", str(tmp_path / "out"), "--json"])
    assert r.exit_code == 0 and json.loads(r.output)["rtl_cycles"] == 24
    r = CliRunner().invoke(main, ["rtl", "test", "attention-3pass", "--array", "2x2"])
    assert r.exit_code == 2 and "one tensor-product Einsum" in r.output
