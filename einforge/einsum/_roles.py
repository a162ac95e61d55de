"""What each rank of a cascade is, read from its structure, never from its letter.

* the **streamed** rank is the one the cascade partitions into tiles (``K[e, m1*M0+m0]`` streams M
  in tiles of M0); the **tile** rank is the inner part (M0) and the **loop** rank the rank that
  steps over tiles (the iterative rank, or the outer part M1). An untiled cascade streams the rank
  its value inputs are reduced along;
* **value inputs** are the inputs (or their re-layouts) multiplied with a computed tensor, as V is
  with the attention weights; their ranks other than the streamed one are **value** ranks (F);
* **batch-like** ranks are carried by every input and every output and never reduced (B, H);
* **query-like** ranks are carried by the outputs but by no value input, and are not batch-like
  (P, and R for the query heads of a key/value group);
* **reduced** ranks are summed (or max-ed) away somewhere.

Examples
--------
>>> from einforge.einsum import load_cascade
>>> r = roles(load_cascade("attention-1pass"))
>>> r.stream, r.tile, r.loop, r.query, r.batch
('M', 'M0', 'M1', ('P',), ())
>>> roles(load_cascade("attention-gqa")).query
('R', 'P')
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from ._cascade import Cascade
from ._ir import Access, BinOp, Sym, Var, rank_of

__all__ = ["Roles", "roles"]


@dataclass(frozen=True)
class Roles:
    stream: str | None          # the rank streamed in tiles (M)
    tile: str | None            # its tile (M0)
    loop: str | None            # the rank that steps over tiles (M1)
    query: tuple[str, ...]      # query-like ranks, in declaration order
    batch: tuple[str, ...]      # batch-like ranks, in declaration order
    value: tuple[str, ...]      # value ranks (F)
    reduced: tuple[str, ...]    # ranks reduced somewhere
    value_inputs: tuple[str, ...]


def _partitions(c: Cascade) -> list[tuple[str, str, str]]:
    """(parent, outer, inner) for every ``outer = parent/inner`` partition."""
    out = []
    for r in c.ranks:
        s = r.size
        if (isinstance(s, BinOp) and s.op == "/" and isinstance(s.left, Sym) and isinstance(s.right, Sym)
                and not r.param):
            out.append((s.left.name, r.name, s.right.name))
    return out


def _layout_sources(c: Cascade) -> dict[str, str]:
    """Re-layouts of inputs (``BK[e,m1,m0] = K[e, m1*M0+m0]``) -> the input they copy."""
    out = {}
    for e in c.einsums:
        if isinstance(e.expr, Access) and not e.reduce:
            src = out.get(e.expr.tensor, e.expr.tensor)
            if c.tensors[src].is_input:
                out[e.name] = src
    return out


def _derived_from_one_input(c: Cascade) -> dict[str, str]:
    """Computed tensors that regroup one input alone (a re-layout BK = K[e, m1*M0+m0], a pooling
    KC = K[e, n*G+g] / G, and what depends on such a tensor only): tensor -> that input. They play
    the input's part in a product. A map of the input at the same coordinates (a feature map
    elu(K)+1) is a computation of its own and is not among them."""
    out: dict[str, str] = {}
    for e in c.einsums:
        accs = e.expr.accesses()
        srcs = set()
        for a in accs:
            info = c.tensors[a.tensor]
            if info.is_input:
                srcs.add(a.tensor if any(not isinstance(ix, Var) for ix in a.indices) else "?")
            else:
                srcs.add(out.get(a.tensor, "?"))
        if len(srcs) == 1 and "?" not in srcs and c.tensors[e.name].iterative is None:
            out[e.name] = srcs.pop()
    return out


def _value_inputs(c: Cascade, layout: dict[str, str]) -> list[str]:
    from ._ir import product_factors

    derived = _derived_from_one_input(c)

    def base(t):
        return layout.get(t, derived.get(t, t))

    out: list[str] = []
    for e in c.einsums:
        factors = product_factors(e.expr)
        if factors is None:
            continue
        accs = [f for f in factors if isinstance(f, Access)]
        computed = [a for a in accs if not c.tensors[base(a.tensor)].is_input]
        if not computed:
            continue
        for a in accs:
            t = base(a.tensor)
            if c.tensors[t].is_input and t not in out:
                out.append(t)
    return out


@lru_cache(maxsize=256)
def roles(cascade: Cascade) -> Roles:
    """The roles of ``cascade``'s ranks (see the module docstring)."""
    c = cascade
    names = [r.name for r in c.ranks if not r.param]
    parts = _partitions(c)
    stream = tile = loop = None
    # a partition tiles its rank when some computed tensor keeps the inner rank (BK[e,m1,m0]); one
    # whose inner rank is summed away where it appears pools groups (CCA's K[e, n*G+g] summed over g)
    kept = {r for info in c.tensors.values() if not info.is_input for r in info.ranks}
    parts = [p for p in parts if p[2] in kept]
    if parts:
        iters = set(c.iterative_ranks)
        # the partition whose outer rank the loop steps over (the iterative rank's bound), else the first
        pick = next((p for p in parts for it in c.iterative_ranks.values()
                     if isinstance(it.bound, Sym) and it.bound.name == p[1]), parts[0])
        stream, loop, tile = pick
        if iters:
            loop = next(iter(iters))
    layout = _layout_sources(c)
    values = _value_inputs(c, layout)
    inputs = [t.name for t in c.inputs]
    outputs = list(c.outputs)
    reduced = []
    for e in c.einsums:
        for v, _ in e.reduce:
            rk = rank_of(v)
            if rk in names and rk not in reduced:
                reduced.append(rk)
    if stream is None:
        # untiled: the rank the value inputs are reduced along (M of softmax(QK) V)
        stream = next((r for r in reduced if any(r in c.tensors[t].ranks for t in values)), None)
    family = {stream} | ({tile, loop} if stream else set())

    def carries(t, rank):
        info = c.tensors[t]
        return rank in info.ranks or (rank == stream and bool(family & set(info.ranks)))

    batch = [r for r in names if r not in reduced and r not in family
             and all(carries(t, r) for t in inputs + outputs)]
    value = [r for r in names if r not in family and r not in batch
             and any(carries(t, r) for t in values) and any(carries(o, r) for o in outputs)]
    query = [r for r in names if r not in family and r not in batch and r not in value
             and any(carries(o, r) for o in outputs) and not any(carries(t, r) for t in values)]
    return Roles(stream, tile, loop, tuple(query), tuple(batch), tuple(value), tuple(reduced), tuple(values))

