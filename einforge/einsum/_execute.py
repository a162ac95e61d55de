"""The reference executor: run any cascade on numbers.

Semantics (EDGE's, made concrete):

* every Einsum visits the points of its iteration space that pass its filters;
* each tensor records which coordinates exist. Inputs exist everywhere; a computed coordinate
  exists once a visited point wrote it. An initialization that writes a tensor's empty value
  (``RM[m1:m1=0,p] = -inf``) leaves the coordinate empty, as a fibertree would;
* a map operator with *intersection* merge (``*``, ``/``, ``-``, ``exp``) exists only where all
  its operands exist; one with *union* merge (``+``, ``max``, ``min``) skips empty operands;
* a reduction combines the existing values with its operator; a coordinate that received none
  stays empty and holds the tensor's empty value (the identity of the operator that made it);
* an index outside a tensor's shape reads an empty coordinate.

Each Einsum runs vectorized (``np.einsum`` for sums of products, ufunc reductions otherwise);
only Einsums carried by an iterative rank run in a Python loop over that rank.
"""

from __future__ import annotations

import math
import string
from collections.abc import Mapping

import numpy as np

from ._cascade import Cascade
from ._errors import CascadeError
from ._ir import TENSORS, Access, BinOp, Const, Einsum, Position, SizeRef, Var, fold_target, product_factors, reads_of
from ._numbers import FLOAT64, NumberSystem
from ._ops import _Ufunc
from ._sizes import resolve_sizes

__all__ = ["evaluate", "resolve_sizes", "tensor_shape"]

_CHUNK = 1 << 22  # iteration points materialized at once on the general path
_MAX_ELEMENTS = 1 << 32   # values of one tensor the executor agrees to hold
_MAX_DIMS = 64            # rank variables of one Einsum the executor handles (numpy's axis limit)


def _iter_bounds(cascade: Cascade, env: Mapping[str, int]) -> dict[str, int]:
    return {rk: int(it.bound.evaluate(env)) for rk, it in cascade.iterative_ranks.items()}


def tensor_shape(cascade: Cascade, tensor: str, sizes: Mapping[str, int]) -> tuple[int, ...]:
    """Shape of a tensor; an iterative rank holds ``bound + 1`` iterates."""
    info = cascade.tensors[tensor]
    bounds = _iter_bounds(cascade, sizes)
    return tuple(bounds[r] + 1 if k == info.iterative else sizes[r] for k, r in enumerate(info.ranks))


class _Tensor:
    __slots__ = ("values", "present")

    def __init__(self, values, present=None):
        self.values = values
        self.present = present  # None: every coordinate exists


