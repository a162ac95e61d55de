"""The cost model: (architecture, cascade, binding, workload) -> latency, utilization, traffic,
energy and area. A pure function of the cascade IR; it never names an Einsum.

How each number is made
-----------------------
* **Operations.** Every Einsum's expression is priced on the array it is bound to: each operator
  takes the first recipe of the operator table whose units the array's PEs have (exp is one action
  of an exp unit, or 6 MACs); a product summed over a rank is one MAC per point. An array that
  issues sequentially spends one cycle per action, a pipelined one the most actions of one unit.
* **Cycles.** Points of the iteration space divided by the PEs the mapping spreads it over: each
  array dimension takes the first of its candidate ranks the Einsum has (rows: the tile rank M0,
  columns: queries P); a rank larger than the dimension is folded in time.
* **Latency.** ``overlap``: the busiest array (the FuseMax epoch pipeline keeps both busy);
  ``sequential``: one tile at a time, Einsums list-scheduled on their arrays as their inputs become
  ready, with the drain of a row reduction down the 2D array exposed when the 1D array needs it;
  ``phases``: each phase alone, its memory and compute overlapped. Latency is at least memory time.
* **Traffic and buffer accesses** follow the mapping: ``tiled`` (FuseMax: queries resident P1*P0
  at a time, key/value tiles streamed once per query block), ``flat`` (FLAT's dataflow table) or
  ``unfused`` (every phase through DRAM).
* **Energy** is actions times energy per action (``data/energy_45nm.yaml``), broken down by
  component and Einsum; **area** comes from the architecture's area table.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, replace

from ..einsum import Cascade, roles
from ._binding import Binding
from ._context import _Ctx
from ._energy import compute_energy, memory_breakdown, memory_energy
from ._plan import _plan, instance_ranks
from ._report import EinsumCost, Report
from ._spec import ArchError, Architecture
from ._traffic import (
    _buffer_cycles,
    _check_registers,
    _flat,
    _largest_divisor,
    _link_cycles,
    _phases,
    _tiled,
    _unfused,
    balanced_tiles,
    resident,
)
from ._workload import Workload, bind_sizes
from .schedule import _pipeline_fill, _pipelined_time, _sequential_time

__all__ = ["Report", "EinsumCost", "evaluate"]


def _tile_sizes(cascade: Cascade, binding: Binding, arch: Architecture, workload: Workload) -> dict:
    """The tile: as many keys as the 2D array has rows (fewer if the sequence is shorter), as
    :func:`tile_choice` makes it; the unfused mapping runs each phase whole, so any size costs the
    same there and the largest dividing tile serves."""
    r = roles(cascade)
    if binding.mapping not in ("tiled", "unfused") or r.tile is None or r.tile in dict(workload.sizes):
        return {}
    rows = arch.array("2d").rows
    if binding.tile is not None and binding.tile > rows:
        raise ArchError(f"binding {binding.name}: a tile of {binding.tile} keys does not fit the grid's {rows} rows")
    return tile_choice(cascade, workload, binding.tile or rows, pad=binding.mapping == "tiled")


def tile_choice(cascade: Cascade, workload: Workload, most: int, pad: bool = True) -> dict:
    """Sizes a tiled mapping fixes for tiles of at most ``most`` keys: the fewest tiles, as equal as
    can be, the streamed rank padded to a whole number of them when they do not divide it (2049
    keys: 9 tiles of 228 and 3 keys of padding; a filter such as a causal mask excludes them,
    otherwise they count as work); without ``pad``, or when the rank's size was given explicitly or
    is derived, the largest tile that divides it."""
    r = roles(cascade)
    stream = bind_sizes(cascade, workload, {r.tile: 1}).sizes.get(r.stream, most)
    cap = max(1, min(most, stream))
    if pad and _paddable(cascade, workload, r.stream):
        tile, padded = balanced_tiles(stream, cap)
        return {r.tile: tile} if padded == stream else {r.tile: tile, r.stream: padded}
    return {r.tile: _largest_divisor(stream, cap)}


def _paddable(cascade: Cascade, workload: Workload, stream: str | None) -> bool:
    """Whether the mapping may pad the streamed rank: it is sized by the workload's fields, not given
    explicitly nor derived from other sizes."""
    return stream is not None and stream not in dict(workload.sizes) and not cascade.rank(stream).derived


def tile_note(cascade: Cascade, binding: Binding, arch: Architecture, workload: Workload, sizes: dict) -> str | None:
    """What :func:`tile_choice` chose that the user did not, said for the report: padding, or tiles
    of under half the rows because an explicitly given size has no larger divisor (``None``: neither)."""
    r = roles(cascade)
    if binding.mapping != "tiled" or r.tile is None or r.tile in dict(workload.sizes) or r.stream not in sizes:
        return None
    given = bind_sizes(cascade, workload, {r.tile: 1}).sizes[r.stream]
    tile, rows = sizes[r.tile], min(binding.tile or arch.array("2d").rows, given)
    if sizes[r.stream] != given:
        return (f"{r.stream} padded from {given} to {sizes[r.stream]}: {sizes[r.stream] // tile} tiles of {tile} "
                f"(the mapping's fewest tiles that fit the rows; a filter that excludes the padding, such as a "
                f"causal mask, leaves it no work; otherwise its {sizes[r.stream] - given} elements count as work "
                f"and traffic)")
    if 2 * tile < rows:
        return (f"tiles of {tile} keys: {r.stream}={given} was given explicitly and its largest divisor of at "
                f"most {rows} is {tile}; leave {r.stream} to the workload's fields to pad it to whole tiles, or "
                f"give a size with a larger divisor")
    return None


def _by_role(arch: Architecture, binding: Binding, roles_: dict[str, str]) -> tuple[Architecture, Binding]:
    """The architecture and binding with arrays named by their parts ("2d", "1d")."""
    from dataclasses import replace

    to_role = {name: role for role, name in roles_.items()}

    def key(name):
        if name in to_role:
            return to_role[name]
        if name in roles_:
            return name
        raise ArchError(f"binding {binding.name} names array {name!r}, which {arch.name} lacks "
                        f"(its arrays: {', '.join(a.name for a in arch.arrays)})")

    if all(to_role[x.name] == x.name for x in arch.arrays):     # named by their roles already
        for arr in [a for _, a in binding.explicit] + [a for a, _ in binding.issue + binding.spatial]:
            key(arr)
        return arch, binding
    a = replace(arch, arrays=tuple(replace(x, name=to_role[x.name]) for x in arch.arrays))
    b = replace(binding, explicit=tuple((lab, key(arr)) for lab, arr in binding.explicit),
                issue=tuple((key(arr), v) for arr, v in binding.issue),
                spatial=tuple((key(arr), dims) for arr, dims in binding.spatial))
    return a, b


def _named(r: Report, roles_: dict[str, str]) -> Report:
    """A report computed with role-named arrays, with the architecture's names put back."""
    from dataclasses import replace

    def n(k):
        return roles_.get(k, k)

    def rekey(d, prefix):
        out = {}
        for k, v in d.items():
            for role, name in roles_.items():
                if k == f"{prefix}{role}":
                    k = f"{prefix}{name}"
                    break
            out[k] = v
        return out

    per = {lab: replace(c, array=n(c.array) if c.array else None) for lab, c in r.per_einsum.items()}
    energy = rekey(rekey(r.energy_breakdown_pJ, "pe_rf_"), "shared_rf_")
    area = rekey(rekey(r.area_breakdown_um2, "array_"), "shared_rf_")
    return replace(r, util={n(k): v for k, v in r.util.items()}, cycles={n(k): v for k, v in r.cycles.items()},
                   per_einsum=per, energy_breakdown_pJ=energy, area_breakdown_um2=area, array_roles=dict(roles_))


