"""A plan bound to sizes: points, cycles, tensor sizes, operand reads, filter densities and the tile steps
a controller visits.
"""

from __future__ import annotations

import math
from functools import lru_cache

from ..einsum import Access, BinOp, Num, Sym, Var, read_nodes, reads_of
from ._plan import _E, _loop_members, _over_tile, _Plan, _row_block, plan_memo
from ._spec import Architecture

__all__ = ["visited_tiles"]


class _Ctx:
    """Sizes bound to a plan: points, cycles, tensor sizes and operand reads."""

    def __init__(self, plan: _Plan, arch: Architecture, sizes: dict[str, int], inst: int,
                 skip_empty_tiles: bool = False):
        self.plan, self.arch, self.sizes, self.inst = plan, arch, sizes, inst
        self._words: dict = {}       # tensor -> words, and Einsum -> cycles: asked for again and again
        self._cycles: dict = {}
        c = plan.cascade
        self.c = c
        self.vsize = {r.name.lower(): sizes[r.name] for r in c.ranks if not r.param}
        for rk, it in c.iterative_ranks.items():
            self.vsize[it.var] = int(it.bound.evaluate(sizes))
        # the declared share each data-dependent filter keeps (`density` line of the cascade)
        self.data_density = {t: c.density(t, sizes) for t, _ in c.densities}
        densities: dict = {}        # Einsums of a cascade often share their filters
        self.density = {}
        for p in plan.einsums:
            if p.array and p.filters not in densities:
                densities[p.filters] = _filter_density(p.filters, self.vsize, sizes, self.data_density)
            self.density[p.label] = densities[p.filters] if p.array else 1.0
        # the fraction of tile-loop steps the controller visits; an Einsum of the loop works only
        # there (one with filters already counts only its present points)
        self._visits_by_block: dict = {}
        self._slopes: dict = {}
        self.visits = self.tile_visits() if skip_empty_tiles else 1.0
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

    def tile_visits(self, block: int | None = None) -> float:
        """:func:`_tile_visits` for blocks of ``block`` queries (remembered: a grid of buffers asks
        again for each resident group size)."""
        if block not in self._visits_by_block:
            self.prepare_tile_visits([block])
        return self._visits_by_block[block]

    def prepare_tile_visits(self, blocks) -> None:
        """Work out :meth:`tile_visits` for several block sizes at once."""
        todo = [b for b in dict.fromkeys(blocks) if b not in self._visits_by_block]
        if todo:
            got = _tile_visits_many(self.plan, self.vsize, self.sizes, todo, self._slopes, self.data_density)
            self._visits_by_block.update(zip(todo, got))

    def points(self, p: _E) -> float:
        return self.inst * math.prod(self.vsize[v] for v in p.vars) * self.present[p.label]

    def cycles(self, p: _E) -> tuple[float, float]:
        """(cycles, busy PE-cycles as a fraction of the array) of one Einsum."""
        got = self._cycles.get(p)
        if got is None:
            got = self._cycles[p] = self._count_cycles(p)
        return got

    def _count_cycles(self, p: _E) -> tuple[float, float]:
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
            if any(v in sp for v in p.reduced):
                # the reduction runs down the array: outputs flow out, and the Einsum's other
                # ranks stream through one fill
                inner = math.prod(self.vsize[v] for v in p.vars if v not in sp and v != self.plan.loop_var)
            else:
                # outputs stay in the PEs while the reduction streams: each placement of the outputs
                # (and each value of a temporal output rank) is a tile of its own
                inner = math.prod(self.vsize[v] for v in p.vars if v not in sp and v in p.reduced)
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
        words = self._words.get(name)
        if words is None:
            info = self.c.tensors[name]
            n = self.inst
            for k, r in enumerate(info.ranks):
                n *= (self.vsize[r.lower()] if k == info.iterative else self.sizes[r])
            words = self._words[name] = float(n)
        return words

    def reads(self, p: _E, a: Access, outer: set[str]) -> float:
        """Words an Einsum reads of one operand: spatial multicast, stationary reuse in the PE."""
        return self.pattern_reads(p, plan_memo(self.plan, ("reads", p.label, a, frozenset(outer)),
                                               lambda: _read_pattern(p, a, outer)))

    def pattern_reads(self, p: _E, pattern: tuple) -> float:
        """:meth:`reads` of an operand whose :func:`_read_pattern` the caller kept."""
        av, sp, inner, outer = pattern
        n = self.inst * self.present[p.label]
        for v in p.vars:
            if v in outer:
                n *= self.vsize[v]
            elif v in sp:
                n *= self.vsize[v] if v in av else math.ceil(self.vsize[v] / sp[v])
        if av & inner:
            n *= math.prod(self.vsize[v] for v in inner)
        return n


