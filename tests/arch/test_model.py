"""The cost model's behaviour: operator pricing from the architecture, any cascade, errors."""

import dataclasses
import json
import math

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from einforge.arch import (
    ArchError,
    Binding,
    Workload,
    evaluate,
    load_architecture,
    load_binding,
    load_sweep,
    load_workload,
    pareto_front,
    run_sweep,
    write_table,
)
from einforge.cli import main
from einforge.einsum import CascadeError, load_cascade, parse_cascade

FUSEMAX = load_architecture("fusemax")
FLAT = load_architecture("flat")


def run(arch, cascade, binding, model="BERT", seq="16K"):
    c = load_cascade(cascade) if isinstance(cascade, str) else cascade
    return evaluate(arch, c, load_binding(binding, c), load_workload(model, seq))


def test_operator_costs_come_from_the_architecture():
    # exp with its subtraction: 6 MACs + 1 add on FuseMax PEs; one exp-unit action + 1 add on FLAT's 1D PEs
    fm = run(FUSEMAX, "attention-1pass", "fusemax")
    assert fm.per_einsum["SLN"].actions.keys() == {"mac", "add"}
    pts = fm.per_einsum["SLD"].actions["add"]            # SLD: one add per point of the same space
    assert fm.per_einsum["SLN"].actions["mac"] == 6 * pts and fm.per_einsum["SLN"].actions["add"] == pts
    cas = run(FLAT, "attention-1pass", "cascade")
    assert cas.per_einsum["SLN"].actions == {"exp": pts, "add": pts}
    # the same Einsum costs 7 cycles per point on FuseMax's 2D array, 2 on FLAT's sequential 1D lanes
    assert fm.per_einsum["SLN"].cycles == 7 * fm.per_einsum["SLD"].cycles
    assert cas.per_einsum["SLN"].cycles == 2 * cas.per_einsum["SLD"].cycles
    # a product summed over a rank is one MAC per point
    assert set(fm.per_einsum["BQK"].actions) == {"mac"}


def test_fusemax_balance_equation():
    """research notes 4.5: per tile, 2D = E+F+9 cycles, 1D = 2F+10+F/M1."""
    w = load_workload("BERT", "16K")
    r = run(FUSEMAX, "attention-1pass", "fusemax")
    x = w.batch * w.heads * w.keys * w.queries / 256 ** 2
    m1 = w.keys // 256
    per_tile_1d = 2 * w.head_dim + 10 + w.head_dim / m1
    assert math.isclose(r.cycles["2d"], x * (w.head_dim + w.head_dim + 9))
    assert math.isclose(r.cycles["1d"], x * per_tile_1d)
    # the 1D array is the bottleneck; the first tile's dependency chain beyond it is paid once
    fill = r.details["latency_cycles"] - r.cycles["1d"]
    assert 0 < fill < 3 * per_tile_1d
    assert math.isclose(r.util_2d, (w.head_dim + w.head_dim + 9) / per_tile_1d, rel_tol=1e-6)


def test_any_cascade_evaluates_without_new_code():
    # the cost model never names an Einsum: new cascades run as they are
    for name in ("attention-causal", "attention-cross", "attention-gqa", "attention-window", "attention-fa1"):
        r = run(FUSEMAX, name, "fusemax", seq="4K")
        assert r.latency_s > 0 and 0 < r.util_2d <= 1 and 0 < r.util_1d <= 1.000001
    for name in ("attention-sigmoid", "attention-linear", "attention-mha", "attention-3pass"):
        r = run(FUSEMAX, name, "unfused", seq="4K")
        assert r.latency_s > 0 and r.energy_pJ > 0


