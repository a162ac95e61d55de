"""Architecture, table, workload, binding and sweep files: right, or refused with file:line:col.

Each case below was once accepted with a wrong meaning; the fuzz tests check the whole class:
any text gives an architecture or an ArchError, never another exception."""

import math

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from einforge.arch import ArchError, load_architecture, load_binding, load_sweep, load_workload, workloads
from einforge.einsum import load_cascade

BASE = """name: small
clock: 1GHz
word_bits: 16
dram: {bandwidth: 100GB/s}
global_buffer: {capacity: 4MiB, width_bits: 1024, banks: 4}
arrays:
  2d: {rows: 64, cols: 64, units: [mac, add, max], rf_depth: 8}
  1d: {lanes: 64, units: [mac, add, max, div], rf_depth: 16}
"""


def _arch(tmp_path, text):
    f = tmp_path / "arch.yaml"
    f.write_text(text)
    return load_architecture(f)


def test_the_base_file_loads(tmp_path):
    a = _arch(tmp_path, BASE)
    assert a.buffer.capacity == 4 << 20 and a.dram_bandwidth == 100e9 and a.clock_hz == 1e9


@pytest.mark.parametrize("old,new,message", [
    ("rf_depth: 8}", "rf_dept: 8}", r"arch.yaml:7:52: unknown key 'rf_dept' \(did you mean 'rf_depth'\?\)"),
    ("capacity: 4MiB", "capacity: 940MHz", r"arch.yaml:5:27: global_buffer.capacity: '940MHz' is a frequency"),
    ("bandwidth: 100GB/s", "bandwidth: 400", r"arch.yaml:4:19: dram.bandwidth: 400 has no unit"),
    ("capacity: 4MiB", "capacity: 64K", r"'64K' has no unit; write a size in bytes with its unit, e.g. 64KiB"),
    ("rf_depth: 8}", "rf_depth: 8, fill_drain: \"no\"}", r"arch.yaml:7:77: arrays.2d.fill_drain: Input should be a valid boolean"),
    ("bandwidth: 100GB/s", "bandwidth: 0GB/s", r"dram.bandwidth: '0GB/s' must be positive"),
    ("clock: 1GHz", "clock: 0Hz", r"clock: '0Hz' must be positive"),
    ("rf_depth: 8}", "rf_depth: -2}", r"arrays.2d.rf_depth: Input should be greater than or equal to 0"),
    ("word_bits: 16", "word_bits: \"16\"", r"word_bits: Input should be a valid integer"),
    ("name: small", "name: small\nname: again", r"arch.yaml:2:1: key 'name' appears twice"),
    ("arrays:", "arrays: {}\nx:", r"unknown key 'x'"),
    ("word_bits: 16", "word_bits: 16\nlaunch_overhead: 20", r"arch.yaml:4:18: launch_overhead: 20 has no unit; write a time"),
    ("word_bits: 16", "word_bits: 16\nlaunch_overhead: 20MHz", r"launch_overhead: '20MHz' is a frequency, not a time"),
    ("word_bits: 16", "word_bits: 16\nlaunch_overhead: -5us", r"launch_overhead: '-5us' must be positive"),
    ("word_bits: 16", "word_bits: 16\nlaunch_overhead_by_family: {normalisation: 45us}",
     r"arch.yaml:4:44: launch_overhead_by_family.normalisation: no cascade family 'normalisation'; families: "
     r".*normalization"),
    ("word_bits: 16", "word_bits: 16\nlaunch_overhead_by_family: {softmax: 12}",
     r"arch.yaml:4:38: launch_overhead_by_family.softmax: 12 has no unit; write a time"),
])
def test_mistakes_are_refused_with_their_position(tmp_path, old, new, message):
    with pytest.raises(ArchError, match=message):
        _arch(tmp_path, BASE.replace(old, new, 1))