def evaluate(arch: Architecture, cascade: Cascade, binding: Binding, workload: Workload,
             *, flat_dataflow: dict | None = None, design: str | None = None) -> Report:
    """Cost of running ``cascade`` for ``workload`` on ``arch`` as ``binding`` says.

    Raises
    ------
    ArchError
        A size the workload does not give, an operator an array cannot compute, a mapping that
        does not fit the buffer.
    """
    roles_ = arch.parts()
    if _named_by_role(arch, roles_):
        r = _evaluate(arch, cascade, binding, workload, flat_dataflow=flat_dataflow, design=design)
        return replace(r, array_roles=dict(roles_)) if r.array_roles != roles_ else r
    a, b = _by_role(arch, binding, roles_)
    return _named(_evaluate(a, cascade, b, workload, flat_dataflow=flat_dataflow, design=design), roles_)


def _named_by_role(arch: Architecture, roles_: dict[str, str]) -> bool:
    return all(roles_.get(k, k) == k for k in ("2d", "1d")) and {a.name for a in arch.arrays} <= {"2d", "1d"}


def _price(arch: Architecture, cascade: Cascade, binding: Binding, workload: Workload) -> tuple[float, float, float]:
    """(latency s, energy pJ, DRAM bytes) of a design point whose mapping is not FLAT's (see
    :func:`einforge.arch.price`)."""
    roles_ = arch.parts()
    a, b = (arch, binding) if _named_by_role(arch, roles_) else _by_role(arch, binding, roles_)
    sh = _shape(a, cascade, b, workload)
    acc, traffic, buffer_cycles = _memory_side(sh, a)
    _, latency, _ = _timing(sh, a, acc, traffic, buffer_cycles)
    energy = sum(memory_breakdown(sh.energy[0], a, acc, traffic).values())
    return latency / a.clock_hz, energy, traffic


