"""Binding a cascade's ranks and parameters to sizes (no numbers computed: no numpy)."""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping

from ._cascade import Cascade
from ._errors import CascadeError

__all__ = ["resolve_sizes"]


def resolve_sizes(cascade: Cascade, sizes: Mapping[str, int] | None = None) -> dict[str, int]:
    """Every rank and parameter size of ``cascade`` as an integer.

    Defaults from the ``ranks`` line are overridden by ``sizes``; derived sizes (``M1 = M/M0``)
    are computed and must agree with any size given for them.

    Raises
    ------
    CascadeError
        An unknown name in ``sizes``, a rank left without a size, a partition that does not
        divide, or a non-positive size.

    Examples
    --------
    >>> from einforge.einsum import parse_cascade
    >>> c = parse_cascade("ranks M M0=4\\ninput K[m]\\nB[m1,m0] = K[m1*M0+m0]\\n")
    >>> resolve_sizes(c, {"M": 12})
    {'M': 12, 'M0': 4, 'M1': 3}
    """
    sizes = dict(sizes or {})
    fast = _resolve_in_order(cascade, sizes)
    return fast if fast is not None else _resolve_checked(cascade, sizes)


def _resolve_checked(cascade: Cascade, sizes: dict) -> dict[str, int]:
    """:func:`resolve_sizes` checking each name and value as it goes, to say what is wrong."""
    decls = {r.name: r for r in cascade.ranks}
    for name, v in sizes.items():
        if name not in decls:
            known = ", ".join(decls)
            raise CascadeError(f"unknown rank {name} in sizes", None, f"the ranks of {cascade.name} are: {known}")
        if decls[name].real:
            if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v):
                raise CascadeError(f"parameter {name} must be a finite number, not {v!r}", decls[name].span)
        elif not isinstance(v, numbers.Integral) or isinstance(v, bool):
            raise CascadeError(f"size of {name} must be an integer, not {v!r}")
    env: dict[str, int] = {}
    for r in cascade.ranks:
        if r.name in sizes:
            if not r.derived:
                env[r.name] = float(sizes[r.name]) if r.real else int(sizes[r.name])
        elif r.size is not None and not r.derived:
            env[r.name] = float(r.size.value) if r.real else int(r.size.value)
    pending = [r for r in cascade.ranks if r.derived]
    while pending:
        progress = False
        for r in list(pending):
            if r.size.symbols() <= env.keys():
                env[r.name] = int(r.size.evaluate(env))
                pending.remove(r)
                progress = True
        if not progress:
            r = pending[0]
            missing = sorted(r.size.symbols() - env.keys())
            if any(m in [p.name for p in pending] for m in missing) and all(
                    m in [p.name for p in pending] for m in missing):
                raise CascadeError(f"the sizes of {', '.join(p.name for p in pending)} depend on each other",
                                   r.span)
            m = next(x for x in missing if x not in [p.name for p in pending])
            raise CascadeError(f"rank {m} has no size", decls[m].span,
                               f"give it one in the `ranks` line ({m}=...) or with --size {m}=N")
    for r in cascade.ranks:
        if r.name not in env:
            raise CascadeError(f"rank {r.name} has no size", r.span,
                               f"give it one in the `ranks` line ({r.name}=...) or with --size {r.name}=N")
        if r.derived and r.name in sizes and int(sizes[r.name]) != env[r.name]:
            raise CascadeError(
                f"{r.name} is derived as {r.size.text()} = {env[r.name]}, but {sizes[r.name]} was given", r.span)
        if env[r.name] <= 0 and not r.param:
            raise CascadeError(f"rank {r.name} has size {env[r.name]}; sizes must be positive", r.span)
    return {r.name: env[r.name] for r in cascade.ranks}


def _resolve_in_order(cascade: Cascade, sizes: dict) -> dict[str, int] | None:
    """:func:`resolve_sizes` for sizes that need no error: every name known and of its kind, every
    rank given or defaulted, derived ranks (worked out in an order found once per cascade) not given
    and positive. ``None`` otherwise, for the full path to say what is wrong."""
    order = _size_order(cascade)
    if order is None:
        return None
    plain, derived, ranks = order
    env: dict = {}
    for name, real, default in plain:
        v = sizes.get(name, default)
        if v is None or isinstance(v, bool):
            return None
        if real:
            if not isinstance(v, numbers.Real) or not math.isfinite(v):
                return None
            env[name] = float(v)
        elif not isinstance(v, numbers.Integral):
            return None
        else:
            env[name] = int(v)
    if len(sizes) != sum(name in sizes for name, _, _ in plain):
        return None                                   # an unknown name, or a derived size given
    for name, expr in derived:
        env[name] = int(expr.evaluate(env))
    for name, param in ranks:
        if not param and env[name] <= 0:
            return None
    return {name: env[name] for name, _ in ranks}


def _size_order(cascade: Cascade):
    """((name, real, default) of each rank with its own size, (name, expression) of each derived one
    in an order that has what it reads, (name, is a parameter) of every rank in declaration
    order), or ``None`` when the derived sizes depend on each other or on an unknown
    name. Kept on the cascade (a frozen value)."""
    got = cascade.__dict__.get("_size_order", False)
    if got is not False:
        return got
    plain = tuple((r.name, r.real, (float(r.size.value) if r.real else int(r.size.value)) if r.size is not None
                   else None) for r in cascade.ranks if not r.derived)
    known = {name for name, _, _ in plain}
    pending = [r for r in cascade.ranks if r.derived]
    derived = []
    while pending:
        ready = [r for r in pending if r.size.symbols() <= known]
        if not ready:
            derived = None
            break
        for r in ready:
            derived.append((r.name, r.size))
            known.add(r.name)
            pending.remove(r)
    got = None if derived is None else (plain, tuple(derived), tuple((r.name, r.param) for r in cascade.ranks))
    object.__setattr__(cascade, "_size_order", got)
    return got
