"""Array-shaped evaluation: a whole grid of buffers, DRAM bandwidths and clocks from one shape.

A design point's cycles, its arrays' accesses and compute energy do not depend on the buffer's
capacity, the DRAM bandwidth or the clock (:class:`einforge.arch._model._Shape`); the capacity
decides how many query blocks stay resident (so the key/value traffic and the buffer's energy and
area), and bandwidth and clock only the latency's memory term (``traffic / bandwidth * clock``).
So the model runs once per distinct (arrays, cascade, binding, workload), once more per buffer for
the residency, and the bandwidth x clock plane is numpy columns. Every column equals evaluating the
point alone, number for number (a property test checks it), because both paths run the same steps
in the same order.

FLAT's dataflow depends on the buffer (what spills) and on the bandwidth and clock (what is fastest):
its candidates are priced as (buffer, candidate) arrays once per array shape
(:class:`einforge.arch._flat.FlatSpace`; FLAT's own accelerator takes its table instead), the arrays'
part once per way of spreading the products, and each point takes its candidate in numpy.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from ._report import Report
from ._spec import ArchError

__all__ = ["GridColumns", "evaluate_grid"]


@dataclass(frozen=True)
class GridColumns:
    """One entry per (buffer, bandwidth, clock) triple, in row-major order of the three lists.

    ``error`` is the refusal of a point ("" when it was evaluated); refused points hold NaN. The full
    report of a point stays available from :meth:`report`.
    """

    buffer: np.ndarray
    bandwidth: np.ndarray
    clock: np.ndarray
    latency_s: np.ndarray
    compute_s: np.ndarray
    memory_s: np.ndarray
    util_2d: np.ndarray
    util_1d: np.ndarray
    energy_pJ: np.ndarray
    traffic_bytes: np.ndarray
    area_um2: np.ndarray
    error: np.ndarray               # str per point
    warnings: tuple                 # per buffer: the architecture's extrapolation warnings
    _point: object                  # k -> Report

    def __len__(self) -> int:
        return len(self.latency_s)

    @property
    def valid(self) -> np.ndarray:
        return self.error == ""

    def report(self, k: int) -> Report:
        """The whole report of point ``k`` (as :func:`einforge.arch.evaluate` gives it)."""
        if self.error[k]:
            raise ArchError(self.error[k])
        return self._point(k)


def evaluate_grid(arch, cascade, binding, workload, *, buffers=None, bandwidths=None, clocks=None) -> GridColumns:
    """Evaluate ``arch`` with every buffer capacity (bytes), DRAM bandwidth (bytes/s) and clock (Hz)
    of the three lists (each defaults to the architecture's own).

    Raises
    ------
    ArchError
        What the whole grid shares cannot be evaluated (an operator an array lacks, an unsized
        rank); a buffer too small for one block is an ``error`` entry of its points instead.
    """
    from ._model import _by_role, _finish, _named, _shape

    caps = [arch.buffer.capacity] if buffers is None else [float(c) for c in buffers]
    bws = np.asarray([arch.dram_bandwidth] if bandwidths is None else bandwidths, float)
    clks = np.asarray([arch.clock_hz] if clocks is None else clocks, float)
    archs = [arch.with_buffer(capacity=int(c)) if c != arch.buffer.capacity else arch for c in caps]
    if binding.mapping == "flat":
        return _flat_columns(archs, bws, clks, cascade, binding, workload)
    roles_ = arch.parts()
    plain = all(roles_.get(k, k) == k for k in ("2d", "1d")) and {a.name for a in arch.arrays} <= {"2d", "1d"}
    if plain:
        sh = _shape(arch, cascade, binding, workload)

        def by_role(a):
            return a

        def finish(a):
            r = _finish(sh, a)
            return replace(r, array_roles=dict(roles_)) if r.array_roles != roles_ else r
    else:
        ra, rb = _by_role(arch, binding, roles_)
        sh = _shape(ra, cascade, rb, workload)

        def by_role(a):
            return _by_role(a, binding, roles_)[0]

        def finish(a):
            return _named(_finish(sh, by_role(a)), roles_)
    if binding.schedule == "phases":
        # each phase overlaps its own compute and memory: finish the shape at every point
        return _pointwise(archs, bws, clks, finish)
    return _columns(sh, archs, [by_role(a) for a in archs], bws, clks, finish)


def _plane(n_buffers: int, bws, clks):
    """(bandwidth, clock) of every point, buffers outermost, then bandwidths, then clocks."""
    return (np.tile(np.repeat(bws, len(clks)), n_buffers), np.tile(np.tile(clks, len(bws)), n_buffers))


def _launches(archs, plane: int, family: str):
    """Each point's kernel launch (seconds) for a cascade of ``family``: its architecture's,
    repeated over its plane of bandwidths and clocks."""
    return np.repeat([a.launch_overhead_for(family) for a in archs], plane)


def _utilization(busy, cycles):
    """Busy PE-cycles over latency cycles (0 for a point that takes no time, NaN for a refused one)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(cycles > 0, busy / cycles, np.where(np.isnan(cycles), np.nan, 0.0))


def _columns(sh, archs, role_archs, bws, clks, finish) -> GridColumns:
    """Columns of a shape whose latency is max(compute, memory, buffer, link): the buffer-dependent
    numbers once per buffer, then everything in numpy over buffers x bandwidths x clocks."""
    from ._model import _buffer_point, latency_cycles
    from ._traffic import resident_blocks

    plane = len(bws) * len(clks)
    res = sh.acc.residency
    if res is not None and res.skips_tiles:
        # the tiles each resident group visits, for every buffer's group size in one pass
        groups = []
        for a in role_archs:
            try:
                groups.append(resident_blocks(res, a.buffer.capacity, a.name) * res.p0)
            except ArchError:
                pass
        sh.ctx.prepare_tile_visits(groups)
    per_buffer = np.full((len(archs), 4), np.nan)       # traffic, buffer cycles, energy, area
    errors = [""] * len(archs)
    for i, a in enumerate(role_archs):
        try:
            per_buffer[i] = _buffer_point(sh, a)
        except ArchError as exc:
            errors[i] = str(exc)
            per_buffer[i, 3] = archs[i].area_um2
    traffic, buf_cycles, energy, area = (np.repeat(per_buffer[:, j], plane) for j in range(4))
    bw, clk = _plane(len(archs), bws, clks)
    busy = {role: sum(sh.busy[p.label] for p in sh.plan.einsums if p.array == role) for role in ("2d", "1d")}
    cycles, mem_cycles = latency_cycles(sh.compute_cycles, traffic, buf_cycles, sh.link_cycles, bw, clk,
                                        _launches(archs, plane, sh.cascade.family))
    util = {role: _utilization(b, cycles) for role, b in busy.items()}

    def point(k):
        a = archs[k // plane]
        return finish(replace(a, dram_bandwidth=float(bw[k]), clock_hz=float(clk[k])))

    error = np.repeat(np.array(errors, dtype=object), plane)
    refused = error != ""
    compute = np.where(refused, np.nan, sh.compute_cycles / clk)    # the rest is NaN through the traffic
    return GridColumns(np.repeat([float(a.buffer.capacity) for a in archs], plane), bw, clk,
                       latency_s=cycles / clk, compute_s=compute, memory_s=mem_cycles / clk,
                       util_2d=util["2d"], util_1d=util["1d"], energy_pJ=energy, traffic_bytes=traffic,
                       area_um2=area, error=error, warnings=tuple(a.extrapolations() for a in archs), _point=point)


def _flat_columns(archs, bws, clks, cascade, binding, workload) -> GridColumns:
    """Columns of FLAT's mapping: per buffer, FLAT's table or the fastest candidate of its space at
    each (bandwidth, clock), every candidate priced as :func:`evaluate` prices it."""
    from ._designs import evaluate, flat_products
    from ._flat import FlatSpace, flat_dataflow, flat_table_applies
    from ._model import latency_cycles

    plane = len(bws) * len(clks)
    n = len(archs) * plane
    bw, clk = _plane(len(archs), bws, clks)
    keys = ("traffic", "buffer_cycles", "energy", "compute", "link", "busy_2d", "busy_1d")
    per = {k: np.full(n, np.nan) for k in keys}
    area = np.full(n, np.nan)
    errors = np.full(n, "", dtype=object)
    flows: list = [None] * n
    table = flat_dataflow(workload.name, workload.keys)
    logit, attend = flat_products(archs[0], cascade, binding)
    bound: dict = {}        # the buffers share their arrays: each way of spreading the products prices once
    from_table = [table is not None and flat_table_applies(a) for a in archs]
    # one space for the buffers whose candidates are searched, one per buffer FLAT's table covers
    spaces = [[i] for i, t in enumerate(from_table) if t] + [[i for i, t in enumerate(from_table) if not t]]
    for group in (g for g in spaces if g):
        try:
            space = FlatSpace([archs[i] for i in group], cascade, binding, workload, logit, attend, bound,
                              [table] if from_table[group[0]] else None)
        except ArchError as exc:
            for i in group:
                at = slice(i * plane, (i + 1) * plane)
                errors[at], area[at] = str(exc), archs[i].area_um2
            continue
        for row, i in enumerate(group):
            at = slice(i * plane, (i + 1) * plane)
            chosen = np.zeros(plane, int) if from_table[i] else space.best(bw[at], clk[at], row)
            for k in ("compute", "link", "busy_2d", "busy_1d"):
                per[k][at] = getattr(space, k)[chosen]
            for k in ("traffic", "buffer_cycles", "energy"):
                per[k][at] = getattr(space, k)[row, chosen]
            area[at] = space.area[row]
            for k in set(chosen.tolist()):
                flow = space.flow(k, row)
                for j in (np.flatnonzero(chosen == k) + i * plane).tolist():
                    flows[j] = flow
    cycles, mem_cycles = latency_cycles(per["compute"], per["traffic"], per["buffer_cycles"], per["link"], bw, clk,
                                        _launches(archs, plane, cascade.family))
    util = {role: _utilization(per[f"busy_{role}"], cycles) for role in ("2d", "1d")}

    def point(k):
        a = replace(archs[k // plane], dram_bandwidth=float(bw[k]), clock_hz=float(clk[k]))
        return evaluate(a, cascade, binding, workload, flat=flows[k])

    return GridColumns(np.repeat([float(a.buffer.capacity) for a in archs], plane), bw, clk,
                       latency_s=cycles / clk, compute_s=per["compute"] / clk, memory_s=mem_cycles / clk,
                       util_2d=util["2d"], util_1d=util["1d"], energy_pJ=per["energy"], traffic_bytes=per["traffic"],
                       area_um2=area, error=errors, warnings=tuple(a.extrapolations() for a in archs), _point=point)


def _pointwise(archs, bws, clks, run) -> GridColumns:
    """Columns from one full report per point (the phases schedule: each phase meets its own memory time)."""
    pts, errs, bufs, bw, clk = [], [], [], [], []
    for a in archs:
        for b in bws:
            for c in clks:
                p = replace(a, dram_bandwidth=float(b), clock_hz=float(c))
                bufs.append(float(a.buffer.capacity))
                bw.append(float(b))
                clk.append(float(c))
                try:
                    pts.append(run(p))
                    errs.append("")
                except ArchError as exc:
                    pts.append(None)
                    errs.append(str(exc))

    def col(key, area=False):
        return np.array([getattr(r, key) if r is not None else (a.area_um2 if area else np.nan)
                         for r, a in zip(pts, (x for x in archs for _ in range(len(bws) * len(clks))))])

    cols = {k: col(k) for k in ("latency_s", "compute_s", "memory_s", "util_2d", "util_1d", "energy_pJ",
                                "traffic_bytes")}
    return GridColumns(np.array(bufs), np.array(bw), np.array(clk), **cols, area_um2=col("area_um2", area=True),
                       error=np.array(errs, dtype=object), warnings=tuple(a.extrapolations() for a in archs),
                       _point=lambda k: pts[k])
