"""Which points of an Einsum can hold a value: its own filters plus those its operands carry.

Under the executor's semantics an intersection operator (``* - / exp``...) is empty wherever one
operand is, so ``SLN = exp(BQK - RM)`` is empty wherever the causal filter removed ``BQK``: the
filter travels with the data. A cost model that skips filtered points should skip these too.
"""

from __future__ import annotations

from functools import lru_cache

from ._ir import Access, BinOp, Call, Compare, Var

__all__ = ["presence_filters"]


@lru_cache(maxsize=256)
def presence_filters(cascade) -> dict[str, tuple[Compare, ...]]:
    """For every Einsum (by label), filters that hold at each point where its expression is present.

    They are the Einsum's own filters and those implied by its operands: an operand produced under
    a filter over its output ranks carries it (indices substituted) through intersection
    operators, and through a union operator when every operand carries it. Iterates of iterative
    tensors and inputs carry nothing. The result is sound (every present point passes) and exact
    for chains of intersections, such as the tile Einsums of causal attention.

    Examples
    --------
    >>> from einforge.einsum import library
    >>> f = presence_filters(library()["attention-causal"].load())
    >>> [c.text() for c in f["SLN"]], [c.text() for c in f["SLD"]], f["RD"]
    (['m1*M0+m0<=p'], ['m1*M0+m0<=p'], ())
    """
    producer: dict[str, int] = {}
    for i, e in enumerate(cascade.einsums):
        info = cascade.tensors.get(e.name)
        if info is None or info.iterative is not None or cascade.einsum_kind(i) != "plain":
            continue
        producer[e.name] = i
    out: dict[str, tuple[Compare, ...]] = {}
    done: dict[int, tuple[Compare, ...]] = {}

    def of_einsum(i: int) -> tuple[Compare, ...]:
        if i not in done:
            done[i] = ()          # a cycle (only through iterates, which carry nothing) stops here
            e = cascade.einsums[i]
            done[i] = _dedup(tuple(e.filters) + of_expr(e.expr))
        return done[i]

    def of_output(i: int) -> tuple[Compare, ...]:
        e = cascade.einsums[i]
        outs = set(e.output_variables())
        return tuple(f for f in of_einsum(i) if f.variables() <= outs)

    def of_expr(x) -> tuple[Compare, ...]:
        if isinstance(x, Access):
            i = producer.get(x.tensor)
            if i is None:
                return ()
            idx = cascade.einsums[i].output.indices
            if not all(isinstance(v, Var) for v in idx) or len({v.name for v in idx}) != len(idx):
                return ()
            sub = {v.name: ix for v, ix in zip(idx, x.indices)}
            return tuple(Compare(_subst(f.left, sub), f.op, _subst(f.right, sub)) for f in of_output(i))
        if isinstance(x, Call):
            parts = [of_expr(a) for a in x.args]
            op = cascade.operators.get(x.op)
            if op is not None and op.merge == "union":
                if not parts:
                    return ()
                common = {f.text() for f in parts[0]}
                for p in parts[1:]:
                    common &= {f.text() for f in p}
                return tuple(f for f in parts[0] if f.text() in common)
            return tuple(f for p in parts for f in p)
        return ()           # constants and sizes are always present

    for i in range(len(cascade.einsums)):
        out[cascade.label(i)] = of_einsum(i)
    return out


def _subst(ix, sub):
    if isinstance(ix, Var):
        return sub.get(ix.name, ix)
    if isinstance(ix, BinOp):
        return BinOp(ix.op, _subst(ix.left, sub), _subst(ix.right, sub))
    return ix


def _dedup(fs):
    seen, out = set(), []
    for f in fs:
        if f.text() not in seen:
            seen.add(f.text())
            out.append(f)
    return tuple(out)
