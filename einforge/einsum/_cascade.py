"""The ``Cascade``: an ordered list of Extended Einsums, checked on construction.

Construction (from text or from Python) runs every semantic check and infers what the text may
leave implicit: partitioned ranks (``m1*M0+m0`` declares ``M1 = M/M0``), iterative ranks (an
output indexed ``m1+1``), the default ``+`` reduction over ranks absent from the output, and the
cascade's outputs. A ``Cascade`` that exists is a valid one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields, replace
from functools import cached_property

from ._errors import CascadeError, Source, Span
from ._ir import (
    WORKLOAD_FIELDS,
    Access,
    BinOp,
    Call,
    Compare,
    Const,
    Einsum,
    Num,
    Position,
    RankDecl,
    SizeRef,
    Sym,
    TensorDecl,
    Var,
    positions,
    rank_of,
    read_nodes,
    reads_of,
    var_of,
)
from ._ops import DEFAULT_OPERATORS, UNION, OperatorTable

__all__ = ["Cascade", "TensorInfo", "IterativeRank", "parse_cascade"]


@dataclass(frozen=True)
class TensorInfo:
    """What the cascade knows about one tensor.

    ``iterative`` is the axis holding an iterative rank (stored with ``bound + 1`` coordinates:
    the initial iterate 0 through the final one), or ``None``. ``empty`` is the value of
    coordinates nothing wrote: the identity of the operator that produces the tensor (EDGE's
    empty value), 0 by default.
    """

    name: str
    ranks: tuple[str, ...]
    is_input: bool
    iterative: int | None = None
    producers: tuple[int, ...] = ()
    empty: float = 0.0


@dataclass(frozen=True)
class IterativeRank:
    """An iterative (generative) rank: its variable, and the bound from the stopping condition."""

    rank: str
    var: str
    bound: object  # IndexExpr: the variable runs over [0, bound)
    stop: Compare


@dataclass(frozen=True)
class Cascade:
    """A cascade of Extended Einsums.

    Build one with :func:`parse_cascade` from text, or directly from IR objects; either way the
    constructor checks it and raises :class:`CascadeError` naming the problem.

    Examples
    --------
    >>> c = parse_cascade('''
    ... ranks K M N
    ... input A[k,m] B[k,n]
    ... Z[m,n] = A[k,m] * B[k,n]
    ... ''')
    >>> c.outputs
    ('Z',)
    >>> c.einsums[0].reduce
    (('k', '+'),)
    >>> print(c.text(), end="")
    ranks K M N
    input A[k,m] B[k,n]
    output Z
    Z[m,n] = A[k,m] * B[k,n]
    """

    name: str = "cascade"
    ranks: tuple[RankDecl, ...] = ()
    inputs: tuple[TensorDecl, ...] = ()
    einsums: tuple[Einsum, ...] = ()
    stop: tuple[Compare, ...] = ()
    outputs: tuple[str, ...] = ()
    description: str = ""
    workload: tuple[tuple[str, object], ...] = ()   # (rank, expression over WORKLOAD_FIELDS)
    family: str = ""                                # the kind of algorithm, for listings
    densities: tuple[tuple[str, object], ...] = ()  # (input, real parameter name or number): data filters' share
    operators: OperatorTable = field(default=DEFAULT_OPERATORS, compare=False, repr=False)
    source: Source | None = field(default=None, compare=False, repr=False)

    def __post_init__(self):
        _finish(self, None)

    def __hash__(self) -> int:
        # cascades key caches (cost-model plans); hash the IR once
        h = self.__dict__.get("_hash")
        if h is None:
            h = hash((self.name, self.ranks, self.inputs, self.einsums, self.stop, self.outputs, self.description,
                      self.workload, self.family, self.densities))
            object.__setattr__(self, "_hash", h)
        return h

    # -- derived views -------------------------------------------------------------------------
    @property
    def tensors(self) -> dict[str, TensorInfo]:
        return self._tensors  # type: ignore[attr-defined]

    @property
    def iterative_ranks(self) -> dict[str, IterativeRank]:
        return self._iterative  # type: ignore[attr-defined]

    def rank(self, name: str) -> RankDecl:
        for r in self.ranks:
            if r.name == name:
                return r
        raise KeyError(name)

    @property
    def rank_names(self) -> list[str]:
        return [r.name for r in self.ranks if not r.param]

    def einsum_kind(self, i: int) -> str:
        """``"init"`` (writes the first iterate), ``"update"`` (writes ``v+1``) or ``"plain"``."""
        return self._kinds[i]  # type: ignore[attr-defined]

    def label(self, i: int) -> str:
        """A unique name per Einsum: the tensor it writes, ``T.init`` for an initialization."""
        return self._labels[i]  # type: ignore[attr-defined]

    @property
    def labels(self) -> list[str]:
        return list(self._labels)  # type: ignore[attr-defined]

    def einsum(self, label: str) -> Einsum:
        return self.einsums[self._labels.index(label)]  # type: ignore[attr-defined]

    def access_kind(self, access: Access) -> str:
        """How an operand reads an iterative tensor: ``prev`` (``v``), ``next`` (``v+1``),
        ``final`` (the last iterate, e.g. ``M1``), ``fixed`` (a constant), or ``plain``."""
        info = self.tensors.get(access.tensor)
        if info is None or info.iterative is None:
            return "plain"
        return _iter_index_kind(access.indices[info.iterative], self._iter_of_rank(info))

    def _iter_of_rank(self, info: TensorInfo) -> IterativeRank:
        return self.iterative_ranks[info.ranks[info.iterative]]

    @cached_property
    def _edges(self) -> tuple[tuple[str, str, str, str], ...]:
        """(producer, consumer, tensor, kind) of every dependency, in Einsum order (see :attr:`graph`)."""
        out = []
        for i, e in enumerate(self.einsums):
            me = self.label(i)
            for t in sorted({t for f in e.filters for t in reads_of(f)}):
                info = self.tensors[t]
                for src in ([t] if info.is_input else [self.label(p) for p in info.producers]):
                    out.append((src, me, t, "stream"))
            for a in e.expr.accesses():
                info = self.tensors[a.tensor]
                if info.is_input:
                    out.append((a.tensor, me, a.tensor, "stream"))
                    continue
                kind = self.access_kind(a)
                for p in info.producers:
                    pk = self.einsum_kind(p)
                    if kind == "prev":
                        out.append((self.label(p), me, a.tensor, "carried"))
                    elif kind == "next":
                        if pk == "update":
                            out.append((self.label(p), me, a.tensor, "stream"))
                    elif kind == "final":
                        if pk == "update" or len(info.producers) == 1:
                            out.append((self.label(p), me, a.tensor, "final"))
                    else:
                        out.append((self.label(p), me, a.tensor, "stream"))
        return tuple(out)

    @cached_property
    def graph(self):
        """Dependency graph: a node per input tensor and per Einsum (by :meth:`label`).

        Edges go from producer to consumer and carry ``tensor`` and ``kind``: ``"stream"`` for
        an ordinary read, ``"carried"`` for a read of the previous iterate (loop-carried; such
        edges may close cycles through the iterative rank), ``"final"`` for the last iterate.
        """
        import networkx as nx

        g = nx.DiGraph(name=self.name)
        for t in self.inputs:
            g.add_node(t.name, kind="input", tensor=t.name)
        for i, e in enumerate(self.einsums):
            g.add_node(self.label(i), kind="einsum", index=i, tensor=e.name, einsum=e)
        for u, v, t, kind in self._edges:
            g.add_edge(u, v, tensor=t, kind=kind)
        return g

    @cached_property
    def _acyclic(self) -> tuple[dict, dict]:
        succ: dict[str, list[str]] = {}
        pred: dict[str, list[str]] = {}
        for u, v, _, kind in self._edges:
            if kind != "carried":
                succ.setdefault(u, [])
                pred.setdefault(v, [])
                if v not in succ[u]:
                    succ[u].append(v)
                    pred[v].append(u)
        return succ, pred

    def successors(self, node: str) -> list[str]:
        """Who reads ``node`` (an input tensor or an Einsum label) in :meth:`dag`; plain lists, so that
        the cost model needs no graph library."""
        return list(self._acyclic[0].get(node, ()))

    def predecessors(self, node: str) -> list[str]:
        """What ``node`` reads in :meth:`dag`."""
        return list(self._acyclic[1].get(node, ()))

    def descendants(self, node: str) -> set[str]:
        """Everything downstream of ``node`` in :meth:`dag`."""
        seen: set[str] = set()
        todo = [node]
        while todo:
            for v in self._acyclic[0].get(todo.pop(), ()):
                if v not in seen:
                    seen.add(v)
                    todo.append(v)
        return seen

    def dag(self):
        """The dependency graph without loop-carried edges; always acyclic (a read-only view, built
        once per cascade)."""
        return self._dag

    @cached_property
    def _dag(self):
        import networkx as nx

        g = self.graph.copy()
        g.remove_edges_from([(u, v) for u, v, k in self.graph.edges(data="kind") if k == "carried"])
        return nx.freeze(g)

    def density(self, tensor: str, sizes: dict) -> float:
        """The declared share of ``tensor``'s entries a filter on it keeps (``density`` line), with
        parameters from ``sizes``."""
        v = dict(self.densities)[tensor]
        return float(sizes[v]) if isinstance(v, str) else float(v)

    def text(self) -> str:
        """The cascade as text that parses back to an equal cascade."""
        from ._printer import cascade_text

        return cascade_text(self)

    def __str__(self) -> str:
        return self.text()

    def with_operators(self, operators: OperatorTable) -> Cascade:
        return replace(self, operators=operators)


# ---------------------------------------------------------------------------------------------
# Semantic checks
# ---------------------------------------------------------------------------------------------


def _iter_index_kind(ix, it: IterativeRank) -> str:
    if isinstance(ix, Var) and ix.name == it.var:
        return "prev"
    if (isinstance(ix, BinOp) and ix.op == "+" and isinstance(ix.left, Var) and ix.left.name == it.var
            and isinstance(ix.right, Num) and ix.right.value == 1):
        return "next"
    if isinstance(ix, Sym) and (ix.name == it.rank or ix.text() == it.bound.text()):
        return "final"
    if not ix.variables():
        return "fixed"
    return "other"


def _is_next(ix) -> bool:
    return (isinstance(ix, BinOp) and ix.op == "+" and isinstance(ix.left, Var)
            and isinstance(ix.right, Num) and ix.right.value == 1)


def _blocked(ix):
    """(outer, inner) variables of a blocked index ``x*X0+x0`` (the inner variable's rank is X0), or None."""
    if (isinstance(ix, BinOp) and ix.op == "+" and isinstance(ix.left, BinOp) and ix.left.op == "*"
            and isinstance(ix.left.left, Var) and isinstance(ix.left.right, Sym) and isinstance(ix.right, Var)
            and rank_of(ix.right.name) == ix.left.right.name):
        return ix.left.left.name, ix.right.name
    return None


def _strip_filtered(expr, filters: list):
    """Move filters written inside operand subscripts (``A[k:k<=i]``) onto the Einsum."""
    from ._parse import _FilteredAccess

    if isinstance(expr, _FilteredAccess):
        filters.extend(expr.filters)
        return expr.access
    if isinstance(expr, Call):
        return Call(expr.op, tuple(_strip_filtered(a, filters) for a in expr.args), expr.span)
    return expr


def _finish(c: Cascade, written_reductions: dict | None) -> None:
    """Check ``c`` and store the normalized fields and derived tables on it."""
    for k, v in _Checker(c, written_reductions).run().items():
        object.__setattr__(c, k, v)


class _Checker:
    def __init__(self, c: Cascade, written_reductions: dict | None = None):
        self.c = c
        self._written_reductions = written_reductions or {}
        self._kind_cache: dict[int, str] = {}
        self.ops = c.operators
        self.ranks: dict[str, RankDecl] = {}
        self.tensors: dict[str, TensorInfo] = {}
        self.defined_later: dict[str, int] = {}

    def err(self, msg, span=None, hint=None):
        return CascadeError(msg, span, hint)

    # -- entry --------------------------------------------------------------------------------
    def run(self) -> dict:
        c = self.c
        if not _NAME_RE.fullmatch(c.name or ""):
            raise self.err(f"cascade name {c.name!r} is not a name", None,
                           "use letters, digits, _ and single hyphens, e.g. attention-1pass")
        if '"' in c.description or "\n" in c.description:
            raise self.err("a cascade description is one line without double quotes")
        if not c.einsums:
            raise self.err(f"cascade {c.name!r} has no Einsums", None, "write at least one `T[...] = ...` line")
        for r in c.ranks:
            if r.name in self.ranks:
                raise self.err(f"{'parameter' if r.param else 'rank'} {r.name} is declared twice", r.span)
            if not r.name[0].isupper():
                raise self.err(f"rank name {r.name!r} must start with an upper-case letter", r.span)
            self.ranks[r.name] = r
        for r in c.ranks:
            if r.size is not None:
                _no_zero_divisor(self, r.size)
                if r.derived:
                    for sym in r.size.symbols():
                        self._not_real(sym, r.size.span or r.span)
                for v in r.size.variables():
                    raise self.err(
                        f"the size of {r.name} uses the rank variable {v!r}", r.size.span or r.span,
                        f"sizes are written with upper-case rank names, e.g. {r.name}={v.upper()}",
                    )
        inputs = {t.name for t in c.inputs}
        for t, v in c.densities:
            if t not in inputs:
                raise self.err(f"density {t}: {t} is not an input", None, "declare it with `input`")
            if isinstance(v, str):
                if v not in self.ranks or not self.ranks[v].real:
                    raise self.err(f"density {t}={v}: {v} is not a real-valued parameter", None,
                                   f"declare it: `param {v}=0.25`")
            elif not 0 < v <= 1:
                raise self.err(f"density {t}={v:g} must be a share in (0, 1]")
        for t in c.inputs:
            if t.name in self.tensors:
                raise self.err(f"input {t.name} is declared twice", t.span)
            if t.name in self.ranks:
                raise self.err(f"{t.name} is both a rank and a tensor", t.span, "rename the tensor")
            for rk in t.ranks:
                if rk not in self.ranks:
                    raise self.err(
                        f"unknown rank {rk} in input {t.name} (variable {var_of(rk)!r})", t.span,
                        f"declare it: `ranks ... {rk}`",
                    )
            self.tensors[t.name] = TensorInfo(t.name, tuple(t.ranks), True)
        for i, e in enumerate(c.einsums):
            self.defined_later.setdefault(e.output.tensor, i)

        for e in c.einsums:  # partitions of inputs (K[e, m1*M0+m0]) declare M1 before iteration checks
            for a in _strip_filtered(e.expr, []).accesses():
                self._infer_partitions(a)
        iter_vars = self._find_iterative_vars()
        self.iterative = self._iterative_ranks(iter_vars)

        kinds, labels, einsums = [], [], []
        for i, e in enumerate(c.einsums):
            e2, kind = self._check_einsum(i, e)
            einsums.append(e2)
            kinds.append(kind)
            labels.append(f"{e2.name}.init" if kind == "init" else e2.name)
        # labels must be unique: a tensor is written by at most one init and one plain/update
        for i, lab in enumerate(labels):
            if labels.index(lab) != i:
                raise self.err(f"tensor {einsums[i].name} is defined twice", einsums[i].span)

        # the first iterate of an iterative rank must be initialized, the update must exist
        for name, info in self.tensors.items():
            if info.iterative is None or info.is_input:
                continue
            ks = [kinds[p] for p in info.producers]
            if "init" not in ks:
                p = info.producers[0]
                e = einsums[p]
                v = self._iter_var_of(info)
                raise self.err(
                    f"iterative tensor {name} has no initialization", e.span,
                    f"initialize its first iterate before it is updated, e.g. "
                    f"`{name}[{self._init_example(info, v)}] = 0`",
                )

        outputs = tuple(c.outputs)
        for o in outputs:
            if o not in self.tensors or self.tensors[o].is_input:
                what = f"{o} is an input, not a computed tensor" if o in self.tensors else f"unknown output tensor {o}"
                raise self.err(what, None, f"outputs must be computed tensors: {self._computed_names(einsums)}")
        if len(set(outputs)) != len(outputs):
            raise self.err("an output is listed twice", None, "name each output once in the `output` line")
        if not outputs:
            read = set()
            for e in einsums:
                for a in e.expr.accesses():
                    if a.tensor != e.name:
                        read.add(a.tensor)
            outputs = tuple(n for n in dict.fromkeys(e.name for e in einsums) if n not in read)

        ranks = tuple(r for r in self.ranks.values() if not r.param) + tuple(
            r for r in self.ranks.values() if r.param)
        self._check_workload()
        return {
            "ranks": ranks,
            "einsums": tuple(einsums),
            "outputs": outputs,
            "_tensors": dict(self.tensors),
            "_iterative": self.iterative,
            "_kinds": tuple(kinds),
            "_labels": tuple(labels),
        }

    def _check_workload(self):
        seen = set()
        for rank, expr in self.c.workload:
            span = getattr(expr, "span", None)
            decl = self.ranks.get(rank)
            if decl is None:
                raise self.err(f"the workload line binds {rank}, which is not a rank or parameter", span,
                               f"declare it (`ranks ... {rank}`) or remove it from the workload line")
            if decl.derived:
                raise self.err(f"{rank} is derived ({decl.size.text()}); the workload line cannot bind it", span,
                               f"bind the ranks {rank} is derived from instead")
            if rank in seen:
                raise self.err(f"the workload line binds {rank} twice", span)
            seen.add(rank)
            _check_workload_expr(self, expr, rank)

    def _computed_names(self, einsums):
        return ", ".join(dict.fromkeys(e.name for e in einsums))

    def _iter_var_of(self, info: TensorInfo) -> str:
        return var_of(info.ranks[info.iterative])

    def _init_example(self, info, v):
        parts = []
        for k, r in enumerate(info.ranks):
            parts.append(f"{v}:{v}=0" if k == info.iterative else var_of(r))
        return ",".join(parts)

    # -- iterative ranks ----------------------------------------------------------------------
    def _find_iterative_vars(self) -> dict[str, Span | None]:
        """Variables that appear as ``v+1`` in an output: their ranks are iterative."""
        out: dict[str, Span | None] = {}
        for e in self.c.einsums:
            for ix in e.output.indices:
                if _is_next(ix):
                    out.setdefault(ix.left.name, e.span)
        return out

    def _iterative_ranks(self, iter_vars) -> dict[str, IterativeRank]:
        stops: dict[str, Compare] = {}
        for s in self.c.stop:
            v = s.left
            if not isinstance(v, Var) or s.op not in (">=", ">", "==") or s.right.variables():
                raise self.err(
                    f"cannot read the stopping condition {s.text()!r}", s.span,
                    "write it as `stop v >= BOUND`, e.g. `stop m1 >= M1`",
                )
            if v.name not in iter_vars:
                raise self.err(
                    f"stopping condition on {v.name!r}, which is not an iterative rank", s.span,
                    f"a rank is iterative when an Einsum writes its next iterate, e.g. T[{v.name}+1,...]",
                )
            stops[v.name] = s
        out: dict[str, IterativeRank] = {}
        for v, span in iter_vars.items():
            rk = rank_of(v)
            if v not in stops:
                raise self.err(
                    f"iterative rank {rk} has no stopping condition", span,
                    f"add `stop {v} >= {rk}` (or another bound) so the iteration ends",
                )
            s = stops[v]
            bound = s.right
            if s.op == ">":
                bound = BinOp("+", bound, Num(1))
            elif s.op == "==":
                pass
            for sym in bound.symbols():
                if sym not in self.ranks and sym != rk:
                    raise self.err(f"unknown size {sym} in the stopping condition", s.span,
                                   f"declare it: `ranks ... {sym}` or `param {sym}=...`")
                self._not_real(sym, s.span)
            if rk not in self.ranks:
                if isinstance(bound, Sym) and bound.name == rk:
                    raise self.err(
                        f"iterative rank {rk} has no size", s.span, f"declare it: `ranks ... {rk}=...`")
                self.ranks[rk] = RankDecl(rk, bound, False, span)
            out[rk] = IterativeRank(rk, v, bound, s)
        return out

    # -- one Einsum ----------------------------------------------------------------------------
    def _check_einsum(self, i: int, e: Einsum) -> tuple[Einsum, str]:
        out = e.output
        filters = list(e.filters)
        expr = _strip_filtered(e.expr, filters)
        if out.tensor in self.ranks:
            raise self.err(f"{out.tensor} is a rank; it cannot be written as a tensor", out.span,
                           "rename the tensor")
        expr = self._resolve(expr, i)
        # partition inference must run before variable checks
        for a in expr.accesses():
            self._infer_partitions(a)

        # ---- output
        info = self.tensors.get(out.tensor)
        kind = "plain"
        next_axes = [k for k, ix in enumerate(out.indices) if _is_next(ix)]
        pinned = {f.left.name: f for f in filters
                  if f.op == "==" and isinstance(f.left, Var) and not f.right.variables()}
        out_ranks = []
        out_vars = []
        for k, ix in enumerate(out.indices):
            if isinstance(ix, Var):
                out_ranks.append(self._rank_of_var(ix.name, ix.span or out.span))
                out_vars.append(ix.name)
            elif _is_next(ix):
                out_ranks.append(self._rank_of_var(ix.left.name, ix.span or out.span))
                out_vars.append(ix.left.name)
            elif _blocked(ix) is not None:
                outer, inner = _blocked(ix)
                out_ranks.append(self._blocked_rank(ix, outer, inner, out))
                out_vars += [outer, inner]
            else:
                raise self.err(
                    f"the output index {ix.text()!r} of {out.tensor} must be a rank variable", ix.span or out.span,
                    "write outputs with plain variables (`T[m,p]`), `v+1` for the next iterate, or a block "
                    "and its offset (`T[c*C0+c0]`)",
                )
        dup = {v for v in out_vars if out_vars.count(v) > 1}
        if dup:
            raise self.err(f"rank variable {sorted(dup)[0]!r} appears twice in the output of {out.tensor}", out.span)
        iter_axis = None
        if len(next_axes) > 1:
            raise self.err(f"{out.tensor} writes the next iterate of two ranks", out.span,
                           "only one rank of a tensor can be iterative")
        if next_axes:
            iter_axis = next_axes[0]
            kind = "update"
        else:
            for k, v in enumerate(out_vars):
                if v in pinned and rank_of(v) in self.iterative:
                    f = pinned[v]
                    if not (isinstance(f.right, Num) and f.right.value == 0):
                        raise self.err(
                            f"initialization of {out.tensor} must pin the first iterate: {v}={f.right.text()}",
                            f.span, f"write `{v}:{v}=0`")
                    iter_axis = k
                    kind = "init"
        if info is None and kind == "update":
            v = out.indices[iter_axis].left.name
            example = ",".join(f"{v}:{v}=0" if k == iter_axis else ix.text() for k, ix in enumerate(out.indices))
            raise self.err(
                f"iterative tensor {out.tensor} has no initialization", e.span,
                f"initialize its first iterate before it is updated, e.g. `{out.tensor}[{example}] = 0`")
        if info is not None:
            if info.is_input:
                raise self.err(f"{out.tensor} is an input; it cannot be written", out.span,
                               "give the computed tensor another name")
            prev_kinds = [self._kind_cache[p] for p in info.producers]
            ok = (kind == "update" and prev_kinds == ["init"]) and info.iterative == iter_axis
            if not ok:
                first = self.c.einsums[info.producers[0]]
                if kind == "plain" and self._reads(expr, out.tensor):
                    raise self.err(
                        f"{out.tensor} depends on itself, and that is a cycle that is not an iterative rank",
                        out.span,
                        f"to build {out.tensor} by iteration, write its next iterate ({out.tensor}[v+1,...]) "
                        "from the previous one and initialize the first",
                    )
                raise self.err(
                    f"tensor {out.tensor} is defined twice (first on line {first.span.line if first.span else '?'})",
                    out.span,
                    "a tensor may be written again only as the next iterate of an iterative rank, "
                    f"e.g. {out.tensor}[m1+1,...] after {out.tensor}[m1:m1=0,...]",
                )
            if tuple(out_ranks) != info.ranks:
                raise self.err(
                    f"{out.tensor} has ranks ({', '.join(info.ranks)}) here but ({', '.join(out_ranks)}) were written",
                    out.span)
        elif kind == "plain" and self._reads(expr, out.tensor):
            raise self.err(
                f"{out.tensor} depends on itself, and that is a cycle that is not an iterative rank", out.span,
                f"to build {out.tensor} by iteration, write its next iterate ({out.tensor}[v+1,...]) from the "
                "previous one and initialize the first",
            )

        # ---- operands
        for a in expr.accesses():
            self._check_access(i, a, out.tensor, kind)

        # ---- iteration space, filters, reductions
        space = set(out_vars)
        for a in expr.accesses():
            for ix in a.indices:
                space |= ix.variables()
        for v in sorted(positions(expr)):
            if v not in space:
                raise self.err(
                    f"position {v!r} is not a rank variable of this Einsum", e.span,
                    "a rank variable used as a value must index the output or an operand of the same Einsum")
        for f in filters:
            for t in sorted(reads_of(f)):
                read = self.tensors.get(t)
                if read is None:
                    raise self.err(f"the filter reads {t}, which is not an input or a tensor computed before",
                                   f.span, f"declare it: `input {t}[...]`")
                r = next(x for x in read_nodes(f) if x.tensor == t)
                if len(r.indices) != len(read.ranks):
                    raise self.err(f"{t} has {len(read.ranks)} ranks ({', '.join(read.ranks)}) but is read with "
                                   f"{len(r.indices)} indices", r.span or f.span)
                if t not in dict(self.c.densities):
                    raise self.err(f"the filter reads {t}: say how much of it a filter keeps", f.span,
                                   f"add `density {t}=KEEP` with `param KEEP=0.25` (the cost model's share of "
                                   "kept points; the executor reads the data)")
            for v in f.variables():
                if v not in space:
                    raise self.err(
                        f"filter variable {v!r} is not a rank variable of this Einsum", f.span,
                        "filters restrict the iteration space; use variables of the output or operands")
            for s in f.symbols():
                self._check_symbol(s, f.span)
        for v in space:
            self._rank_of_var(v, e.span)
        reduce = self._reductions(i, e, expr, out_vars, space)

        new = Einsum(Access(out.tensor, out.indices, out.span), expr, reduce, tuple(filters), e.span)

        # ---- record the tensor
        if info is None:
            empty = self._empty_value(new, kind)
            self.tensors[out.tensor] = TensorInfo(out.tensor, tuple(out_ranks), False, iter_axis, (i,), empty)
        else:
            empty = self._empty_value(new, kind) if kind == "update" else info.empty
            self.tensors[out.tensor] = replace(info, producers=info.producers + (i,), empty=empty)
        if iter_axis is not None and kind == "update":
            rk = out_ranks[iter_axis]
            if rk not in self.iterative:
                raise self.err(f"rank {rk} is iterative but has no stopping condition", out.span)
        self._kind_cache[i] = kind
        return new, kind

    def _reads(self, expr, tensor) -> bool:
        return any(a.tensor == tensor for a in expr.accesses())

    def _empty_value(self, e: Einsum, kind: str) -> float:
        if kind == "init" and isinstance(e.expr, Const):
            return e.expr.value
        if e.reduce:
            return float(self.ops[e.reduce[-1][1]].identity)
        derived = self._empty_of_one_operand(e.expr)
        if derived is not None:
            return derived
        if isinstance(e.expr, Call) and e.expr.op in self.ops:
            op = self.ops[e.expr.op]
            if op.merge == UNION and op.identity is not None:
                return float(op.identity)
        return 0.0

    def _empty_of_one_operand(self, expr) -> float | None:
        """A map of one tensor (a copy ``X[i] = RM[i]``, ``exp(RM[i])``, ``RM[i] * 2``): its empty
        coordinates are exactly the operand's, and hold what the map makes of the operand's empty
        value (``-inf`` stays ``-inf`` through a copy). None when the map reads more than one
        tensor, a size, or the result is not a number."""
        accs = expr.accesses()
        if len(accs) != 1 or accs[0].tensor not in self.tensors:
            return None
        empty = self.tensors[accs[0].tensor].empty
        if isinstance(expr, Access):
            return None if empty != empty else empty       # a copy or re-layout: its source's
        import numpy as np

        def value(x):
            if isinstance(x, Access):
                return np.float64(empty)
            if isinstance(x, Const):
                return np.float64(x.value)
            if isinstance(x, Call) and x.op in self.ops:
                with np.errstate(all="ignore"):
                    return self.ops[x.op].fn(*[value(a) for a in x.args])
            raise LookupError

        try:
            v = float(value(expr))
        except (LookupError, TypeError, ValueError):
            return None
        return None if v != v else v

    def _resolve(self, expr, i):
        """Bare names become size references or scalar tensors; calls are checked."""
        if isinstance(expr, Access):
            if not expr.indices and expr.tensor in self.ranks:
                return SizeRef(expr.tensor, expr.span)
            if not expr.indices and expr.tensor[:1].islower() and expr.tensor not in self.tensors:
                return Position(expr.tensor, expr.span)      # a rank variable's coordinate as a value
            return expr
        if isinstance(expr, Call):
            args = tuple(self._resolve(a, i) for a in expr.args)
            if expr.op not in self.ops:
                known = ", ".join(self.ops.functions())
                raise self.err(
                    f"unknown function {expr.op!r}", expr.span,
                    f"known functions: {known}; register new ones with "
                    "OperatorTable.with_function() and pass operators= to parse_cascade",
                )
            op = self.ops[expr.op]
            if op.arity >= 0 and len(args) != op.arity:
                raise self.err(f"{expr.op} takes {op.arity} operand(s) but is given {len(args)}", expr.span)
            if op.arity < 0 and len(args) < 1:
                raise self.err(f"{expr.op} needs at least one operand", expr.span)
            return Call(expr.op, args, expr.span)
        return expr

    def _blocked_rank(self, ix, outer: str, inner: str, out) -> str:
        """The rank a blocked output index ``x*X0+x0`` writes: the one X partitions (X = R/X0)."""
        x, x0 = rank_of(outer), rank_of(inner)
        decl = self.ranks.get(x)
        if (decl is None or not isinstance(decl.size, BinOp) or decl.size.op != "/"
                or not isinstance(decl.size.left, Sym) or not isinstance(decl.size.right, Sym)
                or decl.size.right.name != x0):
            raise self.err(f"the output index {ix.text()} of {out.tensor} writes blocks of {x0}, but {x} is not a "
                           f"partition R/{x0} of a rank", ix.span or out.span,
                           f"declare it (`ranks ... {x}=R/{x0}`) or read a tensor at {ix.text()} before")
        self._rank_of_var(inner, ix.span or out.span)
        return decl.size.left.name

    def _check_symbol(self, s: str, span):
        if s not in self.ranks:
            raise self.err(f"unknown size {s}", span, f"declare it: `ranks ... {s}` or `param {s}=...`")
        self._not_real(s, span)

    def _not_real(self, s: str, span):
        if s in self.ranks and self.ranks[s].real:
            raise self.err(
                f"{s} is a real-valued parameter ({self.ranks[s].text()}); it can be used as a value, not in an "
                "index, a filter, a size or a stopping condition", span,
                f"use it in an expression (`x / {s}`), or give it a whole-number default to make it a size")

    def _rank_of_var(self, v: str, span) -> str:
        rk = rank_of(v)
        if not v[0].islower():
            raise self.err(f"rank variable {v!r} must be lower case", span)
        if rk not in self.ranks:
            raise self.err(
                f"unknown rank variable {v!r}", span,
                f"declare its rank: `ranks ... {rk}` (or partition a declared rank, e.g. K[{v}*X0+x0])",
            )
        if self.ranks[rk].param:
            raise self.err(f"{rk} is a parameter, not a rank; {v!r} cannot index a tensor", span)
        return rk

    def _infer_partitions(self, a: Access):
        info = self.tensors.get(a.tensor)
        if info is None or len(a.indices) != len(info.ranks):
            return
        for ix, rk in zip(a.indices, info.ranks):
            # x*Y + y  on rank R  =>  X = R / Y
            if (isinstance(ix, BinOp) and ix.op == "+" and isinstance(ix.left, BinOp) and ix.left.op == "*"
                    and isinstance(ix.left.left, Var) and isinstance(ix.left.right, Sym)
                    and isinstance(ix.right, Var)):
                x = rank_of(ix.left.left.name)
                y_size = ix.left.right.name
                if x not in self.ranks and y_size in self.ranks:
                    self.ranks[x] = RankDecl(x, BinOp("/", Sym(rk), Sym(y_size), ix.span), False, ix.span)

    def _check_access(self, i: int, a: Access, out_tensor: str, kind: str):
        info = self.tensors.get(a.tensor)
        if info is None:
            if a.tensor in self.defined_later and self.defined_later[a.tensor] > i:
                later = self.c.einsums[self.defined_later[a.tensor]]
                raise self.err(
                    f"tensor {a.tensor} is used before it is defined (on line "
                    f"{later.span.line if later.span else '?'})", a.span,
                    f"a cascade is ordered: move the Einsum that computes {a.tensor} above this one",
                )
            known = ", ".join(self.tensors) or "none"
            raise self.err(f"unknown tensor {a.tensor}", a.span,
                           f"declare it with `input {a.tensor}[...]` or compute it first (known tensors: {known})")
        if len(a.indices) != len(info.ranks):
            shape = ", ".join(info.ranks) or "a scalar"
            raise self.err(
                f"{a.tensor} has {len(info.ranks)} rank(s) ({shape}) but is indexed with {len(a.indices)}",
                a.span, f"write {a.tensor}[{','.join(var_of(r) for r in info.ranks)}]",
            )
        for k, (ix, rk) in enumerate(zip(a.indices, info.ranks)):
            for s in ix.symbols():
                self._check_symbol(s, ix.span or a.span)
            for v in ix.variables():
                self._rank_of_var(v, ix.span or a.span)
            if info.iterative == k:
                it = self.iterative[rk]
                ik = _iter_index_kind(ix, it)
                if ik == "next":
                    if a.tensor == out_tensor:
                        raise self.err(
                            f"{a.tensor}[{it.var}+1] is read by the Einsum that computes it", a.span,
                            f"read the previous iterate {a.tensor}[{it.var}] instead")
                    has_update = any(self._kind_cache.get(p) == "update" for p in info.producers)
                    if not has_update:
                        upd = next((j for j, e in enumerate(self.c.einsums)
                                    if j > i and e.name == a.tensor), None)
                        where = f" (on line {self.c.einsums[upd].span.line})" if upd is not None and self.c.einsums[upd].span else ""
                        raise self.err(
                            f"{a.tensor}[{it.var}+1] is read before the Einsum that computes it{where}", a.span,
                            "move the update of the iterate above its first reader")
                elif ik == "other":
                    raise self.err(
                        f"{a.tensor} is iterative over {rk}; index it with {it.var} (previous iterate), "
                        f"{it.var}+1 (current) or {rk} (final), not {ix.text()!r}", ix.span or a.span)
                continue
            if isinstance(ix, Var):
                vr = rank_of(ix.name)
                if vr != rk and not self._same_size(vr, rk) and not self._concatenates(vr, rk):
                    raise self.err(
                        f"operand ranks disagree: rank {k} of {a.tensor} is {rk}, but it is indexed by "
                        f"{ix.name!r} (rank {vr})", ix.span or a.span,
                        f"index it with {var_of(rk)!r}, or declare {vr}={rk} if the two ranks have the same size "
                        f"({vr}={rk}+... to concatenate tensors along {vr})",
                    )

    def _concatenates(self, whole: str, part: str) -> bool:
        """Whether rank ``whole`` is declared as a sum with ``part`` first (``J=N+M``): a variable of J
        then indexes a tensor along N, and reads past N's end are absent, so ``A[j] + B[j-N]`` (with
        +'s union) concatenates A and B along J."""
        d = self.ranks.get(whole)
        if d is None or not isinstance(d.size, BinOp):
            return False
        terms, todo = [], [d.size]
        while todo:
            x = todo.pop()
            if isinstance(x, BinOp) and x.op == "+":
                todo += [x.right, x.left]
            else:
                terms.append(x)
        return bool(terms) and isinstance(terms[0], Sym) and terms[0].name == part

    def _same_size(self, r1: str, r2: str) -> bool:
        d1, d2 = self.ranks.get(r1), self.ranks.get(r2)
        if d1 is not None and isinstance(d1.size, Sym) and d1.size.name == r2:
            return True
        if d2 is not None and isinstance(d2.size, Sym) and d2.size.name == r1:
            return True
        it = self.iterative.get(r1)
        if it is not None and isinstance(it.bound, Sym) and it.bound.name == r2:
            return True
        return False

    def _reductions(self, i, e, expr, out_vars, space):
        reduced = [v for v in _space_order(out_vars, expr, e.filters) if v not in out_vars and v in space]
        written = self._written_reductions.get(i)
        if written is None:
            written = [(op, None, [Var(v) for v in vs]) for op, vs in _group_explicit(e.reduce)]
        explicit: list[tuple[str, str]] = []
        for op, span, vs in written:
            if op not in self.ops or not self.ops[op].can_reduce:
                raise self.err(
                    f"{op!r} cannot be used as a reduction", span or e.span,
                    f"reduction operators: {', '.join(self.ops.reducers())}")
            for v in vs:
                if v.name in out_vars:
                    raise self.err(
                        f"{v.name!r} is in the output of {e.name}, so it is not reduced", v.span or span or e.span,
                        f"remove {v.name!r} from the output to reduce it")
                if v.name not in space:
                    raise self.err(f"reduced variable {v.name!r} does not appear in {e.name}", v.span or span or e.span)
                if any(v.name == w for w, _ in explicit):
                    raise self.err(f"{v.name!r} is reduced twice", v.span or span or e.span)
                explicit.append((v.name, op))
        names = {v for v, _ in explicit}
        return tuple([(v, "+") for v in reduced if v not in names] + explicit)


def _no_zero_divisor(chk, ix):
    """A size divided by a literal zero is refused where it is written."""
    if isinstance(ix, BinOp):
        if ix.op in ("/", "//", "%") and isinstance(ix.right, Num) and ix.right.value == 0:
            raise chk.err(f"{ix.text()} divides by zero", ix.span, "divide by a non-zero size")
        _no_zero_divisor(chk, ix.left)
        _no_zero_divisor(chk, ix.right)


def _check_workload_expr(chk, expr, rank):
    """A product or quotient of workload fields and whole numbers: ``keys``, ``batch*queries``,
    ``heads/kv_heads``."""
    if isinstance(expr, Var):
        if expr.name not in WORKLOAD_FIELDS:
            raise chk.err(f"unknown workload field {expr.name!r} for {rank}", expr.span,
                          f"workload fields: {', '.join(WORKLOAD_FIELDS)}")
        return
    if isinstance(expr, Num):
        if expr.value <= 0:
            raise chk.err(f"a workload factor must be positive, not {expr.value}", expr.span)
        return
    if isinstance(expr, BinOp) and expr.op in ("*", "/"):
        _check_workload_expr(chk, expr.left, rank)
        _check_workload_expr(chk, expr.right, rank)
        return
    raise chk.err(f"the size of {rank} must be a product or quotient of workload fields, not {expr.text()!r}",
                  getattr(expr, "span", None), "e.g. `workload T=batch*queries R=heads/kv_heads`")


def _group_explicit(reduce):
    """IR reductions -> [(op, [vars])] preserving order (used when building from Python)."""
    groups = []
    for v, op in reduce:
        groups.append((op, [v]))
    return groups


def _space_order(out_vars, expr, filters):
    order = list(out_vars)
    from ._ir import _ordered_vars

    for a in expr.accesses():
        for ix in a.indices:
            for v in _ordered_vars(ix):
                if v not in order:
                    order.append(v)
    for f in filters:
        for v in _ordered_vars(f.left) + _ordered_vars(f.right):
            if v not in order:
                order.append(v)
    return order


def parse_cascade(text: str, file: str = "<string>", operators: OperatorTable | None = None) -> Cascade:
    """Parse cascade text into a checked :class:`Cascade`.

    Raises
    ------
    CascadeError
        With the file, line and column of the problem and what to do about it.

    Examples
    --------
    >>> parse_cascade("ranks K\\ninput A[k]\\nY = A[k] * B[k]\\n")
    Traceback (most recent call last):
    ...
    einforge.einsum._errors.CascadeError: <string>:3:12: unknown tensor B
        Y = A[k] * B[k]
                   ^
    declare it with `input B[...]` or compute it first (known tensors: A)
    """
    from ._parse import parse_statements

    p = parse_statements(text, file)
    ranks = tuple(p.ranks)
    inputs = []
    names = {r.name for r in ranks}
    for tok, idx in p.inputs:
        rks = []
        for v in idx:
            if not v.text[0].islower():
                raise CascadeError(
                    f"input {tok.text} must be declared with rank variables (lower case), not {v.text!r}",
                    v.span(p.source), f"write {tok.text}[{','.join(x.text.lower() for x in idx)}]")
            if rank_of(v.text) not in names:
                raise CascadeError(
                    f"unknown rank variable {v.text!r} in input {tok.text}", v.span(p.source),
                    f"declare its rank: `ranks ... {rank_of(v.text)}`")
            rks.append(rank_of(v.text))
        inputs.append(TensorDecl(tok.text, tuple(rks), tok.span(p.source)))
    for tok in p.outputs:
        if tok.text in {t.name for t in inputs}:
            raise CascadeError(f"{tok.text} is an input, not a computed tensor", tok.span(p.source),
                               "list computed tensors in the `output` line")
    outputs = tuple(t.text for t in p.outputs)
    einsums = tuple(p.einsums)
    c = object.__new__(Cascade)
    values = dict(
        name=p.name or _stem(file), ranks=ranks, inputs=tuple(inputs), einsums=einsums,
        stop=tuple(p.stop), outputs=outputs, description=p.description,
        workload=tuple((tok.text, expr) for tok, expr in p.workload), family=p.family,
        densities=tuple((t.text, float(v.text) if v.kind == "NUMBER" else v.text) for t, v in p.densities),
        operators=operators or DEFAULT_OPERATORS, source=p.source,
    )
    for f in fields(Cascade):
        object.__setattr__(c, f.name, values[f.name])
    # the reductions as written (operator, span, variables) let errors point at the text
    _finish(c, p.reductions)
    return c


_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(-[A-Za-z0-9_]+)*")


def _stem(file: str) -> str:
    import os

    base = os.path.basename(file).rsplit(".", 1)[0]
    return base if _NAME_RE.fullmatch(base) else "cascade"
