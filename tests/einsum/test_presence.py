"""Filters that travel with the data: sound for every built-in, exact for causal attention's tiles."""

import numpy as np
import pytest

from einforge.einsum import evaluate, library, parse_cascade, presence_filters, random_inputs, resolve_sizes
from einforge.einsum._ir import TENSORS

LIB = library()
FILTERED = [n for n, e in LIB.items() if any(e_.filters for e_ in e.load().einsums)]


def _mask(cascade, label_index, filters, sizes, data=None):
    """Where the filters hold over the Einsum's output coordinates (``data``: the inputs a
    data-dependent filter reads)."""
    e = cascade.einsums[label_index]
    names = [v.name for v in e.output.indices]
    vsize = {r.name.lower(): sizes[r.name] for r in cascade.ranks if not r.param}
    shape = [vsize[v] for v in names]
    grids = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
    env = dict(sizes)
    env.update(dict(zip(names, grids)))
    env[TENSORS] = data or {}
    m = np.ones(shape, bool)
    for f in filters:
        m &= np.broadcast_to(f.evaluate(env), shape)
    return m


def test_causal_filters_travel_through_intersections_and_sums_but_not_iterates():
    c = LIB["attention-causal"].load()
    f = {k: [x.text() for x in v] for k, v in presence_filters(c).items()}
    causal = ["m1*M0+m0<=p"]
    assert f["BQK"] == f["LM"] == f["SLN"] == f["SLD"] == f["SLNV"] == causal
    assert f["RM"] == f["RD"] == f["RNV"] == f["PRM"] == f["AV"] == []


def test_union_keeps_only_what_every_operand_carries():
    c = parse_cascade("ranks M P\ninput X[m,p] Y[m,p]\nA[m,p: m <= p] = X[m,p]\nB[m,p: m < p] = Y[m,p]\n"
                      "S[m,p] = A[m,p] + B[m,p]\nT[m,p] = A[m,p] * B[m,p]\nU[m,p] = max(A[m,p], 0)\n"
                      "V[p,m] = A[m,p]\n")
    f = {k: [x.text() for x in v] for k, v in presence_filters(c).items()}
    assert f["S"] == [] and f["T"] == ["m<=p", "m<p"] and f["U"] == []
    assert f["V"] == ["m<=p"]           # indices follow the access, not the producer's names


@pytest.mark.parametrize("name", FILTERED)
def test_sound_for_every_filtered_builtin(name):
    # every coordinate the executor finds present passes the filters the analysis claims
    c = LIB[name].load()
    sizes = resolve_sizes(c, {})
    x = random_inputs(c, sizes, np.random.default_rng(0))
    out = evaluate(c, x, sizes, with_presence=True, keep="all")
    claimed = presence_filters(c)
    for i, e in enumerate(c.einsums):
        info = c.tensors[e.name]
        if info.iterative is not None or c.einsum_kind(i) != "plain":
            continue
        outs = {v.name for v in e.output.indices}
        fs = [f for f in claimed[c.label(i)] if f.variables() <= outs]
        present = out[e.name + "?"]
        assert not np.any(present & ~_mask(c, i, fs, sizes, x)), (name, e.name)


def test_exact_for_the_causal_tile_einsums():
    c = LIB["attention-causal"].load()
    sizes = resolve_sizes(c, {})
    out = evaluate(c, random_inputs(c, sizes, np.random.default_rng(1)), sizes, with_presence=True, keep="all")
    claimed = presence_filters(c)
    for name in ("BQK", "SLN"):
        i = next(k for k, e in enumerate(c.einsums) if e.name == name)
        assert np.array_equal(out[name + "?"], _mask(c, i, claimed[name], sizes))
