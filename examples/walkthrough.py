"""From an attention algorithm to verified hardware, in five steps.

1. pick a cascade (or write one) and run it on numbers against a direct numpy computation;
2. analyze it: passes over the sequence, what must be buffered;
3. evaluate it on the FuseMax architecture (256x256 PEs) against FLAT, for BERT at 64K tokens;
4. lower it to RTL for a small array and write the Verilog;
5. simulate the RTL with cocotb against the bit-accurate golden model and compare the RTL's
   cycle count with the cost model's prediction for the same small array.

Run: .venv/bin/python examples/walkthrough.py [--cascade attention-causal] [--array 4x4] [--out DIR]
"""

import argparse
import tempfile

import numpy as np

from einforge.arch import design, evaluate, load_architecture, load_binding, load_workload
from einforge.einsum import FixedPoint, analyze, library, random_inputs, resolve_sizes
from einforge.einsum import evaluate as run_cascade
from einforge.rtl import lower, write_design
from einforge.sim import simulate, simulators


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cascade", default="attention-1pass", help="a built-in 1-pass attention cascade")
    ap.add_argument("--array", default="4x4", help="RTL array shape RxC")
    ap.add_argument("--out", default=None, help="where to write the Verilog (default: a temporary directory)")
    args = ap.parse_args(argv)
    entry = library()[args.cascade]
    cascade = entry.load()

    print(f"1. {cascade.name}: {cascade.description}")
    sizes = resolve_sizes(cascade, {"M": 256, "P": 64, "E": 16, "F": 16, "M0": 16})
    x = random_inputs(cascade, sizes, np.random.default_rng(0))
    out = run_cascade(cascade, x, sizes)
    ref = entry.reference(x, sizes)["AV"]
    print(f"   runs at M=256, P=64: max relative error vs numpy softmax attention "
          f"{np.max(np.abs(out['AV'] - ref)) / np.max(np.abs(ref)):.1e}")

    a = analyze(cascade)
    print(f"2. passes: {a.passes}  (M1 = tiles of keys, M0 = keys within a tile)")
    print(f"   buffered between passes, per query: over M {a.reports['M'].footprint} bytes; "
          f"over M0 {a.reports['M0'].footprint} bytes (a tile: the PE registers)")

    w = load_workload("BERT", "64K")
    fm = evaluate(load_architecture("fusemax"), cascade, load_binding("fusemax", cascade), w)
    fl = evaluate(*(lambda d: (d.arch, d.cascade, d.binding))(design("flat")), w)
    print(f"3. BERT 64K on FuseMax: {fm.latency_s:.3g} s, 2D util {fm.util_2d:.3f}, 1D util {fm.util_1d:.3f}, "
          f"{fm.energy_pJ / 1e12:.3g} J;  FLAT (3-pass, unmasked): {fl.latency_s:.3g} s")

    r, c = (int(v) for v in args.array.split("x"))
    sizes = {"M": 8 * r, "P": 2 * c, "E": 8, "F": 8}
    d = lower(cascade, "fusemax", (r, c), FixedPoint(8, 8), sizes)          # tiles interleaved
    one_at_a_time = lower(cascade, "arch", (r, c), FixedPoint(8, 8), sizes).manifest["model_cycles"]
    outdir = args.out or tempfile.mkdtemp(prefix="einforge-walkthrough-")
    files = write_design(d, outdir)
    prog = d.manifest["program"]
    print(f"4. RTL for {r}x{c} ({d.manifest['numbers']['format']}): {files['verilog']} "
          f"({sum(1 for _ in open(files['verilog']))} lines of Verilog); a tile every "
          f"{prog['initiation_interval']} cycles, {prog['tiles_in_flight']} in flight "
          f"(one tile at a time: {one_at_a_time:.0f} cycles in all)")

    if not simulators()["icarus"]:
        print("5. skipped: Icarus Verilog is not installed (./setup.sh installs it)")
        return 0
    res = simulate(d, seed=0)
    print(f"5. cocotb on Icarus: {'passed' if res.passed else 'FAILED'}, bit-exact {res.bit_exact}; "
          f"cycles RTL {res.cycles} vs cost model {res.model_cycles:.0f} "
          f"({(res.cycles - res.model_cycles) / res.model_cycles:+.1%}); measured 2D utilization "
          f"{res.details['util_2d']:.2f}; error vs float64 {res.max_abs_error_vs_float:.3g}")
    return 0 if res.passed else 1


if __name__ == "__main__":
    raise SystemExit(main())
