"""Pass analysis: the lower bound on passes a cascade makes over a rank, whatever the mapping.

The rules are those of the FuseMax paper (section III), made operational (research notes 2.3):

* an Einsum *traverses* a rank R when one of its rank variables ranges over R (or a rank declared
  equal to R, such as an iterative rank ``I=K`` indexing ``A[i]``);
* a traversal that reduces R away produces an R-*summary*, complete only once the whole fiber has
  been consumed; an Einsum that traverses R and needs a summary starts a new pass;
* reading the previous or current iterate of an iterative rank is loop-carried (same pass);
  reading the final iterate is a summary, which costs a pass only if its reader traverses R again.

For a partitioned rank (M into M1 tiles of M0), the analysis of M counts passes over the whole
fiber at tile granularity: an Einsum over whole tiles (m1 and m0) is a traversal; one over tile
summaries only (m1 alone) is fused into the pass that streams its inputs or, when it needs a
completed summary, runs at the *boundary* between two passes, where it re-reads the per-tile
summaries (that re-read counts: the summaries must be kept). M1 reports the same as M; M0 is
analysed tile by tile (several passes over an M0 tile only cost a tile-sized buffer).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import networkx as nx
import sympy

from ._cascade import Cascade
from ._errors import CascadeError
from ._ir import BinOp, Sym, Var, rank_of

__all__ = ["PassReport", "passes", "analyze", "Analysis", "rank_symbols"]


@dataclass(frozen=True)
class PassReport:
    """Passes of a cascade over one rank.

    Attributes
    ----------
    rank : the analysed rank
    passes : the lower bound on passes over it
    einsum_pass : label -> pass level, for every Einsum that traverses the rank
    role : label -> ``"pass"`` (traverses whole fibers), ``"fused"`` (over tile summaries, fused
        into a pass) or ``"boundary"`` (over tile summaries, between two passes)
    reads : tensor -> pass levels in which its fiber along the rank is read
    barriers : reductions whose completion forces a later pass
    fusion_groups : Einsums of each pass (fusable at any tile granularity), pass 1 first
    boundary : pass k -> Einsums run after pass k from completed summaries
    partition : ``(outer, inner)`` sub-ranks when the rank is partitioned
    footprint, footprint_total, traffic : sympy expressions (see :func:`analyze`)
    """

    rank: str
    passes: int
    einsum_pass: dict = field(default_factory=dict)
    role: dict = field(default_factory=dict)
    reads: dict = field(default_factory=dict)
    barriers: tuple = ()
    fusion_groups: tuple = ()
    boundary: dict = field(default_factory=dict)
    partition: tuple | None = None
    produced: dict = field(default_factory=dict)
    row_ranks: tuple = ()
    footprint: object = sympy.Integer(0)
    footprint_total: object = sympy.Integer(0)
    traffic: object = sympy.Integer(0)

    @property
    def multi_pass_tensors(self) -> dict[str, tuple[int, ...]]:
        """Tensors whose fiber is read in more than one pass: buffered, spilled or recomputed."""
        return {t: lv for t, lv in self.reads.items() if len(lv) > 1}

    @property
    def live_across_passes(self) -> dict[str, tuple[int, int]]:
        """Tensors whose fiber must survive a pass boundary: ``(first, last)`` pass touching it.

        The multi-pass tensors, and intermediates written in one pass and read in a later one.
        """
        out = {}
        for t, lv in self.reads.items():
            first = min((self.produced.get(t, min(lv)),) + tuple(lv))
            if max(lv) > first:
                out[t] = (first, max(lv))
        return out


def _class_of(c: Cascade, rank: str) -> set[str]:
    """Ranks that traverse the same fiber as ``rank``: itself and the iterative ranks that step
    along it (``I`` in ``stop i >= K`` whose variable indexes a tensor of rank K, as ``A[i]``).

    Ranks that are only declared equal in size (``P=M`` for queries and keys projected from one
    sequence) are different ranks: equal sizes do not make one fiber."""
    out = {rank}
    changed = True
    while changed:
        changed = False
        for rk, it in c.iterative_ranks.items():
            group = {rk} | _indexed_ranks(c, it.var)
            if group & out and not group <= out:
                out |= group
                changed = True
    return out


def _indexed_ranks(c: Cascade, var: str) -> set[str]:
    """Tensor ranks that the variable ``var`` indexes directly somewhere (``A[i]`` with A's rank K)."""
    found = set()
    for e in c.einsums:
        for a in e.expr.accesses():
            info = c.tensors[a.tensor]
            for k, (ix, rk) in enumerate(zip(a.indices, info.ranks)):
                if isinstance(ix, Var) and ix.name == var and k != info.iterative and rank_of(var) != rk:
                    found.add(rk)
    return found


def _partition_of(c: Cascade, rank: str) -> tuple[str, str] | None:
    """``(outer, inner)`` if some rank is declared ``outer = rank/inner``."""
    for r in c.ranks:
        if (isinstance(r.size, BinOp) and r.size.op == "/" and isinstance(r.size.left, Sym)
                and r.size.left.name == rank and isinstance(r.size.right, Sym)):
            return r.name, r.size.right.name
    return None


def _parent_of(c: Cascade, rank: str) -> str | None:
    for r in c.ranks:
        p = _partition_of(c, r.name)
        if p is not None and rank in p:
            return r.name
    return None


def passes(cascade: Cascade, rank: str) -> PassReport:
    """The pass report of ``cascade`` over ``rank`` (a rank or a sub-rank of a partition).

    Examples
    --------
    >>> from einforge.einsum import library
    >>> c = library()["attention-3pass"].load()
    >>> r = passes(c, "M")
    >>> r.passes, r.multi_pass_tensors
    (3, {'QK': (1, 2), 'SN': (2, 3)})
    >>> passes(library()["attention-1pass"].load(), "M0").passes
    2
    """
    names = [r.name for r in cascade.ranks if not r.param]
    if rank not in names:
        raise CascadeError(f"{cascade.name} has no rank {rank}", None, f"its ranks are {', '.join(names)}")
    parent = _parent_of(cascade, rank)
    part = _partition_of(cascade, rank)
    if parent is not None and part is None:
        outer, inner = _partition_of(cascade, parent)
        if rank == outer:
            rep = _analyse(cascade, parent, (outer, inner))
            return _relabel(_with_formulas(cascade, rep), rank)
        return _with_formulas(cascade, _analyse(cascade, rank, None))
    return _with_formulas(cascade, _analyse(cascade, rank, part))


def _relabel(rep: PassReport, rank: str) -> PassReport:
    from dataclasses import replace

    return replace(rep, rank=rank)


def _analyse(c: Cascade, rank: str, part: tuple[str, str] | None) -> PassReport:
    cls = _class_of(c, rank)
    full_vars = {r.lower() for r in cls}
    outer_vars: set[str] = set()
    inner_vars: set[str] = set()
    carry_ranks = set(cls)
    if part is not None:
        outer_cls = _class_of(c, part[0])
        outer_vars = {r.lower() for r in outer_cls}
        inner_vars = {r.lower() for r in _class_of(c, part[1])}
        carry_ranks |= outer_cls

    def carries(t: str) -> bool:
        return bool(set(c.tensors[t].ranks) & carry_ranks)

    def final_read(a) -> bool:
        info = c.tensors[a.tensor]
        return (info.iterative is not None and info.ranks[info.iterative] in carry_ranks
                and c.access_kind(a) == "final")

    state: dict[str, tuple[str, int]] = {}   # tensor -> ("stream"|"after"|"const", level)
    einsum_pass: dict[str, int] = {}
    role: dict[str, str] = {}
    reads: dict[str, set[int]] = {}
    after_of: dict[str, int] = {}            # label -> summary level it produced
    produced: dict[str, int] = {}            # computed tensor carrying the rank -> level written
    reducers: set[str] = set()               # labels that reduce the rank away

    def level_of(a):
        t = a.tensor
        info = c.tensors[t]
        if info.is_input:
            return ("const", 0)
        st = state.get(t, ("const", 0))
        if final_read(a) and st[0] == "stream":
            return ("after", st[1])
        return st

    for i, e in enumerate(c.einsums):
        label = c.label(i)
        if c.einsum_kind(i) == "init":
            state.setdefault(e.name, ("const", 0))
            continue
        vs = set(e.variables())
        reduced = {v for v, _ in e.reduce}
        has_full = bool(vs & full_vars) or (part is not None and bool(vs & outer_vars) and bool(vs & inner_vars))
        has_outer_only = part is not None and not has_full and bool(vs & outer_vars)
        accesses = e.expr.accesses()
        if has_full:
            need = 0
            for a in accesses:
                kind, lv = level_of(a)
                need = max(need, lv if kind == "stream" else (lv + 1 if kind == "after" else 0))
            p = max(1, need)
            einsum_pass[label] = p
            role[label] = "pass"
            for a in accesses:
                if carries(a.tensor) and not final_read(a):
                    reads.setdefault(a.tensor, set()).add(p)
            iterating = c.einsum_kind(i) == "update" or any(
                c.tensors[a.tensor].iterative is not None and c.access_kind(a) in ("prev", "next") for a in accesses)
            if need == 0 and carries(e.name) and not e.reduce and not iterating:
                # an element-wise function of inputs alone: fresh data that any pass can produce
                # (a re-layout such as BK = K[e, m1*M0+m0])
                state[e.name] = ("const", 0)
            elif carries(e.name):
                state[e.name] = ("stream", p)
                produced.setdefault(e.name, p)
            else:
                state[e.name] = ("after", p)
                after_of[label] = p
            if reduced & (full_vars | outer_vars | inner_vars if part else full_vars):
                reducers.add(label)
        elif has_outer_only:
            m_l, m_s = 0, -1
            for a in accesses:
                kind, lv = level_of(a)
                if kind == "stream":
                    m_l = max(m_l, lv)
                elif kind == "after":
                    m_s = max(m_s, lv)
            reduces_outer = bool(reduced & outer_vars)
            if reduces_outer:
                reducers.add(label)
            if m_s < 0 or m_l > m_s:
                lvl = max(1, m_l)
                einsum_pass[label] = lvl
                role[label] = "fused"
                read_at = lvl
                if reduces_outer or not carries(e.name):
                    state[e.name] = ("after", lvl)
                    after_of[label] = lvl
                else:
                    state[e.name] = ("stream", lvl)
                    produced.setdefault(e.name, lvl)
            else:
                lvl = max(m_l, m_s)
                einsum_pass[label] = lvl
                role[label] = "boundary"
                read_at = lvl + 1
                state[e.name] = ("after", lvl)
                after_of[label] = lvl
                if carries(e.name):
                    produced.setdefault(e.name, lvl + 1)
            for a in accesses:
                if carries(a.tensor) and not final_read(a):
                    reads.setdefault(a.tensor, set()).add(read_at)
        else:
            lv = -1
            any_dep = False
            for a in accesses:
                kind, x = level_of(a)
                if kind != "const":
                    any_dep = True
                    lv = max(lv, x)
            prev = state.get(e.name)
            if any_dep:
                state[e.name] = ("after", lv)
            elif prev is None:
                state[e.name] = ("const", 0)

    n = max([0] + list(einsum_pass.values()) + [lv for s in reads.values() for lv in s])
    dag = c.dag()
    barriers = []
    effective = {lab: lv + (1 if role[lab] == "boundary" else 0) for lab, lv in einsum_pass.items()}
    for label, lv in after_of.items():
        if label in reducers and any(effective.get(d, 0) > lv for d in nx.descendants(dag, label)):
            barriers.append(label)
    groups = []
    boundary: dict[int, list[str]] = {}
    for k in range(1, n + 1):
        groups.append(tuple(lab for lab in c.labels if einsum_pass.get(lab) == k and role[lab] != "boundary"))
        b = [lab for lab in c.labels if einsum_pass.get(lab) == k and role[lab] == "boundary"]
        if b:
            boundary[k] = tuple(b)
    return PassReport(
        rank=rank, passes=n, einsum_pass=einsum_pass, role=role,
        reads={t: tuple(sorted(v)) for t, v in reads.items()},
        barriers=tuple(barriers), fusion_groups=tuple(groups), boundary=boundary, partition=part,
        produced=produced,
    )


# ------------------------------------------------------------------------------------------------
# Symbolic footprint and traffic
# ------------------------------------------------------------------------------------------------


def rank_symbols(c: Cascade) -> dict[str, sympy.Expr]:
    """Sympy expressions of every rank size; derived sizes in terms of the free ones.

    Also ``s`` (bytes per word) and ``capacity`` (buffer capacity in bytes) are the symbols used by the
    traffic formulas.
    """
    syms: dict[str, sympy.Expr] = {}
    for r in c.ranks:
        if not r.derived:
            syms[r.name] = sympy.Symbol(r.name, positive=True, integer=True)
    pending = [r for r in c.ranks if r.derived]
    for _ in range(len(pending) + 1):
        for r in list(pending):
            if r.size.symbols() <= syms.keys():
                syms[r.name] = _to_sympy(r.size, syms)
                pending.remove(r)
    for r in pending:
        syms[r.name] = sympy.Symbol(r.name, positive=True, integer=True)
    return syms


def _to_sympy(ix, syms):
    if isinstance(ix, Sym):
        return syms[ix.name]
    if isinstance(ix, Var):
        return sympy.Symbol(ix.name)
    if isinstance(ix, BinOp):
        a, b = _to_sympy(ix.left, syms), _to_sympy(ix.right, syms)
        return {"+": a + b, "-": a - b, "*": a * b, "/": a / b, "//": sympy.floor(a / b),
                "%": sympy.Mod(a, b)}[ix.op]
    return sympy.Integer(ix.value)


S_WORD = sympy.Symbol("s", positive=True)
CAPACITY = sympy.Symbol("capacity", positive=True)   # lower case: never a rank name


def _tensor_size(c: Cascade, t: str, syms, skip=()) -> sympy.Expr:
    info = c.tensors[t]
    out = sympy.Integer(1)
    for k, r in enumerate(info.ranks):
        if r in skip:
            continue
        if k == info.iterative:
            out *= _to_sympy(c.iterative_ranks[r].bound, syms) + 1
        else:
            out *= syms[r]
    return out


def _with_formulas(c: Cascade, rep: PassReport) -> PassReport:
    from dataclasses import replace

    try:
        syms = rank_symbols(c)
    except ZeroDivisionError:
        raise CascadeError(f"a size of {c.name} divides by zero", None, "divide by non-zero sizes") from None
    live = rep.live_across_passes
    if not live:
        return replace(rep, footprint=sympy.Integer(0), footprint_total=sympy.Integer(0),
                       traffic=_compulsory(c, syms))
    out_ranks = set()
    for o in c.outputs:
        out_ranks |= set(c.tensors[o].ranks)
    rank_set = _class_of(c, rep.rank)
    if rep.partition:
        outer_cls = _class_of(c, rep.partition[0])
        if rep.rank in outer_cls or rep.partition[1] not in rank_set:
            rank_set |= outer_cls | {rep.partition[1]}
    parent = _parent_of(c, rep.rank)
    if parent is not None and _partition_of(c, parent)[1] == rep.rank:
        out_ranks.add(_partition_of(c, parent)[0])   # an inner tile's rows include its outer index
    row = None
    for t in live:
        others = set(c.tensors[t].ranks) - rank_set
        row = others if row is None else (row & others)
    row = tuple(r for r in c.rank_names if r in (row or set()) & out_ranks)
    per_row, total = [], []
    for b in range(1, rep.passes + 1):
        now = [t for t, (first, last) in live.items() if first <= b < last]
        if now:
            per_row.append(sum(_tensor_size(c, t, syms, skip=row) for t in now) * S_WORD)
            total.append(sum(_tensor_size(c, t, syms) for t in now) * S_WORD)
    footprint = sympy.Max(*per_row) if len(per_row) > 1 else per_row[0]
    footprint_total = sympy.Max(*total) if len(total) > 1 else total[0]
    # spilled: an intermediate is written once and read back in every later pass that needs it;
    # an input is read again in every pass after its first
    spill = sympy.Integer(0)
    for t, (first, last) in live.items():
        size = _tensor_size(c, t, syms) * S_WORD
        levels = rep.reads[t]
        if c.tensors[t].is_input:
            spill += (len(levels) - 1) * size
        else:
            spill += (1 + sum(1 for lv in levels if lv > first)) * size
    traffic = _compulsory(c, syms) + spill * sympy.Max(0, 1 - CAPACITY / footprint_total)
    return replace(rep, row_ranks=row, footprint=sympy.simplify(footprint),
                   footprint_total=sympy.simplify(footprint_total), traffic=traffic)


def _compulsory(c: Cascade, syms) -> sympy.Expr:
    total = sympy.Integer(0)
    for t in c.inputs:
        total += _tensor_size(c, t.name, syms)
    for o in c.outputs:
        total += _tensor_size(c, o, syms)
    return total * S_WORD


# ------------------------------------------------------------------------------------------------
# Whole-cascade analysis
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Analysis:
    """Pass reports for every rank a cascade traverses."""

    cascade: str
    reports: dict

    @property
    def passes(self) -> dict[str, int]:
        return {r: rep.passes for r, rep in self.reports.items()}

    def to_json(self) -> dict:
        return {
            "cascade": self.cascade,
            "passes": self.passes,
            "einsum_pass": {r: dict(rep.einsum_pass) for r, rep in self.reports.items()},
            "multi_pass_tensors": {r: {t: list(lv) for t, lv in rep.multi_pass_tensors.items()}
                                   for r, rep in self.reports.items()},
            "fusion_groups": {r: [list(g) for g in rep.fusion_groups] for r, rep in self.reports.items()},
            "boundary": {r: {str(k): list(v) for k, v in rep.boundary.items()} for r, rep in self.reports.items()},
            "barriers": {r: list(rep.barriers) for r, rep in self.reports.items()},
            "row_ranks": {r: list(rep.row_ranks) for r, rep in self.reports.items()},
            "footprint": {r: str(rep.footprint) for r, rep in self.reports.items()},
            "footprint_total": {r: str(rep.footprint_total) for r, rep in self.reports.items()},
            "traffic": {r: str(rep.traffic) for r, rep in self.reports.items()},
        }


def analyze(cascade: Cascade, ranks: list[str] | None = None) -> Analysis:
    """Pass reports over ``ranks`` (default: every rank some Einsum traverses, sub-ranks included).

    Footprints are live bytes that a k-pass cascade must keep between passes: ``footprint`` per
    row (one coordinate of the ``row_ranks``, e.g. one query), ``footprint_total`` for the whole
    problem. ``traffic`` is DRAM bytes as a function of the buffer ``capacity``: compulsory
    traffic plus, for the share of the live footprint that does not fit, one write and the
    re-reads of every multi-pass tensor. Symbols: rank names, ``s`` (bytes per word), ``capacity``.
    """
    used = set()
    for e in cascade.einsums:
        for v in e.variables():
            if rank_of(v) in {r.name for r in cascade.ranks}:
                used |= _class_of(cascade, rank_of(v))
    if ranks is None:
        ranks = []
        for r in cascade.ranks:
            if r.param:
                continue
            part = _partition_of(cascade, r.name)
            if r.name in used or (part is not None and (part[0] in used or part[1] in used)):
                ranks.append(r.name)
    return Analysis(cascade.name, {r: passes(cascade, r) for r in ranks})
