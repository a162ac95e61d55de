"""einforge rtl regress: a regression matrix as Dask tasks on a real local cluster, into a store."""

import json

import pytest
from click.testing import CliRunner

from einforge.cli import main
from einforge.rtl import RTLError
from einforge.sim import load_regression, regress, run_design, simulators

needs_icarus = pytest.mark.skipif(not simulators()["icarus"], reason="Icarus Verilog is not installed")

SPEC = """
cascades: [attention-1pass, attention-alibi, attention-seer]
arrays: [2x2]
bindings: [arch]
seeds: [0, 1]
sizes: {M: 8, P: 4, E: 2, F: 2, B0: 1}
formats: [{int_bits: 8, frac_bits: 8}]
"""


@needs_icarus
def test_a_matrix_on_a_local_cluster_equals_the_runs_alone_and_resumes(tmp_path):
    from einforge.arch import client_for

    (tmp_path / "r.yaml").write_text(SPEC)
    spec = load_regression(tmp_path / "r.yaml")
    client = client_for(workers=2)
    try:
        cols = regress(spec, tmp_path / "store", client=client)
        assert len(cols["key"]) == 6
        rows = list(zip(cols["cascade"].tolist(), cols["seed"].tolist(), cols["passed"].tolist(),
                        cols["cycles"].tolist(), cols["error"].tolist()))
        # the block-sparse cascade's mask is per query (B0=1), finer than the engine's blocks: refused, by name
        assert [r[2] for r in rows] == [True, True, True, True, False, False]
        assert "filter" in rows[4][4]
        alone = run_design(spec, ("attention-alibi", "2x2", "arch", "icarus", "Q8.8"))
        assert alone["cycles"].tolist() == [r[3] for r in rows[2:4]]
        again = regress(spec, tmp_path / "store", client=client)      # everything stored: nothing runs
        assert again["key"].tolist() == cols["key"].tolist()
    finally:
        cluster = client.cluster
        client.close()
        cluster.close()


@needs_icarus
def test_the_command_fails_when_a_run_fails(tmp_path):
    (tmp_path / "r.yaml").write_text(SPEC.replace("attention-1pass, attention-alibi, ", ""))
    r = CliRunner().invoke(main, ["rtl", "regress", str(tmp_path / "r.yaml"), "--workers", "1", "--json"])
    assert r.exit_code == 1
    out = json.loads(r.output)
    assert out["runs"] == 2 and out["failed"] == 2


def test_a_bad_spec_names_the_line(tmp_path):
    (tmp_path / "r.yaml").write_text("cascades: [attention-1pass]\narays: [2x2]\n")
    with pytest.raises(RTLError, match=r"r.yaml:2:1: unknown key 'arays' \(did you mean 'arrays'\?\)"):
        load_regression(tmp_path / "r.yaml")
    (tmp_path / "r.yaml").write_text("cascades: [attention-1pass]\narrays: [2by2]\n")
    with pytest.raises(RTLError, match=r"not an array shape"):
        load_regression(tmp_path / "r.yaml")


@needs_icarus
def test_bandwidth_is_an_axis_of_the_matrix(tmp_path):
    (tmp_path / "r.yaml").write_text("cascades: [attention-1pass]\narrays: [2x2]\nseeds: [3]\n"
                                     "sizes: {M: 8, P: 4, E: 2, F: 2}\nbandwidths: ['1', '1/3']\n")
    spec = load_regression(tmp_path / "r.yaml")
    rows = run_design(spec, ("attention-1pass", "2x2", "arch", "icarus", "Q8.8"))
    assert rows["bandwidth"].tolist() == ["1", "1/3"] and all(rows["passed"].tolist())
    assert rows["latency"].tolist() == rows["model_latency"].tolist()
    assert rows["latency"][1] > rows["latency"][0] and rows["cycles"][0] == rows["cycles"][1]
    assert len(set(rows["key"].tolist())) == 2
    (tmp_path / "r.yaml").write_text("cascades: [attention-1pass]\nbandwidths: ['3/2']\n")
    with pytest.raises(RTLError, match=r"r.yaml:2:.*not a bandwidth"):
        load_regression(tmp_path / "r.yaml")
