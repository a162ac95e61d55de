"""Schedules of the tile loop, shared by the cost model and the RTL: a list schedule of one tile and a
modulo schedule of interleaved tiles. The RTL's static schedule is this one, so its cycle count equals
the model's by construction.

This is the public face of the cost model's plan for the RTL: :func:`plan` binds a cascade onto an
architecture, and :func:`loop_members`, :func:`instance_ranks`, :func:`aliases`,
:func:`visited_tiles` and :func:`actions` read it.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache

from ..einsum import Cascade
from ._binding import Binding
from ._context import _Ctx
from ._plan import _actions, _loop_members, _Plan, _plan, _row_block, instance_ranks, plan_memo
from ._spec import Architecture

__all__ = ["Plan", "plan", "loop_members", "instance_ranks", "aliases", "visited_tiles", "actions",
           "tile_schedule", "ModuloSchedule", "modulo_schedule"]


def _drains(plan: _Plan) -> dict[tuple[str, str], int]:
    """2D row reductions whose result the 1D array needs before the 2D array can go on: the drain
    down the array's rows is exposed on that edge (edge -> rows)."""
    return plan_memo(plan, "exposed drains", lambda: _find_drains(plan))


def _find_drains(plan: _Plan) -> dict[tuple[str, str], int]:
    out = {}
    if plan.tile_rank is None:
        return out
    tv = plan.tile_rank.lower()
    by = {p.label: p for p in plan.einsums}
    g = plan.cascade
    for p in plan.einsums:
        if p.array != "2d" or tv not in p.reduced:
            continue
        rows = next((n for d, v, n in p.spatial if d == "rows"), 1)
        for s in g.successors(p.label):
            if s in by and by[s].array == "1d" and any(
                    by.get(d) is not None and by[d].array == "2d" for d in g.descendants(s)
                    if plan.loop_var in by[d].vars):
                out[(p.label, s)] = rows
    return out


def tile_schedule(plan: _Plan, per: dict[str, float], exposed_drains: bool) -> tuple[dict[str, float], float]:
    """List-schedule one tile: each Einsum of the tile loop starts when its array is free and its
    inputs are ready. Returns (start cycle of each Einsum, makespan).

    Readiness: normally the cycle after the producer's last instruction. A reduction over the 2D
    array's rows reaches the 1D array ``rows`` cycles after it is issued: with
    ``exposed_drains`` every such edge waits for it (item by item when producer and consumer
    stream the same number of items), otherwise only the edges of ``_drains`` do (the row
    reduction the 2D array waits for through the 1D array). The RTL's static schedule is this one.
    """
    start: dict[str, float] = {}
    finish: dict[str, float] = {}
    free: dict[str, float] = {}
    for lab, array, inputs in _tile_edges(plan):
        ready = 0.0
        for u, rows, crosses, drain in inputs:
            if u not in finish:
                continue
            if crosses and exposed_drains:
                streaming = per[u] == per[lab]
                ready = max(ready, start[u] + rows if streaming else finish[u] - 1 + rows)
            elif drain is not None:
                ready = max(ready, finish[u] + drain)
            else:
                ready = max(ready, finish[u])
        start[lab] = max(ready, free.get(array, 0.0))
        finish[lab] = start[lab] + per[lab]
        free[array] = finish[lab]
    return start, max(finish.values(), default=0.0)


def _tile_edges(plan: _Plan) -> tuple:
    """(label, array, inputs) of each Einsum of the tile loop in cascade order, with inputs as
    (producer, its rows, whether it reduces across the rows into the lanes, the exposed drain of
    :func:`_drains` or None): the plan's part of :func:`tile_schedule`, worked out once."""
    def build():
        members = _loop_members(plan)
        by = {p.label: p for p in plan.einsums}
        feedback = _drains(plan)
        tv = plan.tile_rank.lower() if plan.tile_rank else None
        out = []
        for lab in (x for x in plan.cascade.labels if x in members):
            inputs = []
            for u in plan.cascade.predecessors(lab):
                up = by.get(u)
                if up is None:
                    continue                      # an input: ready from the start
                rows = next((n for d, v, n in up.spatial if d == "rows"), 1)
                crosses = up.array == "2d" and tv is not None and tv in up.reduced   # through the lanes
                inputs.append((u, rows, crosses, feedback.get((u, lab))))
            out.append((lab, by[lab].array, tuple(inputs)))
        return tuple(out)

    return plan_memo(plan, "tile edges", build)


