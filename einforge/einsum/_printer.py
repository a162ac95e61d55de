"""Printing a cascade back to text that parses to an equal cascade."""

from __future__ import annotations

__all__ = ["cascade_text"]


def cascade_text(c) -> str:
    lines = []
    if (c.name and c.name != "cascade") or c.description:   # "cascade" is the default name
        head = f"cascade {c.name}"
        if c.description:
            head += f' "{c.description}"'
        lines.append(head)
    if c.family:
        lines.append(f"family {c.family}")
    ranks = [r for r in c.ranks if not r.param]
    params = [r for r in c.ranks if r.param]
    if ranks:
        lines.append("ranks " + " ".join(r.text() for r in ranks))
    if params:
        lines.append("param " + " ".join(r.text() for r in params))
    if c.workload:
        lines.append("workload " + " ".join(f"{r}={e.text()}" for r, e in c.workload))
    if c.inputs:
        lines.append("input " + " ".join(t.text() for t in c.inputs))
    if c.densities:
        lines.append("density " + " ".join(f"{t}={v}" for t, v in c.densities))
    if c.outputs:
        lines.append("output " + " ".join(c.outputs))
    for e in c.einsums:
        lines.append(e.text())
    if c.stop:
        lines.append("stop " + " & ".join(s.text() for s in c.stop))
    return "\n".join(lines) + "\n"
