"""Pass analysis against the paper's worked examples (research notes 2.4 and 3)."""

import json

import networkx as nx
import numpy as np
import pytest
import sympy
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from einforge.cli import main
from einforge.einsum import (
    CascadeError,
    analyze,
    check_equivalent,
    defer_division,
    evaluate,
    host_layouts,
    library,
    parse_cascade,
    passes,
    running_max,
    subcascade,
)

LIB = library()

# Expected passes over the sequence rank M (or K for the toy cascades), with the reason.
EXPECTED = {
    # Cascade 1: Z re-reads A along K after Y (a K-summary) completes -> 2
    "cascade1": {"K": 2},
    # Cascade 2: X and Y both finish in pass 1; Z does not traverse K -> 1
    "cascade2": {"K": 1},
    # Cascade 3: RY/RZ iterates are loop-carried; Z reads the final iterate without traversing K -> 1
    "cascade3": {"K": 1, "I": 1},
    # Cascade 4: SN needs GM (pass 2), A needs SD (pass 3) -> 3
    "attention-3pass": {"M": 3},
    "attention-mha": {"M": 3},
    # deferral: SN, SD, SNV in pass 2, AV does not traverse M -> 2
    "attention-3pass-deferred": {"M": 2},
    # naive: A needs SD, a barrier after pass 1 -> 2; with deferral AV leaves M -> 1
    "attention-naive": {"M": 2},
    "attention-naive-deferred": {"M": 1},
    # local max per tile then global max: CN/A re-read SLN after GM and SD -> 2 over M (tiles)
    "attention-2pass": {"M": 2, "M1": 2, "M0": 3},
    # per-tile summaries LM, SLD, SLNV re-read after the global max -> still 2 over M1
    "attention-2pass-deferred": {"M": 2, "M1": 2, "M0": 2},
    # running max: every iterate is loop-carried, AV reads the final one -> 1 over M1;
    # SLN re-reads each BQK tile after its local max LM -> 2 over each M0 tile
    "attention-1pass": {"M": 1, "M1": 1, "M0": 2},
    "attention-fa1": {"M": 1, "M1": 1, "M0": 2},
    "attention-causal": {"M": 1, "M1": 1, "M0": 2},
    "attention-window": {"M": 1, "M1": 1, "M0": 2},
    "attention-cross": {"M": 1, "M1": 1, "M0": 2},
    "attention-gqa": {"M": 1, "M1": 1, "M0": 2},
    "attention-gqa-causal": {"M": 1, "M1": 1, "M0": 2},
    # one product: reads each operand once -> 1 everywhere
    "gemm": {"M": 1, "K": 1, "N": 1},
    "bmm": {"B": 1, "M": 1, "K": 1, "N": 1},
    "attention-mqa": {"M": 1, "M1": 1, "M0": 2},
    "attention-decode": {"M": 1, "M1": 1, "M0": 2},
    # sigmoid: no reduction over M is consumed along M -> 1
    "attention-sigmoid": {"M": 1},
    # tiled sigmoid: S is element-wise, SV sums each tile once, RNV is loop-carried -> 1 everywhere
    "attention-sigmoid-tiled": {"M": 1, "M1": 1, "M0": 1},
    # linear: KV and Z (M-summaries) are read by Einsums over P, not M -> 1
    "attention-linear": {"M": 1},
    # hedgehog: 1 over M; the feature rank D takes 3 (max, normalizer, use), register-sized
    "attention-hedgehog": {"M": 1, "D": 3},
    # GEMMs over tokens T: 1 pass. Over the model width D: H1 sums Z over d, and H2 writes along d
    # again from that summary -> 2 passes over D (fresh data: nothing is re-read, no footprint)
    "encoder-linear": {"T": 1, "D": 2, "A": 1, "S": 1},
    # softmax alone with the online normalizer: the division must wait for the final denominator -> 2
    "softmax-online": {"M": 2, "M1": 2, "M0": 2},
    # the textbook softmax: max, then exp and sum, then divide -> 3
    "softmax": {"M": 3},
    # the zoo. A bias, a cap or a second filtered key set is element-wise on the logit tile: the
    # running max keeps one pass over M, two over each M0 tile, as attention-1pass
    "attention-alibi": {"M": 1, "M1": 1, "M0": 2},
    "attention-softcap": {"M": 1, "M1": 1, "M0": 2},
    "attention-sinks": {"M": 1, "M1": 1, "M0": 2},
    "attention-seer": {"M": 1, "M1": 1, "M0": 2},
    # chunked: one pass over the sequence; the softmax's two passes run over one chunk's keys (K0)
    "attention-chunked": {"P": 1, "C": 1, "Q0": 1, "K0": 2},
    "attention-mla": {"M": 1, "M1": 1, "M0": 2},
    "attention-mla-decode": {"M": 1, "M1": 1, "M0": 2},
    # Linformer: the projections are M-summaries read only over R -> 1 over M; the softmax over the
    # projected rank R needs its max, then its sum -> 3 over R
    "attention-linformer": {"M": 1, "R": 3},
    # channel attention: QK sums the tokens T away, AV traverses T again -> 2; the softmax over the
    # channels D -> 3
    "attention-channel": {"T": 2, "D": 3},
    # Aaren: every output reads the current iterates of the scan -> 1
    "attention-aaren": {"M": 1},
    # the untiled hybrids: the exponentials need the max over M first -> 2 (divisions deferred)
    "attention-lolcats": {"M": 2},
    "attention-mossformer": {"M": 2},
    # CCA: pooling and the local logits read M once; the joint softmax runs over the concatenated
    # key rank J = N + M: its max, then the exponentials and sums -> 2 over J
    "attention-cca": {"M": 1, "N": 1, "J": 2},
    # normalization: RMSNorm's sum of squares, then the scaling -> 2; LayerNorm's mean, variance,
    # normalization -> 3; Welford's running mean and deviations in one pass, then normalize -> 2
    "rmsnorm": {"D": 2},
    "layernorm": {"D": 3},
    "layernorm-welford": {"D": 2},
    # element-wise
    "gelu": {"D": 1},
    "silu": {"D": 1},
    "residual": {"D": 1},
    "rope": {"I": 1, "P": 1, "H": 1},
    # SwiGLU: the projections sum D away and the down projection writes D again -> 2 (fresh data, no
    # footprint, as encoder-linear); F is produced and consumed element by element -> 1
    "ffn-swiglu": {"D": 2, "F": 1},
}


