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
from dataclasses import dataclass, field, replace
from functools import lru_cache

import networkx as nx

from ..einsum import Cascade, presence_filters, roles
from ..einsum._execute import product_factors
from ..einsum._ir import Access, Call
from ._binding import Binding, bind_arrays, is_layout
from ._spec import ArchError, Architecture
from ._workload import Workload, bind_sizes

__all__ = ["Report", "EinsumCost", "evaluate"]


# ------------------------------------------------------------------------------------------------
# results
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EinsumCost:
    label: str
    array: str | None
    cycles: float
    busy: float               # cycles x fraction of the array's PEs in use
    actions: dict
    energy_pJ: float = 0.0


@dataclass(frozen=True)
class Report:
    """Everything the cost model says about one design point."""

    design: str
    latency_s: float
    compute_s: float
    memory_s: float
    traffic_bytes: float
    util: dict                        # array -> fraction of peak
    per_einsum: dict                  # label -> EinsumCost
    energy_pJ: float
    energy_breakdown_pJ: dict
    area_um2: float
    area_breakdown_um2: dict
    cycles: dict                      # array -> busy cycles (sum over its Einsums)
    details: dict = field(default_factory=dict)
    sizes: dict = field(default_factory=dict)        # every rank and parameter the point used
    size_origin: dict = field(default_factory=dict)  # where each size came from (workload, given, mapping, default)
    instances: int = 1                               # independent copies of the cascade (batch x heads it leaves out)
    warnings: tuple = ()                             # numbers that rest on extrapolated data
    array_roles: dict = field(default_factory=lambda: {"2d": "2d", "1d": "1d"})  # part -> array name

    @property
    def util_2d(self) -> float:
        """Utilization of the PE grid (whatever the architecture calls it)."""
        return self.util.get(self.array_roles.get("2d", "2d"), 0.0)

    @property
    def util_1d(self) -> float:
        """Utilization of the row of lanes."""
        return self.util.get(self.array_roles.get("1d", "1d"), 0.0)

    def cycles_of(self, part: str) -> float:
        """Busy cycles of the grid (``"2d"``) or the lanes (``"1d"``)."""
        return self.cycles.get(self.array_roles.get(part, part), 0.0)

    def einsum_util(self, label: str, array: str | None = None) -> float:
        """An Einsum's share of the latency on ``array`` (a name, or the part "2d"/"1d")."""
        c = self.per_einsum[label]
        if array is not None and c.array not in (array, self.array_roles.get(array)):
            return 0.0
        return c.busy / self.details["latency_cycles"] if self.details["latency_cycles"] else 0.0

    def to_json(self) -> dict:
        return {
            "design": self.design,
            "latency_s": self.latency_s,
            "energy_pJ": self.energy_pJ,
            "traffic_bytes": self.traffic_bytes,
            "util_2d": self.util_2d,
            "util_1d": self.util_1d,
            "area_um2": self.area_um2,
            "compute_s": self.compute_s,
            "memory_s": self.memory_s,
            "per_einsum": {
                k: {"cycles": c.cycles, "array": c.array, "energy_pJ": c.energy_pJ,
                    "util_2d": self.einsum_util(k, "2d"), "util_1d": self.einsum_util(k, "1d")}
                for k, c in self.per_einsum.items()
            },
            "sizes": {k: {"size": v, "from": self.size_origin.get(k, "")} for k, v in self.sizes.items()},
            "instances": self.instances,
            "warnings": list(self.warnings),
            "energy_breakdown_pJ": dict(self.energy_breakdown_pJ),
            "area_breakdown_um2": dict(self.area_breakdown_um2),
            "details": {k: v for k, v in self.details.items() if isinstance(v, (int, float, str, bool))},
        }


# ------------------------------------------------------------------------------------------------
# sizes
# ------------------------------------------------------------------------------------------------

def _parent_of(r):
    from ..einsum._ir import BinOp, Sym

    if isinstance(r.size, BinOp) and r.size.op == "/" and isinstance(r.size.left, Sym):
        return r.size.left.name
    return None


# ------------------------------------------------------------------------------------------------
# static plan of a cascade on an architecture under a binding (cached)
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _E:
    label: str
    index: int
    array: str | None
    vars: tuple[str, ...]
    out_vars: tuple[str, ...]
    reduced: tuple[str, ...]
    actions: tuple[tuple[str, float], ...]
    cpp: float                        # cycles per point
    spatial: tuple[tuple[str, str, int], ...]   # (dim, var, dim size)
    accesses: tuple[Access, ...]
    output: str
    filters: tuple
    fold: tuple = ()                  # actions per element of the operand a constant factor is folded into
    fold_cpp: float = 0.0


@dataclass(frozen=True)
class _Plan:
    cascade: Cascade
    einsums: tuple[_E, ...]
    tile_rank: str | None
    row_rank: str | None              # the rank spread over the 2D columns / 1D lanes
    loop_var: str | None
    iter_bound_rank: str | None


def _recipe(op, units, einsum_name, array):
    for r in op.recipes:
        if set(r) <= set(units):
            return r
    need = " or ".join("+".join(sorted(r)) for r in op.recipes) or "a unit named " + op.name
    raise ArchError(
        f"Einsum {einsum_name} uses operator {op.name!r}, which array {array} (units: {', '.join(units)}) "
        f"cannot compute: it needs {need}; add the unit to the array or bind {einsum_name} to another array "
        f"(a binding file's arrays: section, or the cascade binding, which keeps only tensor products on 2D)")


def _is_constant(x) -> bool:
    """A value fixed before the run: a number, a size, or arithmetic on them (``1/sqrt(E)``)."""
    return not isinstance(x, Access) and not x.accesses()


def _actions(cascade: Cascade, e, units, array) -> tuple[Counter, Counter]:
    return _actions_cached(cascade, e, tuple(units), array)


@lru_cache(maxsize=4096)
def _actions_cached(cascade: Cascade, e, units, array) -> tuple[Counter, Counter]:
    """(actions per point, actions per element of the folded operand) of one Einsum.

    A sum of products is one MAC per point (one more multiply per further tensor factor). Its
    constant factors (``Q*K*(1/sqrt(E))``) are not charged per point: they are folded, once, into
    the smallest operand as it is loaded (``fold_target``), which costs one multiply per element
    of that operand and no cycles."""
    ops = cascade.operators
    counts: Counter = Counter()
    fold: Counter = Counter()
    factors = product_factors(e.expr)
    summed = any(op == "+" for _, op in e.reduce)
    tensors = [f for f in factors if isinstance(f, Access)] if factors is not None else []
    consts = [f for f in factors if not isinstance(f, Access)] if factors is not None else []
    if len(tensors) == 1 and consts:
        # a scaled tensor: the scale is folded into it (or into the result, if smaller)
        for u, n in _recipe(ops["*"], units, e.name, array).items():
            fold[u] += n
        for op in dict.fromkeys(o for _, o in e.reduce):
            for u, n in _recipe(ops[op], units, e.name, array).items():
                counts[u] += n
        return counts, fold
    if len(tensors) >= 2 and summed and "mac" in units:
        counts["mac"] += 1
        for _ in tensors[2:]:
            for u, n in _recipe(ops["*"], units, e.name, array).items():
                counts[u] += n
        if consts and tensors:
            for u, n in _recipe(ops["*"], units, e.name, array).items():
                fold[u] += n
        for op in dict.fromkeys(o for _, o in e.reduce if o != "+"):
            for u, n in _recipe(ops[op], units, e.name, array).items():
                counts[u] += n
        return counts, fold

    def walk(x):
        if _is_constant(x) or not isinstance(x, Call):
            return  # constants are folded before the run; accesses are reads
        for u, n in _recipe(ops[x.op], units, e.name, array).items():
            counts[u] += n
        for a in x.args:
            walk(a)

    walk(e.expr)
    for op in dict.fromkeys(o for _, o in e.reduce):
        for u, n in _recipe(ops[op], units, e.name, array).items():
            counts[u] += n
    return counts, fold


