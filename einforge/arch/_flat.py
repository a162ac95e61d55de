"""FLAT's dataflow choices: fusion granularity, stationarity and on-chip placement.

The FuseMax evaluation took them from the corrected FLAT search (``data/flat_dataflows.csv``, the
artifact's flat_validation.csv: model, sequence length and FLAT's choice). Shapes the table does
not cover are searched over the same space with einforge's own FLAT model.
"""

from __future__ import annotations

import csv
from dataclasses import fields
from functools import lru_cache

from ._spec import DATA_DIR, ArchError, load_architecture
from ._traffic import FLAT_TENSORS
from ._workload import seq_label

__all__ = ["flat_dataflow", "flat_spatial"]

@lru_cache(maxsize=1)
def _table():
    out = {}
    with open(DATA_DIR / "flat_dataflows.csv", newline="") as f:
        for row in csv.DictReader(f):
            key = (row["platform"], row["models"], row["seq_len"])
            out[key] = {
                "on": {t: row[f"{t}_loc"] == "onchip" for t in FLAT_TENSORS},
                "qk": row["QK_stationarity"], "av": row["AV_stationarity"],
                "granularity": row["fusion_granularity"], "P1": int(row["P1"]),
                "ps": float(row["proportion_spilled"]),
            }
    return out


def flat_dataflow(model: str, seq: int, platform: str = "cloud") -> dict | None:
    """FLAT's dataflow for a model and sequence length, or None if the table lacks it."""
    return _table().get((platform, model, seq_label(seq)))


def flat_table_applies(arch) -> bool:
    """FLAT's table holds its choices for its own cloud accelerator (``flat``: its array's rows and
    its buffer); on any other, the space is searched."""
    return (arch.buffer.capacity, arch.part("2d").rows) == _own_accelerator()


@lru_cache(maxsize=1)
def _own_accelerator() -> tuple:
    own = load_architecture("flat")       # the packaged description FLAT's table was made for
    return own.buffer.capacity, own.part("2d").rows


def flat_spatial(flow: dict, logit: str, attend: str, cascade) -> tuple:
    """Per-Einsum spatial ranks implied by the stationarity: the stationary tensor's two ranks."""
    from ..einsum import roles

    batch = set(roles(cascade).batch)

    def ranks_of(t):
        return tuple(r for r in cascade.tensors[t].ranks if r not in batch)

    e_l = cascade.einsum(logit)
    e_a = cascade.einsum(attend)
    acc_l = [a.tensor for a in e_l.expr.accesses()]
    acc_a = [a.tensor for a in e_a.expr.accesses()]
    choice = {"output": lambda e, acc: ranks_of(e.name), "weight": lambda e, acc: ranks_of(acc[-1]),
              "input": lambda e, acc: ranks_of(acc[0])}
    out = []
    for lab, e, acc, st in ((logit, e_l, acc_l, flow["qk"]), (attend, e_a, acc_a, flow["av"])):
        if st not in choice:
            raise ArchError(f"FLAT stationarity must be output, weight or input, not {st!r}")
        rs = choice[st](e, acc)
        if len(rs) < 2:
            raise ArchError(f"FLAT dataflow: {lab} has no two ranks to spread over the array")
        out.append((lab, (("cols", rs[0]), ("rows", rs[1]))))
    return tuple(out)


def flat_candidates(workload, capacity_bytes: float, word_bytes: int, rows: int):
    """FLAT's space for a shape its table lacks, as :class:`~einforge.arch._traffic.FlatFlows`
    columns: head or row granularity (P1 = P, or ``rows``, 2 ``rows``, ... query rows), output- or
    weight-stationary logit and attend products, and each of Q, QK/A (together), V and AV on or
    off chip. The share that spills is the part of one group's on-chip footprint (one head, P1
    query rows: Q P1*E, QK and A 2*P1*M, V M*F, AV P1*F words) that the buffer cannot hold."""
    flows, words = _footprints(workload, rows)
    return _spilled(flows, words, capacity_bytes / word_bytes)


def _footprints(workload, rows: int):
    """(the candidates with nothing spilled, each one's on-chip words): what no buffer changes."""
    import numpy as np

    from ._traffic import FlatFlows

    f = workload.fields()
    E, F, M, P = f["head_dim"], f["value_dim"], f["keys"], f["queries"]
    p1s = [P]
    k = rows
    while k < P:
        p1s.append(k)
        k *= 2
    # every (granularity, qk, av, Q, QK/A, V, AV) choice, the last varying fastest
    g = np.indices((len(p1s),) + (2,) * 6, dtype=np.int64).reshape(7, -1).T
    p1 = np.array(p1s, dtype=np.int64)[g[:, 0]]
    qk_w, av_w, q_on, qka_on, v_on, av_on = (g[:, j] for j in range(1, 7))
    words = p1 * E * q_on + 2 * p1 * M * qka_on + M * F * v_on + p1 * F * av_on
    on = (q_on == 1, np.zeros(len(g), bool), qka_on == 1, qka_on == 1, v_on == 1, av_on == 1)
    return FlatFlows(p1.astype(float), qk_w == 0, av_w == 0, *on, np.zeros(len(g))), words


