"""Speed of the LLM layer model (CPU time, min of repetitions).

Prints: one decoder layer (prefill and decode) with every operator mapped by the mapper, cold (the
mapper runs), warm (the mapper's choice per operator shape remembered, every operator priced by
the cost model again; the sizes bound to an operator shape are remembered too) and remembered
(each operator's price too), and a layer of a
shape never priced before (a new prompt or cache length each time, bound as the layer above: the
cost model's whole work); one decode layer on 8 chips per parallelism strategy; and a sequence-parallel
sweep (Ulysses, Ring in three layouts and USP over chips, sequence lengths and link bandwidths, the
block attention time from the cost model once per block shape) in configurations per second.
Targets (issue 15): a layer in at most 2 ms; at least 10,000 sequence-parallel configurations/s.
Run: .venv/bin/python benchmarks/llm.py
"""

import itertools
from functools import cache

from _timing import cpu

from einforge.arch import (
    Interconnect,
    decode_on_chips,
    evaluate,
    evaluate_layer,
    layer_ops,
    load_architecture,
    load_binding,
    load_model,
    ring_attention,
    ulysses,
    usp,
)
from einforge.arch._llm import _mapped, _priced
from einforge.einsum import load_cascade


def main():
    arch = load_architecture("fusemax")
    m = load_model("Llama-3-70B")
    for phase, tokens, kv in (("prefill", 4096, None), ("decode", 1, 32768)):
        _mapped.cache_clear()
        _priced.cache_clear()
        cold = cpu(lambda: evaluate_layer(arch, m, phase, 8, tokens, kv=kv), reps=1)[0]

        def again():                    # the mapper's choices remembered, every operator priced again
            _priced.cache_clear()
            return evaluate_layer(arch, m, phase, 8, tokens, kv=kv)

        lo, med, rep = cpu(again, reps=30)
        hit = cpu(lambda: evaluate_layer(arch, m, phase, 8, tokens, kv=kv), reps=30)[0]
        distinct = len({(o.cascade, o.workload) for o in layer_ops(m, phase, 8, tokens, kv)})
        print(f"{phase} layer: {cold * 1e3:.0f} ms with the mapper choosing every operator's binding; then "
              f"{lo * 1e3:.2f} ms (median {med * 1e3:.2f}) pricing its {len(rep.ops)} operators "
              f"({distinct} distinct) with those bindings (target <= 2 ms); {hit * 1e6:.0f} us when every "
              f"operator's price is remembered too")
        # a shape priced for the first time (nothing size-dependent remembered): each repetition a
        # new prompt or cache length, the operators bound as the mapper bound the layer above
        fresh = iter(range(1, 10_000))
        bound = rep.bindings

        def new_shape():
            _priced.cache_clear()       # a decode step's dense operators do not change with the cache
            k = next(fresh)
            t, c = (tokens + 16 * k, kv) if phase == "prefill" else (tokens, kv + 16 * k)
            evaluate_layer(arch, m, phase, 8, t, kv=c, bindings=bound)

        lo2, med2, _ = cpu(new_shape, reps=30)
        print(f"{phase} layer of a shape not priced before (same bindings): {lo2 * 1e3:.2f} ms "
              f"(median {med2 * 1e3:.2f})")

    # one layer of a decode step on 8 chips: attention split by each strategy, the dense part by
    # tensor parallelism (the mapper's choices remembered, every operator priced again)
    net = Interconnect(8, 300e9, 2e-6, "ring")
    for strategy in ("tensor", "ulysses", "ring", "usp"):
        decode_on_chips(arch, m, 8, 32768, net, strategy)

        def step():
            _priced.cache_clear()
            return decode_on_chips(arch, m, 8, 32768, net, strategy)

        lo3, med3, _ = cpu(step, reps=30)
        print(f"decode layer on 8 chips, {strategy}: {lo3 * 1e3:.2f} ms (median {med3 * 1e3:.2f}) "
              f"(target <= 2 ms)")

    c = load_cascade("attention-gqa")
    b = load_binding("fusemax", c)
    from einforge.arch import Workload

    @cache
    def block(q, k, heads=64, kv_heads=8):
        w = Workload("blk", batch=1, heads=heads, kv_heads=kv_heads, head_dim=128, keys=k, queries=q)
        return evaluate(arch, c, b, w).latency_s

    configs = list(itertools.product((2, 4, 8, 16, 32), (8192, 32768, 131072, 524288), (100e9, 300e9, 900e9)))

    def sweep():
        n = 0
        for chips, seq, bw in configs:
            ring = Interconnect(chips, bw, 2e-6)
            sw = Interconnect(chips, bw, 2e-6, "switch")
            for layout in ("contiguous", "striped", "zigzag"):
                ring_attention(ring, 1, seq, 64, 8, 128, 2, block, layout=layout)
                n += 1
            ulysses(sw, 1, seq, 64, 8, 128, 2, lambda q, k, h, g: block(q, k, h, max(g, 1)))
            n += 1
            if chips >= 4:
                usp(ring, 2, 1, seq, 64, 8, 128, 2, block)
                n += 1
        return n

    n = sweep()                                  # block times for every shape, once
    t = cpu(sweep)[0]
    print(f"sequence-parallel sweep: {n} configurations in {t * 1e3:.1f} ms = {n / t:,.0f} configurations/s "
          f"(block attention from the cost model, remembered per shape); target >= 10,000/s")


if __name__ == "__main__":
    main()