def _plan(cascade: Cascade, binding: Binding, arch: Architecture, sizes: dict | None = None) -> _Plan:
    """Only the arrays matter to the plan: buffers, bandwidths and clocks share it. Which rank goes
    on each array dimension is decided from the ranks' roles and, where several could, their sizes."""
    rows = next((a.rows for a in arch.arrays if a.rows > 1), 1)
    return _plan_for(cascade, binding, tuple(arch.arrays), _spatial_candidates(cascade, binding, sizes, rows))


def _by_size(ranks, sizes) -> list[str]:
    """Ranks largest first (declaration order among equals)."""
    if not sizes:
        return list(ranks)
    return sorted(ranks, key=lambda r: -sizes.get(r, 0))


def _spatial_candidates(cascade: Cascade, binding: Binding, sizes: dict | None, rows: int = 256) -> tuple:
    """(tile rank, column rank, {array dim: candidate ranks}) for the binding's mapping.

    A binding file may name candidates itself (``spatial:``); otherwise they follow the roles:
    the tiled mapping puts the tile on the 2D rows and the largest query-like rank on the columns
    and lanes (then batch-like ranks); the unfused and FLAT mappings put the largest output rank
    on the columns and, on the rows, an output rank that fills them or else the largest reduced
    rank (see :func:`_pick_rows`)."""
    r = roles(cascade)
    names = {x.name for x in cascade.ranks if not x.param}
    if binding.spatial:
        rows = binding.spatial_for("2d").get("rows", ())
        cols = binding.spatial_for("1d").get("cols", binding.spatial_for("2d").get("cols", ()))
        tile = next((x for x in rows if x in names), None) if binding.mapping == "tiled" else None
        col = next((x for x in cols if x in names), None)
        return tile, col, tuple((a, dims) for a, dims in binding.spatial)
    cols = tuple(_by_size(r.query, sizes)) + tuple(_by_size(r.batch, sizes))
    col = cols[0] if cols else None
    if binding.mapping == "tiled":
        tile = r.tile
        spatial = (("2d", (("rows", (tile,) if tile else ()), ("cols", cols))), ("1d", (("cols", cols),)))
        return tile, col, spatial
    # the rows of each 2D product depend on the sizes: decide them here, so plans stay shared
    rows_of = []
    size_of = lambda v: (sizes or {}).get(v.upper(), 0)
    for i, e in enumerate(cascade.einsums):
        lab = cascade.label(i)
        if bind_arrays(cascade, binding, None).get(lab) != "2d":
            continue
        vs, outs = e.variables(), e.output_variables()
        lc = [x.lower() for x in cols]
        pick_c = next((v for v in lc if v in outs), None) or next((v for v in lc if v in vs), None)
        pick_r = _pick_rows(vs, outs, {pick_c}, size_of, rows)
        if pick_r is not None:
            rows_of.append((lab, pick_r.upper()))
    spatial = (("2d", (("cols", cols),)), ("1d", (("cols", cols),)), ("rows", tuple(rows_of)))
    return None, col, spatial


def _pick_rows(vs, outs, used, size_of, rows) -> str | None:
    """Rows of an unfused product: an output rank that fills them keeps partial sums in the PEs;
    otherwise the reduction is spread down the rows (the largest reduced rank), else the largest
    output rank."""
    out_c = [v for v in outs if v not in used]
    red_c = [v for v in vs if v not in outs and v not in used]
    out_c.sort(key=lambda v: -size_of(v))
    red_c.sort(key=lambda v: -size_of(v))
    fill = [v for v in out_c if size_of(v) >= rows]
    if fill:
        return fill[0]
    if red_c:
        return red_c[0]
    return out_c[0] if out_c else None


@lru_cache(maxsize=512)
def _plan_for(cascade: Cascade, binding: Binding, arrays: tuple, choice: tuple) -> _Plan:
    by_name = {a.name: a for a in arrays}

    class arch:  # the slice of the architecture a plan reads
        @staticmethod
        def array(name):
            if name not in by_name:
                raise ArchError(f"binding {binding.name} uses array {name!r}, which the architecture lacks")
            return by_name[name]

    tile_rank, row_rank, spatial_cands = choice
    cands_of = {a: dict(dims) for a, dims in spatial_cands}
    arrays = bind_arrays(cascade, binding, tile_rank)
    loop_var = None
    iter_rank = None
    if cascade.iterative_ranks:
        iter_rank, it = next(iter(cascade.iterative_ranks.items()))
        loop_var = it.var
    elif tile_rank is not None:
        for r in cascade.ranks:
            if r.derived and _parent_of(r) and tile_rank in r.size.symbols() and r.name != tile_rank:
                loop_var = r.name.lower()
    row_pick = {lab: r for lab, r in cands_of.pop("rows", {}).items()} if "rows" in cands_of else {}
    overrides = dict(binding.einsum_spatial)
    present = presence_filters(cascade)      # filters that travel with the data count as the Einsum's own
    plans = []
    for i, e in enumerate(cascade.einsums):
        lab = cascade.label(i)
        arr = arrays[lab]
        vs = tuple(e.variables())
        if arr is None:
            plans.append(_E(lab, i, None, vs, tuple(e.output_variables()), tuple(v for v, _ in e.reduce), (),
                            0.0, (), tuple(e.expr.accesses()), e.name, present[lab]))
            continue
        a = arch.array(arr)
        acts, fold = _actions(cascade, e, a.units, arr)
        issue = binding.issue_for(arr, a.issue)
        cpp = float(sum(acts.values())) if issue == "sequential" else float(max(acts.values(), default=0))
        fold_cpp = float(sum(fold.values())) if issue == "sequential" else float(max(fold.values(), default=0))
        spatial = []
        used = set()
        outs = set(e.output_variables())
        if lab in overrides:
            for dim, rk in overrides[lab]:
                v = rk.lower()
                if v in vs:
                    spatial.append((dim, v, dict(a.dims)[dim]))
        else:
            for dim, size in reversed(a.dims):      # columns first: the rows may depend on them
                cands = [r.lower() for r in cands_of.get(arr, {}).get(dim, ())]
                if arr == "2d" and dim == "rows" and lab in row_pick:
                    cands = [row_pick[lab].lower()]
                pick = next((v for v in cands if v in outs and v not in used), None)
                if pick is None:
                    pick = next((v for v in cands if v in vs and v not in used), None)
                if pick is not None:
                    used.add(pick)
                    spatial.append((dim, pick, size))
            spatial.sort(key=lambda x: [d for d, _ in a.dims].index(x[0]))
        plans.append(_E(lab, i, arr, vs, tuple(e.output_variables()), tuple(v for v, _ in e.reduce),
                        tuple(sorted(acts.items())), cpp, tuple(spatial), tuple(e.expr.accesses()), e.name,
                        present[lab], tuple(sorted(fold.items())), fold_cpp))
    return _Plan(cascade, tuple(plans), tile_rank, row_rank, loop_var, iter_rank)


