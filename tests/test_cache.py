"""The on-disk memo of read files (einforge/_cache.py): the same values as reading the files, read
again when any file they came from changes, and a warm start that never loads the file schemas."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from einforge import _cache
from einforge.arch import _spec as spec_module
from einforge.arch import _workload as workload_module
from einforge.arch import load_architecture, load_workload

DATA = Path(spec_module.__file__).parent / "data"


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EINFORGE_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("EINFORGE_NO_CACHE", raising=False)
    spec_module._load_file.cache_clear()
    workload_module._workloads.cache_clear()
    yield tmp_path / "cache"
    spec_module._load_file.cache_clear()
    workload_module._workloads.cache_clear()


def _fresh(f):
    spec_module._load_file.cache_clear()
    spec_module._energy_table.cache_clear()
    workload_module._workloads.cache_clear()
    return f()


@pytest.mark.parametrize("name", ["fusemax", "flat", "a100"])
def test_a_kept_architecture_equals_the_file_read_again(cache, monkeypatch, name):
    cold = _fresh(lambda: load_architecture(name))
    warm = _fresh(lambda: load_architecture(name))
    assert list((cache / "specs").glob("*.pickle"))
    monkeypatch.setenv("EINFORGE_NO_CACHE", "1")
    assert warm == cold == _fresh(lambda: load_architecture(name))


def test_kept_workloads_equal_the_file_read_again(cache, monkeypatch):
    cold = _fresh(lambda: load_workload("XLM", 4096))
    warm = _fresh(lambda: load_workload("XLM", 4096))
    monkeypatch.setenv("EINFORGE_NO_CACHE", "1")
    assert warm == cold == _fresh(lambda: load_workload("XLM", 4096))


def test_an_edited_table_is_read_again(cache, tmp_path):
    """The architecture names its energy table; editing only the table must change the result."""
    for f in ("fusemax.yaml", "energy_45nm.yaml", "area_45nm.yaml"):
        shutil.copy(DATA / f, tmp_path / f)
    arch_file = tmp_path / "fusemax.yaml"
    before = _fresh(lambda: load_architecture(arch_file))
    table = tmp_path / "energy_45nm.yaml"
    text = table.read_text()
    assert "  mac:  {energy: 17.1645," in text
    table.write_text(text.replace("  mac:  {energy: 17.1645,", "  mac:  {energy: 117.1645,", 1))
    after = _fresh(lambda: load_architecture(arch_file))
    assert after.energy.unit("mac") != before.energy.unit("mac")
    assert after == _fresh(lambda: load_architecture(arch_file))


def test_a_corrupt_cache_entry_is_made_again(cache):
    good = _fresh(lambda: load_architecture("fusemax"))
    for p in (cache / "specs").glob("*.pickle"):
        p.write_bytes(b"not a pickle")
    assert _fresh(lambda: load_architecture("fusemax")) == good


def test_errors_are_never_kept(cache, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text((DATA / "fusemax.yaml").read_text().replace("clock:", "clok:", 1))
    for _ in range(2):
        with pytest.raises(spec_module.ArchError, match="clok"):
            _fresh(lambda: load_architecture(bad))


def test_memo_reads_again_when_a_dependency_changes(cache, tmp_path):
    dep = tmp_path / "dep.txt"
    dep.write_text("1")
    calls = []

    def build():
        calls.append(1)
        return int(dep.read_text()), [dep]

    assert _cache.memo("t", "k", build) == 1 and _cache.memo("t", "k", build) == 1 and len(calls) == 1
    dep.write_text("2")
    assert _cache.memo("t", "k", build) == 2 and len(calls) == 2


def test_a_warm_start_loads_no_file_schema(cache):
    """Built-in files read before come from the cache: no pydantic, no YAML parser at start-up."""
    code = ("import sys; from einforge.arch import load_architecture, load_binding, load_workload;"
            "from einforge.einsum import load_cascade; c = load_cascade('attention-1pass');"
            "load_architecture('fusemax'); load_workload('BERT', 65536); load_binding('fusemax', c);"
            "print(sorted(m for m in ('pydantic', 'yaml', 'einforge.schema') if m in sys.modules))")
    env = dict(os.environ, EINFORGE_CACHE=str(cache))
    subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True)
    out = subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True, text=True)
    assert out.stdout.strip() == "[]"