def _read_pattern(p: _E, a: Access, outer) -> tuple:
    """(the operand's variables, the Einsum's spatial variables and their extents, its temporal
    variables inside ``outer``, ``outer``): what :meth:`_Ctx.reads` needs of the plan, sizes apart."""
    av = set()
    for ix in a.indices:
        av |= ix.variables()
    sp = {v: n for _, v, n in p.spatial}
    return frozenset(av), sp, frozenset(v for v in p.vars if v not in sp and v not in outer), frozenset(outer)


def _filter_density(filters, vsize, sizes, data: dict | None = None) -> float:
    """Fraction of the iteration space that passes the filters (see :func:`_static_density`: exact
    along one variable when the comparisons allow, exact for small spaces, otherwise sampled on a
    regular grid of at most 64 points per other variable); a filter on data keeps its
    tensor's declared share (``data``), independently of the others."""
    share = 1.0
    for t in {t for f in filters for t in reads_of(f)}:
        share *= (data or {})[t]
    filters = _static(filters)
    if not filters:
        return share
    return share * _static_density(filters, vsize, sizes)


@lru_cache(maxsize=1024)
def _static(filters) -> tuple:
    """The filters that read no data (decided by coordinates alone)."""
    return tuple(f for f in filters if not reads_of(f))


def _static_density(filters, vsize, sizes) -> float:
    """Share of the filters' variables' box that passes them. Along one variable whose every
    comparison is an order comparison affine in it (:func:`_exact_variable`), the passing values
    form an interval, counted exactly; the other variables are sampled on a regular grid of at most
    64 points each (every point when there are no more)."""
    import numpy as np

    vs = sorted({v for f in filters for v in f.variables()})
    exact, slopes = _exact_variable(filters, vs, vsize, sizes)
    sampled = [v for v in vs if v != exact]
    grids = []
    for k, v in enumerate(sampled):
        pts = _regular_points(vsize[v], 64)
        shape = [1] * len(sampled)
        shape[k] = len(pts)
        grids.append(pts.reshape(shape))
    shape = tuple(g.size for g in grids)
    env = dict(sizes)
    env.update(dict(zip(sampled, grids)))
    if exact is None:
        mask = True
        for f in filters:
            mask = mask & f.evaluate(env)
        return float(np.broadcast_to(mask, shape).mean())
    n = vsize[exact]
    env[exact] = 0
    first, last, mask = np.zeros(shape), np.full(shape, n - 1.0), True
    for f in filters:
        if f not in slopes:
            mask = mask & f.evaluate(env)
            continue
        rest = np.broadcast_to(f.left.evaluate(env) - f.right.evaluate(env), shape).astype(float)
        lo, hi = _step_interval(f.op, slopes[f], rest, rest, n)
        first, last = np.maximum(first, lo), np.minimum(last, hi)
    counted = np.maximum(last - first + 1, 0.0)
    if mask is not True:
        counted = counted * np.broadcast_to(mask, shape)
    return float(counted.sum() / counted.size / n)          # the mean, without np.mean's overhead


def _exact_variable(filters, vs, vsize, sizes):
    """(the largest variable each filter that mentions it compares in order and affinely; each such
    filter's coefficient of it), or (None, {}) when there is none."""
    for v in sorted(vs, key=lambda v: -vsize[v]):
        slopes = {}
        for f in filters:
            if v not in f.variables():
                continue
            a = _linear_slope(_difference(f), v, sizes) if f.op in ("<", "<=", ">", ">=") else None
            if a is None:
                break
            slopes[f] = a
        else:
            return v, slopes
    return None, {}


def _tile_visits(plan: _Plan, vsize: dict, sizes: dict, block: int | None = None, slopes: dict | None = None) -> float:
    """Fraction of (tile step, block of queries) pairs the controller visits (see
    :func:`visited_tiles`) over at most 256 sampled blocks; a block with no point still runs one
    step, to produce its (empty) outputs. Each block's visited steps are counted exactly from the
    filters' step intervals (:func:`_visited_steps`), or from 256 sampled steps when a filter is not
    affine in the step or compares with == or !=."""
    return _tile_visits_many(plan, vsize, sizes, [block], slopes)[0]


