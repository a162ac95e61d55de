"""The cascade language: parsing, printing back, building from Python, and every error."""

import networkx as nx
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from einforge.einsum import (
    DEFAULT_OPERATORS,
    Access,
    Call,
    Cascade,
    CascadeError,
    Einsum,
    FixedPoint,
    RankDecl,
    TensorDecl,
    Var,
    evaluate,
    library,
    load_cascade,
    parse_cascade,
    parse_teaal,
    resolve_sizes,
)

GEMM = """\
ranks K M N
input A[k,m] B[k,n]
Z[m,n] = A[k,m] * B[k,n]
"""


@pytest.mark.parametrize("name", sorted(library()))
def test_library_round_trip(name):
    c = library()[name].load()
    again = parse_cascade(c.text())
    assert again == c
    assert again.text() == c.text()


def test_built_from_python_equals_parsed():
    built = Cascade(
        name="gemm",
        ranks=(RankDecl("K"), RankDecl("M"), RankDecl("N")),
        inputs=(TensorDecl("A", ("K", "M")), TensorDecl("B", ("K", "N"))),
        einsums=(Einsum(Access("Z", (Var("m"), Var("n"))),
                        Call("*", (Access("A", (Var("k"), Var("m"))), Access("B", (Var("k"), Var("n")))))),),
    )
    assert built == parse_cascade("cascade gemm\n" + GEMM)
    assert built.einsums[0].reduce == (("k", "+"),)
    assert parse_cascade(built.text()) == built


def test_ir_is_immutable():
    c = parse_cascade(GEMM)
    with pytest.raises(AttributeError):
        c.name = "x"
    with pytest.raises(AttributeError):
        c.einsums[0].output = None


def test_inferred_partition_and_iterative_rank():
    c = library()["attention-1pass"].load()
    m1 = c.rank("M1")
    assert m1.derived and m1.size.text() == "M/M0"
    assert set(c.iterative_ranks) == {"M1"}
    assert c.tensors["RM"].iterative == 0 and c.tensors["RNV"].iterative == 1
    assert c.tensors["RM"].empty == -np.inf and c.tensors["RD"].empty == 0.0
    assert c.einsum_kind(c.labels.index("RM.init")) == "init"
    assert c.einsum_kind(c.labels.index("RM")) == "update"



    c = library()["attention-1pass"].load()
    g = c.graph
    assert g.edges["LM", "RM"]["kind"] == "stream"
    assert g.edges["RM", "PRM"]["kind"] == "stream"        # current iterate RM[m1+1]
    assert g.edges["RM.init", "PRM"]["kind"] == "carried"  # previous iterate RM[m1]
    assert g.edges["RNV", "AV"]["kind"] == "final"
    assert not nx.is_directed_acyclic_graph(g)             # RD -> SPD -> RD through the iteration
    assert nx.is_directed_acyclic_graph(c.dag())
    assert nx.ancestors(c.dag(), "AV") >= {"Q", "K", "V", "BQK", "RM"}


@pytest.mark.parametrize("name", sorted(library()))
def test_plain_dependency_walks_equal_the_graph(name):
    # the cost model walks dependencies without networkx; the walk must be the dag's, node for node
    c = library()[name].load()
    g = c.dag()
    for n in g.nodes:
        assert sorted(c.successors(n)) == sorted(g.successors(n))
        assert sorted(c.predecessors(n)) == sorted(g.predecessors(n))
        assert c.descendants(n) == nx.descendants(g, n)


def test_reduction_operators_and_order():
    c = parse_cascade("ranks E M P\ninput Q[e,p] K[e,m]\nLM[p] = Q[e,p] * K[e,m] :: max(m)\n")
    # unlisted variables are summed first (inner), listed ones after, in the order written
    assert c.einsums[0].reduce == (("e", "+"), ("m", "max"))
    rng = np.random.default_rng(0)
    q, k = rng.normal(size=(3, 4)), rng.normal(size=(3, 5))
    out = evaluate(c, {"Q": q, "K": k})["LM"]
    np.testing.assert_allclose(out, (k.T @ q).max(axis=0))


