"""The big RTL regression: every tile-based library cascade that lowers, on 2x2 and 4x4 arrays, both
bindings, three seeds, Icarus (and Verilator when installed), as Dask tasks; prints the verdicts,
the count of runs and failures, and the wall time against the sum of the runs' own times.
Run: .venv/bin/python benchmarks/rtl_regress.py [--workers N]
"""

import argparse
import tempfile
import time
from pathlib import Path

from einforge.sim import load_regression, regress, simulators

CASCADES = ["attention-1pass", "attention-causal", "attention-window", "attention-fa1", "attention-alibi",
            "attention-softcap", "attention-sigmoid-tiled", "attention-gqa", "attention-decode"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--workers", type=int, default=None)
    a = ap.parse_args()
    sims = [s for s in ("icarus", "verilator") if simulators()[s]]
    spec_text = (f"cascades: [{', '.join(CASCADES)}]\narrays: [2x2, 4x4]\nbindings: [arch, fusemax]\n"
                 f"seeds: [0, 1, 2]\nsimulators: [{', '.join(sims)}]\n"
                 "sizes: {M: 16, P: 8, E: 4, F: 4, R: 2, G: 2, B: 1, L: 9, W: 5}\n")
    with tempfile.TemporaryDirectory() as tmp:
        f = Path(tmp) / "matrix.yaml"
        f.write_text(spec_text)
        spec = load_regression(f)
        t = time.perf_counter()
        cols = regress(spec, Path(tmp) / "store", workers=a.workers)
        wall = time.perf_counter() - t
    n = len(cols["key"])
    failed = [(c, ar, b, s, e) for c, ar, b, s, p, e in zip(cols["cascade"], cols["array"], cols["binding"],
                                                              cols["seed"], cols["passed"], cols["error"]) if not p]
    print(f"{n} runs ({len(spec.designs())} designs x {len(spec.seeds)} seeds, simulators: {', '.join(sims)}): "
          f"{n - len(failed)} passed, {len(failed)} failed")
    print(f"wall {wall:.0f} s against {float(sum(cols['seconds'])):.0f} s of runs: {sum(cols['seconds']) / wall:.2f}x")
    for c, ar, b, s, e in failed:
        print(f"  FAILED {c} {ar} {b} seed {s}: {str(e)[:160]}")


if __name__ == "__main__":
    main()
