"""Results of the cost model: one design point's report and its per-Einsum costs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["EinsumCost", "Report"]


@dataclass(frozen=True)
class EinsumCost:
    label: str
    array: str | None
    cycles: float
    busy: float               # cycles x fraction of the array's PEs in use
    actions: dict
    energy_pJ: float = 0.0


@dataclass(frozen=True)
class Report:
    """Everything the cost model says about one design point."""

    design: str
    latency_s: float
    compute_s: float
    memory_s: float
    traffic_bytes: float
    util: dict                        # array -> fraction of peak
    per_einsum: dict                  # label -> EinsumCost
    energy_pJ: float
    energy_breakdown_pJ: dict
    area_um2: float
    area_breakdown_um2: dict
    cycles: dict                      # array -> busy cycles (sum over its Einsums)
    details: dict = field(default_factory=dict)
    sizes: dict = field(default_factory=dict)        # every rank and parameter the point used
    size_origin: dict = field(default_factory=dict)  # where each size came from (workload, given, mapping, default)
    instances: int = 1                               # independent copies of the cascade (batch x heads it leaves out)
    warnings: tuple = ()                             # numbers that rest on extrapolated data
    array_roles: dict = field(default_factory=lambda: {"2d": "2d", "1d": "1d"})  # part -> array name

    @property
    def util_2d(self) -> float:
        """Utilization of the PE grid (whatever the architecture calls it)."""
        return self.util.get(self.array_roles.get("2d", "2d"), 0.0)

    @property
    def util_1d(self) -> float:
        """Utilization of the row of lanes."""
        return self.util.get(self.array_roles.get("1d", "1d"), 0.0)

    def cycles_of(self, part: str) -> float:
        """Busy cycles of the grid (``"2d"``) or the lanes (``"1d"``)."""
        return self.cycles.get(self.array_roles.get(part, part), 0.0)

    def einsum_util(self, label: str, array: str | None = None) -> float:
        """An Einsum's share of the latency on ``array`` (a name, or the part "2d"/"1d")."""
        c = self.per_einsum[label]
        if array is not None and c.array not in (array, self.array_roles.get(array)):
            return 0.0
        return c.busy / self.details["latency_cycles"] if self.details["latency_cycles"] else 0.0

    def to_json(self) -> dict:
        return {
            "design": self.design,
            "latency_s": self.latency_s,
            "energy_pJ": self.energy_pJ,
            "traffic_bytes": self.traffic_bytes,
            "util_2d": self.util_2d,
            "util_1d": self.util_1d,
            "area_um2": self.area_um2,
            "compute_s": self.compute_s,
            "memory_s": self.memory_s,
            "per_einsum": {
                k: {"cycles": c.cycles, "array": c.array, "energy_pJ": c.energy_pJ,
                    "util_2d": self.einsum_util(k, "2d"), "util_1d": self.einsum_util(k, "1d")}
                for k, c in self.per_einsum.items()
            },
            "sizes": {k: {"size": v, "from": self.size_origin.get(k, "")} for k, v in self.sizes.items()},
            "instances": self.instances,
            "warnings": list(self.warnings),
            "energy_breakdown_pJ": dict(self.energy_breakdown_pJ),
            "area_breakdown_um2": dict(self.area_breakdown_um2),
            "details": {k: v for k, v in self.details.items() if isinstance(v, (int, float, str, bool))},
        }
