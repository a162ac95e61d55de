"""Lowering tensor products to the output-stationary GEMM array."""

import math

import pytest

from einforge.einsum import FixedPoint, parse_cascade
from einforge.rtl import RTLError, gemm_roles, lower, synthesize, write_design
from einforge.rtl._export import export_verilog

GEMM = "ranks K={k} M={m} N={n}\ninput A[k,m] B[k,n]\nZ[m,n] = A[k,m] * B[k,n]\n"


def scalesim_os(m, n, k, r, c):
    """SCALE-Sim's output-stationary compute cycles (research/peers.md 1.10), without its -1
    (SCALE-Sim reports the index of the last cycle)."""
    return math.ceil(m / r) * math.ceil(n / c) * (k + r + c - 2)


@pytest.mark.parametrize("k,m,n,r,c", [(8, 6, 5, 4, 4), (16, 16, 16, 4, 4), (3, 9, 2, 2, 4), (33, 17, 40, 8, 8),
                                       (64, 128, 128, 16, 16), (1, 1, 1, 2, 2), (128, 128, 128, 32, 32)])
def test_rtl_and_model_cycles_follow_scalesim(k, m, n, r, c):
    d = lower(parse_cascade(GEMM.format(k=k, m=m, n=n)), array=(r, c))
    assert d.manifest["rtl_cycles"] == scalesim_os(m, n, k, r, c)
    assert d.manifest["model_cycles"] == scalesim_os(m, n, k, r, c)


def test_roles_of_qk_and_batched_gemm():
    qk = parse_cascade("ranks E=8 M=16 P=4\ninput Q[e,p] K[e,m]\nQK[m,p] = Q[e,p] * K[e,m]\n")
    roles = gemm_roles(qk)
    assert (roles.a, roles.b, roles.k, roles.m, roles.n) == ("K", "Q", "e", "m", "p")
    bg = parse_cascade("ranks L=3 K=4 M=5 N=6\ninput A[l,k,m] B[l,k,n]\nZ[l,m,n] = A[l,k,m] * B[l,k,n]\n")
    d = lower(bg, array=(4, 4))
    assert d.manifest["mapping"]["batch"] == ["L"] and d.manifest["mapping"]["tiles"] == 3 * 2 * 2


def test_manifest_and_files(tmp_path):
    d = lower(parse_cascade(GEMM.format(k=8, m=6, n=5)), array=(4, 4), numbers=FixedPoint(6, 10))
    m = d.manifest
    assert m["numbers"] == {"format": "Q6.10", "width": 16, "frac_bits": 10, "accumulator_bits": 36,
                            "rounding": "half up", "saturation": True}
    assert m["ports"]["out_data"] == {"direction": "out", "width": 64, "signed": False}
    assert m["ports"]["in_data"]["signed"] and m["input_words"] == 8 * (6 + 5)
    files = write_design(d, tmp_path)
    v = files["verilog"].read_text()
    assert "module cascade(" in v and "input clk" in v.replace("  ", " ")
    assert not list(tmp_path.glob("*.tmp"))


@pytest.mark.parametrize("text,match", [
    ("ranks K M N\ninput A[k,m] B[k,n]\nZ[m,n] = A[k,m] / B[k,n]\n", "Einsum Z uses operator '/'.*needs div"),
    ("ranks K M N\ninput A[k,m] B[k,n]\nZ[m,n] = exp(A[k,m] * B[k,n])\n", "Einsum Z uses operator '\\+'.*only a MAC"),
    ("ranks K M N\ninput A[k,m] B[k,n]\nZ[m,n] = max(A[k,m], B[k,n])\n", "Einsum Z uses operator 'max'"),
    ("ranks K M N\ninput A[k,m] B[k,n]\nZ[m,n: m <= n] = A[k,m] * B[k,n]\n", "Einsum Z has a filter"),
    ("ranks K J M N\ninput A[k,j,m] B[k,j,n]\nZ[m,n] = A[k,j,m] * B[k,j,n]\n", "reduces 2 ranks"),
    ("ranks K M N\ninput A[k,m] B[k,n]\nZ[m,n] = A[k,m] * B[k,n]\nY[m] = Z[m,n]\n", "has 2 \\(Z, Y\\)"),
    ("ranks K M N M0=2\ninput A[k,m] B[k,n]\nZ[m,n] = A[k,m] * B[k,n+1]\n", "plain rank variables"),
])
def test_unsupported_cascades_are_rejected_by_name(text, match):
    with pytest.raises(RTLError, match=match):
        lower(parse_cascade(text), array=(2, 2), sizes={"K": 2, "M": 2, "N": 2})


def test_bad_array_and_sizes():
    with pytest.raises(RTLError, match="rows and columns must be positive"):
        lower(parse_cascade(GEMM.format(k=2, m=2, n=2)), array=(0, 4))
    with pytest.raises(RTLError, match="unknown rank X"):
        lower(parse_cascade(GEMM.format(k=2, m=2, n=2)), sizes={"X": 3})


def test_coarse_synthesis_counts_one_macc_per_pe():
    d = lower(parse_cascade(GEMM.format(k=8, m=4, n=4)), array=(4, 4))
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        files = write_design(d, tmp)
        stats = synthesize(files["verilog"], d.name, mode="coarse")
    assert stats["cells_by_type"].get("$macc_v2", stats["cells_by_type"].get("$macc", 0)) == 16
    with pytest.raises(RTLError, match="mode must be full or coarse"):
        synthesize(files["verilog"], d.name, mode="fast")


def test_verilog_has_no_declaration_initialized_trigger():
    v = export_verilog(lower(parse_cascade(GEMM.format(k=2, m=2, n=2)), array=(2, 2)))
    assert "initial \\$auto$verilog_backend" in v


def test_full_synthesis_reports_depth_and_area(tmp_path):
    # PPA of the smallest GEMM array: gate-level depth from ltp, gate equivalents from the 45 nm
    # cell table, next to the cost model's area of the same array (its RTL adds operand buffers,
    # skew registers and the controller, so it is larger)
    from click.testing import CliRunner

    from einforge.cli import main

    f = tmp_path / "g.cascade"
    f.write_text(GEMM.format(k=4, m=4, n=4))
    r = CliRunner().invoke(main, ["rtl", "synth", str(f), "--array", "2x2", "--json"], catch_exceptions=False)
    out = __import__("json").loads(r.output)
    assert 20 < out["logic_depth"] < 400
    import yaml

    from einforge.rtl import _export

    table = yaml.safe_load((__import__("pathlib").Path(_export.__file__).parent / "data" / "gates_45nm.yaml").read_text())
    ge = sum(n * table["ge"][k] for k, n in out["cells_by_type"].items())
    assert out["gate_equivalents"] == pytest.approx(ge) and out["area_um2"] == pytest.approx(ge * 0.798)
    assert 1 < out["synthesized_over_model"] < 10
    assert "NanGate" in out["area_source"]
