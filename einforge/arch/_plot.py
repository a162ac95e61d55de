"""Plots of sweep results: any two columns, coloured by a third, with the Pareto front drawn.

Figures are sized for a paper column pair (6.5 x 4 in), with 9-pt text, units in the axis labels
(read from the column names: ``latency_s`` is seconds, ``energy_pJ`` picojoules...), and the legend
outside the axes so that it never covers data.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ._spec import ArchError

__all__ = ["load_results", "plot_results"]

#: column-name suffix -> (quantity, unit) for axis labels
_UNITS = {"_s": ("", "s"), "_pJ": ("", "pJ"), "_bytes": ("", "B"), "_Bps": ("", "B/s"), "_hz": ("", "Hz"),
          "_um2": ("", "µm²")}


def load_results(path: str | Path) -> dict[str, np.ndarray]:
    """Columns of a results table: a CSV or Parquet file written by ``einforge sweep``, or a store
    directory (``--store``).

    Raises
    ------
    ArchError
        The file does not exist or is not a results table.
    """
    p = Path(path)
    if p.is_dir():
        from ._store import ResultStore

        cols = ResultStore(p).read()
        if not cols:
            raise ArchError(f"{p}: no stored results (batch-*.parquet files)")
        return cols
    if not p.is_file():
        raise ArchError(f"{p}: no such results file")
    if p.suffix == ".parquet":
        import pyarrow.parquet as pq

        t = pq.ParquetFile(p).read()
        return {n: t.column(n).to_numpy(zero_copy_only=False) for n in t.column_names}
    import csv

    with open(p, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise ArchError(f"{p}: no rows")
    out = {}
    for k in rows[0]:
        vals = [r[k] for r in rows]
        try:        # a number column (empty cells are missing values); text stays text ("" included)
            if all(v in ("", "nan") for v in vals):
                raise ValueError
            out[k] = np.array([float(v) if v not in ("", "nan") else np.nan for v in vals])
        except ValueError:
            out[k] = np.array(vals, dtype=object)
    return out


def _label(col: str) -> str:
    for suffix, (_, unit) in _UNITS.items():
        if col.endswith(suffix):
            return f"{col[: -len(suffix)].replace('_', ' ')} ({unit})"
    if col.startswith("util_"):
        return f"{col.replace('_', ' ')} (fraction)"
    return col.replace("_", " ")


def _front(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    order = np.lexsort((y, x))
    best = np.minimum.accumulate(y[order])
    keep = np.concatenate([[True], best[1:] < best[:-1]])
    return order[keep]


def plot_results(cols: dict, x: str, y: str, out: str | Path, *, color: str | None = None, line: bool = False,
                 logx: bool = False, logy: bool = False, pareto: bool = True, title: str | None = None) -> Path:
    """Plot ``y`` against ``x`` (one marker per point, or lines with ``line``), a colour per value of
    ``color``, and each colour's Pareto front (both minimized) as a step line. The format follows
    ``out``'s suffix (.png, .pdf, .svg).

    Raises
    ------
    ArchError
        A column that the table lacks (the message lists those it has), or an unknown format.
    """
    out = Path(out)
    if out.suffix not in (".png", ".pdf", ".svg"):
        raise ArchError(f"{out}: write .png, .pdf or .svg")
    for c in (x, y) + ((color,) if color else ()):
        if c not in cols:
            raise ArchError(f"no column {c!r} in the results; columns: {', '.join(cols)}")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = np.ones(len(cols[x]), bool)
    if "error" in cols:
        ok = np.array([not e for e in cols["error"]])
    xs, ys = cols[x].astype(float), cols[y].astype(float)
    ok &= np.isfinite(xs) & np.isfinite(ys)
    groups = [None] if not color else list(dict.fromkeys(cols[color][ok].tolist()))
    with plt.rc_context({"font.size": 9}):
        fig, ax = plt.subplots(figsize=(6.5, 4.0))
        for k, g in enumerate(groups):
            sel = ok if g is None else ok & (cols[color] == g)
            gx, gy = xs[sel], ys[sel]
            c = f"C{k % 10}"
            label = None if g is None else f"{color} = {g}"
            if line:
                order = np.argsort(gx, kind="stable")
                ax.plot(gx[order], gy[order], "-o", color=c, ms=3, lw=1, label=label)
            else:
                ax.scatter(gx, gy, s=10, color=c, alpha=0.6, label=label)
            if pareto and len(gx):
                f = _front(gx, gy)
                ax.step(gx[f], gy[f], where="post", color=c, lw=1.5,
                        label=("Pareto front" if g is None else "Pareto front of each colour") if k == 0 else None)
        ax.set_xlabel(_label(x))
        ax.set_ylabel(_label(y))
        if logx:
            ax.set_xscale("log")
        if logy:
            ax.set_yscale("log")
        ax.grid(True, alpha=0.3)
        if title:
            ax.set_title(title)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False, fontsize=8)
        fig.tight_layout()
        out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out, dpi=200)
        plt.close(fig)
    return out
