"""Design-space sweeps, Pareto fronts, and the FuseMax evaluation's array-size sweep (Fig. 12)."""

from __future__ import annotations

import csv
import itertools
import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, field_validator

from ..einsum import load_cascade
from ..schema import load_yaml_file, validate
from ..units import Quantity, count
from ._binding import load_binding
from ._designs import evaluate
from ._spec import ArchError, Architecture, load_architecture
from ._workload import load_workload

__all__ = ["SweepSpec", "load_sweep", "run_sweep", "pareto_front", "scaled_fusemax", "pareto_sweep",
           "write_table"]


def pareto_front(points: list[tuple[float, float]]) -> list[bool]:
    """Which points no other point beats in both coordinates (both minimized).

    Examples
    --------
    >>> pareto_front([(1, 5), (2, 2), (3, 3), (5, 1)])
    [True, True, False, True]
    """
    order = sorted(range(len(points)), key=lambda i: (points[i][0], points[i][1]))
    out = [False] * len(points)
    best = math.inf
    for i in order:
        if points[i][1] < best:
            out[i] = True
            best = points[i][1]
    return out


def scaled_fusemax(pe: int, buffer_bytes: float, min_tiles: int, base: Architecture | None = None) -> Architecture:
    """FuseMax with a PE x PE array sized as in the evaluation's sweep (research notes 3.5):
    2D register files of 2*min_tiles entries, 1D ones of 8*min_tiles, a shared 1D register file of
    8*PE*min_tiles words, a buffer PE*16 bits wide."""
    a = base or load_architecture("fusemax")
    a = a.with_part("2d", rows=pe, cols=pe, rf_depth=2 * min_tiles)
    a = a.with_part("1d", cols=pe, rf_depth=8 * min_tiles, shared_rf=8 * pe * min_tiles)
    return a.with_buffer(capacity=int(buffer_bytes), width_bits=pe * 16)


@dataclass(frozen=True)
class ParetoPoint:
    model: str
    pe: int
    buffer_bytes: int
    traffic: float
    mem_lat: float
    comp_2d_lat: float
    comp_1d_lat: float
    latency: float
    array_2d_area: float
    area: float


