"""How long the reference executor takes on the 1-pass attention cascade at a realistic size.

Target (issue: cascade language): B=1, H=1, M=P=4096, E=F=64, M0=256 in a few seconds.
Run: .venv/bin/python benchmarks/executor.py
"""

import time

import numpy as np

from einforge.einsum import evaluate, library, random_inputs, resolve_sizes


def main():
    entry = library()["attention-1pass"]
    c = entry.load()
    for n in (1024, 4096):
        sizes = resolve_sizes(c, {"M": n, "P": n, "E": 64, "F": 64, "M0": 256})
        x = random_inputs(c, sizes, np.random.default_rng(0))
        best = float("inf")
        for _ in range(3):
            t0 = time.perf_counter()
            out = evaluate(c, x, sizes)
            best = min(best, time.perf_counter() - t0)
        ref = entry.reference(x, sizes)["AV"]
        err = np.max(np.abs(out["AV"] - ref)) / np.max(np.abs(ref))
        print(f"attention-1pass M=P={n:5d} E=F=64 M0=256: {best:6.3f} s (best of 3), rel. error {err:.1e}")


if __name__ == "__main__":
    main()