@dataclass(frozen=True)
class _Shape:
    """Everything about a design point that its buffer capacity, DRAM bandwidth and clock do not
    change: the plan bound to sizes, each Einsum's cycles, the accesses of the mapping (a tiled
    mapping's residency left to the buffer), the arrays' compute time and the compute energy. One
    shape serves a whole grid of buffers, bandwidths and clocks (:mod:`einforge.arch._grid`)."""

    cascade: Cascade
    binding: Binding
    workload: Workload
    bound: object
    plan: object
    ctx: object
    cycles: dict
    busy: dict
    load: Counter
    acc: object
    link_cycles: float
    compute_cycles: float | None        # None for the phases schedule (each phase meets its memory time)
    energy: tuple                       # (compute-side pJ by component, by Einsum, actions by Einsum)


def _bind(arch: Architecture, cascade: Cascade, binding: Binding, workload: Workload) -> tuple:
    """(sizes bound, plan, context, cycles and busy PE-cycles per Einsum, cycles per array): the part
    of a shape that the mapping's placement of tensors does not change (FLAT's search reuses it
    across candidates that spread the Einsums the same way)."""
    bound = bind_sizes(cascade, workload, _tile_sizes(cascade, binding, arch, workload))
    sizes, inst = bound.sizes, bound.instances
    plan = _plan(cascade, binding, arch, sizes)
    ctx = _Ctx(plan, arch, sizes, inst, binding.skip_empty_tiles and binding.mapping == "tiled")
    cyc, busy = {}, {}
    for p in plan.einsums:
        cyc[p.label], busy[p.label] = ctx.cycles(p)
    load = Counter()
    for p in plan.einsums:
        if p.array:
            load[p.array] += cyc[p.label]
    return bound, plan, ctx, cyc, busy, load


def _shape(arch: Architecture, cascade: Cascade, binding: Binding, workload: Workload,
           flat_dataflow: dict | None = None, bound: tuple | None = None, accesses=None) -> _Shape:
    """``bound`` and ``accesses``, when given, are :func:`_bind`'s result and the mapping's accesses
    as the caller already made them."""
    bound, plan, ctx, cyc, busy, load = bound or _bind(arch, cascade, binding, workload)
    acc = accesses if accesses is not None else _accesses(ctx, plan, binding, flat_dataflow)
    _check_registers(plan, ctx, binding)
    compute = None if binding.schedule == "phases" else _compute_time(plan, ctx, binding, acc, cyc, load)
    return _Shape(cascade, binding, workload, bound, plan, ctx, cyc, busy, load, acc, _link_cycles(plan, ctx),
                  compute, compute_energy(plan, ctx, acc))


