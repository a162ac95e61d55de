"""The attention engine: an R x C array of instruction-driven PEs, C lanes, buffers and a controller.

It runs a :class:`~einforge.rtl._program.Program`. Every value carries a presence bit, and every
operation merges presence as the executor does (intersection for ``- * / exp``, union for
``+ max min`` and reductions), so the golden model and the hardware agree on empty values too.

The top module only wires its units, each a Verilog module of its own (``_units.py``):

* **Loader** (``loader``). Takes the input stream as it comes (per block of queries: its queries,
  then the tiles of keys it visits) and writes each word into its buffer slot, holding ``in_ready``
  low while that slot is still read; an engine that takes jobs smaller than itself first reads
  their sizes (key tiles, queries) from a header.
* **Buffers** (``rowbuf<i>``, ``colbuf<j>``). Row ``i`` holds, in a ring of ``row_slots`` tiles,
  the key/value-like inputs of key ``i`` of each tile; column ``j`` holds the query-like inputs of
  query ``j`` of two blocks (the current one and the next).
* **Controller** (``controller``). Fetches and decodes the instructions: for every block of C
  queries it runs the tile timeline once per step of the iterative rank, then the epilogue, and
  hands the block to the output stream; it turns register fields into physical registers and buffer addresses, and
  registers the decoded instruction (a decode stage: the units run it the next cycle). A tile's
  first frame waits until the tile is loaded: the compute side (controller, instruction pipeline,
  PEs, lanes) is frozen for that cycle, which keeps every order of events of the schedule.
* **2D array** (``pe<i>_<j>``). Row 0 executes the 2D instruction issued this cycle; the
  instruction (with the column operands read for it) moves down one row per cycle, so row ``i``
  runs it ``i`` cycles later. A reduction instruction combines a PE's value with the partial result
  from the row above and passes it down; the bottom row writes the result into its column's lane.
* **1D array** (``lane<j>``). Each lane runs the 1D instruction issued this cycle.
* **Output stream** (``output``). After a block of queries, its output beats from the lanes'
  registers, ``out_last`` on the block's last one; it never freezes.
"""

from __future__ import annotations

import math

from amaranth import Cat, Const, EnableInserter, Module, Mux, ResetInserter, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ._program import MODE, OPS, SRC, Instr, Program
from ._units import PE, Buffer, Lane, round_shift, sat

__all__ = ["AttentionEngine"]


class _Fields:
    """Per-cycle instruction fields: Consts looked up in a ROM by an index signal."""

    NAMES = ("op", "a_src", "a_idx", "a_stride", "a_mode", "a_bank", "a_val", "b_src", "b_idx", "b_stride",
             "b_mode", "b_bank", "b_val", "dst", "dst_mode", "dst_bank", "first", "last", "filt", "imm", "stage")

    @staticmethod
    def encode(ins: Instr | None) -> dict:
        if ins is None:
            return {k: 0 for k in _Fields.NAMES}
        return {
            "op": OPS[ins.op], "a_src": SRC[ins.a.src], "a_idx": ins.a.index, "a_stride": ins.a.stride,
            "a_mode": MODE[ins.a.mode], "a_bank": ins.a.bank, "a_val": ins.a.value,
            "b_src": SRC[ins.b.src], "b_idx": ins.b.index, "b_stride": ins.b.stride, "b_mode": MODE[ins.b.mode],
            "b_bank": ins.b.bank, "b_val": ins.b.value, "dst": ins.dst, "dst_mode": MODE[ins.dst_mode],
            "dst_bank": ins.dst_bank, "first": int(ins.first), "last": int(ins.last), "filt": int(ins.filt),
            "imm": ins.imm, "stage": ins.stage,
        }

    @staticmethod
    def shapes(p: Program) -> dict:
        """The shape of every field, wide enough for every value the program uses."""
        encoded = [_Fields.encode(t[k]) for t in p.timeline for k in (0, 1)] + [_Fields.encode(i) for i in p.epilogue]
        out = {}
        for k in _Fields.NAMES:
            if k in ("a_val", "b_val", "imm"):
                out[k] = signed(p.numbers.width + 2)
            else:
                out[k] = range(max(2, max([abs(e[k]) for e in encoded] + [1]) + 1))
        out["m1"] = out["visit"] = range(p.loop_steps + 1)
        out["ptile"] = range(p.query_tiles + 1)
        return out


def _rom(m, name, values, index, shape):
    """A read-only table of constants indexed by a signal."""
    sig = Signal(shape, name=name)
    if not values:
        return sig
    with m.Switch(index):
        for k, v in enumerate(values):
            if v:
                with m.Case(k):
                    m.d.comb += sig.eq(v)
    return sig


def _address_shape(p: Program):
    return range(p.row_depth + p.col_depth + 2)