@dataclass(frozen=True)
class ModuloSchedule:
    """A software-pipelined tile loop: a new tile starts every ``ii`` cycles; ``starts`` are
    offsets from the start of a tile (they may exceed ``ii``: the Einsum then runs while later
    tiles have begun), ``depth`` the number of tiles in flight."""

    ii: int
    starts: dict
    depth: int


def modulo_schedule(plan: _Plan, per: dict[str, float]) -> ModuloSchedule:
    """Interleave consecutive tiles on hardware whose row reductions drain ``rows`` cycles late.

    Each Einsum of the tile loop is a contiguous block of instructions on its array; tiles start
    every ``ii`` cycles, so the blocks of one tile must not collide, modulo ``ii``, with those of
    the others. ``ii`` grows from the busiest array's load until every Einsum fits after its inputs
    (as in :func:`tile_schedule`) and no value is overwritten by a later tile before its last
    reader in this one, nor read before the earlier tile wrote it. Every value of a tile lives in
    one of two register copies chosen by the tile's parity (so does each iterate: the previous
    one in one bank, the current one in the other). For each ``ii`` a bounded depth-first search
    places the Einsums (complete for tile loops of attention's size); seeded random orders with
    repair are the fallback when it runs out of budget.
    """
    return _modulo_schedule(plan, tuple(sorted(per.items())))