def test_every_builtin_has_an_expected_pass_count():
    assert set(EXPECTED) == set(LIB)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_expected_passes(name):
    got = analyze(LIB[name].load()).passes
    for rank, n in EXPECTED[name].items():
        assert got[rank] == n, (rank, got)


def test_cascade4_details():
    r = passes(LIB["attention-3pass"].load(), "M")
    assert r.einsum_pass == {"QK": 1, "GM": 1, "SN": 2, "SD": 2, "A": 3, "AV": 3}
    assert r.multi_pass_tensors == {"QK": (1, 2), "SN": (2, 3)}
    assert r.barriers == ("GM", "SD")
    assert r.fusion_groups == (("QK", "GM"), ("SN", "SD"), ("A", "AV"))
    assert r.reads["V"] == (3,)      # fresh data read late costs nothing


def test_cascade1_rereads_a():
    r = passes(LIB["cascade1"].load(), "K")
    assert r.multi_pass_tensors == {"A": (1, 2)} and r.barriers == ("Y",)


def test_cascade5_by_subrank():
    c = LIB["attention-1pass"].load()
    m0 = passes(c, "M0")
    assert m0.multi_pass_tensors == {"BQK": (1, 2)}        # the tile stays in PE registers
    assert m0.einsum_pass["SLN"] == 2 and m0.barriers == ("LM",)
    m1 = passes(c, "M1")
    assert m1.multi_pass_tensors == {} and "AV" not in m1.einsum_pass
    assert set(m1.einsum_pass) >= {"RM", "PRM", "RD", "RNV", "SLNV"}


def test_footprint_of_1pass_is_independent_of_m_and_3pass_grows_with_m():
    one = analyze(LIB["attention-1pass"].load())
    three = analyze(LIB["attention-3pass"].load())
    M = sympy.Symbol("M", positive=True, integer=True)
    for r in one.reports.values():
        assert M not in r.footprint.free_symbols
    f3 = three.reports["M"].footprint
    assert M in f3.free_symbols
    s = sympy.Symbol("s", positive=True)
    assert sympy.simplify(f3 - M * s) == 0                 # one M-fiber per query row in flight
    assert three.reports["M"].row_ranks == ("P",)


def test_two_pass_footprint_is_per_tile_summaries():
    r = passes(LIB["attention-2pass-deferred"].load(), "M")
    syms = {n: sympy.Symbol(n, positive=True, integer=True) for n in ("M", "M0", "F")}
    s = sympy.Symbol("s", positive=True)
    assert sympy.simplify(r.footprint - syms["M"] / syms["M0"] * (syms["F"] + 2) * s) == 0


