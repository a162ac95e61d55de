"""Skipping empty tiles: which tiles the controller visits, and why skipping them is sound."""

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from einforge.arch import Workload, evaluate, load_architecture, load_binding
from einforge.einsum import evaluate as run
from einforge.einsum import library, random_inputs, resolve_sizes

LIB = library()
SMALL = load_architecture("fusemax").with_array("2d", rows=4, cols=4).with_array("1d", cols=4)
CASES = [("attention-causal", {}), ("attention-window", {"W": 6}), ("attention-decode", {"L": 13})]


def _sizes(name, extra):
    c = LIB[name].load()
    base = {"M": 32, "M0": 4, "E": 4, "F": 4}
    if "P" in {r.name for r in c.ranks}:
        base["P"] = 32
    return c, resolve_sizes(c, {**base, **extra})


def _visited_by_executor(c, sizes):
    """(tile step, block of 4 queries) pairs in which the logits tile holds a present point."""
    out = run(c, random_inputs(c, sizes, np.random.default_rng(0)), sizes, with_presence=True, keep="all")
    ranks = c.tensors["BQK"].ranks
    q = "P" if "P" in ranks else "R"
    visited = np.zeros((sizes["M1"], -(-sizes[q] // 4)), bool)
    for idx in np.argwhere(out["BQK?"]):
        visited[idx[ranks.index("M1")], idx[ranks.index(q)] // 4] = True
    return visited


@pytest.mark.parametrize("name,extra", CASES)
def test_skipped_steps_are_exactly_the_empty_tiles(name, extra):
    c, sizes = _sizes(name, extra)
    frac = _visited_by_executor(c, sizes).mean()
    assert 0 < frac < 1
    w = Workload("small", sizes=tuple((k, v) for k, v in sizes.items() if not c.rank(k).derived))
    skip = load_binding("fusemax", c)
    every = dataclasses.replace(skip, skip_empty_tiles=False)
    a, b = evaluate(SMALL, c, skip, w), evaluate(SMALL, c, every, w)
    # the per-step 1D work shrinks by exactly the fraction of tiles holding a point
    for lab in ("PRM", "RD", "RNV"):
        assert a.per_einsum[lab].cycles == pytest.approx(b.per_einsum[lab].cycles * frac, rel=1e-9), lab
    assert a.latency_s < b.latency_s


@pytest.mark.parametrize("name,extra", CASES)
def test_an_empty_tile_leaves_every_iterate_as_it_was(name, extra):
    # why the controller may skip: with no logit in the tile, max and + with an empty operand copy
    # the running max, the correction is exp(0) = 1 exactly, and the sums stay as they were
    c, sizes = _sizes(name, extra)
    out = run(c, random_inputs(c, sizes, np.random.default_rng(1)), sizes, with_presence=True, keep="all")
    ranks = c.tensors["BQK"].ranks
    empty = ~np.any(out["BQK?"], axis=ranks.index("M0"))
    er = [r for r in ranks if r != "M0"]
    checked = 0
    for t in ("RM", "RD", "RNV"):
        tr, k = c.tensors[t].ranks, c.tensors[t].iterative
        vals, pres = out[t], out[t + "?"]
        for idx in np.ndindex(*vals.shape):
            if idx[k] == 0:
                continue
            env = dict(zip(tr, idx))
            env["M1"] = idx[k] - 1                      # tile m1 makes iterate m1+1
            if not empty[tuple(env[r] for r in er)]:
                continue
            prev = idx[:k] + (idx[k] - 1,) + idx[k + 1:]
            assert pres[idx] == pres[prev], (t, idx)
            assert not pres[idx] or vals[idx] == vals[prev], (t, idx)
            checked += 1
    assert checked > 0


FILTERED = [("attention-causal", {}), ("attention-window", {"W": 6}), ("attention-decode", {"L": 13}),
            ("attention-window", {"W": 1}), ("attention-decode", {"L": 0})]


@settings(max_examples=40, deadline=None)
@given(case=st.sampled_from(FILTERED), m=st.integers(1, 12), m0=st.sampled_from([1, 2, 4, 8]),
       p=st.integers(1, 40), block=st.integers(1, 9))
def test_counted_step_intervals_equal_the_stepwise_marks(case, m, m0, p, block):
    # the cost model counts each block's visited steps from the filters' step intervals; with at most
    # 256 steps the step-by-step marks of visited_tiles are exact, so both must agree for any sizes
    from einforge.arch import schedule
    from einforge.arch._context import _tile_visits, visited_tiles

    name, extra = case
    c = LIB[name].load()
    sizes = {"M": m * m0, "M0": m0, "E": 2, "F": 2, **extra}
    if "P" in {r.name for r in c.ranks}:
        sizes["P"] = p
    sizes = resolve_sizes(c, sizes)
    pl = schedule.plan(c, load_binding("fusemax", c), SMALL, sizes)
    vsize = {r.name.lower(): sizes[r.name] for r in c.ranks if not r.param}
    rv = pl.row_rank.lower()
    nblk = -(-vsize[rv] // block)
    n = vsize[pl.loop_var]
    marks = visited_tiles(pl, vsize, sizes, np.arange(n), np.arange(nblk), block)
    stepwise = float(np.maximum(marks.mean(axis=0), 1.0 / n).mean())
    assert _tile_visits(pl, vsize, sizes, block) == pytest.approx(stepwise, rel=1e-12, abs=1e-12)


def test_a_block_mask_removes_work_in_proportion_to_the_kept_blocks():
    from einforge.arch import load_workload
    from einforge.rtl import RTLError, lower

    seer = LIB["attention-seer"].load()
    dense = LIB["attention-1pass"].load()
    arch = load_architecture("fusemax")
    w = load_workload("BERT", "16K").with_sizes({"B0": 256})
    full = evaluate(arch, dense, load_binding("fusemax", dense), load_workload("BERT", "16K"))
    lat = {}
    for keep in (0.125, 0.25, 0.5, 1.0):
        r = evaluate(arch, seer, load_binding("fusemax", seer), w.with_sizes({"KEEP": keep}))
        lat[keep] = r.latency_s
        assert r.sizes["KEEP"] == keep                    # a real-valued parameter stays real
    assert lat[1.0] == full.latency_s                     # everything kept: dense attention
    for keep in (0.125, 0.25, 0.5):                       # the tile loop's work scales with the kept blocks
        assert lat[keep] == pytest.approx(keep * full.latency_s, rel=0.1)
    # the RTL engine takes the mask when a block of its columns keeps or skips whole tiles (the
    # simulation tests run it); a mask over blocks narrower than its columns is refused
    with pytest.raises(RTLError, match="multiple of its 4 columns"):
        lower(seer, "arch", (2, 4), None, {"M": 8, "P": 8, "E": 2, "F": 2, "M0": 2, "B0": 2})
