"""The operator table: everything einforge knows about a map or reduce operator, in one place.

For each operator the table says how the float64 executor computes it, how it merges operands
that may be empty (EDGE's merge: intersection or union), its identity when it reduces, and the
*recipes* that implement it from hardware primitive units (``mac``, ``add``, ``max``, ``div``,
``exp`` ...). An architecture charges an operator by the first recipe whose units its PEs have;
the RTL lowering picks PE templates by the same units. Adding an operator is one ``Operator``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace

__all__ = ["Operator", "OperatorTable", "DEFAULT_OPERATORS", "DIVIDER_STEPS", "unit_recipe"]

INTERSECT = "intersect"
UNION = "union"

#: An iterative divider (the unit ``divstep``) divides in this many one-cycle steps: one takes the
#: operands' magnitudes, six find a sixth of the quotient bits each (what a combinational divider,
#: ``div``, finds at once), one applies the sign and saturates.
DIVIDER_STEPS = 8


def unit_recipe(recipe: Mapping, units) -> dict:
    """``recipe`` as hardware with ``units`` runs it: on an iterative divider each ``div`` action
    is ``DIVIDER_STEPS`` ``divstep`` actions.

    >>> unit_recipe({"exp": 2, "div": 1}, ("exp", "divstep"))
    {'exp': 2, 'divstep': 8}
    >>> unit_recipe({"div": 1}, ("div", "divstep"))
    {'div': 1}
    """
    if "div" in recipe and "div" not in units and "divstep" in units:
        out = {k: n for k, n in recipe.items() if k != "div"}
        out["divstep"] = out.get("divstep", 0) + recipe["div"] * DIVIDER_STEPS
        return out
    return dict(recipe)


@dataclass(frozen=True)
class Operator:
    """One map/reduce operator.

    Parameters
    ----------
    name : str
        Name used in cascade text (``exp``) or the infix symbol (``+``).
    arity : int
        Number of operands; ``-1`` for variadic (``max(a, b, c)``).
    fn : callable
        Vectorized float64 implementation over numpy arrays.
    merge : str
        ``"intersect"``: the result exists only where every operand exists (``*``, ``/``, ``exp``).
        ``"union"``: an empty operand is skipped (``+``, ``max``, ``min``).
    identity : float or None
        Identity of the operator as a reduction; ``None`` if it cannot reduce.
    recipes : tuple of mappings
        Alternative decompositions into hardware primitive units, best first, e.g. exp is one
        ``exp`` unit action or 6 ``mac`` actions (FuseMax's Taylor series).
    rtl : str or None
        The attention engine's instruction that computes it (``add``, ``div``, ``exp``...).
    expand : callable or None
        How hardware computes it from other operators: a function from operand expressions to an
        expression (sigmoid is ``1 / (1 + exp(-x))``). Fixed-point arithmetic and the RTL use it, so
        they agree bit for bit; float64 keeps ``fn``.
    slope : callable or None
        For a unary operator, ``slope(lo, hi)``: the largest ``|f'|`` over ``[lo, hi]`` (arrays),
        which carries an operand's error bound through it (:class:`ErrorBounds`). ``None``: no
        error bound is derived through this operator.
    """

    name: str
    arity: int
    fn: Callable = field(compare=False)
    merge: str = INTERSECT
    identity: float | None = None
    recipes: tuple = ()
    doc: str = ""
    rtl: str | None = None   # the attention engine's instruction for it (None: no datapath yet)
    expand: Callable | None = field(default=None, compare=False)   # hardware form from other operators
    slope: Callable | None = field(default=None, compare=False)    # largest |f'| over an interval

    @property
    def can_reduce(self) -> bool:
        return self.identity is not None


class _Ufunc:
    """A numpy ufunc named now and imported at first use: building the operator table (which every
    cascade does) then costs no numpy import, and a command that never runs numbers never pays it.
    ``.ufunc`` is the function itself (for ``reduce``)."""

    __slots__ = ("name",)

    def __init__(self, name: str):
        self.name = name

    @property
    def ufunc(self):
        import numpy

        return getattr(numpy, self.name)

    def __call__(self, *args, **kwargs):
        return self.ufunc(*args, **kwargs)

    def __getattr__(self, attr):
        if attr.startswith("__"):           # protocols (copy, pickle) ask before ``name`` is set
            raise AttributeError(attr)
        return getattr(self.ufunc, attr)

    def __reduce__(self):
        return (_Ufunc, (self.name,))

    def __repr__(self) -> str:
        return f"numpy.{self.name}"


def _np_max(*xs):
    import numpy as np

    out = xs[0]
    for x in xs[1:]:
        out = np.maximum(out, x)
    return out


def _np_min(*xs):
    import numpy as np

    out = xs[0]
    for x in xs[1:]:
        out = np.minimum(out, x)
    return out


def _sigmoid(x):
    import numpy as np

    x = np.asarray(x, dtype=float)
    with np.errstate(over="ignore"):
        return np.where(x >= 0, 1.0 / (1.0 + np.exp(-np.abs(x))), np.exp(-np.abs(x)) / (1.0 + np.exp(-np.abs(x))))


def _elu(x):
    import numpy as np

    x = np.asarray(x, dtype=float)
    with np.errstate(over="ignore"):
        return np.where(x > 0, x, np.expm1(np.minimum(x, 0.0)))


_BUILTINS = (
    Operator("+", 2, _Ufunc("add"), UNION, 0.0, ({"add": 1},), "addition; reduces with identity 0", "add"),
    Operator("-", 2, _Ufunc("subtract"), INTERSECT, None, ({"add": 1},), "subtraction", "sub"),
    Operator("*", 2, _Ufunc("multiply"), INTERSECT, 1.0, ({"mul": 1}, {"mac": 1}), "multiplication", "mul"),
    Operator("/", 2, _Ufunc("divide"), INTERSECT, None, ({"div": 1},), "division", "div"),
    Operator("neg", 1, _Ufunc("negative"), INTERSECT, None, ({"add": 1},), "negation", "neg"),
    Operator("max", -1, _np_max, UNION, -math.inf, ({"max": 1},), "maximum; reduces with identity -inf", "max"),
    Operator("min", -1, _np_min, UNION, math.inf, ({"max": 1},), "minimum; reduces with identity +inf", "min"),
    Operator("exp", 1, _Ufunc("exp"), INTERSECT, None, ({"exp": 1}, {"mac": 6}),
             "e**x (FuseMax PEs: 6 MACs of a Taylor series)", "exp"),
    Operator("log", 1, _Ufunc("log"), INTERSECT, None, ({"log": 1}, {"mac": 8}), "natural logarithm"),
    Operator("sqrt", 1, _Ufunc("sqrt"), INTERSECT, None, ({"sqrt": 1}, {"div": 1, "mac": 4}), "square root"),
    Operator("recip", 1, _Ufunc("reciprocal"), INTERSECT, None, ({"div": 1}, {"mac": 6}), "1/x"),
    Operator("tanh", 1, _Ufunc("tanh"), INTERSECT, None,
             ({"tanh": 1}, {"exp": 2, "add": 5, "max": 2, "div": 1, "mul": 1},
              {"exp": 2, "add": 5, "max": 2, "div": 1, "mac": 1}, {"mac": 13, "add": 5, "max": 2, "div": 1}),
             "hyperbolic tangent (without a tanh unit: 2 sigmoid(2x) - 1, sigmoid's saturation-free form)"),
    Operator("sigmoid", 1, _sigmoid, INTERSECT, None,
             ({"sigmoid": 1}, {"exp": 2, "add": 3, "max": 2, "div": 1}, {"mac": 12, "add": 3, "max": 2, "div": 1}),
             "logistic function 1/(1+e**-x)"),
    Operator("relu", 1, lambda x: _Ufunc("maximum")(x, 0.0), INTERSECT, None, ({"max": 1},), "max(x, 0)"),
    Operator("elu", 1, _elu, INTERSECT, None, ({"exp": 1, "add": 4, "max": 2}, {"mac": 6, "add": 4, "max": 2}),
             "exponential linear unit (x if x>0 else e**x-1; without an elu unit, its hardware form's "
             "max, min, four adds and an exp)"),
    Operator("abs", 1, _Ufunc("abs"), INTERSECT, None, ({"max": 1},), "absolute value"),
    Operator("sin", 1, _Ufunc("sin"), INTERSECT, None, ({"sincos": 1}, {"mac": 8}),
             "sine (PEs without a sin/cos unit: range reduction and a degree-7 polynomial, ~8 MACs)"),
    Operator("cos", 1, _Ufunc("cos"), INTERSECT, None, ({"sincos": 1}, {"mac": 8}),
             "cosine (as sin)"),
)


@dataclass(frozen=True)
class OperatorTable(Mapping):
    """An immutable name -> Operator mapping. Extend it with :meth:`with_operator`.

    Examples
    --------
    >>> import numpy as np
    >>> table = DEFAULT_OPERATORS.with_function("cube", lambda x: x ** 3, recipes=({"mac": 2},))
    >>> float(table["cube"].fn(np.float64(2.0)))
    8.0
    >>> "cube" in DEFAULT_OPERATORS
    False
    """

    ops: tuple[Operator, ...]

    def __getitem__(self, name: str) -> Operator:
        for op in self.ops:
            if op.name == name:
                return op
        raise KeyError(name)

    def __iter__(self) -> Iterator[str]:
        return (op.name for op in self.ops)

    def __len__(self) -> int:
        return len(self.ops)

    def with_operator(self, op: Operator) -> OperatorTable:
        """A new table with ``op`` added (or replacing an operator of the same name)."""
        return OperatorTable(tuple(o for o in self.ops if o.name != op.name) + (op,))

    def with_function(self, name: str, fn: Callable, *, arity: int = 1, merge: str = INTERSECT,
                      identity: float | None = None, recipes: tuple = (), doc: str = "",
                      slope: Callable | None = None) -> OperatorTable:
        """A new table with a user-defined function (a feature map, an activation, ...); ``slope``
        (the largest ``|f'|`` over an interval) lets error bounds pass through it."""
        if not name.isidentifier() or not name[0].islower():
            raise ValueError(f"function name {name!r} must be a lower-case identifier")
        if merge not in (INTERSECT, UNION):
            raise ValueError(f"merge must be {INTERSECT!r} or {UNION!r}, not {merge!r}")
        return self.with_operator(Operator(name, arity, fn, merge, identity, tuple(recipes), doc, slope=slope))

    def functions(self) -> list[str]:
        """Names callable as ``name(...)`` in cascade text."""
        return [op.name for op in self.ops if op.name[0].isalpha()]

    def reducers(self) -> list[str]:
        return [op.name for op in self.ops if op.can_reduce]


def _sigmoid_form(x):
    """exp(x - max(x, 0)) / (1 + exp(min(x, -x))): both exponents are <= 0, so nothing saturates in
    any fixed-point format (the textbook 1/(1+exp(-x)) returns 1/max instead of ~0 once exp(-x)
    saturates, a bias that sigmoid attention sums over every key). The numerator carries x's
    presence into the intersecting division, so an absent x gives an absent result as ``fn`` does."""
    from ._ir import Call, Const

    num = Call("exp", (Call("-", (x, Call("max", (x, Const(0.0))))),))
    den = Call("+", (Const(1.0), Call("exp", (Call("min", (x, Call("neg", (x,)))),))))
    return Call("/", (num, den))


def _tanh_form(x):
    """2 sigmoid(2x) - 1 with sigmoid's hardware form: no exponent above 0, so nothing saturates;
    the result is within two LSB of tanh in any fixed-point format."""
    from ._ir import Call, Const

    return Call("-", (Call("*", (Const(2.0), Call("sigmoid", (Call("+", (x, x)),)))), Const(1.0)))


def _elu_form(x):
    """max(x, 0) + (exp(min(x, 0)) - 1), each part written as x minus its other half so that an
    absent x gives an absent result (``max``/``min`` against a constant would make one up); the
    exponent is never above 0, so nothing saturates."""
    from ._ir import Call, Const

    positive = Call("-", (x, Call("min", (x, Const(0.0)))))
    negative = Call("exp", (Call("-", (x, Call("max", (x, Const(0.0))))),))
    return Call("+", (positive, Call("-", (negative, Const(1.0)))))


_FORMS = {"sigmoid": _sigmoid_form, "tanh": _tanh_form, "elu": _elu_form}


def _constant_slope(c: float) -> Callable:
    def slope(lo, hi):
        import numpy as np

        return np.full(np.broadcast_shapes(np.shape(lo), np.shape(hi)), c)
    return slope


def _exp_slope(lo, hi):
    import numpy as np

    return np.exp(hi)


def _positive_only(f: Callable) -> Callable:
    """A slope that exists only on a positive interval (log, sqrt: unbounded at 0)."""
    def slope(lo, hi):
        import numpy as np

        lo = np.asarray(lo, np.float64)
        return np.where(lo > 0, f(np.where(lo > 0, lo, 1.0)), np.inf)
    return slope


def _recip_slope(lo, hi):
    import numpy as np

    near = np.minimum(np.abs(lo), np.abs(hi))           # |x| closest to 0, if 0 is outside
    return np.where(np.sign(lo) == np.sign(hi), 1.0 / np.where(near > 0, near, 1.0) ** 2, np.inf)


# |f'| bounds: 1-Lipschitz maps, sigmoid's 1/4, exp's e**hi, and the poles of log, sqrt and 1/x
_SLOPES = {"neg": _constant_slope(1.0), "abs": _constant_slope(1.0), "relu": _constant_slope(1.0),
           "tanh": _constant_slope(1.0), "elu": _constant_slope(1.0), "sin": _constant_slope(1.0),
           "cos": _constant_slope(1.0), "sigmoid": _constant_slope(0.25), "exp": _exp_slope,
           "log": _positive_only(lambda lo: 1.0 / lo), "sqrt": _positive_only(lambda lo: 0.5 / lo ** 0.5),
           "recip": _recip_slope}
_BUILTINS = tuple(replace(op, expand=_FORMS.get(op.name), slope=_SLOPES.get(op.name)) for op in _BUILTINS)
DEFAULT_OPERATORS = OperatorTable(_BUILTINS)
