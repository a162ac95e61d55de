"""The share of an iteration box a filter keeps: counted exactly along one variable when every
comparison is affine in it, checked against brute-force enumeration of the whole box."""

import itertools

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from einforge.arch._context import _static_density
from einforge.einsum._ir import BinOp, Compare, Num, Sym, Var

VARS = ("a", "b", "c")


def _term(coef, name):
    return BinOp("*", Num(coef), Var(name)) if coef != 1 else Var(name)


@st.composite
def _filter(draw):
    """``sum coef_i * v_i + k  (op)  S * v_j``: affine, a size symbol among the coefficients."""
    names = draw(st.lists(st.sampled_from(VARS), min_size=1, max_size=2, unique=True))
    left = _term(draw(st.integers(1, 3)), names[0])
    if len(names) > 1:
        left = BinOp(draw(st.sampled_from("+-")), left, _term(draw(st.integers(1, 3)), names[1]))
    left = BinOp("+", left, Num(draw(st.integers(-20, 20))))
    right = BinOp("*", Sym("S"), Var(draw(st.sampled_from(VARS))))
    return Compare(left, draw(st.sampled_from(["<", "<=", ">", ">="])), right)


@settings(max_examples=200, deadline=None)
@given(filters=st.lists(_filter(), min_size=1, max_size=3),
       sizes=st.tuples(st.integers(1, 12), st.integers(1, 12), st.integers(1, 150)), s=st.integers(0, 3))
def test_exact_counting_equals_enumeration(filters, sizes, s):
    # every variable up to 64 values is sampled at every value, so both ways are exact: they must agree
    vsize = dict(zip(VARS, sizes))
    env = {"S": s}
    used = sorted({v for f in filters for v in f.variables()})
    grid = np.meshgrid(*[np.arange(vsize[v]) for v in used], indexing="ij")
    env.update(zip(used, grid))
    mask = np.ones(grid[0].shape, bool)
    for f in filters:
        mask &= np.broadcast_to(f.evaluate(env), mask.shape)
    expected = float(mask.mean())
    assert abs(_static_density(tuple(filters), vsize, {"S": s}) - expected) < 1e-12


def test_a_causal_mask_is_counted_exactly_at_any_length():
    # m <= p over M x P keys and queries: (P+1)/2 keys a query on average when M == P, i.e. (n+1)/(2n)
    m, p = Var("m"), Var("p")
    for n in (64, 1000, 4096, 65536):
        got = _static_density((Compare(m, "<=", p),), {"m": n, "p": n}, {})
        assert abs(got - (n + 1) / (2 * n)) < 1e-12, n


def test_filters_that_are_not_affine_are_sampled():
    # m // 4 == p // 4 (a block diagonal): no exact variable, the regular grid samples it
    m, p = Var("m"), Var("p")
    f = Compare(BinOp("//", m, Num(4)), "==", BinOp("//", p, Num(4)))
    got = _static_density((f,), {"m": 32, "p": 32}, {})
    assert got == sum(i // 4 == j // 4 for i, j in itertools.product(range(32), repeat=2)) / 32**2


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(st.tuples(st.integers(-3, 12), st.integers(-3, 12)), min_size=4, max_size=4),
                min_size=1, max_size=3))
def test_union_of_step_intervals_counts_each_step_once(spans):
    # per block (4 of them), the steps 0..9 that some (first, last) interval covers
    from einforge.arch._context import _union_count

    arrays = [(np.array([max(0, a) for a, _ in s], float), np.array([min(9, b) for _, b in s], float)) for s in spans]
    got = _union_count(arrays)
    for k in range(4):
        covered = {x for first, last in arrays for x in range(int(first[k]), int(last[k]) + 1)}
        assert got[k] == len(covered)
