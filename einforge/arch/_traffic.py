"""Where a mapping keeps each tensor, and the DRAM traffic and buffer/register accesses that follow, for
the tiled (FuseMax), unfused and FLAT mappings; and the checks of the resources a search could
otherwise exploit (buffer bandwidth, the grid-lane link, the grid's registers).
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field, replace

from ._binding import Binding, is_layout
from ._context import _Ctx, _read_pattern
from ._plan import _E, _loop_members, _Plan, _spatial_of, instance_ranks, plan_memo
from ._spec import ArchError, Architecture

__all__ = []


@dataclass
class _Access:
    traffic_words: float = 0.0
    l3_reads: float = 0.0
    l3_writes: float = 0.0
    shared_rf_reads: float = 0.0
    shared_rf_writes: float = 0.0
    pe_rf: Counter = field(default_factory=Counter)     # (array, "read"|"write") -> accesses
    per_einsum: Counter = field(default_factory=Counter)  # (label, component) -> accesses
    details: dict = field(default_factory=dict)
    phases: list = field(default_factory=list)          # unfused: (labels, traffic words)
    residency: _Residency | None = None                 # tiled: the part the buffer's capacity decides


@dataclass(frozen=True)
class _Residency:
    """What the tiled mapping's query residency needs from a design point, buffer capacity aside:
    one block of ``p0`` query rows holds ``row_words`` per row, one key/value tile ``tile_words``;
    ``streamed_words`` (the tile inputs) are fetched once per group of resident blocks."""

    word_bytes: int
    share: float
    row_words: float
    tile_words: float
    p0: int
    rows_total: int
    streamed_words: float
    skips_tiles: bool
    cascade: str
    max_blocks: int | None = None       # the binding's cap on resident blocks
    divide: bool = False                # the resident blocks divide the blocks (the binding's resident_groups)


def resident_blocks(r: _Residency, capacity: float, arch_name: str) -> int:
    """How many blocks of query rows (P1) a buffer of ``capacity`` bytes keeps resident.

    Raises
    ------
    ArchError
        If one block of query rows and a tile do not fit.
    """
    s = r.word_bytes
    cap = r.share * capacity
    blocks = max(1, math.ceil(r.rows_total / r.p0))
    avail = cap - s * r.tile_words
    per_block = s * r.row_words * min(r.p0, r.rows_total)
    if avail <= 0 or avail < per_block:
        raise ArchError(
            f"{r.cascade} does not fit the {cap / 2**20:g} MiB buffer of {arch_name}: one block of "
            f"{min(r.p0, r.rows_total)} query rows needs {(s * r.tile_words + per_block) / 2**20:.3g} MiB; use a "
            f"bigger buffer, a cascade that tiles the key rank (one pass keeps no whole rows), or --binding "
            f"unfused (intermediates spill to DRAM)")
    fits = int(avail // per_block)
    most = fits if r.max_blocks is None else min(fits, r.max_blocks)
    if r.divide:
        return _largest_divisor(blocks, most)
    # the fewest groups of resident blocks the buffer holds, as equal as can be (the last may be smaller)
    return balanced_tiles(blocks, most)[0]


def resident(acc: _Access, ctx: _Ctx, capacity: float, arch_name: str) -> _Access:
    """The access counts of a tiled mapping (``acc`` with a residency) for a buffer of ``capacity``
    bytes: as many query blocks resident (P1) as the buffer's share holds, the tile inputs streamed
    once per group (P2 groups), minus the tiles a whole group skips. Returns a new record.

    Raises
    ------
    ArchError
        If one block of query rows and a tile do not fit.
    """
    r = acc.residency
    p1 = resident_blocks(r, capacity, arch_name)
    p2 = math.ceil(max(1, math.ceil(r.rows_total / r.p0)) / p1)
    # tiles a whole resident group of P1 blocks skips are never fetched
    fetched = ctx.tile_visits(p1 * r.p0) if r.skips_tiles else 1.0
    words = r.streamed_words * p2 * fetched
    out = replace(acc, details={**acc.details, "P1": p1, "P2": p2, "tiles_fetched": fetched})
    out.traffic_words += words
    out.l3_writes += words
    return out


def _aliases(plan: _Plan) -> dict[str, str]:
    """Re-layout outputs and the input they copy (BK -> K)."""
    out = {}
    for p in plan.einsums:
        e = plan.cascade.einsums[p.index]
        if p.array is None and is_layout(e):
            src = e.expr.tensor
            out[p.output] = out.get(src, src)
    return out


def _consumers(plan: _Plan) -> dict[str, list[_E]]:
    out: dict[str, list[_E]] = {}
    for p in plan.einsums:
        if p.array is None:
            continue
        for a in dict.fromkeys(a.tensor for a in p.accesses):
            out.setdefault(a, []).append(p)
    return out


def _one_d_sequence(plan: _Plan, members=None) -> list[str]:
    return [p.label for p in plan.einsums if p.array == "1d" and (members is None or p.label in members)]


def _lower_ranks(plan: _Plan) -> dict:
    """Each tensor's rank variables (lower-case names) in ``plan``'s cascade."""
    return plan_memo(plan, "rank variables", lambda: {
        t: frozenset(r.lower() for r in info.ranks) for t, info in plan.cascade.tensors.items()})


@dataclass(frozen=True)
class _TiledLayout:
    """What the tiled mapping's accesses depend on apart from the sizes (for one placement of the
    computed tensors): which ranks are rows, tiles or outer loops, which inputs stay resident, and
    what each Einsum's reads and writes cost (``actions``, see :func:`_tiled_actions`)."""

    outer: frozenset
    row_ranks: tuple
    outer_ranks: tuple
    row_inputs: tuple          # inputs carrying the row rank (resident per block of rows)
    tile_inputs: tuple         # the others (streamed a tile at a time)
    row_word_inputs: tuple     # inputs an Einsum inside the loop reads: per-row or per-tile words
    tile_word_inputs: tuple
    row_kept: tuple            # (tensor, rank variable of its one resident iterate, divided by the loop)
    p0: int | None             # the 2D array's extent of the row rank (None: the 1D lanes)
    actions: tuple