def test_constants_sizes_and_user_function():
    table = DEFAULT_OPERATORS.with_function("phi", lambda x: x * x + 1.0)
    c = parse_cascade("ranks E=4 P=3\ninput Q[e,p]\nF[e,p] = phi(Q[e,p]) * (1/sqrt(E)) + -inf * 0 + 2\n",
                      operators=table)
    q = np.arange(12.0).reshape(4, 3)
    out = evaluate(c, {"Q": q})["F"]
    # -inf * 0 is nan in IEEE arithmetic: the executor does what the text says
    assert np.isnan(out).all()
    c = parse_cascade("ranks E=4 P=3\ninput Q[e,p]\nF[e,p] = phi(Q[e,p]) * (1/sqrt(E)) + 2\n", operators=table)
    np.testing.assert_allclose(evaluate(c, {"Q": q})["F"], (q * q + 1) / 2 + 2)


def test_teaal_yaml():
    text = """\
einsum:
  declaration:
    A: [K, M]
    B: [K, N]
    Z: [M, N]
  expressions:
    - Z[m, n] = A[k, m] * B[k, n]
mapping:
  rank-order:
    A: [K, M]
"""
    c = parse_teaal(text, "gemm.yaml")
    assert c.name == "gemm"
    assert [t.name for t in c.inputs] == ["A", "B"]
    assert c.einsums == parse_cascade(GEMM).einsums


# ------------------------------------------------------------------------------------------------
# errors: each names the file, line and column, with a caret, and says what to do
# ------------------------------------------------------------------------------------------------

def _error(text, **kw):
    with pytest.raises(CascadeError) as info:
        parse_cascade(text, "bad.cascade", **kw)
    return info.value


def test_error_unknown_tensor():
    e = _error("ranks K\ninput A[k]\nY = A[k] * B[k]\n")
    assert "unknown tensor B" in e.message
    assert (e.file, e.line, e.col) == ("bad.cascade", 3, 12)
    assert "bad.cascade:3:12" in str(e) and "           ^" in str(e)
    assert "input B" in e.hint


def test_error_used_before_defined():
    e = _error("ranks K\ninput A[k]\nY = X * 2\nX = A[k]\n")
    assert "used before it is defined" in e.message and "line 4" in e.message
    assert (e.line, e.col) == (3, 5)


def test_error_rank_without_size():
    c = parse_cascade("ranks K M\ninput A[k]\nY[m] = A[k]\n".replace("Y[m] = A[k]", "Y = A[k]"), "s.cascade")
    with pytest.raises(CascadeError) as info:
        resolve_sizes(c)
    assert "rank K has no size" in str(info.value) and "s.cascade:1:7" in str(info.value)
    assert "--size K=N" in str(info.value)
    # from arrays the size is known
    assert resolve_sizes(c, {"K": 3, "M": 2})["K"] == 3


def test_error_derived_size_of_unsized_rank():
    c = parse_cascade("ranks M M0=4\ninput K[m]\nB[m1,m0] = K[m1*M0+m0]\n")
    with pytest.raises(CascadeError, match="rank M has no size"):
        resolve_sizes(c)


def test_error_operand_ranks_disagree():
    e = _error("ranks E M P\ninput Q[e,p] K[e,m]\nS[m,p] = Q[m,p] * K[e,m]\n")
    assert "operand ranks disagree" in e.message and "Q is E" in e.message
    assert (e.line, e.col) == (3, 12)
    e = _error("ranks E M P\ninput Q[e,p]\nS[p] = Q[e,p,p]\n")
    assert "Q has 2 rank(s) (E, P) but is indexed with 3" in e.message


def test_error_cycle_that_is_not_iterative():
    e = _error("ranks K\ninput A[k]\nX[k] = X[k] + A[k]\n")
    assert "cycle that is not an iterative rank" in e.message and e.line == 3
    e = _error("ranks K\ninput A[k]\nX[k] = A[k]\nX[k] = X[k] * 2\n")
    assert "cycle that is not an iterative rank" in e.message and e.line == 4
    e = _error("ranks K\ninput A[k]\nX[k] = A[k]\nX[k] = A[k] * 2\n")
    assert "defined twice (first on line 3)" in e.message


def test_error_iterative_rank_without_initialization():
    e = _error("ranks K I=K\ninput A[k]\nS[i+1] = S[i] + A[i]\nstop i >= K\n")
    assert "iterative tensor S has no initialization" in e.message and e.line == 3
    assert "S[i:i=0] = 0" in e.hint


def test_error_iterative_rank_without_stop():
    e = _error("ranks K I=K\ninput A[k]\nS[i:i=0] = 0\nS[i+1] = S[i] + A[i]\n")
    assert "iterative rank I has no stopping condition" in e.message and e.line == 4
    assert "stop i >= I" in e.hint


