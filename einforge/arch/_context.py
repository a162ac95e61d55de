"""A plan bound to sizes: points, cycles, tensor sizes, operand reads, filter densities and the tile steps
a controller visits.
"""

from __future__ import annotations

import math

from ..einsum._ir import Access
from ._plan import _E, _loop_members, _over_tile, _Plan, _row_block
from ._spec import Architecture

__all__ = ["visited_tiles"]


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
