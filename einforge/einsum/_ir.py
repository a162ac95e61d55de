"""The Cascade IR: frozen dataclasses for ranks, index expressions, payload expressions, Einsums.

Naming convention carried over from the paper: a rank is an upper-case name (``M``, ``M1``), its
rank variable the same name in lower case (``m``, ``m1``). Source spans are kept for error
messages and excluded from equality, so a cascade printed and parsed again compares equal.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property

from ._errors import CascadeError, Span

__all__ = [
    "Var", "Sym", "Num", "BinOp", "IndexExpr", "Compare",
    "Const", "SizeRef", "Access", "Call", "Expr",
    "RankDecl", "TensorDecl", "Einsum",
    "rank_of", "var_of", "WORKLOAD_FIELDS", "MAX_NESTING",
]

#: The fields of a transformer workload a cascade's ranks may be bound to (``workload M=keys``).
WORKLOAD_FIELDS = {
    "batch": "sequences processed together",
    "heads": "attention (query) heads",
    "kv_heads": "key/value heads (grouped-query attention); heads when not set",
    "head_dim": "query/key head dimension",
    "value_dim": "value head dimension; head_dim when not set",
    "model_dim": "model (embedding) width",
    "ffn_dim": "feed-forward hidden width",
    "keys": "key/value sequence length",
    "queries": "query sequence length",
}

#: Deepest nesting of an expression (parentheses, calls, chained operators); deeper text is
#: refused with an error instead of exhausting the interpreter's stack.
MAX_NESTING = 200


def rank_of(var: str) -> str:
    """The rank a rank variable ranges over: ``m1`` -> ``M1``."""
    return var.upper()


def var_of(rank: str) -> str:
    """The rank variable of a rank: ``M1`` -> ``m1``."""
    return rank.lower()


# ---------------------------------------------------------------------------------------------
# Index (rank-variable) expressions: affine and integer arithmetic over rank variables and sizes
# ---------------------------------------------------------------------------------------------

_IDX_PREC = {"+": 1, "-": 1, "*": 2, "/": 2, "//": 2, "%": 2}


def _cached_hash(cls):
    """Remember a frozen node's hash: filters and expressions are dictionary keys in the cost
    model's hot loops, and hashing a tree walks all of it. The cached value is per process, so it
    is left out of pickles (string hashes differ between processes)."""
    generated = cls.__hash__

    def __hash__(self):
        d = self.__dict__
        if "_hash" not in d:
            d["_hash"] = generated(self)
        return d["_hash"]

    def __getstate__(self):
        return {k: v for k, v in self.__dict__.items() if k not in ("_hash", "_vars", "_reads")}

    cls.__hash__ = __hash__
    if hasattr(cls, "variables"):
        walk = cls.variables

        def variables(self):
            d = self.__dict__
            if "_vars" not in d:
                d["_vars"] = frozenset(walk(self))
            return d["_vars"]

        variables.__doc__ = walk.__doc__
        cls.variables = variables
    cls.__getstate__ = __getstate__
    return cls


@dataclass(frozen=True)
class Var:
    """A rank variable, e.g. ``m1``."""

    name: str
    span: Span | None = field(default=None, compare=False, repr=False)

    def variables(self) -> set[str]:
        return {self.name}

    def symbols(self) -> set[str]:
        return set()

    def text(self) -> str:
        return self.name

    def evaluate(self, env):
        try:
            return env[self.name]
        except KeyError:
            raise CascadeError(f"rank variable {self.name!r} has no value here", self.span) from None


@dataclass(frozen=True)
class Sym:
    """A size symbol (a rank's size or a parameter), e.g. ``M0`` in ``m1*M0+m0``."""

    name: str
    span: Span | None = field(default=None, compare=False, repr=False)

    def variables(self) -> set[str]:
        return set()

    def symbols(self) -> set[str]:
        return {self.name}

    def text(self) -> str:
        return self.name

    def evaluate(self, env):
        try:
            return env[self.name]
        except KeyError:
            raise CascadeError(
                f"rank {self.name} has no size",
                self.span,
                f"give it one in the `ranks` line ({self.name}=...) or with --size {self.name}=N",
            ) from None


@dataclass(frozen=True)
class Num:
    value: int
    span: Span | None = field(default=None, compare=False, repr=False)

    def variables(self) -> set[str]:
        return set()

    def symbols(self) -> set[str]:
        return set()

    def text(self) -> str:
        return str(self.value)

    def evaluate(self, env):
        return self.value


@_cached_hash
@dataclass(frozen=True)
class BinOp:
    """Integer arithmetic on index expressions; ``/`` is exact division (sizes must divide)."""

    op: str
    left: IndexExpr
    right: IndexExpr
    span: Span | None = field(default=None, compare=False, repr=False)

    def variables(self) -> set[str]:
        return self.left.variables() | self.right.variables()

    def symbols(self) -> set[str]:
        return self.left.symbols() | self.right.symbols()

    def text(self) -> str:
        p = _IDX_PREC[self.op]
        lt = self.left.text()
        rt = self.right.text()
        if isinstance(self.left, BinOp) and _IDX_PREC[self.left.op] < p:
            lt = f"({lt})"
        if isinstance(self.right, BinOp) and _IDX_PREC[self.right.op] <= p:
            rt = f"({rt})"
        return f"{lt}{self.op}{rt}"

    def evaluate(self, env):
        a = self.left.evaluate(env)
        b = self.right.evaluate(env)
        if self.op == "+":
            return a + b
        if self.op == "-":
            return a - b
        if self.op == "*":
            return a * b
        if self.op in ("//", "%", "/") and _has_zero(b):
            raise CascadeError(
                f"{self.text()} divides by zero" + ("" if isinstance(self.right, Num) else
                                                    f": {self.right.text()} is 0 here"), self.span,
                "give the size or parameter a non-zero value, or guard the index with a filter")
        if self.op == "//":
            return a // b
        if self.op == "%":
            return a % b
        # exact division: used for derived sizes (M1 = M/M0) and must divide
        if isinstance(a, int) and isinstance(b, int):
            if b == 0 or a % b:
                raise CascadeError(
                    f"{self.text()} does not divide: {a} is not a multiple of {b}",
                    self.span,
                    "choose sizes so that each partition divides its rank (or use // for floor division)",
                )
            return a // b
        return a // b


@dataclass(frozen=True)
class Read:
    """A tensor's value inside a filter: data-dependent sparsity, e.g. the block mask of
    ``BQK[m1,m0,p: BM[m1, p//Q0] != 0]``. ``tensor`` is read at ``indices`` (index expressions)."""

    tensor: str
    indices: tuple
    span: Span | None = field(default=None, compare=False, repr=False)

    def variables(self) -> set[str]:
        out: set[str] = set()
        for ix in self.indices:
            out |= ix.variables()
        return out

    def symbols(self) -> set[str]:
        out: set[str] = set()
        for ix in self.indices:
            out |= ix.symbols()
        return out

    def reads(self) -> set[str]:
        return {self.tensor}

    def text(self) -> str:
        return f"{self.tensor}[{','.join(ix.text() for ix in self.indices)}]"

    def evaluate(self, env):
        tensors = env.get(TENSORS)
        if tensors is None or self.tensor not in tensors:
            raise CascadeError(f"{self.text()} reads data, which this evaluation does not have", self.span,
                               "the executor reads it; the cost model takes the density declared by `density`")
        values = tensors[self.tensor]
        return values[tuple(ix.evaluate(env) for ix in self.indices)]


#: the key of an evaluation environment that holds tensors' values (for :class:`Read`)
TENSORS = "@tensors"


def read_nodes(x) -> list:
    """The :class:`Read` nodes of an index expression or comparison (data-dependent filters)."""
    if isinstance(x, Read):
        return [x]
    if isinstance(x, (BinOp, Compare)):
        d = x.__dict__                     # a frozen node: its reads are worked out once
        if "_reads" not in d:
            d["_reads"] = tuple(read_nodes(x.left) + read_nodes(x.right))
        return list(d["_reads"])
    return []


def reads_of(x) -> set[str]:
    """The tensors an index expression or comparison reads."""
    return {r.tensor for r in read_nodes(x)}


IndexExpr = Var | Sym | Num | BinOp | Read


def _has_zero(b) -> bool:
    if isinstance(b, (int, float)):          # sizes: plain numbers, no numpy needed
        return b == 0
    import numpy as np

    return bool(np.any(np.asarray(b) == 0))


@_cached_hash
@dataclass(frozen=True)
class Compare:
    """One comparison of a filter or stopping condition, e.g. ``m <= p``."""

    left: IndexExpr
    op: str  # one of < <= > >= == !=
    right: IndexExpr
    span: Span | None = field(default=None, compare=False, repr=False)

    def variables(self) -> set[str]:
        return self.left.variables() | self.right.variables()

    def symbols(self) -> set[str]:
        return self.left.symbols() | self.right.symbols()

    def text(self) -> str:
        op = "=" if self.op == "==" else self.op
        return f"{self.left.text()}{op}{self.right.text()}"

    def evaluate(self, env):
        a = self.left.evaluate(env)
        b = self.right.evaluate(env)
        return {
            "<": lambda: a < b, "<=": lambda: a <= b, ">": lambda: a > b,
            ">=": lambda: a >= b, "==": lambda: a == b, "!=": lambda: a != b,
        }[self.op]()


# ---------------------------------------------------------------------------------------------
# Payload expressions
# ---------------------------------------------------------------------------------------------

_PREC = {"+": 1, "-": 1, "*": 2, "/": 2}


@dataclass(frozen=True)
class Const:
    """A numeric constant; ``inf``/``-inf`` allowed."""

    value: float
    span: Span | None = field(default=None, compare=False, repr=False)

    def accesses(self):
        return []

    def text(self) -> str:
        v = self.value
        if v == float("inf"):
            return "inf"
        if v == float("-inf"):
            return "-inf"
        if float(v).is_integer() and abs(v) < 1e15:
            return str(int(v))
        return repr(float(v))


@dataclass(frozen=True)
class SizeRef:
    """A size symbol used as a value, e.g. ``E`` in ``1/sqrt(E)``."""

    name: str
    span: Span | None = field(default=None, compare=False, repr=False)

    def accesses(self):
        return []

    def text(self) -> str:
        return self.name


@dataclass(frozen=True)
class Position:
    """A rank variable used as a value: the coordinate itself, e.g. ``p`` and ``m`` in ALiBi's
    ``BQK - S * (p - m)`` (positions, relative distances, RoPE angles)."""

    var: str
    span: Span | None = field(default=None, compare=False, repr=False)

    def accesses(self):
        return []

    def text(self) -> str:
        return self.var


def positions(expr) -> set[str]:
    """The rank variables ``expr`` uses as values."""
    if isinstance(expr, Position):
        return {expr.var}
    if isinstance(expr, Call):
        out = set()
        for a in expr.args:
            out |= positions(a)
        return out
    return set()


def is_constant(expr) -> bool:
    """Whether ``expr`` is the same number at every point: it reads no tensor and no position."""
    return not expr.accesses() and not positions(expr)


@_cached_hash
@dataclass(frozen=True)
class Access:
    """A tensor read (or the written output) at index expressions: ``K[e, m1*M0+m0]``."""

    tensor: str
    indices: tuple[IndexExpr, ...]
    span: Span | None = field(default=None, compare=False, repr=False)

    def accesses(self):
        return [self]

    def variables(self) -> set[str]:
        out: set[str] = set()
        for ix in self.indices:
            out |= ix.variables()
        return out

    def text(self) -> str:
        if not self.indices:
            return self.tensor
        return f"{self.tensor}[{','.join(ix.text() for ix in self.indices)}]"


@_cached_hash
@dataclass(frozen=True)
class Call:
    """A map operator applied to operands: infix ``+ - * /``, ``neg`` or a named function."""

    op: str
    args: tuple[Expr, ...]
    span: Span | None = field(default=None, compare=False, repr=False)

    def accesses(self):
        out = []
        for a in self.args:
            out.extend(a.accesses())
        return out

    def text(self) -> str:
        if self.op in _PREC and len(self.args) == 2:
            p = _PREC[self.op]
            a, b = self.args
            at, bt = a.text(), b.text()
            if _prec(a) < p:
                at = f"({at})"
            if _prec(b) <= p:
                bt = f"({bt})"
            return f"{at} {self.op} {bt}"
        if self.op == "neg":
            (a,) = self.args
            at = a.text()
            if _prec(a) < 3:
                at = f"({at})"
            return f"-{at}"
        return f"{self.op}({', '.join(a.text() for a in self.args)})"


def _prec(e) -> int:
    if isinstance(e, Call):
        if e.op in _PREC and len(e.args) == 2:
            return _PREC[e.op]
        if e.op == "neg":
            return 3
    if isinstance(e, Const) and e.value < 0:
        return 0
    return 4


Expr = Const | SizeRef | Position | Access | Call


# ---------------------------------------------------------------------------------------------
# Declarations and Einsums
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RankDecl:
    """A rank (or, with ``param=True``, a scalar parameter such as a window width).

    ``size`` is ``None`` (bound later, e.g. ``--size M=4096``), a ``Num`` (a default that
    ``--size`` may override) or an expression of other sizes (derived, e.g. ``M1 = M/M0``).
    """

    name: str
    size: IndexExpr | None = None
    param: bool = False
    span: Span | None = field(default=None, compare=False, repr=False)

    @property
    def derived(self) -> bool:
        return self.size is not None and not isinstance(self.size, Num)

    @property
    def real(self) -> bool:
        """A parameter whose default is written with a fraction (``param CAP=50.0``): a real number
        used as a value (a soft cap, a scale), never a size or an index."""
        return self.param and isinstance(self.size, Num) and isinstance(self.size.value, float)

    def text(self) -> str:
        return self.name if self.size is None else f"{self.name}={self.size.text()}"


@dataclass(frozen=True)
class TensorDecl:
    """An input tensor with its ordered ranks, declared by example: ``K[e,m]`` has ranks (E, M)."""

    name: str
    ranks: tuple[str, ...]
    span: Span | None = field(default=None, compare=False, repr=False)

    def text(self) -> str:
        if not self.ranks:
            return self.name
        return f"{self.name}[{','.join(var_of(r) for r in self.ranks)}]"


@dataclass(frozen=True)
class Einsum:
    """One Extended Einsum.

    ``output`` is the written access (its indices are rank variables, ``v+1`` for the next iterate
    of an iterative rank, or constants); ``expr`` the map expression evaluated at every point of
    the iteration space that passes ``filters``; ``reduce`` the ordered ``(variable, operator)``
    pairs for every variable of the right-hand side absent from the output.
    """

    output: Access
    expr: Expr
    reduce: tuple[tuple[str, str], ...] = ()
    filters: tuple[Compare, ...] = ()
    span: Span | None = field(default=None, compare=False, repr=False)

    @property
    def name(self) -> str:
        """The Einsum is named after the tensor it writes."""
        return self.output.tensor

    @property
    def inputs(self) -> list[str]:
        """Tensors read, in order of first appearance, without repeats."""
        seen: list[str] = []
        for a in self.expr.accesses():
            if a.tensor not in seen:
                seen.append(a.tensor)
        return seen

    def variables(self) -> list[str]:
        """All rank variables of the iteration space: the output's first, then in order of use."""
        return list(self._variables)

    def output_variables(self) -> list[str]:
        return list(self._output_variables)

    @cached_property
    def _variables(self) -> tuple[str, ...]:
        # worked out once: the executor and the cost model ask at every step (the node is frozen)
        out = list(self._output_variables)
        exprs = [ix for a in self.expr.accesses() for ix in a.indices]
        exprs += [side for f in self.filters for side in (f.left, f.right)]
        for ix in exprs:
            for v in _ordered_vars(ix):
                if v not in out:
                    out.append(v)
        return tuple(out)

    @cached_property
    def _output_variables(self) -> tuple[str, ...]:
        out: list[str] = []
        for ix in self.output.indices:
            for v in _ordered_vars(ix):
                if v not in out:
                    out.append(v)
        return tuple(out)

    def reduced_variables(self) -> list[str]:
        return [v for v, _ in self.reduce]

    def text(self) -> str:
        # a pin of an output variable (m1=0, an initialization) is written at its index, as in the
        # paper (RM[m1:m1=0,p]); other filters follow the last index
        items = [ix.text() for ix in self.output.indices]
        rest = []
        for f in self.filters:
            pos = next((k for k, ix in enumerate(self.output.indices)
                        if f.op == "==" and isinstance(ix, Var) and f.left == ix and not f.right.variables()), None)
            if pos is not None and ":" not in items[pos]:
                items[pos] += f":{f.text()}"
            else:
                rest.append(f.text())
        if rest:
            conds = " & ".join(rest)
            if items:
                items[-1] += f": {conds}"
            else:
                items.append(f": {conds}")
        lhs = self.output.tensor if not items else f"{self.output.tensor}[{','.join(items)}]"
        rhs = self.expr.text()
        explicit = [(v, op) for v, op in self.reduce if op != "+"]
        if explicit:
            # group consecutive same operators: max(m0) +(e)
            groups: list[tuple[str, list[str]]] = []
            for v, op in self.reduce:
                if groups and groups[-1][0] == op:
                    groups[-1][1].append(v)
                else:
                    groups.append((op, [v]))
            red = " ".join(f"{op}({','.join(vs)})" for op, vs in groups)
            if groups[0][0] == "+" and len(groups) > 1 and all(op != "+" for op, _ in groups[1:]):
                # unlisted variables reduce with + first, so the leading + group can stay implicit
                red = " ".join(f"{op}({','.join(vs)})" for op, vs in groups[1:])
            return f"{lhs} = {rhs} :: {red}"
        return f"{lhs} = {rhs}"


def _ordered_vars(ix) -> list[str]:
    if isinstance(ix, Var):
        return [ix.name]
    if isinstance(ix, BinOp):
        return _ordered_vars(ix.left) + _ordered_vars(ix.right)
    return []


# ---------------------------------------------------------------------------------------------
# Products (the executor, the cost model and the RTL fold constants the same way)
# ---------------------------------------------------------------------------------------------


def fold_target(factors, output_vars, var_size) -> int | None:
    """Where a product's constant factors are folded: the index (among ``factors``) of the operand
    with the fewest elements, or None when the result is smaller than every operand (the constant
    then scales the result). Ties go to the first operand. The executor, the cost model and the
    RTL all fold here, so they agree on the numbers and on the work."""
    best, best_n = None, math.prod(var_size[v] for v in output_vars)
    for k, f in enumerate(factors):
        if isinstance(f, Access):
            n = math.prod(var_size[v] for v in f.variables())
            if n <= best_n if best is None else n < best_n:
                best, best_n = k, n
    return best


def product_factors(expr):
    """The factors of a pure product (accesses, and constants such as ``1/sqrt(E)``), or None."""
    if isinstance(expr, (Access, Const, SizeRef)):
        return [expr]
    if isinstance(expr, Call) and is_constant(expr):
        return [expr]
    if isinstance(expr, Call) and expr.op == "*":
        a = product_factors(expr.args[0])
        b = product_factors(expr.args[1])
        if a is not None and b is not None:
            return a + b
    return None
