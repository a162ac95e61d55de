"""No result depends on a name: every library cascade, with every rank and tensor renamed at
random, runs, analyzes, evaluates and lowers to RTL exactly as the original does."""

import math

import numpy as np
import pytest
import sympy
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from einforge.arch import ArchError, evaluate, load_architecture, load_binding, load_workload
from einforge.einsum import (
    DEFAULT_OPERATORS,
    FixedPoint,
    analyze,
    library,
    random_inputs,
    rename,
    resolve_sizes,
)
from einforge.einsum import (
    evaluate as run,
)
from einforge.einsum._ir import WORKLOAD_FIELDS
from einforge.rtl import RTLError, lower

LIB = library()
NAMES = sorted(LIB)
FUSEMAX = load_architecture("fusemax")
RESERVED = set(DEFAULT_OPERATORS.functions()) | set(WORKLOAD_FIELDS) | {"inf", "and", "neg"}

_name = st.text("ABCDEFGHJKLMNQSTUVWXYZ", min_size=1, max_size=3).map(lambda s: "Z" + s)


@st.composite
def renamings(draw, cascade):
    """New names for every rank and tensor: distinct, upper case, clear of functions and fields."""
    old = [r.name for r in cascade.ranks] + list(cascade.tensors)
    new = draw(st.lists(_name, min_size=len(old), max_size=len(old), unique=True)
               .filter(lambda ns: not any(n.lower() in RESERVED for n in ns)))
    m = dict(zip(old, new))
    ranks = {r.name: m[r.name] for r in cascade.ranks}
    tensors = {t: m[t] for t in cascade.tensors}
    return ranks, tensors


def _same(a, b, ranks, tensors, path=""):
    """Structures equal once names are mapped (dict keys, label strings)."""
    names = {**ranks, **tensors}
    if isinstance(a, dict):
        assert isinstance(b, dict), path
        mapped = {_label(k, names): v for k, v in a.items()}
        assert set(mapped) == set(b), (path, sorted(mapped), sorted(b))
        for k in mapped:
            _same(mapped[k], b[k], ranks, tensors, f"{path}.{k}")
    elif isinstance(a, float) and isinstance(b, float) and math.isnan(a):
        assert math.isnan(b), path
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), path
        for x, y in zip(a, b):
            _same(x, y, ranks, tensors, path)
    elif isinstance(a, str) and isinstance(b, str):
        pass  # descriptions and labels carry names
    else:
        assert a == b, (path, a, b)


def _label(k, names):
    if not isinstance(k, str):
        return k
    if k.endswith(".init"):
        return names.get(k[:-5], k[:-5]) + ".init"
    if k.startswith("size_"):
        return "size_" + names.get(k[5:], k[5:])
    return names.get(k, k)


def _small_sizes(c):
    return resolve_sizes(c)


@settings(max_examples=3, deadline=None, suppress_health_check=list(HealthCheck))
@pytest.mark.parametrize("name", NAMES)
@given(data=st.data())
def test_renamed_cascades_run_and_analyze_identically(name, data):
    c = LIB[name].load()
    ranks, tensors = data.draw(renamings(c))
    r = rename(c, ranks, tensors)
    sizes = _small_sizes(c)
    x = random_inputs(c, sizes, np.random.default_rng(0))
    out = run(c, x, sizes, with_presence=True)
    out_r = run(r, {tensors[k]: v for k, v in x.items()}, {ranks[k]: v for k, v in sizes.items()},
                with_presence=True)
    for t, v in out.items():
        mapped = tensors[t.rstrip("?")] + ("?" if t.endswith("?") else "")
        assert np.array_equal(v, out_r[mapped], equal_nan=True), t
    a, a_r = analyze(c), analyze(r)
    for rank, rep in a.reports.items():
        rep_r = a_r.reports[ranks[rank]]
        assert rep.passes == rep_r.passes, rank
        assert {_label(k, tensors): v for k, v in rep.einsum_pass.items()} == rep_r.einsum_pass
        assert [[_label(x, tensors) for x in g] for g in rep.fusion_groups] == [list(g) for g in rep_r.fusion_groups]
        for f, f_r in ((rep.footprint, rep_r.footprint), (rep.traffic, rep_r.traffic)):
            subs = {x: sympy.Symbol(ranks[x.name], **x.assumptions0) for x in f.free_symbols if x.name in ranks}
            assert f.subs(subs, simultaneous=True) == f_r


