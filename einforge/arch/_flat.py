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
    def ranks_of(t):
        return tuple(r for r in cascade.tensors[t].ranks if r not in ("B", "H"))

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
