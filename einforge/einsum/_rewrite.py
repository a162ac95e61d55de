"""Pass-reducing rewrites (FuseMax paper, section III-C), as functions from cascade to cascade.

* :func:`defer_division` — reassociation: ``A = N / S`` summed against ``W`` over a rank that ``S``
  lacks becomes ``U = N * W`` summed, then ``U / S``. Exact, and fewer divisions.
* :func:`running_max` — iterative construction with a correction factor: a global max over a rank
  becomes a running max over tiles of it (an iterative rank), and every sum of ``exp(x - max)``
  terms is rescaled by ``exp(old - new)`` as the max grows.

Each rewrite checks itself: the executor runs the old and the new cascade on the same random
inputs and the outputs must agree.
"""

from __future__ import annotations

import math
from dataclasses import replace
from math import gcd

import numpy as np

from ._cascade import Cascade
from ._errors import CascadeError
from ._execute import evaluate, resolve_sizes
from ._ir import Access, BinOp, Call, Compare, Const, Einsum, Num, RankDecl, Sym, TensorDecl, Var, reads_of, var_of

__all__ = ["defer_division", "running_max", "check_equivalent", "host_layouts", "subcascade"]


# ------------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------------

def _subst_ix(ix, mapping: dict):
    """Replace rank variables in an index expression (``mapping``: var -> index expression)."""
    if isinstance(ix, Var):
        return mapping.get(ix.name, ix)
    if isinstance(ix, BinOp):
        return BinOp(ix.op, _subst_ix(ix.left, mapping), _subst_ix(ix.right, mapping))
    return ix


def _map_accesses(expr, fn):
    if isinstance(expr, Access):
        return fn(expr)
    if isinstance(expr, Call):
        return Call(expr.op, tuple(_map_accesses(a, fn) for a in expr.args))
    return expr


def _factors(expr):
    if isinstance(expr, Call) and expr.op == "*":
        return _factors(expr.args[0]) + _factors(expr.args[1])
    return [expr]


def _readers(c: Cascade, tensor: str) -> list[int]:
    return [i for i, e in enumerate(c.einsums) if any(a.tensor == tensor for a in e.expr.accesses())]


def _fresh(c_names: set[str], want: str) -> str:
    name, k = want, 2
    while name in c_names:
        name = f"{want}{k}"
        k += 1
    c_names.add(name)
    return name


def _names(c: Cascade) -> set[str]:
    return set(c.tensors) | {r.name for r in c.ranks}


def compare_outputs(ref: dict, got: dict, outputs) -> tuple[list[str], float, float]:
    """(outputs compared, largest absolute difference, largest difference relative to the
    reference's magnitude) over ``outputs`` present in both; a NaN or a shape mismatch counts as
    an infinite difference."""
    compared, worst_abs, worst_rel = [], 0.0, 0.0
    for o in outputs:
        if o not in ref or o not in got:
            continue
        a, b = np.asarray(ref[o], float), np.asarray(got[o], float)
        compared.append(o)
        if a.shape != b.shape:
            return compared, math.inf, math.inf
        if not a.size:
            continue
        with np.errstate(all="ignore"):
            same = (a == b) | (np.isnan(a) & np.isnan(b))
            diff = np.where(same, 0.0, np.abs(a - b))
        d = float(np.max(diff))
        if not math.isfinite(d) or (np.isnan(diff).any()):
            d = math.inf
        finite = np.abs(a[np.isfinite(a)])
        scale = max(float(np.max(finite)) if finite.size else 0.0, 1e-300)
        worst_abs, worst_rel = max(worst_abs, d), max(worst_rel, d / scale)
    return compared, worst_abs, worst_rel