def _spill_share(words, avail_words):
    """The share of each candidate's on-chip footprint (``words``) that a buffer of ``avail_words``
    cannot hold (arrays broadcast: one row per buffer)."""
    import numpy as np

    with np.errstate(divide="ignore"):
        return np.where(words == 0, 0.0, np.maximum(0.0, 1.0 - avail_words / words))


def _spilled(flows, words, avail_words: float):
    from dataclasses import replace

    return replace(flows, ps=_spill_share(words, avail_words))


def candidate(flows, k: int, queries: int) -> dict:
    """The dataflow dict (as FLAT's table gives one) of candidate ``k`` of ``flows``."""
    p1 = int(flows.p1[k])
    return {"on": {t: bool(getattr(flows, f"on_{t.lower()}")[k]) for t in FLAT_TENSORS},
            "qk": "output" if flows.qk_output[k] else "weight", "av": "output" if flows.av_output[k] else "weight",
            "granularity": "head" if p1 == queries else "row", "P1": p1, "ps": float(flows.ps[k])}


class FlatSpace:
    """Candidates of FLAT's dataflow on architectures that differ only in their buffer (``archs``,
    one row each), each candidate priced as a report prices it, for any DRAM bandwidth and clock at
    once: FLAT's whole space (each buffer decides the spills) or the given ``flows`` (FLAT's table).
    The arrays' cycles, busy PE-cycles and compute energy come once per way of spreading the two
    products (four; ``bound``, a dict the caller keeps, carries them over between calls: share it
    only among points of one cascade, binding, workload and arrays); each candidate's traffic,
    buffer cycles and energy are (architecture, candidate) arrays of
    :func:`einforge.arch._traffic.flat_words` and :func:`einforge.arch._energy.memory_breakdown`,
    the formulas a single report uses."""

    def __init__(self, archs, cascade, binding, workload, logit: str, attend: str, bound: dict | None = None,
                 flows: list[dict] | None = None):
        import numpy as np

        from ._model import _by_role
        from ._traffic import FlatFlows

        archs = list(archs)
        roles = [_by_role(a, binding, a.parts()) for a in archs]
        role_arch, role_binding = roles[0]
        self.queries = workload.fields()["queries"]
        self.bound = {} if bound is None else bound
        self.searched = flows is None
        self.given = flows
        if flows is None:
            template, words, groups = self._space(role_arch, cascade, workload, logit, attend)
            self.flows = template
            ps = _spill_share(words, np.array([[a.buffer.capacity / a.word_bytes] for a in archs]))
        else:
            self.flows = FlatFlows.of(flows, self.queries)
            ps = np.broadcast_to(self.flows.ps, (len(archs), len(self.flows.ps)))
            by: dict = {}
            for k, f in enumerate(flows):
                by.setdefault(flat_spatial(f, logit, attend, cascade), []).append(k)
            groups = [(np.array(v), sp) for sp, v in by.items()]
        self.ps = ps
        n = len(self.flows.ps)
        key = ("layout", role_arch.part("2d").rows) if flows is None else None
        layout = self.bound.get(key) if key is not None else None
        if layout is None:
            layout = self._layout(groups, n, role_arch, role_binding, cascade, workload)
            if key is not None:
                self.bound[key] = layout
        self.compute, self.link, self.busy_2d, self.busy_1d, merged = layout
        self.area = np.array([a.area_um2 for a, _ in roles])
        self.traffic, self.buffer_cycles, self.energy = (np.empty((len(archs), n)) for _ in range(3))
        for idx, energy, ops in merged:
            self._price_memory(idx, energy, ops, [a for a, _ in roles])

    def _price_memory(self, idx, energy, ops, role_archs) -> None:
        """Traffic, buffer cycles and energy of the candidates ``idx`` (one group of operands and
        compute energy) on every architecture: what the buffer changes."""
        from dataclasses import replace

        from ._energy import memory_breakdown
        from ._traffic import FlatFlows, _Access, _buffer_cycles, flat_words

        group = replace(FlatFlows(*(getattr(self.flows, f.name)[idx] for f in fields(FlatFlows))),
                        ps=self.ps[:, idx])
        t, reads, writes = flat_words(ops, group)            # (architecture, candidate) arrays
        for i, a in enumerate(role_archs):
            acc = _Access(l3_reads=reads if reads.ndim == 1 else reads[i],
                          l3_writes=writes if writes.ndim == 1 else writes[i])
            traffic = t[i] * a.word_bytes
            self.traffic[i, idx] = traffic
            self.buffer_cycles[i, idx] = _buffer_cycles(a, acc)
            self.energy[i, idx] = sum(memory_breakdown(energy, a, acc, traffic).values())

    def _layout(self, groups, n, role_arch, role_binding, cascade, workload):
        """(compute cycles, link cycles, busy 2D, busy 1D per candidate; groups of candidates whose
        operands and compute energy agree, so that one pricing serves each): what no buffer changes."""
        import numpy as np

        compute, link, busy_2d, busy_1d = np.empty(n), np.empty(n), np.empty(n), np.empty(n)
        merged: list = []
        for idx, sp in groups:
            c, lk, busy, energy, ops = self._priced(role_arch, role_binding, cascade, workload, sp, int(idx[0]))
            compute[idx], link[idx] = c, lk
            busy_2d[idx], busy_1d[idx] = busy
            same = next((m for m in merged if m[1] == energy and m[2] == ops), None)
            if same is None:
                merged.append([idx, energy, ops])
            else:
                same[0] = np.concatenate([same[0], idx])
        return compute, link, busy_2d, busy_1d, merged

    def _space(self, arch, cascade, workload, logit, attend):
        """FLAT's candidates before spilling, with their groups of one spreading (once per arrays)."""
        import numpy as np

        key = ("candidates", arch.part("2d").rows)
        if key not in self.bound:
            template, words = _footprints(workload, arch.part("2d").rows)
            groups = []
            for qk in (True, False):
                for av in (True, False):
                    idx = np.flatnonzero((template.qk_output == qk) & (template.av_output == av))
                    sp = flat_spatial(candidate(template, int(idx[0]), self.queries), logit, attend, cascade)
                    groups.append((idx, sp))
            self.bound[key] = (template, words, groups)
        return self.bound[key]

    def _priced(self, role_arch, role_binding, cascade, workload, spatial, k: int):
        """(compute cycles, link cycles, busy PE-cycles per array, compute energy by component,
        operand sizes) of one spreading of the products: what no buffer, bandwidth or placement
        of the tensors changes."""
        from dataclasses import replace

        from ._model import _bind, _shape
        from ._traffic import flat_chain_access, flat_operands

        if ("priced", spatial) not in self.bound:
            b = replace(role_binding, einsum_spatial=spatial)
            bound = _bind(role_arch, cascade, b, workload)
            ops = flat_operands(bound[2], bound[1])
            flow = candidate(self.flows, k, self.queries)      # any of the spreading's candidates will do
            # the arrays' side needs no candidate's traffic (priced per buffer by _price_memory)
            sh = _shape(role_arch, cascade, b, workload, flow, bound, flat_chain_access(ops))
            busy = tuple(sum(sh.busy[p.label] for p in sh.plan.einsums if p.array == r) for r in ("2d", "1d"))
            self.bound[("priced", spatial)] = (sh.compute_cycles, sh.link_cycles, busy, sh.energy[0], ops)
        return self.bound[("priced", spatial)]

    def best(self, bandwidths, clocks, row: int = 0):
        """Index of the fastest (then lowest-traffic, then first) candidate on architecture ``row``
        for each (bandwidth, clock) pair of the two equally long arrays."""
        return fastest(self.compute, self.traffic[row], self.buffer_cycles[row], self.link, bandwidths, clocks)

    def flow(self, k: int, row: int = 0) -> dict:
        """Candidate ``k`` on architecture ``row`` as a dataflow dict (with that buffer's spilled
        share): a searched one marked so, a given one as given."""
        if not self.searched:
            return self.given[k]
        return dict(candidate(self.flows, k, self.queries), ps=float(self.ps[row, k]), searched=True)


