"""Renaming a cascade's ranks and tensors: the same algorithm under other names.

Nothing einforge computes may depend on a name, so a renamed cascade must give the same results;
the property tests check exactly that. Renaming is also how a library cascade is adapted to the
names of a user's model.
"""

from __future__ import annotations

from ._cascade import Cascade, parse_cascade
from ._errors import CascadeError, Source
from ._ir import WORKLOAD_FIELDS, var_of
from ._parse import tokenize

__all__ = ["rename"]


def rename(cascade: Cascade, ranks: dict[str, str] | None = None, tensors: dict[str, str] | None = None,
           name: str | None = None) -> Cascade:
    """``cascade`` with ranks (and their variables) and tensors renamed.

    Parameters
    ----------
    ranks : old rank name -> new rank name (upper case; variables follow in lower case)
    tensors : old tensor name -> new tensor name
    name : the renamed cascade's name (default: unchanged)

    Raises
    ------
    CascadeError
        A new name that collides with another name of the cascade, a function or a workload field.

    Examples
    --------
    >>> from einforge.einsum import parse_cascade
    >>> c = parse_cascade("ranks K M N\\ninput A[k,m] B[k,n]\\nZ[m,n] = A[k,m] * B[k,n]\\n")
    >>> print(rename(c, {"K": "D", "M": "X"}, {"Z": "OUT"}).text(), end="")
    ranks D X N
    input A[d,x] B[d,n]
    output OUT
    OUT[x,n] = A[d,x] * B[d,n]
    """
    ranks = dict(ranks or {})
    tensors = dict(tensors or {})
    _check(cascade, ranks, tensors)
    text = cascade.text()
    source = Source(text, "<renamed>")
    lines = text.splitlines(keepends=True)
    out_lines = list(lines)
    # replace NAME tokens right to left on each line, so columns stay valid
    by_line: dict[int, list] = {}
    for tok in tokenize(source):
        if tok.kind == "NAME":
            by_line.setdefault(tok.line, []).append(tok)
    variables = {var_of(k): var_of(v) for k, v in ranks.items()}
    for line, toks in by_line.items():
        s = out_lines[line - 1]
        if s.startswith("cascade "):
            continue
        for tok in sorted(toks, key=lambda t: -t.col):
            new = tensors.get(tok.text) or ranks.get(tok.text) or _variable(tok.text, variables, s)
            if new is None:
                continue
            a = tok.col - 1
            s = s[:a] + new + s[a + len(tok.text):]
        out_lines[line - 1] = s
    new_text = "".join(out_lines)
    c = parse_cascade(new_text, cascade.source.file if cascade.source else "<renamed>", cascade.operators)
    if name is not None:
        from dataclasses import replace

        c = replace(c, name=name)
    return c


def _variable(text: str, variables: dict[str, str], line: str) -> str | None:
    if line.startswith("workload ") and text in WORKLOAD_FIELDS:
        return None
    return variables.get(text)


def _check(c: Cascade, ranks: dict, tensors: dict) -> None:
    names = {r.name for r in c.ranks}
    for old, new in ranks.items():
        if old not in names:
            raise CascadeError(f"{c.name} has no rank {old}")
        if not new[:1].isupper() or not new.isidentifier():
            raise CascadeError(f"rank name {new!r} must be an upper-case name")
        if var_of(new) in c.operators or var_of(new) in WORKLOAD_FIELDS or var_of(new) in ("inf", "and"):
            raise CascadeError(f"rank {new}'s variable {var_of(new)!r} is the name of a function or workload field")
    for old, new in tensors.items():
        if old not in c.tensors:
            raise CascadeError(f"{c.name} has no tensor {old}")
        if not new[:1].isupper() or not new.isidentifier():
            raise CascadeError(f"tensor name {new!r} must be an upper-case name")
    final_ranks = {ranks.get(r, r) for r in names}
    final_tensors = {tensors.get(t, t) for t in c.tensors}
    if len(final_ranks) != len(names) or len(final_tensors) != len(c.tensors) or final_ranks & final_tensors:
        raise CascadeError("the renaming maps two names to one")
