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