def _placement(plan: _Plan, shared: bool) -> tuple[dict, tuple]:
    """Where each computed tensor of a tiled mapping lives (``shared``: the 1D array has a shared
    register file), and the 1D tensors whose place depends on the sizes (kept in a lane's registers
    when they fit its depth): (place, ((tensor, producer), ...))."""
    c = plan.cascade
    alias = _aliases(plan)
    cons = _consumers(plan)
    tile_v = plan.tile_rank.lower() if plan.tile_rank else None
    seq1d = _one_d_sequence(plan)
    ranks_of = _lower_ranks(plan)
    producer = {p.output: p for p in plan.einsums if p.array}
    place, by_size = {}, []
    for t, info in c.tensors.items():
        p = producer.get(t)
        if info.is_input or t in alias or p is None:
            continue
        users = cons.get(t, [])
        if t in c.outputs and not users:
            place[t] = "dram"
        elif info.iterative is not None:
            place[t] = "l3"
        elif all(u.array == p.array for u in users):
            if p.array != "1d":
                place[t] = "pe_rf"
            elif len(users) == 1 and _forwarded(seq1d, p, users[0]):
                place[t] = "forward"
            else:
                place[t] = "lane?"
                by_size.append((t, p))
        elif tile_v is not None and tile_v in ranks_of[t]:
            place[t] = "l3"
        else:
            place[t] = "shared_rf" if shared else "l3"
    return place, tuple(by_size)


def _forwarded(seq1d: list, prod: _E, consumer: _E) -> bool:
    """Whether the 1D array hands ``prod``'s output straight to ``consumer``, its next Einsum."""
    if prod.array != "1d" or consumer.array != "1d":
        return False
    k = seq1d.index(prod.label)
    return k + 1 < len(seq1d) and seq1d[k + 1] == consumer.label