def test_error_stop_on_non_iterative():
    e = _error("ranks K\ninput A[k]\nY = A[k]\nstop k >= K\n")
    assert "not an iterative rank" in e.message and e.line == 4


def test_error_current_iterate_read_before_update():
    e = _error("ranks K I=K\ninput A[k]\nS[i:i=0] = 0\nT[i] = S[i+1]\nS[i+1] = S[i] + A[i]\nstop i >= K\n")
    assert "read before the Einsum that computes it" in e.message and (e.line, e.col) == (4, 8)


def test_error_unknown_function():
    e = _error("ranks K\ninput A[k]\nY[k] = expp(A[k])\n")
    assert "unknown function 'expp'" in e.message and (e.line, e.col) == (3, 8)
    assert "exp" in e.hint and "with_function" in e.hint


def test_error_function_arity():
    e = _error("ranks K\ninput A[k]\nY[k] = exp(A[k], A[k])\n")
    assert "exp takes 1 operand(s) but is given 2" in e.message


def test_error_partition_does_not_divide():
    c = parse_cascade("ranks M=10 M0=4\ninput K[m]\nB[m1,m0] = K[m1*M0+m0]\n", "p.cascade")
    with pytest.raises(CascadeError) as info:
        resolve_sizes(c)
    assert "M/M0 does not divide: 10 is not a multiple of 4" in str(info.value)
    assert "p.cascade:3" in str(info.value)
    with pytest.raises(CascadeError, match="does not divide"):
        evaluate(c, {"K": np.zeros(10)})


def test_error_unknown_rank_variable():
    e = _error("ranks K\ninput A[k]\nY[j] = A[k]\n")
    assert "unknown rank variable 'j'" in e.message and (e.line, e.col) == (3, 3)


def test_error_bad_reduction():
    e = _error("ranks K\ninput A[k]\nY = A[k] :: exp(k)\n")
    assert "'exp' cannot be used as a reduction" in e.message and (e.line, e.col) == (3, 13)
    e = _error("ranks K M\ninput A[k,m]\nY[m] = A[k,m] :: max(m)\n")
    assert "in the output" in e.message and (e.line, e.col) == (3, 22)


def test_error_syntax_with_caret():
    e = _error("ranks K\ninput A[k]\nY[k] = A[k] * \n")
    assert "expected a value" in e.message and "end of the line" in e.message and e.line == 3
    e = _error("ranks K\ninput A[k]\nY[k] = A[k] $ 2\n")
    assert "unexpected character '$'" in e.message and (e.line, e.col) == (3, 13)
    e = _error("ranks k\n")
    assert "must start with an upper-case letter" in e.message


def test_error_missing_and_misshaped_inputs():
    c = parse_cascade(GEMM)
    with pytest.raises(CascadeError, match="missing input B"):
        evaluate(c, {"A": np.zeros((2, 3))})
    with pytest.raises(CascadeError, match=r"input B has shape \(4, 3\) but its ranks \(K, N\) have sizes \(2, 3\)"):
        evaluate(c, {"A": np.zeros((2, 3)), "B": np.zeros((4, 3))})
    with pytest.raises(CascadeError, match="unknown rank X in sizes"):
        resolve_sizes(c, {"X": 3})


def test_error_teaal_points_into_yaml():
    text = "einsum:\n  declaration:\n    A: [K]\n  expressions:\n    - Y = A[k] * C[k]\n"
    with pytest.raises(CascadeError) as info:
        parse_teaal(text, "spec.yaml")
    e = info.value
    assert "unknown tensor C" in e.message and (e.file, e.line, e.col) == ("spec.yaml", 5, 18)
    assert "- Y = A[k] * C[k]" in str(e)
    with pytest.raises(CascadeError, match="no `einsum:` section"):
        parse_teaal("mapping: {}\n", "spec.yaml")


# ------------------------------------------------------------------------------------------------
# positions as values and real-valued parameters
# ------------------------------------------------------------------------------------------------