def test_traffic_formula_of_3pass_matches_the_unfused_closed_form():
    # research notes 6.3: T = s*(PE + ME + MF + PF + 4MP) with nothing on chip
    r = passes(LIB["attention-3pass"].load(), "M")
    n = {k: sympy.Symbol(k, positive=True, integer=True) for k in "EFMP"}
    s, C = sympy.Symbol("s", positive=True), sympy.Symbol("capacity", positive=True)
    spilled = r.traffic.subs(C, 0)
    expect = s * (n["P"] * n["E"] + n["M"] * n["E"] + n["M"] * n["F"] + n["P"] * n["F"] + 4 * n["M"] * n["P"])
    assert sympy.simplify(spilled - expect) == 0
    # with a buffer holding the whole live footprint, only compulsory traffic remains
    fits = r.traffic.subs(C, r.footprint_total)
    assert sympy.simplify(fits - expect + 4 * n["M"] * n["P"] * s) == 0
    vals = {n["E"]: 64, n["F"]: 64, n["M"]: 1024, n["P"]: 1024, s: 2}
    assert float(r.traffic.subs(vals).subs(C, 1 << 20)) < float(spilled.subs(vals))


def test_rewrites_3pass_to_2pass_to_1pass():
    c3 = LIB["attention-3pass"].load()
    c2 = defer_division(c3)
    assert passes(c2, "M").passes == 2
    c1 = running_max(c2, "M")
    a = analyze(c1)
    assert a.passes["M"] == 1 and a.passes["M1"] == 1 and a.passes["M0"] == 2
    assert "M1" in c1.iterative_ranks
    # a rewritten cascade says so: it is no longer the 3-pass algorithm
    assert (c2.name, c1.name) == ("attention-3pass-deferred", "attention-3pass-deferred-running-max")
    assert "running max over tiles of M" in c1.description
    # computes the same as Cascade 4 and as the hand-written Cascade 5
    assert check_equivalent(c3, c1, {"M": 24, "M0": 4}) <= 1e-9
    assert check_equivalent(LIB["attention-1pass"].load(), c1, {"M": 24, "M0": 4, "E": 3, "F": 2, "P": 5}) <= 1e-9
    # and prints back to itself
    assert parse_cascade(c1.text()) == c1


def test_rewrite_naive_and_mha():
    n = defer_division(LIB["attention-naive"].load())
    assert passes(n, "M").passes == 1
    mha = running_max(defer_division(LIB["attention-mha"].load()), "M", tile_size=4)
    assert passes(mha, "M").passes == 1
    assert check_equivalent(LIB["attention-mha"].load(), mha) <= 1e-9


def test_rewrite_errors():
    with pytest.raises(CascadeError, match="no division to defer"):
        defer_division(LIB["attention-1pass"].load())
    with pytest.raises(CascadeError, match="defer divisions first"):
        running_max(LIB["attention-3pass"].load(), "M")
    with pytest.raises(CascadeError, match="no max over M"):
        running_max(LIB["attention-naive"].load(), "M")
    with pytest.raises(CascadeError, match="no rank X"):
        passes(LIB["attention-1pass"].load(), "X")


def test_analyze_json_contract_and_plot(tmp_path):
    png = tmp_path / "g.png"
    r = CliRunner().invoke(main, ["analyze", "attention-1pass", "--json", "--plot", str(png)])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert out["cascade"] == "attention-1pass"
    assert out["passes"]["M1"] == 1 and out["passes"]["M0"] == 2
    assert out["einsum_pass"]["M0"]["SLN"] == 2
    assert out["multi_pass_tensors"]["M0"] == {"BQK": [1, 2]}
    assert out["fusion_groups"]["M"][0][:3] == ["BK", "BV", "BQK"]
    assert out["footprint"]["M1"] == "0" and out["footprint"]["M0"] == "M0*s"
    assert set(out) >= {"cascade", "passes", "einsum_pass", "multi_pass_tensors", "fusion_groups",
                        "footprint", "traffic"}
    assert png.stat().st_size > 10_000


def test_rewrite_command_round_trip(tmp_path):
    out = tmp_path / "one.cascade"
    r = CliRunner().invoke(main, ["rewrite", "attention-3pass", "--defer-division", "--running-max", "M",
                                  "-o", str(out)])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(main, ["analyze", str(out), "--rank", "M", "--json"])
    assert json.loads(r.output)["passes"] == {"M": 1}
    r = CliRunner().invoke(main, ["rewrite", "attention-3pass"])
    assert r.exit_code == 2