def _evaluate(arch: Architecture, cascade: Cascade, binding: Binding, workload: Workload,
              *, flat_dataflow: dict | None = None, design: str | None = None) -> Report:
    return _finish(_shape(arch, cascade, binding, workload, flat_dataflow), arch, design)


def _memory_side(sh: _Shape, arch: Architecture):
    """(accesses, DRAM traffic in bytes, global-buffer cycles) of a shape with ``arch``'s buffer."""
    acc = resident(sh.acc, sh.ctx, arch.buffer.capacity, arch.name) if sh.acc.residency is not None else sh.acc
    return acc, acc.traffic_words * arch.word_bytes, _buffer_cycles(arch, acc)


def _buffer_point(sh: _Shape, arch: Architecture) -> tuple[float, float, float, float]:
    """(traffic bytes, buffer cycles, energy pJ, area um^2) of a shape with ``arch``'s buffer: the
    numbers a grid needs per buffer, made exactly as :func:`_finish` makes them."""
    acc, traffic, buffer_cycles = _memory_side(sh, arch)
    return (traffic, buffer_cycles, sum(memory_breakdown(sh.energy[0], arch, acc, traffic).values()),
            sum(arch.area_breakdown().values()))


def latency_cycles(compute, traffic_bytes, buffer_cycles, link_cycles, bandwidth, clock, launch_s=0.0):
    """(latency, memory) cycles of a point whose arrays, DRAM, global buffer and grid-lane link all
    overlap: the slowest of the four, after the kernel's launch (``launch_s`` seconds, which nothing
    overlaps). Floats or numpy arrays (a grid's columns, a search's candidates)."""
    mem = traffic_bytes / bandwidth * clock
    terms = (compute, mem, buffer_cycles, link_cycles)
    if not any(hasattr(t, "shape") for t in terms):
        return max(terms) + launch_s * clock, mem          # a single point needs no numpy
    import numpy as np

    slowest = np.maximum(np.maximum(np.maximum(compute, mem), buffer_cycles), link_cycles)
    return slowest + launch_s * clock, mem


def _timing(sh: _Shape, arch: Architecture, acc, traffic: float, buffer_cycles: float) -> tuple[float, float, float]:
    """(compute, latency, DRAM) cycles of a shape on ``arch`` with the accesses its buffer makes."""
    if sh.compute_cycles is None:
        compute_cycles, latency = _phases_time(sh.plan, arch, acc, sh.cycles)
        return compute_cycles, latency, traffic / arch.dram_bandwidth * arch.clock_hz
    latency, mem_cycles = latency_cycles(sh.compute_cycles, traffic, buffer_cycles, sh.link_cycles,
                                         arch.dram_bandwidth, arch.clock_hz,
                                         arch.launch_overhead_for(sh.cascade.family))
    return sh.compute_cycles, latency, mem_cycles


