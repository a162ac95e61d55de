"""The mapper: the best binding of a cascade for one design point, found by branch and bound.

The mapspace of a tiled cascade (one that streams a rank in tiles) is, for every Einsum, the array
it runs on (the PE grid or the lanes, where the array's units can compute it); the rank spread
over the columns (any query-like or batch-like rank); the tile size (keys per tile); and the
schedule (arrays overlapped as FuseMax's epoch pipeline, or one tile at a time). Cascades without
a tile are mapped with each built-in binding that applies (unfused phases through DRAM, FLAT's
fused dataflow, FuseMax's tiles where they fit).

The search is exhaustive with pruning, not sampling. For each (schedule, tile, column rank) it
prices every Einsum on each array once; an assignment's latency is at least its busier array's
load, the average of the two arrays' loads with the rest placed at their cheapest, and the DRAM
time, so a depth-first search over assignments (most expensive Einsum first) drops every subtree
whose bound cannot beat the best mapping found so far. The survivors are evaluated with the full
cost model, which also refuses what the hardware cannot do (register files, buffer).
FuseMax's own binding seeds the search, so the result is never worse than it.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from dataclasses import dataclass, field, replace

from ..einsum import Cascade, roles
from ._binding import Binding, is_layout, load_binding
from ._designs import evaluate
from ._plan import _actions
from ._report import Report
from ._spec import ArchError, Architecture
from ._workload import Workload, bind_sizes

__all__ = ["SearchResult", "search", "OBJECTIVES"]

OBJECTIVES = ("latency", "energy", "edp")
_GIVE_UP = 64     # leaves in a row failing for one reason before the rest of a subtree is assumed to


@dataclass
class SearchResult:
    """The best binding found, its report, and what the search did."""

    binding: Binding
    report: Report
    objective: str
    mapspace: int                        # mappings in the space
    evaluated: int                       # mappings the full cost model priced
    pruned: Counter                      # reason -> mappings dropped for it
    seconds: float
    seed: Report | None = None           # FuseMax's (or the first built-in) binding at this point
    front: list = field(default_factory=list)   # (latency s, energy pJ, binding) on the Pareto front
    complete: bool = True                # every mapping of the space was priced or bounded out

    def summary(self) -> str:
        """One line: what was searched, what won, and against FuseMax's own binding."""
        gain = ""
        if self.seed is not None:
            gain = (f"; {self.seed.latency_s / self.report.latency_s:.4f}x the speed and "
                    f"{self.report.energy_pJ / self.seed.energy_pJ:.4f}x the energy of the seed binding")
        proof = "the best of the whole space (complete branch and bound)" if self.complete else "best found"
        return (f"{self.mapspace} mappings, {self.evaluated} priced, "
                f"{sum(self.pruned.values())} ruled out ({', '.join(f'{n} {k}' for k, n in self.pruned.most_common())})"
                f" in {self.seconds:.2f} s: {proof}{gain}")

    def to_json(self) -> dict:
        return {"objective": self.objective, "mapspace": self.mapspace, "evaluated": self.evaluated,
                "complete": self.complete,
                "pruned": dict(self.pruned), "seconds": self.seconds, "binding": _describe(self.binding),
                "latency_s": self.report.latency_s, "energy_pJ": self.report.energy_pJ,
                "seed_latency_s": self.seed.latency_s if self.seed else None,
                "seed_energy_pJ": self.seed.energy_pJ if self.seed else None,
                "pareto": [{"latency_s": lat, "energy_pJ": en, "binding": _describe(b)} for lat, en, b in self.front],
                "report": self.report.to_json()}


def _describe(b: Binding) -> dict:
    return {"schedule": b.schedule, "tile": b.tile, "arrays": dict(b.explicit),
            "spatial": {a: {d: list(r) for d, r in dims} for a, dims in b.spatial}, "mapping": b.mapping}


def _score(r: Report, objective: str) -> float:
    return {"latency": r.latency_s, "energy": r.energy_pJ, "edp": r.latency_s * r.energy_pJ}[objective]