# ------------------------------------------------------------------------------------------------
# per-size quantities
# ------------------------------------------------------------------------------------------------


class _Ctx:
    """Sizes bound to a plan: points, cycles, tensor sizes and operand reads."""

    def __init__(self, plan: _Plan, arch: Architecture, sizes: dict[str, int], inst: int,
                 skip_empty_tiles: bool = False):
        self.plan, self.arch, self.sizes, self.inst = plan, arch, sizes, inst
        c = plan.cascade
        self.c = c
        self.vsize = {r.name.lower(): sizes[r.name] for r in c.ranks if not r.param}
        for rk, it in c.iterative_ranks.items():
            self.vsize[it.var] = int(it.bound.evaluate(sizes))
        self.density = {p.label: _filter_density(p.filters, self.vsize, sizes) if p.array else 1.0
                        for p in plan.einsums}
        # the fraction of tile-loop steps the controller visits; an Einsum of the loop works only
        # there (one with filters already counts only its present points)
        self.visits = _tile_visits(plan, self.vsize, sizes) if skip_empty_tiles else 1.0
        members = _loop_members(plan) if self.visits < 1.0 else set()
        self.visit = {p.label: self.visits if p.label in members else 1.0 for p in plan.einsums}
        self.present = {p.label: self.density[p.label] if p.filters else self.visit[p.label]
                        for p in plan.einsums}
        # who pays an array's fill and drain: the first Einsum of the tile loop on it, and each
        # Einsum outside the loop
        loop = _loop_members(plan) if plan.loop_var else set()
        firsts = {}
        for p in plan.einsums:
            if p.array and p.label in loop:
                firsts.setdefault(p.array, p.label)
        self.fills = set(firsts.values()) | {p.label for p in plan.einsums if p.array and p.label not in loop}

    def points(self, p: _E) -> float:
        return self.inst * math.prod(self.vsize[v] for v in p.vars) * self.present[p.label]

    def cycles(self, p: _E) -> tuple[float, float]:
        """(cycles, busy PE-cycles as a fraction of the array) of one Einsum."""
        if p.array is None:
            return 0.0, 0.0
        sp = {v: n for _, v, n in p.spatial}
        a = self.arch.array(p.array)
        steps = self.inst * (self.density[p.label] if a.skips_filtered and p.filters else self.visit[p.label])
        for v in p.vars:
            steps *= math.ceil(self.vsize[v] / sp[v]) if v in sp else self.vsize[v]
        frac = 1.0
        dims_used = {d for d, _, _ in p.spatial}
        for d, v, n in p.spatial:
            frac *= min(self.vsize[v], n) / n
        for d, n in a.dims:
            if d not in dims_used:
                frac *= 1.0 / n
        cyc = p.cpp * steps      # a folded constant is applied on the operand's load path: no cycles
        if a.fill_drain and p.spatial and p.label in self.fills:
            # every tile pays the skew once: operands enter one row/column late per hop, results
            # leave. A tile is one placement of the spatial ranks at one step of the tile loop; the
            # Einsum's other ranks (reduced or not), and the array's next Einsums of the same tile,
            # stream through it back to back
            inner = math.prod(self.vsize[v] for v in p.vars if v not in sp and v != self.plan.loop_var)
            tiles = steps / inner
            cyc += tiles * (a.rows + a.cols - 2)
        return cyc, cyc * frac

    def folded_elements(self, p: _E) -> float:
        """Elements of the smallest operand, which a constant factor of the product is folded into."""
        if not p.fold:
            return 0.0
        return min([self.inst * math.prod(self.vsize[v] for v in a.variables()) for a in p.accesses]
                   + [self.inst * math.prod(self.vsize[v] for v in p.out_vars)])

    def tensor_size(self, name: str) -> float:
        """Words of a tensor; an iterative one counted over its iterations (not the initial one)."""
        info = self.c.tensors[name]
        n = self.inst
        for k, r in enumerate(info.ranks):
            n *= (self.vsize[r.lower()] if k == info.iterative else self.sizes[r])
        return float(n)

    def reads(self, p: _E, a: Access, outer: set[str]) -> float:
        """Words an Einsum reads of one operand: spatial multicast, stationary reuse in the PE."""
        av = set()
        for ix in a.indices:
            av |= ix.variables()
        sp = {v: n for _, v, n in p.spatial}
        inner = [v for v in p.vars if v not in sp and v not in outer]
        n = self.inst * self.present[p.label]
        for v in p.vars:
            if v in outer:
                n *= self.vsize[v]
            elif v in sp:
                n *= self.vsize[v] if v in av else math.ceil(self.vsize[v] / sp[v])
        if av & set(inner):
            n *= math.prod(self.vsize[v] for v in inner)
        return n


def _filter_density(filters, vsize, sizes) -> float:
    """Fraction of the iteration space that passes the filters (exact for small spaces, sampled
    on a regular grid of at most 64 points per variable otherwise)."""
    if not filters:
        return 1.0
    import numpy as np

    vs = sorted({v for f in filters for v in f.variables()})
    grids = []
    for k, v in enumerate(vs):
        n = vsize[v]
        pts = np.arange(n) if n <= 64 else np.unique(np.linspace(0, n - 1, 64).round().astype(int))
        shape = [1] * len(vs)
        shape[k] = len(pts)
        grids.append(pts.reshape(shape))
    env = dict(sizes)
    env.update(dict(zip(vs, grids)))
    mask = True
    for f in filters:
        mask = mask & f.evaluate(env)
    mask = np.broadcast_to(mask, tuple(g.size for g in grids))
    return float(mask.mean())


def _tile_visits(plan: _Plan, vsize: dict, sizes: dict, block: int | None = None) -> float:
    """Fraction of (tile step, block of queries) pairs the controller visits (see
    :func:`visited_tiles`), from at most 256 sampled steps and blocks; a block with no point
    still runs one step, to produce its (empty) outputs."""
    import numpy as np

    if _over_tile(plan) is None:
        return 1.0

    def samples(n):
        return np.arange(n) if n <= 256 else np.unique(np.linspace(0, n - 1, 256).round().astype(int))

    rv = plan.row_rank.lower() if plan.row_rank else None
    block = block or _row_block(plan)
    nblk = math.ceil(vsize[rv] / block) if rv else 1
    seen = visited_tiles(plan, vsize, sizes, samples(vsize[plan.loop_var]), samples(nblk), block)
    return float(np.maximum(seen.mean(axis=0), 1.0 / vsize[plan.loop_var]).mean())