def fastest(compute, traffic, buffer_cycles, link, bandwidths, clocks):
    """For each (bandwidth, clock) pair, the index of the fastest candidate (then the one with
    least traffic, then the first), given each candidate's compute, buffer and link cycles and its
    DRAM traffic in bytes (equally long arrays).

    Latency is the larger of a fixed part (arrays, buffer, link) and traffic over bandwidth, so a
    candidate that another beats on both (no larger fixed part, no more traffic, and less traffic
    or a smaller index: at least as fast, and it wins the ties) is never chosen: only the others
    are priced at every point."""
    import numpy as np

    from ._model import latency_cycles

    compute, traffic, buffer_cycles, link = (np.asarray(x, float) for x in (compute, traffic, buffer_cycles, link))
    fixed = np.maximum(np.maximum(compute, buffer_cycles), link)
    order = np.lexsort((np.arange(len(fixed)), traffic))          # by traffic, then index
    f = fixed[order]
    before = np.concatenate([[np.inf], np.minimum.accumulate(f)[:-1]])
    front = np.sort(order[f < before])
    bw, clk = np.asarray(bandwidths, float)[None, :], np.asarray(clocks, float)[None, :]
    cycles, _ = latency_cycles(compute[front, None], traffic[front, None], buffer_cycles[front, None],
                               link[front, None], bw, clk)
    lat = cycles / clk
    quickest = lat == lat.min(axis=0)
    t = np.where(quickest, traffic[front, None], np.inf)
    return front[np.argmax(quickest & (t == t.min(axis=0)), axis=0)]


def search_flat_dataflow(arch, cascade, binding, workload, logit: str, attend: str) -> dict:
    """FLAT's choice for a shape its table lacks: the fastest (then lowest-traffic) dataflow of
    :func:`flat_candidates` on ``arch`` (see :class:`FlatSpace`)."""
    space = FlatSpace([arch], cascade, binding, workload, logit, attend)
    return space.flow(int(space.best([arch.dram_bandwidth], [arch.clock_hz])[0]))
