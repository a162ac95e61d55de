"""A design question answered end to end: where should sigmoid attention's sigmoid run?

Sigmoid attention (FlashSigmoid) replaces softmax with an element-wise sigmoid, so there is no
running max and no final division, but every score now needs an exp and a division. FuseMax's
2D PEs have neither a divider nor an exp unit. The options:

a. keep FuseMax's array and bind the sigmoid to the 1D array (the ``cascade`` binding);
b. give every 2D PE a divider and run the sigmoid where the scores are (the FuseMax binding);

This script checks the cascade on numbers, compares both options with softmax attention on
FuseMax for BERT at 64K tokens (latency, utilization, energy, area), then builds option b as RTL
for a small array and simulates it bit-exact against the golden model.

Run: .venv/bin/python examples/sigmoid_design.py [--array 4x4]
"""

import argparse

import numpy as np

from einforge.arch import evaluate, load_architecture, load_binding, load_workload
from einforge.einsum import FixedPoint, library, random_inputs, resolve_sizes
from einforge.einsum import evaluate as run_cascade
from einforge.rtl import lower
from einforge.sim import simulate, simulators


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--array", default="4x4", help="RTL array shape RxC")
    args = ap.parse_args(argv)
    lib = library()
    sig = lib["attention-sigmoid-tiled"]
    cascade = sig.load()

    sizes = resolve_sizes(cascade, {"M": 128, "P": 32, "M0": 16})
    x = random_inputs(cascade, sizes, np.random.default_rng(0))
    err = np.max(np.abs(run_cascade(cascade, x, sizes)["AV"] - sig.reference(x, sizes)["AV"]))
    print(f"1. {cascade.name}: max error vs numpy sigmoid attention {err:.1e}")

    w = load_workload("BERT", "64K")
    fusemax = load_architecture("fusemax")
    with_div = fusemax.with_array("2d", units=fusemax.array("2d").units + ("div",))
    soft = lib["attention-1pass"].load()
    rows = [
        ("softmax, FuseMax", evaluate(fusemax, soft, load_binding("fusemax", soft), w)),
        ("a. sigmoid on the 1D array", evaluate(fusemax, cascade, load_binding("cascade", cascade), w)),
        ("b. sigmoid on 2D PEs with dividers", evaluate(with_div, cascade, load_binding("fusemax", cascade), w)),
    ]
    print(f"2. {'BERT, 64K tokens':36s} {'latency s':>10} {'2D util':>8} {'1D util':>8} {'energy J':>9} {'area mm2':>9}")
    for name, r in rows:
        print(f"   {name:36s} {r.latency_s:10.3g} {r.util_2d:8.3f} {r.util_1d:8.3f} "
              f"{r.energy_pJ / 1e12:9.3g} {r.area_um2 / 1e6:9.1f}")
    a, b = rows[1][1], rows[2][1]
    print(f"   dividers in the 2D PEs: {a.latency_s / b.latency_s:.1f}x faster than option a, "
          f"for {b.area_um2 / rows[0][1].area_um2:.2f}x FuseMax's area")

    r, c = (int(v) for v in args.array.split("x"))
    d = lower(cascade, "fusemax", (r, c), FixedPoint(8, 8), {"M": 4 * r, "P": 2 * c, "E": 4, "F": 4})
    prog = d.manifest["program"]
    print(f"3. RTL {r}x{c}: 2D PE units {', '.join(d.manifest['units_2d'])}; a tile every "
          f"{prog['initiation_interval']} cycles (sigmoid = max, sub, exp, neg, min, exp, add, div)")
    if not simulators()["icarus"]:
        print("4. skipped: Icarus Verilog is not installed (./setup.sh installs it)")
        return 0
    res = simulate(d, seed=0)
    print(f"4. cocotb on Icarus: {'passed' if res.passed else 'FAILED'}, bit-exact {res.bit_exact}; "
          f"cycles RTL {res.cycles} vs cost model {res.model_cycles:.0f}; "
          f"error vs float64 {res.max_abs_error_vs_float:.3g}")
    return 0 if res.passed else 1


if __name__ == "__main__":
    raise SystemExit(main())