def test_positions_are_coordinates_and_work_tiled_or_not():
    whole = parse_cascade("ranks M=12 P=5\ninput S[m,p]\nB[m,p] = S[m,p] - 0.5 * (p - m)\n")
    tiled = parse_cascade("ranks M=12 P=5 M0=4\ninput S[m,p]\nB[m1,m0,p] = S[m1*M0+m0,p] - 0.5 * (p - (m1*M0 + m0))\n")
    s = np.random.default_rng(0).normal(size=(12, 5))
    m, p = np.arange(12)[:, None], np.arange(5)[None, :]
    want = s - 0.5 * (p - m)
    assert np.array_equal(evaluate(whole, {"S": s}, {})["B"], want)
    assert np.array_equal(evaluate(tiled, {"S": s}, {})["B"].reshape(12, 5), want)
    assert "0.5 * (p - m)" in whole.text() and parse_cascade(whole.text()) == whole


def test_error_position_of_another_einsum():
    e = _error("ranks M=4 P=3\ninput S[m,p] T[p]\nB[p] = T[p] * m\n")
    assert "position 'm' is not a rank variable of this Einsum" in e.message and e.line == 3
    assert "index the output or an operand" in e.hint


def test_real_parameters_are_values():
    c = parse_cascade("ranks M=4\nparam CAP=2.5 W=3\ninput S[m]\nB[m] = CAP * tanh(S[m] / CAP)\n")
    assert c.rank("CAP").real and not c.rank("W").real
    s = np.linspace(-4, 4, 4)
    assert np.allclose(evaluate(c, {"S": s}, {"CAP": 1.5})["B"], 1.5 * np.tanh(s / 1.5))
    assert resolve_sizes(c, {})["CAP"] == 2.5
    assert parse_cascade(c.text()) == c and "CAP=2.5" in c.text()
    with pytest.raises(CascadeError, match="parameter CAP must be a finite number"):
        resolve_sizes(c, {"CAP": float("nan")})
    with pytest.raises(CascadeError, match="size of W must be an integer"):
        resolve_sizes(c, {"W": 2.5})


_SIZE_VALUES = [1, 2, 3, 4, 8, 16, 0, -1, 2.0, 2.5, True, 256, float("inf")]


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_sizes_resolved_without_an_error_are_what_the_full_check_gives(data):
    # resolve_sizes answers plain cases from an order of the derived ranks found once per cascade;
    # over every library cascade and sizes of every kind (missing, unknown, derived, real, bad), it
    # gives what the full check gives, or the same error
    from einforge.einsum import _sizes

    c = load_cascade(data.draw(st.sampled_from(sorted(library()))))
    names = [r.name for r in c.ranks] + ["ZZ"]
    sizes = data.draw(st.dictionaries(st.sampled_from(names), st.sampled_from(_SIZE_VALUES), max_size=len(names)))

    def outcome(resolve):
        try:
            got = resolve(c, dict(sizes))
        except CascadeError as e:
            return "error", e.message
        return got if got is None else ("sizes", got, [type(v) for v in got.values()])

    full = outcome(_sizes._resolve_checked)
    fast = outcome(_sizes._resolve_in_order)
    assert fast is None or fast == full
    assert outcome(resolve_sizes) == full


@pytest.mark.parametrize("text,where", [
    ("ranks M=8 P=8\nparam W=1.5\ninput S[m,p]\nB[m,p: p-W < m] = S[m,p]\n", 4),          # a filter
    ("ranks M=8\nparam W=1.5\ninput S[m]\nB[m] = S[m+W]\n", 4),                         # an index
    ("ranks M=8 M0=X\nparam X=0.5\ninput S[m]\nB[m1,m0] = S[m1*M0+m0]\n", 1),            # a size
])
def test_error_real_parameter_where_a_size_is_needed(text, where):
    e = _error(text)
    assert "is a real-valued parameter" in e.message and e.line == where
    assert "give it a whole-number default" in e.hint


def test_error_family_twice():
    e = _error("cascade a\nfamily x\nfamily y\nranks K=2\ninput A[k]\nY = A[k]\n")
    assert "family is already given" in e.message and e.line == 3


# ------------------------------------------------------------------------------------------------
# data-dependent filters
# ------------------------------------------------------------------------------------------------

SEER = """ranks M=8 P=4 M0=2 M1=M/M0
param KEEP=0.5
density BM=KEEP
input S[m,p] BM[m1,p]
B[m1,m0,p: BM[m1,p] != 0] = S[m1*M0+m0,p]
"""


