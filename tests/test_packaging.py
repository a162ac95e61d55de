"""What ships is what is tested: the wheel holds every file of the package, and the einforge the
tests import gives the same answers wherever it is installed."""

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import einforge

CHECKOUT = Path(__file__).resolve().parents[1]


def _tracked_package_files():
    out = subprocess.run(["git", "ls-files", "einforge"], cwd=CHECKOUT, capture_output=True, text=True)
    if out.returncode != 0 or not out.stdout.strip():
        pytest.skip("not a git checkout")
    return [f for f in out.stdout.split() if "__pycache__" not in f]


def test_the_installed_package_has_every_file_of_the_checkout():
    installed = Path(einforge.__file__).parent
    missing = [f for f in _tracked_package_files() if not (installed.parent / f).is_file()]
    assert not missing, f"the einforge under test ({installed}) lacks {missing}"


def test_the_wheel_holds_every_file_of_the_package(tmp_path):
    out = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                          "-w", str(tmp_path), str(CHECKOUT)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    wheel = next(tmp_path.glob("einforge-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    missing = [f for f in _tracked_package_files() if f not in names]
    assert not missing
    assert any(n.endswith("licenses/LICENSE") for n in names)


def test_no_result_reads_a_file_beside_a_cascade(tmp_path):
    # a copy of a library cascade elsewhere is the same design: same report, number for number
    from einforge.arch import evaluate, load_architecture, load_binding, load_workload
    from einforge.einsum import library, load_cascade

    entry = library()["attention-1pass"]
    copy = tmp_path / "mine.cascade"
    copy.write_text(entry.file.read_text())
    arch, w = load_architecture("flat"), load_workload("BERT", "16K")
    reports = []
    for c in (entry.load(), load_cascade(copy)):
        reports.append(evaluate(arch, c, load_binding("cascade", c), w).to_json())
    for r in reports:
        r.pop("design")
    assert reports[0] == reports[1]