def _slot_bits(p: Program) -> int:
    return (p.row_slots - 1).bit_length()


class Loader(wiring.Component):
    """Writes the input stream into buffer slots as the controller frees them (it is never frozen).

    The stream is, per instance and block of queries: the block's query-like inputs (into the
    column buffers' slot of the block's parity), then each tile it visits: the tile's key/value-like
    inputs (into the row buffers' slot ``tile mod row_slots``, counting tiles over the job).
    ``in_ready`` is low while the slot the next word goes to is still read: a block's slot frees
    when the controller finishes the block before it (``block_done`` pulses), a tile's when
    ``slot_lag`` later tiles have started (``tile_start`` pulses). It keeps the differences as
    small counters: ``ahead``, tiles written whole and not yet started (the controller's first
    frame of a tile waits while it is 0), and blocks begun and not yet finished.

    An engine that takes jobs of any size up to its own (``Program.runtime_sizes``) reads a header
    first: the job's number of key tiles, then of queries (``tiles``, ``queries``)."""

    def __init__(self, prog: Program):
        self.prog = prog
        W = prog.numbers.width
        super().__init__({"in_data": In(signed(W)), "in_valid": In(1), "in_ready": Out(1), "hold": In(1),
                          "sized": Out(1), "w_addr": Out(_address_shape(prog)), "w_data": Out(signed(W)),
                          "row_en": Out(prog.rows), "col_en": Out(prog.cols),
                          "tile_start": In(1), "block_done": In(1), "ahead": Out(range(prog.row_slots + 1)),
                          "tiles": Out(range(prog.loop_steps + 1)), "queries": Out(range(prog.queries + 1)),
                          "block_tiles": Out(range(prog.loop_steps + 1)).array(2)})

    def elaborate(self, platform):
        m = Module()
        p = self.prog
        beat = Signal()
        header = Signal(range(3), init=0 if p.runtime_sizes else 2)     # header words taken
        if p.runtime_sizes:
            with m.If(beat & (header < 2)):
                m.d.sync += header.eq(header + 1)
                with m.If(header == 0):
                    m.d.sync += self.tiles.eq(self.in_data)
                with m.Else():
                    m.d.sync += self.queries.eq(self.in_data)
        else:
            m.d.comb += [self.tiles.eq(p.loop_steps), self.queries.eq(p.queries)]
        m.d.comb += self.sized.eq(header == 2)
        row = [ld for ld in p.loads if ld[1] == "row"]
        col = [ld for ld in p.loads if ld[1] == "col"]
        # where the stream is: instance, block of queries (and its global count), tile, input, lane, word
        finished = Signal()
        inst = Signal(range(max(2, p.n_instances)))
        ptile = Signal(range(p.query_tiles + 1))
        tile = Signal(range(p.loop_steps + 1))
        blocks_ahead = Signal(range(3))      # blocks begun (their queries loading or loaded), not finished
        col_slot_now, row_slot_now = Signal(), Signal(max(1, _slot_bits(p)))
        in_rows = Signal()           # loading a tile (else the block's queries)
        which = Signal(range(max(len(row), len(col)) + 1))
        lane = Signal(range(max(p.rows, p.cols) + 1))
        t = Signal(range(max([T for *_, T, _ in p.loads] + [1]) + 1))
        # a tile mask: each block's first word is how many tiles it keeps (kept per column slot,
        # for the controller too); the tiles that follow are those
        bhead = Signal(init=1 if p.tile_mask else 0)
        if p.tile_mask:
            t_count = Mux(col_slot_now, self.block_tiles[1], self.block_tiles[0])
        else:
            t_count = (self.tiles if p.runtime_sizes
                       else _rom(m, "load_tile_count", [n for _, n in p.tile_ranges], ptile, range(p.loop_steps + 1)))
        left = Signal(range(p.queries + 1))      # queries in this block
        m.d.comb += left.eq(Mux(self.queries - ptile * p.cols >= p.cols, p.cols, self.queries - ptile * p.cols))
        # a tile's slot is free while fewer than row_slots - slot_lag loaded tiles wait to start
        free = Mux(in_rows, self.ahead <= p.row_slots - p.slot_lag, blocks_ahead <= 1)
        m.d.comb += [self.in_ready.eq(~self.hold & ~finished & ((header < 2) | free)),
                     beat.eq(self.in_valid & self.in_ready)]
        data = Signal()
        m.d.comb += data.eq(beat & (header == 2) & ~bhead)
        if p.tile_mask:
            with m.If(beat & (header == 2) & bhead):
                m.d.sync += bhead.eq(0)
                with m.If(col_slot_now):
                    m.d.sync += self.block_tiles[1].eq(self.in_data)
                with m.Else():
                    m.d.sync += self.block_tiles[0].eq(self.in_data)
        last_word = Signal()
        with m.If(in_rows):
            self._segment(m, row, which, lane, t, p.rows, row_slot_now * p.row_slot_words, self.row_en, data, last_word)
        with m.Else():
            self._segment(m, col, which, lane, t, left, col_slot_now * p.col_slot_words, self.col_en, data, last_word)
        tile_loaded, block_begun = Signal(), Signal()
        m.d.comb += [tile_loaded.eq(last_word & in_rows), block_begun.eq(last_word & ~in_rows)]
        m.d.sync += [self.ahead.eq(self.ahead + tile_loaded - self.tile_start),
                     blocks_ahead.eq(blocks_ahead + block_begun - self.block_done)]
        with m.If(last_word):
            with m.If(~in_rows):
                m.d.sync += [in_rows.eq(1), tile.eq(0)]
            with m.Else():
                m.d.sync += [row_slot_now.eq(row_slot_now + 1), tile.eq(tile + 1)]
                with m.If(tile == t_count - 1):        # the block's last tile: on to the next block
                    m.d.sync += [in_rows.eq(0), col_slot_now.eq(~col_slot_now), bhead.eq(1 if p.tile_mask else 0)]
                    with m.If((ptile + 1) * p.cols >= self.queries):
                        m.d.sync += [ptile.eq(0), inst.eq(inst + 1)]
                        with m.If(inst == p.n_instances - 1):
                            m.d.sync += finished.eq(1)
                    with m.Else():
                        m.d.sync += ptile.eq(ptile + 1)
        return m

    def _segment(self, m, loads, which, lane, t, lanes, slot_base, enables, data, last_word):
        """One segment of the stream (a block's queries or a tile): input after input, lane after
        lane, each lane's words in order; ``last_word`` on the segment's last beat."""
        for k, (name, kind, X, T, base) in enumerate(loads):
            with m.If(which == k):
                word = self.in_data
                if name in self.prog.load_scales:     # a constant factor folded into this input, applied on the way in
                    word = self._scaled(m, self.in_data, self.prog.load_scales[name], name)
                n = len(enables)
                m.d.comb += [self.w_addr.eq(slot_base + base + t), self.w_data.eq(word),
                             enables.eq(Mux(data, Const(1, n) << lane, 0))]
                with m.If(data):
                    with m.If(t == T - 1):
                        m.d.sync += t.eq(0)
                        with m.If(lane == lanes - 1):
                            m.d.sync += [lane.eq(0), which.eq(k + 1)]
                            if k == len(loads) - 1:
                                m.d.sync += which.eq(0)
                                m.d.comb += last_word.eq(1)
                        with m.Else():
                            m.d.sync += lane.eq(lane + 1)
                    with m.Else():
                        m.d.sync += t.eq(t + 1)

    def _scaled(self, m, word, constant: int, name: str):
        """``sat(round(word * constant >> frac))``: FixedPoint.mul by a constant."""
        q = self.prog.numbers
        prod = Signal(signed(2 * q.width + 2), name=f"scale_{name}_prod")
        m.d.comb += prod.eq(word * Const(constant, signed(q.width + 1)))
        return sat(m, round_shift(prod, q.frac_bits), q.width, f"scale_{name}")