def evaluate(cascade: Cascade, inputs: Mapping[str, np.ndarray], sizes: Mapping[str, int] | None = None,
             numbers: NumberSystem = FLOAT64, *, with_presence: bool = False,
             keep: str = "outputs") -> dict[str, np.ndarray]:
    """Run ``cascade`` on ``inputs`` and return its outputs (or every computed tensor).

    Parameters
    ----------
    cascade : Cascade
    inputs : mapping of input name to array, shaped by the input's ranks
    sizes : mapping of rank name to size, overriding the cascade's defaults; sizes of inputs'
        ranks are taken from the arrays when not given
    numbers : NumberSystem
        ``FLOAT64`` (reference) or a ``FixedPoint`` (the RTL's golden model). Inputs are given as
        floats and converted; results are in the number system's representation.
    with_presence : bool
        Also return ``{name + "?": bool array}`` telling which coordinates exist.
    keep : ``"outputs"`` or ``"all"``
        ``"outputs"`` (the default) returns the cascade's outputs and stores, of what the loop over
        an iterative rank computes, only what is still to be read: the previous and current
        iterate, and one step of each tensor used within the step. ``"all"`` keeps and returns
        every computed tensor with every iterate.

    Returns
    -------
    dict
        Tensor name -> array. Iterative tensors hold every iterate along their iterative rank
        (with ``keep="all"``).

    Raises
    ------
    CascadeError
        A missing or mis-shaped input, a rank without a size, a partition that does not divide.

    Examples
    --------
    >>> import numpy as np
    >>> from einforge.einsum import parse_cascade
    >>> c = parse_cascade("ranks K M N\\ninput A[k,m] B[k,n]\\nZ[m,n] = A[k,m] * B[k,n]\\n")
    >>> a, b = np.arange(6.).reshape(2, 3), np.ones((2, 2))
    >>> evaluate(c, {"A": a, "B": b})["Z"]
    array([[3., 3.],
           [5., 5.],
           [7., 7.]])
    """
    sizes = dict(sizes or {})
    decls = {r.name: r for r in cascade.ranks}
    for t in cascade.inputs:
        if t.name not in inputs:
            raise CascadeError(f"missing input {t.name}", t.span,
                               f"{cascade.name} needs inputs {', '.join(x.name for x in cascade.inputs)}")
        arr = np.asarray(inputs[t.name])
        if arr.ndim != len(t.ranks):
            raise CascadeError(
                f"input {t.name} has {arr.ndim} dimension(s) but ranks ({', '.join(t.ranks)})", t.span)
        for r, n in zip(t.ranks, arr.shape):
            if r not in sizes and r in decls and not decls[r].derived and decls[r].size is None:
                sizes[r] = int(n)
    for name in inputs:
        if name not in cascade.tensors or not cascade.tensors[name].is_input:
            raise CascadeError(f"{name} is not an input of {cascade.name}", None,
                               f"inputs are {', '.join(x.name for x in cascade.inputs)}")
    if keep not in ("outputs", "all"):
        raise CascadeError(f"keep must be 'outputs' or 'all', not {keep!r}")
    env = resolve_sizes(cascade, sizes)
    bounds = _iter_bounds(cascade, env)
    plan = _schedule(cascade)
    windows = {} if keep == "all" else _windows(cascade, plan)
    state: dict[str, _Tensor] = {}
    for t in cascade.inputs:
        arr = np.asarray(inputs[t.name], dtype=np.float64)
        want = tuple(env[r] for r in t.ranks)
        if arr.shape != want:
            raise CascadeError(
                f"input {t.name} has shape {arr.shape} but its ranks ({', '.join(t.ranks)}) have sizes {want}",
                t.span)
        state[t.name] = _Tensor(numbers.from_float(arr))
    for name, info in cascade.tensors.items():
        if not info.is_input:
            shape = list(tensor_shape(cascade, name, env))
            if name in windows:
                axis, slots = windows[name]
                shape[axis] = slots
            if math.prod(shape) > _MAX_ELEMENTS:
                raise CascadeError(
                    f"{name} would hold {math.prod(shape):.3g} values ({' x '.join(map(str, shape))}): too many to "
                    "run on numbers here", None, "run the cascade at smaller sizes; the cost model (einforge "
                    "evaluate) handles full-size workloads")
            # a one-slot window is emptied before every step's use of it (Runner.clear): no fill now
            values = np.empty(tuple(shape), numbers.dtype) if windows.get(name, (0, 0))[1] == 1 else \
                numbers.fill(tuple(shape), info.empty)
            state[name] = _Tensor(values, np.zeros(tuple(shape), dtype=bool))

    run = _Runner(cascade, env, bounds, numbers, state, windows)
    for group, loop in plan:
        if loop is None:
            for i in group:
                pin = _init_pin(cascade, i, windows)
                run.einsum(i, pin)
        else:
            it = cascade.iterative_ranks[loop]
            fresh = [t for t in {cascade.einsums[i].name for i in group} if t in windows]
            for k in range(bounds[loop]):
                run.clear(fresh, k)
                for i in group:
                    run.einsum(i, {it.var: k})
            for t in fresh:
                run.tensor(t)

    out: dict[str, np.ndarray] = {}
    for name, info in cascade.tensors.items():
        if info.is_input or (keep == "outputs" and name not in cascade.outputs):
            continue
        t = state[name]
        out[name] = t.values
        if with_presence:
            out[name + "?"] = np.ones(t.values.shape, bool) if t.present is None else t.present
    return out


