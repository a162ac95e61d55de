"""Design-space sweeps, Pareto fronts, and the FuseMax evaluation's array-size sweep (Fig. 12)."""

from __future__ import annotations

import csv
import itertools
import math
from dataclasses import dataclass
from pathlib import Path

import yaml

from ..einsum import load_cascade
from ._binding import load_binding
from ._designs import evaluate
from ._spec import ArchError, Architecture, load_architecture, parse_quantity
from ._workload import load_workload, parse_seq, seq_label

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
    a = a.with_array("2d", rows=pe, cols=pe, rf_depth=2 * min_tiles)
    a = a.with_array("1d", cols=pe, rf_depth=8 * min_tiles, shared_rf=8 * pe * min_tiles)
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
                c1 = r.cycles.get("1d", 0.0) / arch.clock_hz
                if r.memory_s <= c1 or mult > 1 << 20:
                    break
                mult *= 2
            out.append(ParetoPoint(model, pe, l3, r.traffic_bytes, r.memory_s, r.cycles.get("2d", 0.0) / arch.clock_hz,
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
    arrays: tuple          # (rows, cols)
    buffers: tuple         # bytes or None (keep)
    bandwidths: tuple
    clocks: tuple
    source: str = ""

    @property
    def size(self) -> int:
        return (len(self.workloads) * len(self.seqs) * len(self.arrays) * len(self.buffers)
                * len(self.bandwidths) * len(self.clocks))


def _list(v):
    return list(v) if isinstance(v, (list, tuple)) else [v]


def load_sweep(path: str | Path) -> SweepSpec:
    """Read a sweep spec (see ``examples/sweep.yaml``).

    Raises
    ------
    ArchError
        Missing or invalid fields, named with the file.
    """
    p = Path(path)
    try:
        d = yaml.safe_load(p.read_text())
    except FileNotFoundError:
        raise ArchError(f"cannot read sweep spec {p}: no such file") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{p}:{mark.line + 1}:{mark.column + 1}" if mark else str(p)
        raise ArchError(f"{where}: invalid YAML: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(d, dict):
        raise ArchError(f"{p}: a sweep spec is a YAML mapping")
    where = f"{p}: "
    known = {"cascade", "binding", "arch", "workloads", "seq", "grid"}
    bad = set(d) - known
    if bad:
        raise ArchError(f"{where}unknown field(s) {', '.join(sorted(bad))}; fields: {', '.join(sorted(known))}")
    grid = d.get("grid") or {}
    badg = set(grid) - {"array", "buffer", "bandwidth", "clock"}
    if badg:
        raise ArchError(f"{where}grid: unknown field(s) {', '.join(sorted(badg))}; use array, buffer, bandwidth, clock")
    arrays = []
    for a in _list(grid.get("array", [None])):
        if a is None:
            arrays.append(None)
            continue
        try:
            r, c_ = (int(x) for x in str(a).lower().split("x"))
        except ValueError:
            raise ArchError(f"{where}grid.array: {a!r} is not RxC such as 256x256") from None
        arrays.append((r, c_))
    if "workloads" not in d:
        raise ArchError(f"{where}missing `workloads` (e.g. [BERT, XLM])")
    return SweepSpec(
        cascade=str(d.get("cascade", "attention-1pass")), binding=str(d.get("binding", "fusemax")),
        arch=str(d.get("arch", "fusemax")), workloads=tuple(_list(d["workloads"])),
        seqs=tuple(parse_seq(s) for s in _list(d.get("seq", ["64K"]))), arrays=tuple(arrays),
        buffers=tuple(None if b is None else parse_quantity(b, "buffer", where) for b in _list(grid.get("buffer", [None]))),
        bandwidths=tuple(None if b is None else parse_quantity(b, "bandwidth", where) for b in _list(grid.get("bandwidth", [None]))),
        clocks=tuple(None if c_ is None else parse_quantity(c_, "clock", where) for c_ in _list(grid.get("clock", [None]))),
        source=str(p),
    )


def run_sweep(spec: SweepSpec, progress=None) -> list[dict]:
    """Evaluate the cross product; rows carry the parameters, the results and the Pareto marks
    (latency vs area, energy vs latency, per workload and sequence length)."""
    from dataclasses import replace

    cascade = load_cascade(spec.cascade)
    binding = load_binding(spec.binding, cascade)
    base = load_architecture(spec.arch)
    rows = []
    wl = {name: load_workload(name) for name in spec.workloads}
    for wname, seq, arr, buf, bw, clk in itertools.product(spec.workloads, spec.seqs, spec.arrays, spec.buffers,
                                                            spec.bandwidths, spec.clocks):
        a = base
        if arr is not None:
            a = a.with_array("2d", rows=arr[0], cols=arr[1])
            if any(x.name == "1d" for x in a.arrays):
                a = a.with_array("1d", cols=arr[1])
        if buf is not None:
            a = a.with_buffer(capacity=int(buf))
        if bw is not None:
            a = replace(a, dram_bandwidth=bw)
        if clk is not None:
            a = replace(a, clock_hz=clk)
        w = wl[wname].with_seq(seq)
        row = {"workload": wname, "seq": seq_label(seq), "rows": a.array("2d").rows, "cols": a.array("2d").cols,
               "buffer_bytes": a.buffer.capacity, "bandwidth_Bps": a.dram_bandwidth, "clock_hz": a.clock_hz}
        try:
            r = evaluate(a, cascade, binding, w)
            row.update(latency_s=r.latency_s, energy_pJ=r.energy_pJ, traffic_bytes=r.traffic_bytes,
                       util_2d=r.util_2d, util_1d=r.util_1d, area_um2=r.area_um2, error="")
        except ArchError as exc:
            row.update(latency_s=math.nan, energy_pJ=math.nan, traffic_bytes=math.nan, util_2d=math.nan,
                       util_1d=math.nan, area_um2=a.area_um2, error=str(exc))
        rows.append(row)
        if progress is not None:
            progress()
    groups = {}
    for k, row in enumerate(rows):
        groups.setdefault((row["workload"], row["seq"]), []).append(k)
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