def instance_ranks(plan: _Plan) -> list[str]:
    """Variables of independent instances (batch, heads): ranks every Einsum of the tile loop
    carries in its output, other than the tile, query and loop ranks. Each instance runs the tile
    loop on its own, like the workload's B x H instances."""
    members = [p for p in plan.einsums if p.label in _loop_members(plan)]
    if not members or plan.loop_var is None:
        return []
    common = set.intersection(*(set(p.out_vars) for p in members))
    skip = {plan.loop_var} | {r.lower() for r in (plan.tile_rank, plan.row_rank) if r}
    return [v for v in members[0].out_vars if v in common and v not in skip]


def _over_tile(plan: _Plan):
    """The loop's Einsums over the tile, if every one carries filters (else no step is ever empty)."""
    if plan.tile_rank is None or plan.loop_var is None:
        return None
    tv, lv = plan.tile_rank.lower(), plan.loop_var
    over = [p for p in plan.einsums if p.array and tv in p.vars and lv in p.vars]
    return over if over and all(p.filters for p in over) else None


def _row_block(plan: _Plan) -> int:
    rv = plan.row_rank.lower() if plan.row_rank else None
    return next((n for d, v, n in _spatial_of(plan, "2d") if v == rv), 1) if rv else 1


def visited_tiles(plan: _Plan, vsize: dict, sizes: dict, steps, blocks, block: int | None = None):
    """Which (tile step, block of queries) pairs hold a present point of some Einsum over the tile:
    a boolean array over ``steps`` x ``blocks`` (index arrays); a block is ``block`` queries (by
    default the array's columns).

    Within a block, every filter's affine difference ``left - right`` takes its extremes at the
    corners of the box of its other variables, which decides each comparison exactly; a step
    counts as visited when each of some Einsum's comparisons can hold in it (exact for one
    comparison per pair of ranks, conservative otherwise: a step that holds a point is never
    skipped).
    """
    import itertools

    import numpy as np

    steps = np.asarray(steps).reshape(-1, 1)
    blocks = np.asarray(blocks).reshape(1, -1)
    over = _over_tile(plan)
    if over is None:
        return np.ones((steps.size, blocks.size), bool)
    lv = plan.loop_var
    rv = plan.row_rank.lower() if plan.row_rank else None
    p0 = block or _row_block(plan)
    visited = np.zeros((steps.size, blocks.size), bool)
    for p in over:
        present = np.ones_like(visited)
        for f in p.filters:
            box = sorted(f.variables() - {lv})
            ranges = []
            for v in box:
                if v == rv:
                    ranges.append((blocks * p0, np.minimum(blocks * p0 + p0, vsize[rv]) - 1))
                else:
                    ranges.append((0, vsize[v] - 1))
            ds = []
            for corner in itertools.product(*ranges):
                env = dict(sizes)
                env[lv] = steps
                env.update(zip(box, corner))
                ds.append(np.broadcast_to(f.left.evaluate(env) - f.right.evaluate(env), visited.shape))
            lo, hi = np.min(ds, axis=0), np.max(ds, axis=0)
            present &= {"<=": lo <= 0, "<": lo < 0, ">=": hi >= 0, ">": hi > 0,
                        "==": (lo <= 0) & (hi >= 0), "!=": ~((lo == 0) & (hi == 0))}[f.op]
        visited |= present
    return visited


# ------------------------------------------------------------------------------------------------
# schedules
# ------------------------------------------------------------------------------------------------


def _loop_members(plan: _Plan) -> set[str]:
    if plan.loop_var is None:
        return {p.label for p in plan.einsums if p.array}
    return {p.label for p in plan.einsums if p.array and plan.loop_var in p.vars}