def search(arch: Architecture, cascade: Cascade, workload: Workload, *, objective: str = "latency",
           pinned: Binding | None = None, area_budget: float | None = None, max_energy: float | str | None = None,
           schedules: tuple = ("overlap", "sequential"), tiles: tuple | None = None, rtl: bool = False,
           progress=None) -> SearchResult:
    """The best binding of ``cascade`` for ``workload`` on ``arch``.

    Parameters
    ----------
    objective : ``latency`` (ties broken by energy), ``energy`` or ``edp`` (their product)
    pinned : evaluate this binding only (the mapspace of one point; e.g. FuseMax's, to reproduce
        the paper's numbers)
    area_budget : refuse an architecture larger than this many um^2
    max_energy : refuse mappings using more pJ than this; ``"seed"`` means no more than FuseMax's
        binding at this point (a faster mapping at no energy cost)
    schedules, tiles : restrict the space to these schedules and tile sizes (default: all)
    rtl : only placements the generated attention engine implements (the grid runs Einsums over the
        tile, the lanes run Einsums that reduce nothing), so the winner can be lowered and simulated
    progress : called with (done, total) as outer candidates finish

    Raises
    ------
    ArchError
        No mapping is valid: the message names the constraint that ruled out the last candidates.
    """
    if objective not in OBJECTIVES:
        raise ArchError(f"objective must be one of {', '.join(OBJECTIVES)}, not {objective!r}")
    if area_budget is not None and arch.area_um2 > area_budget:
        raise ArchError(f"{arch.name} takes {arch.area_um2:.4g} um2, over the area budget of {area_budget:.4g} um2")
    t0 = time.perf_counter()
    state = _State(objective)
    if pinned is not None:
        state.consider(arch, cascade, pinned, workload)
        return state.result(pinned_space=1, seconds=time.perf_counter() - t0)
    seeds = [s for s in _seeds(cascade) if not (rtl and s == "unfused")]   # the engine streams tiles
    if max_energy == "seed":
        first = _State(objective)
        first.consider(arch, cascade, load_binding(seeds[0], cascade), workload, seed=True)
        max_energy = first.seed.energy_pJ * (1 + 1e-12) if first.seed else None
    state.max_energy = max_energy
    for name in seeds:
        state.consider(arch, cascade, load_binding(name, cascade), workload, seed=name == seeds[0])
    space = len(seeds)
    if roles(cascade).tile is not None:
        space += _search_tiled(arch, cascade, workload, state, progress, schedules, tiles, rtl)
    return state.result(pinned_space=space, seconds=time.perf_counter() - t0)


def _seeds(cascade: Cascade) -> list[str]:
    if roles(cascade).tile is not None:
        return ["fusemax", "arch", "cascade", "unfused"]     # unfused: when no query rank stays resident
    return ["unfused", "flat"]


# ------------------------------------------------------------------------------------------------
# bookkeeping
# ------------------------------------------------------------------------------------------------


class _State:
    def __init__(self, objective: str):
        self.objective = objective
        self.best: tuple[float, float, Binding, Report] | None = None
        self.seed: Report | None = None
        self.evaluated = 0
        self.pruned: Counter = Counter()
        self.last_error = ""
        self.points: list[tuple[float, float, Binding]] = []
        self.max_energy: float | None = None
        self.complete = True

    def bound(self) -> float:
        """The objective value a candidate must beat."""
        return self.best[0] if self.best else math.inf

    def consider(self, arch, cascade, binding, workload, seed=False) -> Report | None:
        self.evaluated += 1
        try:
            r = evaluate(arch, cascade, binding, workload)
        except ArchError as exc:
            self.pruned[_reason(str(exc))] += 1
            self.last_error = str(exc)
            return None
        if seed and self.seed is None:
            self.seed = r
        if self.max_energy is not None and r.energy_pJ > self.max_energy:
            self.pruned["over the energy budget"] += 1
            self.last_error = f"{r.energy_pJ:.4g} pJ is over the energy budget of {self.max_energy:.4g} pJ"
            return None
        score = _score(r, self.objective)
        tie = r.energy_pJ if self.objective == "latency" else r.latency_s
        self.points.append((r.latency_s, r.energy_pJ, binding))
        if self.best is None or score < self.best[0] * (1 - 1e-12) or \
                (score <= self.best[0] * (1 + 1e-12) and tie < self.best[1]):
            self.best = (score, tie, binding, r)
        return r

    def result(self, pinned_space: int, seconds: float) -> SearchResult:
        if self.best is None:
            reasons = ", ".join(f"{n} {k}" for k, n in self.pruned.most_common())
            raise ArchError(f"no valid mapping ({reasons}); the last candidate failed with: {self.last_error}")
        _, _, b, r = self.best
        front = _pareto(self.points)
        return SearchResult(b, r, self.objective, pinned_space, self.evaluated, self.pruned, seconds, self.seed, front,
                            self.complete)


