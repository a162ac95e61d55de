"""RTL regressions: a matrix of cascades x arrays x bindings x seeds x simulators, run as tasks on
the same execution layer as sweeps (:mod:`einforge.arch._dist`) into a resumable result store.

A regression spec (YAML)::

    cascades: [attention-1pass, attention-causal]
    arrays: [2x2, 4x4]
    bindings: [arch, fusemax]
    seeds: [0, 1]
    simulators: [icarus]
    sizes: {M: 16, P: 8, E: 4, F: 4}     # shared; a cascade takes the ranks it has
    formats: [{int_bits: 8, frac_bits: 8}, {int_bits: 6, frac_bits: 10}]   # number formats (an axis)
    bandwidths: ["1", "1/2"]              # memory words a cycle the inputs stream at (an axis)

One task runs every seed and bandwidth of one design (cascade, array, binding, simulator, format), so
that no two tasks build the same Verilog at once; each (seed, bandwidth) is one row: passed, lanes
compared, RTL and model cycles, first input to last output (simulated and predicted), error against
float64, wall time, or the reason the design could not be built.
"""

from __future__ import annotations

import itertools
import time
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, field_validator

from ..schema import load_yaml_file, validate

__all__ = ["RegressionSpec", "load_regression", "regress", "run_design"]