def _binding_for(c):
    from einforge.einsum import roles

    return "fusemax" if roles(c).tile else "unfused"


@settings(max_examples=3, deadline=None, suppress_health_check=list(HealthCheck))
@pytest.mark.parametrize("name", NAMES)
@given(data=st.data())
def test_renamed_cascades_evaluate_identically(name, data):
    c = LIB[name].load()
    ranks, tensors = data.draw(renamings(c))
    r = rename(c, ranks, tensors)
    w = load_workload("BERT", "4K")
    results = []
    for cas in (c, r):
        try:
            results.append(evaluate(FUSEMAX, cas, load_binding(_binding_for(cas), cas), w).to_json())
        except ArchError as exc:
            results.append(("error", str(exc).count(" ")))
    if isinstance(results[0], tuple):
        assert isinstance(results[1], tuple)
        return
    results[0].pop("design"), results[1].pop("design")
    _same(results[0], results[1], ranks, tensors)


TILED = [n for n in NAMES if n.startswith("attention") and "M0" in {r.name for r in LIB[n].load().ranks}]


@settings(max_examples=2, deadline=None, suppress_health_check=list(HealthCheck))
@pytest.mark.parametrize("name", TILED)
@given(data=st.data())
def test_renamed_cascades_lower_identically(name, data):
    c = LIB[name].load()
    ranks, tensors = data.draw(renamings(c))
    r = rename(c, ranks, tensors)
    sizes = {k: v for k, v in resolve_sizes(c).items() if not c.rank(k).derived and k != "M0"}
    sizes = {k: min(v, 16) for k, v in sizes.items()}
    try:
        d = lower(c, "fusemax", (4, 4), FixedPoint(8, 8), sizes)
    except RTLError:
        with pytest.raises(RTLError):
            lower(r, "fusemax", (4, 4), FixedPoint(8, 8), {ranks[k]: v for k, v in sizes.items()})
        return
    d_r = lower(r, "fusemax", (4, 4), FixedPoint(8, 8), {ranks[k]: v for k, v in sizes.items()})
    for key in ("rtl_cycles", "model_cycles", "output_beats", "input_words", "tiles_visited",
                "steady_state_util_2d"):
        assert d.manifest[key] == d_r.manifest[key], key
    assert d.program.makespan == d_r.program.makespan and d.program.depth == d_r.program.depth


@pytest.mark.parametrize("binding", ["fusemax", "arch", "cascade", "flat", "unfused"])
def test_renamed_arrays_give_the_same_report(binding):
    # arrays are named by the architecture: the PE grid and the lanes may be called anything
    from dataclasses import replace

    from einforge.arch import load_binding
    from einforge.einsum import load_cascade

    arch = load_architecture("flat" if binding in ("flat", "unfused", "cascade") else "fusemax")
    names = {"2d": "tensor_cores", "1d": "vector_unit"}
    renamed = replace(arch, arrays=tuple(replace(a, name=names[a.name]) for a in arch.arrays))
    c = load_cascade("attention-3pass" if binding in ("flat", "unfused") else "attention-1pass")
    w = load_workload("BERT", "16K")
    a = evaluate(arch, c, load_binding(binding, c), w)
    b = evaluate(renamed, c, load_binding(binding, c), w)
    assert (a.latency_s, a.energy_pJ, a.traffic_bytes, a.util_2d, a.util_1d, a.area_um2) == \
        (b.latency_s, b.energy_pJ, b.traffic_bytes, b.util_2d, b.util_1d, b.area_um2)
    assert {names[k]: v for k, v in a.util.items()} == b.util
    assert {k: names.get(c_.array) for k, c_ in a.per_einsum.items()} == {k: c_.array for k, c_ in b.per_einsum.items()}
