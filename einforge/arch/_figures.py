"""The FuseMax paper's Figures 6-12, regenerated from the cost model (PNG, PDF and CSV each)."""

from __future__ import annotations

import csv
from pathlib import Path

from ._designs import end_to_end
from ._sweep import pareto_sweep
from ._workload import load_workload, seq_label

__all__ = ["figures", "evaluation_table", "headline_ratios", "einsum_roles", "ROLES", "MODELS", "SEQS",
           "ATTENTION_DESIGNS"]

MODELS = ("BERT", "TrXL", "T5", "XLM")
SEQS = tuple(1 << k for k in (10, 12, 14, 16, 18, 20))
ATTENTION_DESIGNS = ("unfused", "flat", "cascade", "arch", "fusemax")
_LABEL = {"unfused": "Unfused", "flat": "FLAT", "cascade": "+Cascade", "arch": "+Architecture", "fusemax": "+Binding"}
# Fig. 7 stacks each design's 2D-array Einsums by their role, read off the IR (no Einsum names here)
ROLES = ("first tensor product", "max over the tile", "exponential", "sum over the tile", "second tensor product")


def einsum_roles(cascade) -> dict[str, str]:
    """Role of every Einsum of an attention cascade, for grouping per-Einsum figures: the tensor
    products in order, the max and sum reductions, and element-wise Einsums with an exponential."""
    from ..einsum._ir import Call
    from ._binding import is_tensor_product

    def has_exp(x):
        return isinstance(x, Call) and (x.op == "exp" or any(has_exp(a) for a in x.args))

    out, products = {}, 0
    for i, e in enumerate(cascade.einsums):
        lab = cascade.label(i)
        if is_tensor_product(e):
            out[lab] = ROLES[0] if products == 0 else ROLES[4]
            products += 1
        elif any(op == "max" for _, op in e.reduce):
            out[lab] = ROLES[1]
        elif has_exp(e.expr) and not e.reduce:
            out[lab] = ROLES[2]
        elif e.reduce:
            out[lab] = ROLES[3]
    return out


def evaluation_table(models=MODELS, seqs=SEQS) -> list[dict]:
    """One row per (design, model, sequence length): attention and end-to-end numbers."""
    rows = []
    for d in ATTENTION_DESIGNS:
        for m in models:
            for s in seqs:
                w = load_workload(m, s)
                att, lin = end_to_end(d, w)
                row = {"design": d, "model": m, "seq": seq_label(s), "latency_s": att.latency_s,
                       "energy_pJ": att.energy_pJ, "traffic_bytes": att.traffic_bytes, "util_2d": att.util_2d,
                       "util_1d": att.util_1d, "e2e_latency_s": att.latency_s + lin.latency_s,
                       "e2e_energy_pJ": att.energy_pJ + lin.energy_pJ}
                roles = einsum_roles(_design_cascade(d))
                for role in ROLES:
                    row[f"util_2d_{role}"] = sum(att.einsum_util(lab, "2d") for lab, r in roles.items() if r == role)
                rows.append(row)
    return rows


def _design_cascade(name):
    from ._designs import design

    return design(name).cascade


def headline_ratios(models=MODELS, seqs=SEQS) -> dict[str, float]:
    """The paper's headline numbers, FuseMax against FLAT, as arithmetic means over models and
    lengths: attention speedup and energy ratio, and the same end to end (with the linear layers)."""
    speed, energy, e2e_speed, e2e_energy = [], [], [], []
    for m in models:
        for s in seqs:
            w = load_workload(m, s)
            fa, fl = end_to_end("fusemax", w)
            la, ll = end_to_end("flat", w)
            speed.append(la.latency_s / fa.latency_s)
            energy.append(fa.energy_pJ / la.energy_pJ)
            e2e_speed.append((la.latency_s + ll.latency_s) / (fa.latency_s + fl.latency_s))
            e2e_energy.append((fa.energy_pJ + fl.energy_pJ) / (la.energy_pJ + ll.energy_pJ))

    def mean(xs):
        return sum(xs) / len(xs)

    return {"attention_speedup": mean(speed), "attention_energy": mean(energy),
            "e2e_speedup": mean(e2e_speed), "e2e_energy": mean(e2e_energy)}


def _write_csv(path: Path, rows: list[dict]):
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def _save(fig, out: Path, stem: str, written: list):
    for ext in ("png", "pdf"):
        p = out / f"{stem}.{ext}"
        fig.savefig(p, dpi=200 if ext == "png" else None, bbox_inches="tight")
        written.append(p)


def _legend(ax):
    """The legend beside the axes, never over the data."""
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)


