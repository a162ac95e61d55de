"""Drawing a cascade's dependency graph, coloured by pass level."""

from __future__ import annotations

from pathlib import Path

import networkx as nx

from ._cascade import Cascade
from ._errors import CascadeError
from ._passes import PassReport, passes

__all__ = ["plot_cascade"]


def plot_cascade(cascade: Cascade, path: str | Path, rank: str | None = None, report: PassReport | None = None):
    """Draw the dependency graph to ``path`` (.png, .svg or .pdf).

    Einsums are laid out left to right by dependency depth and coloured by their pass level over
    ``rank``; reductions that force a new pass (barriers) have a red outline, Einsums that run at a
    pass boundary a dashed one. Edges: solid streamed, dashed loop-carried, dotted final iterate.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    path = Path(path)
    if path.suffix.lower() not in (".png", ".svg", ".pdf"):
        raise CascadeError(f"cannot draw to {path}: use a .png, .svg or .pdf file name")
    if report is None:
        if rank is None:
            rank = _default_rank(cascade)
        report = passes(cascade, rank)
    g = cascade.graph
    dag = cascade.dag()
    depth = {}
    for layer, nodes in enumerate(nx.topological_generations(dag)):
        for n in nodes:
            depth[n] = layer
    columns: dict[int, list[str]] = {}
    for n in nx.topological_sort(dag):
        columns.setdefault(depth[n], []).append(n)
    pos = {}
    for x, nodes in columns.items():
        for k, n in enumerate(nodes):
            pos[n] = (x * 1.6, -(k - (len(nodes) - 1) / 2) * 1.1)

    levels = sorted({lv for lv in report.einsum_pass.values()})
    cmap = plt.get_cmap("tab10")
    colour = {lv: cmap((lv - 1) % 10) for lv in levels}
    width = max(6.0, 1.6 * (len(columns) + 1))
    height = max(4.0, 1.1 * max(len(v) for v in columns.values()) + 2)
    fig, ax = plt.subplots(figsize=(width, height))
    for u, v, kind in g.edges(data="kind"):
        if u == v:
            continue
        style = {"stream": "solid", "carried": "dashed", "final": "dotted"}[kind]
        rad = 0.25 if kind == "carried" else 0.0
        nx.draw_networkx_edges(g, pos, edgelist=[(u, v)], ax=ax, style=style, alpha=0.55, arrows=True,
                               arrowsize=12, connectionstyle=f"arc3,rad={rad}", node_size=1500)
    for n, data in g.nodes(data=True):
        x, y = pos[n]
        if data["kind"] == "input":
            fc, ec, lw, ls, shape = "#dddddd", "#555555", 1.0, "solid", "s"
        else:
            lv = report.einsum_pass.get(n)
            fc = colour[lv] if lv is not None else "white"
            role = report.role.get(n)
            ec = "red" if n in report.barriers else "#333333"
            lw = 3.0 if n in report.barriers else 1.0
            ls = "dashed" if role == "boundary" else "solid"
            shape = "o"
        ax.scatter([x], [y], s=1500, marker=shape, c=[fc], edgecolors=[ec], linewidths=lw, linestyle=ls, zorder=3)
        ax.text(x, y, n, ha="center", va="center", fontsize=8, zorder=4)
    handles = [Patch(facecolor=colour[lv], edgecolor="#333333", label=f"pass {lv}") for lv in levels]
    handles += [Patch(facecolor="white", edgecolor="#333333", label=f"does not traverse {report.rank}"),
                Patch(facecolor="white", edgecolor="red", linewidth=3, label="barrier"),
                Line2D([], [], linestyle="solid", color="k", label="streamed"),
                Line2D([], [], linestyle="dashed", color="k", label="loop-carried"),
                Line2D([], [], linestyle="dotted", color="k", label="final iterate")]
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False)
    ax.set_title(f"{cascade.name}: {report.passes} pass(es) over {report.rank}")
    ax.axis("off")
    ax.margins(0.08)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def _default_rank(c: Cascade) -> str:
    from ._passes import analyze

    a = analyze(c)
    if not a.reports:
        raise CascadeError(f"{c.name} traverses no rank")
    return max(a.reports, key=lambda r: (a.reports[r].passes, r == "M"))