def test_causal_filter_halves_the_tile_work():
    full = run(FUSEMAX, "attention-1pass", "fusemax", seq="64K")
    causal = run(FUSEMAX, "attention-causal", "fusemax", seq="64K")
    # the filter travels with the data: the exp, the tile sums and the tile product with V read only
    # the logits it kept, so they shrink as the logits do
    for lab in ("BQK", "SLN", "SLD", "SLNV"):
        ratio = causal.per_einsum[lab].cycles / full.per_einsum[lab].cycles
        assert 0.49 < ratio < 0.52, lab
    # the controller skips the tiles above the diagonal: of 256 x 256 (key tile, query block) pairs
    # of 256 each, 256 * 257 / 2 hold a point, so the per-query 1D corrections and the latency
    # follow (the 1D array stays the bottleneck)
    visited = 256 * 257 / 2 / 256**2
    assert causal.per_einsum["PRM"].cycles == pytest.approx(full.per_einsum["PRM"].cycles * visited, rel=1e-9)
    assert causal.latency_s == pytest.approx(full.latency_s * visited, rel=0.01)
    # K and V tiles are fetched per group of P1 resident query blocks: group i of P2 needs the first
    # (i+1)/P2 of the tiles, (P2+1)/(2 P2) of them on average; Q and the output move once
    p2 = causal.details["P2"]
    w = load_workload("BERT", "64K")
    once = w.batch * w.heads * w.queries * (w.head_dim + w.head_dim) * 2
    assert causal.traffic_bytes - once == pytest.approx((full.traffic_bytes - once) * (p2 + 1) / (2 * p2), rel=1e-9)
    # a controller that visits every tile saves only the 2D work
    b = dataclasses.replace(load_binding("fusemax", load_cascade("attention-causal")), skip_empty_tiles=False)
    every = evaluate(FUSEMAX, load_cascade("attention-causal"), b, load_workload("BERT", "64K"))
    assert every.per_einsum["PRM"].cycles == full.per_einsum["PRM"].cycles
    assert every.latency_s == pytest.approx(full.latency_s, rel=1e-7)   # but the first tile's fill


def test_gqa_shares_key_value_tiles_across_query_heads():
    # at 4K every query row of a head group fits the buffer: one K/V tile serves R heads
    w = load_workload("BERT", "4K")
    c = load_cascade("attention-gqa")
    b = load_binding("fusemax", c)
    mha = evaluate(FUSEMAX, c, b, w)                               # G = H: one query head per group
    gqa = evaluate(FUSEMAX, c, b, dataclasses.replace(w, kv_heads=3))
    assert gqa.details["size_R"] == 4 and mha.details["size_R"] == 1
    q_and_out = 2 * 2 * w.batch * w.heads * w.queries * w.head_dim                      # Q read, AV written: the same
    kv = lambda r: r.traffic_bytes - q_and_out                     # noqa: E731
    assert kv(gqa) == pytest.approx(kv(mha) / 4)
    assert math.isclose(gqa.latency_s, mha.latency_s, rel_tol=1e-9)   # same work


def test_operator_the_array_lacks_is_rejected():
    c = parse_cascade("ranks M P M0\nworkload M=keys P=queries\ninput S[m,p]\nB[m1,m0,p] = S[m1*M0+m0,p]\nT[m1,m0,p] = tanh(B[m1,m0,p])\n"
                      "Z[m1,p] = T[m1,m0,p]\n")
    no_exp = FUSEMAX.with_array("2d", units=("mac", "add"))
    with pytest.raises(ArchError, match=r"Einsum T uses operator 'tanh', which array 2d \(units: mac, add\) cannot"):
        evaluate(no_exp, c, load_binding("fusemax", c), load_workload("BERT", "4K"))


def test_buffer_too_small_is_rejected():
    small = FUSEMAX.with_buffer(capacity=64 << 10)
    with pytest.raises(ArchError, match="does not fit the 0.0625 MiB buffer"):
        run(small, "attention-1pass", "fusemax")


def test_workload_must_size_every_rank():
    c = parse_cascade("ranks M P Q9\nworkload M=keys P=queries\ninput S[m,p] X[q9]\nZ[p] = S[m,p] * X[q9]\n")
    with pytest.raises(ArchError, match="rank Q9 gets no size from workload BERT-4K"):
        evaluate(FUSEMAX, c, load_binding("unfused", c), load_workload("BERT", "4K"))


def test_tile_binding_needs_a_tile_rank():
    with pytest.raises(ArchError, match="no rank mapped to the 2D rows"):
        run(FUSEMAX, "attention-3pass", "fusemax")


