"""Lowering a tile-bound cascade (1-pass attention and its variants) onto the attention engine."""

from __future__ import annotations

import numpy as np

from ._errors import RTLError
from ._lower import Design, _ports, _verilog_name

__all__ = ["lower_attention"]


def lower_attention(cascade, binding, array, numbers, sizes) -> Design:
    from ..arch import load_binding
    from ._arch import engine_architecture
    from ._engine import AttentionEngine
    from ._program import compile_program

    R, C = array
    if binding is None or isinstance(binding, str):
        name = binding or "fusemax"
        if name not in ("arch", "fusemax"):
            raise RTLError(f"the attention engine implements the FuseMax placement; binding {name!r} is not supported "
                           "(use arch: one tile at a time, or fusemax: tiles interleaved)")
        binding = load_binding(name, cascade)
    # the tile rank spans the array's rows
    from ..einsum import resolve_sizes, roles

    tile = roles(cascade).tile
    if tile is None:
        raise RTLError(f"{cascade.name} partitions no rank into tiles for the 2D rows "
                       "(write K[e, m1*M0+m0] to stream M in tiles of M0)")
    names = {x.name for x in cascade.ranks}
    unknown = sorted(set(sizes) - names)
    if unknown:
        raise RTLError(f"unknown rank {unknown[0]} in sizes (the ranks of {cascade.name}: {', '.join(names)})")
    given = {k: v for k, v in sizes.items() if not cascade.rank(k).derived}
    if tile in given and given[tile] != R:
        raise RTLError(f"the tile {tile}={given[tile]} must span the array's {R} rows: use --size {tile}={R} "
                       f"or --array {given[tile]}x{C}")
    given[tile] = R
    try:
        sizes = resolve_sizes(cascade, given)
    except Exception as exc:
        raise RTLError(f"{cascade.name} on {R}x{C}: {exc}") from None
    prog = compile_program(cascade, binding, (R, C), numbers, sizes)
    top = AttentionEngine(prog)
    top._MustUse__silence = True
    tens = cascade.tensors
    lane_rank = next(r for r in (x.name for x in cascade.ranks) if r.lower() == prog.lane_var)

    def pack(raw):
        return stream_words(prog, tens, raw)

    (oname, obase, obeats), = prog.outputs
    oinfo = tens[oname]
    o_lane = [k for k, r in enumerate(oinfo.ranks) if r == lane_rank][0]
    # instances (batch, heads) outermost, in the controller's order; then each block of queries
    inst_vars = [v for v, _ in prog.instances]
    o_inst = [next(k for k, r in enumerate(oinfo.ranks) if r.lower() == v) for v in inst_vars]
    o_other = o_inst + [k for k in range(len(oinfo.ranks)) if k != o_lane and k not in o_inst]
    P = sizes[lane_rank]
    n_inst = prog.n_instances

    def to_beats(arr, present=None):
        arr = np.transpose(np.asarray(arr), o_other + [o_lane]).reshape(n_inst, obeats, P)
        pres = None if present is None else np.transpose(present, o_other + [o_lane]).reshape(n_inst, obeats, P)
        beats = []
        for h in range(n_inst):
            for pt in range(prog.query_tiles):
                for k in range(obeats):
                    beat = []
                    for j in range(C):
                        pp = pt * C + j
                        ok = pp < P and (pres is None or bool(pres[h, k, pp]))
                        beat.append([int(arr[h, k, pp]) if ok else 0, int(ok)])   # absent lanes are 0
                    beats.append(beat)
        return beats

    def unpack(beats):
        out = np.zeros((n_inst, obeats, P), dtype=np.int64)
        it = iter(beats)
        for h in range(n_inst):
            for pt in range(prog.query_tiles):
                for k in range(obeats):
                    beat = next(it)
                    for j in range(C):
                        if pt * C + j < P:
                            out[h, k, pt * C + j] = beat[j]
        shape = [oinfo_size(oinfo, sizes, k) for k in o_other] + [P]
        arr = out.reshape(shape)
        inv = np.argsort(o_other + [o_lane])
        return {oname: np.transpose(arr, inv)}

    def expect(golden):
        return to_beats(golden[oname], golden.get(oname + "?"))

    name = _verilog_name(cascade.name)
    words = stream_length(prog)
    steady = prog.busy_2d / prog.makespan if prog.makespan else 0.0
    manifest = {
        "design": name, "cascade": cascade.name,
        "datapath": "attention engine (2D + 1D arrays, " + (
            f"tiles interleaved, a new one every {prog.makespan} cycles, {prog.depth} in flight)"
            if prog.depth > 1 else "one tile at a time)"),
        "array": [R, C],
        "numbers": {"format": numbers.describe(), "width": numbers.width, "frac_bits": numbers.frac_bits,
                    "accumulator_bits": top.AW, "rounding": "half up", "saturation": True},
        "sizes": {k: int(v) for k, v in sizes.items()},
        "mapping": {"rows": tile, "cols": lane_rank, "tiles": prog.loop_steps, "query_tiles": prog.query_tiles},
        "program": {"initiation_interval": prog.makespan, "tiles_in_flight": prog.depth,
                    "epilogue_cycles": len(prog.epilogue),
                    "pe_registers": prog.pe_regs, "lane_registers": prog.lane_regs,
                    "schedule": prog.starts, "busy_2d_per_tile": prog.busy_2d},
        "ports": _ports(top),
        "input_stream": ("header: key tiles, queries; then " if prog.runtime_sizes else "")
        + (f"per instance of {', '.join(v for v, _ in prog.instances)}, " if prog.instances else "")
        + f"per block of {C} queries: " + ", ".join(f"{n} ({T} words a query)" for n, k, X, T, _ in prog.loads
                                                    if k == "col")
        + f"; then per tile of {R} keys it visits: " + ", ".join(f"{n} ({T} words a key)" for n, k, X, T, _ in prog.loads
                                                              if k == "row"),
        "buffers": {"row_slots": prog.row_slots, "row_slot_words": prog.row_slot_words,
                    "column_slots": 2, "column_slot_words": prog.col_slot_words, "slot_lag": prog.slot_lag},
        "output_stream": (f"{oname}: " + (f"per instance of {', '.join(inst_vars)}, " if inst_vars else "")
                          + f"per block of {C} queries, {obeats} beats of {C} lanes"),
        "input_words": words,
        "runtime_sizes": ({"header": [f"key tiles (of {R} keys: {tile})", f"queries ({lane_rank})"],
                           "at_most": {"tiles": prog.loop_steps, lane_rank: P}} if prog.runtime_sizes else None),
        "output_beats": n_inst * obeats * prog.query_tiles,
        "output_packet_beats": obeats,       # out_last marks each block's last beat
        "rtl_cycles": rtl_cycles(prog),
        "instances": {v: n for v, n in prog.instances},
        "tiles_visited": [n for _, n in prog.tile_ranges],
        "steady_state_util_2d": steady,
        "units_2d": list(engine_architecture(R, C, prog.divider_2d).array("2d").units),
        "fill_drain": False,
    }
    d = Design(top, name, cascade, numbers, sizes, (R, C), manifest, pack, unpack, expect,
               program=prog, binding=binding)
    from ._lower import model_cycles

    d.manifest["model_cycles"] = model_cycles(d)
    from ._timing import stream_timing

    at_one = stream_timing(prog)
    d.manifest["streaming"] = {"memory": "1 word a cycle (rtl test --bandwidth, --fifo for others)",
                               "first_input_to_last_output": at_one.first_input_to_last_output,
                               "stall_cycles": at_one.stall_cycles}
    d._at = lambda smaller: _job_view(d, cascade, binding, array, numbers, smaller)
    if prog.tile_mask:
        d._for_job = lambda raw: _mask_view(d, raw)
    return d


