"""FLAT's dataflow search: priced as columns, it must pick what pricing every candidate alone picks."""

import dataclasses

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from einforge.arch import evaluate, load_architecture, load_binding, load_workload
from einforge.arch._flat import candidate, flat_candidates
from einforge.einsum import load_cascade

MIB = 1 << 20


@settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck))
@given(model=st.sampled_from(["BERT", "XLM", "T5"]), seq=st.sampled_from(["1K", "4K", "64K"]),
       rows=st.sampled_from([32, 64, 256]), buf=st.sampled_from([1, 4, 16]),
       bw=st.floats(1e10, 4e12), clk=st.floats(2e8, 2e9))
def test_the_search_picks_the_fastest_then_lowest_traffic_candidate(model, seq, rows, buf, bw, clk):
    c = load_cascade("attention-3pass")
    b = load_binding("flat", c)
    a = load_architecture("flat").with_part("2d", rows=rows, cols=rows).with_part("1d", cols=rows)
    a = dataclasses.replace(a.with_buffer(capacity=buf * MIB), dram_bandwidth=bw, clock_hz=clk)
    w = load_workload(model, seq)
    chosen = evaluate(a, c, b, w)
    assert chosen.details["flat_dataflow"] == "searched"
    cols = flat_candidates(w, a.buffer.capacity, a.word_bytes, rows)
    flows = [candidate(cols, k, w.fields()["queries"]) for k in range(len(cols.ps))]
    keys = [(r.latency_s, r.traffic_bytes) for r in (evaluate(a, c, b, w, flat=f) for f in flows)]
    best = min(range(len(flows)), key=lambda i: keys[i])       # min() keeps the first of equals
    assert (chosen.latency_s, chosen.traffic_bytes) == keys[best]
    assert chosen == evaluate(a, c, b, w, flat=dict(flows[best], searched=True))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(*[st.integers(1, 6)] * 4), min_size=1, max_size=40),
       st.lists(st.tuples(st.sampled_from([1.0, 2.0, 3.0, 0.5]), st.sampled_from([1.0, 2.0, 4.0])), min_size=1,
                max_size=8))
def test_choosing_among_the_front_equals_choosing_among_all(candidates, points):
    """The pruned choice (only candidates not beaten at every bandwidth and clock) against the
    plain one, the first of the fastest then lowest-traffic candidates, over small integer costs
    (many ties)."""
    from einforge.arch._flat import fastest
    from einforge.arch._model import latency_cycles

    bws, clks = zip(*points)
    got = fastest(*zip(*candidates), bws, clks)
    for j, (bw, clk) in enumerate(points):
        def key(i):
            c, t, b, lk = candidates[i]
            return (latency_cycles(float(c), float(t), float(b), float(lk), bw, clk)[0] / clk, float(t))
        assert got[j] == min(range(len(candidates)), key=key)