def _tile_visits_many(plan: _Plan, vsize: dict, sizes: dict, block_sizes, slopes: dict | None = None,
                      data: dict | None = None) -> list[float]:
    """:func:`_tile_visits` for several block sizes (``None``: the array's columns) in one pass."""
    if _over_tile(plan) is None:
        return [1.0] * len(block_sizes)
    import numpy as np

    rv = plan.row_rank.lower() if plan.row_rank else None
    n = vsize[plan.loop_var]
    row_block = _row_block(plan)
    sizes_ = [b or row_block for b in block_sizes]
    factors = [_data_factor(plan, sizes, b, data or {}) for b in sizes_]
    if not _tile_filter_sets(plan):
        return factors                           # only data decides which tiles hold points
    groups = [_samples(math.ceil(vsize[rv] / b) if rv else 1) for b in sizes_]
    if len(groups) == 1:
        blocks, block = groups[0], sizes_[0]
    else:
        blocks = np.concatenate(groups)
        block = np.concatenate([np.full(len(g), b) for g, b in zip(groups, sizes_)])
    counted = _visited_steps(plan, vsize, sizes, blocks, block, {} if slopes is None else slopes)
    out = []
    if counted is not None:
        share = np.maximum(counted / n, 1.0 / n)
        for part in np.split(share, np.cumsum([len(g) for g in groups])[:-1]) if len(groups) > 1 else [share]:
            out.append(float(part.sum() / part.size))          # the mean, without np.mean's overhead
        return [v * f for v, f in zip(out, factors)]
    for g, b in zip(groups, sizes_):
        seen = visited_tiles(plan, vsize, sizes, _samples(n), g, b)
        out.append(float(np.maximum(seen.mean(axis=0), 1.0 / n).mean()))
    return [v * f for v, f in zip(out, factors)]


def _data_factor(plan: _Plan, sizes: dict, block: int, data: dict) -> float:
    """The share of tiles a block of ``block`` queries visits because of data-dependent filters:
    a tile is needed when any of the block's mask rows keeps it. With the mask's rows independent
    and each keeping a tile with its declared density ``d``, that is ``1 - (1 - d)**k`` for the ``k``
    mask rows the block spans (a mask row covers ``X`` queries when it is read at ``p // X``)."""
    factor = 1.0
    for t, per_expr in _data_filters(plan):
        per = int(per_expr.evaluate(sizes)) if per_expr is not None else 1
        k = max(1, math.ceil(block / max(per, 1)))
        factor = min(factor, 1.0 - (1.0 - data[t]) ** k)
    return factor


def _data_filters(plan: _Plan) -> tuple:
    """(tensor, queries per mask row or None) of each data filter read over the tile (see
    :func:`_data_factor`): the plan's part of it, worked out once."""
    def build():
        rv = plan.row_rank.lower() if plan.row_rank else None
        out = []
        for p in _over_tile(plan) or ():
            for f in p.filters:
                for t in reads_of(f):
                    per = None
                    for r in read_nodes(f):
                        for ix in r.indices:
                            if isinstance(ix, BinOp) and ix.op == "//" and ix.left.variables() == {rv}:
                                per = ix.right
                    out.append((t, per))
        return tuple(out)

    return plan_memo(plan, "data filters over the tile", build)


def _tile_filter_sets(plan: _Plan) -> tuple:
    """The distinct sets of coordinate filters of the Einsums over the tile (empty when only data
    decides which tiles hold points)."""
    def build():
        sets = tuple(dict.fromkeys(_static(p.filters) for p in _over_tile(plan) or ()))
        return sets if any(sets) else ()

    return plan_memo(plan, "filter sets over the tile", build)


def _samples(n):
    return _regular_points(n, 256)


@lru_cache(maxsize=1024)
def _regular_points(n: int, most: int):
    """0..n-1, or ``most`` of them evenly spread (first and last included) when there are more;
    read-only (one array serves every caller)."""
    import numpy as np

    pts = np.arange(n) if n <= most else np.unique(np.linspace(0, n - 1, most).round().astype(int))
    pts.flags.writeable = False
    return pts