def _reason(message: str) -> str:
    for key, reason in (("register file", "register files too small"), ("does not fit", "buffer too small"),
                        ("cannot compute", "units missing"), ("no size", "sizes"), ("divide", "tile does not divide")):
        if key in message:
            return reason
    return "invalid"


def _pareto(points):
    best, out = math.inf, []
    seen = set()
    for lat, en, b in sorted(points, key=lambda x: (x[0], x[1])):
        if en < best and (lat, en) not in seen:
            out.append((lat, en, b))
            best = en
            seen.add((lat, en))
    return out


# ------------------------------------------------------------------------------------------------
# tiled cascades: branch and bound over array assignments
# ------------------------------------------------------------------------------------------------


def _movable(cascade: Cascade, arch: Architecture) -> tuple[list[str], dict[str, tuple[str, ...]]]:
    """Einsums to place, and the arrays each can run on (its operators' recipes need their units)."""
    labels, where = [], {}
    parts = arch.parts()
    for i, e in enumerate(cascade.einsums):
        lab = cascade.label(i)
        if cascade.einsum_kind(i) == "init" or is_layout(e):
            continue
        ok = []
        for part, name in parts.items():
            try:
                _actions(cascade, e, arch.array(name).units, part)
                ok.append(part)
            except ArchError:
                pass
        if not ok:
            raise ArchError(f"no array of {arch.name} can compute Einsum {lab}: its operators need units "
                            f"neither array has")
        labels.append(lab)
        where[lab] = tuple(ok)
    return labels, where


def _engine_placements(cascade: Cascade, labels, where) -> dict:
    """Placements the attention engine implements: the grid computes per key of a tile (Einsums
    over the tile rank), the lanes reduce nothing."""
    tile = roles(cascade).tile.lower()
    out = {}
    for lab in labels:
        e = cascade.einsum(lab)
        ok = tuple(p for p in where[lab] if (p == "2d" and tile in e.variables()) or (p == "1d" and not e.reduce))
        if not ok:
            raise ArchError(f"the attention engine can place Einsum {lab} on neither array")
        out[lab] = ok
    return out


