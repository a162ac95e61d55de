"""Energy of a design point: actions times energy per action (the architecture's energy table),
broken down by component and by Einsum.

Two steps, so that one shape serves a grid of buffers: :func:`compute_energy` prices what the buffer
does not change (the arrays' actions and register files), :func:`memory_energy` adds the global
buffer's and DRAM's share for a given buffer capacity and traffic.
"""

from __future__ import annotations

from collections import Counter

__all__ = ["compute_energy", "memory_breakdown", "memory_energy"]


def compute_energy(plan, ctx, acc) -> tuple[dict, Counter, dict]:
    """(pJ by component, pJ by Einsum, actions by Einsum) of the arrays and register files of a plan
    bound to sizes (``ctx``) whose mapping made the accesses ``acc``; the global buffer and DRAM
    are left to :func:`memory_energy`."""
    arch = ctx.arch
    et = arch.energy
    comp_energy: Counter = Counter()
    per_einsum: Counter = Counter()
    actions = {}
    for p in plan.einsums:
        if p.array is None:
            continue
        pts = ctx.points(p)
        acts = {u: n * pts for u, n in p.actions}
        for u, n in p.fold:
            acts[u] = acts.get(u, 0.0) + n * ctx.folded_elements(p)
        actions[p.label] = acts
        for u, n in acts.items():
            e = n * et.unit(u)
            comp_energy[u] += e
            per_einsum[p.label] += e
    breakdown = {f"compute_{u}": v for u, v in sorted(comp_energy.items())}
    oned = next((a for a in arch.arrays if a.name == "1d"), None)
    # one price per access of the shared register file, in the total and per Einsum alike: its own
    # depth up to 64 entries, a 32-entry file's beyond
    r1, w1 = et.rf_access(oned.shared_rf if oned is not None and oned.shared_rf and oned.shared_rf <= 64 else 32)
    if acc.shared_rf_reads or acc.shared_rf_writes:
        breakdown["shared_rf_1d"] = acc.shared_rf_reads * r1 + acc.shared_rf_writes * w1
    for (arr, kind), n in sorted(acc.pe_rf.items()):
        r, w = et.rf_access(arch.array(arr).rf_depth)
        breakdown[f"pe_rf_{arr}"] = breakdown.get(f"pe_rf_{arr}", 0.0) + n * (r if kind == "read" else w)
    for (lab, comp), n in acc.per_einsum.items():
        if comp.startswith("pe_rf_"):
            r, _ = et.rf_access(arch.array(comp[6:]).rf_depth)
            per_einsum[lab] += n * r
        elif comp == "shared_rf":
            per_einsum[lab] += n * r1
    return breakdown, per_einsum, actions


def memory_breakdown(compute_breakdown: dict, arch, acc, traffic_bytes: float) -> dict:
    """pJ by component: ``compute_breakdown`` with the global buffer (of ``arch``'s capacity) and DRAM."""
    et = arch.energy
    rd, wr = et.buffer_per_word(arch.buffer.capacity)
    breakdown = dict(compute_breakdown)
    breakdown["dram"] = traffic_bytes * et.dram_per_byte
    breakdown["global_buffer"] = acc.l3_reads * rd + acc.l3_writes * wr
    return breakdown


def memory_energy(compute: tuple, arch, acc, traffic_bytes: float) -> tuple[dict, Counter, dict]:
    """:func:`compute_energy`'s result with the global buffer (of ``arch``'s capacity) and DRAM added."""
    comp_breakdown, comp_per_einsum, actions = compute
    rd, wr = arch.energy.buffer_per_word(arch.buffer.capacity)
    per_einsum = Counter(comp_per_einsum)
    for (lab, comp), n in acc.per_einsum.items():
        if comp == "global_buffer_read":
            per_einsum[lab] += n * rd
        elif comp == "global_buffer_write":
            per_einsum[lab] += n * wr
    return memory_breakdown(comp_breakdown, arch, acc, traffic_bytes), per_einsum, actions
