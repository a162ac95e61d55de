"""Array-shaped evaluation equals the scalar path, number for number, on random grids of buffers,
bandwidths and clocks, for every kind of mapping and schedule (tiled, causal skipping, FLAT, phases)."""

import dataclasses
import math

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from einforge.arch import ArchError, evaluate, load_architecture, load_binding, load_workload
from einforge.arch._grid import evaluate_grid
from einforge.einsum import load_cascade

CASES = [("attention-1pass", "fusemax", "fusemax"), ("attention-causal", "fusemax", "fusemax"),
         ("attention-1pass", "cascade", "flat"), ("attention-window", "arch", "fusemax"),
         ("attention-3pass", "unfused", "fusemax"), ("attention-3pass", "flat", "flat")]
MIB = 1 << 20


def _point(a, buf, bw, clk):
    return dataclasses.replace(a.with_buffer(capacity=int(buf)), dram_bandwidth=bw, clock_hz=clk)


def _check_equal(g, a, c, b, w, bufs, bws, clks):
    k = 0
    for buf in bufs:
        for bw in bws:
            for clk in clks:
                try:
                    r = evaluate(_point(a, buf, bw, clk), c, b, w)
                except ArchError as exc:
                    assert g.error[k] == str(exc) and g.area_um2[k] == _point(a, buf, bw, clk).area_um2
                    assert all(math.isnan(col[k]) for col in (g.latency_s, g.compute_s, g.memory_s, g.util_2d,
                                                              g.util_1d, g.energy_pJ, g.traffic_bytes))
                    k += 1
                    continue
                assert g.error[k] == ""
                assert g.latency_s[k] == r.latency_s and g.util_2d[k] == r.util_2d and g.util_1d[k] == r.util_1d
                assert g.memory_s[k] == r.memory_s and g.compute_s[k] == r.compute_s
                assert g.energy_pJ[k] == r.energy_pJ and g.traffic_bytes[k] == r.traffic_bytes
                assert g.area_um2[k] == r.area_um2 and g.buffer[k] == buf
                assert g.report(k) == dataclasses.replace(r, design=g.report(k).design)
                k += 1
    assert k == len(g)


@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
@given(case=st.sampled_from(CASES), model=st.sampled_from(["BERT", "XLM"]), seq=st.sampled_from(["1K", "16K", "64K"]),
       bufs=st.lists(st.sampled_from([1, 4, 8, 32, 64]), min_size=1, max_size=3),
       bws=st.lists(st.floats(1e9, 1e13), min_size=1, max_size=3),
       clks=st.lists(st.floats(1e8, 3e9), min_size=1, max_size=3),
       rows=st.sampled_from([64, 128, 256]), launch=st.sampled_from([0.0, 2.1e-5]))
def test_grid_columns_equal_scalar_points(case, model, seq, bufs, bws, clks, rows, launch):
    name, binding, arch_name = case
    c = load_cascade(name)
    b = load_binding(binding, c)
    a = load_architecture(arch_name).with_part("2d", rows=rows, cols=rows).with_part("1d", cols=rows)
    a = dataclasses.replace(a, launch_overhead_s=launch,
                            launch_overhead_by_family=((c.family, 3 * launch),) if launch else ())
    w = load_workload(model, seq)
    bufs = [x * MIB for x in bufs]
    g = evaluate_grid(a, c, b, w, buffers=bufs, bandwidths=bws, clocks=clks)
    _check_equal(g, a, c, b, w, bufs, bws, clks)


def test_a_buffer_too_small_is_an_error_entry_not_a_failed_grid():
    c = load_cascade("attention-3pass")     # keeps whole rows of logits: a block needs M words a query
    b = load_binding("cascade", c)
    a = load_architecture("fusemax")
    w = load_workload("XLM", 4096)
    bufs = [1 * MIB, 64 * MIB]
    g = evaluate_grid(a, c, b, w, buffers=bufs, bandwidths=[1e11, 4e11])
    assert list(g.valid) == [False, False, True, True]
    assert "does not fit" in g.error[0]
    _check_equal(g, a, c, b, w, bufs, [1e11, 4e11], [a.clock_hz])


def test_arrays_named_by_their_own_names_use_the_same_columns():
    c = load_cascade("attention-1pass")
    b = load_binding("fusemax", c)
    base = load_architecture("fusemax")
    names = {"2d": "grid", "1d": "lanes"}
    a = dataclasses.replace(base, arrays=tuple(dataclasses.replace(x, name=names[x.name]) for x in base.arrays))
    assert a.parts() == {"2d": "grid", "1d": "lanes"}
    w = load_workload("BERT", "16K")
    g = evaluate_grid(a, c, b, w, buffers=[2 * MIB, 8 * MIB], bandwidths=[1e11, 1e12])
    _check_equal(g, a, c, b, w, [2 * MIB, 8 * MIB], [1e11, 1e12], [a.clock_hz])


def test_flat_chooses_its_dataflow_per_point():
    # FLAT's dataflow depends on the bandwidth: the grid evaluates each point (energy per point)
    c = load_cascade("attention-3pass")
    b = load_binding("flat", c)
    a = load_architecture("flat")
    w = load_workload("BERT", "16K")
    g = evaluate_grid(a, c, b, w, bandwidths=[1e11, 4e11], clocks=[9.4e8])
    for k, bw in enumerate([1e11, 4e11]):
        r = evaluate(dataclasses.replace(a, dram_bandwidth=bw), c, b, w)
        assert g.latency_s[k] == r.latency_s and g.energy_pJ[k] == r.energy_pJ


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 6), st.integers(0, 6)), min_size=1, max_size=30))
def test_column_pareto_marks_equal_the_list_form(points):
    import numpy as np

    from einforge.arch import pareto_front
    from einforge.arch._sweep import _pareto_mask

    x = np.array([p[0] for p in points], float)
    y = np.array([p[1] for p in points], float)
    assert _pareto_mask(x, y).tolist() == pareto_front(points)