def rtl_cycles(prog) -> int:
    """The engine's running cycles for a job: per block, its tiles, the drain of the tiles in
    flight and the epilogue."""
    return sum((n + prog.depth - 1) * prog.makespan + len(prog.epilogue) for n in prog.block_counts())


def _mask_view(design, raw) -> Design:
    """The engine with a tile mask running one job: the tiles each block keeps come from the job's
    mask; its stream, cycles and the cost model's cycles (the mask's density as kept) follow."""
    from dataclasses import replace

    from ._lower import model_cycles
    from ._program import kept_tiles

    prog = design.program
    tiles = kept_tiles(prog, raw)
    for k, t in enumerate(tiles):
        if not t:
            raise RTLError(f"block {k % prog.query_tiles} of queries (instance {k // prog.query_tiles}) keeps no tile "
                           f"of keys in this job's {', '.join(prog.mask_inputs)}: every block must keep one (its "
                           "outputs would be absent; SeerAttention keeps the diagonal)")
    share = sum(len(t) for t in tiles) / (len(tiles) * prog.loop_steps)
    job = replace(prog, block_tiles=tiles)
    cascade = replace(design.cascade, densities=tuple((t, share) if t in prog.mask_inputs else (t, v)
                                                      for t, v in design.cascade.densities))
    view = replace(design, cascade=cascade, program=job)
    view.manifest = dict(design.manifest, rtl_cycles=rtl_cycles(job), tiles_visited=[len(t) for t in tiles],
                         input_words=stream_length(job), mask_density=share)
    view.manifest["model_cycles"] = model_cycles(view)
    view._pack = lambda r: stream_words(job, design.cascade.tensors, r)
    view._for_job = None
    return view


