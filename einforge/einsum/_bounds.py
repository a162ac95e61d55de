"""Running error bounds: how far a fixed-point run can be from exact arithmetic, derived per value.

:class:`ErrorBounds` is a number system that computes exactly what its :class:`FixedPoint`
computes (the RTL's golden model) and, next to every value, a bound on its distance from the
exact real-arithmetic result on the same inputs (Wilkinson's running error analysis). Each
operator adds its own local error, known exactly at the operands it meets (rounding, truncation,
saturation, the exp polynomial's approximation: ``|fixed result - f(fixed operands)|``), to the
operands' bounds carried through the operator's worst-case sensitivity:

* ``a + b``, ``a - b``: ``ea + eb``; ``max``, ``min``: the largest operand bound;
* ``a * b`` and sums of products: ``prod(|x_i| + e_i) - prod(|x_i|)`` summed over the terms;
* ``a / b``: ``(|a| eb + |b| ea) / (|b| (|b| - eb))`` while ``|b| > eb``, unbounded otherwise;
* a unary operator ``f``: ``slope(f) * ea``, the largest ``|f'|`` over ``[a - ea, a + ea]``
  (the operator table's ``slope``); an operator without one has no bound.

The bounds are rigorous for the arithmetic as defined (up to float64's own rounding of the
bounds and of the reference, ~1e-12 relative, which :func:`within_bounds` allows for). Values are
stored as complex numbers: the real part is the fixed-point raw integer, the imaginary part the
bound in LSBs, so the executor moves both through its gathers and writes unchanged.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np

from ._execute import evaluate
from ._fixed import FixedPoint, _rshift_round
from ._numbers import NumberSystem
from ._ops import Operator

__all__ = ["ErrorBounds", "format_error", "within_bounds"]


@dataclass(frozen=True)
class ErrorBounds(NumberSystem):
    """``fixed``'s arithmetic with a running bound on each value's error, in LSBs.

    Examples
    --------
    >>> from einforge.einsum import FixedPoint, parse_cascade, evaluate
    >>> q = ErrorBounds(FixedPoint(8, 8))
    >>> c = parse_cascade("ranks K\\ninput A[k]\\nZ[] = A[k] * A[k]\\n")
    >>> z = evaluate(c, {"A": np.array([0.5, 0.25])}, numbers=q)["Z"]
    >>> float(q.to_float(z)), float(q.bound(z))   # exact products, one rounding: no error at all
    (0.3125, 0.0)
    """

    fixed: FixedPoint = FixedPoint()
    name: str = "bounds"
    dtype = np.complex128

    # -- representation -------------------------------------------------------------------------
    def _pack(self, raw, bound):
        raw, bound = np.broadcast_arrays(np.asarray(raw, np.float64), np.asarray(bound, np.float64))
        out = np.empty(raw.shape, np.complex128)
        out.real = raw                           # (raw + 1j * inf would make the real part NaN)
        out.imag = np.where(np.isnan(bound), np.inf, bound)     # 0 * inf: no bound, not none needed
        return out

    def raw(self, x) -> np.ndarray:
        """The fixed-point raw integers (bit for bit the golden model's)."""
        return np.real(np.asarray(x)).astype(np.int64)

    def bound(self, x) -> np.ndarray:
        """The error bound of each value, in LSBs of the fixed-point format."""
        return np.imag(np.asarray(x))

    def from_float(self, x):
        x = np.asarray(x, dtype=np.float64)
        raw = self.fixed.from_float(x)
        with np.errstate(invalid="ignore"):
            err = np.where(np.isinf(x), 0.0, np.abs(raw - x * self.fixed.one))
        return self._pack(raw, err)

    def to_float(self, x):
        return self.fixed.to_float(np.real(np.asarray(x)))

    def const(self, value: float):
        # +-inf are the empty values of max/min: they stand for themselves, in both arithmetics
        err = 0.0 if math.isinf(value) else abs(float(self.fixed.const(value)) - value * self.fixed.one)
        return complex(float(self.fixed.const(value)), err)

    def fill(self, shape, value: float):
        return np.full(shape, self.const(value), dtype=np.complex128)

    # -- arithmetic -----------------------------------------------------------------------------
    def map(self, op: Operator, *args):
        raw = [self.raw(a) for a in args]
        err = [self.bound(a) for a in args]
        value = self.fixed.map(op, *raw)
        with np.errstate(all="ignore"):
            return self._pack(value, self._map_bound(op, raw, err, value))

    def _map_bound(self, op: Operator, raw, err, value):
        one = self.fixed.one
        if op.name in ("+", "-"):
            exact = raw[0] + raw[1] if op.name == "+" else raw[0] - raw[1]
            return err[0] + err[1] + np.abs(exact - value)          # saturation
        if op.name in ("max", "min"):
            return np.maximum.reduce(np.broadcast_arrays(*err))
        if op.name == "*":
            a, b = (np.abs(r).astype(np.float64) for r in raw)
            carried = (a * err[1] + b * err[0] + err[0] * err[1]) / one
            return carried + _shift_error(raw[0] * raw[1], self.fixed.frac_bits, value)
        if op.name == "/":
            a, b = (np.abs(r).astype(np.float64) for r in raw)
            ea, eb = err
            exact = raw[0].astype(np.float64) * one / raw[1]
            carried = np.where(b > eb, (a * eb + b * ea) * one / (b * np.maximum(b - eb, 1e-300)), np.inf)
            return carried + np.abs(exact - value)
        if op.arity == 1 and op.slope is not None:
            x = raw[0] / one
            local = np.abs(value - op.fn(x) * one)
            slope = op.slope(x - err[0] / one, x + err[0] / one)
            return local + np.where(err[0] > 0, slope * err[0], 0.0)
        return np.full(np.shape(value), np.inf)

    def reduce(self, op: Operator, x, axis, where=None):
        raw, err = self.raw(x), self.bound(x)
        value = self.fixed.reduce(op, raw, axis, where)
        w = True if where is None else where
        if op.name in ("max", "min"):
            bound = np.maximum.reduce(err, axis=axis, where=w, initial=0.0)
        elif op.name == "+":
            exact = np.add.reduce(raw, axis=axis, where=w, initial=0)
            bound = np.add.reduce(err, axis=axis, where=w, initial=0.0) + np.abs(exact - value)
        elif op.name == "*":
            acc = self._pack(np.full(value.shape, self.fixed.one), 0.0)
            moved = np.moveaxis(np.asarray(x), axis, 0)
            mask = None if where is None else np.moveaxis(np.broadcast_to(where, np.shape(x)), axis, 0)
            for k in range(moved.shape[0]):
                nxt = self.map(op, acc, moved[k])
                acc = nxt if mask is None else np.where(mask[k], nxt, acc)
            return acc
        else:
            bound = np.full(np.shape(value), np.inf)
        return self._pack(value, bound)

    def contract(self, subscripts, *operands):
        """Sums of products: the carried error of each term is ``prod(|x|+e) - prod(|x|)``, expanded
        over the non-empty subsets of factors that take their error (no cancellation in float64)."""
        raw = [self.raw(o) for o in operands]
        err = [self.bound(o) for o in operands]
        value = self.fixed.contract(subscripts, *raw)
        shift = self.fixed.frac_bits * (len(raw) - 1)
        acc = np.einsum(subscripts, *raw, optimize=False, dtype=np.int64)
        mags = [np.abs(r).astype(np.float64) for r in raw]
        carried = np.zeros(np.shape(value))
        for k in range(1, len(raw) + 1):
            for chosen in itertools.combinations(range(len(raw)), k):
                if not all(err[i].any() for i in chosen):
                    continue
                factors = [err[i] if i in chosen else mags[i] for i in range(len(raw))]
                with np.errstate(invalid="ignore"):       # 0 * inf: no bound (NaN becomes inf)
                    carried = carried + np.einsum(subscripts, *factors, optimize=True)
        return self._pack(value, carried / float(1 << shift) + _shift_error(acc, shift, value))


def _shift_error(exact, shift: int, value):
    """|exact / 2**shift - value| in LSBs, computed in integers (exact products exceed float64's
    53 bits): the rounding of a wide result plus any saturation."""
    exact = np.asarray(exact, np.int64)
    rounded = _rshift_round(exact, shift)
    below = exact - (rounded << shift)                       # what rounding dropped, exact
    return np.abs(rounded - value).astype(np.float64) + np.abs(below) / float(1 << shift)


def within_bounds(fixed_values, bounds, reference, one: int, present=None) -> tuple[bool, float]:
    """Whether float64 ``reference`` lies within ``bounds`` (LSBs) of the fixed-point raw
    ``fixed_values`` at every present coordinate, and the largest share of its bound an error
    uses (0 when every error is 0). Allows float64's own rounding: 1e-9 relative plus 1e-9 LSB."""
    got = np.asarray(fixed_values, np.float64)
    ref = np.asarray(reference, np.float64) * one
    b = np.asarray(bounds, np.float64)
    mask = np.ones(got.shape, bool) if present is None else np.asarray(present, bool)
    err = np.abs(got - ref)[mask]
    b = b[mask]
    slack = 1e-9 * (1.0 + np.abs(ref[mask]))
    ok = bool(np.all(err <= b * (1 + 1e-9) + slack))
    share = float(np.max(np.where(b > 0, err / np.where(b > 0, b, 1), np.where(err > slack, np.inf, 0.0)))) \
        if err.size else 0.0
    return ok, share


def format_error(cascade, inputs: dict, sizes: dict, fixed: FixedPoint, got: dict | None = None) -> dict:
    """How far a fixed-point run of ``cascade`` is from float64 on the same ``inputs`` (real values the
    format holds), against the bound its arithmetic allows at each present output coordinate.

    ``got`` (raw outputs, e.g. an RTL's) is checked instead of the golden model's own values. Returns
    per output (``"outputs"``) and over all of them: ``max_abs_error`` and ``bound`` (largest, real
    units; infinite where none can be derived), ``share`` (largest share of a bound an error uses)
    and ``within_bound`` (every coordinate within a finite bound).

    Examples
    --------
    >>> from einforge.einsum import parse_cascade
    >>> c = parse_cascade("ranks K\\ninput A[k]\\nZ[] = A[k] * A[k]\\n")
    >>> r = format_error(c, {"A": np.array([0.5, 0.25])}, {}, FixedPoint(8, 8))
    >>> r["within_bound"], r["bound"]
    (True, 0.0)
    """
    bounds = ErrorBounds(fixed)
    with np.errstate(all="ignore"):
        bounded = evaluate(cascade, inputs, sizes, bounds, with_presence=True)
        exact = evaluate(cascade, inputs, sizes)
    report = {"outputs": {}, "max_abs_error": 0.0, "bound": 0.0, "share": 0.0, "within_bound": True}
    for name in cascade.outputs:
        present = bounded[name + "?"]
        raw = bounds.raw(bounded[name]) if got is None else np.asarray(got[name])
        lane = bounds.bound(bounded[name])
        ok, share = within_bounds(raw, lane, exact[name], fixed.one, present)
        err = np.abs(fixed.to_float(raw) - exact[name])[present]
        one = {"max_abs_error": float(err.max()) if err.size else 0.0,
               "bound": float(lane[present].max()) / fixed.one if err.size else 0.0,
               "share": share, "within_bound": ok and bool(np.all(np.isfinite(lane[present])))}
        report["outputs"][name] = one
        for k in ("max_abs_error", "bound", "share"):
            report[k] = max(report[k], one[k])
        report["within_bound"] &= one["within_bound"]
    return report