def _visited_steps(plan: _Plan, vsize: dict, sizes: dict, blocks, block, slopes: dict):
    """How many tile steps :func:`visited_tiles` marks for each block of ``blocks`` (of ``block``
    queries: a number, or one per entry of ``blocks``), without going
    over the steps: a filter's difference is ``a*step + b(corner)``, so each comparison holds on an
    interval of steps, an Einsum on the intersection of its filters' intervals and the controller on
    the union over the Einsums. ``None`` when that does not hold (== or !=, or a difference not
    affine in the step: checked at the sampled steps). ``slopes`` remembers each filter's slope in
    the step (None: not affine) and its affine form across calls for the same sizes."""
    import numpy as np

    lv = plan.loop_var
    rv = plan.row_rank.lower() if plan.row_rank else None
    n = vsize[lv]
    blocks = np.asarray(blocks)
    spans = []                              # per distinct filter set: (first, last) steps per block
    per_filter = {}
    for filters in _tile_filter_sets(plan):
        first = np.zeros(blocks.size)
        last = np.full(blocks.size, n - 1.0)
        for f in filters:
            if f not in per_filter:
                per_filter[f] = _filter_steps(f, lv, rv, vsize, sizes, blocks, block, slopes)
            if per_filter[f] is None:
                return None
            first = np.maximum(first, per_filter[f][0])
            last = np.minimum(last, per_filter[f][1])
        spans.append((first, last))
    return _union_count(spans)


def _filter_steps(f, lv, rv, vsize, sizes, blocks, block, slopes):
    """(first, last) step where filter ``f`` can hold, per block; ``None`` unless it is an
    order comparison affine in the step."""
    import itertools

    import numpy as np

    if f.op not in ("<=", "<", ">=", ">"):
        return None
    n = vsize[lv]
    box = sorted(f.variables() - {lv})
    if ("form", f) not in slopes:                  # the same for every block size asked
        slopes[("form", f)] = _affine_form(_difference(f), [lv] + box, sizes)
    form = slopes[("form", f)]
    if form is not None:
        # an affine difference takes its extremes over the box at its corners, term by term
        const, coef = form
        lo = hi = np.full(blocks.shape, const)
        for v in box:
            a_lo, a_hi = ((blocks * block, np.minimum(blocks * block + block, vsize[rv]) - 1) if v == rv
                          else (0, vsize[v] - 1))
            x, y = coef[v] * a_lo, coef[v] * a_hi
            lo, hi = lo + np.minimum(x, y), hi + np.maximum(x, y)
        return _step_interval(f.op, coef[lv], lo, hi, n)

    def corners_of(bl):
        return list(itertools.product(*[(bl * block, np.minimum(bl * block + block, vsize[rv]) - 1)
                                        if v == rv else (0, vsize[v] - 1) for v in box]))

    def diff(step, corner, shape):
        env = dict(sizes)
        env[lv] = step
        env.update(zip(box, corner))
        return np.broadcast_to(f.left.evaluate(env) - f.right.evaluate(env), shape).astype(float)

    corners = corners_of(blocks)
    if f not in slopes:
        a = _linear_slope(_difference(f), lv, sizes)
        slopes[f] = a if a is not None else _slope(diff, corners, blocks.shape, n)
    a = slopes[f]
    if a is None:
        return None
    b0 = [diff(0, c, blocks.shape) for c in corners]
    return _step_interval(f.op, a, np.minimum.reduce(b0), np.maximum.reduce(b0), n)


def _affine_form(e, variables, sizes: dict):
    """(constant, {variable: coefficient}) when ``e`` is plainly affine in each of ``variables``
    (:func:`_linear_slope` finds every coefficient), else ``None``."""
    coef = {}
    for v in variables:
        a = _linear_slope(e, v, sizes)
        if a is None:
            return None
        coef[v] = a
    return float(e.evaluate({**sizes, **dict.fromkeys(variables, 0)})), coef


def _linear_slope(e, lv: str, sizes: dict):
    """The coefficient of ``lv`` in ``e`` read off its tree when ``e`` is plainly affine in ``lv``
    with that coefficient the same everywhere (sums, differences, products by a size or number);
    ``None`` when the tree does not show it (floor division of the step, a product of two
    variables...), which leaves the question to :func:`_slope`'s sampling."""
    c = _slope_expr(e, lv)
    if c is None:
        return None
    return float(c.value if isinstance(c, Num) else c.evaluate(sizes))


@lru_cache(maxsize=4096)
def _slope_expr(e, lv: str):
    """:func:`_linear_slope`'s coefficient as an expression of sizes alone (a number when it is one):
    the tree is read once per expression, the sizes put in per call."""
    if isinstance(e, Var):
        return Num(1 if e.name == lv else 0)
    if not isinstance(e, BinOp):
        return Num(0) if isinstance(e, (Num, Sym)) else None
    if lv not in e.variables():
        return Num(0)
    if e.op in ("+", "-"):
        a, b = _slope_expr(e.left, lv), _slope_expr(e.right, lv)
        if a is None or b is None:
            return None
        if isinstance(a, Num) and isinstance(b, Num):
            return Num(a.value + b.value if e.op == "+" else a.value - b.value)
        return BinOp(e.op, a, b)
    if e.op == "*":
        for x, k in ((e.left, e.right), (e.right, e.left)):
            if not k.variables():
                a = _slope_expr(x, lv)
                if a is None or (isinstance(a, Num) and a.value == 0):
                    return a
                if isinstance(k, Num):
                    return Num(a.value * k.value) if isinstance(a, Num) else BinOp("*", a, k)
                return k if isinstance(a, Num) and a.value == 1 else BinOp("*", a, k)
    return None