def _drains(plan: _Plan) -> dict[tuple[str, str], int]:
    """2D row reductions whose result the 1D array needs before the 2D array can go on: the drain
    down the array's rows is exposed on that edge (edge -> rows)."""
    out = {}
    if plan.tile_rank is None:
        return out
    tv = plan.tile_rank.lower()
    by = {p.label: p for p in plan.einsums}
    g = plan.cascade.dag()
    for p in plan.einsums:
        if p.array != "2d" or tv not in p.reduced:
            continue
        rows = next((n for d, v, n in p.spatial if d == "rows"), 1)
        for s in g.successors(p.label):
            if s in by and by[s].array == "1d" and any(
                    by.get(d) is not None and by[d].array == "2d" for d in nx.descendants(g, s)
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
    members = _loop_members(plan)
    by = {p.label: p for p in plan.einsums}
    g = plan.cascade.dag()
    feedback = _drains(plan)
    tv = plan.tile_rank.lower() if plan.tile_rank else None
    start: dict[str, float] = {}
    finish: dict[str, float] = {}
    free: dict[str, float] = {}
    for lab in (x for x in plan.cascade.labels if x in members):
        p = by[lab]
        ready = 0.0
        for u in g.predecessors(lab):
            if u not in finish:
                continue
            up = by[u]
            rows = next((n for d, v, n in up.spatial if d == "rows"), 1)
            crosses = up.array == "2d" and tv is not None and tv in up.reduced   # through the lanes
            if crosses and exposed_drains:
                streaming = per[u] == per[lab]
                ready = max(ready, start[u] + rows if streaming else finish[u] - 1 + rows)
            elif (u, lab) in feedback:
                ready = max(ready, finish[u] + feedback[(u, lab)])
            else:
                ready = max(ready, finish[u])
        start[lab] = max(ready, free.get(p.array, 0.0))
        finish[lab] = start[lab] + per[lab]
        free[p.array] = finish[lab]
    return start, max(finish.values(), default=0.0)


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
    g = plan.cascade.dag()
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


def _buffer_cycles(arch: Architecture, acc) -> float:
    """Cycles the global buffer needs for its reads and writes: each of its banks moves one row of
    ``width_bits`` per cycle."""
    bits = (acc.l3_reads + acc.l3_writes) * arch.word_bytes * 8
    return bits / (arch.buffer.banks * arch.buffer.width_bits)


def _link_cycles(plan: _Plan, ctx: _Ctx) -> float:
    """Cycles the link between the PE grid and the lanes needs: every value one array produces and
    the other reads crosses it, one word per column (lane) per cycle."""
    by = {p.output: p for p in ctx.plan.einsums if p.array}
    if not any(p.array == "1d" for p in plan.einsums) or not any(p.array == "2d" for p in plan.einsums):
        return 0.0
    crossing = set()
    for p in plan.einsums:
        if p.array is None:
            continue
        for a in p.accesses:
            prod = by.get(a.tensor)
            if prod is not None and prod.array != p.array:
                crossing.add(prod.label)
    words = sum(ctx.tensor_size(by_label.output) * ctx.present[by_label.label]
                for by_label in plan.einsums if by_label.label in crossing)
    lanes = ctx.arch.array("1d").cols
    return words / lanes


def _check_registers(plan: _Plan, ctx: _Ctx, binding: Binding) -> None:
    """Values the PE grid produces and reads again within a tile stay in the PEs' register files:
    per PE, every such tensor's values that the grid's spatial ranks do not spread, for each tile
    in flight (two when tiles interleave). A mapping that does not fit is refused, so a search
    cannot win by keeping more in the PEs than they hold."""
    if binding.mapping != "tiled" or plan.loop_var is None:
        return
    try:
        grid = ctx.arch.array("2d")
    except ArchError:
        return
    members = _loop_members(plan)
    on_grid = [p for p in plan.einsums if p.array == "2d" and p.label in members]
    read_on_grid = {a.tensor for p in on_grid for a in p.accesses}
    held, words = [], 0.0
    outer = {plan.loop_var} | set(instance_ranks(plan))      # one tile of one instance at a time
    for p in on_grid:
        info = ctx.c.tensors[p.output]
        if p.output not in read_on_grid or info.iterative is not None:
            continue
        sp = {v for _, v, _ in p.spatial}
        per_pe = math.prod(ctx.vsize[v] for v in p.out_vars if v not in sp and v not in outer)
        words += per_pe
        held.append(f"{p.output}: {per_pe:g}")
    copies = 2 if binding.schedule == "overlap" and grid.row_drain else 1
    if grid.rf_depth and words * copies > grid.rf_depth:
        raise ArchError(f"binding {binding.name}: each PE of the grid would hold {words * copies:g} values of a "
                        f"tile ({', '.join(held)}{' , twice for interleaved tiles' if copies > 1 else ''}), more "
                        f"than its {grid.rf_depth}-entry register file; keep fewer of a tile's values on the "
                        "grid, or spread their ranks over it")


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
        return makespan * steps + sum(cyc[p.label] for p in plan.einsums if p.array and p.label not in members)
    load = Counter()
    for p in plan.einsums:
        if p.array:
            load[p.array] += cyc[p.label] / steps
    return max([makespan] + list(load.values())) * steps


# ------------------------------------------------------------------------------------------------
# mappings: traffic and buffer accesses
# ------------------------------------------------------------------------------------------------


@dataclass
class _Access:
    traffic_words: float = 0.0
    l3_reads: float = 0.0
    l3_writes: float = 0.0
    shared_rf_reads: float = 0.0
    shared_rf_writes: float = 0.0
    pe_rf: Counter = field(default_factory=Counter)     # (array, "read"|"write") -> accesses
    per_einsum: Counter = field(default_factory=Counter)  # (label, component) -> accesses
    details: dict = field(default_factory=dict)
    phases: list = field(default_factory=list)          # unfused: (labels, traffic words)


def _aliases(plan: _Plan) -> dict[str, str]:
    """Re-layout outputs and the input they copy (BK -> K)."""
    out = {}
    for p in plan.einsums:
        e = plan.cascade.einsums[p.index]
        if p.array is None and is_layout(e):
            src = e.expr.tensor
            out[p.output] = out.get(src, src)
    return out


def _consumers(plan: _Plan) -> dict[str, list[_E]]:
    out: dict[str, list[_E]] = {}
    for p in plan.einsums:
        if p.array is None:
            continue
        for a in dict.fromkeys(a.tensor for a in p.accesses):
            out.setdefault(a, []).append(p)
    return out


def _one_d_sequence(plan: _Plan, members=None) -> list[str]:
    return [p.label for p in plan.einsums if p.array == "1d" and (members is None or p.label in members)]


def _tiled(ctx: _Ctx, plan: _Plan, binding: Binding) -> _Access:
    c, arch = plan.cascade, ctx.arch
    s = arch.word_bytes
    acc = _Access()
    alias = _aliases(plan)
    cons = _consumers(plan)
    row_v = plan.row_rank.lower() if plan.row_rank else None
    tile_v = plan.tile_rank.lower() if plan.tile_rank else None
    outer = {plan.loop_var} if plan.loop_var else set()
    seq1d = _one_d_sequence(plan)
    oned = arch.array("1d") if any(a.name == "1d" for a in arch.arrays) else None

    def base(t):
        return alias.get(t, t)

    def has(t, v):
        return v is not None and v in {r.lower() for r in c.tensors[t].ranks}

    def forwarded(prod: _E, consumer: _E) -> bool:
        if prod.array != "1d" or consumer.array != "1d":
            return False
        k = seq1d.index(prod.label)
        return k + 1 < len(seq1d) and seq1d[k + 1] == consumer.label

    # where each computed tensor lives
    place: dict[str, str] = {}
    producer = {p.output: p for p in plan.einsums if p.array}
    for t, info in c.tensors.items():
        if info.is_input or t in alias:
            continue
        p = producer.get(t)
        if p is None:
            continue
        users = cons.get(t, [])
        if t in c.outputs and not users:
            place[t] = "dram"
        elif info.iterative is not None:
            place[t] = "l3"
        elif all(u.array == p.array for u in users):
            if p.array == "1d":
                if len(users) == 1 and forwarded(p, users[0]):
                    place[t] = "forward"
                elif _lane_words(ctx, p, t) <= (oned.rf_depth if oned else 0):
                    place[t] = "pe_rf"
                else:
                    place[t] = "l3"
            else:
                place[t] = "pe_rf"
        elif has(t, tile_v):
            place[t] = "l3"
        else:
            place[t] = "shared_rf" if oned is not None and oned.shared_rf else "l3"

    # rows: the query-like ranks only the row inputs have (P, and R for grouped queries), spread
    # over the columns P0 at a time, P1 blocks resident; ranks the row and tile inputs share (B, G)
    # are independent outer loops; the rest of a tile input is one key/value tile per step
    row_inputs = [t.name for t in c.inputs if has(t.name, row_v)]
    tile_inputs = [t.name for t in c.inputs if not has(t.name, row_v)]
    reduced = {v for p in plan.einsums for v in p.reduced}
    rset = set()
    for t in row_inputs:
        rset |= {r for r in c.tensors[t].ranks if r.lower() not in reduced}
    tset = set()
    for t in tile_inputs:
        tset |= set(c.tensors[t].ranks)
    row_ranks = [r for r in rset if r not in tset]
    outer_ranks = [r for r in rset if r in tset]
    n_outer = ctx.inst * math.prod(ctx.sizes[r] for r in outer_ranks)
    rows_total = math.prod(ctx.sizes[r] for r in row_ranks) if row_ranks else 1
    steps_outer = math.prod(ctx.vsize[v] for v in outer) if outer else 1
    row_words = 0.0
    tile_words = 0.0
    seen = set()
    for p in plan.einsums:
        if p.array is None or (outer and not (outer & set(p.vars))):
            continue
        for a in p.accesses:
            t = base(a.tensor)
            if t in seen:
                continue
            info = c.tensors[t]
            if info.is_input:
                seen.add(t)
                if has(t, row_v):
                    row_words += ctx.tensor_size(t) / (n_outer * rows_total)
                else:
                    tile_words += ctx.tensor_size(t) / (n_outer * steps_outer)
    for t, where in place.items():
        if where != "l3" or not has(t, row_v):
            continue
        info = c.tensors[t]
        words = ctx.tensor_size(t) / (n_outer * rows_total)
        if info.iterative is not None:
            words /= ctx.vsize[c.tensors[t].ranks[info.iterative].lower()]   # one iterate resident
        elif outer and has(t, next(iter(outer))):
            words /= steps_outer
        row_words += words
    capacity = binding.buffer_share * arch.buffer.capacity
    p0 = next((n for d, v, n in _spatial_of(plan, "2d") if v == row_v), None) or \
        (arch.array("1d").cols if oned else 1)
    blocks = max(1, math.ceil(rows_total / p0))
    avail = capacity - s * tile_words
    per_block = s * row_words * min(p0, rows_total)
    if per_block <= 0:
        raise ArchError(
            f"{c.name} has no query-like rank (one only its row inputs carry) to keep resident in blocks "
            f"while tiles stream past; use --binding unfused")
    if avail <= 0 or avail < per_block:
        raise ArchError(
            f"{c.name} does not fit the {capacity / 2**20:g} MiB buffer of {arch.name}: one block of "
            f"{min(p0, rows_total)} query rows needs {(s * tile_words + per_block) / 2**20:.3g} MiB; use a "
            f"bigger buffer, a cascade that tiles the key rank (one pass keeps no whole rows), or --binding "
            f"unfused (intermediates spill to DRAM)")
    cap_p1 = int(avail // per_block)
    p1 = _largest_divisor(blocks, cap_p1)
    p2 = blocks // p1
    acc.details.update(P0=p0, P1=p1, P2=p2, row_words=row_words, tile_words=tile_words,
                       row_ranks=",".join(sorted(row_ranks)))

    # DRAM traffic and buffer fills
    # tiles a whole resident group of P1 blocks skips are never fetched
    fetched = _tile_visits(plan, ctx.vsize, ctx.sizes, p1 * p0) if ctx.visits < 1.0 else 1.0
    acc.details["tiles_fetched"] = fetched
    for t in c.inputs:
        words = ctx.tensor_size(t.name) * (1 if has(t.name, row_v) else p2 * fetched)
        acc.traffic_words += words
        acc.l3_writes += words
    for o in c.outputs:
        acc.traffic_words += ctx.tensor_size(o)

    # reads, writes and register-file traffic of every Einsum
    prev_read = set()
    for p in plan.einsums:
        if p.array is None:
            continue
        for a in dict.fromkeys(p.accesses):
            t = base(a.tensor)
            info = c.tensors[t]
            if info.is_input:
                n = ctx.reads(p, a, outer)
                acc.l3_reads += n
                acc.per_einsum[(p.label, "global_buffer_read")] += n
                continue
            prod = producer.get(t)
            kind = c.access_kind(a)
            if info.iterative is not None:
                if kind == "prev":
                    if t not in prev_read:       # one read of the previous iterate per visited step
                        prev_read.add(t)
                        n = ctx.tensor_size(t) * ctx.visits
                        acc.l3_reads += n
                        acc.per_einsum[(p.label, "global_buffer_read")] += n
                elif kind == "next":
                    upd = next((x for x in plan.einsums if x.output == t and x.array), None)
                    if upd is not None and upd.array != p.array:
                        n = ctx.reads(p, a, outer)
                        _cross(acc, oned, p, n, read=True)
                elif kind == "final":
                    n = ctx.reads(p, a, outer)
                    acc.l3_reads += n
                    acc.per_einsum[(p.label, "global_buffer_read")] += n
                continue
            where = place.get(t)
            n = ctx.reads(p, a, outer)
            if where == "l3":
                if prod is not None and forwarded(prod, p):
                    continue
                acc.l3_reads += n
                acc.per_einsum[(p.label, "global_buffer_read")] += n
            elif where == "shared_rf":
                acc.shared_rf_reads += n
                acc.per_einsum[(p.label, "shared_rf")] += n
            elif where == "pe_rf":
                acc.pe_rf[(p.array, "read")] += n
                acc.per_einsum[(p.label, f"pe_rf_{p.array}")] += n
        # writes of the output
        t = p.output
        info = c.tensors[t]
        where = place.get(t)
        if info.iterative is not None:
            n = ctx.tensor_size(t) * _out_fraction(ctx, p)
            acc.l3_writes += n
            acc.per_einsum[(p.label, "global_buffer_write")] += n
        elif where == "l3":
            n = ctx.tensor_size(t)
            acc.l3_writes += n
            acc.per_einsum[(p.label, "global_buffer_write")] += n
        elif where == "shared_rf":
            n = ctx.tensor_size(t)
            acc.shared_rf_writes += n
            acc.per_einsum[(p.label, "shared_rf")] += n
        elif where == "pe_rf":
            n = ctx.tensor_size(t)
            acc.pe_rf[(p.array, "write")] += n
            acc.per_einsum[(p.label, f"pe_rf_{p.array}")] += n
    return acc


def _largest_divisor(n: int, cap: int) -> int:
    """The largest divisor of ``n`` that is at most ``cap`` (at least 1), in O(sqrt n)."""
    best = 1
    d = 1
    while d * d <= n:
        if n % d == 0:
            for x in (d, n // d):
                if best < x <= cap:
                    best = x
        d += 1
    return best


def _out_fraction(ctx, p):
    return ctx.present[p.label]


def _cross(acc, oned, p, n, read):
    if oned is not None and oned.shared_rf:
        if read:
            acc.shared_rf_reads += n
        else:
            acc.shared_rf_writes += n
        acc.per_einsum[(p.label, "shared_rf")] += n
    else:
        if read:
            acc.l3_reads += n
            acc.per_einsum[(p.label, "global_buffer_read")] += n
        else:
            acc.l3_writes += n
            acc.per_einsum[(p.label, "global_buffer_write")] += n


def _lane_words(ctx, p, t) -> float:
    """Words of ``t`` one 1D lane holds for one step of the Einsum's outer loop."""
    lanes = math.prod(ctx.vsize[v] for _, v, _ in p.spatial) or 1
    outer = ctx.vsize[ctx.plan.loop_var] if ctx.plan.loop_var and ctx.plan.loop_var in p.vars else 1
    return ctx.tensor_size(t) / (ctx.inst * lanes * outer)


def _spatial_of(plan, array):
    for p in plan.einsums:
        if p.array == array and p.spatial:
            return p.spatial
    return ()


def _phases(plan: _Plan) -> list[list[_E]]:
    out: list[list[_E]] = []
    for p in plan.einsums:
        if p.array is None:
            continue
        if out and out[-1][0].array == p.array == "1d":
            out[-1].append(p)
        else:
            out.append([p])
    return out


def _unfused(ctx: _Ctx, plan: _Plan) -> _Access:
    c = plan.cascade
    acc = _Access()
    alias = _aliases(plan)
    cons = _consumers(plan)

    def base(t):
        return alias.get(t, t)

    for phase in _phases(plan):
        labels = {p.label for p in phase}
        made = {p.output for p in phase}
        ins = []
        for p in phase:
            for a in p.accesses:
                t = base(a.tensor)
                if t not in made and t not in ins:
                    ins.append(t)
        outs = [t for t in made if t in c.outputs or any(u.label not in labels for u in cons.get(t, []))]
        words = sum(ctx.tensor_size(t) for t in ins) + sum(ctx.tensor_size(t) for t in outs)
        acc.traffic_words += words
        acc.phases.append((tuple(sorted(labels)), words))
        if phase[0].array == "2d":
            (p,) = phase
            for a in dict.fromkeys(p.accesses):
                t = base(a.tensor)
                n = ctx.reads(p, a, set())
                if n > ctx.tensor_size(t) * 1.000001:      # reused: staged in the buffer
                    acc.l3_writes += ctx.tensor_size(t)
                    acc.l3_reads += n
                    acc.per_einsum[(p.label, "global_buffer_read")] += n
                    acc.per_einsum[(p.label, "global_buffer_write")] += ctx.tensor_size(t)
            # a reduction spread over more rows than the array has leaves partial sums in the buffer
            folds = 1
            for d, v, n in p.spatial:
                if v in p.reduced:
                    folds *= math.ceil(ctx.vsize[v] / n)
            if folds > 1:
                o = ctx.tensor_size(p.output)
                acc.l3_writes += o * folds
                acc.l3_reads += o * (folds - 1)
                acc.per_einsum[(p.label, "global_buffer_write")] += o * folds
                acc.per_einsum[(p.label, "global_buffer_read")] += o * (folds - 1)
        else:
            seq = [p.label for p in phase]
            by = {p.label: p for p in phase}
            for p in phase:
                for a in dict.fromkeys(p.accesses):
                    t = base(a.tensor)
                    prod = next((x for x in phase if x.output == t), None)
                    if prod is not None and seq.index(prod.label) + 1 == seq.index(p.label):
                        continue  # streamed from the previous Einsum of the chain
                    if prod is not None:
                        users = [u for u in cons.get(t, []) if u.label in labels]
                        if len(users) == 1 and seq.index(prod.label) + 1 == seq.index(users[0].label):
                            continue
                    n = ctx.reads(p, a, set())
                    acc.l3_reads += n
                    acc.per_einsum[(p.label, "global_buffer_read")] += n
                users = cons.get(p.output, [])
                k = seq.index(p.label)
                only_next = (len(users) == 1 and users[0].label in by and k + 1 < len(seq)
                             and seq[k + 1] == users[0].label)
                if not only_next:
                    n = ctx.tensor_size(p.output)
                    acc.l3_writes += n
                    acc.per_einsum[(p.label, "global_buffer_write")] += n
    return acc


def _flat(ctx: _Ctx, plan: _Plan, flow: dict) -> _Access:
    """FLAT's dataflow (research notes 4.3): two tensor products with a softmax between them,
    their operands on or off chip, stationarity and row granularity as FLAT's search chose."""
    c = plan.cascade
    acc = _Access()
    twod = [p for p in plan.einsums if p.array == "2d"]
    if len(twod) != 2:
        raise ArchError(f"the FLAT dataflow fuses two tensor products around a softmax; {c.name} has "
                        f"{len(twod)} Einsums on the 2D array")
    logit, attend = twod
    row = plan.row_rank.lower()
    alias = _aliases(plan)

    def operand(p, with_row):
        for a in p.accesses:
            t = alias.get(a.tensor, a.tensor)
            if (row in {r.lower() for r in c.tensors[t].ranks}) == with_row:
                return t
        raise ArchError(f"FLAT dataflow: cannot tell the operands of {p.label} apart by the rank {plan.row_rank}")

    q, k = operand(logit, True), operand(logit, False)
    a_t, v = operand(attend, True), operand(attend, False)
    qk, av = logit.output, attend.output
    size = ctx.tensor_size
    ps = float(flow["ps"])
    pe = ctx.arch.array("2d").cols
    m_name = next((r for r in c.tensors[k].ranks if r.lower() in logit.out_vars), None)
    if m_name is None:
        raise ArchError(f"the FLAT dataflow computes whole rows of logits; {c.name} tiles the key rank of "
                        f"{logit.label} (its output ranks: {', '.join(logit.out_vars)}). Evaluate an untiled "
                        f"cascade (attention-3pass) with the flat binding, or this one with fusemax/arch/cascade")
    M = ctx.sizes[m_name]
    P = ctx.sizes[plan.row_rank]
    p1 = flow["P1"] if flow["granularity"] == "row" else P
    on = flow["on"]
    q_stream = size(q) * M / pe
    k_stream = size(k) * (P / pe if flow["qk"] == "output" else P / p1)
    v_stream = size(v) * (P / pe if flow["av"] == "output" else P / p1)
    t = 0.0
    t += size(q) * (1 - ps) + ps * q_stream if on["Q"] else q_stream
    t += size(k) * (1 - ps) + ps * k_stream if on["K"] else k_stream
    t += ps * size(qk) if on["QK"] else size(qk)
    t += ps * size(a_t) if on["A"] else size(a_t)
    t += size(v) * (1 - ps) + ps * v_stream if on["V"] else v_stream
    if on["AV"]:
        if flow["av"] == "output":
            upd, rmw = size(av), 0.0
        else:
            upd, rmw = size(av) * M / pe, size(av) * (M / pe - 1)
        t += size(av) * (1 - ps) + ps * (upd + rmw)
    else:
        t += size(av)
    t += 5 * size(qk) * ps if (on["QK"] and on["A"]) else 2 * size(qk)
    acc.traffic_words = t
    # buffer accesses: the softmax chain as in the unfused model, plus the on-chip operands
    chain = _unfused(ctx, _Plan(c, tuple(p for p in plan.einsums if p.array != "2d"), None,
                                plan.row_rank, None, None))
    acc.l3_reads = chain.l3_reads
    acc.l3_writes = chain.l3_writes
    acc.per_einsum.update(chain.per_einsum)
    if on["Q"]:
        acc.l3_reads += q_stream
        acc.l3_writes += size(q)
    if on["QK"]:
        acc.l3_writes += size(qk)
    if on["A"]:
        acc.l3_reads += size(a_t)
    if on["V"]:
        acc.l3_reads += v_stream
        acc.l3_writes += size(v)
    if on["AV"]:
        if flow["av"] == "output":
            acc.l3_writes += size(av)
        else:
            acc.l3_writes += size(av) * M / pe
            acc.l3_reads += size(av) * (M / pe - 1)
    acc.details.update(P1=p1, proportion_spilled=ps, granularity=flow["granularity"],
                       on_chip=",".join(k for k, v in on.items() if v) or "none",
                       stationarity=f"{flow['qk']}/{flow['av']}")
    return acc


# ------------------------------------------------------------------------------------------------
# entry point
# ------------------------------------------------------------------------------------------------


def _tile_sizes(cascade: Cascade, binding: Binding, arch: Architecture, workload: Workload) -> dict:
    """The tiled mapping's tile: as many keys as the 2D array has rows (fewer if the sequence is shorter)."""
    r = roles(cascade)
    if binding.mapping != "tiled" or r.tile is None or r.tile in dict(workload.sizes):
        return {}
    rows = arch.array("2d").rows
    if binding.tile is not None and binding.tile > rows:
        raise ArchError(f"binding {binding.name}: a tile of {binding.tile} keys does not fit the grid's {rows} rows")
    stream = bind_sizes(cascade, workload, {r.tile: 1}).sizes.get(r.stream, rows)
    return {r.tile: min(binding.tile or rows, stream)}


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
    if all(roles_.get(k, k) == k for k in ("2d", "1d")) and {a.name for a in arch.arrays} <= {"2d", "1d"}:
        r = _evaluate(arch, cascade, binding, workload, flat_dataflow=flat_dataflow, design=design)
        return replace(r, array_roles=dict(roles_)) if r.array_roles != roles_ else r
    a, b = _by_role(arch, binding, roles_)
    return _named(_evaluate(a, cascade, b, workload, flat_dataflow=flat_dataflow, design=design), roles_)


def _evaluate(arch: Architecture, cascade: Cascade, binding: Binding, workload: Workload,
              *, flat_dataflow: dict | None = None, design: str | None = None) -> Report:
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

    if binding.mapping == "tiled":
        acc = _tiled(ctx, plan, binding)
    elif binding.mapping == "unfused":
        acc = _unfused(ctx, plan)
    else:
        if flat_dataflow is None:
            raise ArchError("the FLAT mapping needs a dataflow (from flat_dataflow() or a search)")
        acc = _flat(ctx, plan, flat_dataflow)
    s = arch.word_bytes
    traffic = acc.traffic_words * s
    mem_cycles = traffic / arch.dram_bandwidth * arch.clock_hz
    acc.details["buffer_cycles"] = _buffer_cycles(arch, acc)
    acc.details["link_cycles"] = _link_cycles(plan, ctx)
    _check_registers(plan, ctx, binding)

    if binding.schedule == "phases":
        total = 0.0
        comp = 0.0
        phase_words = dict(acc.phases)
        for phase in _phases(plan):
            labels = tuple(sorted(p.label for p in phase))
            pc = sum(cyc[p.label] for p in phase)
            pm = phase_words.get(labels, 0.0) * s / arch.dram_bandwidth * arch.clock_hz
            total += max(pc, pm)
            comp += pc
        latency_cycles = total
        compute_cycles = comp
    else:
        if binding.schedule == "sequential":
            steps = ctx.vsize.get(plan.loop_var, 1) if plan.loop_var else 1
            heads = math.prod(ctx.vsize[v] for v in instance_ranks(plan))
            steps *= heads * inst * max(1, math.ceil(sizes[plan.row_rank] / (acc.details.get("P0") or 1))) \
                if plan.row_rank else heads * inst
            compute_cycles = _sequential_time(plan, cyc, steps * ctx.visits, arch.array("2d").row_drain)
        elif arch.array("2d").row_drain and plan.loop_var:
            tiles = ctx.vsize.get(plan.loop_var, 1) * ctx.visits
            heads = math.prod(ctx.vsize[v] for v in instance_ranks(plan))
            blocks = heads * inst * max(1, math.ceil(sizes[plan.row_rank] / (acc.details.get("P0") or 1))) \
                if plan.row_rank else heads * inst
            compute_cycles = _pipelined_time(plan, cyc, tiles * blocks, blocks)
        else:
            compute_cycles = max(load.values(), default=0.0) + _pipeline_fill(plan, cyc, ctx, load)
        latency_cycles = max(compute_cycles, mem_cycles, acc.details["buffer_cycles"],
                             acc.details["link_cycles"])

    util = {a.name: (sum(busy[p.label] for p in plan.einsums if p.array == a.name) / latency_cycles
                     if latency_cycles else 0.0) for a in arch.arrays}

    # energy
    et = arch.energy
    comp_energy = Counter()
    per_e_energy = Counter()
    actions_all = {}
    for p in plan.einsums:
        if p.array is None:
            continue
        pts = ctx.points(p)
        acts = {u: n * pts for u, n in p.actions}
        for u, n in p.fold:
            acts[u] = acts.get(u, 0.0) + n * ctx.folded_elements(p)
        actions_all[p.label] = acts
        for u, n in acts.items():
            e = n * et.unit(u)
            comp_energy[u] += e
            per_e_energy[p.label] += e
    rd, wr = et.buffer_per_word(arch.buffer.capacity)
    breakdown = {f"compute_{u}": v for u, v in sorted(comp_energy.items())}
    breakdown["dram"] = traffic * et.dram_per_byte
    breakdown["global_buffer"] = acc.l3_reads * rd + acc.l3_writes * wr
    oned = next((a for a in arch.arrays if a.name == "1d"), None)
    if acc.shared_rf_reads or acc.shared_rf_writes:
        r1, w1 = et.rf_access(oned.shared_rf if oned is not None and oned.shared_rf <= 64 else 32)
        breakdown["shared_rf_1d"] = acc.shared_rf_reads * r1 + acc.shared_rf_writes * w1
    for (arr, kind), n in sorted(acc.pe_rf.items()):
        r, w = et.rf_access(arch.array(arr).rf_depth)
        breakdown[f"pe_rf_{arr}"] = breakdown.get(f"pe_rf_{arr}", 0.0) + n * (r if kind == "read" else w)
    for (lab, comp), n in acc.per_einsum.items():
        if comp == "global_buffer_read":
            per_e_energy[lab] += n * rd
        elif comp == "global_buffer_write":
            per_e_energy[lab] += n * wr
        elif comp.startswith("pe_rf_"):
            r, _ = et.rf_access(arch.array(comp[6:]).rf_depth)
            per_e_energy[lab] += n * r
        elif comp == "shared_rf":
            r1, _ = et.rf_access(32)
            per_e_energy[lab] += n * r1
    energy = sum(breakdown.values())
    pe_rf = sum(v for k, v in breakdown.items() if k.startswith("pe_rf_"))

    per = {}
    for p in plan.einsums:
        per[p.label] = EinsumCost(p.label, p.array, cyc[p.label], busy[p.label], actions_all.get(p.label, {}),
                                  per_e_energy.get(p.label, 0.0))
    area = arch.area_breakdown()
    f = arch.clock_hz
    details = dict(acc.details)
    details.update(latency_cycles=latency_cycles, compute_cycles=compute_cycles, memory_cycles=mem_cycles,
                   instances=inst, energy_without_pe_rf_pJ=energy - pe_rf,
                   l3_reads_words=acc.l3_reads, l3_writes_words=acc.l3_writes,
                   shared_rf_reads=acc.shared_rf_reads, shared_rf_writes=acc.shared_rf_writes)
    for k, v in sizes.items():
        details[f"size_{k}"] = v
    return Report(
        design=design or f"{cascade.name}/{binding.name}@{arch.name}:{workload.label}",
        latency_s=latency_cycles / f, compute_s=compute_cycles / f, memory_s=mem_cycles / f,
        traffic_bytes=traffic, util=util, per_einsum=per, energy_pJ=energy, energy_breakdown_pJ=breakdown,
        area_um2=sum(area.values()), area_breakdown_um2=area, cycles=dict(load), details=details,
        sizes=dict(sizes), size_origin=dict(bound.origin), instances=inst, warnings=arch.extrapolations(),
    )