@lru_cache(maxsize=256)
def _modulo_schedule(plan: _Plan, per_items: tuple) -> ModuloSchedule:
    per = dict(per_items)
    members = [lab for lab in plan.cascade.labels if lab in _loop_members(plan)]
    by = {p.label: p for p in plan.einsums}
    g = plan.cascade
    c = plan.cascade
    tv = plan.tile_rank.lower() if plan.tile_rank else None
    load = Counter()
    for lab in members:
        load[by[lab].array] += per[lab]
    _, flat = tile_schedule(plan, per, True)
    writers = {by[lab].output: lab for lab in members}

    def wlat(lab):
        p = by[lab]
        if p.array == "2d" and tv is not None and tv in p.reduced:
            return next((n for d, v, n in p.spatial if d == "rows"), 1) - 1
        return 0

    def readers():
        for lab in members:
            for a in by[lab].accesses:
                w = writers.get(a.tensor)
                if w is not None:
                    yield lab, w, c.access_kind(a)

    pairs = list(readers())
    preds = {lab: [u for u in g.predecessors(lab) if u in by and u in members] for lab in members}

    def ready_time(lab, start):
        ready = 0
        for u in preds[lab]:
            up = by[u]
            rows = next((n for d, v, n in up.spatial if d == "rows"), 1)
            fin = start[u] + per[u]
            if up.array == "2d" and tv is not None and tv in up.reduced:
                ready = max(ready, start[u] + rows if per[u] == per[lab] else fin - 1 + rows)
            else:
                ready = max(ready, fin)
        return int(ready)

    def place(order, ii, floor):
        table = {arr: [False] * ii for arr in load}
        start: dict[str, int] = {}
        for lab in order:
            p = by[lab]
            ready = max(floor.get(lab, 0), ready_time(lab, start))
            t = ready
            while any(table[p.array][(t + k) % ii] for k in range(int(per[lab]))):
                t += 1
                if t > ready + ii:
                    return None
            for k in range(int(per[lab])):
                table[p.array][(t + k) % ii] = True
            start[lab] = t
        return start

    def broken(x, w, kind, start, ii):
        """None if the pair is fine, else the reader's earliest legal start (False: none exists)."""
        sx, sw, lx, lw = start[x], start[w], int(per[x]), int(per[w])
        streaming = lx == lw
        first_w, last_w = sw + wlat(w), sw + lw - 1 + wlat(w)
        last_r = sx + lx - 1
        if kind == "prev":
            # written by the previous tile before this tile reads it ...
            need = (first_w - ii + 1) if streaming else (last_w - ii + 1)
            if sx < need:
                return need
        if kind in ("prev", "next", "plain"):
            # ... and not overwritten before the last read: values of a tile live in one of two
            # register copies (by the tile's parity), which the tile after next overwrites
            if first_w + 2 * ii <= (sx if streaming else last_r):
                return False
        return None

    def violations(start, ii):
        """(reader, earliest legal start or None) for every broken constraint."""
        out = []
        for x, w, kind in pairs:
            need = broken(x, w, kind, start, ii)
            if need is not None:
                out.append((x, None if need is False else need))
        return out

    touching: dict[str, list] = {lab: [] for lab in members}
    for pr in pairs:
        touching[pr[0]].append(pr)
        if pr[1] != pr[0]:
            touching[pr[1]].append(pr)

    def search(ii, budget=4000):
        """Depth-first placement in the cascade's order, each Einsum at the first free slots from
        its ready time on, backtracking on a conflict: complete up to ``budget`` placements."""
        table = {arr: [False] * ii for arr in load}
        start: dict[str, int] = {}
        count = [0]

        def rec(i):
            if i == len(members):
                return True
            lab = members[i]
            arr, n = by[lab].array, int(per[lab])
            ready = ready_time(lab, start)
            for t in range(ready, ready + (ii if n else 1)):
                slots = [(t + k) % ii for k in range(n)]
                if any(table[arr][k] for k in slots):
                    continue
                count[0] += 1
                if count[0] > budget:
                    return False
                start[lab] = t
                if all(x not in start or w not in start or broken(x, w, kind, start, ii) is None
                       for x, w, kind in touching[lab]):
                    for k in slots:
                        table[arr][k] = True
                    if rec(i + 1):
                        return True
                    for k in slots:
                        table[arr][k] = False
                del start[lab]
            return False

        found = rec(0)
        return (dict(start) if found else None), count[0] > budget

    def orders(count=48):
        """Topological orders of the tile's Einsums: the cascade's own, then seeded shuffles."""
        import random

        yield members
        rnd = random.Random(0)
        for _ in range(count):
            done, out = set(), []
            pending = list(members)
            while pending:
                avail = [x for x in pending if all(u in done for u in preds[x])]
                x = rnd.choice(avail)
                out.append(x)
                done.add(x)
                pending.remove(x)
            yield out

    def attempt(ii):
        start, exhausted = search(ii)
        if start is not None or not exhausted:
            return start               # placed, or the complete search ruled ii out
        for order in orders():
            floor: dict[str, int] = {}
            for _ in range(8):             # repair: start late readers of a loop-carried value later
                start = place(order, ii, floor)
                if start is None:
                    break
                bad = violations(start, ii)
                if not bad:
                    return start
                if any(need is None for _, need in bad):
                    break
                for x, need in bad:
                    floor[x] = max(floor.get(x, 0), need)
        return None

    # gallop up from the resource bound to a feasible ii, then bisect down to the smallest one
    lo, hi = max(1, int(max(load.values(), default=1))), int(flat)
    found: dict[int, dict] = {}
    step, ii, last_bad = 1, lo, lo - 1
    while ii <= hi:
        start = attempt(ii)
        if start is not None:
            found[ii] = start
            break
        last_bad, ii, step = ii, ii + step, step * 2
    if found:
        good = min(found)
        while good - last_bad > 1:
            mid = (good + last_bad) // 2
            start = attempt(mid)
            if start is not None:
                found[mid], good = start, mid
            else:
                last_bad = mid
        start = found[good]
        depth = max((start[lab] + int(per[lab]) - 1 + wlat(lab)) // good + 1 for lab in members)
        return ModuloSchedule(good, start, depth)
    starts, makespan = tile_schedule(plan, per, True)
    return ModuloSchedule(int(makespan), {k: int(v) for k, v in starts.items()}, 1)


def _pipelined_time(plan: _Plan, cyc: dict[str, float], steps: int, blocks: int) -> float:
    """Tiles interleaved by :func:`modulo_schedule`: each block of queries fills and drains the
    pipeline; Einsums after the tile loop follow it."""
    members = _loop_members(plan)
    per = {lab: cyc[lab] / steps for lab in members}
    ms = modulo_schedule(plan, per)
    tiles = steps / blocks          # tile steps visited per block (fewer when empty ones are skipped)
    return blocks * (tiles + ms.depth - 1) * ms.ii + sum(
        cyc[p.label] for p in plan.einsums if p.array and p.label not in members)


def _sequential_time(plan: _Plan, cyc: dict[str, float], steps: int, exposed_drains: bool = False) -> float:
    """One tile at a time. Einsums outside the tile loop fill idle time of their array, or, when
    drains are exposed (hardware without cross-tile overlap), run after the loop."""
    members = _loop_members(plan)
    per = {lab: cyc[lab] / steps for lab in members}
    _, makespan = tile_schedule(plan, per, exposed_drains)
    if exposed_drains:
        return _whole(makespan * steps + sum(cyc[p.label] for p in plan.einsums if p.array and p.label not in members))
    load = Counter()
    for p in plan.einsums:
        if p.array:
            load[p.array] += cyc[p.label]      # whole loops: no division by steps to round
    return _whole(max([makespan * steps] + list(load.values())))


def _whole(cycles: float) -> float:
    """A count of cycles that the per-step division (work / steps, back times steps) left a few
    ulps off an integer is that integer."""
    near = round(cycles)
    return float(near) if abs(cycles - near) <= 1e-9 * max(1.0, abs(cycles)) else cycles


def _pipeline_fill(plan: _Plan, cyc: dict[str, float], ctx: _Ctx, load) -> float:
    """Overlapped arrays reach their steady state (the busiest array's load) after one tile's
    dependency chain: the first tile's critical path beyond its share of that load is paid once."""
    if plan.loop_var is None:
        return 0.0
    members = _loop_members(plan)
    tiles = ctx.inst * math.prod(ctx.vsize[v] for v in (plan.loop_var,)) * ctx.visits
    blocks = 1
    rv = plan.row_rank.lower() if plan.row_rank else None
    if rv:
        blocks = math.ceil(ctx.vsize[rv] / (_row_block(plan) or 1))
    steps = tiles * blocks * math.prod(ctx.vsize[v] for v in instance_ranks(plan))
    if not steps or not members:
        return 0.0
    per = {lab: cyc[lab] / steps for lab in members}
    _, chain = tile_schedule(plan, per, False)
    busiest = max(load.values(), default=0.0) / steps
    return max(0.0, chain - busiest)


# ------------------------------------------------------------------------------------------------
# the plan, for the RTL
# ------------------------------------------------------------------------------------------------

Plan = _Plan


def plan(cascade: Cascade, binding: Binding, arch: Architecture, sizes: dict | None = None) -> _Plan:
    """The cascade bound onto ``arch`` (arrays named by their part, "2d" and "1d"): per Einsum, its
    array, actions per point and spatial ranks; the tile, column and loop ranks."""
    return _plan(cascade, binding, arch, sizes)


def loop_members(p: _Plan) -> set[str]:
    """Labels of the Einsums that run once per tile step."""
    return _loop_members(p)


def aliases(p: _Plan) -> dict[str, str]:
    """Re-layouts of inputs (``BK`` of ``K``) -> the input they copy."""
    from ._traffic import _aliases

    return _aliases(p)


def visited_tiles(p: _Plan, vsize: dict, sizes: dict, steps, blocks, block: int | None = None):
    """Which (tile step, block of queries) pairs hold work (see the cost model's tile skipping)."""
    from ._context import visited_tiles as _visited

    return _visited(p, vsize, sizes, steps, blocks, block)


def actions(cascade: Cascade, einsum, units, array: str):
    """(actions per point, actions per element of a folded operand) of an Einsum on units."""
    return _actions(cascade, einsum, units, array)