def test_bad_files_name_the_file(tmp_path):
    f = tmp_path / "arch.yaml"
    f.write_text("name: x\nclock: 1GHz\nword_bits: 16\ndram: {bandwidth: 1GB/s}\nglobal_buffer: {capacity: 1MiB}\n"
                 "arrays:\n  2d: {rows: 4, cols: 4, units: [mac, warp]}\n")
    with pytest.raises(ArchError, match=r"arch.yaml:7:39: arrays.2d.units.1: Input should be 'mac'"):
        load_architecture(f)
    f.write_text("name: [unclosed\n")
    with pytest.raises(ArchError, match=r"arch.yaml:2:1: invalid YAML"):
        load_architecture(f)
    with pytest.raises(ArchError, match="no built-in architecture named 'tpu'"):
        load_architecture("tpu")
    with pytest.raises(ArchError, match="no built-in workload"):
        load_workload("GPT5")
    with pytest.raises(ArchError, match="not a count"):
        load_workload("BERT", "lots")


def test_user_architecture_and_binding_files(tmp_path):
    a = tmp_path / "small.yaml"
    a.write_text("name: small\nclock: 1GHz\nword_bits: 16\ndram: {bandwidth: 100GB/s}\n"
                 "global_buffer: {capacity: 4MiB, width_bits: 1024, banks: 16}\n"
                 "arrays:\n  2d: {rows: 64, cols: 64, units: [mac, add, max], rf_depth: 8}\n"
                 "  1d: {lanes: 64, units: [mac, add, max, div], rf_depth: 16}\n")
    arch = load_architecture(a)
    b = tmp_path / "mine.yaml"
    b.write_text("base: fusemax\ndescription: mine\n")
    c = load_cascade("attention-1pass")
    r = evaluate(arch, c, load_binding(str(b), c), load_workload("T5", "4K"))
    assert r.details["size_M0"] == 64 and r.util_1d == pytest.approx(1.0)
    b.write_text("base: fusemax\nwarp: 9\n")
    with pytest.raises(ArchError, match=r"mine.yaml:2:1: unknown key .warp."):
        load_binding(str(b), c)


def test_pareto_front_and_sweep(tmp_path):
    assert pareto_front([(1, 1), (1, 1), (2, 0.5), (0.5, 3)]) == [True, False, True, True]
    spec = tmp_path / "s.yaml"
    spec.write_text("workloads: [BERT]\nseq: [16K]\ngrid:\n  array: [64x64, 256x256]\n  buffer: [64KiB, 16MiB]\n")
    rows = run_sweep(load_sweep(spec))
    assert len(rows) == 4
    assert sum(1 for r in rows if r["error"]) == 1        # 256x256 does not fit 64 KiB
    ok = [r for r in rows if not r["error"]]
    assert any(r["pareto_latency_area"] for r in ok)
    fast = min(ok, key=lambda r: r["latency_s"])
    assert fast["pareto_latency_area"] and fast["rows"] == 256
    out = write_table(rows, tmp_path / "r.csv")
    assert out[0].read_text().startswith("workload,seq,rows,cols")
    spec.write_text("workloads: [BERT]\ngrid: {array: [big]}\n")
    with pytest.raises(ArchError, match=r"s.yaml:2:15: grid.array: .big. is not an array shape RxC"):
        load_sweep(spec)


