"""Speed and headline numbers of the cost model.

Targets (issue: cost model): Figures 6-12 in under 10 s; one design point under 1 ms; a sweep of
10,000 points under 10 s. Headline ratios (paper): FuseMax vs FLAT attention 6.7x faster at 79% of
the energy; end to end 5.3x and 83%.
Run: .venv/bin/python benchmarks/cost_model.py
"""

import tempfile
import time
from pathlib import Path

from einforge.arch import design, evaluate, figures, headline_ratios, load_sweep, load_workload, run_sweep

SPEC = """
cascade: attention-1pass
binding: fusemax
arch: fusemax
workloads: [BERT, TrXL, T5, XLM]
seq: [64K]
grid:
  array: [16x16, 32x32, 48x48, 64x64, 96x96, 128x128, 192x192, 256x256, 384x384, 512x512]
  buffer: [1MiB, 2MiB, 4MiB, 6MiB, 8MiB, 12MiB, 16MiB, 24MiB, 32MiB, 64MiB]
  bandwidth: [100GiB/s, 200GiB/s, 400GiB/s, 800GiB/s, 1600GiB/s]
  clock: [500MHz, 700MHz, 940MHz, 1200MHz, 1500MHz]
"""


def main():
    w = load_workload("BERT", "64K")
    d = design("fusemax")
    evaluate(d.arch, d.cascade, d.binding, w)
    n = 2000
    t0 = time.perf_counter()
    for _ in range(n):
        evaluate(d.arch, d.cascade, d.binding, w)
    one = (time.perf_counter() - t0) / n
    print(f"one design point (FuseMax, BERT 64K):   {one * 1e3:.3f} ms   (target < 1 ms)")

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        files = figures(tmp)
        print(f"Figures 6-12 ({len(files)} files):          {time.perf_counter() - t0:.2f} s    (target < 10 s; "
              "the artifact: about 9 hours)")
        spec = Path(tmp) / "sweep.yaml"
        spec.write_text(SPEC)
        s = load_sweep(spec)
        t0 = time.perf_counter()
        rows = run_sweep(s)
        dt = time.perf_counter() - t0
        print(f"sweep of {len(rows)} points:             {dt:.2f} s    (target < 10 s)")

    h = headline_ratios()
    print(f"FuseMax vs FLAT, attention:  {h['attention_speedup']:.2f}x faster, {h['attention_energy']:.1%} of the "
          "energy (paper 6.7x, 79%)")
    print(f"FuseMax vs FLAT, end to end: {h['e2e_speedup']:.2f}x faster, {h['e2e_energy']:.1%} of the energy "
          "(paper 5.3x, 83%)")


if __name__ == "__main__":
    main()
