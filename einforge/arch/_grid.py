"""Array-shaped evaluation: a whole grid of DRAM bandwidths and clocks from one scalar evaluation.

A design point's cycles, traffic, buffer and link cycles, energy and area do not depend on the DRAM
bandwidth or the clock; only the latency's memory term does (``traffic / bandwidth * clock``). So
the model runs once per distinct (architecture, cascade, binding, workload) and the grid over
bandwidth x clock is numpy columns, equal number for number to evaluating each point alone (a
property test checks it).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._designs import evaluate
from ._report import Report

__all__ = ["GridColumns", "evaluate_grid"]


@dataclass(frozen=True)
class GridColumns:
    """One column per quantity, one entry per (bandwidth, clock) pair in row-major order."""

    bandwidth: np.ndarray
    clock: np.ndarray
    latency_s: np.ndarray
    compute_s: np.ndarray
    memory_s: np.ndarray
    util_2d: np.ndarray
    util_1d: np.ndarray
    energy_pJ: float | np.ndarray       # a number unless the mapping depends on bandwidth (FLAT's)
    traffic_bytes: float | np.ndarray
    area_um2: float
    report: Report                      # the evaluated point (at the architecture's own bandwidth and clock)


def evaluate_grid(arch, cascade, binding, workload, bandwidths, clocks) -> GridColumns:
    """Evaluate ``arch`` at every (bandwidth, clock) of the two lists (bytes/s, Hz)."""
    r = evaluate(arch, cascade, binding, workload)
    bw = np.repeat(np.asarray(bandwidths, float), len(clocks))
    clk = np.tile(np.asarray(clocks, float), len(bandwidths))
    d = r.details
    if binding.schedule == "phases" or binding.mapping == "flat":
        # each phase overlaps its own compute and memory, and FLAT's dataflow is chosen for the
        # point's bandwidth: evaluate per point
        points = [evaluate(_at(arch, b, c), cascade, binding, workload) for b, c in zip(bw, clk)]
        return GridColumns(bw, clk, *(np.array([getattr(p, k) for p in points])
                                      for k in ("latency_s", "compute_s", "memory_s", "util_2d", "util_1d")),
                           np.array([p.energy_pJ for p in points]), np.array([p.traffic_bytes for p in points]),
                           r.area_um2, r)
    mem_cycles = r.traffic_bytes / bw * clk
    cycles = np.maximum.reduce([np.full(bw.shape, d["compute_cycles"]), mem_cycles,
                                np.full(bw.shape, d["buffer_cycles"]), np.full(bw.shape, d["link_cycles"])])
    lat = cycles / clk
    comp = d["compute_cycles"] / clk
    mem = mem_cycles / clk
    busy2, busy1 = d["busy_2d"], d["busy_1d"]
    with np.errstate(divide="ignore", invalid="ignore"):
        u2 = np.where(cycles > 0, busy2 / cycles, 0.0)
        u1 = np.where(cycles > 0, busy1 / cycles, 0.0)
    return GridColumns(bw, clk, lat, np.broadcast_to(comp, bw.shape).copy(), mem, u2, u1, r.energy_pJ,
                       r.traffic_bytes, r.area_um2, r)


def _at(arch, bandwidth, clock):
    from dataclasses import replace

    return replace(arch, dram_bandwidth=float(bandwidth), clock_hz=float(clock))
