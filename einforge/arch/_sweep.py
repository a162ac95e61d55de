"""Design-space sweeps, Pareto fronts, and the FuseMax evaluation's array-size sweep (Fig. 12)."""

from __future__ import annotations

import csv
import hashlib
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

__all__ = ["SweepSpec", "load_sweep", "run_sweep", "sweep_columns", "sweep_groups", "evaluate_groups", "pareto_front", "scaled_fusemax", "pareto_sweep",
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
    cascades: tuple        # cascade names or files (an axis)
    bindings: tuple        # binding names, files, or "search" (an axis)
    arch: str
    workloads: tuple
    seqs: tuple
    arrays: tuple          # (rows, cols) or None (keep)
    buffers: tuple         # bytes or None (keep)
    bandwidths: tuple
    clocks: tuple
    sizes: tuple = ()      # (name, (values...)): rank sizes and parameters swept by name
    source: str = ""
    fields: tuple = ()     # (path, (values...)): any architecture field, e.g. ("2d.rf_depth", (16, 32))
    scale_with_array: bool = False   # the buffer's width and the 1D shared register file follow the array

    @property
    def cascade(self) -> str:
        """The cascade of a sweep with one (the first of several)."""
        return self.cascades[0]

    @property
    def binding(self) -> str:
        return self.bindings[0]

    @property
    def size_points(self) -> list[dict]:
        names = [n for n, _ in self.sizes]
        return [dict(zip(names, combo)) for combo in itertools.product(*(v for _, v in self.sizes))] or [{}]

    @property
    def field_points(self) -> list[tuple]:
        names = [n for n, _ in self.fields]
        return [tuple(zip(names, combo)) for combo in itertools.product(*(v for _, v in self.fields))] or [()]

    @property
    def size(self) -> int:
        return (len(self.cascades) * len(self.bindings) * len(self.workloads) * len(self.seqs) * len(self.arrays)
                * len(self.buffers) * len(self.bandwidths) * len(self.clocks) * len(self.size_points)
                * len(self.field_points))


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

    @field_validator("buffer", "bandwidth", "clock")
    @classmethod
    def _some(cls, v):
        if isinstance(v, list) and not v:
            raise ValueError("give at least one value (or leave the axis out)")
        return v

    @field_validator("array")
    @classmethod
    def _arrays(cls, v):
        if v is None:
            return None
        if isinstance(v, list) and not v:
            raise ValueError("give at least one array (or leave the axis out)")
        out = []
        for a in _list(v):
            m = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", a)
            if not m or int(m.group(1)) <= 0 or int(m.group(2)) <= 0:
                raise ValueError(f"{a!r} is not an array shape RxC such as 256x256")
            out.append(f"{int(m.group(1))}x{int(m.group(2))}")
        return out


class _SweepModel(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    cascade: _one_or_list(str) = "attention-1pass"
    binding: _one_or_list(str) = "fusemax"
    arch: str = "fusemax"
    fields: dict[str, _one_or_list(int | float | str | list)] = {}
    scale_with_array: bool = False
    workloads: _one_or_list(str)
    seq: _one_or_list(int | str) = "64K"
    grid: _GridSpec = _GridSpec()
    sizes: dict[str, _one_or_list(int | str)] = {}
    params: dict[str, _one_or_list(int | float | str)] = {}     # real-valued parameters take floats

    @field_validator("cascade", "binding", "workloads")
    @classmethod
    def _some(cls, v):
        if isinstance(v, list) and not v:
            raise ValueError("give at least one value")
        return v

    @field_validator("sizes", "params", "fields")
    @classmethod
    def _some_each(cls, v):
        for k, xs in v.items():
            if isinstance(xs, list) and not xs:
                raise ValueError(f"{k}: give at least one value")
        return v

    @field_validator("seq")
    @classmethod
    def _seqs(cls, v):
        if isinstance(v, list) and not v:
            raise ValueError("give at least one sequence length")
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
        return {k: [x if isinstance(x, float) else count(x, k) for x in _list(xs)] for k, xs in v.items()}


def _list(v):
    return list(v) if isinstance(v, (list, tuple)) else [v]


def _relative(ref: str, base: Path) -> str:
    """A file named in a spec is found next to the spec; a name that is no such file is a built-in."""
    p = base / ref
    return str(p) if p.is_file() else ref


def _mark(marks, loc) -> str:
    from ..schema import position

    pos = position(marks, loc)
    return f"{pos[0]}:{pos[1]}" if pos else "1:1"


def set_field(arch: Architecture, path: str, value) -> Architecture:
    """``arch`` with one field changed, named by path: ``2d.rf_depth`` (an array by its part or its
    name), ``buffer.banks``, ``dram_bandwidth``, ``word_bytes``...

    Raises
    ------
    ArchError
        A path that names no field (the message lists the fields there), or a value of the wrong kind.
    """
    from dataclasses import fields as dc_fields
    from dataclasses import replace

    head, _, rest = path.partition(".")
    if rest:
        if head == "buffer":
            target, apply = arch.buffer, (lambda **kw: arch.with_buffer(**kw))
        elif head in arch.parts() or head in {a.name for a in arch.arrays}:
            role = head if head in arch.parts() else next(r for r, n in arch.parts().items() if n == head)
            target, apply = arch.part(role), (lambda **kw: arch.with_part(role, **kw))
        else:
            raise ArchError(f"{path!r}: {arch.name} has no part {head!r} (parts: buffer, "
                            f"{', '.join(arch.parts())})")
        names = [f.name for f in dc_fields(target) if f.name != "name"]
        if rest not in names:
            raise ArchError(f"{path!r}: {head} has no field {rest!r} (its fields: {', '.join(names)})")
        old = getattr(target, rest)
    else:
        names = [f.name for f in dc_fields(arch) if f.name not in ("name", "arrays", "buffer", "energy", "area")]
        if path not in names:
            raise ArchError(f"{path!r} is not a field of an architecture (fields: {', '.join(names)}, or "
                            "PART.FIELD such as 2d.rf_depth, buffer.banks)")
        old = getattr(arch, path)
        apply = (lambda **kw: replace(arch, **kw))
        rest = path
    if isinstance(old, bool) or not isinstance(value, type(old)) and not (isinstance(old, float) and
                                                                            isinstance(value, int)):
        if not (isinstance(old, tuple) and isinstance(value, tuple)):
            raise ArchError(f"{path!r} takes a {type(old).__name__} (like {old!r}), not {value!r}")
    return apply(**{rest: float(value) if isinstance(old, float) else value})


def scaled_with_array(base: Architecture, rows: int, cols: int) -> Architecture:
    """The rule a sweep applies with ``scale_with_array``: the buffer delivers one 16-bit word per
    column per bank and cycle (FuseMax's Fig. 12 sweep: a buffer PE*16 bits wide), and the 1D
    array's shared register file grows with the columns; register-file depths per PE stay."""
    a = base.with_part("2d", rows=rows, cols=cols)
    if "1d" in a.parts():
        one = base.part("1d")
        a = a.with_part("1d", cols=cols, shared_rf=one.shared_rf * cols // max(one.cols, 1) if one.shared_rf else 0)
    return a.with_buffer(width_bits=cols * 16)


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
    arch = _relative(m.arch, base)
    fields = tuple((k, tuple(tuple(x) if isinstance(x, list) else x for x in _list(v))) for k, v in m.fields.items())
    probe = load_architecture(arch)
    for path, values in fields:
        for v in values:
            try:
                set_field(probe, path, v)
            except ArchError as exc:
                raise ArchError(f"{file}:{_mark(marks, ('fields', path))}: {exc}") from None
    return SweepSpec(
        cascades=tuple(_relative(c, base) for c in _list(m.cascade)),
        bindings=tuple(_relative(b, base) for b in _list(m.binding)), arch=arch,
        fields=fields, scale_with_array=m.scale_with_array,
        workloads=tuple(_relative(w, base) for w in _list(m.workloads)), seqs=tuple(m.seq), arrays=tuple(arrays),
        buffers=tuple(_list(g.buffer)) if g.buffer is not None else (None,),
        bandwidths=tuple(_list(g.bandwidth)) if g.bandwidth is not None else (None,),
        clocks=tuple(_list(g.clock)) if g.clock is not None else (None,),
        sizes=tuple((k, tuple(v)) for k, v in {**m.sizes, **m.params}.items()), source=file,
    )


PROVENANCE = ("key", "cascade", "cascade_hash", "arch", "einforge")
COLUMNS = ("workload", "seq", "rows", "cols", "buffer_bytes", "bandwidth_Bps", "clock_hz", "binding",
           "latency_s", "energy_pJ", "traffic_bytes", "util_2d", "util_1d", "area_um2", "error", "warnings",
           "pareto_latency_area", "pareto_energy_latency")


def sweep_groups(spec: SweepSpec) -> list[tuple]:
    """The units of a sweep's work: one (cascade, binding, workload, sequence length, swept sizes,
    array, architecture fields) each, evaluated as one shape over every buffer, bandwidth and clock."""
    return list(itertools.product(spec.cascades, spec.bindings, spec.workloads, spec.seqs, spec.size_points,
                                  spec.arrays, spec.field_points))


def _checked(spec: SweepSpec, cascade_ref: str | None = None):
    cascade = load_cascade(cascade_ref or spec.cascade)
    names = {r.name for r in cascade.ranks}
    for k, _ in spec.sizes:
        if k not in names:
            raise ArchError(f"{spec.source}: {k} is not a rank or parameter of {cascade.name} "
                            f"(its ranks: {', '.join(cascade.rank_names)})")
    return cascade


def group_arch(spec: SweepSpec, base: Architecture, arr, fields) -> Architecture:
    """The architecture of a group: the array (scaled by the rule when asked), then the fields."""
    a = base
    if arr is not None:
        if spec.scale_with_array:
            a = scaled_with_array(base, arr[0], arr[1])
        else:
            a = a.with_part("2d", rows=arr[0], cols=arr[1])
            if "1d" in a.parts():
                a = a.with_part("1d", cols=arr[1])
    for path, v in fields:
        a = set_field(a, path, v)
    return a


def group_key(spec: SweepSpec, group: tuple, cascade_hash: str) -> str:
    """The key of a group's points: everything that decides their results except buffer, bandwidth
    and clock (their own columns)."""
    from ._store import point_key

    casc, binding, wname, seq, extra, arr, fields = group
    return point_key({"cascade": cascade_hash, "binding": binding, "arch": spec.arch, "workload": wname, "seq": seq,
                      "sizes": extra, "array": arr, "fields": fields, "scale": spec.scale_with_array})


def evaluate_groups(spec: SweepSpec, groups: list[tuple], progress=None) -> dict[str, np.ndarray]:
    """Columns of the points of ``groups`` (see :func:`sweep_groups`), with each point's group key and
    provenance (cascade and its content hash, binding, architecture, einforge version); no Pareto
    marks (they need every point). A pure function of its arguments: it runs the same in a Dask
    worker as here."""
    from .. import __version__

    base = load_architecture(spec.arch)
    loaded: dict = {}
    parts = []
    for group in groups:
        casc_ref, bname, wname, seq, extra, arr, fields = group
        if (casc_ref, bname) not in loaded:
            cascade = _checked(spec, casc_ref)
            binding = None if bname == "search" else load_binding(bname, cascade)
            loaded[(casc_ref, bname)] = (cascade, binding, hashlib.sha256(cascade.text().encode()).hexdigest()[:16])
        cascade, binding, chash = loaded[(casc_ref, bname)]
        a = group_arch(spec, base, arr, fields)
        wl = load_workload(wname)
        w = wl.with_seq(seq).with_sizes(extra)
        bufs = [a.buffer.capacity if b is None else b for b in spec.buffers]
        bws = [a.dram_bandwidth if b is None else b for b in spec.bandwidths]
        clks = [a.clock_hz if c is None else c for c in spec.clocks]
        cols = _searched(a, cascade, w, bufs, bws, clks) if binding is None else _grid_columns(a, cascade, binding,
                                                                                               w, bufs, bws, clks)
        n = len(cols["latency_s"])
        cols.update(workload=np.full(n, wl.name, dtype=object), seq=np.full(n, seq),
                    rows=np.full(n, a.part("2d").rows), cols=np.full(n, a.part("2d").cols))
        for k, v in extra.items():
            cols[f"size_{k}"] = np.full(n, v)
        for path, v in fields:
            cols[f"field_{path}"] = np.full(n, str(v) if isinstance(v, tuple) else v)
        cols["key"] = np.full(n, group_key(spec, group, chash), dtype=object)
        cols.update(cascade=np.full(n, cascade.name, dtype=object), cascade_hash=np.full(n, chash, dtype=object),
                    arch=np.full(n, spec.arch, dtype=object), einforge=np.full(n, __version__, dtype=object))
        parts.append(cols)
        if progress is not None:
            progress(n)
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def sweep_columns(spec: SweepSpec, progress=None) -> dict[str, np.ndarray]:
    """Evaluate the cross product as columns (one numpy array per quantity, one entry per point):
    the parameters (``size_<R>`` for swept sizes), the results, ``error`` ("" for evaluated points),
    the Pareto marks (latency vs area, energy vs latency) within each workload, sequence length
    and swept sizes, and each point's key and provenance. Each (workload, sizes, array) is one shape
    over all buffers, bandwidths and clocks (:func:`einforge.arch._grid.evaluate_grid`); a
    ``binding: search`` sweep maps every point. Runs in this process; :func:`run_distributed`
    runs the same groups on Dask into a resumable store."""
    def advance(n):
        for _ in range(n):
            progress()

    return finish_columns(evaluate_groups(spec, sweep_groups(spec), advance if progress else None), spec)


def finish_columns(out: dict, spec: SweepSpec) -> dict[str, np.ndarray]:
    """The Pareto marks, and the columns in their documented order."""
    _mark_pareto(out, spec)
    order = [k for k in COLUMNS[:7] if k in out] + [f"size_{k}" for k, _ in spec.sizes] + \
        [f"field_{k}" for k, _ in spec.fields] + [k for k in COLUMNS[7:] if k in out] + \
        [k for k in PROVENANCE if k in out]
    return {k: out[k] for k in order}


def run_sweep(spec: SweepSpec, progress=None) -> list[dict]:
    """:func:`sweep_columns` as one dict per point (the rows of the CSV)."""
    cols = sweep_columns(spec, progress)
    keys = list(cols)
    lists = [cols[k].tolist() for k in keys]
    return [dict(zip(keys, vals)) for vals in zip(*lists)]


def _grid_columns(a, cascade, binding, w, bufs, bws, clks) -> dict:
    from ._grid import evaluate_grid

    try:
        g = evaluate_grid(a, cascade, binding, w, buffers=bufs, bandwidths=bws, clocks=clks)
    except ArchError as exc:
        # what every point shares failed: each point is refused with the same reason
        n = len(bufs) * len(bws) * len(clks)
        archs = [a.with_buffer(capacity=int(b)) for b in bufs]
        per = len(bws) * len(clks)
        return {"buffer_bytes": np.repeat(np.asarray(bufs, float), per),
                "bandwidth_Bps": np.tile(np.repeat(np.asarray(bws, float), len(clks)), len(bufs)),
                "clock_hz": np.tile(np.tile(np.asarray(clks, float), len(bws)), len(bufs)),
                "binding": np.full(n, binding.name, dtype=object),
                **{k: np.full(n, np.nan) for k in ("latency_s", "energy_pJ", "traffic_bytes", "util_2d", "util_1d")},
                "area_um2": np.repeat([x.area_um2 for x in archs], per),
                "error": np.full(n, str(exc), dtype=object),
                "warnings": np.repeat(np.array(["; ".join(x.extrapolations()) for x in archs], dtype=object), per)}
    per = len(bws) * len(clks)
    return {"buffer_bytes": g.buffer, "bandwidth_Bps": g.bandwidth, "clock_hz": g.clock,
            "binding": np.full(len(g), binding.name, dtype=object), "latency_s": g.latency_s,
            "energy_pJ": g.energy_pJ, "traffic_bytes": g.traffic_bytes, "util_2d": g.util_2d, "util_1d": g.util_1d,
            "area_um2": g.area_um2, "error": g.error,
            "warnings": np.repeat(np.array(["; ".join(x) for x in g.warnings], dtype=object), per)}


def _searched(a, cascade, w, bufs, bws, clks) -> dict:
    """Columns of a sweep that maps every point with the mapper."""
    from dataclasses import replace

    from ._search import search

    rows = []
    for buf, bw, clk in itertools.product(bufs, bws, clks):
        p = replace(a.with_buffer(capacity=int(buf)), dram_bandwidth=bw, clock_hz=clk)
        try:
            found = search(p, cascade, w)
            r = found.report
            rows.append((buf, bw, clk, _binding_label(found.binding), r.latency_s, r.energy_pJ, r.traffic_bytes,
                         r.util_2d, r.util_1d, r.area_um2, "", "; ".join(r.warnings)))
        except ArchError as exc:
            rows.append((buf, bw, clk, "search", math.nan, math.nan, math.nan, math.nan, math.nan, p.area_um2,
                         str(exc), "; ".join(p.extrapolations())))
    keys = ("buffer_bytes", "bandwidth_Bps", "clock_hz", "binding", "latency_s", "energy_pJ", "traffic_bytes",
            "util_2d", "util_1d", "area_um2", "error", "warnings")
    return {k: np.array([r[i] for r in rows], dtype=object if k in ("binding", "error", "warnings") else float)
            for i, k in enumerate(keys)}


def _pareto_mask(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """:func:`pareto_front` over columns: sorted by (x, y), a point is on the front when its y is
    below every y before it."""
    order = np.lexsort((y, x))
    ys = y[order]
    before = np.concatenate([[np.inf], np.minimum.accumulate(ys)[:-1]])
    out = np.zeros(len(x), bool)
    out[order] = ys < before
    return out


def _mark_pareto(cols: dict, spec: SweepSpec) -> None:
    n = len(cols["latency_s"])
    cols["pareto_latency_area"] = np.zeros(n, bool)
    cols["pareto_energy_latency"] = np.zeros(n, bool)
    keys = [cols["workload"], cols["seq"]] + [cols[f"size_{k}"] for k, _ in spec.sizes]
    groups: dict = {}
    for i, key in enumerate(zip(*keys)):
        groups.setdefault(key, []).append(i)
    ok = cols["error"] == ""
    for idx in groups.values():
        idx = np.asarray(idx)
        idx = idx[ok[idx]]
        if not len(idx):
            continue
        lat = cols["latency_s"][idx]
        cols["pareto_latency_area"][idx] = _pareto_mask(lat, cols["area_um2"][idx])
        cols["pareto_energy_latency"][idx] = _pareto_mask(cols["energy_pJ"][idx], lat)


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
