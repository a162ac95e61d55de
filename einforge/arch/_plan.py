"""The static plan of a cascade on an architecture under a binding: which array runs each Einsum, what it
costs per point there, and which ranks its array dimensions spread. Cached: buffers, bandwidths and
clocks share a plan.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from functools import lru_cache

from ..einsum import Cascade, is_constant, presence_filters, product_factors, roles, unit_recipe
from ..einsum._ir import Access, Call
from ._binding import Binding, bind_arrays
from ._spec import ArchError, Architecture

__all__ = ["instance_ranks"]


def _parent_of(r):
    from ..einsum._ir import BinOp, Sym

    if isinstance(r.size, BinOp) and r.size.op == "/" and isinstance(r.size.left, Sym):
        return r.size.left.name
    return None


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
        r = unit_recipe(r, units)
        if set(r) <= set(units):
            return r
    need = " or ".join("+".join(sorted(r)) for r in op.recipes) or "a unit named " + op.name
    raise ArchError(
        f"Einsum {einsum_name} uses operator {op.name!r}, which array {array} (units: {', '.join(units)}) "
        f"cannot compute: it needs {need}; add the unit to the array or bind {einsum_name} to another array "
        f"(a binding file's arrays: section, or the cascade binding, which keeps only tensor products on 2D)")


def _is_constant(x) -> bool:
    """A value fixed before the run: a number, a size, or arithmetic on them (``1/sqrt(E)``); a
    position (``p - m``) changes from point to point and is computed."""
    return not isinstance(x, Access) and is_constant(x)


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
    if not cols and binding.mapping != "tiled":
        # no query- or batch-like rank (a norm, an activation, a matrix product): spread the
        # largest rank an output keeps
        kept = [x for x in names if x not in r.reduced and any(x in cascade.tensors[o].ranks for o in cascade.outputs)]
        cols = tuple(_by_size(kept, sizes))
    col = cols[0] if cols else None
    if binding.mapping == "tiled":
        tile = r.tile
        spatial = (("2d", (("rows", (tile,) if tile else ()), ("cols", cols))), ("1d", (("cols", cols),)))
        return tile, col, spatial
    # the rows of each 2D product depend on the sizes: decide them here, so plans stay shared
    rows_of = []
    size_of = lambda v: (sizes or {}).get(v.upper(), 0)
    on = bind_arrays(cascade, binding, None)
    for i, e in enumerate(cascade.einsums):
        lab = cascade.label(i)
        if on.get(lab) != "2d":
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
    present = _interned(presence_filters(cascade))    # filters that travel with the data count as the Einsum's own
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


def _interned(filters_of: dict) -> dict:
    """``filters_of`` with equal filters (and equal tuples of them) one object: the cost model keys
    dictionaries by them, and equal but distinct trees compare node by node."""
    one: dict = {}
    return {lab: one.setdefault(fs, tuple(one.setdefault(f, f) for f in fs)) for lab, fs in filters_of.items()}


def instance_ranks(plan: _Plan) -> list[str]:
    """Variables of independent instances (batch, heads): ranks every Einsum of the tile loop
    carries in its output, other than the tile, query and loop ranks. Each instance runs the tile
    loop on its own, like the workload's B x H instances."""
    loop = _loop_members(plan)
    members = [p for p in plan.einsums if p.label in loop]
    if not members or plan.loop_var is None:
        return []
    common = set.intersection(*(set(p.out_vars) for p in members))
    skip = {plan.loop_var} | {r.lower() for r in (plan.tile_rank, plan.row_rank) if r}
    return [v for v in members[0].out_vars if v in common and v not in skip]


def plan_memo(plan: _Plan, key: str, build):
    """What depends on ``plan`` alone, worked out once and kept on it (a plan is a frozen value and
    the same plan object serves every size: see :func:`_plan_for`)."""
    memo = plan.__dict__.setdefault("_memo", {})
    if key not in memo:
        memo[key] = build()
    return memo[key]


def _loop_members(plan: _Plan) -> frozenset[str]:
    """Labels of the Einsums on an array that run inside the tile loop (all of them when there is
    no loop)."""
    def members():
        if plan.loop_var is None:
            return frozenset(p.label for p in plan.einsums if p.array)
        return frozenset(p.label for p in plan.einsums if p.array and plan.loop_var in p.vars)

    return plan_memo(plan, "loop members", members)


def _over_tile(plan: _Plan):
    """The loop's Einsums over the tile, if every one carries filters (else no step is ever empty)."""
    return plan_memo(plan, "over tile", lambda: _einsums_over_tile(plan))


def _einsums_over_tile(plan: _Plan):
    if plan.tile_rank is None or plan.loop_var is None:
        return None
    tv, lv = plan.tile_rank.lower(), plan.loop_var
    over = tuple(p for p in plan.einsums if p.array and tv in p.vars and lv in p.vars)
    return over if over and all(p.filters for p in over) else None


def _row_block(plan: _Plan) -> int:
    rv = plan.row_rank.lower() if plan.row_rank else None
    return next((n for d, v, n in _spatial_of(plan, "2d") if v == rv), 1) if rv else 1


def _spatial_of(plan, array):
    for p in plan.einsums:
        if p.array == array and p.spatial:
            return p.spatial
    return ()