def test_units_mean_what_they_say(tmp_path):
    a = _arch(tmp_path, BASE.replace("capacity: 4MiB", "capacity: 64Mbit"))
    assert a.buffer.capacity == 8_000_000          # 64 megabits, not 64e6 bytes
    a = _arch(tmp_path, BASE.replace("capacity: 4MiB", "capacity: 64kB"))
    assert a.buffer.capacity == 64_000
    a = _arch(tmp_path, BASE.replace("word_bits: 16", "word_bits: 12"))
    assert a.word_bytes == 1.5                      # not 1-byte words
    a = _arch(tmp_path, BASE + "launch_overhead: 21us\n")
    assert a.launch_overhead_s == pytest.approx(21e-6, rel=1e-12)
    assert _arch(tmp_path, BASE).launch_overhead_s == 0.0    # an accelerator that runs a cascade as one program
    a = _arch(tmp_path, BASE + "launch_overhead: 21us\nlaunch_overhead_by_family: {softmax: 12us, activation: 45us}\n")
    assert a.launch_overhead_for("softmax") == pytest.approx(12e-6, rel=1e-12)
    assert a.launch_overhead_for("activation") == pytest.approx(45e-6, rel=1e-12)
    assert a.launch_overhead_for("feed-forward") == a.launch_overhead_s           # the others: the one figure


def test_a_bom_is_accepted_and_invalid_utf8_refused(tmp_path):
    f = tmp_path / "arch.yaml"
    f.write_bytes(b"\xef\xbb\xbf" + BASE.encode())
    assert load_architecture(f).name == "small"
    f.write_bytes(BASE.encode().replace(b"small", b"sm\xffall"))
    with pytest.raises(ArchError, match=r"arch.yaml:1:9: not UTF-8"):
        load_architecture(f)


def test_workload_files(tmp_path):
    f = tmp_path / "w.yaml"
    f.write_text("workloads:\n  mine: {batch: 2, heads: 4, head_dim: 32, keys: 1K}\n")
    w = workloads(f)["mine"]
    assert (w.batch, w.heads, w.keys) == (2, 4, 1024)
    f.write_text("workloads:\n  mine: {batch: 2, head: 4}\n")
    with pytest.raises(ArchError, match=r"w.yaml:2:20: unknown key 'head' \(did you mean 'heads'\?\)"):
        workloads(f)
    f.write_text("workloads:\n  mine: {batch: 2.5}\n")
    with pytest.raises(ArchError, match=r"w.yaml:2:17: workloads.mine.batch: Input should be a valid integer"):
        workloads(f)


def test_binding_files(tmp_path):
    c = load_cascade("attention-1pass")
    f = tmp_path / "b.yaml"
    f.write_text("base: fusemax\nschedul: overlap\n")
    with pytest.raises(ArchError, match=r"b.yaml:2:1: unknown key 'schedul' \(did you mean 'schedule'\?\)"):
        load_binding(str(f), c)
    f.write_text("base: fusemax\nbuffer_share: 2\n")
    with pytest.raises(ArchError, match=r"b.yaml:2:15: buffer_share"):
        load_binding(str(f), c)
    f.write_text("base: fusemax\nresident_groups: balance\n")
    with pytest.raises(ArchError, match=r"b.yaml:2:18: resident_groups: Input should be 'balanced' or 'divide'"):
        load_binding(str(f), c)
    f.write_text("base: fusemax\nresident_groups: balanced\n")
    assert load_binding(str(f), c).resident_groups == "balanced"
    assert load_binding("fusemax", c).resident_groups == "divide"        # the FuseMax evaluation's mappings


def test_sweep_files(tmp_path):
    f = tmp_path / "s.yaml"
    f.write_text("workloads: [BERT]\ngrid: {buffer: [4MiB, 16]}\n")
    with pytest.raises(ArchError, match=r"s.yaml:2:23: grid.buffer.1: 16 has no unit"):
        load_sweep(f)
    f.write_text("workloads: [BERT]\ngird: {}\n")
    with pytest.raises(ArchError, match=r"s.yaml:2:1: unknown key 'gird' \(did you mean 'grid'\?\)"):
        load_sweep(f)


# -- fuzz: any text is an architecture or an ArchError -----------------------------------------

_values = st.one_of(st.integers(-3, 10**20), st.floats(allow_nan=True), st.booleans(), st.none(),
                    st.text(max_size=12), st.sampled_from(["16MiB", "940MHz", "400GiB/s", "-1", "1e309B", "0x10"]),
                    st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=5), st.integers(), max_size=2))


def _paths(d, prefix=()):
    for k, v in d.items():
        yield prefix + (k,)
        if isinstance(v, dict):
            yield from _paths(v, prefix + (k,))


