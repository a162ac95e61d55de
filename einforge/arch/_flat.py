"""FLAT's dataflow choices: fusion granularity, stationarity and on-chip placement.

The FuseMax evaluation took them from the corrected FLAT search (``data/flat_dataflows.csv``, the
artifact's flat_validation.csv: model, sequence length and FLAT's choice). Shapes the table does
not cover are searched over the same space with einforge's own FLAT model.
"""

from __future__ import annotations

import csv
from functools import lru_cache

from ._spec import DATA_DIR, ArchError
from ._workload import seq_label

__all__ = ["flat_dataflow", "flat_spatial"]

_TENSORS = ("Q", "K", "QK", "A", "V", "AV")


@lru_cache(maxsize=1)
def _table():
    out = {}
    with open(DATA_DIR / "flat_dataflows.csv", newline="") as f:
        for row in csv.DictReader(f):
            key = (row["platform"], row["models"], row["seq_len"])
            out[key] = {
                "on": {t: row[f"{t}_loc"] == "onchip" for t in _TENSORS},
                "qk": row["QK_stationarity"], "av": row["AV_stationarity"],
                "granularity": row["fusion_granularity"], "P1": int(row["P1"]),
                "ps": float(row["proportion_spilled"]),
            }
    return out


def flat_dataflow(model: str, seq: int, platform: str = "cloud") -> dict | None:
    """FLAT's dataflow for a model and sequence length, or None if the table lacks it."""
    return _table().get((platform, model, seq_label(seq)))


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


def search_flat_dataflow(evaluate_flow, workload, capacity_bytes: float, word_bytes: int, rows: int) -> dict:
    """FLAT's choice for a shape its table lacks: the fastest (then lowest-traffic) dataflow over
    FLAT's space: head or row granularity (P1 = P, or 256, 512, ... rows), output- or
    weight-stationary logit and attend products, and each of Q, QK/A (together), V and AV on or
    off chip. The share that spills is the part of one group's on-chip footprint (one head, P1
    query rows: Q P1*E, QK and A 2*P1*M, V M*F, AV P1*F words) that the buffer cannot hold.

    ``evaluate_flow(flow)`` returns the model's report for a candidate.
    """
    f = workload.fields()
    E, F, M, P = f["head_dim"], f["value_dim"], f["keys"], f["queries"]
    avail = capacity_bytes / word_bytes
    p1s = [("head", P)]
    k = rows
    while k < P:
        p1s.append(("row", k))
        k *= 2
    best = None
    for gran, p1 in p1s:
        for qk in ("output", "weight"):
            for av in ("output", "weight"):
                for q_on in (False, True):
                    for qka_on in (False, True):
                        for v_on in (False, True):
                            for av_on in (False, True):
                                words = (p1 * E * q_on + 2 * p1 * M * qka_on + M * F * v_on + p1 * F * av_on)
                                ps = 0.0 if words == 0 else max(0.0, 1.0 - avail / words)
                                flow = {"on": {"Q": q_on, "K": False, "QK": qka_on, "A": qka_on, "V": v_on,
                                               "AV": av_on},
                                        "qk": qk, "av": av, "granularity": gran, "P1": p1, "ps": ps}
                                r = evaluate_flow(flow)
                                key = (r.latency_s, r.traffic_bytes)
                                if best is None or key < best[0]:
                                    best = (key, flow)
    return dict(best[1], searched=True)