def pareto_sweep(models=("BERT", "TrXL", "T5", "XLM"), pes=(16, 32, 64, 128, 256, 512), seq: int = 1 << 18,
                 cap: int = 32 << 20) -> list[ParetoPoint]:
    """FuseMax (+Binding) across array sizes at one sequence length, with the evaluation's buffer
    sizing rule: start from PE*min_P1*E*16 bytes and double until memory time is no more than
    the 1D array's compute time; the multiplier carries over to the next array size, and a
    model's sweep ends after a point whose buffer exceeds 32 MiB (as in the generating commit)."""
    c = load_cascade("attention-1pass")
    b = load_binding("fusemax", c)
    base = load_architecture("fusemax")
    out = []
    for model in models:
        w = load_workload(model, seq)
        mult = 1
        for pe in pes:
            min_tiles = 2 * max(1, pe // w.head_dim)
            min_p1 = max(1, min_tiles // (seq // pe))
            while True:
                l3 = pe * min_p1 * w.head_dim * 8 * 2 * mult
                arch = scaled_fusemax(pe, l3, min_tiles, base)
                r = evaluate(arch, c, b, w)
                c1 = r.cycles_of("1d") / arch.clock_hz
                if r.memory_s <= c1 or mult > 1 << 20:
                    break
                mult *= 2
            out.append(ParetoPoint(model, pe, l3, r.traffic_bytes, r.memory_s, r.cycles_of("2d") / arch.clock_hz,
                                   c1, r.latency_s, r.area_breakdown_um2["array_2d"], r.area_um2))
            if l3 > cap:
                break
    return out


# ------------------------------------------------------------------------------------------------
# user sweeps
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SweepSpec:
    cascade: str
    binding: str
    arch: str
    workloads: tuple
    seqs: tuple
    arrays: tuple          # (rows, cols) or None (keep)
    buffers: tuple         # bytes or None (keep)
    bandwidths: tuple
    clocks: tuple
    sizes: tuple = ()      # (name, (values...)): rank sizes and parameters swept by name
    source: str = ""

    @property
    def size_points(self) -> list[dict]:
        names = [n for n, _ in self.sizes]
        return [dict(zip(names, combo)) for combo in itertools.product(*(v for _, v in self.sizes))] or [{}]

    @property
    def size(self) -> int:
        return (len(self.workloads) * len(self.seqs) * len(self.arrays) * len(self.buffers)
                * len(self.bandwidths) * len(self.clocks) * len(self.size_points))


def _one_or_list(tp):
    """One value or a list of them; read as a list."""
    from typing import Annotated

    from pydantic import BeforeValidator

    return Annotated[list[tp], BeforeValidator(lambda v: v if isinstance(v, list) else [v])]


_BYTES, _BANDWIDTH, _CLOCK = Quantity("bytes"), Quantity("bytes/second"), Quantity("hertz")


class _GridSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    array: _one_or_list(str) | None = None
    buffer: _one_or_list(_BYTES) | None = None
    bandwidth: _one_or_list(_BANDWIDTH) | None = None
    clock: _one_or_list(_CLOCK) | None = None

    @field_validator("array")
    @classmethod
    def _arrays(cls, v):
        out = []
        for a in _list(v):
            m = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", a)
            if not m or int(m.group(1)) <= 0 or int(m.group(2)) <= 0:
                raise ValueError(f"{a!r} is not an array shape RxC such as 256x256")
            out.append(f"{int(m.group(1))}x{int(m.group(2))}")
        return out


class _SweepModel(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    cascade: str = "attention-1pass"
    binding: str = "fusemax"
    arch: str = "fusemax"
    workloads: _one_or_list(str)
    seq: _one_or_list(int | str) = "64K"
    grid: _GridSpec = _GridSpec()
    sizes: dict[str, _one_or_list(int | str)] = {}
    params: dict[str, _one_or_list(int | str)] = {}

    @field_validator("seq")
    @classmethod
    def _seqs(cls, v):
        out = []
        for x in _list(v):
            n = count(x, "seq")
            if n <= 0:
                raise ValueError(f"a sequence length must be positive, not {x!r}")
            out.append(n)
        return out

    @field_validator("sizes", "params")
    @classmethod
    def _counts(cls, v):
        return {k: [count(x, k) for x in _list(xs)] for k, xs in v.items()}


def _list(v):
    return list(v) if isinstance(v, (list, tuple)) else [v]


def _relative(ref: str, base: Path) -> str:
    """A file named in a spec is found next to the spec; a name that is no such file is a built-in."""
    p = base / ref
    return str(p) if p.is_file() else ref


def load_sweep(path: str | Path) -> SweepSpec:
    """Read a sweep spec (see ``examples/sweep.yaml``). Files it names are found next to it.

    Raises
    ------
    ArchError
        Missing or invalid fields, named with the file, line and column.
    """
    data, marks, file = load_yaml_file(path, "sweep spec", ArchError)
    if not isinstance(data, dict):
        raise ArchError(f"{file}: a sweep spec is a YAML mapping (workloads: [...], seq: [...], grid: {{...}})")
    m = validate(_SweepModel, data, marks, file, ArchError)
    base = Path(path).resolve().parent
    g = m.grid
    arrays = [None] if g.array is None else [tuple(int(x) for x in a.split("x")) for a in g.array]
    overlap = set(m.sizes) & set(m.params)
    if overlap:
        raise ArchError(f"{file}: {', '.join(sorted(overlap))} is swept both as a size and a parameter")
    return SweepSpec(
        cascade=_relative(m.cascade, base), binding=_relative(m.binding, base), arch=_relative(m.arch, base),
        workloads=tuple(_relative(w, base) for w in _list(m.workloads)), seqs=tuple(m.seq), arrays=tuple(arrays),
        buffers=tuple(_list(g.buffer)) if g.buffer is not None else (None,),
        bandwidths=tuple(_list(g.bandwidth)) if g.bandwidth is not None else (None,),
        clocks=tuple(_list(g.clock)) if g.clock is not None else (None,),
        sizes=tuple((k, tuple(v)) for k, v in {**m.sizes, **m.params}.items()), source=file,
    )


def run_sweep(spec: SweepSpec, progress=None) -> list[dict]:
    """Evaluate the cross product; rows carry the parameters, the results and the Pareto marks
    (latency vs area, energy vs latency, per workload, sequence length and swept sizes)."""

    cascade = load_cascade(spec.cascade)
    searching = spec.binding == "search"          # map every point with the mapper
    binding = None if searching else load_binding(spec.binding, cascade)
    base = load_architecture(spec.arch)
    names = {r.name for r in cascade.ranks}
    for k, _ in spec.sizes:
        if k not in names:
            raise ArchError(f"{spec.source}: {k} is not a rank or parameter of {cascade.name} "
                            f"(its ranks: {', '.join(cascade.rank_names)})")
    rows = []
    wl = {name: load_workload(name) for name in spec.workloads}
    for wname, seq, arr, buf, extra in itertools.product(spec.workloads, spec.seqs, spec.arrays, spec.buffers,
                                                          spec.size_points):
        a = base
        if arr is not None:
            a = a.with_part("2d", rows=arr[0], cols=arr[1])
            if "1d" in a.parts():
                a = a.with_part("1d", cols=arr[1])
        if buf is not None:
            a = a.with_buffer(capacity=int(buf))
        w = wl[wname].with_seq(seq).with_sizes(extra)
        bws = [a.dram_bandwidth if b is None else b for b in spec.bandwidths]
        clks = [a.clock_hz if c is None else c for c in spec.clocks]
        common = {"workload": wl[wname].name, "seq": seq, "rows": a.part("2d").rows, "cols": a.part("2d").cols,
                  "buffer_bytes": a.buffer.capacity}
        extras = {f"size_{k}": v for k, v in extra.items()}
        rows.extend(_point_rows(a, cascade, binding, w, bws, clks, common, extras, searching, spec))
        if progress is not None:
            for _ in range(len(bws) * len(clks)):
                progress()
    groups = {}
    for k, row in enumerate(rows):
        key = (row["workload"], row["seq"]) + tuple(row.get(f"size_{n}") for n, _ in spec.sizes)
        groups.setdefault(key, []).append(k)
    for idx in groups.values():
        ok = [k for k in idx if not rows[k]["error"]]
        la = pareto_front([(rows[k]["latency_s"], rows[k]["area_um2"]) for k in ok])
        el = pareto_front([(rows[k]["energy_pJ"], rows[k]["latency_s"]) for k in ok])
        for k in idx:
            rows[k]["pareto_latency_area"] = False
            rows[k]["pareto_energy_latency"] = False
        for k, a_, b_ in zip(ok, la, el):
            rows[k]["pareto_latency_area"] = a_
            rows[k]["pareto_energy_latency"] = b_
    return rows


def _point_rows(a, cascade, binding, w, bws, clks, common, extras, searching, spec) -> list[dict]:
    """The rows of one architecture and workload over the grid's bandwidths and clocks: one
    evaluation, then numpy columns (see :mod:`einforge.arch._grid`); a search maps every point."""
    from dataclasses import replace

    from ._grid import evaluate_grid

    out = []
    try:
        if searching:
            from ._search import search

            cols = []
            for bw in bws:
                for clk in clks:
                    found = search(replace(a, dram_bandwidth=bw, clock_hz=clk), cascade, w)
                    cols.append((found.report, _binding_label(found.binding)))
            for (r, label), (bw, clk) in zip(cols, itertools.product(bws, clks)):
                out.append({**common, "bandwidth_Bps": bw, "clock_hz": clk, **extras, "binding": label,
                            "latency_s": r.latency_s, "energy_pJ": r.energy_pJ, "traffic_bytes": r.traffic_bytes,
                            "util_2d": r.util_2d, "util_1d": r.util_1d, "area_um2": r.area_um2, "error": "",
                            "warnings": "; ".join(r.warnings)})
            return out
        g = evaluate_grid(a, cascade, binding, w, bws, clks)
        warn = "; ".join(g.report.warnings)
        for k in range(len(g.bandwidth)):
            out.append({**common, "bandwidth_Bps": float(g.bandwidth[k]), "clock_hz": float(g.clock[k]), **extras,
                        "binding": binding.name, "latency_s": float(g.latency_s[k]),
                        "energy_pJ": float(np.broadcast_to(g.energy_pJ, g.bandwidth.shape)[k]),
                        "traffic_bytes": float(np.broadcast_to(g.traffic_bytes, g.bandwidth.shape)[k]),
                        "util_2d": float(g.util_2d[k]),
                        "util_1d": float(g.util_1d[k]), "area_um2": g.area_um2, "error": "", "warnings": warn})
    except ArchError as exc:
        for bw, clk in itertools.product(bws, clks):
            out.append({**common, "bandwidth_Bps": bw, "clock_hz": clk, **extras, "binding": spec.binding,
                        "latency_s": math.nan, "energy_pJ": math.nan, "traffic_bytes": math.nan,
                        "util_2d": math.nan, "util_1d": math.nan, "area_um2": a.area_um2, "error": str(exc),
                        "warnings": "; ".join(a.extrapolations())})
    return out


def _binding_label(b) -> str:
    """A searched binding in one cell: schedule, tile, and what runs on the grid."""
    grid = [lab for lab, arr in b.explicit if arr == "2d"] if b.explicit else []
    return f"{b.name}: {b.schedule}, tile {b.tile}, grid {'+'.join(grid)}" if grid else b.name


def write_table(rows: list[dict], path: str | Path) -> list[Path]:
    """CSV (and Parquet next to it when pyarrow is installed); nothing half-written on error."""
    path = Path(path)
    if not rows:
        raise ArchError("nothing to write: the sweep produced no rows")
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w", newline="") as f:
        wr = csv.DictWriter(f, fieldnames=list(rows[0]))
        wr.writeheader()
        wr.writerows(rows)
    tmp.replace(path)
    written = [path]
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(rows), path.with_suffix(".parquet"))
        written.append(path.with_suffix(".parquet"))
    except ImportError:
        pass
    return written