def check_equivalent(old: Cascade, new: Cascade, sizes: dict | None = None, seed: int = 0,
                     rtol: float = 1e-9) -> float:
    """Run both cascades on the same random inputs; return the largest relative difference of
    their common outputs.

    Raises
    ------
    CascadeError
        The cascades share no output (nothing would be compared), or an output differs by more
        than ``rtol`` relative to the first cascade's magnitude.
    """
    sizes = dict(sizes or {})
    for r in new.ranks:
        if r.size is None and r.name not in sizes:
            sizes[r.name] = 4
    sz_old = resolve_sizes(old, {k: v for k, v in sizes.items() if k in {r.name for r in old.ranks}})
    sz_new = resolve_sizes(new, {**{k: v for k, v in sz_old.items() if k in {r.name for r in new.ranks}
                                    and not new.rank(k).derived}, **{k: v for k, v in sizes.items()
                                                                     if k in {r.name for r in new.ranks}}})
    missing = [t.name for t in new.inputs if t.name not in {x.name for x in old.inputs}]
    if missing:
        raise CascadeError(f"{new.name} reads inputs {', '.join(missing)} that {old.name} does not have",
                           None, "compare cascades with the same inputs")
    rng = np.random.default_rng(seed)
    x = {t.name: rng.normal(size=[sz_old[r] for r in t.ranks]) for t in old.inputs}
    a = evaluate(old, x, sz_old)
    b = evaluate(new, {k: v for k, v in x.items() if k in {t.name for t in new.inputs}}, sz_new)
    compared, _, worst = compare_outputs(a, b, old.outputs)
    if not compared:
        raise CascadeError(f"{old.name} and {new.name} share no output: nothing to compare",
                           None, f"outputs: {', '.join(old.outputs)} and {', '.join(new.outputs)}")
    if not worst <= rtol:
        raise CascadeError(
            f"{new.name} computes other values than {old.name} (relative difference {worst:.3g} in "
            f"{', '.join(compared)})", None,
            "if this is a rewrite, its preconditions do not hold for this cascade; please report it")
    return worst


# ------------------------------------------------------------------------------------------------
# division deferral
# ------------------------------------------------------------------------------------------------

def defer_division(cascade: Cascade, *, check: bool = True) -> Cascade:
    """Defer every division whose quotient is only summed against other factors.

    ``A[m,p] = N[m,p] / S[p]`` read only by ``Z[f,p] = A[m,p] * W[f,m]`` (a sum over ``m``)
    becomes ``NW[f,p] = N[m,p] * W[f,m]`` and ``Z[f,p] = NW[f,p] / S[p]`` (paper Einsums 31-32).

    Raises
    ------
    CascadeError
        If no division can be deferred.

    Examples
    --------
    >>> from einforge.einsum import library, passes
    >>> c = defer_division(library()["attention-3pass"].load())
    >>> [e.text() for e in c.einsums[-2:]]
    ['SNV[f,p] = SN[m,p] * V[f,m]', 'AV[f,p] = SNV[f,p] / SD[p]']
    >>> passes(c, "M").passes
    2
    """
    c = cascade
    done = 0
    while True:
        step = _defer_one(c)
        if step is None:
            break
        c = step
        done += 1
    if not done:
        raise CascadeError(
            f"no division to defer in {cascade.name}", None,
            "deferral needs an Einsum X = N / S whose only reader sums X times other factors over a rank S lacks")
    c = replace(c, name=_renamed(cascade.name, "deferred"),
                description=_redescribed(cascade.description, "divisions deferred"))
    if check:
        check_equivalent(cascade, c)
    return c


def _renamed(name: str, what: str) -> str:
    """The rewritten cascade's name: a different algorithm must not pass for the original."""
    return name if name.endswith("-" + what) else f"{name}-{what}"


def _redescribed(description: str, what: str) -> str:
    if description.endswith(")") and "(rewritten: " in description:
        return f"{description[:-1]}; {what})"
    return f"{description} (rewritten: {what})" if description else f"rewritten: {what}"