def _tiled_layout(plan: _Plan, place: dict, shared: bool) -> _TiledLayout:
    c = plan.cascade
    outer = frozenset({plan.loop_var} if plan.loop_var else ())
    alias = _aliases(plan)
    ranks_of = _lower_ranks(plan)
    row_v = plan.row_rank.lower() if plan.row_rank else None

    def has(t, v):
        return v is not None and v in ranks_of[t]

    # rows: the query-like ranks only the row inputs have (P, and R for grouped queries), spread
    # over the columns P0 at a time, P1 blocks resident; ranks the row and tile inputs share (B, G)
    # are independent outer loops; the rest of a tile input is one key/value tile per step
    row_inputs = tuple(t.name for t in c.inputs if has(t.name, row_v))
    tile_inputs = tuple(t.name for t in c.inputs if not has(t.name, row_v))
    reduced = {v for p in plan.einsums for v in p.reduced}
    rset = {r for t in row_inputs for r in c.tensors[t].ranks if r.lower() not in reduced}
    tset = {r for t in tile_inputs for r in c.tensors[t].ranks}
    row_words, tile_words = [], []
    for p in plan.einsums:
        if p.array is None or (outer and not (outer & set(p.vars))):
            continue
        for a in p.accesses:
            t = alias.get(a.tensor, a.tensor)
            if c.tensors[t].is_input and t not in row_words + tile_words:
                (row_words if has(t, row_v) else tile_words).append(t)
    row_kept = []
    for t, where in place.items():
        if where == "l3" and has(t, row_v):
            info = c.tensors[t]
            it = info.ranks[info.iterative].lower() if info.iterative is not None else None
            row_kept.append((t, it, it is None and bool(outer) and has(t, next(iter(outer), None))))
    p0 = next((n for d, v, n in _spatial_of(plan, "2d") if v == row_v), None)
    return _TiledLayout(outer, tuple(r for r in rset if r not in tset),
                        tuple(r for r in rset if r in tset), row_inputs, tile_inputs, tuple(row_words),
                        tuple(tile_words), tuple(row_kept), p0, _tiled_actions(plan, place, alias, shared, outer))


def _tiled_actions(plan: _Plan, place: dict, alias: dict, shared: bool, outer: frozenset) -> tuple:
    """Each Einsum's reads and writes as (component, Einsum, counted as, what): components
    ``l3_reads`` ... ``pe_rf_write``; counted as an operand's ``reads`` (what: its read pattern inside
    the ``outer`` loop), a tensor's ``size``, its size times the visited share (``visits``) or times
    the Einsum's present share (``present``)."""
    c = plan.cascade
    cross = "shared_rf_reads" if shared else "l3_reads"
    producer = {p.output: p for p in plan.einsums if p.array}
    seq1d = _one_d_sequence(plan)
    out, prev_read = [], set()
    for p in plan.einsums:
        if p.array is None:
            continue
        for a in dict.fromkeys(p.accesses):
            t = alias.get(a.tensor, a.tensor)
            info = c.tensors[t]
            kind = c.access_kind(a)
            if info.is_input or (info.iterative is not None and kind == "final"):
                out.append(("l3_reads", p, "reads", _read_pattern(p, a, outer)))
            elif info.iterative is not None:
                if kind == "prev" and t not in prev_read:       # one read of the previous iterate per visited step
                    prev_read.add(t)
                    out.append(("l3_reads", p, "visits", t))
                elif kind == "next":
                    upd = next((x for x in plan.einsums if x.output == t and x.array), None)
                    if upd is not None and upd.array != p.array:
                        out.append((cross, p, "reads", _read_pattern(p, a, outer)))
            elif place.get(t) == "l3":
                prod = producer.get(t)
                if not (prod is not None and _forwarded(seq1d, prod, p)):
                    out.append(("l3_reads", p, "reads", _read_pattern(p, a, outer)))
            elif place.get(t) in ("shared_rf", "pe_rf"):
                out.append(({"shared_rf": "shared_rf_reads", "pe_rf": "pe_rf_read"}[place[t]], p, "reads",
                            _read_pattern(p, a, outer)))
        t = p.output
        where = place.get(t)
        if c.tensors[t].iterative is not None:
            out.append(("l3_writes", p, "present", t))
        elif where in ("l3", "shared_rf", "pe_rf"):
            out.append(({"l3": "l3_writes", "shared_rf": "shared_rf_writes", "pe_rf": "pe_rf_write"}[where],
                        p, "size", t))
    return tuple(out)


_COMPONENT = {"l3_reads": "global_buffer_read", "l3_writes": "global_buffer_write",
              "shared_rf_reads": "shared_rf", "shared_rf_writes": "shared_rf"}