def _schedule(cascade: Cascade) -> list[tuple[list[int], str | None]]:
    """Split the Einsums into straight-line groups and loops over iterative ranks."""
    remaining = list(range(len(cascade.einsums)))
    plan: list[tuple[list[int], str | None]] = []
    for rk, it in cascade.iterative_ranks.items():
        carried: set[int] = set()
        carried_tensors: set[str] = set()
        for i in remaining:
            e = cascade.einsums[i]
            if cascade.einsum_kind(i) == "init" or it.var not in e.variables():
                continue
            hit = cascade.einsum_kind(i) == "update" and cascade.tensors[e.name].ranks[
                cascade.tensors[e.name].iterative] == rk
            for a in e.expr.accesses():
                info = cascade.tensors[a.tensor]
                if info.iterative is not None and info.ranks[info.iterative] == rk and \
                        cascade.access_kind(a) in ("prev", "next"):
                    hit = True
                if a.tensor in carried_tensors and it.var in a.variables():
                    hit = True
            if hit:
                carried.add(i)
                carried_tensors.add(e.name)
        if not carried:
            continue
        _pull_into_loop(cascade, it, remaining, carried)
        after: set[int] = set()
        produced_late = set(carried_tensors)
        for i in remaining:
            if i in carried:
                continue
            e = cascade.einsums[i]
            if any(a.tensor in produced_late for a in e.expr.accesses()):
                after.add(i)
                produced_late.add(e.name)
        before = [i for i in remaining if i not in carried and i not in after]
        if before:
            plan.append((before, None))
        plan.append(([i for i in remaining if i in carried], rk))
        remaining = [i for i in remaining if i in after]
    if remaining:
        plan.append((remaining, None))
    return plan


def _pull_into_loop(cascade: Cascade, it, remaining: list[int], carried: set[int]) -> None:
    """Move into the loop the Einsums that compute, step by step, only what the loop reads at its
    own step (``BQK[m1,m0,p]`` for the running max): computed there, they need one step of storage."""
    changed = True
    while changed:
        changed = False
        for i in reversed(remaining):
            if i in carried or cascade.einsum_kind(i) != "plain":
                continue
            e = cascade.einsums[i]
            if e.name in cascade.outputs or not any(isinstance(ix, Var) and ix.name == it.var
                                                    for ix in e.output.indices):
                continue
            readers = [(j, a) for j, f in enumerate(cascade.einsums) for a in f.expr.accesses() if a.tensor == e.name]
            axis = next(k for k, ix in enumerate(e.output.indices) if isinstance(ix, Var) and ix.name == it.var)
            if readers and all(j in carried and isinstance(a.indices[axis], Var) and a.indices[axis].name == it.var
                               for j, a in readers):
                carried.add(i)
                changed = True


def _windows(cascade: Cascade, plan) -> dict[str, tuple[int, int]]:
    """Tensors the loop over an iterative rank needs only a window of: tensor -> (axis, slots).

    An iterate read only as the previous or current one inside the loop (and as the final one
    after it) needs 2 slots, iterate ``k`` in slot ``k % 2``; a tensor written and read inside
    the loop only at the loop's own step needs 1. Outputs are kept whole."""
    out: dict[str, tuple[int, int]] = {}
    for group, loop in plan:
        if loop is None:
            continue
        it = cascade.iterative_ranks[loop]
        inside = set(group)
        written = {cascade.einsums[i].name for i in group}
        for t in written:
            if t in cascade.outputs:
                continue
            w = _window_of(cascade, t, it, inside)
            if w is not None:
                out[t] = w
    return out


def _window_of(cascade: Cascade, t: str, it, inside: set[int]):
    info = cascade.tensors[t]
    if info.iterative is not None:
        if info.ranks[info.iterative] != it.rank:
            return None
        axis, slots = info.iterative, 2
    else:
        prod = cascade.einsums[info.producers[0]]
        axis = next((k for k, ix in enumerate(prod.output.indices)
                     if isinstance(ix, Var) and ix.name == it.var), None)
        if axis is None:
            return None
        slots = 1
    for j, e in enumerate(cascade.einsums):
        for a in e.expr.accesses():
            if a.tensor != t:
                continue
            ix = a.indices[axis]
            kind = cascade.access_kind(a)
            if slots == 2:
                ok = (kind in ("prev", "next") and j in inside) or (kind == "final" and j not in inside)
            else:
                ok = j in inside and isinstance(ix, Var) and ix.name == it.var
            if not ok:
                return None
    return axis, slots


def _init_pin(cascade: Cascade, i: int, windows) -> dict:
    """An initialization of a windowed iterate runs at its first iterate only."""
    e = cascade.einsums[i]
    if cascade.einsum_kind(i) != "init" or e.name not in windows:
        return {}
    info = cascade.tensors[e.name]
    ix = e.output.indices[info.iterative]
    return {ix.name: 0} if isinstance(ix, Var) else {}