def test_a_filter_on_data_keeps_what_the_data_says():
    c = parse_cascade(SEER)
    s = np.arange(32.0).reshape(8, 4)
    bm = np.array([[1, 0, 1, 0], [0, 0, 1, 1], [1, 1, 1, 1], [0, 0, 0, 0]], float)
    out = evaluate(c, {"S": s, "BM": bm}, {}, with_presence=True)
    keep = np.repeat(bm != 0, 2, axis=0).reshape(4, 2, 4)
    assert np.array_equal(out["B?"], keep)
    assert np.array_equal(out["B"][keep], s.reshape(4, 2, 4)[keep])
    assert parse_cascade(c.text()) == c and "density BM=KEEP" in c.text()


@pytest.mark.parametrize("threshold", [0.5, -0.25, 1.0, 3.0])
def test_a_filter_on_data_compares_real_values_in_any_number_system(threshold):
    """A filter's threshold is a real number: fixed point keeps what float64 keeps (it once
    compared the raw integers, 64 for 0.25, with the real 0.5)."""
    c = parse_cascade(SEER.replace("BM[m1,p] != 0", f"BM[m1,p] > {threshold}"))
    s = np.arange(32.0).reshape(8, 4) / 8
    bm = np.array([[0.25, 0.75, -0.5, 1.0], [2.0, 0.5, 0.0, -0.25], [3.5, 0.125, 1.5, -1], [0, 4, 0.5, 0.25]])
    floats = evaluate(c, {"S": s, "BM": bm}, {}, with_presence=True)
    fixed = evaluate(c, {"S": s, "BM": bm}, {}, FixedPoint(8, 8), with_presence=True)
    assert np.array_equal(fixed["B?"], floats["B?"])
    assert np.array_equal(floats["B?"], np.repeat(bm > threshold, 2, axis=0).reshape(4, 2, 4))


@pytest.mark.parametrize("text,message", [
    (SEER.replace("density BM=KEEP\n", ""), "the filter reads BM: say how much of it a filter keeps"),
    (SEER.replace("BM[m1,p] != 0", "XM[m1,p] != 0"), "the filter reads XM, which is not an input"),
    (SEER.replace("BM[m1,p] != 0", "BM[m1] != 0"), "BM has 2 ranks \\(M1, P\\) but is read with 1 indices"),
    (SEER.replace("density BM=KEEP", "density S2=KEEP"), "density S2: S2 is not an input"),
    (SEER.replace("param KEEP=0.5", "param KEEP=2"), "density BM=KEEP: KEEP is not a real-valued parameter"),
    (SEER.replace("density BM=KEEP", "density BM=1.5"), "density BM=1.5 must be a share in"),
])
def test_error_data_filters_say_what_is_missing(text, message):
    with pytest.raises(CascadeError, match=message):
        parse_cascade(text, "bad.cascade")


def test_blocked_outputs_write_each_block_back_in_place():
    c = LIB_CHUNKED()
    assert c.tensors["AV"].ranks == ("F", "P")
    assert "AV[f,c*Q0+q0]" in c.text().replace(" ", "") and parse_cascade(c.text()) == c


def LIB_CHUNKED():
    return library()["attention-chunked"].load()


@pytest.mark.parametrize("index,message", [
    ("c*Q0+k0", "must be a rank variable"),              # the offset is not of the block's size
    ("q0*Q0+q0", "is not a partition R/Q0 of a rank"),   # the block variable partitions nothing
])
def test_error_blocked_outputs_name_the_fix(index, message):
    text = library()["attention-chunked"].file.read_text().replace("AV[f, c*Q0+q0]", f"AV[f, {index}]")
    with pytest.raises(CascadeError, match=message):
        parse_cascade(text, "bad.cascade")


def test_a_sum_rank_concatenates_tensors():
    c = parse_cascade("ranks E=2 N=3 M=4 J=N+M\ninput KC[e,n] K[e,m]\nKJ[e,j] = KC[e,j] + K[e,j-N]\n")
    kc, k = np.arange(6.0).reshape(2, 3), 10 + np.arange(8.0).reshape(2, 4)
    out = evaluate(c, {"KC": kc, "K": k}, {}, with_presence=True)
    assert np.array_equal(out["KJ"], np.concatenate([kc, k], axis=1)) and out["KJ?"].all()
    # only the first term of the sum may be read with j itself (the others at an offset)
    with pytest.raises(CascadeError, match=r"(?s)rank 1 of K is M, but it is indexed by 'j'.*to concatenate"):
        parse_cascade("ranks E=2 N=3 M=4 J=N+M\ninput KC[e,n] K[e,m]\nKJ[e,j] = KC[e,j] + K[e,j]\n", "bad.cascade")