def _tiled(ctx: _Ctx, plan: _Plan, binding: Binding) -> _Access:
    c, arch = plan.cascade, ctx.arch
    s = arch.word_bytes
    oned = arch.array("1d") if any(a.name == "1d" for a in arch.arrays) else None
    shared = oned is not None and bool(oned.shared_rf)
    place, by_size = plan_memo(plan, ("tiled placement", shared), lambda: _placement(plan, shared))
    # a 1D tensor no other array reads stays in its lane's registers when they hold it
    fits = tuple(_lane_words(ctx, p, t) <= (oned.rf_depth if oned else 0) for t, p in by_size)
    lay = plan_memo(plan, ("tiled layout", shared, fits), lambda: _tiled_layout(
        plan, {**place, **{t: "pe_rf" if f else "l3" for (t, _), f in zip(by_size, fits)}}, shared))
    outer = lay.outer
    n_outer = ctx.inst * math.prod(ctx.sizes[r] for r in lay.outer_ranks)
    rows_total = math.prod(ctx.sizes[r] for r in lay.row_ranks) if lay.row_ranks else 1
    steps_outer = math.prod(ctx.vsize[v] for v in outer) if outer else 1
    row_words = sum((ctx.tensor_size(t) / (n_outer * rows_total) for t in lay.row_word_inputs), 0.0)
    tile_words = sum((ctx.tensor_size(t) / (n_outer * steps_outer) for t in lay.tile_word_inputs), 0.0)
    for t, it, by_loop in lay.row_kept:
        words = ctx.tensor_size(t) / (n_outer * rows_total)
        if it is not None:
            words /= ctx.vsize[it]                                   # one iterate resident
        elif by_loop:
            words /= steps_outer
        row_words += words
    p0 = lay.p0 or (oned.cols if oned else 1)
    if s * row_words * min(p0, rows_total) <= 0:
        raise ArchError(
            f"{c.name} has no query-like rank (one only its row inputs carry) to keep resident in blocks "
            f"while tiles stream past; use --binding unfused")
    # DRAM traffic that does not depend on the buffer: the row inputs once, the outputs once; the tile
    # inputs are fetched once per resident group, which the buffer's capacity decides (`resident`)
    acc = _Access()
    fixed = sum(ctx.tensor_size(t) for t in lay.row_inputs)
    acc.traffic_words += fixed
    acc.l3_writes += fixed
    for o in c.outputs:
        acc.traffic_words += ctx.tensor_size(o)
    acc.residency = _Residency(
        word_bytes=s, share=binding.buffer_share, row_words=row_words, tile_words=tile_words, p0=p0,
        rows_total=rows_total, streamed_words=sum(ctx.tensor_size(t) for t in lay.tile_inputs),
        skips_tiles=ctx.visits < 1.0, cascade=c.name, max_blocks=binding.resident_blocks,
        divide=binding.resident_groups == "divide")
    acc.details.update(P0=p0, row_words=row_words, tile_words=tile_words,
                       row_ranks=",".join(sorted(lay.row_ranks)))
    _count_actions(acc, ctx, lay.actions)
    return acc


def _count_actions(acc: _Access, ctx: _Ctx, actions: tuple) -> None:
    """Add each of a layout's reads and writes (:func:`_tiled_actions`) to ``acc``."""
    for comp, p, how, x in actions:
        if how == "reads":
            n = ctx.pattern_reads(p, x)
        elif how == "size":
            n = ctx.tensor_size(x)
        elif how == "visits":
            n = ctx.tensor_size(x) * ctx.visits
        else:
            n = ctx.tensor_size(x) * ctx.present[p.label]
        if comp.startswith("pe_rf"):
            acc.pe_rf[(p.array, comp[6:])] += n
            acc.per_einsum[(p.label, f"pe_rf_{p.array}")] += n
            continue
        setattr(acc, comp, getattr(acc, comp) + n)
        acc.per_einsum[(p.label, _COMPONENT[comp])] += n


