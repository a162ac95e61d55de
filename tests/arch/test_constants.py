"""A constant factor of a product (``Q*K*(1/sqrt(E))``) is folded into the smallest operand, once,
as it is loaded: it costs a multiply per element of that operand and no cycles, never a second MAC
per point."""

import math

import pytest

from einforge.arch import ArchError, evaluate, load_architecture, load_binding, load_workload
from einforge.einsum import Call, Const, Einsum, library, roles
from einforge.einsum._execute import product_factors

LIB = library()
FUSEMAX = load_architecture("fusemax")
W = load_workload("BERT", "4K")


def _scaled(c, label, factor=0.125):
    from dataclasses import replace

    i = c.labels.index(label)
    e = c.einsums[i]
    new = Einsum(e.output, Call("*", (e.expr, Const(factor))), e.reduce, e.filters, e.span)
    return replace(c, einsums=c.einsums[:i] + (new,) + c.einsums[i + 1:])


def _products(c):
    out = []
    for i, e in enumerate(c.einsums):
        f = product_factors(e.expr)
        if f is not None and sum(1 for x in f if hasattr(x, "tensor")) >= 2 and e.reduce:
            out.append(c.label(i))
    return out


CASES = [(n, lab) for n in sorted(LIB) if LIB[n].load().workload for lab in _products(LIB[n].load())]


@pytest.mark.parametrize("name,label", CASES)
def test_a_constant_factor_costs_one_multiply_per_element_of_the_smallest_operand(name, label):
    c = LIB[name].load()
    # ranks no workload field sizes (a pooling group) take their defaults, as --size would give them
    # (the tiled bindings size the tile rank from the array; unfused takes its default, as --size would)
    bound = {r for r, _ in c.workload}
    defaults = {r.name: r.size.value for r in c.ranks
                if not r.param and not r.derived and r.size is not None and r.name not in bound}
    base = None
    for bname in ("fusemax", "cascade", "unfused") if roles(c).tile else ("unfused",):
        binding = load_binding(bname, c)
        w = W.with_sizes(defaults) if bname == "unfused" else W
        try:
            base = evaluate(FUSEMAX, c, binding, w)
            break
        except ArchError:       # an operator FuseMax's 2D PEs lack, or no query rank to keep resident
            continue
    assert base is not None
    scaled = evaluate(FUSEMAX, _scaled(c, label), binding, w)
    e = c.einsum(label)
    sizes = {r.lower(): n for r, n in base.sizes.items()}
    for rk, it in c.iterative_ranks.items():
        sizes[it.var] = int(it.bound.evaluate(base.sizes))
    elements = base.instances * min(
        [math.prod(sizes[v] for v in a.variables()) for a in e.expr.accesses()]
        + [math.prod(sizes[v] for v in e.output_variables())])
    pes = FUSEMAX.array(base.per_einsum[label].array).pes
    assert scaled.per_einsum[label].cycles == base.per_einsum[label].cycles
    assert scaled.latency_s == base.latency_s
    if any(not hasattr(f, "tensor") for f in product_factors(e.expr)):
        # constants are folded together: one multiply per element in all
        assert scaled.per_einsum[label].actions == base.per_einsum[label].actions
        return
    assert scaled.per_einsum[label].actions["mac"] == pytest.approx(base.per_einsum[label].actions["mac"] + elements)
    assert pes


def test_the_paper_scale_costs_almost_nothing():
    # the library's 1-pass cascade with 1/sqrt(E) in its logits: was 10.76 s, a second MAC per point
    c = LIB["attention-1pass"].load()
    w = load_workload("BERT", "64K")
    scaled = _scaled(c, "BQK", 1 / 8)
    b = load_binding("fusemax", c)
    assert evaluate(FUSEMAX, scaled, b, w).latency_s == pytest.approx(evaluate(FUSEMAX, c, b, w).latency_s, rel=1e-4)
