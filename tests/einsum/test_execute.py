"""The executor against direct numpy computations, and its semantics of empty values."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from einforge.einsum import (
    BinOp,
    CascadeError,
    Sym,
    evaluate,
    library,
    parse_cascade,
    random_inputs,
    resolve_sizes,
)

LIB = library()
# masks over key and query positions of one sequence (every query sees itself): keys and queries alike
SELF_ATTENTION = {"attention-causal", "attention-gqa-causal", "attention-window", "attention-alibi", "attention-sinks", "attention-lolcats",
                  "attention-mossformer", "attention-cca"}


@st.composite
def sizes_for(draw, c):
    """Random sizes for a cascade: every free rank 1..5, partitioned ranks a multiple of the tile."""
    sizes = {}
    wholes = {}
    for r in c.ranks:
        if r.derived and isinstance(r.size, BinOp) and r.size.op == "/" and isinstance(r.size.left, Sym):
            wholes[r.size.left.name] = r.size.right.name
    for r in c.ranks:
        if r.derived or r.name in wholes or r.param:
            continue
        sizes[r.name] = draw(st.integers(1, 5))
    for whole, tile in wholes.items():
        sizes[whole] = sizes[tile] * draw(st.integers(1, 4))
    if "P" in sizes and c.name in SELF_ATTENTION:
        sizes["P"] = sizes["M"]               # every query sees at least one key
    if "K0" in sizes and "Q0" in sizes:
        sizes["K0"] = sizes["Q0"]             # chunks of keys and of queries alike
    for r in c.ranks:
        if r.real and r.name in dict(c.densities).values():
            sizes[r.name] = draw(st.floats(0.05, 1.0))      # a share of a mask
        elif r.real:
            sizes[r.name] = draw(st.floats(0.05, 60.0))
        elif r.param:
            sizes[r.name] = draw(st.integers(1, sizes.get("M", 4)))
    return sizes


@pytest.mark.parametrize("name", [n for n, e in sorted(LIB.items()) if e.reference is not None])
def test_library_matches_direct_numpy(name):
    entry = LIB[name]
    c = entry.load()

    @settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(sizes_for(c), st.integers(0, 2**32 - 1), st.sampled_from([0.1, 1.0, 4.0]))
    def check(sizes, seed, scale):
        sz = resolve_sizes(c, sizes)
        x = random_inputs(c, sz, np.random.default_rng(seed), scale)
        out = evaluate(c, x, sz)
        for k, ref in entry.reference(x, sz).items():
            err = np.max(np.abs(out[k] - ref)) / max(np.max(np.abs(ref)), 1e-300)
            assert err <= 1e-9, (k, sizes, err)

    check()


def _large_logit_inputs(rng, e=4, m=16, p=4):
    q = rng.normal(size=(e, p))
    k = rng.normal(size=(e, m))
    q = q / np.linalg.norm(q, axis=0) * 100.0   # |QK| up to ~1e4 with |K| ~ 100
    k = k / np.linalg.norm(k, axis=0) * 100.0
    return {"Q": q, "K": k, "V": rng.normal(size=(e, m))}


@pytest.mark.parametrize("name", ["attention-3pass", "attention-2pass", "attention-1pass", "attention-fa1"])
def test_stable_cascades_exact_with_logits_1e4(name):
    rng = np.random.default_rng(7)
    x = _large_logit_inputs(rng)
    c = LIB[name].load()
    sz = resolve_sizes(c, {"E": 4, "F": 4, "M": 16, "P": 4, **({"M0": 4} if "M0" in [r.name for r in c.ranks] else {})})
    assert np.abs(x["K"].T @ x["Q"]).max() > 5e3
    out = evaluate(c, x, sz)["AV"]
    ref = LIB[name].reference(x, sz)["AV"]
    assert np.all(np.isfinite(out))
    np.testing.assert_allclose(out, ref, rtol=1e-9, atol=1e-12)


def test_naive_cascade_overflows_where_stable_ones_do_not():
    rng = np.random.default_rng(7)
    x = _large_logit_inputs(rng)
    c = LIB["attention-naive"].load()
    out = evaluate(c, x, {"E": 4, "F": 4, "M": 16, "P": 4})["AV"]
    assert not np.all(np.isfinite(out))       # e**QK overflows to inf, inf/inf is nan


def test_fully_filtered_reduction_gives_the_identity_and_stays_empty():
    c = parse_cascade("ranks M=4 P=3\ninput S[m,p]\nX[p] = S[m,p: m < p] :: max(m)\nY[p] = S[m,p: m < p]\n")
    s = np.arange(12.0).reshape(4, 3)
    out = evaluate(c, {"S": s}, with_presence=True)
    assert out["X"][0] == -np.inf and not out["X?"][0]      # nothing visited for p=0
    assert out["Y"][0] == 0.0 and not out["Y?"][0]
    np.testing.assert_array_equal(out["X"][1:], [s[0, 1], s[1, 2]])
    np.testing.assert_array_equal(out["Y"][1:], [s[0, 1], s[:2, 2].sum()])


def test_out_of_range_index_reads_empty():
    # a shifted read: X[m] = S[m+1]; the last coordinate reads past the end and stays empty
    c = parse_cascade("ranks M=4\ninput S[m]\nX[m] = S[m+1] * 2\n")
    out = evaluate(c, {"S": np.arange(4.0)}, with_presence=True)
    np.testing.assert_array_equal(out["X"], [2.0, 4.0, 6.0, 0.0])
    np.testing.assert_array_equal(out["X?"], [True, True, True, False])


def test_union_and_intersection_merges():
    c = parse_cascade("ranks M=3\ninput S[m]\nA[m: m > 0] = S[m]\nU[m] = A[m] + 10\nI[m] = A[m] * 10\n")
    out = evaluate(c, {"S": np.array([1.0, 2.0, 3.0])}, with_presence=True)
    np.testing.assert_array_equal(out["U"], [10.0, 12.0, 13.0])   # + skips the empty A[0]
    np.testing.assert_array_equal(out["I?"], [False, True, True])  # * needs both operands


def test_iterative_rank_prefix_sums_and_final_iterate():
    c = parse_cascade("ranks K=5 I=K\ninput A[k]\nS[i:i=0] = 0\nS[i+1] = S[i] + A[i]\nT = S[I]\nstop i >= K\n")
    a = np.arange(1.0, 6.0)
    out = evaluate(c, {"A": a}, keep="all")
    np.testing.assert_array_equal(out["S"][1:], np.cumsum(a))
    assert out["T"] == a.sum()


def test_filter_with_iterative_prefix_recomputation():
    # the paper's non-iterative middle form of Cascade 3 (Einsums 16-17) computes the same Z
    c = parse_cascade("""
