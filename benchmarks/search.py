"""The mapper's speed and what it finds (CPU time, min of 3 runs).

Prints: the time to search the evaluation's 24-point grid (4 models x 6 lengths) and the slowest
single point; at 1K, each model's speedup over FuseMax's binding with energy no higher (or the
complete search's proof that none reaches 5%); and decode against the DRAM-time floor.

Run: .venv/bin/python benchmarks/search.py
"""

import dataclasses
import itertools
import time

from _timing import cpu

from einforge.arch import load_architecture, load_workload, search
from einforge.einsum import load_cascade

FUSEMAX = load_architecture("fusemax")
ONE_PASS = load_cascade("attention-1pass")
MODELS = ("BERT", "TrXL", "T5", "XLM")
SEQS = ("1K", "4K", "16K", "64K", "256K", "1M")




def main():
    per_point = []

    def grid():
        out = []
        for m, s in itertools.product(MODELS, SEQS):
            t = time.process_time()
            out.append((m, s, search(FUSEMAX, ONE_PASS, load_workload(m, s))))
            per_point.append(time.process_time() - t)
        return out

    seconds, _, results = cpu(grid, reps=1)
    print(f"24-point grid searched in {seconds:.2f} s CPU (target 60 s); slowest point {max(per_point):.3f} s "
          "(target 5 s)")
    worse = [(m, s) for m, s, r in results if r.report.latency_s > r.seed.latency_s * (1 + 1e-12)]
    print(f"points where the search is slower than FuseMax's binding: {len(worse)} (target 0)")
    print("\nat 1K, energy no higher than FuseMax's binding:")
    for m in MODELS:
        r = search(FUSEMAX, ONE_PASS, load_workload(m, "1K"), max_energy="seed")
        ratio = r.seed.latency_s / r.report.latency_s
        verdict = "at least 5% faster" if ratio >= 1.05 else \
            "below 5%: the complete search shows no binding in the space does better"
        print(f"  {m:5s} {ratio:.4f}x faster, energy x{r.report.energy_pJ / r.seed.energy_pJ:.6f}  ({verdict}); "
              f"{r.mapspace} mappings, {r.evaluated} priced")
    print("\ndecode against a 4K KV cache:")
    decode = load_cascade("attention-decode")
    for label, heads, kv in (("BERT (12 heads)", 12, 0), ("GQA (64 heads, 8 KV heads)", 64, 8)):
        w = dataclasses.replace(load_workload("BERT", "4K"), heads=heads, kv_heads=kv)
        sec, _, r = cpu(lambda w=w: search(FUSEMAX, decode, w), reps=3)
        floor = r.report.traffic_bytes / FUSEMAX.dram_bandwidth
        print(f"  {label}: {r.report.latency_s * 1e6:.1f} us, DRAM floor {floor * 1e6:.1f} us "
              f"(x{r.report.latency_s / floor:.3f}); searched in {sec:.2f} s")


if __name__ == "__main__":
    main()