def balanced_tiles(n: int, cap: int) -> tuple[int, int]:
    """(tile, n padded to whole tiles) of the fewest tiles of at most ``cap`` covering ``n``, as
    equal as can be: fewer than one padding element a tile.

    >>> balanced_tiles(1000, 256), balanced_tiles(2049, 256), balanced_tiles(4096, 256)
    ((250, 1000), (228, 2052), (256, 4096))
    """
    tiles = -(-n // cap)
    tile = -(-n // tiles)
    return tile, tile * tiles


def _largest_divisor(n: int, cap: int) -> int:
    """The largest divisor of ``n`` that is at most ``cap`` (at least 1), in O(sqrt n)."""
    best = 1
    d = 1
    while d * d <= n:
        if n % d == 0:
            for x in (d, n // d):
                if best < x <= cap:
                    best = x
        d += 1
    return best


def _lane_words(ctx, p, t) -> float:
    """Words of ``t`` one 1D lane holds for one step of the Einsum's outer loop."""
    lanes = math.prod(ctx.vsize[v] for _, v, _ in p.spatial) or 1
    outer = ctx.vsize[ctx.plan.loop_var] if ctx.plan.loop_var and ctx.plan.loop_var in p.vars else 1
    return ctx.tensor_size(t) / (ctx.inst * lanes * outer)


def _phases(plan: _Plan) -> list[list[_E]]:
    out: list[list[_E]] = []
    for p in plan.einsums:
        if p.array is None:
            continue
        if out and out[-1][0].array == p.array == "1d":
            out[-1].append(p)
        else:
            out.append([p])
    return out


@dataclass(frozen=True)
class _UnfusedPhase:
    """What one phase of the unfused mapping moves, in tensor names and accesses (sizes apart)."""

    labels: tuple
    ins: tuple                  # tensors it reads from DRAM
    outs: tuple                 # tensors it writes to DRAM
    product: object             # the phase's one Einsum on the 2D array, or None
    product_reads: tuple        # (access, tensor) the product reads
    buffer_reads: tuple         # (Einsum, access) a 1D chain reads from the buffer
    buffer_writes: tuple        # Einsums of a 1D chain whose output goes to the buffer


def _unfused_phases(plan: _Plan) -> tuple:
    """The unfused mapping's phases of ``plan``: a function of the plan alone, kept on it."""
    return plan_memo(plan, "unfused phases", lambda: tuple(_unfused_phase(plan, ph) for ph in _phases(plan)))


def _unfused_phase(plan: _Plan, phase) -> _UnfusedPhase:
    c = plan.cascade
    alias, cons = _aliases(plan), _consumers(plan)

    def base(t):
        return alias.get(t, t)

    labels = {p.label for p in phase}
    made = {p.output for p in phase}
    ins = []
    for p in phase:
        for a in p.accesses:
            t = base(a.tensor)
            if t not in made and t not in ins:
                ins.append(t)
    outs = [t for t in made if t in c.outputs or any(u.label not in labels for u in cons.get(t, []))]
    if phase[0].array == "2d":
        (p,) = phase
        return _UnfusedPhase(tuple(sorted(labels)), tuple(ins), tuple(outs), p,
                             tuple((a, base(a.tensor)) for a in dict.fromkeys(p.accesses)), (), ())
    seq = [p.label for p in phase]
    reads, writes = [], []
    for p in phase:
        for a in dict.fromkeys(p.accesses):
            t = base(a.tensor)
            prod = next((x for x in phase if x.output == t), None)
            if prod is not None and seq.index(prod.label) + 1 == seq.index(p.label):
                continue  # streamed from the previous Einsum of the chain
            if prod is not None:
                users = [u for u in cons.get(t, []) if u.label in labels]
                if len(users) == 1 and seq.index(prod.label) + 1 == seq.index(users[0].label):
                    continue
            reads.append((p, a))
        users = cons.get(p.output, [])
        k = seq.index(p.label)
        if not (len(users) == 1 and users[0].label in labels and k + 1 < len(seq) and seq[k + 1] == users[0].label):
            writes.append(p)
    return _UnfusedPhase(tuple(sorted(labels)), tuple(ins), tuple(outs), None, (), tuple(reads), tuple(writes))


def _unfused(ctx: _Ctx, plan: _Plan) -> _Access:
    acc = _Access()
    # a filtered intermediate goes to DRAM as its present values (a banded or compressed layout):
    # a sliding window's logits cost the window, not M x P
    kept = {p.output: ctx.present[p.label] for p in plan.einsums if p.array}

    def stored(t):
        return ctx.tensor_size(t) * kept.get(t, 1.0)

    for ph in _unfused_phases(plan):
        words = sum(stored(t) for t in ph.ins) + sum(stored(t) for t in ph.outs)
        acc.traffic_words += words
        acc.phases.append((ph.labels, words))
        if ph.product is not None:
            _staged_product(acc, ctx, ph)
            continue
        for p, a in ph.buffer_reads:
            n = ctx.reads(p, a, set())
            acc.l3_reads += n
            acc.per_einsum[(p.label, "global_buffer_read")] += n
        for p in ph.buffer_writes:
            n = ctx.tensor_size(p.output)
            acc.l3_writes += n
            acc.per_einsum[(p.label, "global_buffer_write")] += n
    return acc


def _staged_product(acc: _Access, ctx: _Ctx, ph: _UnfusedPhase) -> None:
    """Buffer accesses of a product phase: operands it reuses are staged in the buffer; a reduction
    spread over more rows than the array has leaves partial sums there."""
    p = ph.product
    for a, t in ph.product_reads:
        n = ctx.reads(p, a, set())
        if n > ctx.tensor_size(t) * 1.000001:      # reused: staged in the buffer
            acc.l3_writes += ctx.tensor_size(t)
            acc.l3_reads += n
            acc.per_einsum[(p.label, "global_buffer_read")] += n
            acc.per_einsum[(p.label, "global_buffer_write")] += ctx.tensor_size(t)
    folds = 1
    for d, v, n in p.spatial:
        if v in p.reduced:
            folds *= math.ceil(ctx.vsize[v] / n)
    if folds > 1:
        o = ctx.tensor_size(p.output)
        acc.l3_writes += o * folds
        acc.l3_reads += o * (folds - 1)
        acc.per_einsum[(p.label, "global_buffer_write")] += o * folds
        acc.per_einsum[(p.label, "global_buffer_read")] += o * (folds - 1)


FLAT_TENSORS = ("Q", "K", "QK", "A", "V", "AV")     # a FLAT dataflow places each on or off chip


def flat_products(plan: _Plan) -> tuple:
    """The two tensor products FLAT fuses around the softmax: the plan's Einsums on the 2D array."""
    twod = tuple(p for p in plan.einsums if p.array == "2d")
    if len(twod) != 2:
        raise ArchError(f"the FLAT dataflow fuses two tensor products around a softmax; {plan.cascade.name} has "
                        f"{len(twod)} Einsums on the 2D array")
    return twod


@dataclass(frozen=True)
class FlatOperands:
    """What FLAT's traffic needs of a plan bound to sizes, whatever the dataflow: the words of its
    six tensors (Q, K, the logits QK, the probabilities A, V, the output AV), the key and query
    lengths, the array's columns, and the softmax chain's own buffer accesses."""

    q: float
    k: float
    qk: float
    a: float
    v: float
    av: float
    keys: int
    queries: int
    cols: int
    chain: _Access


@dataclass(frozen=True)
class FlatFlows:
    """Candidate FLAT dataflows as columns (numpy arrays of one length): the granularity's query
    rows ``p1``, output-stationary logit/attend products, each tensor on chip, the spilled share."""

    p1: object
    qk_output: object
    av_output: object
    on_q: object
    on_k: object
    on_qk: object
    on_a: object
    on_v: object
    on_av: object
    ps: object

    @classmethod
    def of(cls, flows: list[dict], queries: int) -> FlatFlows:
        import numpy as np

        def col(f, dtype=float):
            return np.array([f(x) for x in flows], dtype=dtype)

        return cls(col(lambda f: f["P1"] if f["granularity"] == "row" else queries),
                   col(lambda f: f["qk"] == "output", bool), col(lambda f: f["av"] == "output", bool),
                   *(col(lambda f, t=t: f["on"][t], bool) for t in FLAT_TENSORS),
                   col(lambda f: float(f["ps"])))


def flat_operands(ctx: _Ctx, plan: _Plan) -> FlatOperands:
    """FLAT's tensors in ``plan`` (two tensor products with a softmax chain between them)."""
    c = plan.cascade
    logit, attend = flat_products(plan)
    row = plan.row_rank.lower()
    alias = _aliases(plan)

    def operand(p, with_row):
        for a in p.accesses:
            t = alias.get(a.tensor, a.tensor)
            if (row in {r.lower() for r in c.tensors[t].ranks}) == with_row:
                return t
        raise ArchError(f"FLAT dataflow: cannot tell the operands of {p.label} apart by the rank {plan.row_rank}")

    q, k = operand(logit, True), operand(logit, False)
    a_t, v = operand(attend, True), operand(attend, False)
    m_name = next((r for r in c.tensors[k].ranks if r.lower() in logit.out_vars), None)
    if m_name is None:
        raise ArchError(f"the FLAT dataflow computes whole rows of logits; {c.name} tiles the key rank of "
                        f"{logit.label} (its output ranks: {', '.join(logit.out_vars)}). Evaluate an untiled "
                        f"cascade (attention-3pass) with the flat binding, or this one with fusemax/arch/cascade")
    size = ctx.tensor_size
    softmax = plan_memo(plan, "flat softmax chain", lambda: _Plan(
        c, tuple(p for p in plan.einsums if p.array != "2d"), None, plan.row_rank, None, None))
    chain = _unfused(ctx, softmax)
    return FlatOperands(size(q), size(k), size(logit.output), size(a_t), size(v), size(attend.output),
                        ctx.sizes[m_name], ctx.sizes[plan.row_rank], ctx.arch.array("2d").cols, chain)


def flat_words(ops: FlatOperands, flows: FlatFlows) -> tuple:
    """(DRAM traffic, buffer reads, buffer writes) in words of each candidate dataflow, as arrays:
    one formula for a single dataflow's report and for a whole search (research notes 4.3)."""
    import numpy as np

    M, P, pe, ps = ops.keys, ops.queries, ops.cols, flows.ps
    q_stream = ops.q * M / pe
    k_stream = ops.k * np.where(flows.qk_output, P / pe, P / flows.p1)
    v_stream = ops.v * np.where(flows.av_output, P / pe, P / flows.p1)
    # a weight-stationary attend product updates its output once per column pass
    av_update = np.where(flows.av_output, ops.av, ops.av * M / pe)
    av_reread = np.where(flows.av_output, 0.0, ops.av * (M / pe - 1))
    t = np.where(flows.on_q, ops.q * (1 - ps) + ps * q_stream, q_stream)
    t = t + np.where(flows.on_k, ops.k * (1 - ps) + ps * k_stream, k_stream)
    t = t + np.where(flows.on_qk, ps * ops.qk, ops.qk)
    t = t + np.where(flows.on_a, ps * ops.a, ops.a)
    t = t + np.where(flows.on_v, ops.v * (1 - ps) + ps * v_stream, v_stream)
    t = t + np.where(flows.on_av, ops.av * (1 - ps) + ps * (av_update + av_reread), ops.av)
    t = t + np.where(flows.on_qk & flows.on_a, 5 * ops.qk * ps, 2 * ops.qk)
    # buffer accesses: the softmax chain as in the unfused model, plus the on-chip operands
    reads = ops.chain.l3_reads + np.where(flows.on_q, q_stream, 0.0) + np.where(flows.on_a, ops.a, 0.0)
    reads = reads + np.where(flows.on_v, v_stream, 0.0) + np.where(flows.on_av, av_reread, 0.0)
    writes = ops.chain.l3_writes + np.where(flows.on_q, ops.q, 0.0) + np.where(flows.on_qk, ops.qk, 0.0)
    writes = writes + np.where(flows.on_v, ops.v, 0.0) + np.where(flows.on_av, av_update, 0.0)
    return t, reads, writes


def _flat(ctx: _Ctx, plan: _Plan, flow: dict) -> _Access:
    """FLAT's dataflow (research notes 4.3): two tensor products with a softmax between them,
    their operands on or off chip, stationarity and row granularity as FLAT's search chose."""
    return flat_access(flat_operands(ctx, plan), flow)


def flat_access(ops: FlatOperands, flow: dict) -> _Access:
    """The accesses of one FLAT dataflow over the operands ``ops``."""
    t, reads, writes = flat_words(ops, FlatFlows.of([flow], ops.queries))
    acc = flat_chain_access(ops)
    acc.traffic_words, acc.l3_reads, acc.l3_writes = float(t[0]), float(reads[0]), float(writes[0])
    acc.details.update(P1=flow["P1"] if flow["granularity"] == "row" else ops.queries,
                       proportion_spilled=float(flow["ps"]), granularity=flow["granularity"],
                       on_chip=",".join(k for k, v in flow["on"].items() if v) or "none",
                       stationarity=f"{flow['qk']}/{flow['av']}")
    return acc


def flat_chain_access(ops: FlatOperands) -> _Access:
    """What every FLAT dataflow over ``ops`` shares: the softmax chain's accesses by Einsum (the
    arrays' side of a report; the dataflow adds DRAM traffic and buffer reads and writes)."""
    acc = _Access()
    acc.per_einsum.update(ops.chain.per_einsum)
    return acc


def _buffer_cycles(arch: Architecture, acc) -> float:
    """Cycles the global buffer needs for its reads and writes: each of its banks moves one row of
    ``width_bits`` per cycle."""
    bits = (acc.l3_reads + acc.l3_writes) * arch.word_bytes * 8
    return bits / (arch.buffer.banks * arch.buffer.width_bits)


def _link_cycles(plan: _Plan, ctx: _Ctx) -> float:
    """Cycles the link between the PE grid and the lanes needs: every value one array produces and
    the other reads crosses it, one word per column (lane) per cycle."""
    by = {p.output: p for p in ctx.plan.einsums if p.array}
    if not any(p.array == "1d" for p in plan.einsums) or not any(p.array == "2d" for p in plan.einsums):
        return 0.0
    crossing = set()
    for p in plan.einsums:
        if p.array is None:
            continue
        for a in p.accesses:
            prod = by.get(a.tensor)
            if prod is not None and prod.array != p.array:
                crossing.add(prod.label)
    words = sum(ctx.tensor_size(by_label.output) * ctx.present[by_label.label]
                for by_label in plan.einsums if by_label.label in crossing)
    lanes = ctx.arch.array("1d").cols
    return words / lanes


def reduced_across_rows(p) -> bool:
    """Whether an Einsum on the grid reduces a rank spread over its rows: each column's result then
    leaves the grid at the column's end (the 1D lane holds it), no PE keeps it."""
    return any(dim == "rows" and v not in p.out_vars for dim, v, _ in p.spatial)


def _held_on_grid(plan: _Plan) -> tuple:
    """(tensor, the output variables a PE holds it over) of each value the grid produces and reads
    again within a tile (see :func:`_check_registers`), worked out once per plan."""
    def build():
        members = _loop_members(plan)
        on_grid = [p for p in plan.einsums if p.array == "2d" and p.label in members]
        read_on_grid = {a.tensor for p in on_grid for a in p.accesses}
        outer = {plan.loop_var} | set(instance_ranks(plan))      # one tile of one instance at a time
        out = []
        for p in on_grid:
            info = plan.cascade.tensors[p.output]
            if p.output not in read_on_grid or info.iterative is not None or reduced_across_rows(p):
                continue
            sp = {v for _, v, _ in p.spatial}
            out.append((p.output, tuple(v for v in p.out_vars if v not in sp and v not in outer)))
        return tuple(out)

    return plan_memo(plan, "held on the grid", build)


def _check_registers(plan: _Plan, ctx: _Ctx, binding: Binding) -> None:
    """Values the PE grid produces and reads again within a tile stay in the PEs' register files:
    per PE, every such tensor's values that the grid's spatial ranks do not spread, for each tile
    in flight (two when tiles interleave); a value reduced across the rows is held at the column's
    end, not in the PEs. A mapping that does not fit is refused, so a search
    cannot win by keeping more in the PEs than they hold."""
    if binding.mapping != "tiled" or plan.loop_var is None:
        return
    try:
        grid = ctx.arch.array("2d")
    except ArchError:
        return
    held, words = [], 0.0
    for output, temporal in _held_on_grid(plan):
        per_pe = math.prod(ctx.vsize[v] for v in temporal)
        words += per_pe
        held.append(f"{output}: {per_pe:g}")
    copies = 2 if binding.schedule == "overlap" and grid.row_drain else 1
    if grid.rf_depth and words * copies > grid.rf_depth:
        raise ArchError(f"binding {binding.name}: each PE of the grid would hold {words * copies:g} values of a "
                        f"tile ({', '.join(held)}{' , twice for interleaved tiles' if copies > 1 else ''}), more "
                        f"than its {grid.rf_depth}-entry register file; keep fewer of a tile's values on the "
                        "grid, or spread their ranks over it")