def _defer_one(c: Cascade) -> Cascade | None:
    for di, d in enumerate(c.einsums):
        if c.einsum_kind(di) != "plain" or d.reduce or d.name in c.outputs:
            continue
        if not (isinstance(d.expr, Call) and d.expr.op == "/" and all(isinstance(a, Access) for a in d.expr.args)):
            continue
        num, den = d.expr.args
        readers = _readers(c, d.name)
        if len(readers) != 1:
            continue
        ci = readers[0]
        ce = c.einsums[ci]
        if c.einsum_kind(ci) != "plain" or any(op != "+" for _, op in ce.reduce):
            continue
        facs = _factors(ce.expr)
        hits = [f for f in facs if isinstance(f, Access) and f.tensor == d.name]
        if len(hits) != 1 or sum(1 for a in ce.expr.accesses() if a.tensor == d.name) != 1:
            continue
        acc = hits[0]
        if not all(isinstance(ix, Var) for ix in acc.indices):
            continue
        sigma = {ix.name: acc.indices[k] for k, ix in enumerate(d.output.indices)}
        den2 = Access(den.tensor, tuple(_subst_ix(ix, sigma) for ix in den.indices))
        num2 = Access(num.tensor, tuple(_subst_ix(ix, sigma) for ix in num.indices))
        out_vars = set(ce.output_variables())
        reduced = {v for v, _ in ce.reduce}
        if not reduced & {ix.name for ix in acc.indices}:
            continue  # the quotient is not summed over: nothing to gain
        dvars = set()
        for ix in den2.indices:
            dvars |= ix.variables()
        if not dvars <= out_vars:
            continue
        names = _names(c)
        others = [f.tensor for f in facs if isinstance(f, Access) and f.tensor != d.name]
        u = _fresh(names, num.tensor + "".join(others))
        new_expr = _map_accesses(ce.expr, lambda a: num2 if a is acc or a == acc else a)
        filters = ce.filters + tuple(Compare(_subst_ix(f.left, sigma), f.op, _subst_ix(f.right, sigma))
                                     for f in d.filters)
        ue = Einsum(Access(u, ce.output.indices), new_expr, ce.reduce, filters)
        ze = Einsum(ce.output, Call("/", (Access(u, tuple(ce.output.indices)), den2)), (), ())
        einsums = [e for k, e in enumerate(c.einsums) if k not in (di, ci)]
        pos = ci - 1 if di < ci else ci
        einsums[pos:pos] = [ue, ze]
        return replace(c, einsums=tuple(einsums), outputs=c.outputs)
    return None


# ------------------------------------------------------------------------------------------------
# running max (iterative construction with a correction factor)
# ------------------------------------------------------------------------------------------------

def _exp_of_difference(expr, g: str):
    """``exp(Z - G[...])`` -> (Z, the G access), else None."""
    if (isinstance(expr, Call) and expr.op == "exp" and isinstance(expr.args[0], Call)
            and expr.args[0].op == "-" and isinstance(expr.args[0].args[1], Access)
            and expr.args[0].args[1].tensor == g
            and all(a.tensor != g for a in expr.args[0].args[0].accesses())):
        return expr.args[0].args[0], expr.args[0].args[1]
    return None


def _names_for(name: str, names: set[str]):
    """Paper naming: SD -> SLD (tile), RD (running), SPD (rescaled previous)."""
    local = _fresh(names, name[0] + "L" + name[1:] if len(name) > 1 else name + "L")
    run = _fresh(names, "R" + name[1:] if len(name) > 1 else "R" + name)
    scaled = _fresh(names, name[0] + "P" + name[1:] if len(name) > 1 else name + "P")
    return local, run, scaled