class Controller(wiring.Component):
    """Fetch and decode: the job's state, the tile and instance counters and the instruction ROMs.

    ``i2_*`` is the 2D instruction issued this cycle (with its buffer addresses and the physical
    lane registers its column operands and its reduction use), ``i1_*`` the 1D one. A tile's first
    frame waits for the tile to be loaded: ``stall`` is then high, and the engine freezes the
    controller, the instruction pipeline, the PEs and the lanes for the cycle (nothing happens in
    it, so every order of events of the schedule stays as it was).
    """

    def __init__(self, prog: Program, fields: dict):
        self.prog, self.fields = prog, fields
        p = prog
        reg, addr = range(p.lane_regs + 1), _address_shape(p)
        ports = {"sized": In(1), "ahead": In(range(p.row_slots + 1)), "tile_start": Out(1), "block_done": Out(1),
                 "block_tiles": In(range(p.loop_steps + 1)).array(2),
                 "stall": Out(1), "tiles": In(range(p.loop_steps + 1)), "queries": In(range(p.queries + 1)),
                 "finish": Out(1), "finish_tile": Out(range(p.query_tiles + 1)), "finish_bank": Out(1),
                 "stream_pending": In(1), "busy": Out(1), "done": Out(1), "cycles": Out(32), "busy_2d": Out(32)}
        ports.update({f"i2_{k}": Out(fields[k]) for k in PE.INSTR})
        ports.update({"i2_dst_reg": Out(reg), "i1_op": Out(fields["op"]), "i1_imm": Out(fields["imm"]),
                      "i1_dst_reg": Out(reg), "i1_write": Out(1)})
        for side in "ab":
            ports.update({f"i2_{side}_row_addr": Out(addr), f"i2_{side}_col_addr": Out(addr),
                          f"i2_{side}_reg": Out(reg), f"i2_{side}_init": Out(1),
                          f"i1_{side}_src": Out(fields[f"{side}_src"]), f"i1_{side}_val": Out(fields[f"{side}_val"]),
                          f"i1_{side}_reg": Out(reg), f"i1_{side}_init": Out(1), f"i1_{side}_col_addr": Out(addr)})
        super().__init__(ports)

    def elaborate(self, platform):
        m = Module()
        p = self.prog
        L, LE, M1 = p.makespan, max(1, len(p.epilogue)), p.loop_steps
        has_epi = len(p.epilogue) > 0
        state = Signal(range(4))          # 0 waiting for the job's sizes, 1 tiles, 2 epilogue, 3 done
        tcyc, ecyc = Signal(range(L + 1)), Signal(range(LE + 1))
        it = Signal(range(M1 + p.depth + 1))    # tiles started in this block of queries
        ptile = Signal(range(p.query_tiles + 1))
        # the row slot of this block's first tile (tiles counted over the job, modulo the slots) and
        # the column slot of this block (the parity of blocks done)
        first_tile = Signal(max(1, _slot_bits(p)), name="first_slot")
        self.col_slot = Signal()
        more = Signal(init=1)                    # it < tiles of this block: a frame that starts a tile
        # batch/head instances: an odometer of counters, the tile loop runs once per instance
        self.hcnt = [Signal(range(max(2, n)), name=f"inst_{v}") for v, n in p.instances]
        # the run of tiles this block visits: tile `first + k` is the k-th one started
        if p.tile_mask:                 # the stream says how many tiles each block keeps
            t_first = Const(0, range(M1 + 1))
            t_count = Signal(range(M1 + 1), name="tile_count")
            m.d.comb += t_count.eq(Mux(self.col_slot, self.block_tiles[1], self.block_tiles[0]))
        elif p.runtime_sizes:           # every block visits all of this job's tiles
            t_first, t_count = Const(0, range(M1 + 1)), self.tiles
        else:
            t_first = _rom(m, "tile_first", [a for a, _ in p.tile_ranges], ptile, range(M1 + 1))
            t_count = _rom(m, "tile_count", [n for _, n in p.tile_ranges], ptile, range(M1 + 1))
        running = Signal()
        m.d.comb += running.eq((state == 1) | ((state == 2) & ~self.stream_pending & has_epi))
        with m.If((state == 0) & self.sized):
            m.d.sync += state.eq(1)
        # a tile's first frame needs the tile in its slot (loaded whole and not yet started)
        starting = Signal()
        m.d.comb += [starting.eq((state == 1) & (tcyc == 0) & more),
                     self.stall.eq(starting & (self.ahead == 0)), self.tile_start.eq(starting & ~self.stall)]
        with m.If((state == 1) & (tcyc == L - 1)):
            m.d.sync += more.eq(it + 1 < t_count)
        with m.If(self.block_done):
            m.d.sync += more.eq(1)
        self._decode = {}
        self._issue_2d(m, state, tcyc, it, ptile, t_first, t_count, first_tile)
        self._issue_1d(m, state, running, tcyc, ecyc, it, ptile, t_count)
        self._sequence(m, state, tcyc, ecyc, it, ptile, t_count, first_tile, L, LE, has_epi)
        with m.If(running):
            m.d.sync += self.cycles.eq(self.cycles + 1)
        with m.If(self._decoded("i2_op") != 0):
            m.d.sync += self.busy_2d.eq(self.busy_2d + 1)
        # the decode stage: the units get each instruction a cycle after it is fetched and decoded,
        # so the output stream starts a cycle later too (after the last instruction has written)
        m.d.sync += [getattr(self, k).eq(v) for k, v in self._decode.items()]
        # a final iterate is in the copy of the last tile's parity
        m.d.comb += [self.finish_tile.eq(ptile), self.finish_bank.eq(t_count[0])]
        m.d.comb += [self.busy.eq((state == 1) | (state == 2)),
                     self.done.eq((state == 3) & ~self.stream_pending)]
        return m

    # -- fetch and decode ----------------------------------------------------------------------
    def _decoded(self, port: str) -> Signal:
        """The decoded value of an instruction port, registered into the port (the decode stage)."""
        if port not in self._decode:
            self._decode[port] = Signal.like(getattr(self, port), name=f"{port}_decoded")
        return self._decode[port]

    def _fetch(self, m, prefix, instrs, index):
        fields = self.fields
        return {k: _rom(m, f"{prefix}_{k}", [_Fields.encode(ins)[k] for ins in instrs], index, fields[k])
                for k in _Fields.NAMES}

    @staticmethod
    def _physical(idx, mode, bank, phase):
        """The lane register of a tensor's element: the previous iterate of tile n is in bank n mod 2,
        the current one in the other; a tile's own values ("rot") in the copy of its parity."""
        sel = Mux((mode == MODE["prev"]) | (mode == MODE["rot"]), phase, ~phase)
        return Mux((mode != MODE["plain"]) & sel, idx + bank, idx)

    def _col_slot(self):
        """The column buffers' slot of the current block of queries: its parity."""
        return self.col_slot

    def _issue_2d(self, m, state, tcyc, it, ptile, t_first, t_count, first_tile):
        p = self.prog
        f2 = self._fetch(m, "rom2", [t[0] for t in p.timeline], tcyc)
        # the tile each instruction works on: `stage` tiles behind the newest one
        n2 = Signal(signed(it.shape().width + 2), name="tile2")
        m.d.comb += n2.eq(it - f2["stage"])
        valid = Signal()
        m.d.comb += valid.eq((state == 1) & (n2 >= 0) & (n2 < t_count))
        # the row buffers' slot of that tile: its global count modulo the slots
        slot = Signal.like(first_tile, name="row_slot")
        m.d.comb += slot.eq(first_tile + n2[:len(slot)])
        for k in PE.INSTR:
            if k in f2:
                m.d.comb += self._decoded(f"i2_{k}").eq(f2[k])
        m.d.comb += [self._decoded("i2_op").eq(Mux(valid, f2["op"], 0)),
                     self._decoded("i2_m1").eq(t_first + n2),         # the tile itself (filter); n2 counts visits
                     self._decoded("i2_visit").eq(n2), self._decoded("i2_ptile").eq(ptile),
                     self._decoded("i2_dst_reg").eq(self._physical(f2["dst"], f2["dst_mode"], f2["dst_bank"], n2[0]))]
        for side in "ab":
            m.d.comb += [
                self._decoded(f"i2_{side}_row_addr").eq(f2[f"{side}_idx"] + slot * f2[f"{side}_stride"]),
                self._decoded(f"i2_{side}_col_addr").eq(f2[f"{side}_idx"] + self._col_slot() * f2[f"{side}_stride"]),
                self._decoded(f"i2_{side}_reg").eq(self._physical(f2[f"{side}_idx"], f2[f"{side}_mode"],
                                                                  f2[f"{side}_bank"], n2[0])),
                # the previous iterate of the first tile is the (empty) initialization
                self._decoded(f"i2_{side}_init").eq((f2[f"{side}_mode"] == MODE["prev"]) & (n2 == 0))]

    def _issue_1d(self, m, state, running, tcyc, ecyc, it, ptile, t_count):
        p = self.prog
        f1t = self._fetch(m, "rom1", [t[1] for t in p.timeline], tcyc)
        f1e = self._fetch(m, "rom1e", p.epilogue, ecyc)
        f1 = {k: Signal.like(f1t[k], name=f"i1_{k}_fetched") for k in f1t}
        for k in f1:
            m.d.comb += f1[k].eq(Mux(state == 1, f1t[k], Mux(running, f1e[k], 0)))
        n1 = Signal(signed(it.shape().width + 2), name="tile1")
        m.d.comb += n1.eq(Mux(state == 1, it - f1t["stage"], t_count))
        valid = Signal()
        m.d.comb += valid.eq(Mux(state == 1, (n1 >= 0) & (n1 < t_count), running))
        first = (n1 == 0) & (state == 1)
        m.d.comb += [self._decoded("i1_op").eq(Mux(valid, f1["op"], 0)), self._decoded("i1_imm").eq(f1["imm"]),
                     self._decoded("i1_write").eq(running),
                     self._decoded("i1_dst_reg").eq(self._physical(f1["dst"], f1["dst_mode"], f1["dst_bank"], n1[0]))]
        for side in "ab":
            m.d.comb += [
                self._decoded(f"i1_{side}_src").eq(f1[f"{side}_src"]), self._decoded(f"i1_{side}_val").eq(f1[f"{side}_val"]),
                self._decoded(f"i1_{side}_reg").eq(self._physical(f1[f"{side}_idx"], f1[f"{side}_mode"],
                                                                  f1[f"{side}_bank"], n1[0])),
                self._decoded(f"i1_{side}_init").eq((f1[f"{side}_mode"] == MODE["prev"]) & first),
                self._decoded(f"i1_{side}_col_addr").eq(f1[f"{side}_idx"] + self._col_slot() * f1[f"{side}_stride"])]

    # -- sequencing ----------------------------------------------------------------------------
    def _sequence(self, m, state, tcyc, ecyc, it, ptile, t_count, first_tile, L, LE, has_epi):
        """Tiles of a block, then its epilogue, then the next block (or instance), then done."""
        p = self.prog
        last_it = Signal(range(p.loop_steps + p.depth + 1))
        m.d.comb += last_it.eq(t_count + p.depth - 2)
        with m.If(state == 1):
            with m.If(tcyc == L - 1):
                m.d.sync += tcyc.eq(0)
                with m.If(it == last_it):
                    m.d.sync += [it.eq(0), state.eq(2), ecyc.eq(0)]
                    if not has_epi:       # the outputs are final iterates: stream them now
                        m.d.comb += self.finish.eq(1)
                with m.Else():
                    m.d.sync += it.eq(it + 1)
            with m.Else():
                m.d.sync += tcyc.eq(tcyc + 1)

        def next_block():
            m.d.comb += self.block_done.eq(1)
            m.d.sync += [self.col_slot.eq(~self.col_slot), first_tile.eq(first_tile + t_count[:len(first_tile)])]
            with m.If((ptile + 1) * p.cols >= self.queries):       # the job's last block of queries
                with m.If(self._last_instance()):
                    m.d.sync += state.eq(3)
                with m.Else():
                    self._next_instance(m)
                    m.d.sync += [ptile.eq(0), state.eq(1)]
            with m.Else():
                m.d.sync += [ptile.eq(ptile + 1), state.eq(1)]

        with m.If((state == 2) & ~self.stream_pending):
            if not has_epi:
                # the next block of queries overwrites the state being streamed: it waited for the stream
                next_block()
            else:
                with m.If(ecyc == LE - 1):
                    m.d.sync += ecyc.eq(0)
                    m.d.comb += self.finish.eq(1)
                    next_block()
                with m.Else():
                    m.d.sync += ecyc.eq(ecyc + 1)

    def _last_instance(self):
        last = Const(1, 1)
        for c_, (_, n) in zip(self.hcnt, self.prog.instances):
            last = last & (c_ == n - 1)
        return last

    def _next_instance(self, m):
        carry = Const(1, 1)
        for c_, (_, n) in reversed(list(zip(self.hcnt, self.prog.instances))):
            with m.If(carry):
                m.d.sync += c_.eq(Mux(c_ == n - 1, 0, c_ + 1))
            carry = carry & (c_ == n - 1)