def _finish(sh: _Shape, arch: Architecture, design: str | None = None) -> Report:
    """The report of a shape on ``arch`` (its buffer, DRAM bandwidth and clock)."""
    plan, ctx, binding = sh.plan, sh.ctx, sh.binding
    acc, traffic, buffer_cycles = _memory_side(sh, arch)
    details = dict(acc.details)
    details["buffer_cycles"] = buffer_cycles
    details["link_cycles"] = sh.link_cycles
    details["launch_overhead_s"] = arch.launch_overhead_for(sh.cascade.family)
    compute_cycles, latency, mem_cycles = _timing(sh, arch, acc, traffic, buffer_cycles)
    busy_of = {a.name: sum(sh.busy[p.label] for p in plan.einsums if p.array == a.name) for a in arch.arrays}
    util = {a: (b / latency if latency else 0.0) for a, b in busy_of.items()}
    breakdown, per_e_energy, actions_all = memory_energy(sh.energy, arch, acc, traffic)
    total = sum(breakdown.values())
    pe_rf = sum(v for k, v in breakdown.items() if k.startswith("pe_rf_"))
    per = {p.label: EinsumCost(p.label, p.array, sh.cycles[p.label], sh.busy[p.label], actions_all.get(p.label, {}),
                               per_e_energy.get(p.label, 0.0)) for p in plan.einsums}
    area = arch.area_breakdown()
    f = arch.clock_hz
    inst = sh.bound.instances
    details.update(latency_cycles=latency, compute_cycles=compute_cycles, memory_cycles=mem_cycles,
                   instances=inst, energy_without_pe_rf_pJ=total - pe_rf,
                   l3_reads_words=acc.l3_reads, l3_writes_words=acc.l3_writes,
                   shared_rf_reads=acc.shared_rf_reads, shared_rf_writes=acc.shared_rf_writes,
                   busy_2d=busy_of.get("2d", 0.0), busy_1d=busy_of.get("1d", 0.0))
    for k, v in ctx.sizes.items():
        details[f"size_{k}"] = v
    return Report(
        design=design or f"{sh.cascade.name}/{binding.name}@{arch.name}:{sh.workload.label}",
        latency_s=latency / f, compute_s=compute_cycles / f, memory_s=mem_cycles / f,
        traffic_bytes=traffic, util=util, per_einsum=per, energy_pJ=total, energy_breakdown_pJ=breakdown,
        area_um2=sum(area.values()), area_breakdown_um2=area, cycles=dict(sh.load), details=details,
        sizes=dict(ctx.sizes), size_origin=dict(sh.bound.origin), instances=inst,
        warnings=arch.extrapolations() + _notes(tile_note(sh.cascade, binding, arch, sh.workload, ctx.sizes)),
    )


def _notes(*notes) -> tuple[str, ...]:
    return tuple(n for n in notes if n)


def _accesses(ctx, plan, binding: Binding, flat_dataflow):
    """Traffic and buffer/register accesses of the binding's mapping."""
    if binding.mapping == "tiled":
        return _tiled(ctx, plan, binding)
    if binding.mapping == "unfused":
        return _unfused(ctx, plan)
    if flat_dataflow is None:
        raise ArchError("the FLAT mapping needs a dataflow (from flat_dataflow() or a search)")
    return _flat(ctx, plan, flat_dataflow)


def _phases_time(plan, arch: Architecture, acc, cyc) -> tuple[float, float]:
    """(compute cycles, latency cycles) of the phases schedule: each phase through DRAM takes its
    compute or its memory time."""
    total = comp = 0.0
    phase_words = dict(acc.phases)
    for phase in _phases(plan):
        labels = tuple(sorted(p.label for p in phase))
        pc = sum(cyc[p.label] for p in phase)
        pm = phase_words.get(labels, 0.0) * arch.word_bytes / arch.dram_bandwidth * arch.clock_hz
        total += max(pc, pm)
        comp += pc
    return comp, total + arch.launch_overhead_for(plan.cascade.family) * arch.clock_hz


def _compute_time(plan, ctx, binding: Binding, acc, cyc, load) -> float:
    """Compute cycles of the arrays' schedule (latency is at least this, DRAM's time, the global
    buffer's and the grid-lane link's)."""
    arch = ctx.arch
    blocks = math.prod(ctx.vsize[v] for v in instance_ranks(plan)) * ctx.inst
    if plan.row_rank:
        blocks *= max(1, math.ceil(ctx.sizes[plan.row_rank] / (acc.details.get("P0") or 1)))
    tiles = (ctx.vsize.get(plan.loop_var, 1) if plan.loop_var else 1) * ctx.visits
    if binding.schedule == "sequential":
        return _sequential_time(plan, cyc, tiles * blocks, arch.array("2d").row_drain)
    if arch.array("2d").row_drain and plan.loop_var:
        return _pipelined_time(plan, cyc, tiles * blocks, blocks)
    return max(load.values(), default=0.0) + _pipeline_fill(plan, cyc, ctx, load)