@lru_cache(maxsize=4096)
def _difference(f):
    """``left - right`` of a comparison, one object per filter (its hash and variables are kept)."""
    return BinOp("-", f.left, f.right)


def _slope(diff, corners, shape, n):
    """The step's coefficient in a filter's difference, or ``None`` when the difference is not
    affine in the step (checked at the sampled steps, the corners of up to 16 of the sampled blocks)."""
    import numpy as np

    slope = diff(1, corners[0], shape) - diff(0, corners[0], shape)
    if not np.all(slope == slope.flat[0]):
        return None
    a = float(slope.flat[0])
    steps = _samples(n).reshape(-1, 1)
    pick = np.unique(np.linspace(0, shape[0] - 1, min(shape[0], 16)).round().astype(int))   # 16 blocks suffice
    for corner in corners:
        corner = tuple(c[pick] if np.ndim(c) else c for c in corner)
        if not np.array_equal(diff(steps, corner, (steps.size, pick.size)), a * steps + diff(0, corner, pick.shape)):
            return None
    return a


def _step_interval(op: str, a: float, lo, hi, n: int):
    """Steps s in [0, n) where ``a*s + lo <= 0`` (op <=; < alike) or ``a*s + hi >= 0`` (>=, >), as
    (first, last) arrays (first > last when none)."""
    import numpy as np

    c = -lo if op in ("<=", "<") else -hi          # a*s  (op)  c
    full = (0.0, n - 1.0)                          # numbers broadcast where every block agrees
    if a == 0:
        holds = {"<=": 0 <= c, "<": 0 < c, ">=": 0 >= c, ">": 0 > c}[op]
        return np.where(holds, full[0], float(n)), np.where(holds, full[1], -1.0)
    x = c / a
    if a < 0:                                      # dividing by a flips the comparison
        op = {"<=": ">=", "<": ">", ">=": "<=", ">": "<"}[op]
    if op == "<=":
        return full[0], np.floor(x)
    if op == "<":
        return full[0], np.ceil(x) - 1
    if op == ">=":
        return np.ceil(x), full[1]
    return np.floor(x) + 1, full[1]


def _union_count(spans):
    """Per block, how many integer steps the union of the (first, last) intervals covers."""
    import numpy as np

    if len(spans) == 1:                   # the Einsums over the tile often share their filters
        first, last = spans[0]
        return np.maximum(0.0, last - first + 1)
    firsts = np.stack([f for f, _ in spans])
    lasts = np.stack([b for _, b in spans])
    order = np.argsort(firsts, axis=0, kind="stable")
    firsts = np.take_along_axis(firsts, order, axis=0)
    lasts = np.take_along_axis(lasts, order, axis=0)
    count = np.zeros(firsts.shape[1])
    reach = np.full(firsts.shape[1], -1.0)          # the last step counted so far
    for f, b in zip(firsts, lasts):
        start = np.maximum(f, reach + 1)
        count += np.maximum(0.0, b - start + 1)
        reach = np.maximum(reach, b)
    return count


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
        for f in _static(p.filters):
            box = sorted(f.variables() - {lv})
            ranges = []
            for v in box:
                if v == rv:
                    ranges.append((blocks * p0, np.minimum(blocks * p0 + p0, vsize[rv]) - 1))
                else:
                    ranges.append((0, vsize[v] - 1))
            lo = hi = None
            for corner in itertools.product(*ranges):
                env = dict(sizes)
                env[lv] = steps
                env.update(zip(box, corner))
                d = f.left.evaluate(env) - f.right.evaluate(env)
                lo = d if lo is None else np.minimum(lo, d)
                hi = d if hi is None else np.maximum(hi, d)
            lo, hi = np.broadcast_to(lo, visited.shape), np.broadcast_to(hi, visited.shape)
            present &= {"<=": lo <= 0, "<": lo < 0, ">=": hi >= 0, ">": hi > 0,
                        "==": (lo <= 0) & (hi >= 0), "!=": ~((lo == 0) & (hi == 0))}[f.op]
        visited |= present
    return visited