def _tiles(cascade: Cascade, arch: Architecture, workload: Workload) -> list[int]:
    """Keys per tile: tiles of at most the grid's rows, half and a quarter of them, as
    :func:`einforge.arch._model.tile_choice` makes them."""
    from ._model import tile_choice

    rows, tile = arch.part("2d").rows, roles(cascade).tile
    return list(dict.fromkeys(tile_choice(cascade, workload, t)[tile] for t in (rows, rows // 2, rows // 4)))


def _columns(cascade: Cascade, workload: Workload) -> list[str]:
    """Ranks the columns (and lanes) may spread: query-like ranks, then batch-like ones."""
    r = roles(cascade)
    sizes = bind_sizes(cascade, workload, {r.tile: 1}).sizes if r.tile else {}
    cands = [x for x in r.query + r.batch if sizes.get(x, 2) > 1]
    return sorted(cands, key=lambda x: -sizes.get(x, 0)) or list(r.query + r.batch)[:1]


def _search_tiled(arch, cascade, workload, state: _State, progress, schedules, tiles, rtl=False) -> int:
    labels, where = _movable(cascade, arch)
    if rtl:
        where = _engine_placements(cascade, labels, where)
    seed = load_binding("fusemax", cascade)
    outer = [(sched, tile, col) for sched in schedules for tile in (tiles or _tiles(cascade, arch, workload))
             for col in _columns(cascade, workload)]
    space = 0
    for k, (sched, tile, col) in enumerate(outer):
        tile_rank = roles(cascade).tile
        spatial = (("2d", (("rows", (tile_rank,)), ("cols", (col,)))), ("1d", (("cols", (col,)),)))
        base = replace(seed, name="searched", schedule=sched, tile=tile, spatial=spatial, explicit=(),
                       resident_groups="balanced", description=f"searched: {sched}, tile {tile}, columns {col}")
        space += math.prod(len(where[lab]) for lab in labels)
        _branch_and_bound(arch, cascade, workload, base, labels, where, state)
        if progress is not None:
            progress(k + 1, len(outer))
    return space


def _held_per_pe(arch, cascade, workload, base) -> dict[str, float]:
    """Values of each Einsum's output that one PE of the grid keeps, if the Einsum ran there (what
    ``_check_registers`` counts), so that leaves the registers cannot hold are dropped unpriced."""
    from ._model import _by_role, _tile_sizes
    from ._plan import _loop_members, _plan, instance_ranks
    from ._traffic import reduced_across_rows

    a, b = _by_role(arch, base, arch.parts())
    labels = [cascade.label(i) for i, e in enumerate(cascade.einsums)
              if cascade.einsum_kind(i) != "init" and not is_layout(e)]
    try:
        b2 = replace(b, explicit=tuple((lab, "2d") for lab in labels))
        sizes = bind_sizes(cascade, workload, _tile_sizes(cascade, b2, a, workload)).sizes
        plan = _plan(cascade, b2, a, sizes)
    except ArchError:
        return {}
    vsize = {r.name.lower(): sizes[r.name] for r in cascade.ranks if not r.param}
    for rk, it in cascade.iterative_ranks.items():
        vsize[it.var] = int(it.bound.evaluate(sizes))
    outer = {plan.loop_var} | set(instance_ranks(plan))
    members = _loop_members(plan)
    out = {}
    for p in plan.einsums:
        if p.label not in members or cascade.tensors[p.output].iterative is not None:
            continue
        sp = {v for _, v, _ in p.spatial}
        out[p.label] = 0 if reduced_across_rows(p) else math.prod(vsize[v] for v in p.out_vars if v not in sp and v not in outer)
    return out


def _registers_fit(cascade, assign: dict, held: dict, arch, base) -> bool:
    grid = arch.part("2d")
    if not grid.rf_depth:
        return True
    on_grid = {lab for lab, p in assign.items() if p == "2d"}
    read = {a.tensor for lab in on_grid for a in cascade.einsum(lab).expr.accesses()}
    words = sum(n for lab, n in held.items() if lab in on_grid and cascade.einsum(lab).name in read)
    copies = 2 if base.schedule == "overlap" and grid.row_drain else 1
    return words * copies <= grid.rf_depth


def _costs(arch, cascade, workload, base, labels, where) -> dict[str, dict[str, tuple[float, float]]]:
    """(cycles, compute energy) of every Einsum on every array it can run on, at this point."""
    out: dict[str, dict[str, tuple[float, float]]] = {lab: {} for lab in labels}
    for part in ("2d", "1d"):
        other = "1d" if part == "2d" else "2d"
        assign = tuple((lab, part if part in where[lab] else other) for lab in labels)
        try:
            r = evaluate(arch, cascade, replace(base, explicit=_named(arch, assign)), workload)
        except ArchError:
            r = _forgiving(arch, cascade, replace(base, explicit=_named(arch, assign)), workload)
            if r is None:
                continue
        et = arch.energy
        for lab in labels:
            if part in where[lab]:
                c = r.per_einsum[lab]
                out[lab][part] = (c.cycles, sum(n * et.unit(u) for u, n in c.actions.items()))
    return out


def _forgiving(arch, cascade, binding, workload):
    """The report of a binding with the checks that depend on the whole assignment relaxed (per-
    Einsum costs do not depend on them)."""
    big = arch.with_part("2d", rf_depth=1 << 30).with_buffer(capacity=1 << 60, banks=1 << 20)
    try:
        return evaluate(big, cascade, binding, workload)
    except ArchError:
        return None


def _compulsory_seconds(arch, cascade, workload, base) -> float:
    """DRAM time of reading every input and writing every output once: no mapping is faster."""
    try:
        # unpadded (tiles of one key): a mapping that pads the streamed rank moves at least this much
        bound = bind_sizes(cascade, workload, {roles(cascade).tile: 1} if roles(cascade).tile else {})
    except ArchError:
        return 0.0
    words = 0.0
    for t in [x.name for x in cascade.inputs] + list(cascade.outputs):
        words += math.prod(bound.sizes[r] if k != cascade.tensors[t].iterative else 1
                           for k, r in enumerate(cascade.tensors[t].ranks))
    return words * bound.instances * arch.word_bytes / arch.dram_bandwidth


def _named(arch, assign):
    parts = arch.parts()
    return tuple((lab, parts[p]) for lab, p in assign)


def _branch_and_bound(arch, cascade, workload, base, labels, where, state: _State) -> None:
    costs = _costs(arch, cascade, workload, base, labels, where)
    held = _held_per_pe(arch, cascade, workload, base)
    if any(not costs[lab] for lab in labels):
        state.pruned["units missing"] += 1
        return
    order = sorted(labels, key=lambda lab: -max(c for c, _ in costs[lab].values()))
    rest_min = [0.0] * (len(order) + 1)
    rest_energy = [0.0] * (len(order) + 1)
    for i in range(len(order) - 1, -1, -1):
        rest_min[i] = rest_min[i + 1] + min(c for c, _ in costs[order[i]].values())
        rest_energy[i] = rest_energy[i + 1] + min(e for _, e in costs[order[i]].values())
    clock = arch.clock_hz
    floor = _compulsory_seconds(arch, cascade, workload, base)
    dram_energy = floor * arch.dram_bandwidth * arch.energy.dram_per_byte
    objective = state.objective
    load = {"2d": 0.0, "1d": 0.0}
    assign: dict[str, str] = {}
    streak = {"reason": None, "n": 0}      # leaves in a row that failed for one reason

    def lower_bound(i, energy):
        cycles = max(load["2d"], load["1d"], (load["2d"] + load["1d"] + rest_min[i]) / 2)
        lat, en = max(cycles / clock, floor), energy + rest_energy[i] + dram_energy
        return {"latency": lat, "energy": en, "edp": lat * en}[objective]

    def leaf():
        if not _registers_fit(cascade, assign, held, arch, base):
            state.pruned["register files too small"] += 1
            return
        b = replace(base, explicit=_named(arch, tuple((lab, assign[lab]) for lab in labels)))
        before = Counter(state.pruned)
        if state.consider(arch, cascade, b, workload) is None:
            reason = next(iter(state.pruned - before), "invalid")
            streak["n"] = streak["n"] + 1 if streak["reason"] == reason else 1
            streak["reason"] = reason
        else:
            streak["n"] = 0

    def dfs(i, energy):
        if streak["n"] >= _GIVE_UP:
            # every placement tried so far fails for one reason (a buffer too small for any of
            # them): the rest of this subtree is assumed to, and the search says it is incomplete
            state.pruned[f"{streak['reason']} (assumed)"] += math.prod(len(where[lab]) for lab in order[i:])
            state.complete = False
            return
        if lower_bound(i, energy) >= state.bound() * (1 - 1e-9):
            state.pruned["bound"] += math.prod(len(where[lab]) for lab in order[i:])
            return
        if i == len(order):
            leaf()
            return
        lab = order[i]
        for part in sorted(costs[lab], key=lambda p: load[p] + costs[lab][p][0]):
            c, e = costs[lab][part]
            load[part] += c
            assign[lab] = part
            dfs(i + 1, energy + e)
            load[part] -= c
        assign.pop(lab, None)

    dfs(0, 0.0)