class _Runner:
    def __init__(self, cascade, env, bounds, numbers, state, windows=None):
        self.windows = windows or {}
        self.pending: dict[str, tuple] = {}     # tensor -> slot whose emptying is deferred
        self.c = cascade
        self.env = env
        self.bounds = bounds
        self.ns = numbers
        self.state = state
        self.ops = cascade.operators
        self.var_range = {}
        for r in cascade.ranks:
            if not r.param:
                self.var_range[r.name.lower()] = env[r.name]
        for rk, n in bounds.items():
            self.var_range[rk.lower()] = n

    def clear(self, tensors, k: int):
        """Before step ``k``: the slots step ``k`` writes start empty, as they would unwindowed.
        Emptying is deferred to the tensor's next use: a write that covers the whole slot makes it
        unnecessary (the common case, and a copy of the slot saved each step)."""
        for t in tensors:
            axis, slots = self.windows[t]
            slot = 0 if slots == 1 else (k + 1) % 2
            self._flush(t)
            self.pending[t] = (slice(None),) * axis + (slot,)

    def _flush(self, t: str) -> None:
        """Empty the slot of ``t`` whose clearing was deferred, if any."""
        sel = self.pending.pop(t, None)
        if sel is not None:
            st = self.state[t]
            st.values[sel] = self.ns.const(self.c.tensors[t].empty)
            st.present[sel] = False

    def tensor(self, t: str) -> _Tensor:
        """The state of ``t``, with any deferred clearing done."""
        self._flush(t)
        return self.state[t]

    # -- one Einsum, with some variables fixed ---------------------------------------------------
    def einsum(self, i: int, fixed: dict[str, int]):
        e = self.c.einsums[i]
        free = [v for v in e.variables() if v not in fixed]
        if len(free) > _MAX_DIMS:
            raise CascadeError(f"{e.name} ranges over {len(free)} rank variables; the executor handles at most "
                               f"{_MAX_DIMS} in one Einsum", e.span, "split it into Einsums over fewer ranks")
        out_vars = [v for v in e.output_variables() if v not in fixed]
        red = [(v, op) for v, op in e.reduce if v not in fixed]
        carried_red = [(v, op) for v, op in e.reduce if v in fixed]
        if carried_red and e.reduce[-1][0] != carried_red[0][0] and any(op != carried_red[0][1] for _, op in e.reduce):
            raise CascadeError(
                f"{e.name} reduces the iterative variable {carried_red[0][0]!r} before other ranks with a "
                "different operator; the executor cannot split that reduction across iterations",
                e.span, f"reduce {carried_red[0][0]!r} last (list it last after ::)")
        ranges = {v: (0, self.var_range[v]) for v in free}
        if out_vars and math.prod(b - a for a, b in ranges.values()) > _CHUNK and not self._fast_ok(e):
            v0 = out_vars[0]
            n = self.var_range[v0]
            inner = max(1, math.prod(b - a for a, b in ranges.values()) // n)
            step = max(1, _CHUNK // inner)
            for s in range(0, n, step):
                rr = dict(ranges)
                rr[v0] = (s, min(n, s + step))
                self._run(e, free, out_vars, red, fixed, rr, carried_red)
        else:
            self._run(e, free, out_vars, red, fixed, ranges, carried_red)

    def _grids(self, free, ranges, fixed):
        nd = len(free)
        env = dict(self.env)
        env.update(fixed)
        for k, v in enumerate(free):
            a, b = ranges[v]
            shape = [1] * nd
            shape[k] = b - a
            env[v] = np.arange(a, b).reshape(shape)
        return env

    def _fast_ok(self, e: Einsum) -> bool:
        factors = product_factors(e.expr)
        if factors is None or any(op != "+" for _, op in e.reduce) or len(e.variables()) > len(string.ascii_letters):
            return False
        # a product of two tensors that sums nothing is a broadcast multiply: the general path does it
        # with one rounding as well, without np.einsum's planning
        return bool(e.reduce) or len(factors) != 2 or not all(isinstance(f, Access) for f in factors)

    def _run(self, e: Einsum, free, out_vars, red, fixed, ranges, carried_red):
        self._space = (free, ranges, fixed)      # lets gathers of plain indices use slices (views)
        env = self._grids(free, ranges, fixed)
        data = {t for f in e.filters for t in reads_of(f)}
        if data:                                 # data-dependent filters read these tensors
            env[TENSORS] = {t: self.ns.to_float(self.tensor(t).values) for t in data}   # real values
        shape = tuple(ranges[v][1] - ranges[v][0] for v in free)
        fmask = None
        for f in e.filters:
            m = f.evaluate(env)
            fmask = m if fmask is None else (fmask & m)
        if fmask is not None:
            fmask = np.broadcast_to(np.asarray(fmask, dtype=bool), shape) if np.ndim(fmask) else np.full(shape, bool(fmask))
            if not fmask.any():
                return
        result = self._fast(e, free, out_vars, env, shape, fmask) if self._fast_ok(e) else None
        if result is None:
            value, present = self._expr(e.expr, env, shape)
            value = np.broadcast_to(value, shape) if np.ndim(value) < len(shape) or np.shape(value) != shape else value
            if present is not None:
                present = np.broadcast_to(present, shape)
            if fmask is not None:
                present = fmask if present is None else (present & fmask)
            for v, opname in red:
                ax = free.index(v)
                op = self.ops[opname]
                value = self.ns.reduce(op, value, ax, present)
                present = None if present is None else present.any(axis=ax)
                free = [w for w in free if w != v]
                shape = shape[:ax] + shape[ax + 1:]
            result = (value, present)
        self._write(e, result, ranges, fixed, out_vars, carried_red)

    def _sliced(self, a: Access, t) -> tuple | None:
        """``a`` read with basic indexing (views, not copies) when every index is a constant, a
        fixed variable, a free variable, or ``x*S + y`` with x fixed and y free; the result's axes
        follow the iteration space (singletons for the variables it lacks). None otherwise."""
        free, ranges, fixed = self._space
        win = self.windows.get(a.tensor)
        items, axes = [], []
        for axis, ix in enumerate(a.indices):
            n = t.values.shape[axis]
            if win is not None and axis == win[0]:
                if ix.variables() - fixed.keys():
                    return None
                items.append(ix.evaluate({**self.env, **fixed}) % win[1])
                continue
            vs = ix.variables()
            if not vs - fixed.keys():
                k = ix.evaluate({**self.env, **fixed})
                if not 0 <= k < n:
                    return None
                items.append(k)
                continue
            if isinstance(ix, Var) and ix.name in ranges:
                lo, hi, v = *ranges[ix.name], ix.name
            elif (isinstance(ix, BinOp) and ix.op == "+" and isinstance(ix.right, Var) and ix.right.name in ranges
                  and not ix.left.variables() - fixed.keys()):
                off = ix.left.evaluate({**self.env, **fixed})
                lo, hi, v = off + ranges[ix.right.name][0], off + ranges[ix.right.name][1], ix.right.name
            else:
                return None
            if lo < 0 or hi > n or v in axes:
                return None
            items.append(slice(lo, hi))
            axes.append(v)
        order = sorted(range(len(axes)), key=lambda k: free.index(axes[k]))

        def arrange(arr):
            arr = np.transpose(arr, order) if order != list(range(len(order))) else arr
            shape = [ranges[v][1] - ranges[v][0] if v in axes else 1 for v in free]
            return arr.reshape(shape) if len(free) else arr

        g = arrange(t.values[tuple(items)])
        p = None if t.present is None else arrange(t.present[tuple(items)])
        return g, p

    def _gather(self, a: Access, env, nd):
        t = self.tensor(a.tensor)
        fast = self._sliced(a, t) if getattr(self, "_space", None) is not None else None
        if fast is not None:
            g, p = fast
            if p is not None and p.all():
                p = None
            return g, p
        vals = t.values
        idx = []
        inrange = None
        win = self.windows.get(a.tensor)
        for axis, ix in enumerate(a.indices):
            n = vals.shape[axis]
            k = ix.evaluate(env)
            if win is not None and axis == win[0]:
                idx.append(k % win[1])          # a windowed axis: the slot of this step
                continue
            if not isinstance(k, np.ndarray) and not ix.variables() and not 0 <= k < n:
                raise CascadeError(
                    f"index {ix.text()} = {k} of {a.tensor} is out of range: that rank has coordinates 0..{n - 1}",
                    ix.span or a.span, "a size is one past the last coordinate; index the last one with "
                                       f"{ix.text()}-1, or the final iterate of an iterative rank by its bound")
            if isinstance(k, np.ndarray) or k < 0 or k >= n:
                ok = (k >= 0) & (k < n)
                if not np.all(ok):
                    inrange = ok if inrange is None else (inrange & ok)
                    k = np.clip(k, 0, n - 1)
            idx.append(k)
        g = vals[tuple(idx)] if idx else vals
        p = None
        if t.present is not None:
            p = t.present[tuple(idx)] if idx else t.present
        if inrange is not None:
            p = inrange if p is None else (p & inrange)
        g = np.asarray(g)
        if g.ndim < nd:
            g = g.reshape((1,) * (nd - g.ndim) + g.shape) if g.ndim == 0 else g
        if p is not None:
            p = np.asarray(p)
            if p.all():
                p = None
        return g, p

    def _fast(self, e, free, out_vars, env, shape, fmask):
        """Sum of products through ``np.einsum``: empty operand values are zeroed so that they
        add nothing (exactly, also in fixed point), and the result exists where some point of the
        sum had every operand present and passed the filters."""
        factors = product_factors(e.expr)
        letters = {v: string.ascii_letters[k] for k, v in enumerate(free)}
        operands, subs, masks = [], [], []
        scale = []
        nd = len(free)
        floating = self.ns.dtype == np.float64
        consts = [f for f in factors if not isinstance(f, Access)]
        target = fold_target(factors, e.output_variables(), self.var_range) if consts else None
        if consts:
            # the constants are one number, folded into the smallest operand (or the result)
            scale.append(self.ns.const(math.prod(self._constant(f) for f in consts)))
        for k_f, f in enumerate(factors):
            if not isinstance(f, Access):
                continue
            g, p = self._gather(f, env, nd)
            used = [k for k in range(nd) if free[k] in f.variables()]
            g = g.reshape((1,) * nd) if g.ndim == 0 and nd else g
            sq = np.squeeze(g, axis=tuple(k for k in range(nd) if k not in used)) if nd else g
            if k_f == target:
                sq = self.ns.map(self.ops["*"], sq, scale.pop())
            sub = "".join(letters[free[k]] for k in used)
            if floating and (fmask is not None or p is not None) and not np.all(np.isfinite(sq)):
                return None   # inf * 0 would poison the sum: take the general path
            if p is not None:
                pm = np.broadcast_to(p, g.shape) if np.ndim(p) else np.full(g.shape, bool(p))
                pm = np.squeeze(pm, axis=tuple(k for k in range(nd) if k not in used)) if nd else pm
                sq = np.where(pm, sq, self.ns.const(0.0))
                masks.append((pm, sub))
            operands.append(sq)
            subs.append(sub)
        if fmask is not None:
            fused = [k for k in range(nd) if any(free[k] in f.variables() for f in e.filters)]
            m_small = np.asarray(fmask)[tuple(slice(None) if k in fused else 0 for k in range(nd))]
            operands.append(self.ns.from_float(m_small.astype(np.float64)))
            subs.append("".join(letters[free[k]] for k in fused))
            masks.append((m_small, subs[-1]))
        out_sub = "".join(letters[v] for v in out_vars)
        covered = set("".join(subs))
        if not set(out_sub) <= covered or not operands:
            return None
        value = self.ns.contract(",".join(subs) + "->" + out_sub, *operands)
        for sc in scale:
            value = self.ns.map(self.ops["*"], value, sc)
        present = None
        if masks:
            seen = set("".join(s_ for _, s_ in masks))
            part = "".join(ch for ch in out_sub if ch in seen)
            count = np.einsum(",".join(s_ for _, s_ in masks) + "->" + part, *[m.astype(np.float64) for m, _ in masks])
            present = (count > 0).reshape([count.shape[part.index(ch)] if ch in part else 1 for ch in out_sub])
            present = np.broadcast_to(present, np.shape(value))
            if present.all():
                present = None
        return np.asarray(value), present

    def _constant(self, x) -> float:
        """A constant factor's exact value (``1/sqrt(E)``), computed in float64 and rounded once."""
        if isinstance(x, Const):
            return float(x.value)
        if isinstance(x, SizeRef):
            return float(self.env[x.name])
        with np.errstate(all="ignore"):
            return float(self.ops[x.op].fn(*[np.float64(self._constant(a)) for a in x.args]))

    def _expr(self, x, env, shape):
        """(value, presence) of a payload expression over the iteration space."""
        value, present, _ = self._value(x, env, shape)
        return value, present

    def _value(self, x, env, shape):
        """(value, presence, whether the value is a temporary of this evaluation that nothing else
        holds: an elementwise result may then be written over it)."""
        nd = len(shape)
        if isinstance(x, Const):
            return self.ns.const(x.value), None, False
        if isinstance(x, SizeRef):
            return self.ns.const(self.env[x.name]), None, False
        if isinstance(x, Position):
            k = np.asarray(env[x.var], dtype=np.float64)
            return self.ns.from_float(k.reshape((1,) * (nd - k.ndim) + k.shape) if k.ndim < nd else k), None, False
        if isinstance(x, Access):
            return (*self._gather(x, env, nd), False)
        op = self.ops[x.op]
        parts = [self._value(a, env, shape) for a in x.args]
        vals = [p[0] for p in parts]
        pres = [p[1] for p in parts]
        if all(p is None for p in pres):
            return self._map(op, vals, [p[2] for p in parts]), None, self._makes_new(op)
        if op.merge == "union":
            # empty operands are skipped: fold the present ones pairwise
            acc_v, acc_p = vals[0], pres[0]
            for v, p in zip(vals[1:], pres[1:]):
                both = self.ns.map(op, acc_v, v)
                pa = True if acc_p is None else acc_p
                pb = True if p is None else p
                new_v = np.where(pa & pb, both, np.where(pa, acc_v, v))
                acc_p = None if (acc_p is None or p is None) else (acc_p | p)
                acc_v = new_v
            return acc_v, acc_p, False
        present = None
        for p in pres:
            if p is not None:
                present = p if present is None else (present & p)
        return self._map(op, vals, [p[2] for p in parts]), present, self._makes_new(op)

    def _makes_new(self, op) -> bool:
        """Whether the number system's map of ``op`` makes a new array that may be written over
        (a numpy ufunc's result, in a system that writes in place)."""
        return self.ns.writes_in_place and isinstance(op.fn, _Ufunc)

    def _map(self, op, vals, temporary):
        """``op`` over ``vals``, written over an operand that is a temporary of the result's shape
        when there is one (a new array of megabytes costs more than the arithmetic on it)."""
        if self._makes_new(op) and any(temporary):
            for v, own in zip(vals, temporary):
                if own and isinstance(v, np.ndarray) and v.dtype == self.ns.dtype and all(
                        _broadcasts_to(np.shape(u), v.shape) for u in vals):
                    return self.ns.map(op, *vals, out=v)
        return self.ns.map(op, *vals)

    def _write(self, e: Einsum, result, ranges, fixed, out_vars, carried_red):
        value, present = result
        t = self.state[e.name]
        win = self.windows.get(e.name)
        idx = self._write_index(e, ranges, fixed, out_vars, win)
        target_shape = t.values[idx].shape
        fresh = e.name in self.pending and not carried_red and self._covers(t, idx, self.pending[e.name])
        if fresh:
            del self.pending[e.name]          # the write below replaces every coordinate of the slot
            if present is None and win[1] == 1 and not isinstance(e.expr, Const) and \
                    self._adoptable(value, target_shape, e.name):
                # a one-slot window is the whole tensor: take the new array instead of copying it
                t.values = value.reshape(t.values.shape)
                t.present[...] = True
                return
        else:
            self._flush(e.name)
        value = np.broadcast_to(np.asarray(value), target_shape)
        if isinstance(e.expr, Const) and e.expr.value == self.c.tensors[e.name].empty and \
                self.c.einsum_kind(self.c.einsums.index(e)) == "init":
            t.values[idx] = value
            if fresh:
                t.present[idx] = False
            return  # writing the empty value leaves the coordinates empty
        empty = self.c.tensors[e.name].empty
        if present is None and not carried_red and not math.isinf(empty):
            t.values[idx] = value               # every coordinate written and present
            t.present[idx] = True
            return
        newp = np.ones(target_shape, bool) if present is None else np.broadcast_to(present, target_shape)
        if math.isinf(empty):
            # a max over nothing but -inf (a fully masked tile) is the empty value: it stays empty, so
            # exp(x - max) meets an empty operand instead of computing exp(-inf - -inf) = NaN
            newp = newp & (self.ns.to_float(value) != self.ns.to_float(self.ns.const(empty)))
            present = newp
        if carried_red:
            op = self.ops[carried_red[0][1]]
            old_v, old_p = t.values[idx], t.present[idx]
            merged = np.where(old_p & newp, self.ns.map(op, old_v, value), np.where(newp, value, old_v))
            t.values[idx] = merged
            t.present[idx] = old_p | newp
        elif present is None:
            t.values[idx] = value
            t.present[idx] = True
        elif fresh:
            t.values[idx] = np.where(newp, value, self.ns.const(empty))
            t.present[idx] = newp
        else:
            t.values[idx] = np.where(newp, value, t.values[idx])
            t.present[idx] = t.present[idx] | newp

    def _write_index(self, e: Einsum, ranges, fixed, out_vars, win) -> tuple:
        """Where the Einsum's result goes in its tensor: slices (a view) where it can, index grids
        for blocked outputs and repeated variables, the window's slot for a windowed axis."""
        nd = len(out_vars)
        idx = []
        # output indices are distinct variables in the order of out_vars: slices address the
        # region directly (a view), unless a variable repeats (a diagonal), which needs index grids
        blocked = [ix for ix in e.output.indices if not isinstance(ix, Var) and ix.op == "+" and isinstance(ix.left, BinOp)]
        grids = bool(blocked) or len(set(out_vars)) != len(
            [ix for ix in e.output.indices if (ix.name if isinstance(ix, Var) else ix.left.name) not in fixed])
        for axis, ix in enumerate(e.output.indices):
            if ix in blocked:                    # a block and its offset (x*X0 + x0): index grids
                env = dict(self.env)
                for v in ix.variables():
                    if v in fixed:
                        env[v] = fixed[v]
                    else:
                        a, b = ranges[v]
                        shp = [1] * nd
                        shp[out_vars.index(v)] = b - a
                        env[v] = np.arange(a, b).reshape(shp)
                idx.append(np.asarray(ix.evaluate(env)))
                continue
            v, plus = (ix.name, 0) if isinstance(ix, Var) else (ix.left.name, 1)
            if v in fixed:
                k = fixed[v] + plus
                idx.append(k % win[1] if win is not None and axis == win[0] else k)
            elif not grids:
                a, b = ranges[v]
                idx.append(slice(a + plus, b + plus))
            else:
                a, b = ranges[v]
                shp = [1] * nd
                shp[out_vars.index(v)] = b - a
                idx.append(np.arange(a + plus, b + plus).reshape(shp))
        return tuple(idx)

    def _adoptable(self, value, shape: tuple, name: str) -> bool:
        """Whether ``value`` can become tensor ``name``'s storage: an array of its own (not a view,
        not another tensor's storage) of the written shape and the tensor's type, whose empty value
        needs no marking (a max over nothing, -inf, does)."""
        return (isinstance(value, np.ndarray) and value.flags.owndata and value.flags.c_contiguous
                and value.shape == shape and value.dtype == self.state[name].values.dtype
                and not math.isinf(self.c.tensors[name].empty)
                and all(value is not other.values for other in self.state.values()))

    @staticmethod
    def _covers(t: _Tensor, idx: tuple, slot: tuple) -> bool:
        """Whether writing at ``idx`` reaches every coordinate of the window slot ``slot``."""
        if len(idx) != len(t.values.shape):
            return False
        for axis, (ix, n) in enumerate(zip(idx, t.values.shape)):
            if axis < len(slot) and not isinstance(slot[axis], slice):
                if not isinstance(ix, (int, np.integer)) or ix != slot[axis]:
                    return False
            elif not (isinstance(ix, slice) and ix.start in (0, None) and ix.stop in (n, None) and ix.step is None):
                return False
        return True


def _broadcasts_to(shape: tuple, target: tuple) -> bool:
    """Whether an array of ``shape`` broadcasts to ``target`` unchanged in size (numpy's own
    broadcast_shapes stops at 32 dimensions; the executor goes further)."""
    return len(shape) <= len(target) and all(a in (1, b) for a, b in zip(shape[::-1], target[::-1]))
