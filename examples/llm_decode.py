"""Which parallelism serves Llama-3-70B decode fastest on 8 FuseMax-class chips, as context grows?

Tensor parallelism splits every weight; Ulysses splits attention by heads; Ring splits the KV cache
by sequence (partial results merged by the 1-pass cascade's running max and sum); USP combines the
two. Each chip is the FuseMax architecture (its numbers from einforge's cost model, every operator
mapped by the mapper) with HBM of --memory GiB; chips share a switch of --link GB/s. Prints time per
output token for each strategy and context, the best one, where the best changes, and a plot.

Run: python examples/llm_decode.py [--contexts 4K 32K 128K 512K] [--out llm_decode.png]
"""

from __future__ import annotations

import argparse

from einforge.arch import ArchError, Interconnect, decode_on_chips, load_architecture, load_model
from einforge.units import count

STRATEGIES = (("tensor", 0), ("ulysses", 0), ("ring", 0), ("usp", 2), ("usp", 4))


def compare(model="Llama-3-70B", contexts=(4096, 32768, 131072, 524288), chips=8, batch=8, link_gbs=300.0,
            latency_us=2.0, memory_gib=96.0) -> tuple[list[dict], list[str]]:
    """Rows (context, strategy, ms per token or None when it does not fit, why) and the crossovers."""
    arch = load_architecture("fusemax")
    m = load_model(model)
    net = Interconnect(chips, link_gbs * 1e9, latency_us * 1e-6, "switch")
    rows = []
    for kv in contexts:
        for strategy, u in STRATEGIES:
            name = strategy if strategy != "usp" else f"usp({u}x{chips // u})"
            try:
                r = decode_on_chips(arch, m, batch, kv, net, strategy, u, memory_bytes=memory_gib * 2**30)
                rows.append({"context": kv, "strategy": name, "ms": r.latency_s * 1e3, "comm_ms": r.comm_s * 1e3,
                             "memory_gib": r.memory_bytes / 2**30, "note": ""})
            except ArchError as exc:
                rows.append({"context": kv, "strategy": name, "ms": None, "comm_ms": None, "memory_gib": None,
                             "note": str(exc)})
    best = {}
    for r in rows:
        if r["ms"] is not None and (r["context"] not in best or r["ms"] < best[r["context"]]["ms"]):
            best[r["context"]] = r
    changes, last, prev = [], None, None
    for kv in contexts:
        w = best.get(kv, {}).get("strategy", "nothing fits")
        if last is not None and w != last:
            changes.append(f"{last} -> {w} between {prev} and {kv} tokens")
        last, prev = w, kv
    return rows, changes


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--contexts", nargs="+", default=["4K", "32K", "128K", "512K"])
    ap.add_argument("--chips", type=int, default=8)
    ap.add_argument("--out", default="llm_decode.png")
    a = ap.parse_args(argv)
    contexts = [count(c) for c in a.contexts]
    rows, changes = compare(contexts=tuple(contexts), chips=a.chips)
    print(f"Llama-3-70B decode, batch 8, {a.chips} FuseMax chips (96 GiB each) on a 300 GB/s switch")
    print(f"{'context':>8}  " + "  ".join(f"{s if s != 'usp' else f'usp({u}x{a.chips // u})':>12}"
                                          for s, u in STRATEGIES) + "  best")
    for kv in contexts:
        mine = [r for r in rows if r["context"] == kv]
        ok = [r for r in mine if r["ms"] is not None]
        best = min(ok, key=lambda r: r["ms"])["strategy"] if ok else "none fits"
        cells = "  ".join(f"{r['ms']:>9.2f} ms" if r["ms"] is not None else f"{'no fit':>12}" for r in mine)
        print(f"{kv:>8}  {cells}  {best}")
    print("where the best changes: " + ("; ".join(changes) if changes else "nowhere in this range"))
    plot(rows, a.out)
    print(f"plot: {a.out}")
    return 0


def plot(rows, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4))
    for k, name in enumerate(dict.fromkeys(r["strategy"] for r in rows)):
        pts = [(r["context"], r["ms"]) for r in rows if r["strategy"] == name and r["ms"] is not None]
        if pts:
            ax.plot(*zip(*pts), "-o", ms=3, color=f"C{k}", label=name)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("context (tokens)")
    ax.set_ylabel("time per output token (ms)")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=150)
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())
