"""Speed and headline numbers of the cost model (CPU time, min and median of repeated runs).

Prints: one design point; the FuseMax evaluation's Figures 6-12; a 10,000-point sweep through the
array-shaped path (columns), against the scalar path (one evaluate per point) in the same run, with
invalid points counted apart; the same sweep for the causal and window cascades and FLAT's mapping,
as ratios to the unmasked one (same grid); the headline ratios against the paper's.
Run: .venv/bin/python benchmarks/cost_model.py
"""

import dataclasses
import itertools
import tempfile
from pathlib import Path

from _timing import cpu

from einforge.arch import (
    ArchError,
    design,
    evaluate,
    figures,
    headline_ratios,
    load_sweep,
    load_workload,
    sweep_columns,
)

SPEC = """
cascade: attention-1pass
binding: fusemax
arch: fusemax
workloads: [BERT, TrXL, T5, XLM]
seq: [64K]
grid:
  array: [16x16, 32x32, 64x64, 128x128, 256x256, 512x512, 1024x1024, 2048x2048, 4096x4096, 8192x8192]
  buffer: [1MiB, 2MiB, 4MiB, 6MiB, 8MiB, 12MiB, 16MiB, 24MiB, 32MiB, 64MiB]
  bandwidth: [100GiB/s, 200GiB/s, 400GiB/s, 800GiB/s, 1600GiB/s]
  clock: [500MHz, 700MHz, 940MHz, 1200MHz, 1500MHz]
"""


def scalar_sweep(spec):
    """The baseline: every point evaluated on its own."""
    from einforge.arch import load_architecture, load_binding
    from einforge.einsum import load_cascade

    c = load_cascade(spec.cascade)
    b = load_binding(spec.binding, c)
    base = load_architecture(spec.arch)
    n_ok = n_bad = 0
    for wl, seq, arr, buf, bw, clk in itertools.product(spec.workloads, spec.seqs, spec.arrays, spec.buffers,
                                                         spec.bandwidths, spec.clocks):
        a = base.with_part("2d", rows=arr[0], cols=arr[1]).with_part("1d", cols=arr[1]).with_buffer(capacity=int(buf))
        a = dataclasses.replace(a, dram_bandwidth=bw, clock_hz=clk)
        try:
            evaluate(a, c, b, load_workload(wl, seq))
            n_ok += 1
        except ArchError:
            n_bad += 1
    return n_ok, n_bad


def main():
    w = load_workload("BERT", "64K")
    d = design("fusemax")
    evaluate(d.arch, d.cascade, d.binding, w)
    one_min, one_med, _ = cpu(lambda: [evaluate(d.arch, d.cascade, d.binding, w) for _ in range(200)])
    print(f"one design point (FuseMax, BERT 64K): {one_min / 200 * 1e3:.3f} ms (median {one_med / 200 * 1e3:.3f})")

    with tempfile.TemporaryDirectory() as tmp:
        f_min, f_med, files = cpu(lambda: figures(tmp), reps=3)
        print(f"Figures 6-12 ({len(files)} files): {f_min:.2f} s (median {f_med:.2f}); the artifact: about 9 hours")
        spec_file = Path(tmp) / "sweep.yaml"
        spec_file.write_text(SPEC)
        spec = load_sweep(spec_file)
        s_min, s_med, cols = cpu(lambda: sweep_columns(spec), reps=7)
        ok = int((cols["error"] == "").sum())
        b_min, _, (b_ok, b_bad) = cpu(lambda: scalar_sweep(spec), reps=1)
        assert b_ok == ok
        print(f"sweep of {len(cols['error'])} points ({ok} valid, {len(cols['error']) - ok} refused): {s_min:.3f} s "
              f"(median {s_med:.3f}) = {ok / s_min:,.0f} valid points/s; the scalar path in this run: {b_min:.2f} s = "
              f"{b_ok / b_min:,.0f} valid points/s; {b_min / s_min:.1f}x")
        for cascade, binding in (("attention-causal", "fusemax"), ("attention-window", "fusemax"),
                                 ("attention-3pass", "flat")):
            # FLAT searches its 704 dataflows for every point off its own accelerator (all but 4 here)
            text = SPEC.replace("cascade: attention-1pass", f"cascade: {cascade}").replace(
                "binding: fusemax", f"binding: {binding}")
            spec_file.write_text(text)
            sp = load_sweep(spec_file)
            m_min, m_med, mc = cpu(lambda sp=sp: sweep_columns(sp), reps=7)
            n_ok = int((mc["error"] == "").sum())
            per = m_min / max(n_ok, 1)
            print(f"  {cascade} ({binding}): {len(mc['error'])} points, {n_ok:,} valid in {m_min:.3f} s = "
                  f"{n_ok / m_min:,.0f} valid points/s, {per / (s_min / ok):.1f}x the unmasked cost a point "
                  f"(target <= 3x)")

    h = headline_ratios()
    print(f"FuseMax vs FLAT, attention:  {h['attention_speedup']:.2f}x faster, {h['attention_energy']:.1%} of the "
          "energy (paper 6.7x, 79%)")
    print(f"FuseMax vs FLAT, end to end: {h['e2e_speedup']:.2f}x faster, {h['e2e_energy']:.1%} of the energy "
          "(paper 5.3x, 83%)")


if __name__ == "__main__":
    main()
