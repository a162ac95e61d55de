"""The cost model's view of a generated design: the same array, mapping and sizes."""

from __future__ import annotations

from ..arch import Binding, Workload, load_architecture

__all__ = ["rtl_architecture", "rtl_binding", "rtl_workload", "model_area"]


def rtl_architecture(design, memory=None):
    """The generated arrays as an architecture: R x C MAC PEs (and C 1D lanes), one action per
    cycle, skew fill and drain charged per tile; memory never the bottleneck, or (``memory``, a
    :class:`~einforge.rtl.MemoryModel`) as fast as that memory: its words a cycle at a 1 Hz clock.

    The engine's PEs and lanes hold the program's register counts: the cost model's register check
    sees the registers the compiler allocated (tested to accept every program the engine runs)."""
    r, c = design.array
    if design.manifest.get("datapath", "").startswith("vector lanes"):
        # its lanes are the engine's (ALU, divider, MAC); a grid of two rows stands unused beside them
        regs = design.manifest["program"]["lane_registers"]
        return engine_architecture(2, c).with_array("1d", rf_depth=regs, shared_rf=0)
    if design.manifest.get("datapath", "").startswith("attention engine"):  # noqa: SIM102
        a = engine_architecture(r, c, divider_2d="divstep" in design.manifest.get("units_2d", ()))
        prog = design.program
        if prog is not None:                   # the engine's PEs and lanes hold this many registers
            a = a.with_array("2d", rf_depth=prog.pe_regs).with_array("1d", rf_depth=prog.lane_regs, shared_rf=0)
        if memory is not None:
            from dataclasses import replace

            a = replace(a, dram_bandwidth=float(memory.bandwidth) * a.word_bytes)
        return a
    a = load_architecture("fusemax")
    units2d = design.manifest.get("units_2d", ["mac", "add", "max"])
    # the GEMM's PEs hold an accumulator, no register file
    a = a.with_array("2d", rows=r, cols=c, units=tuple(units2d), fill_drain=design.manifest.get("fill_drain", True),
                     rf_depth=0)
    a = a.with_array("1d", cols=c, fill_drain=False)
    from dataclasses import replace

    return replace(a, name=f"rtl-{r}x{c}", clock_hz=1.0, dram_bandwidth=1e30)


def rtl_binding(design) -> Binding:
    m = design.manifest["mapping"]
    given = design.binding
    if given is not None:
        from dataclasses import replace

        # the engine keeps one block of queries (its running state in the lanes): every block
        # streams every tile it visits
        return replace(given, resident_blocks=1)
    # a matrix-vector product has no rank on one of the array's dimensions
    rows, cols = tuple(r for r in (m["rows"],) if r), tuple(c for c in (m["cols"],) if c)
    return Binding(name="rtl", rule="product", mapping="unfused", schedule="overlap",
                   spatial=(("2d", (("rows", rows), ("cols", cols))), ("1d", (("cols", cols),))))


def rtl_workload(design) -> Workload:
    sizes = {k: v for k, v in design.sizes.items() if not design.cascade.rank(k).derived}
    return Workload(name="rtl", sizes=tuple(sorted(sizes.items())))


def engine_architecture(rows: int, cols: int, divider_2d: bool = False):
    """The attention engine as the cost model sees it: R x C PEs with mac, add and max (and a divider
    when the cascade divides on the 2D array), C lanes with a divider, one action per cycle, row
    reductions arriving ``rows`` cycles late, filtered points computed (masked) rather than skipped,
    memory never the bottleneck. Its dividers are iterative (``divstep``: a division is
    ``DIVIDER_STEPS`` one-cycle steps), which keeps them as shallow as the rest of the datapath."""
    from dataclasses import replace

    a = load_architecture("fusemax")
    units_2d = ("mac", "add", "max", "divstep") if divider_2d else ("mac", "add", "max")
    a = a.with_array("2d", rows=rows, cols=cols, units=units_2d, issue="sequential",
                     row_drain=True, skips_filtered=False, fill_drain=False)
    a = a.with_array("1d", cols=cols, units=("mac", "add", "max", "divstep"), issue="sequential",
                     skips_filtered=False)
    return replace(a, name=f"engine-{rows}x{cols}", clock_hz=1.0, dram_bandwidth=1e30)


def model_area(design) -> dict[str, float]:
    """The cost model's area (um^2) of the arrays the design builds: the PE grid, and the lanes for
    the attention engine (the GEMM has none). The global buffer is an SRAM macro the RTL lacks."""
    bd = rtl_architecture(design).area_breakdown()
    datapath = design.manifest.get("datapath", "")
    built = {"array_1d"} if datapath.startswith("vector lanes") else (
        {"array_2d", "array_1d"} if datapath.startswith("attention engine") else {"array_2d"})
    return {k: v for k, v in bd.items() if k in built}
