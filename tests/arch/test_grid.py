"""Array-shaped evaluation equals the scalar path, number for number, on random grids."""

import dataclasses
import math

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from einforge.arch import evaluate, load_architecture, load_binding, load_workload
from einforge.arch._grid import evaluate_grid
from einforge.einsum import load_cascade

CASES = [("attention-1pass", "fusemax", "fusemax"), ("attention-causal", "fusemax", "fusemax"),
         ("attention-1pass", "cascade", "flat"), ("attention-window", "arch", "fusemax")]


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(case=st.sampled_from(CASES), model=st.sampled_from(["BERT", "XLM"]), seq=st.sampled_from(["1K", "16K", "64K"]),
       bws=st.lists(st.floats(1e9, 1e13), min_size=1, max_size=4),
       clks=st.lists(st.floats(1e8, 3e9), min_size=1, max_size=4),
       rows=st.sampled_from([64, 128, 256]))
def test_grid_columns_equal_scalar_points(case, model, seq, bws, clks, rows):
    name, binding, arch_name = case
    c = load_cascade(name)
    b = load_binding(binding, c)
    a = load_architecture(arch_name).with_part("2d", rows=rows, cols=rows).with_part("1d", cols=rows)
    w = load_workload(model, seq)
    g = evaluate_grid(a, c, b, w, bws, clks)
    k = 0
    for bw in bws:
        for clk in clks:
            r = evaluate(dataclasses.replace(a, dram_bandwidth=bw, clock_hz=clk), c, b, w)
            assert g.latency_s[k] == r.latency_s and g.util_2d[k] == r.util_2d and g.util_1d[k] == r.util_1d
            assert g.memory_s[k] == r.memory_s and g.compute_s[k] == r.compute_s
            energy = g.energy_pJ[k] if hasattr(g.energy_pJ, "shape") else g.energy_pJ
            traffic = g.traffic_bytes[k] if hasattr(g.traffic_bytes, "shape") else g.traffic_bytes
            assert energy == r.energy_pJ and traffic == r.traffic_bytes and g.area_um2 == r.area_um2
            assert math.isfinite(g.latency_s[k])
            k += 1


def test_flat_chooses_its_dataflow_per_point():
    # FLAT's dataflow depends on the bandwidth: the grid evaluates each point (energy per point)
    c = load_cascade("attention-3pass")
    b = load_binding("flat", c)
    a = load_architecture("flat")
    w = load_workload("BERT", "16K")
    g = evaluate_grid(a, c, b, w, [1e11, 4e11], [9.4e8])
    for k, bw in enumerate([1e11, 4e11]):
        r = evaluate(dataclasses.replace(a, dram_bandwidth=bw), c, b, w)
        assert g.latency_s[k] == r.latency_s and g.energy_pJ[k] == r.energy_pJ