def test_evaluate_json_contract():
    r = CliRunner().invoke(main, ["evaluate", "--arch", "fusemax", "--model", "BERT", "--seq", "64K", "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    for k in ("latency_s", "energy_pJ", "traffic_bytes", "util_2d", "util_1d", "area_um2", "per_einsum",
              "energy_breakdown_pJ"):
        assert k in out
    assert set(out["per_einsum"]["BQK"]) >= {"cycles", "util_2d", "util_1d", "energy_pJ", "array"}
    assert out["per_einsum"]["BQK"]["array"] == "2d" and out["per_einsum"]["RM"]["array"] == "1d"
    r = CliRunner().invoke(main, ["evaluate", "--arch", "flat", "--binding", "cascade", "--seq", "1M", "--json"])
    assert json.loads(r.output)["util_1d"] == pytest.approx(1.0)
    r = CliRunner().invoke(main, ["evaluate", "--binding", "warp"])
    assert r.exit_code == 2 and "no built-in binding named 'warp'" in r.output


def test_sweep_and_figures_commands(tmp_path):
    spec = tmp_path / "s.yaml"
    spec.write_text("workloads: [T5]\nseq: [4K]\ngrid:\n  array: [32x32, 64x64]\n")
    r = CliRunner().invoke(main, ["sweep", str(spec), "-o", str(tmp_path / "r.csv"), "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["points"] == 2
    r = CliRunner().invoke(main, ["figures", "-o", str(tmp_path / "figs")])
    assert r.exit_code == 0, r.output
    names = {p.name for p in (tmp_path / "figs").iterdir()}
    for k in ("fig6_utilization", "fig7_einsum_utilization", "fig8_attention_speedup", "fig9_attention_energy",
              "fig10_e2e_speedup", "fig11_e2e_energy", "fig12_pareto"):
        assert {f"{k}.png", f"{k}.pdf", f"{k}.csv"} <= names


def test_binding_rules_place_einsums_by_the_ir():
    c = load_cascade("attention-1pass")
    from einforge.arch import bind_arrays

    fm = bind_arrays(c, load_binding("fusemax", c), "M0")
    assert {k for k, v in fm.items() if v == "2d"} == {"BQK", "LM", "SLN", "SLD", "SLNV"}
    assert fm["BK"] is None and fm["RM.init"] is None
    cas = bind_arrays(c, load_binding("cascade", c), "M0")
    assert {k for k, v in cas.items() if v == "2d"} == {"BQK", "SLNV"}
    assert isinstance(load_binding("fusemax", c), Binding)


def test_flat_dataflow_search_for_shapes_outside_flats_table():
    from einforge.arch import design

    d = design("flat")
    r = evaluate(d.arch, d.cascade, d.binding, load_workload("BERT", "3000"))
    assert r.details["flat_dataflow"] == "searched" and r.latency_s > 0
    table = evaluate(d.arch, d.cascade, d.binding, load_workload("BERT", "1K"))
    assert table.details["flat_dataflow"] == "FLAT's table"
    # forcing the search on FLAT's own accelerator: short sequences keep the QK/A rows on chip, a
    # million keys cannot (as FLAT's table says), and the search is never slower than the table
    almost = d.arch.with_buffer(capacity=(32 << 20) - 2)
    for seq, on_chip in (("1K", True), ("1M", False)):
        w = load_workload("BERT", seq)
        s = evaluate(almost, d.cascade, d.binding, w)
        t = evaluate(d.arch, d.cascade, d.binding, w)
        assert s.details["flat_dataflow"] == "searched"
        assert ("QK" in s.details["on_chip"].split(",")) == on_chip
        assert ("QK" in t.details["on_chip"].split(",")) == on_chip
        assert s.latency_s <= t.latency_s * 1.000001


def test_fill_and_drain_are_charged_once_per_tile():
    # closed form: the 2D array pays rows + cols - 2 cycles per tile, where a tile is one
    # (instance, key tile, block of queries); the value rank F and the tile's next Einsums stream
    # through it back to back (was 1864 s: a fill per value feature and per Einsum)
    c = load_cascade("attention-1pass")
    w = load_workload("BERT", "64K")
    b = load_binding("fusemax", c)
    base = evaluate(FUSEMAX, c, b, w)
    filled = evaluate(FUSEMAX.with_array("2d", fill_drain=True), c, b, w)
    tiles = 64 * 12 * (65536 // 256) * (65536 // 256)
    extra = {lab: filled.per_einsum[lab].cycles - cost.cycles for lab, cost in base.per_einsum.items()
             if cost.array == "2d"}
    assert extra == {"BQK": tiles * (256 + 256 - 2), "LM": 0, "SLN": 0, "SLD": 0, "SLNV": 0}
    assert filled.latency_s == pytest.approx((filled.cycles["2d"]) / FUSEMAX.clock_hz)


def test_cascade_binding_sizes_its_query_blocks_for_the_buffer_it_has():
    # +Cascade keeps its query blocks in half of the buffer (the artifact's 16 MiB of FLAT's 32):
    # a smaller buffer holds fewer blocks, so K and V stream more often
    c = load_cascade("attention-1pass")
    b = load_binding("cascade", c)
    w = load_workload("BERT", "64K")
    flat = load_architecture("flat")
    big = evaluate(flat, c, b, w)
    small = evaluate(flat.with_buffer(capacity=2 << 20), c, b, w)
    assert big.details["P1"] == 32 and small.details["P1"] < big.details["P1"]
    assert small.traffic_bytes > big.traffic_bytes
    with pytest.raises(ArchError, match="does not fit the 0.125 MiB buffer"):
        evaluate(flat.with_buffer(capacity=256 << 10), c, b, w)


def test_the_global_buffer_moves_banks_times_width_bits_a_cycle():
    # a buffer of one 64-bit bank cannot feed FuseMax: latency follows its reads and writes
    c = load_cascade("attention-1pass")
    b = load_binding("fusemax", c)
    w = load_workload("BERT", "4K")
    wide = evaluate(FUSEMAX, c, b, w)
    narrow = evaluate(FUSEMAX.with_buffer(banks=1, width_bits=64), c, b, w)
    words = narrow.details["l3_reads_words"] + narrow.details["l3_writes_words"]
    assert narrow.details["buffer_cycles"] == pytest.approx(words * 16 / 64)
    assert narrow.details["latency_cycles"] == pytest.approx(narrow.details["buffer_cycles"])
    assert wide.details["buffer_cycles"] < wide.details["latency_cycles"] < narrow.details["latency_cycles"]


def test_one_tile_takes_its_dependency_chain():
    # B = H = 1, M = P = 256: one tile; the arrays cannot overlap it with anything, so it takes the
    # tile's dependency chain (QK -> LM -> RM -> SLN -> SLD, SLNV -> RD, RNV -> AV), not the busier
    # array's load (202 cycles)
    c = load_cascade("attention-1pass")
    w = dataclasses.replace(load_workload("BERT", "1K"), batch=1, heads=1).with_seq(256)
    r = evaluate(FUSEMAX, c, load_binding("fusemax", c), w)
    assert max(r.cycles.values()) == 202
    chain = (64 + 1) + 1 + (7 + 1 + 64)                  # 2D: BQK, LM; 1D: RM; 2D: SLN, SLD, SLNV
    assert r.details["latency_cycles"] >= chain + 1 + 64  # then RD and RNV on the 1D array
    assert r.details["latency_cycles"] >= 267


def test_what_the_grid_keeps_must_fit_its_registers():
    # moving SPNV and RNV onto the grid keeps F values of SPNV per PE, far beyond 12 registers
    from einforge.arch import Binding

    c = load_cascade("attention-1pass")
    moved = dataclasses.replace(load_binding("fusemax", c), explicit=(("SPNV", "2d"), ("RNV", "2d")))
    w = load_workload("BERT", "64K").with_sizes({})
    arch = FUSEMAX.with_part("2d", rows=32, cols=32).with_part("1d", cols=32).with_buffer(capacity=64 << 20)
    w = dataclasses.replace(w, head_dim=32, value_dim=256)
    with pytest.raises(ArchError, match=r"each PE of the grid would hold .* more than its 12-entry register file"):
        evaluate(arch, c, moved, w)
    assert Binding


@pytest.mark.parametrize("cascade,binding", [("attention-1pass", "fusemax"), ("attention-3pass", "unfused")])
def test_a_kernel_launch_adds_its_time_once_and_nothing_else(cascade, binding):
    # the tiled schedule and the phases schedule (unfused) each pay one launch per evaluation
    launch = 2.1e-5
    base = run(FUSEMAX, cascade, binding, seq="1K")
    slow = run(dataclasses.replace(FUSEMAX, launch_overhead_s=launch), cascade, binding, seq="1K")
    assert slow.latency_s == pytest.approx(base.latency_s + launch, rel=1e-12)
    assert slow.compute_s == base.compute_s and slow.memory_s == base.memory_s
    assert slow.energy_pJ == base.energy_pJ and slow.traffic_bytes == base.traffic_bytes
    # the arrays idle while the host launches: utilization is busy time over the longer latency
    assert slow.util_2d == pytest.approx(base.util_2d * base.latency_s / slow.latency_s, rel=1e-9)
    assert slow.details["launch_overhead_s"] == launch and base.details["launch_overhead_s"] == 0.0


@pytest.mark.parametrize("cascade,family", [("gelu", "activation"), ("rmsnorm", "normalization"), ("gemm", "feed-forward")])
def test_a_kernel_of_a_family_pays_its_familys_launch(cascade, family):
    # a family's own figure, else the architecture's one; in the scalar path, the report and price()
    from einforge.arch import price

    c = load_cascade(cascade)
    b = load_binding("unfused", c)
    w = Workload("w", sizes=tuple((r.name, 64) for r in c.ranks if not r.param and not r.derived))
    arch = dataclasses.replace(FUSEMAX, launch_overhead_s=2e-5, launch_overhead_by_family=(("activation", 5e-5),
                                                                                         ("normalization", 7e-5)))
    base = evaluate(FUSEMAX, c, b, w)
    slow = evaluate(arch, c, b, w)
    launch = {"activation": 5e-5, "normalization": 7e-5}.get(family, 2e-5)
    assert slow.latency_s == pytest.approx(base.latency_s + launch, rel=1e-12)
    assert slow.details["launch_overhead_s"] == launch
    assert price(arch, c, b, w)[0] == slow.latency_s


def test_bound_sizes_are_the_callers_own():
    """bind_sizes remembers its work per value-equal arguments; what it returns may be changed by
    the caller without changing what the next caller gets."""
    from einforge.arch import bind_sizes, load_workload
    from einforge.einsum import load_cascade

    c, w = load_cascade("attention-1pass"), load_workload("BERT", "4K")
    first = bind_sizes(c, w, {"M0": 256})
    first.sizes["M"] = 1
    first.origin.clear()
    again = bind_sizes(c, w, {"M0": 256})
    assert again.sizes["M"] == 4096 and again.origin["M"].startswith("workload")
    assert bind_sizes(c, w, {"M0": 128}).sizes["M1"] == 32


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_price_is_what_evaluate_reports(data):
    # price() makes evaluate's three totals without the rest of the report: the same numbers over
    # library cascades, every built-in binding that maps them, sizes, and arrays named otherwise
    from einforge.arch import price
    from einforge.einsum import library

    name = data.draw(st.sampled_from(sorted(library())))
    binding = data.draw(st.sampled_from(["fusemax", "unfused", "flat", "cascade", "arch"]))
    arch = data.draw(st.sampled_from([FUSEMAX, FLAT, load_architecture("a100")]))
    if data.draw(st.booleans()):
        names = {"2d": "grid", "1d": "lanes"}
        arch = dataclasses.replace(arch, arrays=tuple(dataclasses.replace(a, name=names[a.name]) for a in arch.arrays))
    keys = data.draw(st.sampled_from([256, 1000, 4096]))
    c = load_cascade(name)
    w = Workload("w", batch=data.draw(st.integers(1, 4)), heads=4, kv_heads=2, head_dim=64, keys=keys, queries=keys)
    try:
        b = load_binding(binding, c)
        r = evaluate(arch, c, b, w)
    except (ArchError, CascadeError):
        with pytest.raises((ArchError, CascadeError)):
            price(arch, c, load_binding(binding, c), w)
        return
    event("priced")
    assert price(arch, c, b, w) == (r.latency_s, r.energy_pJ, r.traffic_bytes)


def test_a_rank_sized_by_other_fields_covers_none_of_the_instances():
    # RoPE's pair rank is head_dim/2 and its vector rank the heads: each sequence of the batch is an
    # instance (its positions' angles are its own), whatever the head size
    from einforge.arch import bind_sizes

    for head_dim in (2, 64, 128):
        b = bind_sizes(load_cascade("rope"), Workload("w", batch=3, heads=4, head_dim=head_dim, queries=16))
        assert (b.sizes["I"], b.sizes["P"], b.sizes["H"], b.instances) == (head_dim // 2, 16, 4, 3)
    with pytest.raises(ArchError, match=r"workload w.*rope's I=head_dim/2.*63 is not a multiple of 2"):
        bind_sizes(load_cascade("rope"), Workload("w", batch=3, heads=4, head_dim=63, queries=16))


@settings(max_examples=300, deadline=None)
@given(n=st.integers(1, 20_000), cap=st.sampled_from([1, 3, 16, 64, 128, 256, 288]))
def test_balanced_tiles_are_the_fewest_that_fit_with_less_than_one_pad_a_tile(n, cap):
    from einforge.arch._traffic import balanced_tiles

    tile, padded = balanced_tiles(n, cap)
    tiles = padded // tile
    assert padded == tile * tiles and tile <= cap
    assert tiles == -(-n // cap)                     # no fewer tiles of at most cap cover n
    assert n <= padded < n + tiles                   # fewer than one padding element a tile


def test_a_key_count_without_good_divisors_streams_full_tiles():
    # decode against caches of 2044..2057 keys (2053 is prime, 2049 = 3 x 683): the tiles are the
    # fewest that fit the rows, padded, never tiles of a few keys; the latency moves smoothly
    from einforge.arch import search

    c = load_cascade("attention-decode")
    times = {}
    for kv in range(2044, 2058):
        w = Workload("w", batch=8, heads=32, kv_heads=8, head_dim=128, keys=kv)
        r = search(FUSEMAX, c, w).report
        # the mapper tries at most rows, rows/2 and rows/4 keys a tile; n >= cap keys in the fewest
        # tiles of at most cap are at least cap*n/(n+cap) >= cap/2 a tile
        assert r.sizes["M0"] >= 256 // 8, (kv, r.sizes["M0"])
        padded = r.sizes["M"] != kv
        assert padded == any("padded from" in x for x in r.warnings), kv
        times[kv] = r.latency_s
    assert max(times.values()) / min(times.values()) < 1.05


def test_an_explicit_size_without_a_good_divisor_is_said_not_padded():
    # --size M=2049 is the user's: no padding, the largest dividing tile (3 = 2049 / 683), said
    c = load_cascade("attention-1pass")
    w = Workload("w", batch=1, heads=1, head_dim=64, keys=2049, queries=256, sizes=(("M", 2049),))
    r = evaluate(FUSEMAX, c, load_binding("fusemax", c), w)
    assert (r.sizes["M"], r.sizes["M0"]) == (2049, 3)
    assert any("tiles of 3 keys: M=2049 was given explicitly" in x for x in r.warnings)
    # a size with a divisor of at least half the rows (2048: 256) says nothing
    w = Workload("w", batch=1, heads=1, head_dim=64, keys=2048, queries=256, sizes=(("M", 2048),))
    assert not any("tiles of" in x or "padded" in x for x in evaluate(FUSEMAX, c, load_binding("fusemax", c), w).warnings)


def test_padding_a_causal_sequence_adds_no_work():
    # causal attention over a prime length: the padded keys lie above every query, so the mask
    # leaves them no work (the count of kept points is the unpadded one, up to the density's sampling)
    c = load_cascade("attention-causal")
    b = load_binding("fusemax", c)
    n = 1021
    r = evaluate(FUSEMAX, c, b, Workload("w", batch=1, heads=1, head_dim=64, keys=n, queries=n))
    assert r.sizes["M"] == 1024 and r.sizes["P"] == n and r.sizes["M0"] == 256
    qk = next(e for e in r.per_einsum.values() if e.array == "2d" and "mac" in e.actions)
    exact = 64 * n * (n + 1) / 2                      # E MACs for each (key, query) with key <= query
    assert qk.actions["mac"] == pytest.approx(exact, rel=0.01)


@pytest.mark.parametrize("blocks", [500, 503, 509, 512])
def test_balanced_resident_groups_are_the_fewest_the_buffer_holds(blocks):
    # a prime number of query blocks (503, 509) cannot be split into equal resident groups: the
    # FuseMax evaluation's mappings (resident blocks that divide them) then keep one block at a
    # time and stream every key/value tile once per block; balanced groups (the mapper's) stream
    # them once per group, the fewest groups the buffer holds
    c = load_cascade("attention-1pass")
    divide = load_binding("fusemax", c)
    balanced = dataclasses.replace(divide, resident_groups="balanced")
    keys, e = 65536, 64
    w = Workload("w", batch=1, heads=1, head_dim=e, keys=keys, queries=blocks * 256)
    d, b = evaluate(FUSEMAX, c, divide, w), evaluate(FUSEMAX, c, balanced, w)
    # what the buffer holds, from its capacity: a key/value tile, then blocks of 256 query rows
    word = FUSEMAX.word_bytes
    fits = int((FUSEMAX.buffer.capacity - word * b.details["tile_words"]) // (word * b.details["row_words"] * 256))
    assert d.details["P1"] * d.details["P2"] == blocks and d.details["P1"] <= fits    # divides
    assert b.details["P2"] == -(-blocks // fits) > 1                   # the fewest groups that fit
    assert b.details["P1"] == -(-blocks // b.details["P2"])            # as equal as can be
    # K and V (E x keys words each) are streamed once per group: the traffic differs by that alone
    streamed = 2 * e * keys * word
    assert d.traffic_bytes - b.traffic_bytes == pytest.approx(streamed * (d.details["P2"] - b.details["P2"]))
    if blocks in (503, 509):
        assert d.details["P1"] == 1