def figures(out: str | Path, models=MODELS, seqs=SEQS) -> list[Path]:
    """Write Figures 6-12 to ``out`` and return the files written (sized for a paper page: at most
    8.5 in wide, 9-pt text, 7-pt ticks, legends beside the axes)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with plt.rc_context({"font.size": 9, "axes.titlesize": 9}):
        return _figures(out, models, seqs, plt)


def _figures(out, models, seqs, plt) -> list[Path]:
    import numpy as np

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows = evaluation_table(models, seqs)
    written: list[Path] = []
    get = {(r["design"], r["model"], r["seq"]): r for r in rows}
    labels = [seq_label(s) for m in models for s in seqs]
    x = np.arange(len(labels))
    width = 0.16

    def grouped(ax, designs, value, ylabel, log=False, names=True):
        for k, d in enumerate(designs):
            vals = [value(get[(d, m, seq_label(s))], m, s) for m in models for s in seqs]
            ax.bar(x + (k - (len(designs) - 1) / 2) * width, vals, width, label=_LABEL[d])
        ax.set_xticks(x)
        ax.set_xticklabels(labels, fontsize=7)
        for k, m in enumerate(models if names else ()):     # the model under its group of lengths
            ax.text((k + 0.5) / len(models), -0.16, m, transform=ax.transAxes, ha="center", va="top",
                    fontsize=8, fontweight="bold")
        ax.set_ylabel(ylabel)
        if log:
            ax.set_yscale("log")
        _legend(ax)

    # Fig. 6: utilization of each array
    fig, axes = plt.subplots(2, 1, figsize=(8.5, 5.0), sharex=True)
    grouped(axes[0], ATTENTION_DESIGNS, lambda r, m, s: r["util_1d"], "1D array utilization", names=False)
    grouped(axes[1], ATTENTION_DESIGNS, lambda r, m, s: r["util_2d"], "2D array utilization")
    axes[0].set_title("Fig. 6: (a) 1D and (b) 2D PE array utilization, attention")
    fig.tight_layout()
    _save(fig, out, "fig6_utilization", written)
    plt.close(fig)
    _write_csv(out / "fig6_utilization.csv", [
        {"design": r["design"], "model": r["model"], "seq": r["seq"], "util_1d": r["util_1d"], "util_2d": r["util_2d"]}
        for r in rows])

    # Fig. 7: BERT 2D utilization by Einsum
    f7 = [d for d in ("flat", "cascade", "arch", "fusemax")]
    fig, ax = plt.subplots(figsize=(7.5, 3.2))
    cols = list(ROLES)
    xs, ticks = [], []
    pos = 0
    f7rows = []
    for s in seqs:
        for d in f7:
            r = get[(d, "BERT", seq_label(s))]
            bottom = 0.0
            for k, c in enumerate(cols):
                v = r[f"util_2d_{c}"]
                ax.bar(pos, v, 0.8, bottom=bottom, color=f"C{k}", label=c if pos == 0 else None)
                bottom += v
            f7rows.append({"seq": seq_label(s), "design": d, **{c: r[f"util_2d_{c}"] for c in cols}})
            xs.append(pos)
            ticks.append(f"{_LABEL[d][:4]}\n{seq_label(s)}")
            pos += 1
        pos += 1
    ax.set_xticks(xs)
    ax.set_xticklabels(ticks, fontsize=7)
    ax.set_ylabel("2D utilization")
    ax.set_title("Fig. 7: BERT 2D array utilization broken down by Einsum")
    _legend(ax)
    fig.tight_layout()
    _save(fig, out, "fig7_einsum_utilization", written)
    plt.close(fig)
    _write_csv(out / "fig7_einsum_utilization.csv", f7rows)

    # Fig. 8-11: speedup and energy against unfused, attention and end to end
    others = ("flat", "cascade", "arch", "fusemax")
    specs = [
        ("fig8_attention_speedup", "Fig. 8: attention speedup over unfused", "latency_s", True),
        ("fig9_attention_energy", "Fig. 9: attention energy normalized to unfused", "energy_pJ", False),
        ("fig10_e2e_speedup", "Fig. 10: end-to-end speedup over unfused", "e2e_latency_s", True),
        ("fig11_e2e_energy", "Fig. 11: end-to-end energy normalized to unfused", "e2e_energy_pJ", False),
    ]
    for stem, title, key, speedup in specs:
        def val(r, m, s, key=key, speedup=speedup):
            base = get[("unfused", m, seq_label(s))][key]
            return base / r[key] if speedup else r[key] / base
        fig, ax = plt.subplots(figsize=(8.5, 3.0))
        grouped(ax, others, val, "speedup (x)" if speedup else "energy (x unfused)")
        ax.set_title(title)
        fig.tight_layout()
        _save(fig, out, stem, written)
        plt.close(fig)
        _write_csv(out / f"{stem}.csv", [
            {"design": d, "model": m, "seq": seq_label(s), "value": val(get[(d, m, seq_label(s))], m, s)}
            for d in others for m in models for s in seqs])

    # Fig. 12: Pareto, latency against area at 256K
    pts = pareto_sweep(models)
    fig, ax = plt.subplots(figsize=(5.0, 3.6))
    for m in models:
        mine = [p for p in pts if p.model == m]
        ax.plot([p.area * 1e-8 for p in mine], [p.latency for p in mine], "o-", label=m)
        for p in mine:
            ax.annotate(f"{p.pe}", (p.area * 1e-8, p.latency), fontsize=7)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("area (cm$^2$)")
    ax.set_ylabel("attention latency (s)")
    ax.set_title("Fig. 12: FuseMax at 256K tokens, 16x16 to 512x512 PEs")
    _legend(ax)
    fig.tight_layout()
    _save(fig, out, "fig12_pareto", written)
    plt.close(fig)
    _write_csv(out / "fig12_pareto.csv", [p.__dict__ for p in pts])
    written += sorted(out.glob("*.csv"))
    _write_csv(out / "evaluation.csv", rows)
    written.append(out / "evaluation.csv")
    return written