def test_graph_is_dag_without_carried_edges():
    for e in LIB.values():
        assert nx.is_directed_acyclic_graph(e.load().dag())


def _tie(c, rank, to):
    """``c`` with ``rank`` declared equal in size to ``to`` (``P=M``)."""
    from dataclasses import replace

    from einforge.einsum import RankDecl, Sym

    ranks = tuple(RankDecl(r.name, Sym(to), r.param, r.span) if r.name == rank else r for r in c.ranks)
    return replace(c, ranks=ranks, workload=tuple((r, e) for r, e in c.workload if r != rank))


PAIRS = [(n, a, b) for n in sorted(LIB) for a in LIB[n].load().rank_names for b in LIB[n].load().rank_names
         if a != b and not LIB[n].load().rank(a).derived and not LIB[n].load().rank(b).derived
         and a not in LIB[n].load().iterative_ranks and b not in LIB[n].load().iterative_ranks]


@pytest.mark.parametrize("name,rank,to", PAIRS[::7])
def test_ranks_declared_equal_in_size_stay_distinct(name, rank, to):
    # self-attention with queries and keys from one sequence declares P=M; DaViT's channel
    # attention ties its channel ranks. Equal sizes do not make two ranks one fiber.
    c = LIB[name].load()
    tied = _tie(c, rank, to)
    assert analyze(tied).passes == analyze(c).passes


def test_self_attention_from_one_sequence_makes_three_passes_over_the_keys():
    c = parse_cascade(
        "ranks D=8 E=8 F=8 M=32 P=M\ninput X[d,m] WQ[d,e] WK[d,e] WV[d,f]\n"
        "QP[e,p] = X[d,p] * WQ[d,e]\nKP[e,m] = X[d,m] * WK[d,e]\nVP[f,m] = X[d,m] * WV[d,f]\n"
        "QK[m,p] = QP[e,p] * KP[e,m]\nGM[p] = QK[m,p] :: max(m)\nSN[m,p] = exp(QK[m,p] - GM[p])\n"
        "SD[p] = SN[m,p]\nA[m,p] = SN[m,p] / SD[p]\nAV[f,p] = A[m,p] * VP[f,m]\n")
    assert passes(c, "M").passes == 3


def _running_max_candidates():
    out = []
    for name in sorted(LIB):
        c = LIB[name].load()
        try:
            c = defer_division(c)
        except CascadeError:
            pass
        out += [(name, c, r.name) for r in c.ranks if not r.derived and not r.param and r.name not in c.iterative_ranks]
    return out


@pytest.mark.parametrize("name,cascade,rank", _running_max_candidates(), ids=lambda x: x if isinstance(x, str) else "")
def test_running_max_over_any_rank_is_equivalent_or_refused_for_a_reason(name, cascade, rank):
    """Over every rank of every built-in cascade: the rewrite checks itself equivalent, or refuses
    because the cascade has no such max or uses it otherwise. It once left a tile rank of a rank
    that is itself a tile (chunked attention's K0 in c*K0+k0) without a size."""
    try:
        rewritten = running_max(cascade, rank, tile_size=2)
    except CascadeError as exc:
        assert "no size" not in str(exc) and "declare it" not in str(exc), str(exc)
        return
    assert parse_cascade(rewritten.text()) == rewritten
    assert f"{rank}1" in rewritten.iterative_ranks and rewritten.rank(f"{rank}1").derived


def test_a_hybrids_linear_sums_run_alongside_and_the_max_is_read_after_the_loop():
    """LoLCATs: the window's softmax sums are rescaled, the linear-attention sums outside the window
    (per query, no exponential of the max) run unscaled next to them, and exp(-max) after the loop
    reads the running max's last iterate: one pass over the keys, equivalent (checked inside)."""
    lc = running_max(LIB["attention-lolcats"].load(), "M", tile_size=4)
    assert passes(lc, "M").passes == 1
    text = lc.text()
    assert "RD2[m1+1,p] = RD2[m1,p] + LLD[m1,p]" in text and "GM[p] = RM[M1,p]" in text
    # a sum without the max's coordinates (MossFormer's KV, the same for every query) stays as it was
    mf = running_max(LIB["attention-mossformer"].load(), "M", tile_size=4)
    assert "KV[e,f] = FK[e,m1,m0] * V[f,m1*M0+m0]" in mf.text() and "KV" not in {
        t for t, info in mf.tensors.items() if info.iterative is not None}