ranks K=6 I=K
input A[k] B[k]
RY[i] = A[k: k <= i] * B[k]
S[i] = A[k: k <= i]
RZ[i] = RY[i] * S[i]
Z = RZ[K-1]
""".replace("Z = RZ[K-1]", "Z[i: i = K-1] = RZ[i]"))
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=6), rng.normal(size=6)
    out = evaluate(c, {"A": a, "B": b})
    np.testing.assert_allclose(out["Z"][-1], a @ b * a.sum())


def test_executor_is_deterministic_and_does_not_modify_inputs():
    c = LIB["attention-1pass"].load()
    sz = resolve_sizes(c)
    x = random_inputs(c, sz, np.random.default_rng(0))
    copy = {k: v.copy() for k, v in x.items()}
    a = evaluate(c, x)["AV"]
    b = evaluate(c, x)["AV"]
    np.testing.assert_array_equal(a, b)
    for k in x:
        np.testing.assert_array_equal(x[k], copy[k])


@pytest.mark.parametrize("name", sorted(LIB))
def test_writing_over_temporaries_changes_no_value(name, monkeypatch):
    """Elementwise results are written over temporaries of the evaluation (large ones then cost
    no new memory); every kept tensor and every input must be bit for bit what plain evaluation gives."""
    from einforge.einsum._numbers import Float64

    c = LIB[name].load()
    sz = resolve_sizes(c)
    x = random_inputs(c, sz, np.random.default_rng(1))
    copy = {k: v.copy() for k, v in x.items()}
    fast = evaluate(c, x, keep="all")
    for k in x:
        np.testing.assert_array_equal(x[k], copy[k])
    monkeypatch.setattr(Float64, "writes_in_place", False)
    plain = evaluate(c, x, keep="all")
    assert fast.keys() == plain.keys()
    for k in plain:
        np.testing.assert_array_equal(fast[k], plain[k], err_msg=k)


def test_iterates_are_kept():
    c = LIB["attention-1pass"].load()
    sz = resolve_sizes(c)
    x = random_inputs(c, sz, np.random.default_rng(0))
    out = evaluate(c, x, keep="all")
    s = x["K"].T @ x["Q"]
    assert out["RM"].shape == (sz["M1"] + 1, sz["P"])
    np.testing.assert_allclose(out["RM"][-1], s.max(axis=0))
    np.testing.assert_allclose(out["RM"][1], s[:sz["M0"]].max(axis=0))


def test_unknown_input_name_is_rejected():
    c = parse_cascade("ranks K=2\ninput A[k]\nY = A[k]\n")
    with pytest.raises(CascadeError, match="Z is not an input"):
        evaluate(c, {"A": np.zeros(2), "Z": np.zeros(2)})


@pytest.mark.parametrize("name", sorted(LIB))
def test_streaming_keeps_the_outputs_exact(name):
    # keeping only the live window of each loop tensor changes no bit of any output
    c = LIB[name].load()
    sz = resolve_sizes(c)
    x = random_inputs(c, sz, np.random.default_rng(3))
    full = evaluate(c, x, sz, with_presence=True, keep="all")
    lean = evaluate(c, x, sz, with_presence=True)
    assert set(lean) == set(c.outputs) | {o + "?" for o in c.outputs}
    for k, v in lean.items():
        assert np.array_equal(v, full[k], equal_nan=True), k


def test_streaming_memory_does_not_grow_with_the_iterates():
    # 1-pass at M = P = 2048 with 256 tiles: every iterate and every step kept would be ~300 MB
    import tracemalloc

    c = LIB["attention-1pass"].load()
    sz = resolve_sizes(c, {"M": 2048, "P": 2048, "E": 16, "F": 16, "M0": 8})
    x = random_inputs(c, sz, np.random.default_rng(0))
    tracemalloc.start()
    evaluate(c, x, sz)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 40e6, peak