def _job_view(design, cascade, binding, array, numbers, sizes) -> Design:
    """The engine ``design`` running a job of smaller ``sizes``: the same hardware, this job's
    input stream (header first), expected beats, golden model and predicted cycles."""
    prog = design.program
    if not prog.runtime_sizes:
        raise RTLError(f"{design.name} runs jobs of its own sizes only: its blocks visit tiles chosen from the sizes, "
                       "or a filter compares against them (lower it at the job's sizes instead)")
    view = lower_attention(cascade, binding, array, numbers, sizes)
    small = view.program
    for what in ("timeline", "epilogue", "filter_sets", "load_scales", "instances", "pe_regs", "lane_regs",
                 "row_depth", "col_depth", "outputs", "output_bank"):
        if getattr(small, what) != getattr(prog, what):
            raise RTLError(f"{design.name} cannot run a job of sizes {sizes}: its program differs in {what} "
                           "(a size enters an instruction); lower it at the job's sizes instead")
    if not (1 <= small.loop_steps <= prog.loop_steps and 1 <= small.queries <= prog.queries):
        raise RTLError(f"a job of {small.loop_steps} key tiles and {small.queries} queries does not fit {design.name}, "
                       f"built for at most {prog.loop_steps} and {prog.queries}")
    view.top, view.name = design.top, design.name
    view.manifest = dict(view.manifest, design=design.name, ports=design.manifest["ports"])
    return view


def _instances(prog):
    """Every instance (batch, head) as a dict of its indices, in the controller's order."""
    import itertools

    names = [v for v, _ in prog.instances]
    for idx in itertools.product(*(range(n) for _, n in prog.instances)):
        yield dict(zip(names, idx))


def stream_words(prog, tensors, raw) -> list[int]:
    """The input stream of a job: the header (an engine that takes smaller jobs), then per instance
    and block of queries, the block's query-like inputs, then each tile it visits: its key-like
    inputs (a lane's words in a row, lane after lane, input after input)."""
    words = [prog.loop_steps, prog.queries] if prog.runtime_sizes else []
    if prog.tile_mask and prog.block_tiles is None:
        from dataclasses import replace

        from ._program import kept_tiles

        prog = replace(prog, block_tiles=kept_tiles(prog, raw))
    visits = (prog.block_tiles if prog.block_tiles is not None
              else [tuple(range(a, a + n)) for a, n in prog.tile_ranges] * prog.n_instances)
    blocks = iter(visits)
    R, C = prog.rows, prog.cols
    per = {}
    for name, kind, X, T, base in prog.loads:
        info = tensors[name]
        dist, temporal = prog.load_ranks[name]
        per[name] = (info, dist, temporal, np.asarray(raw[name]))
    for inst in _instances(prog):
        slices = {}
        for name, (info, dist, temporal, arr) in per.items():
            index = tuple(inst.get(r.lower(), slice(None)) for r in info.ranks)
            kept = [r for r in info.ranks if r.lower() not in inst]
            sub = arr[index]
            order = [kept.index(dist)] + [kept.index(r) for r in temporal]
            slices[name] = np.transpose(sub, order).reshape(sub.shape[order[0]], -1)
        for b in range(prog.query_tiles):
            tiles = next(blocks)
            if prog.tile_mask:
                words.append(len(tiles))           # the block's header: how many tiles it keeps
            for name, kind, *_ in prog.loads:
                if kind == "col":
                    words.extend(int(v) for v in slices[name][b * C:(b + 1) * C].ravel())
            for tile in tiles:
                for name, kind, *_ in prog.loads:
                    if kind == "row":
                        words.extend(int(v) for v in slices[name][tile * R:(tile + 1) * R].ravel())
    return words


def stream_length(prog) -> int:
    """The number of words in a job's input stream."""
    headers = prog.n_instances * prog.query_tiles if prog.tile_mask else 0
    return (2 if prog.runtime_sizes else 0) + headers + prog.n_instances * prog.queries * prog.col_slot_words + \
        sum(prog.block_counts()) * prog.rows * prog.row_slot_words


def oinfo_size(info, sizes, k):
    return sizes[info.ranks[k]]