class OutputStream(wiring.Component):
    """The output stream (its beats never frozen): after the controller finishes a block, ``beats`` beats
    from the output's lane registers, lane ``j`` present when its query is in the job and the
    register holds a value. ``pending`` from the finish until the last beat is taken."""

    def __init__(self, prog: Program):
        self.prog = prog
        p = prog
        super().__init__({"finish": In(1), "finish_tile": In(range(p.query_tiles + 1)), "finish_bank": In(1),
                          "run": In(1),
                          "queries": In(range(p.queries + 1)), "pending": Out(1),
                          "out_reg": Out(range(p.lane_regs + 1)), "out_lanes": Out(p.cols),
                          "out_valid": Out(1), "out_last": Out(1), "out_ready": In(1)})

    def elaborate(self, platform):
        m = Module()
        p = self.prog
        (_, base, beats), = p.outputs
        start, go, busy = Signal(), Signal(), Signal()
        tile, bank = Signal.like(self.finish_tile), Signal()
        beat = Signal(range(beats + 1))
        # the beats start two running cycles after the finish: the last instruction's decode stage
        # and write (a frozen cycle in between delays both)
        with m.If(self.run):
            m.d.sync += [start.eq(self.finish), go.eq(start)]
        with m.If(self.finish):
            m.d.sync += [tile.eq(self.finish_tile), bank.eq(self.finish_bank)]
        with m.If(go & self.run):
            m.d.sync += [busy.eq(1), beat.eq(0)]
        with m.If(self.out_valid & self.out_ready):
            with m.If(beat == beats - 1):
                m.d.sync += busy.eq(0)
            with m.Else():
                m.d.sync += beat.eq(beat + 1)
        m.d.comb += [self.pending.eq(start | go | busy), self.out_valid.eq(busy),
                     self.out_last.eq(busy & (beat == beats - 1)),      # a block's outputs are one packet
                     self.out_reg.eq(base + beat + Mux(bank, p.output_bank, 0)),
                     # the lanes past the last query of a partial block carry nothing
                     self.out_lanes.eq(Cat(*(tile * p.cols + j < self.queries for j in range(p.cols))))]
        return m


