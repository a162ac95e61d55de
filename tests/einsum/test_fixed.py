"""Fixed-point arithmetic: the definitions the RTL implements, and accuracy bounds derived from them."""

import math

import numpy as np
import pytest

from einforge.einsum import DEFAULT_OPERATORS, FixedPoint

OPS = DEFAULT_OPERATORS
# formats whose exp range is wide enough that a saturated exponent rounds to 0 (2**(I-1) >= F + 2)
FORMATS = [FixedPoint(8, 8), FixedPoint(6, 10), FixedPoint(5, 11), FixedPoint(12, 4), FixedPoint(8, 16)]


def _all_values(q, limit=1 << 17):
    step = max(1, (q.hi - q.lo) // limit)
    return np.arange(q.lo, q.hi + 1, step, dtype=np.int64)


def test_add_saturates_and_mul_rounds_half_up():
    q = FixedPoint(8, 8)
    assert int(q.map(OPS["+"], q.hi, 1)) == q.hi
    assert int(q.map(OPS["-"], q.lo, 1)) == q.lo
    assert int(q.map(OPS["neg"], q.lo)) == q.hi          # -(-128) does not fit: saturates
    # 1 LSB * 0.5 = half an LSB: rounds up to 1; -half an LSB rounds up to 0
    assert int(q.mul(1, 128)) == 1 and int(q.mul(-1, 128)) == 0
    assert int(q.mul(q.hi, q.hi)) == q.hi


def test_division_truncates_toward_zero_and_saturates_on_zero():
    q = FixedPoint(8, 8)
    one = q.one
    assert int(q.div(one, 3 * one)) == 85                 # 256/3 = 85.33 -> 85
    assert int(q.div(-one, 3 * one)) == -85               # toward zero, not floor
    assert int(q.div(5, 0)) == q.hi and int(q.div(-5, 0)) == q.lo


def _exp_bound(q, x):
    """|exp_q(x) - e**x| from the datapath's steps (first order):

    * log2(e) quantized and x*log2(e) rounded: t off by <= 2**-F (|x| + 1) / 2, a relative error
      of ln 2 times that in 2**t;
    * degree-5 Taylor polynomial of 2**f on [0, 1): remainder <= 2 (ln 2)**6 / 6! relative;
    * six quantized coefficients and five rounded Horner steps with f < 1: <= 5.5 LSB on p >= 1;
    * the final shift rounds: half an LSB absolute.
    """
    lsb = 2.0 ** -q.frac_bits
    rel = math.log(2) * lsb * (np.abs(x) + 1) / 2 + 2 * math.log(2) ** 6 / 720 + 5.5 * lsb
    return np.exp(x) * rel + lsb / 2


@pytest.mark.parametrize("q", FORMATS, ids=lambda q: q.describe())
def test_exp_of_non_positive_arguments_within_its_derived_bound(q):
    # softmax and sigmoid only ever take exp of x <= 0
    x = _all_values(q)
    x = x[x <= 0]
    xf = q.to_float(x)
    err = np.abs(q.to_float(q.exp(x)) - np.exp(xf))
    assert np.all(err <= _exp_bound(q, xf) * 1.001)


def test_exp_of_large_arguments_saturates_instead_of_wrapping():
    q = FixedPoint(8, 8)
    x = q.from_float(np.array([5.0, 40.0, 60.0, 88.0, 127.0]))
    assert np.all(q.exp(x) == q.hi)


@pytest.mark.parametrize("q", FORMATS, ids=lambda q: q.describe())
def test_sigmoid_is_accurate_over_the_whole_range(q):
    """sigmoid(x) = exp(x - max(x, 0)) / (1 + exp(min(x, -x))): both exponents are <= 0, so the
    numerator n <= 1 and the denominator d is in [1, 2]. With exp errors en, ed (bound above) and a
    truncating division (< 1 LSB), |error| <= en + ed + 1 LSB since dn/d <= en and n ed / d**2 <= ed."""
    x = _all_values(q)
    xf = q.to_float(x)
    with np.errstate(over="ignore"):                 # e**-x overflows to inf: sigmoid 0, as it should
        ref = 1.0 / (1.0 + np.exp(-xf))
    got = q.to_float(q.map(OPS["sigmoid"], x))
    a = -np.abs(xf)
    bound = _exp_bound(q, np.minimum(xf, 0.0)) + _exp_bound(q, a) + 2.0 ** -q.frac_bits
    assert np.all(np.abs(got - ref) <= bound * 1.001)
    # far from 0 the textbook 1/(1+exp(-x)) would return 1/max once exp(-x) saturates; this form
    # returns 0 as the exact value rounds to
    assert got[0] == 0.0


def test_sigmoid_of_an_absent_value_is_absent():
    from einforge.einsum import evaluate, parse_cascade

    c = parse_cascade("ranks M=4 P=4\ninput X[m,p]\nS[m,p: m <= p] = sigmoid(X[m,p])\nY[p] = S[m,p]\n")
    q = FixedPoint(8, 8)
    x = q.to_float(q.from_float(np.linspace(-3, 3, 16).reshape(4, 4)))
    out = evaluate(c, {"X": x}, numbers=q, with_presence=True, keep="all")
    assert np.array_equal(out["S?"], np.tril(np.ones((4, 4), bool)).T)
    # the sum runs over present values only; each within the bound of the test above, the sum
    # (exact, then saturated) adds nothing
    s = 1.0 / (1.0 + np.exp(-x))
    per = _exp_bound(q, np.minimum(x, 0.0)) + _exp_bound(q, -np.abs(x)) + 1 / 256
    for p in range(4):
        assert abs(q.to_float(out["Y"][p]) - s[: p + 1, p].sum()) <= per[: p + 1, p].sum() * 1.001


@pytest.mark.parametrize("q", FORMATS, ids=lambda q: q.describe())
def test_tanh_is_accurate_over_the_whole_range(q):
    """tanh(x) = 2 sigmoid(2x) - 1: the doubling and the final 2s - 1 are exact (short of saturation),
    so the error is twice sigmoid's bound (above) at 2x."""
    x = _all_values(q)
    xf = q.to_float(x)
    got = q.to_float(q.map(OPS["tanh"], x))
    two = np.clip(2 * xf, q.to_float(q.lo), q.to_float(q.hi))       # x + x saturates like the hardware
    bound = 2 * (_exp_bound(q, np.minimum(two, 0.0)) + _exp_bound(q, -np.abs(two)) + 2.0 ** -q.frac_bits)
    with np.errstate(over="ignore"):
        ref = 2.0 / (1.0 + np.exp(-two)) - 1.0
    assert np.all(np.abs(got - ref) <= bound * 1.001)


def test_hardware_forms_cost_what_their_recipes_say():
    """An operator computed from others (sigmoid, tanh) is priced by the recipe that counts its
    hardware form's operations, unit by unit: the cost model and the RTL run the same instructions."""
    from einforge.einsum import Call, Const

    def count(x, out):
        if isinstance(x, Call):
            op = OPS[x.op]
            if op.expand is not None:           # operands computed once, then the form over them
                for a in x.args:
                    count(a, out)
                count(op.expand(*[Const(0.5)] * len(x.args)), out)
                return out
            for u, n in op.recipes[0].items():
                out[u] = out.get(u, 0) + n
            for a in x.args:
                count(a, out)
        return out

    for op in OPS.values():
        if op.expand is None:
            continue
        form = count(op.expand(*([Const(0.5)] * max(op.arity, 1))), {})
        assert form in [dict(r) for r in op.recipes], (op.name, form, op.recipes)
        # the all-MAC variant: exp as 6 MACs, multiplies as MACs
        macs = dict(form)
        macs["mac"] = macs.pop("mul", 0) + 6 * macs.pop("exp", 0) + macs.get("mac", 0)
        assert macs in [dict(r) for r in op.recipes], (op.name, macs)
