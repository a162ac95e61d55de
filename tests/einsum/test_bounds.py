"""Running error bounds: the fixed-point values are the golden model's, and float64 lies within the bounds."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from einforge.einsum import (
    DEFAULT_OPERATORS,
    ErrorBounds,
    FixedPoint,
    evaluate,
    library,
    parse_cascade,
    random_inputs,
    resolve_sizes,
    within_bounds,
)

LIB = library()
FORMATS = [FixedPoint(8, 8), FixedPoint(6, 10), FixedPoint(10, 14), FixedPoint(5, 11), FixedPoint(12, 4)]
# every built-in cascade but those whose parameters do not fit a narrow format (RoPE's BASE=10000,
# Welford's running counts): there the bound is honestly infinite, tested below
CASCADES = sorted(n for n in LIB if n not in ("rope", "layernorm-welford"))


def _run(cascade, q, seed, scale):
    sizes = {r.name: 4 if r.name in ("E", "F", "D") else 8 for r in cascade.ranks
             if not r.derived and r.size is None}
    env = resolve_sizes(cascade, sizes)
    inputs = random_inputs(cascade, env, np.random.default_rng(seed), scale)
    inputs = {k: q.to_float(q.from_float(v)) for k, v in inputs.items()}      # representable inputs
    bounds = ErrorBounds(q)
    with np.errstate(all="ignore"):
        bounded = evaluate(cascade, inputs, sizes, bounds, with_presence=True, keep="all")
        golden = evaluate(cascade, inputs, sizes, q, with_presence=True, keep="all")
        exact = evaluate(cascade, inputs, sizes, keep="all")
    return bounds, bounded, golden, exact


@settings(max_examples=60, deadline=None)
@given(name=st.sampled_from(CASCADES), q=st.sampled_from(FORMATS), seed=st.integers(0, 2**16),
       scale=st.sampled_from([0.25, 0.5, 1.0, 2.0]))
def test_float64_lies_within_the_bound_of_every_computed_value(name, q, seed, scale):
    """Every tensor of every built-in cascade, every format, inputs of any scale (saturating ones
    included: saturation is part of the local error)."""
    bounds, bounded, golden, exact = _run(LIB[name].load(), q, seed, scale)
    for t, ref in exact.items():
        # the bounded run computes exactly the golden model's bits and presence
        assert np.array_equal(bounds.raw(bounded[t]), golden[t]), t
        assert np.array_equal(bounded[t + "?"], golden[t + "?"]), t
        ok, share = within_bounds(bounds.raw(bounded[t]), bounds.bound(bounded[t]), ref, q.one, bounded[t + "?"])
        assert ok, (t, share)


def test_the_bounds_are_tight_enough_to_mean_something():
    """On FlashAttention-style attention at Q8.8 the errors use a fair share of their bound (a
    bound a hundred times the error would pass anything): the largest share is above 1/10, and the
    bound stays within a few dozen LSBs."""
    q = FixedPoint(8, 8)
    for name in ("attention-1pass", "attention-causal", "attention-sigmoid-tiled", "softmax"):
        bounds, bounded, _, exact = _run(LIB[name].load(), q, 3, 0.5)
        out = LIB[name].load().outputs[0]
        present = bounded[out + "?"]
        ok, share = within_bounds(bounds.raw(bounded[out]), bounds.bound(bounded[out]), exact[out], q.one, present)
        assert ok and share > 0.1, (name, share)
        assert np.max(bounds.bound(bounded[out])[present]) < 40, name


def test_exact_arithmetic_has_a_zero_bound_and_one_rounding_half_an_lsb():
    q = FixedPoint(8, 8)
    b = ErrorBounds(q)
    c = parse_cascade("ranks K M\ninput A[k,m]\nZ[m] = A[k,m] * A[k,m]\nS[m] = A[k,m]\n")
    a = np.array([[0.5, 0.25], [1 / 256, 3 / 256]])
    out = evaluate(c, {"A": a}, numbers=b)
    assert np.all(b.bound(out["S"]) == 0)                   # sums of representable values: exact
    # exact operands: the one rounding of the sum of products is the whole error, known exactly
    assert np.allclose(b.bound(out["Z"]), np.abs(b.raw(out["Z"]) - (a ** 2).sum(0) * 256), rtol=0, atol=1e-12)
    assert np.all(b.bound(out["Z"]) <= 0.5)


def test_a_parameter_the_format_cannot_hold_has_no_finite_bound():
    """RoPE's BASE=10000 saturates in Q8.8: log(BASE) is wrong, and the bound says so (infinite)
    instead of certifying the wrong angles."""
    q = FixedPoint(8, 8)
    bounds, bounded, _, exact = _run(LIB["rope"].load(), q, 0, 1.0)
    assert not np.all(np.isfinite(bounds.bound(bounded["YE"])))
    assert np.max(np.abs(bounds.raw(bounded["YE"]) / q.one - exact["YE"])) > 1.0   # and it is wrong


def test_within_bounds_fails_on_one_lsb_beyond_a_tight_bound():
    q = FixedPoint(8, 8)
    got, bound, ref = np.array([100, 200]), np.array([0.5, 0.5]), np.array([100.25, 200.0]) / q.one
    assert within_bounds(got, bound, ref, q.one) == (True, 0.5)
    ok, share = within_bounds(got + np.array([0, 1]), bound, ref, q.one)
    assert not ok and share == 2.0
    # an absent lane is not compared; an error against a zero bound is an infinite share
    assert within_bounds(got + np.array([0, 1]), bound, ref, q.one, np.array([True, False]))[0]
    assert within_bounds(got + 1, np.zeros(2), ref, q.one)[1] == np.inf


@pytest.mark.parametrize("name", [op.name for op in DEFAULT_OPERATORS.ops if op.arity == 1 and op.slope])
@settings(max_examples=40, deadline=None)
@given(lo=st.floats(-8, 8), width=st.floats(0, 4), t=st.floats(0, 1), u=st.floats(0, 1))
def test_each_slope_bounds_its_operator_over_the_interval(name, lo, width, t, u):
    """|f(x) - f(y)| <= slope(lo, hi) |x - y| for x, y in [lo, hi]: the fact error bounds pass through."""
    op = DEFAULT_OPERATORS[name]
    hi = lo + width
    x, y = lo + t * width, lo + u * width
    with np.errstate(all="ignore"):
        fx, fy, s = float(op.fn(np.float64(x))), float(op.fn(np.float64(y))), float(op.slope(lo, hi))
    if np.isfinite(fx) and np.isfinite(fy) and x != y:
        assert abs(fx - fy) <= s * abs(x - y) * (1 + 1e-9) + 1e-12