def test_chunked_attention_gets_a_running_max_within_its_chunks():
    c = running_max(LIB["attention-chunked"].load(), "K0", tile_size=4)
    assert check_equivalent(LIB["attention-chunked"].load(), c) <= 1e-9
    assert analyze(c).passes["K01"] == 1


@settings(max_examples=25, deadline=None)
@given(chunk=st.sampled_from([2, 4, 8]), chunks=st.integers(1, 5), e=st.integers(1, 4), seed=st.integers(0, 999))
def test_host_layouts_keep_the_arithmetic_of_chunked_attention(chunk, chunks, e, seed):
    """The host gathers the chunks (QC[e,c,q0] = Q[e, c*Q0+q0]) and scatters the blocked output:
    on the chunks of the same inputs the rewritten cascade computes the same numbers, any chunk
    size and count."""
    c = LIB["attention-chunked"].load()
    h = host_layouts(c)
    P = chunk * chunks
    sizes = {"P": P, "Q0": chunk, "K0": chunk, "E": e, "F": e}
    rng = np.random.default_rng(seed)
    q, k, v = (rng.normal(size=(e, P)) for _ in range(3))
    want = evaluate(c, {"Q": q, "K": k, "V": v}, sizes)["AV"]
    gathered = {"QC": q.reshape(e, chunks, chunk), "KC": k.reshape(e, chunks, chunk), "VC": v.reshape(e, chunks, chunk)}
    got = evaluate(h, gathered, sizes)["AV"]
    assert got.shape == (e, chunks, chunk)
    assert np.array_equal(got.reshape(e, P), want)
    # and a running max within each chunk keeps it (checked against the chunk-laid-out cascade)
    assert running_max(h, "K0", tile_size=max(1, chunk // 2)).iterative_ranks


def test_host_layouts_refuse_a_cascade_with_nothing_to_move():
    with pytest.raises(CascadeError, match="nothing for the host"):
        host_layouts(LIB["attention-naive"].load())


def _split_points():
    out = []
    for name in sorted(LIB):
        c = LIB[name].load()
        cuts = [t for t, info in c.tensors.items()
                if not info.is_input and info.iterative is None and t not in c.outputs]
        out += [(name, t) for t in cuts[:: max(1, len(cuts) // 3)]]
    return out


@pytest.mark.parametrize("name,cut", _split_points())
def test_two_stages_compose_to_the_whole_cascade(name, cut):
    """Any cascade cut at any non-iterative intermediate: either the stage up to it and the stage
    from it (with the original inputs it still needs) compute the whole cascade's outputs, or the
    cut is refused for a reason; a cut with absent coordinates is never taken."""
    from einforge.einsum import random_inputs, resolve_sizes

    c = LIB[name].load()
    sizes = resolve_sizes(c, {})
    x = random_inputs(c, sizes, np.random.default_rng(1), 0.5)
    whole = evaluate(c, x, {}, keep="all", with_presence=True)
    later = [t.name for t in c.inputs] + [cut]
    try:
        second = subcascade(c, list(c.outputs), later)
    except CascadeError as exc:
        assert "absent coordinates" in str(exc) or "inside the loop" in str(exc), str(exc)
        return
    assert whole[cut + "?"].all()
    first = subcascade(c, [cut], [t.name for t in c.inputs])
    mid = evaluate(first, x, {})[cut]
    np.testing.assert_allclose(mid, whole[cut], rtol=1e-12, atol=1e-12)
    got = evaluate(second, {**x, cut: mid}, {})
    for o in c.outputs:
        np.testing.assert_allclose(got[o], whole[o], rtol=1e-12, atol=1e-12, err_msg=o)
    assert parse_cascade(second.text()) == second


def test_a_stage_cannot_start_inside_a_loop_or_from_a_filtered_tensor():
    one = LIB["attention-1pass"].load()
    with pytest.raises(CascadeError, match="inside the loop over m1"):
        subcascade(one, ["AV"], ["Q", "BV", "SPNV", "SLNV", "RD"])
    masked = parse_cascade("ranks K=4 M=4\ninput A[k,m]\nB[k,m: k <= m] = A[k,m]\nZ[m] = B[k,m]\n")
    with pytest.raises(CascadeError, match="absent coordinates"):
        subcascade(masked, ["Z"], ["B"])


def test_a_stage_must_be_given_what_it_reads():
    mla = LIB["attention-mla"].load()
    with pytest.raises(CascadeError, match="CKV"):
        subcascade(mla, ["OC"], ["QC"])
    with pytest.raises(CascadeError, match="no tensor XX"):
        subcascade(mla, ["XX"], ["QC"])
