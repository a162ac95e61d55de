"""The attention zoo on one accelerator: every attention cascade of the library on the FuseMax
architecture at one shape, each with the mapper's best binding, as a table and a plot.

This is the table a reader of the attention literature wants: what each variant costs in latency,
energy, passes over the keys, array utilization and DRAM traffic when the hardware is fixed.

Run: python examples/zoo.py [--model BERT] [--seq 4K] [--out zoo.png]
"""

from __future__ import annotations

import argparse

from einforge.arch import ArchError, load_architecture, load_workload, search
from einforge.einsum import analyze, library, roles

#: sizes no workload field gives (a projection rank, a latent width, a pooling group): the cascade's
#: own defaults, printed with the table
UNBOUND = "the cascade's default"


def attention_cascades() -> list:
    """The library's attention cascades (their family says so)."""
    return [e for e in library().values() if "attention" in e.family]


def evaluate_one(entry, arch, workload):
    """(row, note): the cascade's best mapping on ``arch`` for ``workload``, or why it has none."""
    c = entry.load()
    bound = {r for r, _ in c.workload}
    tile = roles(c).tile
    extra = {r.name: r.size.value for r in c.ranks
             if not r.param and not r.derived and r.size is not None and r.name not in bound and r.name != tile}
    w = workload.with_sizes(extra)
    try:
        found = search(arch, c, w)
    except ArchError as exc:
        if tile is None or tile in bound:
            return None, f"{c.name}: {exc}"
        # a partition that is not a key tile (CCA's pooling group): give it its default and map again
        extra[tile] = c.rank(tile).size.value
        try:
            found = search(arch, c, workload.with_sizes(extra))
        except ArchError as exc2:
            return None, f"{c.name}: {exc2}"
    r = found.report
    stream = roles(c).stream
    passes = analyze(c).passes.get(stream, 1) if stream else 1
    row = {"cascade": c.name, "family": c.family, "binding": f"{found.binding.name}/{found.binding.schedule}",
           "latency_s": r.latency_s, "energy_pJ": r.energy_pJ, "passes": passes,
           "util_2d": r.util_2d, "util_1d": r.util_1d, "traffic_bytes": r.traffic_bytes,
           "defaults": ", ".join(f"{k}={v}" for k, v in extra.items())}
    return row, None


def zoo(model: str = "BERT", seq: str | int = "4K", arch_name: str = "fusemax") -> tuple[list[dict], list[str]]:
    """Rows sorted by latency, and the cascades that could not be mapped (with the reason)."""
    arch = load_architecture(arch_name)
    workload = load_workload(model, seq)
    rows, notes = [], []
    for entry in attention_cascades():
        row, note = evaluate_one(entry, arch, workload)
        if row is not None:
            rows.append(row)
        if note is not None:
            notes.append(note)
    rows.sort(key=lambda r: r["latency_s"])
    return rows, notes


def print_table(rows: list[dict], notes: list[str], title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title=title)
    for col in ("cascade", "family", "binding", "latency ms", "energy mJ", "passes", "2D util", "1D util",
                "DRAM MB", "sizes not from the workload"):
        t.add_column(col, justify="left" if col in ("cascade", "family", "binding") else "right")
    for r in rows:
        t.add_row(r["cascade"], r["family"], r["binding"], f"{r['latency_s'] * 1e3:.4g}", f"{r['energy_pJ'] * 1e-9:.4g}",
                  str(r["passes"]), f"{r['util_2d']:.2f}", f"{r['util_1d']:.2f}", f"{r['traffic_bytes'] / 1e6:.4g}",
                  r["defaults"] or "-")
    console = Console(width=200)
    console.print(t)
    for n in notes:
        console.print(f"not mapped: {n}")


def plot(rows: list[dict], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 6))
    for r in rows:
        ax.scatter(r["latency_s"] * 1e3, r["energy_pJ"] * 1e-9)
        ax.annotate(r["cascade"].replace("attention-", ""), (r["latency_s"] * 1e3, r["energy_pJ"] * 1e-9),
                    fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("latency (ms)")
    ax.set_ylabel("energy (mJ)")
    ax.set_title("attention variants on FuseMax, best mapping each")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="BERT")
    ap.add_argument("--seq", default="4K")
    ap.add_argument("--out", default="zoo.png", help="where the plot goes")
    a = ap.parse_args(argv)
    rows, notes = zoo(a.model, a.seq)
    print_table(rows, notes, f"attention zoo on FuseMax, {a.model} at {a.seq} tokens (mapper's best binding each)")
    plot(rows, a.out)
    print(f"plot: {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