def running_max(cascade: Cascade, rank: str, *, tile_size: int | None = None, check: bool = True) -> Cascade:
    """Turn a global max over ``rank`` into a running max over tiles of it (one pass).

    ``rank`` (say M) is split into ``M1`` tiles of ``M0``; ``M1`` becomes an iterative rank. The
    global max ``G = max_m X`` becomes a per-tile max ``LM``, a running max ``RM[m1+1] =
    max(RM[m1], LM[m1])`` and a correction ``PRM = exp(RM[m1] - RM[m1+1])``; each sum
    ``S = sum_m exp(X - G) * W`` becomes a running sum ``RS[m1+1] = SL[m1] + RS[m1] * PRM[m1]``
    whose final iterate is ``S``. Divisions by such sums must already be deferred. A sum over
    ``rank`` with no exponential of the max in it but kept per coordinate of the max (a hybrid's
    linear-attention terms) becomes a running sum too, unscaled; an Einsum after the loop may read
    the max itself (``exp(-G)``): it reads the running max's last iterate.

    Raises
    ------
    CascadeError
        If the cascade has no such max, or uses it in a way the rewrite cannot rescale.

    Examples
    --------
    >>> from einforge.einsum import library, passes
    >>> c = running_max(defer_division(library()["attention-3pass"].load()), "M")
    >>> passes(c, "M").passes
    1
    """
    c = cascade
    v = var_of(rank)
    if rank not in {r.name for r in c.ranks}:
        raise CascadeError(f"{c.name} has no rank {rank}")
    gi = next((i for i, e in enumerate(c.einsums)
               if c.einsum_kind(i) == "plain" and [x for x in e.reduce if x[0] == v] == [(v, "max")]), None)
    if gi is None:
        raise CascadeError(f"{c.name} has no max over {rank} to make running", None,
                           f"the rewrite needs an Einsum G[...] = X[...] :: max({v})")
    g = c.einsums[gi]
    if len(g.reduce) != 1 or g.filters:
        raise CascadeError(f"{g.name} reduces more than {v!r} (or is filtered); the rewrite handles a max "
                           f"over {v!r} alone", g.span)
    t1, t0 = rank + "1", rank + "0"
    v1, v0 = var_of(t1), var_of(t0)
    if t1 in _names(c) or t0 in _names(c):
        raise CascadeError(f"{c.name} already has a rank {t1} or {t0}", None, "the rewrite creates the tiles")
    names = _names(c)

    # the exponentials of differences from G, and the sums over v of products with them
    exps: dict[int, tuple] = {}
    finals: set[int] = set()       # readers of the max itself after the loop (exp(-G) in LoLCATs)
    for i in _readers(c, g.name):
        e = c.einsums[i]
        hit = _exp_of_difference(e.expr, g.name)
        if hit is None and v not in e.variables() and not e.reduce:
            finals.add(i)
            continue
        if hit is None or v not in e.output_variables() or e.reduce or e.name in c.outputs:
            raise CascadeError(
                f"{e.name} uses the max {g.name} other than as exp(x - {g.name}) over {v!r}", e.span,
                "the running max rescales exponentials only; defer divisions first (--defer-division)")
        exps[i] = hit
    sums: dict[int, int] = {}
    for i in exps:
        name = c.einsums[i].name
        for j in _readers(c, name):
            s = c.einsums[j]
            facs = _factors(s.expr)
            ok = (any(isinstance(f, Access) and f.tensor == name for f in facs)
                  and sum(1 for a in s.expr.accesses() if a.tensor == name) == 1
                  and all(op == "+" for _, op in s.reduce) and v in {x for x, _ in s.reduce}
                  and all(not (isinstance(f, Access) and f.tensor in {c.einsums[k].name for k in exps} and f.tensor != name)
                          for f in facs))
            if not ok:
                raise CascadeError(
                    f"{s.name} reads {name} but is not a sum over {v!r} of a product with it", s.span,
                    "the correction factor only rescales sums; defer divisions first (--defer-division)")
            sums[j] = i

    # sums over v that no exponential scales but that are kept per coordinate of the max (per
    # query: the linear part of a hybrid attention) run alongside, unscaled; a sum without the
    # max's coordinates (MossFormer's KV) is computed once for all queries and left as it is
    g_vars = set(g.output_variables())
    plain = {i for i, e in enumerate(c.einsums)
             if i not in sums and i != gi and (v, "+") in e.reduce and all(op == "+" for _, op in e.reduce)
             and g_vars <= set(e.output_variables())}

    # tensors whose rank axis splits into tiles: everything computed over v before the sums
    split: set[str] = set()
    for i, e in enumerate(c.einsums):
        if i in sums or i in plain or i == gi:
            continue
        if v in e.output_variables():
            split.add(e.name)

    tile_ix = BinOp("+", BinOp("*", Var(v1), Sym(t0)), Var(v0))

    def part_access(a: Access) -> Access:
        if a.tensor in split:
            info = c.tensors[a.tensor]
            out = []
            for k, ix in enumerate(a.indices):
                if info.ranks[k] == rank and isinstance(ix, Var) and ix.name == v:
                    out += [Var(v1), Var(v0)]
                else:
                    out.append(_subst_ix(ix, {v: tile_ix}))
            return Access(a.tensor, tuple(out))
        return Access(a.tensor, tuple(_subst_ix(ix, {v: tile_ix}) for ix in a.indices))

    def part_einsum(e: Einsum, drop_reduce: bool = False) -> Einsum:
        out = []
        for ix in e.output.indices:
            out += [Var(v1), Var(v0)] if isinstance(ix, Var) and ix.name == v else [ix]
        red = []
        for x, op in e.reduce:
            if x == v:
                if not drop_reduce:
                    red += [(v1, op), (v0, op)]
            else:
                red.append((x, op))
        filters = tuple(Compare(_subst_ix(f.left, {v: tile_ix}), f.op, _subst_ix(f.right, {v: tile_ix}))
                        for f in e.filters)
        return Einsum(Access(e.output.tensor, tuple(out)), _map_accesses(e.expr, part_access), tuple(red), filters)

    lm = _fresh(names, "L" + g.name[1:] if g.name.startswith("G") and len(g.name) > 1 else "L" + g.name)
    rm = _fresh(names, "R" + g.name[1:] if g.name.startswith("G") and len(g.name) > 1 else "R" + g.name)
    prm = _fresh(names, "P" + rm)
    g_out = list(g.output.indices)

    def it(tensor, first, rest):
        return Access(tensor, (first,) + tuple(rest))

    nxt = BinOp("+", Var(v1), Num(1))
    inits: list[Einsum] = []
    body: list[Einsum] = []
    inits.append(Einsum(it(rm, Var(v1), g_out), Const(-np.inf), (), (Compare(Var(v1), "==", Num(0)),)))
    planned = {j: _names_for(c.einsums[j].name, names) for j in sorted(set(sums) | plain)}
    for j, (_, run, _) in planned.items():
        inits.append(Einsum(it(run, Var(v1), c.einsums[j].output.indices), Const(0.0), (),
                            (Compare(Var(v1), "==", Num(0)),)))
    final_max = False
    for i, e in enumerate(c.einsums):
        if i in finals and not final_max:        # the max itself: the running max's last iterate
            body.append(Einsum(g.output, it(rm, Sym(t1), g_out)))
            final_max = True
        if i == gi:
            pe = part_einsum(e)
            body.append(Einsum(it(lm, Var(v1), g_out), pe.expr, ((v0, "max"),), pe.filters))
            body.append(Einsum(it(rm, nxt, g_out), Call("max", (it(rm, Var(v1), g_out), it(lm, Var(v1), g_out)))))
            body.append(Einsum(it(prm, Var(v1), g_out),
                               Call("exp", (Call("-", (it(rm, Var(v1), g_out), it(rm, nxt, g_out))),))))
        elif i in exps:
            z, gacc = exps[i]
            pe = part_einsum(e)
            body.append(Einsum(pe.output, Call("exp", (Call("-", (_map_accesses(z, part_access),
                                                                  it(rm, nxt, gacc.indices))),)), (), pe.filters))
        elif i in sums:
            local, run, scaled = planned[i]
            pe = part_einsum(e)
            red = tuple(x for x in pe.reduce if x[0] != v1)
            outs = e.output.indices
            body.append(Einsum(it(local, Var(v1), outs), pe.expr, red, pe.filters))
            # the correction factor at the coordinates of the max that this sum's product used
            src = c.einsums[sums[i]]
            acc = next(a for a in e.expr.accesses() if a.tensor == src.name)
            sigma = {ix.name: acc.indices[k] for k, ix in enumerate(src.output.indices) if isinstance(ix, Var)}
            _, gacc = exps[sums[i]]
            prm_ix = [_subst_ix(ix, sigma) for ix in gacc.indices]
            bad = set().union(*(ix.variables() for ix in prm_ix)) - set(e.output_variables()) if prm_ix else set()
            if bad:
                raise CascadeError(f"{e.name} sums away {sorted(bad)[0]!r}, a rank of the max {g.name}", e.span)
            body.append(Einsum(it(scaled, Var(v1), outs), Call("*", (it(run, Var(v1), outs), it(prm, Var(v1), prm_ix)))))
            body.append(Einsum(it(run, nxt, outs), Call("+", (it(local, Var(v1), outs), it(scaled, Var(v1), outs)))))
            body.append(Einsum(e.output, it(run, Sym(t1), outs)))
        elif i in plain:
            local, run, _ = planned[i]
            pe = part_einsum(e)
            outs = e.output.indices
            body.append(Einsum(it(local, Var(v1), outs), pe.expr, tuple(x for x in pe.reduce if x[0] != v1),
                               pe.filters))
            body.append(Einsum(it(run, nxt, outs), Call("+", (it(run, Var(v1), outs), it(local, Var(v1), outs)))))
            body.append(Einsum(e.output, it(run, Sym(t1), outs)))
        elif v in e.variables():
            body.append(part_einsum(e))
        else:
            body.append(e)

    decl = c.rank(rank)
    if tile_size is None:
        tile_size = gcd(decl.size.value, 8) if isinstance(decl.size, Num) else 8
    # the tiles are declared (M1 = M/M0), not left to inference: a rank that is itself a tile of
    # another (chunked attention's K0 in c*K0+k0) gives the inference nothing to go on
    ranks = tuple(c.ranks) + (RankDecl(t0, Num(tile_size)), RankDecl(t1, BinOp("/", Sym(rank), Sym(t0))))
    new = Cascade(
        name=_renamed(c.name, "running-max"), ranks=ranks, inputs=c.inputs, einsums=tuple(inits + body),
        stop=c.stop + (Compare(Var(v1), ">=", Sym(t1)),), outputs=c.outputs,
        description=_redescribed(c.description, f"running max over tiles of {rank}"), operators=c.operators,
        workload=c.workload, family=c.family,
    )
    if check:
        check_equivalent(cascade, new)
    return new


