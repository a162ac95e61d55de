"""Number systems: the array arithmetic the executor runs a cascade with.

The executor never calls numpy arithmetic directly; it asks a number system. ``Float64`` is the
semantic reference. ``FixedPoint`` (in :mod:`einforge.einsum._fixed`) computes exactly what the
generated hardware computes, so the same executor run with it is the RTL's golden model.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from ._ops import Operator

__all__ = ["NumberSystem", "Float64", "FLOAT64"]


class NumberSystem:
    """Interface of a number system. Values are numpy arrays in the system's representation."""

    name = "abstract"
    dtype = np.float64
    #: ``map(op, *args, out=array)`` may write an elementwise result over an operand the caller
    #: owns (a temporary of the same shape): large temporaries then cost no fresh memory
    writes_in_place = False

    def from_float(self, x) -> np.ndarray:
        raise NotImplementedError

    def to_float(self, x) -> np.ndarray:
        raise NotImplementedError

    def const(self, value: float):
        return self.from_float(np.float64(value))

    def map(self, op: Operator, *args):
        raise NotImplementedError

    def reduce(self, op: Operator, x, axis: int, where=None):
        raise NotImplementedError

    def contract(self, subscripts: str, *operands):
        """Sum of products (``np.einsum`` semantics), the tensor-product fast path."""
        raise NotImplementedError

    def fill(self, shape, value: float):
        return np.full(shape, self.const(value), dtype=self.dtype)


def _ufunc_reduce(op: Operator, x, axis, where, identity):
    fn = getattr(op.fn, "ufunc", op.fn)       # the table names numpy's ufuncs lazily
    if isinstance(fn, np.ufunc):
        return fn.reduce(x, axis=axis, where=True if where is None else where, initial=identity)
    # variadic python functions (max/min) and user-defined reducers: fold along the axis
    x = np.moveaxis(np.asarray(x), axis, 0)
    w = None if where is None else np.moveaxis(np.broadcast_to(where, np.broadcast_shapes(where.shape, x.shape)) if np.ndim(where) else where, axis, 0)
    out = np.full(x.shape[1:], identity, dtype=x.dtype)
    for k in range(x.shape[0]):
        nxt = fn(out, x[k])
        out = nxt if w is None else np.where(w[k], nxt, out)
    return out


@dataclass(frozen=True)
class Float64(NumberSystem):
    """IEEE double precision, numpy's own arithmetic: the reference semantics."""

    name: str = "float64"
    dtype = np.float64
    writes_in_place = True

    def from_float(self, x):
        return np.asarray(x, dtype=np.float64)

    def to_float(self, x):
        return np.asarray(x, dtype=np.float64)

    def map(self, op: Operator, *args, out=None):
        with np.errstate(all="ignore"):
            return op.fn(*args) if out is None else op.fn(*args, out=out)

    def reduce(self, op: Operator, x, axis, where=None):
        if op.name == "max":
            return np.maximum.reduce(x, axis=axis, where=True if where is None else where, initial=-np.inf)
        if op.name == "min":
            return np.minimum.reduce(x, axis=axis, where=True if where is None else where, initial=np.inf)
        with np.errstate(all="ignore"):
            return _ufunc_reduce(op, x, axis, where, op.identity)

    def contract(self, subscripts, *operands):
        path = _einsum_path(subscripts, tuple(np.shape(o) for o in operands))
        with np.errstate(all="ignore"):
            return np.einsum(subscripts, *operands, optimize=path)


@lru_cache(maxsize=1024)
def _einsum_path(subscripts: str, shapes: tuple) -> list:
    """np.einsum's contraction order for operands of these shapes (planned once, not per call)."""
    return np.einsum_path(subscripts, *[np.empty(s) for s in shapes], optimize=True)[0]


FLOAT64 = Float64()
