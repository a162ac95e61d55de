"""Fault sensitivity of the default `rtl test`: the share of injected faults it catches.

Faults (einforge.sim._mutations): one PE dropping bit 0 of its products (its one multiplier), done stuck high, an
extra output beat, a cycle counter counting twice, a wrong log2(e) constant in the exp datapath, a loader that
writes into slots still to be read, a tile that starts before its words arrive, out_last stuck low.
Target: every one caught. (A loader writing into busy slots can only matter where it gets ahead of the
compute: the first and last designs are compute-bound at one word a cycle, the middle ones memory-bound.)
Run: .venv/bin/python benchmarks/mutations.py
"""

import time

from einforge.einsum import FixedPoint, library
from einforge.rtl import lower
from einforge.sim._mutations import mutation_score

CASES = [("attention-1pass", "fusemax", (2, 2), {"M": 32, "P": 4, "E": 2, "F": 2}),
         ("attention-1pass", "arch", (4, 4), {"M": 16, "P": 8, "E": 4, "F": 4}),
         ("attention-causal", "fusemax", (4, 4), {"M": 16, "P": 16, "E": 4, "F": 4}),
         ("attention-1pass", "arch", (4, 4), {"M": 32, "P": 8, "E": 2, "F": 2}),
         ("attention-seer", "fusemax", (4, 4), {"M": 32, "P": 16, "E": 4, "F": 4, "B0": 4})]


def main():
    for name, binding, array, sizes in CASES:
        d = lower(library()[name].load(), binding, array, FixedPoint(8, 8), sizes)
        t = time.perf_counter()
        r = mutation_score(d)
        print(f"{name} ({binding}, {array[0]}x{array[1]}): caught {len(r['caught'])} of "
              f"{len(r['caught']) + len(r['missed'])} ({r['share']:.0%}); clean design passes: {r['clean']}; "
              f"{time.perf_counter() - t:.0f} s")
        for m in r["missed"]:
            print(f"   MISSED: {m['mutation']}")


if __name__ == "__main__":
    main()