def host_layouts(cascade: Cascade) -> Cascade:
    """Leave the gathers of chunks to the host: the cascade an accelerator runs when its inputs
    arrive chunk by chunk and its outputs leave that way (chunked attention's ``QC[e,c,q0] =
    Q[e, c*Q0+q0]``). A copy ``Y[plain variables] = X[indices]`` of an input ``X`` that nothing else
    reads makes ``Y`` the input; an output written at blocked indices (``AV[f, c*Q0+q0] = ...``) is
    written at its variables (``AV[f,c,q0]``). The arithmetic is unchanged.

    Raises
    ------
    CascadeError
        Nothing to move: no input is only copied, no output is blocked.

    Examples
    --------
    >>> from einforge.einsum import library
    >>> c = host_layouts(library()["attention-chunked"].load())
    >>> [t.text() for t in c.inputs], c.tensors["AV"].ranks
    (['QC[e,c,q0]', 'KC[e,c,k0]', 'VC[f,c,k0]'], ('F', 'C', 'Q0'))
    """
    c = cascade
    inputs = {t.name: t for t in c.inputs}
    moved: dict[str, TensorDecl] = {}         # input -> the copy that replaces it
    dropped: set[int] = set()
    for i, e in enumerate(c.einsums):
        src = e.expr
        plain = all(isinstance(ix, Var) for ix in e.output.indices) and \
            len({ix.name for ix in e.output.indices}) == len(e.output.indices)
        if isinstance(src, Access) and src.tensor in inputs and plain and not e.filters and not e.reduce \
                and _readers(c, src.tensor) == [i] and src.tensor not in moved:
            moved[src.tensor] = TensorDecl(e.name, c.tensors[e.name].ranks)
            dropped.add(i)
    body = []
    blocked = False
    for i, e in enumerate(c.einsums):
        if i in dropped:
            continue
        if e.name in c.outputs and any(not isinstance(ix, Var) for ix in e.output.indices):
            plain = tuple(Var(v) for v in _blocked_variables(e))
            e = replace(e, output=Access(e.output.tensor, plain))
            blocked = True
        body.append(e)
    if not moved and not blocked:
        raise CascadeError(f"{c.name} copies no input into chunks and writes no blocked output: nothing for the host")
    new_inputs = tuple(moved.get(t.name, t) for t in c.inputs)
    return Cascade(name=_renamed(c.name, "host-layouts"), ranks=c.ranks, inputs=new_inputs, einsums=tuple(body),
                   stop=c.stop, outputs=c.outputs, operators=c.operators, workload=c.workload, family=c.family,
                   densities=tuple((moved[t].name if t in moved else t, v) for t, v in c.densities),
                   description=_redescribed(c.description, "chunks gathered and scattered by the host"))


