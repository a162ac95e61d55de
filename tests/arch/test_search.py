"""The mapper: exhaustive (branch and bound) over each Einsum's array, the column rank, the tile
size and the schedule; never worse than FuseMax's binding; its winners reproduce from their files."""

import csv
import dataclasses
import itertools
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from einforge.arch import (
    ArchError,
    binding_yaml,
    evaluate,
    load_architecture,
    load_binding,
    load_workload,
    search,
)
from einforge.arch._search import _movable, _named
from einforge.cli import main
from einforge.einsum import load_cascade, rename

FUSEMAX = load_architecture("fusemax")
ONE_PASS = load_cascade("attention-1pass")
REF = Path(__file__).resolve().parents[1] / "data" / "fusemax-artifact"
MODELS = ("BERT", "TrXL", "T5", "XLM")
SEQS = ("1K", "4K", "16K", "64K", "256K", "1M")


def test_pinned_to_fusemax_it_reproduces_the_artifact():
    with open(REF / "attn-binding.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 24
    b = load_binding("fusemax", ONE_PASS)
    for row in rows:
        r = search(FUSEMAX, ONE_PASS, load_workload(row["model"], row["seq_len"]), pinned=b)
        assert r.report.latency_s == pytest.approx(float(row["latency"]), rel=0.01), (row["model"], row["seq_len"])
        assert r.report.traffic_bytes == pytest.approx(float(row["traffic"]), rel=0.01)


@pytest.mark.parametrize("model", ["BERT", "TrXL", "T5"])
def test_at_1k_it_beats_fusemax_by_5_percent_at_no_energy_cost(model):
    # the 1D array is FuseMax's bottleneck at 1K: moving per-query work onto the grid balances them
    r = search(FUSEMAX, ONE_PASS, load_workload(model, "1K"), max_energy="seed")
    assert r.complete
    assert r.seed.latency_s / r.report.latency_s >= 1.05
    assert r.report.energy_pJ <= r.seed.energy_pJ


def test_at_1k_xlm_the_complete_search_proves_the_best():
    # XLM's per-query work comes in pieces too coarse for a 5% balance: the search is complete, so
    # its winner is the bound; a brute force over the winner's schedule, tile and columns agrees
    w = load_workload("XLM", "1K")
    r = search(FUSEMAX, ONE_PASS, w, max_energy="seed")
    assert r.complete and 1.0 < r.seed.latency_s / r.report.latency_s < 1.05
    labels, where = _movable(ONE_PASS, FUSEMAX)
    free = [lab for lab in labels if len(where[lab]) == 2]
    best = None
    for combo in itertools.product(("2d", "1d"), repeat=len(free)):
        assign = {lab: where[lab][0] for lab in labels} | dict(zip(free, combo))
        b = dataclasses.replace(r.binding, explicit=_named(FUSEMAX, tuple(assign.items())))
        try:
            rep = evaluate(FUSEMAX, ONE_PASS, b, w)
        except ArchError:
            continue
        if rep.energy_pJ <= r.seed.energy_pJ * (1 + 1e-12):
            best = rep.latency_s if best is None else min(best, rep.latency_s)
    assert best == pytest.approx(r.report.latency_s, rel=1e-12)


def test_never_slower_than_fusemax_on_the_grid():
    for model, seq in itertools.product(MODELS, SEQS):
        r = search(FUSEMAX, ONE_PASS, load_workload(model, seq))
        assert r.report.latency_s <= r.seed.latency_s * (1 + 1e-12), (model, seq)


@pytest.mark.parametrize("heads,kv_heads", [(12, 0), (64, 8)])
def test_decode_reaches_the_dram_floor(heads, kv_heads):
    # one query per head against a 4K KV cache: the cache must be read once; nothing is faster
    c = load_cascade("attention-decode")
    w = dataclasses.replace(load_workload("BERT", "4K"), heads=heads, kv_heads=kv_heads)
    r = search(FUSEMAX, c, w)
    floor = r.report.traffic_bytes / FUSEMAX.dram_bandwidth
    kv = w.fields()["kv_heads"]
    cache = w.batch * kv * w.keys * (w.head_dim + w.head_dim) * FUSEMAX.word_bytes
    assert r.report.traffic_bytes >= cache
    assert r.report.latency_s <= 1.05 * max(floor, cache / FUSEMAX.dram_bandwidth)


def test_the_best_binding_file_reproduces_the_report(tmp_path):
    w = load_workload("BERT", "1K")
    r = search(FUSEMAX, ONE_PASS, w)
    f = tmp_path / "best.yaml"
    f.write_text(binding_yaml(r.binding))
    again = evaluate(FUSEMAX, ONE_PASS, load_binding(str(f), ONE_PASS), w)
    assert again.latency_s == r.report.latency_s and again.energy_pJ == r.report.energy_pJ
    out = CliRunner().invoke(main, ["search", "attention-1pass", "--seq", "1K", "-o", str(tmp_path / "b.yaml"),
                                    "--json"], catch_exceptions=False)
    assert out.exit_code == 0
    j = json.loads(out.output)
    ev = CliRunner().invoke(main, ["evaluate", "--binding", str(tmp_path / "b.yaml"), "--seq", "1K", "--json"],
                            catch_exceptions=False)
    assert json.loads(ev.output)["latency_s"] == j["latency_s"]


def test_no_valid_mapping_names_what_ruled_the_candidates_out():
    tiny = FUSEMAX.with_buffer(capacity=64 << 10)
    # no tile fits the buffer: only phases through DRAM remain, and the mapper finds them
    found = search(tiny, ONE_PASS, load_workload("BERT", "64K"))
    assert found.binding.mapping == "unfused"
    with pytest.raises(ArchError, match=r"no valid mapping \(.*buffer too small.*\); the last candidate failed"):
        search(tiny, ONE_PASS, load_workload("BERT", "64K"), rtl=True)


def test_a_renamed_cascade_maps_as_well():
    ranks = {"E": "D", "F": "VD", "M": "KS", "P": "QS", "M0": "T0", "M1": "T1"}
    mine = rename(ONE_PASS, ranks, {"Q": "QUERY", "BQK": "SCORE"})
    w = load_workload("TrXL", "4K")
    a, b = search(FUSEMAX, ONE_PASS, w), search(FUSEMAX, mine, w)
    assert a.report.latency_s == b.report.latency_s and a.report.energy_pJ == b.report.energy_pJ


@pytest.mark.parametrize("objective", ["energy", "edp"])
def test_other_objectives(objective):
    w = load_workload("BERT", "4K")
    r = search(FUSEMAX, ONE_PASS, w, objective=objective, schedules=("overlap",), tiles=(256,))
    key = {"energy": lambda x: x.energy_pJ, "edp": lambda x: x.energy_pJ * x.latency_s}[objective]
    assert key(r.report) <= key(r.seed) * (1 + 1e-12)
    assert r.front and all(lat > 0 for lat, _, _ in r.front)


def test_sweeps_map_every_point(tmp_path):
    from einforge.arch import load_sweep, run_sweep

    f = tmp_path / "s.yaml"
    f.write_text("cascade: attention-1pass\nbinding: search\nworkloads: [BERT]\nseq: [1K]\n"
                 "grid: {array: [64x64, 256x256]}\n")
    rows = run_sweep(load_sweep(f))
    fixed = {(r["rows"]): r["latency_s"] for r in rows}
    assert all(r["binding"].startswith("searched") for r in rows)
    pinned = evaluate(FUSEMAX, ONE_PASS, load_binding("fusemax", ONE_PASS), load_workload("BERT", "1K"))
    assert fixed[256] < pinned.latency_s


def test_sequence_lengths_that_are_not_multiples_of_the_array():
    # 1000 keys on 256 rows: tiles of 250 (the largest divisor that fits); a ragged last query block
    w = load_workload("BERT", 1000)
    r = evaluate(FUSEMAX, ONE_PASS, load_binding("fusemax", ONE_PASS), w)
    assert r.sizes["M0"] == 250 and r.sizes["M1"] == 4
    assert search(FUSEMAX, ONE_PASS, w).report.latency_s <= r.latency_s
