"""Lowering element-wise stages to the vector unit: what it accepts, what it refuses, its cycles."""

from dataclasses import replace

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from einforge.arch import Binding
from einforge.einsum import FixedPoint, library, parse_cascade, rename, resolve_sizes, subcascade
from einforge.rtl import RTLError, lower

LIB = library()
Q = FixedPoint(8, 8)


def _single_einsum_stages():
    """Every built-in cascade, and every Einsum of one without a loop cut out as a stage of its own."""
    out = []
    for name in sorted(LIB):
        c = LIB[name].load()
        out.append(c)
        if c.iterative_ranks:
            continue
        for e in c.einsums:
            try:
                out.append(subcascade(c, [e.name], sorted({a.tensor for a in e.expr.accesses()})))
            except Exception:     # a cut the stage rules refuse (after a filter): not a stage
                continue
    return out


def _vector_stages():
    keep = []
    for s in _single_einsum_stages():
        sizes = {r.name: 3 for r in s.ranks if not r.derived and not r.param}
        try:
            d = lower(s, None, (4, 4), Q, sizes)
        except RTLError:
            continue
        if d.manifest["datapath"].startswith("vector lanes"):
            keep.append(s)
    return keep


STAGES = _vector_stages()


def _sizes(data, s, most):
    """Sizes of the stage's own ranks, consistent with its partitions (a chunk inside its rank)."""
    sizes = {r.name: data.draw(st.integers(1, most), label=r.name) for r in s.ranks if not r.derived and not r.param}
    try:
        resolve_sizes(s, sizes)
    except Exception:
        assume(False)
    return sizes


def test_the_library_has_many_vector_stages():
    # feature maps, activations, softmax's steps, normalization sums, pooling, the final combinations
    names = {s.name for s in STAGES}
    assert len(STAGES) >= 60
    assert {"attention-lolcats-fq", "attention-mossformer-z", "gelu-y", "silu-y", "softmax-gm",
            "attention-cca-kc", "attention-aaren", "softmax", "gelu"} <= names


