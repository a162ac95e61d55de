"""einforge plot: any two columns of a results table, coloured by a third, with the Pareto front."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from einforge.arch import ArchError, load_results, load_sweep, plot_results, run_sweep, write_table
from einforge.arch._plot import _front, _label
from einforge.arch._sweep import pareto_front

SPEC = """
cascade: attention-1pass
workloads: [BERT, XLM]
seq: [4K]
grid:
  array: [16x16, 64x64, 256x256]
  buffer: [64KiB, 8MiB]
"""


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    d = tmp_path_factory.mktemp("plot")
    (d / "s.yaml").write_text(SPEC)
    files = write_table(run_sweep(load_sweep(d / "s.yaml")), d / "r.csv")
    return files


@pytest.mark.parametrize("fmt", [".png", ".pdf", ".svg"])
def test_plots_every_format_from_csv_and_parquet(table, tmp_path, fmt):
    for f in table:
        cols = load_results(f)
        refused = int((cols["error"] != "").sum())       # 64 KiB holds no block on the big arrays
        assert 0 < refused < len(cols["error"]) and np.isnan(cols["latency_s"][cols["error"] != ""]).all()
        out = plot_results(cols, "latency_s", "area_um2", tmp_path / f"p{fmt}", color="workload", logx=True)
        assert out.stat().st_size > 1000


def test_a_missing_column_names_the_ones_there(table, tmp_path):
    with pytest.raises(ArchError, match=r"no column 'latncy_s' in the results; columns: workload, seq"):
        plot_results(load_results(table[0]), "latncy_s", "area_um2", tmp_path / "p.png")
    with pytest.raises(ArchError, match=r"write .png, .pdf or .svg"):
        plot_results(load_results(table[0]), "latency_s", "area_um2", tmp_path / "p.jpg")


def test_axis_labels_carry_units():
    assert _label("latency_s") == "latency (s)" and _label("energy_pJ") == "energy (pJ)"
    assert _label("bandwidth_Bps") == "bandwidth (B/s)" and _label("util_2d") == "util 2d (fraction)"


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 6), st.integers(0, 6)), min_size=1, max_size=30))
def test_the_drawn_front_is_the_pareto_front(points):
    x = np.array([p[0] for p in points], float)
    y = np.array([p[1] for p in points], float)
    marks = pareto_front(points)
    assert sorted(_front(x, y).tolist()) == [k for k, m in enumerate(marks) if m]
