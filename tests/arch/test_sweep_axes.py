"""Sweep axes beyond the grid: cascades, bindings, any architecture field by path, and the rule the
buffer and register files follow when the array grows."""

import dataclasses

import numpy as np
import pytest

from einforge.arch import ArchError, evaluate, load_architecture, load_binding, load_sweep, load_workload, sweep_columns
from einforge.arch._sweep import scaled_with_array, set_field
from einforge.einsum import load_cascade


def _spec(tmp_path, text):
    (tmp_path / "s.yaml").write_text(text)
    return load_sweep(tmp_path / "s.yaml")


def test_cascades_and_bindings_are_axes(tmp_path):
    spec = _spec(tmp_path, "cascade: [attention-1pass, attention-causal]\nbinding: [fusemax, arch]\n"
                           "workloads: [BERT]\nseq: [4K]\n")
    cols = sweep_columns(spec)
    assert len(cols["key"]) == spec.size == 4
    pairs = list(zip(cols["cascade"].tolist(), cols["binding"].tolist()))
    assert pairs == [("attention-1pass", "fusemax"), ("attention-1pass", "arch"),
                     ("attention-causal", "fusemax"), ("attention-causal", "arch")]
    for (c, b), lat in zip(pairs, cols["latency_s"]):
        r = evaluate(load_architecture("fusemax"), load_cascade(c), load_binding(b, load_cascade(c)),
                     load_workload("BERT", "4K"))
        assert lat == r.latency_s


def test_any_field_by_path(tmp_path):
    spec = _spec(tmp_path, "workloads: [BERT]\nseq: [4K]\nfields:\n  2d.rf_depth: [4, 64]\n  buffer.banks: [1, 8]\n")
    cols = sweep_columns(spec)
    assert len(cols["key"]) == 4 and set(cols["field_2d.rf_depth"].tolist()) == {4, 64}
    base = load_architecture("fusemax")
    c = load_cascade("attention-1pass")
    for rf, banks, lat, err in zip(cols["field_2d.rf_depth"], cols["field_buffer.banks"], cols["latency_s"],
                                   cols["error"]):
        a = base.with_part("2d", rf_depth=int(rf)).with_buffer(banks=int(banks))
        try:
            r = evaluate(a, c, load_binding("fusemax", c), load_workload("BERT", "4K"))
        except ArchError as exc:
            assert err == str(exc)
            continue
        assert lat == r.latency_s


@pytest.mark.parametrize("path,value,message", [
    ("2d.rf_dept", 4, r"2d has no field 'rf_dept' \(its fields: rows, cols"),
    ("3d.rows", 4, r"no part '3d'"),
    ("clock", 1e9, r"'clock' is not a field of an architecture \(fields: .*clock_hz"),
    ("2d.rf_depth", "deep", r"takes a int"),
])
def test_a_bad_path_or_value_is_refused_with_its_line(tmp_path, path, value, message):
    with pytest.raises(ArchError, match=message):
        set_field(load_architecture("fusemax"), path, value)
    v = f'"{value}"' if isinstance(value, str) else value
    with pytest.raises(ArchError, match=r"s.yaml:4:\d+: "):
        _spec(tmp_path, f"workloads: [BERT]\nseq: [4K]\nfields:\n  {path}: [{v}]\n")


def test_the_buffer_and_shared_register_file_follow_the_array(tmp_path):
    base = load_architecture("fusemax")
    a = scaled_with_array(base, 64, 64)
    assert a.buffer.width_bits == 64 * 16 and a.part("1d").cols == 64
    assert a.part("1d").shared_rf == base.part("1d").shared_rf * 64 // base.part("1d").cols
    assert a.part("2d").rf_depth == base.part("2d").rf_depth
    spec = _spec(tmp_path, "workloads: [BERT]\nseq: [4K]\nscale_with_array: true\ngrid:\n  array: [64x64, 128x128]\n")
    cols = sweep_columns(spec)
    plain = sweep_columns(dataclasses.replace(spec, scale_with_array=False))
    assert not np.array_equal(cols["area_um2"], plain["area_um2"])    # a narrower buffer: another area