class AttentionEngine(wiring.Component):
    def __init__(self, prog: Program):
        self.prog = prog
        q = prog.numbers
        self.W, self.F = q.width, q.frac_bits
        self.AW = 2 * self.W + max(2, math.ceil(math.log2(max(4, prog.rows * 4)))) + 4
        self.out_lanes = prog.cols
        super().__init__({
            "in_data": In(signed(self.W)), "in_valid": In(1), "in_ready": Out(1),
            "out_data": Out(prog.cols * self.W), "out_present": Out(prog.cols), "out_valid": Out(1),
            "out_last": Out(1), "out_ready": In(1),
            "busy": Out(1), "done": Out(1), "cycles": Out(32), "busy_2d": Out(32),
        })

    def elaborate(self, platform):
        m = Module()
        p = self.prog
        R, C = p.rows, p.cols
        fields = _Fields.shapes(p)
        # the compute side (controller, instruction pipeline, PEs, lanes) is frozen while a tile's
        # first frame waits for its inputs; the loader, the buffers and the output stream run on
        run = Signal()
        ctl = Controller(p, fields)
        m.submodules.controller = EnableInserter(run)(ctl)
        loader = m.submodules.loader = Loader(p)
        out = m.submodules.output = OutputStream(p)
        rowbuf = [Buffer(p.row_depth, self.W, reads=2) for _ in range(R)]
        colbuf = [Buffer(p.col_depth, self.W, reads=4) for _ in range(C)]    # 2D operands a, b; 1D a, b
        lanes = [Lane(p, fields, self.AW) for _ in range(C)]
        m.d.comb += run.eq(~ctl.stall)
        for i, b in enumerate(rowbuf):
            m.submodules[f"rowbuf{i}"] = b
        for j, (b, lane) in enumerate(zip(colbuf, lanes)):
            m.submodules[f"colbuf{j}"] = b
            m.submodules[f"lane{j}"] = EnableInserter(run)(lane)
        self._connect_loading(m, ctl, loader, rowbuf, colbuf)
        stages = self._instruction_pipeline(m, ctl, colbuf, lanes, run)
        bottom = self._array_2d(m, stages, rowbuf, run)
        self._array_1d(m, ctl, stages[-1], bottom, colbuf, lanes)
        self._connect_output(m, ctl, out, lanes)
        m.d.comb += [self.busy.eq(ctl.busy), self.done.eq(ctl.done), self.cycles.eq(ctl.cycles),
                     self.busy_2d.eq(ctl.busy_2d)]
        # a new job after done, without reset: the first input word offered while done returns the
        # whole engine to its reset state on that edge (the word is taken on the next, as in_ready
        # is low while done); the buffers are rewritten by the job's own loads
        restart = Signal()
        m.d.comb += restart.eq(ctl.done & self.in_valid)
        return ResetInserter({"sync": restart})(m)

    def _connect_loading(self, m, ctl, loader, rowbuf, colbuf):
        m.d.comb += [ctl.tiles.eq(loader.tiles), ctl.queries.eq(loader.queries), ctl.sized.eq(loader.sized),
                     ctl.ahead.eq(loader.ahead), loader.tile_start.eq(ctl.tile_start),
                     ctl.block_tiles[0].eq(loader.block_tiles[0]), ctl.block_tiles[1].eq(loader.block_tiles[1]),
                     loader.block_done.eq(ctl.block_done & ~ctl.stall)]
        m.d.comb += [loader.in_data.eq(self.in_data), loader.in_valid.eq(self.in_valid),
                     self.in_ready.eq(loader.in_ready), loader.hold.eq(ctl.done)]
        for k, b in enumerate(rowbuf):
            m.d.comb += [b.w_addr.eq(loader.w_addr), b.w_data.eq(loader.w_data), b.w_en.eq(loader.row_en[k])]
        for k, b in enumerate(colbuf):
            m.d.comb += [b.w_addr.eq(loader.w_addr), b.w_data.eq(loader.w_data), b.w_en.eq(loader.col_en[k])]

    def _instruction_pipeline(self, m, ctl, colbuf, lanes, run) -> list:
        """The 2D instruction, row 0's copy at issue and one register stage per row below; its column
        operands are read at issue (from the column buffer or the lane) and travel with it."""
        W = self.W
        s0 = {k: getattr(ctl, f"i2_{k}") for k in PE.INSTR}
        s0.update(a_addr=ctl.i2_a_row_addr, b_addr=ctl.i2_b_row_addr, dst_reg=ctl.i2_dst_reg)
        for j, (buf, lane) in enumerate(zip(colbuf, lanes)):
            for side, port in (("a", 0), ("b", 1)):
                m.d.comb += [getattr(buf, f"r{port}_addr").eq(getattr(ctl, f"i2_{side}_col_addr")),
                             getattr(lane, f"r2{side}_reg").eq(getattr(ctl, f"i2_{side}_reg")),
                             getattr(lane, f"r2{side}_init").eq(getattr(ctl, f"i2_{side}_init"))]
                v, ok = Signal(signed(W), name=f"s0_{side}col{j}"), Signal(name=f"s0_{side}colok{j}")
                src = getattr(ctl, f"i2_{side}_src")
                m.d.comb += [v.eq(Mux(src == SRC["lane"], getattr(lane, f"r2{side}"), getattr(buf, f"r{port}_data"))),
                             ok.eq(Mux(src == SRC["lane"], getattr(lane, f"r2{side}_ok"), 1))]
                s0[f"{side}col{j}"], s0[f"{side}colok{j}"] = v, ok
        stages = [s0]
        for i in range(1, self.prog.rows):
            cur = {k: Signal.like(v, name=f"s{i}_{k}") for k, v in stages[-1].items()}
            with m.If(run):
                m.d.sync += [cur[k].eq(stages[-1][k]) for k in cur]
            stages.append(cur)
        return stages

    def _array_2d(self, m, stages, rowbuf, run) -> list:
        """The PEs; returns each column's reduction leaving the bottom row this cycle."""
        p = self.prog
        fields = _Fields.shapes(p)
        above = [(Const(0, signed(self.AW)), Const(0, 1))] * p.cols
        for i, st in enumerate(stages):
            buf = rowbuf[i]
            m.d.comb += [buf.r0_addr.eq(st["a_addr"]), buf.r1_addr.eq(st["b_addr"])]
            row = []
            for j in range(p.cols):
                pe = PE(p, i, j, fields, self.AW)
                m.submodules[f"pe{i}_{j}"] = EnableInserter(run)(pe)
                m.d.comb += [getattr(pe, f"i_{k}").eq(st[k]) for k in PE.INSTR]
                m.d.comb += [pe.row_a.eq(buf.r0_data), pe.row_b.eq(buf.r1_data),
                             pe.col_a.eq(st[f"acol{j}"]), pe.col_a_ok.eq(st[f"acolok{j}"]),
                             pe.col_b.eq(st[f"bcol{j}"]), pe.col_b_ok.eq(st[f"bcolok{j}"]),
                             pe.red_in.eq(above[j][0]), pe.red_in_ok.eq(above[j][1])]
                row.append(pe)
            above = [(pe.red_out, pe.red_out_ok) for pe in row]
        return [(pe.red_now, pe.red_now_ok) for pe in row]

    def _array_1d(self, m, ctl, bottom_stage, bottom, colbuf, lanes):
        """The lanes: the 1D instruction, and the reductions arriving from the 2D array."""
        is_red = bottom_stage["op"].matches(OPS["rmax"], OPS["radd"], OPS["rmac"])
        for j, (buf, lane) in enumerate(zip(colbuf, lanes)):
            m.d.comb += [lane.op.eq(ctl.i1_op), lane.imm.eq(ctl.i1_imm), lane.dst_reg.eq(ctl.i1_dst_reg),
                         lane.write.eq(ctl.i1_write)]
            for side, port in (("a", 2), ("b", 3)):
                m.d.comb += [getattr(buf, f"r{port}_addr").eq(getattr(ctl, f"i1_{side}_col_addr")),
                             getattr(lane, f"{side}_col").eq(getattr(buf, f"r{port}_data"))]
                m.d.comb += [getattr(lane, f"{side}_{k}").eq(getattr(ctl, f"i1_{side}_{k}"))
                             for k in ("src", "reg", "init", "val")]
            m.d.comb += [lane.red_en.eq(is_red), lane.red_mac.eq(bottom_stage["op"] == OPS["rmac"]),
                         lane.red_reg.eq(bottom_stage["dst_reg"]), lane.red_value.eq(bottom[j][0]),
                         lane.red_ok.eq(bottom[j][1])]

    def _connect_output(self, m, ctl, out, lanes):
        """One beat: every lane's output register, with its presence; absent lanes carry 0."""
        m.d.comb += [out.finish.eq(ctl.finish & ~ctl.stall), out.run.eq(~ctl.stall), out.finish_tile.eq(ctl.finish_tile),
                     out.finish_bank.eq(ctl.finish_bank), out.queries.eq(ctl.queries),
                     ctl.stream_pending.eq(out.pending)]
        words, present = [], []
        for j, lane in enumerate(lanes):
            w, pr = Signal(signed(self.W), name=f"out{j}"), Signal(name=f"out_present{j}")
            m.d.comb += [lane.out_reg.eq(out.out_reg), lane.out_init.eq(0)]
            # a lane past the last query of a partial block, or a value nothing wrote: absent, and 0
            m.d.comb += [pr.eq(lane.out_ok & out.out_lanes[j]), w.eq(Mux(pr, lane.out, 0))]
            words.append(w)
            present.append(pr)
        m.d.comb += [self.out_data.eq(Cat(*words)), self.out_present.eq(Cat(*present)),
                     self.out_valid.eq(out.out_valid), self.out_last.eq(out.out_last), out.out_ready.eq(self.out_ready)]
