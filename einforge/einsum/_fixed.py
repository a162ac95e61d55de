"""Fixed-point numbers: exactly what the generated hardware computes.

Values are signed integers ``raw`` standing for ``raw / 2**frac_bits``, ``width`` bits wide
(``int_bits`` integer bits including the sign, ``frac_bits`` fraction bits). Every operator below
is defined on the raw integers the way the RTL computes it, so the reference executor run with a
``FixedPoint`` is the golden model the RTL must match bit for bit:

* ``+ -``: exact, then saturated;
* ``*``: the full product (``2*frac_bits`` fraction bits), rounded once, saturated;
* sums of products (tensor products): full products accumulated exactly in a wide accumulator,
  rounded and saturated once at the end, like a MAC array's accumulator;
* ``max min``: exact;
* ``/``: ``(a << frac_bits) / b`` truncated toward zero (a restoring divider), saturated; a zero
  divisor gives the largest magnitude with the dividend's sign;
* ``exp``: ``2**(x*log2(e))`` split into an integer shift and a fraction ``f`` in [0, 1);
  ``2**f`` is a degree-5 polynomial evaluated by Horner's rule. With the multiplication by
  log2(e) that is 6 MAC steps, each rounded as a MAC unit rounds (FuseMax's exp). Accurate to
  a few LSBs (tests/einsum/test_fixed.py derives the bound) while ``x*log2(e)`` fits the format;
  large arguments saturate;
* operators with a hardware form in the operator table (``sigmoid``) are computed from it, step by
  step, as the RTL computes them.

Rounding is half up (add half an LSB, shift right arithmetically). Constants are quantized the
same way (``-inf`` becomes the most negative value). Operators with no hardware definition here
(``log``, ``sqrt``, ``tanh``, user functions) are computed in float64 and quantized, which is documented as
not bit-exact to any RTL.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ._numbers import NumberSystem
from ._ops import Operator

__all__ = ["FixedPoint", "EXP_COEFFS"]

# 2**f = e**(f ln 2) for f in [0, 1): Taylor coefficients (ln 2)**n / n!, highest power first
EXP_COEFFS = tuple(math.log(2) ** n / math.factorial(n) for n in range(5, -1, -1))
LOG2E = 1.0 / math.log(2)


def _rshift_round(x, s: int):
    """Arithmetic right shift by ``s`` with round-half-up (``s`` may be 0)."""
    if s <= 0:
        return x << (-s) if s < 0 else x
    return (x + (1 << (s - 1))) >> s


@dataclass(frozen=True)
class FixedPoint(NumberSystem):
    """Signed fixed point with ``int_bits`` integer bits (sign included) and ``frac_bits`` fraction bits.

    Examples
    --------
    >>> q = FixedPoint(8, 8)
    >>> int(q.from_float(1.5)), float(q.to_float(q.from_float(3.14159)))
    (384, 3.140625)
    >>> float(q.to_float(q.exp(q.from_float(0.0)))), float(q.to_float(q.exp(q.from_float(-1.0))))
    (1.0, 0.3671875)
    """

    int_bits: int = 8
    frac_bits: int = 8
    name: str = field(default="fixed", compare=False)
    dtype = np.int64

    def __post_init__(self):
        if self.int_bits < 1 or self.frac_bits < 0 or self.width > 30:
            raise ValueError("FixedPoint needs int_bits >= 1, frac_bits >= 0 and at most 30 bits in all")

    # -- representation -------------------------------------------------------------------------
    @property
    def width(self) -> int:
        return self.int_bits + self.frac_bits

    @property
    def lo(self) -> int:
        return -(1 << (self.width - 1))

    @property
    def hi(self) -> int:
        return (1 << (self.width - 1)) - 1

    @property
    def one(self) -> int:
        return 1 << self.frac_bits

    def sat(self, x):
        return np.clip(x, self.lo, self.hi)

    def from_float(self, x):
        x = np.asarray(x, dtype=np.float64)
        with np.errstate(invalid="ignore", over="ignore"):
            scaled = np.floor(x * self.one + 0.5)
        scaled = np.where(np.isnan(scaled), 0, scaled)
        return self.sat(np.clip(scaled, self.lo, self.hi)).astype(np.int64)

    def to_float(self, x):
        return np.asarray(x, dtype=np.float64) / self.one

    def describe(self) -> str:
        return f"Q{self.int_bits}.{self.frac_bits}"

    # -- arithmetic ------------------------------------------------------------------------------
    def mul(self, a, b):
        return self.sat(_rshift_round(np.asarray(a, np.int64) * np.asarray(b, np.int64), self.frac_bits))

    def div(self, a, b):
        a = np.asarray(a, np.int64)
        b = np.asarray(b, np.int64)
        num = np.abs(a) << self.frac_bits
        den = np.abs(b)
        safe = np.where(den == 0, 1, den)
        q = num // safe
        neg = (a < 0) != (b < 0)
        q = np.where(neg, -q, q)
        q = np.where(den == 0, np.where(a < 0, self.lo, self.hi), q)
        return self.sat(q)

    def exp_constants(self) -> dict:
        """The raw constants of the exp datapath: log2(e) and the polynomial, highest power first."""
        return {"log2e": int(self.from_float(LOG2E)), "coeffs": [int(self.from_float(c)) for c in EXP_COEFFS]}

    def exp(self, x):
        """exp as the hardware computes it (see the module docstring)."""
        x = np.asarray(x, np.int64)
        k = self.exp_constants()
        t = self.sat(_rshift_round(x * k["log2e"], self.frac_bits))       # MAC 1: x * log2(e)
        n = t >> self.frac_bits                                            # integer part (floor)
        f = t - (n << self.frac_bits)                                      # fraction in [0, 1)
        p = np.full(np.shape(x), k["coeffs"][0], dtype=np.int64)
        for c in k["coeffs"][1:]:                                          # MACs 2-6: Horner
            p = _rshift_round(p * f + (c << self.frac_bits), self.frac_bits)
        # scale by 2**n: left shifts saturate, right shifts round
        # p >= 1.0, so any left shift past the word width saturates; clamping the shift there (as
        # the hardware does) also keeps the int64 product from wrapping
        out = np.where(n >= 0, self.sat(p << np.clip(n, 0, self.width + 1)),
                       _rshift_round_vec(p, np.clip(-n, 0, 62)))
        return self.sat(out)

    # -- NumberSystem interface ------------------------------------------------------------------
    def map(self, op: Operator, *args):
        name = op.name
        a = [np.asarray(x, np.int64) for x in args]
        if name == "+":
            return self.sat(a[0] + a[1])
        if name == "-":
            return self.sat(a[0] - a[1])
        if name == "neg":
            return self.sat(-a[0])
        if name == "*":
            return self.mul(a[0], a[1])
        if name == "/":
            return self.div(a[0], a[1])
        if name == "max":
            out = a[0]
            for y in a[1:]:
                out = np.maximum(out, y)
            return out
        if name == "min":
            out = a[0]
            for y in a[1:]:
                out = np.minimum(out, y)
            return out
        if name == "exp":
            return self.exp(a[0])
        if name == "relu":
            return np.maximum(a[0], 0)
        if name == "abs":
            return self.sat(np.abs(a[0]))
        if op.expand is not None:      # the hardware form, built from operators defined above
            return self._eval_form(op.expand(*[_Raw(k) for k in range(len(a))]), a)
        with np.errstate(all="ignore"):
            return self.from_float(op.fn(*[self.to_float(y) for y in a]))

    def _eval_form(self, x, args):
        from ._ir import Call, Const
        from ._ops import DEFAULT_OPERATORS

        if isinstance(x, _Raw):
            return args[x.k]
        if isinstance(x, Const):
            return np.int64(self.const(x.value))
        if isinstance(x, Call):
            return self.map(DEFAULT_OPERATORS[x.op], *[self._eval_form(y, args) for y in x.args])
        raise TypeError(x)

    def reduce(self, op: Operator, x, axis, where=None):
        x = np.asarray(x, np.int64)
        w = True if where is None else where
        if op.name == "max":
            return np.maximum.reduce(x, axis=axis, where=w, initial=self.lo)
        if op.name == "min":
            return np.minimum.reduce(x, axis=axis, where=w, initial=self.hi)
        if op.name == "+":
            return self.sat(np.add.reduce(x, axis=axis, where=w, initial=0))
        if op.name == "*":
            out = np.moveaxis(x, axis, 0)
            acc = np.full(out.shape[1:], self.one, dtype=np.int64)
            mask = None if where is None else np.moveaxis(np.broadcast_to(where, x.shape), axis, 0)
            for k in range(out.shape[0]):
                nxt = self.mul(acc, out[k])
                acc = nxt if mask is None else np.where(mask[k], nxt, acc)
            return acc
        flo = self.to_float(x)
        from ._numbers import FLOAT64

        return self.from_float(FLOAT64.reduce(op, flo, axis, where))

    def contract(self, subscripts, *operands):
        """Sum of products with exact products in a wide accumulator, rounded once."""
        ops = [np.asarray(o, np.int64) for o in operands]
        acc = np.einsum(subscripts, *ops, optimize=False, dtype=np.int64)
        return self.sat(_rshift_round(acc, self.frac_bits * (len(ops) - 1)))

    def const(self, value: float):
        if value == math.inf:
            return np.int64(self.hi)
        if value == -math.inf:
            return np.int64(self.lo)
        return self.from_float(np.float64(value))[()]

    def fill(self, shape, value: float):
        return np.full(shape, self.const(value), dtype=np.int64)

    def accumulator_bits(self, terms: int, factors: int = 2) -> int:
        """Bits a MAC accumulator needs so that ``terms`` full products never overflow."""
        return factors * self.width + max(1, math.ceil(math.log2(max(2, terms)))) + 1


@dataclass(frozen=True)
class _Raw:
    """An operand placeholder in an operator's hardware form."""

    k: int

    def accesses(self):
        return [self]


def _rshift_round_vec(x, s):
    s = np.asarray(s, np.int64)
    half = np.where(s > 0, np.left_shift(np.int64(1), np.maximum(s - 1, 0)), 0)
    return (x + half) >> s