class _Format(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    int_bits: int = 8
    frac_bits: int = 8


class RegressionSpec(BaseModel):
    """The matrix (see the module docstring)."""

    model_config = ConfigDict(extra="forbid", strict=True)
    cascades: list[str]
    arrays: list[str] = ["4x4"]
    bindings: list[str] = ["arch"]
    seeds: list[int] = [0]
    simulators: list[str] = ["icarus"]
    sizes: dict[str, int] = {}
    formats: list[_Format] = [_Format()]
    bandwidths: list[str] = ["1"]

    @field_validator("bandwidths")
    @classmethod
    def _bandwidths(cls, v):
        from fractions import Fraction

        for b in v:
            try:
                ok = 0 < Fraction(b) <= 1
            except (ValueError, ZeroDivisionError):
                ok = False
            if not ok:
                raise ValueError(f"{b!r} is not a bandwidth in words a cycle, in (0, 1], such as \"1/2\"")
        return v

    def runs(self) -> list[tuple[int, str]]:
        """(seed, bandwidth) of every row of a design, in order."""
        return list(itertools.product(self.seeds, self.bandwidths))

    @field_validator("arrays")
    @classmethod
    def _arrays(cls, v):
        for a in v:
            parts = a.lower().split("x")
            if len(parts) != 2 or not all(p.isdigit() and int(p) > 0 for p in parts):
                raise ValueError(f"{a!r} is not an array shape RxC such as 4x4")
        return v

    @field_validator("simulators")
    @classmethod
    def _sims(cls, v):
        bad = [s for s in v if s not in ("icarus", "verilator")]
        if bad:
            raise ValueError(f"unknown simulator {bad[0]!r}: icarus or verilator")
        return v

    def designs(self) -> list[tuple]:
        """(cascade, array, binding, simulator, format) of every task."""
        return list(itertools.product(self.cascades, self.arrays, self.bindings, self.simulators,
                                      [f"Q{f.int_bits}.{f.frac_bits}" for f in self.formats]))


def load_regression(path: str | Path) -> RegressionSpec:
    """A regression spec from YAML, checked (unknown keys, wrong types: file:line:col)."""
    from ..rtl import RTLError

    data, marks, file = load_yaml_file(path, "regression spec", RTLError)
    spec = validate(RegressionSpec, data, marks, file, RTLError)
    base = Path(path).parent
    # a cascade named by a file is found next to the spec
    cascades = [str(base / c) if (base / c).is_file() else c for c in spec.cascades]
    return spec.model_copy(update={"cascades": cascades})


def run_design(spec: RegressionSpec, design: tuple) -> dict[str, np.ndarray]:
    """Every seed of one design: lower it once, simulate each seed; a design that cannot be lowered
    or built gives one row per seed with the reason."""
    from fractions import Fraction

    from .. import __version__
    from ..einsum import FixedPoint, load_cascade
    from ..rtl import MemoryModel, lower
    from ._runner import simulate

    cascade_ref, array, binding, sim, fmt = design
    rows = []
    r, c = (int(x) for x in array.lower().split("x"))
    int_bits, frac_bits = (int(x) for x in fmt[1:].split("."))
    try:
        casc = load_cascade(cascade_ref)
        sizes = {k: v for k, v in spec.sizes.items() if k in {x.name for x in casc.ranks}}
        d = lower(casc, binding, (r, c), FixedPoint(int_bits, frac_bits), sizes)
        problem = None
    except Exception as exc:              # noqa: BLE001 - the reason is the result
        d, problem = None, f"{type(exc).__name__}: {exc}"
    failed = dict(passed=False, bit_exact=False, compared_lanes=0, cycles=np.nan, model_cycles=np.nan,
                  latency=np.nan, model_latency=np.nan, max_abs_error_vs_float=np.nan,
                  error_bound_vs_float=np.nan)
    for (seed, bw), key in zip(spec.runs(), run_key(spec, design)):
        row = {"cascade": str(cascade_ref), "array": array, "binding": binding, "simulator": sim, "format": fmt,
               "seed": seed, "bandwidth": bw, "einforge": __version__, "key": key}
        t0 = time.perf_counter()
        if d is not None:
            try:
                res = simulate(d, seed=seed, sim=sim, memory=MemoryModel(Fraction(bw)))
                latency = res.details.get("first_input_to_last_output")
                predicted = res.details.get("model_first_input_to_last_output")
                row.update(passed=bool(res.passed), bit_exact=bool(res.bit_exact), compared_lanes=res.compared_lanes,
                           cycles=float(res.cycles), model_cycles=float(res.model_cycles),
                           latency=np.nan if latency is None else float(latency),
                           model_latency=np.nan if predicted is None else float(predicted),
                           max_abs_error_vs_float=float(res.max_abs_error_vs_float),
                           error_bound_vs_float=float(res.error_bound_vs_float), error="")
            except Exception as exc:      # noqa: BLE001
                row.update(failed, error=f"{type(exc).__name__}: {exc}")
        else:
            row.update(failed, error=problem)
        row["seconds"] = time.perf_counter() - t0
        rows.append(row)
    return {k: np.array([row[k] for row in rows], dtype=object if isinstance(rows[0][k], str) else None)
            for k in rows[0]}


def regress(spec: RegressionSpec, store_path, *, scheduler: str | None = None, workers: int | None = None,
            client=None, progress=None) -> dict[str, np.ndarray]:
    """Run the matrix as Dask tasks (one per design) into the store at ``store_path``; designs
    already stored are skipped. Returns every row, in the matrix's order."""
    from ..arch import ResultStore, run_into_store

    store = ResultStore(store_path)
    have = store.keys()
    todo = []
    for design in spec.designs():
        if not set(run_key(spec, design)) <= have:
            todo.append(design)
    # a task is named by its rows' keys: the same on every run, so a rerun writes the same batch names
    run_into_store(store, {f"rtl-{run_key(spec, d)[0][:20]}": (run_design, spec, d) for d in todo},
                   client=client, scheduler=scheduler, workers=workers, progress=progress)
    cols = store.read()
    order = {k: i for i, k in enumerate(key for design in spec.designs() for key in run_key(spec, design))}
    idx = np.argsort([order.get(k, len(order)) for k in cols["key"]], kind="stable")
    return {k: v[idx] for k, v in cols.items()}


def run_key(spec: RegressionSpec, design: tuple) -> list[str]:
    """The keys of a design's rows, one per (seed, bandwidth) in the spec's order."""
    from ..arch import point_key

    return [point_key({"design": list(design), "seed": seed, "bandwidth": bw, "sizes": spec.sizes})
            for seed, bw in spec.runs()]