def _blocked_variables(e: Einsum) -> list[str]:
    """The variables of a blocked output's indices, in order (``c*Q0+q0`` gives c, then q0)."""
    out: list[str] = []

    def walk(ix):
        if isinstance(ix, Var):
            if ix.name not in out:
                out.append(ix.name)
        elif isinstance(ix, BinOp):
            walk(ix.left)
            walk(ix.right)

    for ix in e.output.indices:
        walk(ix)
    if len(out) != len(set(out)) or sum(1 for _ in out) < len(e.output.indices):
        raise CascadeError(f"{e.name}'s output indices do not name a variable each", e.span)
    return out


def subcascade(cascade: Cascade, outputs, inputs) -> Cascade:
    """The part of ``cascade`` that computes ``outputs`` from ``inputs`` (tensors of the cascade,
    computed ones included, which become inputs with their ranks): a stage that one array runs,
    e.g. multi-head latent attention's query projection, its attention core and its output
    projection, each lowered to its own hardware.

    Raises
    ------
    CascadeError
        A named tensor the cascade lacks, or an output that needs a tensor outside ``inputs``.

    Examples
    --------
    >>> from einforge.einsum import library
    >>> mla = library()["attention-mla"].load()
    >>> core = subcascade(mla, ["OC"], ["QC", "CKV"])
    >>> [t.text() for t in core.inputs], core.outputs
    (['QC[c,h,p]', 'CKV[c,m]'], ('OC',))
    """
    c = cascade
    outputs, inputs = tuple(outputs), tuple(inputs)
    for t in outputs + inputs:
        if t not in c.tensors:
            raise CascadeError(f"{c.name} has no tensor {t}", None, f"its tensors are {', '.join(c.tensors)}")
    need, keep = set(outputs), set()
    for i in range(len(c.einsums) - 1, -1, -1):       # walk back from the outputs to the inputs
        e = c.einsums[i]
        if e.name in need and e.name not in inputs:
            keep.add(i)
            reads = {a.tensor for a in e.expr.accesses()} | {t for f in e.filters for t in reads_of(f)}
            need |= reads
            if c.tensors[e.name].iterative is not None:     # every step of a loop-carried tensor
                need.add(e.name)
    for t in need - set(inputs):
        if c.tensors[t].is_input:
            raise CascadeError(f"{', '.join(outputs)} need {t}, which is not among the stage's inputs "
                               f"({', '.join(inputs)})", None, f"add {t} to the inputs")
    for t in inputs:
        if not c.tensors[t].is_input:
            _check_cut(c, t)
    decls = tuple(next((d for d in c.inputs if d.name == t), None) or TensorDecl(t, c.tensors[t].ranks)
                  for t in inputs)
    body = tuple(e for i, e in enumerate(c.einsums) if i in keep)
    loops = {c.tensors[e.name].ranks[c.tensors[e.name].iterative] for e in body
             if c.tensors[e.name].iterative is not None}
    stop = tuple(s for s in c.stop if any(c.iterative_ranks[r].var in s.variables() for r in loops))
    return Cascade(name=f"{c.name}-{'-'.join(o.lower() for o in outputs)}", ranks=c.ranks, inputs=decls,
                   einsums=body, stop=stop, outputs=outputs, operators=c.operators, workload=c.workload,
                   family=c.family, densities=tuple((t, v) for t, v in c.densities if t in inputs),
                   description=_redescribed(c.description, f"the stage computing "
                                                           f"{', '.join(outputs)} from {', '.join(inputs)}"))