@given(st.data())
def test_cycles_are_the_cost_models_for_every_vector_stage(data):
    """Instruction for instruction the cost model's count (an operator's recipe, a MAC or max per
    point of a reduction, a copy free), over stages of the whole library, sizes and lane counts."""
    s = data.draw(st.sampled_from(STAGES))
    sizes = _sizes(data, s, 6)
    lanes = data.draw(st.integers(1, 5), label="lanes")
    try:
        d = lower(s, None, (2, lanes), Q, sizes)
    except RTLError as exc:           # a gather of chunks past the rank's end at these sizes
        assert "reads outside" in str(exc)
        assume(False)
    prog = d.top.prog
    assert d.manifest["rtl_cycles"] == d.manifest["model_cycles"] == prog.blocks * len(prog.instrs)
    assert prog.blocks == -(-sizes[prog.lane_rank] // lanes)


@given(st.data())
def test_renaming_ranks_and_tensors_changes_nothing(data):
    s = data.draw(st.sampled_from(STAGES))
    sizes = _sizes(data, s, 5)
    free = [ch for ch in "ABCDGHIJLNORSUVWXYZ" if ch not in {r.name for r in s.ranks}]
    ranks = {r.name: free[k] for k, r in enumerate(x for x in s.ranks if not x.param)}
    tensors = {t: f"T{k}" for k, t in enumerate(s.tensors)}
    renamed = rename(s, ranks, tensors)
    try:
        a = lower(s, None, (2, 3), Q, sizes)
    except RTLError as exc:
        assert "reads outside" in str(exc)
        assume(False)
    b = lower(renamed, None, (2, 3), Q, {ranks.get(k, k): v for k, v in sizes.items()})
    assert ranks[a.top.prog.lane_rank] == b.top.prog.lane_rank
    assert [replace(i, einsum="") for i in a.top.prog.instrs] == [replace(i, einsum="") for i in b.top.prog.instrs]
    assert a.manifest["model_cycles"] == b.manifest["model_cycles"]


def test_lane_rank_is_the_largest_shared_one_unless_the_binding_names_it():
    c = parse_cascade("ranks D=3 T=8\ninput X[d,t] Y[d,t]\nZ[d,t] = X[d,t] + Y[d,t]\n")
    assert lower(c, None, (4, 4), Q, {}).manifest["mapping"]["cols"] == "T"
    assert lower(c, None, (4, 4), Q, {"D": 9}).manifest["mapping"]["cols"] == "D"
    b = Binding(name="mine", spatial=(("1d", (("cols", ("D",)),)),))
    d = lower(c, b, (4, 4), Q, {})
    assert d.manifest["mapping"]["cols"] == "D" and d.manifest["mapping"]["blocks"] == 1
    with pytest.raises(RTLError, match="cannot be the vector unit's lane rank"):
        lower(parse_cascade("ranks D=3 T=8\ninput X[d,t]\nS[t] = X[d,t]\n"), Binding(
            name="mine", spatial=(("1d", (("cols", ("D",)),)),)), (4, 4), Q, {})


def test_a_dot_product_per_batch_element_runs_on_the_lanes():
    # the GEMM array has nothing to spread over its rows and columns; each lane takes a batch element
    d = lower(parse_cascade("ranks K M N\ninput A[k,m] B[k,m]\nZ[m] = A[k,m] * B[k,m]\n"), None, (4, 4), Q,
              {"K": 5, "M": 6, "N": 1})
    assert d.manifest["datapath"].startswith("vector lanes") and d.manifest["mapping"]["cols"] == "M"
    assert d.manifest["rtl_cycles"] == 2 * 5       # two blocks of lanes, one MAC per k


def test_a_copy_is_free_and_reads_its_source():
    c = parse_cascade("ranks E=3 M=4\ninput K[e,m]\nBK[m,e] = K[e,m]\nY[m,e] = BK[m,e] + BK[m,e]\n")
    d = lower(c, None, (4, 4), Q, {})
    prog = d.top.prog
    assert len(prog.instrs) == 3 and prog.registers == 3 + 3      # K's block, Y's: BK holds none
    assert d.manifest["model_cycles"] == 3


@pytest.mark.parametrize("text,match", [
    ("ranks D T\ninput X[d,t]\nY[d,t: d < t] = X[d,t] + 1\n", "Einsum Y has a filter.*no masking"),
    ("ranks D T\ninput X[d,t] W[d,t] U[d,t]\nY[d,t] = X[d,t] * W[d,t] * U[d,t]\n", "product of 3 tensors"),
    ("ranks D T\ninput X[d,t]\nY[d,t] = sqrt(X[d,t])\n", "operator 'sqrt'"),
    ("ranks D T\ninput X[d,t]\nY[d,t] = X[d,t] * t\n", "position 't' as a value"),
    ("ranks D T\ninput X[d] W[t]\nY[d,t] = X[d] + W[t]\n", "no rank is carried by every tensor"),
    ("ranks D T\ninput X[d,t]\nY[d,t] = X[d+1,t] + 1\n", "reads outside X"),
    ("ranks D T=3\ninput X[d,t]\nR[d:d=0,t] = 0\nR[d+1,t] = R[d,t] + X[d,t]\nZ[t] = X[0,t] * 2\n"
     "U[d,t] = R[d+1,t] * Z[t]\nstop d >= D\n", "Z sits inside the loop over D"),
    ("ranks D T\ninput X[d,t]\nY[t] = X[d,t] + 1 :: min(d)\nZ[t] = Y[t] * 2\n", None),
])
def test_what_the_lanes_cannot_do_is_refused_by_name(text, match):
    c = parse_cascade(text)
    if match is None:          # a control: the same shapes the lanes can run
        assert lower(c, None, (4, 4), Q, {"D": 3, "T": 4}).manifest["datapath"].startswith("vector lanes")
        return
    with pytest.raises(RTLError, match=match):
        lower(c, None, (4, 4), Q, {"D": 3, "T": 4})


def test_a_stage_neither_unit_runs_gives_both_reasons():
    c = parse_cascade("ranks K M N\ninput A[k,m] B[k,n]\nZ[m,n: m <= n] = A[k,m] * B[k,n]\n")
    with pytest.raises(RTLError, match="the GEMM array has no masking.*Nor can the vector unit run it: .*no masking"):
        lower(c, None, (4, 4), Q, {"K": 2, "M": 3, "N": 3})