PATHS = list(_paths(yaml.safe_load(BASE)))


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(st.tuples(st.sampled_from(PATHS), _values), min_size=1, max_size=3))
def test_fuzzed_architectures_load_or_are_refused(tmp_path_factory, edits):
    d = yaml.safe_load(BASE)
    for path, value in edits:
        node = d
        for k in path[:-1]:
            node = node[k] if isinstance(node, dict) and isinstance(node.get(k), dict) else {}
        node[path[-1]] = value
    f = tmp_path_factory.mktemp("fuzz") / "arch.yaml"
    f.write_text(yaml.safe_dump(d))
    try:
        a = load_architecture(f)
    except ArchError as exc:
        assert "arch.yaml" in str(exc)
        return
    assert a.clock_hz > 0 and math.isfinite(a.clock_hz) and a.buffer.capacity > 0 and a.dram_bandwidth > 0
    _finite_or_refused(a)


def _finite_or_refused(a):
    from einforge.arch import evaluate

    c = load_cascade("attention-1pass")
    try:
        r = evaluate(a, c, load_binding("fusemax", c), load_workload("BERT", "4K"))
    except ArchError:
        return
    assert all(math.isfinite(x) and x >= 0 for x in (r.latency_s, r.energy_pJ, r.traffic_bytes, r.area_um2))


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.binary(max_size=300) | st.text(max_size=300))
def test_garbage_is_refused(tmp_path_factory, blob):
    f = tmp_path_factory.mktemp("fuzz") / "arch.yaml"
    if isinstance(blob, str):
        f.write_text(blob)
    else:
        f.write_bytes(blob)
    for loader in (load_architecture, load_sweep, workloads):
        try:
            loader(f)
        except ArchError:
            pass


def test_energy_and_area_outside_the_tables_are_flagged(tmp_path):
    from einforge.arch import evaluate

    c = load_cascade("attention-1pass")
    w = load_workload("BERT", "4K")
    fm = load_architecture("fusemax")
    # FuseMax's 16 MiB buffer (4096 bits x 32768 rows) lies beyond the area table's CACTI points
    assert [n.split(":")[0] for n in evaluate(fm, c, load_binding("fusemax", c), w).warnings] == \
        ["global-buffer area extrapolated"]
    small = fm.with_buffer(capacity=256 << 10)
    notes = evaluate(small, c, load_binding("fusemax", c), w).warnings
    assert any("energy extrapolated: 0.25 MiB" in n for n in notes)
    assert not any("area" in n for n in notes)            # 4096 bits x 512 rows: a CACTI point


def test_every_data_file_cites_its_source():
    from einforge.arch._spec import DATA_DIR

    for f in list(DATA_DIR.glob("*.yaml")) + list(DATA_DIR.glob("models/*.yaml")):
        text = f.read_text()
        assert "source:" in text and any(s in text for s in ("github.com", "et al.", "https://", "config.json")), f


SWEEP = """cascade: attention-1pass
binding: fusemax
arch: fusemax
workloads: [BERT]
seq: [4K]
grid: {array: [64x64], buffer: [4MiB], bandwidth: [400GiB/s], clock: [940MHz]}
"""


@settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(st.tuples(st.sampled_from(["cascade", "binding", "arch", "workloads", "seq", "grid", "sizes",
                                           "params", ("grid", "array"), ("grid", "buffer"), ("grid", "clock")]),
                          _values), min_size=1, max_size=2))
def test_fuzzed_sweep_specs_run_or_are_refused(tmp_path_factory, edits):
    from einforge.arch import run_sweep

    d = yaml.safe_load(SWEEP)
    for key, value in edits:
        if isinstance(key, tuple):
            d["grid"] = d["grid"] if isinstance(d.get("grid"), dict) else {}
            d["grid"][key[1]] = value
        else:
            d[key] = value
    f = tmp_path_factory.mktemp("fuzz") / "s.yaml"
    f.write_text(yaml.safe_dump(d))
    try:
        rows = run_sweep(load_sweep(f))
    except (ArchError, __import__("einforge.einsum").einsum.CascadeError):
        return
    for row in rows:
        assert row["error"] or all(math.isfinite(row[k]) for k in ("latency_s", "energy_pJ", "traffic_bytes"))