def _check_cut(c: Cascade, tensor: str) -> None:
    """A computed tensor can start a stage only if it is whole when the stage before ends: made
    outside any loop over an iterative rank (a step inside one is only part of a recurrence, and
    a loop's first step reads its empty initial values), and with no filter upstream (an input
    has every coordinate; absent ones would become values). Conservative: some whole tensors are
    refused, no partial one is taken."""
    import networkx as nx

    loop_vars = {it.var for it in c.iterative_ranks.values()}
    g = nx.DiGraph()
    for e in c.einsums:
        for a in e.expr.accesses():
            g.add_edge(a.tensor, e.name)
        for f in e.filters:
            for t in reads_of(f):
                g.add_edge(t, e.name)
    for i, e in enumerate(c.einsums):
        if e.name == tensor and (loop_vars & set(e.variables()) or c.tensors[tensor].iterative is not None):
            raise CascadeError(f"{tensor} is computed inside the loop over {', '.join(sorted(loop_vars))} in "
                               f"{c.name}: a stage cannot start from one step of it", e.span,
                               "cut before the loop or after it (at a tensor that reads its final iterate)")
    upstream = nx.ancestors(g, tensor) | {tensor}
    filtered = [e.name for i, e in enumerate(c.einsums)
                if e.name in upstream and e.filters and c.einsum_kind(i) != "init"]   # (init: step 0 only)
    if filtered:
        raise CascadeError(f"{tensor} may have absent coordinates ({filtered[0]} is filtered): a stage's inputs "
                           "have every coordinate", None, "cut where every coordinate exists")
