"""Reading the ``einsum:`` section of TeAAL YAML specifications.

A TeAAL spec declares tensors with their ranks and lists plain Einsums::

    einsum:
      declaration:
        A: [K, M]
        B: [K, N]
        Z: [M, N]
      expressions:
        - Z[m, n] = A[k, m] * B[k, n]

Declared tensors that no expression writes are the inputs; every rank named in a declaration is a
rank of the cascade (sizes bound later). Expressions are parsed by the cascade parser at their
place in the YAML file, so errors name the YAML line and column.
"""

from __future__ import annotations

import re
from dataclasses import replace

import yaml

from ._cascade import Cascade, parse_cascade
from ._errors import CascadeError, Source, Span
from ._ops import OperatorTable

__all__ = ["parse_teaal"]


def _fail(msg, source, node=None, hint=None):
    span = None
    if node is not None:
        span = Span(source, node.start_mark.line + 1, node.start_mark.column + 1, 1)
    return CascadeError(msg, span, hint)


def parse_teaal(text: str, file: str = "<string>", operators: OperatorTable | None = None) -> Cascade:
    """Build a cascade from a TeAAL YAML spec's ``einsum`` section.

    Raises
    ------
    CascadeError
        Invalid YAML, a missing section, or an invalid expression (with its YAML position).
    """
    source = Source(text, file)
    try:
        root = yaml.compose(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        span = Span(source, mark.line + 1, mark.column + 1, 1) if mark else None
        raise CascadeError(f"invalid YAML: {getattr(exc, 'problem', exc)}", span) from None
    if root is None or not isinstance(root, yaml.MappingNode):
        raise _fail("a TeAAL spec is a YAML mapping with an `einsum:` section", source, root)
    top = {k.value: v for k, v in root.value}
    if "einsum" not in top:
        raise _fail("no `einsum:` section", source, root, "TeAAL specs list Einsums under einsum: expressions:")
    ein = top["einsum"]
    if not isinstance(ein, yaml.MappingNode):
        raise _fail("`einsum:` must be a mapping with declaration and expressions", source, ein)
    sec = {k.value: v for k, v in ein.value}
    decl = sec.get("declaration")
    exprs = sec.get("expressions")
    if not isinstance(decl, yaml.MappingNode):
        raise _fail("`einsum: declaration:` must map tensor names to rank lists", source, decl or ein)
    if not isinstance(exprs, yaml.SequenceNode) or not exprs.value:
        raise _fail("`einsum: expressions:` must be a list of Einsums", source, exprs or ein)

    declared: dict[str, list[str]] = {}
    ranks: list[str] = []
    for k, v in decl.value:
        if not isinstance(v, yaml.SequenceNode):
            raise _fail(f"the ranks of {k.value} must be a list such as [K, M]", source, v)
        rs = []
        for r in v.value:
            if not isinstance(r, yaml.ScalarNode) or not r.value[:1].isupper():
                raise _fail(f"rank {getattr(r, 'value', r)!r} of {k.value} must be an upper-case name", source, r)
            rs.append(r.value)
            if r.value not in ranks:
                ranks.append(r.value)
        declared[k.value] = rs

    # lay each expression out at its own line and column so parser errors point into the YAML
    lines = [""] * (len(text.splitlines()) + 3)
    written = set()
    for node in exprs.value:
        if not isinstance(node, yaml.ScalarNode):
            raise _fail("each expression must be a string such as `Z[m,n] = A[k,m] * B[k,n]`", source, node)
        line, col = node.start_mark.line, node.start_mark.column
        if node.style in ('"', "'"):
            col += 1
        expr = " ".join(node.value.split())
        lines[line] = " " * col + expr
        lhs = expr.split("=", 1)[0].split("[", 1)[0].strip()
        written.add(lhs)
    inputs = [n for n in declared if n not in written]
    lines[-2] = "ranks " + " ".join(ranks)
    lines[-1] = "input " + " ".join(
        f"{n}[{','.join(r.lower() for r in declared[n])}]" if declared[n] else n for n in inputs)
    name = file.rsplit("/", 1)[-1].rsplit(".", 1)[0] or "teaal"
    body = "\n".join(lines) + "\n"
    try:
        c = parse_cascade(body, file, operators)
    except CascadeError as exc:
        # re-anchor the quoted line on the YAML text
        if exc.span is not None and exc.span.line <= len(text.splitlines()):
            raise CascadeError(exc.message, Span(source, exc.span.line, exc.span.col, exc.span.length),
                               exc.hint) from None
        raise
    # keep declared output rank orders honest: the declaration must agree with the expression
    for n, rs in declared.items():
        info = c.tensors.get(n)
        if info is not None and not info.is_input and list(info.ranks) != rs:
            raise CascadeError(
                f"{n} is declared with ranks [{', '.join(rs)}] but its expression writes "
                f"[{', '.join(info.ranks)}]", None, "make the declaration and the expression agree")
    return replace(c, name=name if re.fullmatch(r"[A-Za-z_][\w-]*", name) else "teaal", source=source)
