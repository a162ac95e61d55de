"""The attention engine: an R x C array of instruction-driven PEs, C lanes, buffers and a controller.

It runs a :class:`~einforge.rtl._program.Program`. Every value carries a presence bit, and every
operation merges presence as the executor does (intersection for ``- * / exp``, union for
``+ max min`` and reductions), so the golden model and the hardware agree on empty values too.

* **2D array.** Row 0 executes the instruction issued this cycle; the instruction (with the
  column operands read for it) moves down one row per cycle, so row ``i`` runs it ``i`` cycles
  later. A PE has a register file, a wide MAC accumulator and the state of the 6-step exp; a
  reduction instruction combines the PE's value with the partial result from the row above and
  passes it down, and the bottom row writes the result into the lane of its column.
* **1D array.** Each lane has a register file (iterative tensors in two banks that swap every
  tile), the exp state and a divider, and runs the 1D instruction issued this cycle.
* **Buffers.** Row ``i`` holds the key/value-like inputs of keys ``m = i (mod R)``; column ``j``
  the query-like inputs of queries ``p = j (mod C)``.
* **Controller.** Loads the inputs from the stream, then for every block of C queries runs the
  tile timeline once per step of the iterative rank, then the epilogue, and streams the outputs.
"""

from __future__ import annotations

import math

from amaranth import Array, Cat, Const, Module, Mux, ResetInserter, Signal, signed
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import In, Out

from ._program import MODE, OPS, SRC, Instr, Program

__all__ = ["AttentionEngine"]


def _sat(m, x, w, name):
    lo, hi = -(1 << (w - 1)), (1 << (w - 1)) - 1
    out = Signal(signed(w), name=name)
    m.d.comb += out.eq(Mux(x > hi, hi, Mux(x < lo, lo, x)))
    return out


def _round_shift(x, s):
    return (x + (1 << (s - 1))) >> s if s > 0 else x


class _Fields:
    """Per-cycle instruction fields: Consts looked up in a ROM by an index signal."""

    NAMES = ("op", "a_src", "a_idx", "a_stride", "a_mode", "a_bank", "a_val", "b_src", "b_idx", "b_stride",
             "b_mode", "b_bank", "b_val", "dst", "dst_mode", "dst_bank", "first", "last", "filt", "imm", "stage")

    @staticmethod
    def names(nh: int) -> tuple:
        """The fields of a program with ``nh`` instance ranks (a buffer stride for each, per operand)."""
        return _Fields.NAMES + tuple(f"{side}_hs{k}" for side in "ab" for k in range(nh))

    @staticmethod
    def encode(ins: Instr | None, nh: int = 0) -> dict:
        hs = {f"{side}_hs{k}": (getattr(ins, side).hstride[k] if ins is not None and k < len(getattr(ins, side).hstride)
                                else 0) for side in "ab" for k in range(nh)}
        if ins is None:
            return {**{k: 0 for k in _Fields.NAMES}, **hs}
        return {**hs,
            "op": OPS[ins.op], "a_src": SRC[ins.a.src], "a_idx": ins.a.index, "a_stride": ins.a.stride,
            "a_mode": MODE[ins.a.mode], "a_bank": ins.a.bank, "a_val": ins.a.value,
            "b_src": SRC[ins.b.src], "b_idx": ins.b.index, "b_stride": ins.b.stride, "b_mode": MODE[ins.b.mode],
            "b_bank": ins.b.bank, "b_val": ins.b.value, "dst": ins.dst, "dst_mode": MODE[ins.dst_mode],
            "dst_bank": ins.dst_bank, "first": int(ins.first), "last": int(ins.last), "filt": int(ins.filt),
            "imm": ins.imm, "stage": ins.stage,
        }


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
            "out_ready": In(1),
            "busy": Out(1), "done": Out(1), "cycles": Out(32), "busy_2d": Out(32),
        })

    # -- arithmetic helpers ---------------------------------------------------------------------
    def _alu(self, m, op, a, va, b, vb, imm, exp_state, name, divider: bool):
        """Result (value, valid) of an ALU op; updates the exp state as a side effect."""
        W, F = self.W, self.F
        q = self.prog.numbers
        lo, hi = q.lo, q.hi
        res = Signal(signed(W), name=f"{name}_res")
        rv = Signal(name=f"{name}_rv")
        s_add = _sat(m, a + b, W, f"{name}_add")
        s_sub = _sat(m, a - b, W, f"{name}_sub")
        s_neg = _sat(m, -a, W, f"{name}_neg")
        prod = Signal(signed(2 * W), name=f"{name}_prod")
        m.d.comb += prod.eq(a * b)
        s_mul = _sat(m, _round_shift(prod, F), W, f"{name}_mul")
        # exp
        en, ef, ep, ev = exp_state
        log2e = q.exp_constants()["log2e"]
        t_full = Signal(signed(2 * W + 2), name=f"{name}_t")
        m.d.comb += t_full.eq(_round_shift(a * log2e, F))
        t = _sat(m, t_full, W, f"{name}_tsat")
        n_new = Signal(signed(W), name=f"{name}_n")
        m.d.comb += n_new.eq(t >> F)
        f_new = Signal(signed(W + 1), name=f"{name}_f")
        m.d.comb += f_new.eq(t - n_new * (1 << F))
        horner = Signal(signed(2 * W + 8), name=f"{name}_horner")
        m.d.comb += horner.eq(_round_shift(ep * ef + (imm << F), F))
        # scale by 2**n: left shifts saturate, right shifts round
        nl = Signal(range(W + 2), name=f"{name}_nl")
        nr = Signal(range(F + 4), name=f"{name}_nr")
        m.d.comb += [nl.eq(Mux(en > W + 1, W + 1, Mux(en < 0, 0, en))),
                     nr.eq(Mux(-en > F + 3, F + 3, Mux(en > 0, 0, -en)))]
        left = Signal(signed(2 * W + 8 + W + 2), name=f"{name}_left")
        m.d.comb += left.eq(horner << nl)
        right = Signal(signed(2 * W + 8), name=f"{name}_right")
        half = Signal(signed(2 * W + 8), name=f"{name}_half")
        nr1 = Signal(range(F + 4), name=f"{name}_nr1")
        m.d.comb += nr1.eq(Mux(nr == 0, 0, nr - 1))
        m.d.comb += half.eq(Mux(nr == 0, 0, Const(1, signed(2 * W + 8)) << nr1))
        m.d.comb += right.eq((horner + half) >> nr)
        s_left = _sat(m, left, W, f"{name}_sleft")
        s_right = _sat(m, right, W, f"{name}_sright")
        exp_out = Signal(signed(W), name=f"{name}_exp")
        m.d.comb += exp_out.eq(Mux(en >= 0, s_left, s_right))
        with m.Switch(op):
            with m.Case(OPS["add"], OPS["max"], OPS["min"]):
                both = Mux(op == OPS["add"], s_add, Mux(op == OPS["max"], Mux(a > b, a, b), Mux(a < b, a, b)))
                m.d.comb += [res.eq(Mux(va & vb, both, Mux(va, a, b))), rv.eq(va | vb)]
            with m.Case(OPS["sub"]):
                m.d.comb += [res.eq(s_sub), rv.eq(va & vb)]
            with m.Case(OPS["mul"]):
                m.d.comb += [res.eq(s_mul), rv.eq(va & vb)]
            with m.Case(OPS["neg"]):
                m.d.comb += [res.eq(s_neg), rv.eq(va)]
            with m.Case(OPS["exp0"]):
                m.d.sync += [en.eq(n_new), ef.eq(f_new), ep.eq(q.exp_constants()["coeffs"][0]), ev.eq(va)]
            with m.Case(OPS["exps"]):
                m.d.sync += ep.eq(horner)
            with m.Case(OPS["expl"]):
                m.d.comb += [res.eq(exp_out), rv.eq(ev)]
            if divider:
                with m.Case(OPS["div"]):
                    num = Signal(W + F, name=f"{name}_num")
                    den = Signal(W, name=f"{name}_den")
                    quo = Signal(W + F, name=f"{name}_quo")
                    m.d.comb += [num.eq(Mux(a < 0, -a, a) << F), den.eq(Mux(b < 0, -b, b))]
                    m.d.comb += quo.eq(num // Mux(den == 0, 1, den))
                    sq = Signal(signed(W + F + 2), name=f"{name}_sq")
                    m.d.comb += sq.eq(Mux((a < 0) ^ (b < 0), -quo, quo))
                    s_div = _sat(m, sq, W, f"{name}_div")
                    m.d.comb += [res.eq(Mux(den == 0, Mux(a < 0, lo, hi), s_div)), rv.eq(va & vb)]
        return res, rv

    def elaborate(self, platform):
        m = Module()
        p = self.prog
        R, C, W, F, AW = p.rows, p.cols, self.W, self.F, self.AW
        L, LE = p.makespan, max(1, len(p.epilogue))

        # ---------------- buffers --------------------------------------------------------------------
        rowmem = [memory.Memory(shape=signed(W), depth=p.row_depth, init=[]) for _ in range(R)]
        colmem = [memory.Memory(shape=signed(W), depth=p.col_depth, init=[]) for _ in range(C)]
        for i, mem in enumerate(rowmem):
            m.submodules[f"rowbuf{i}"] = mem
        for j, mem in enumerate(colmem):
            m.submodules[f"colbuf{j}"] = mem
        row_w = [mem.write_port() for mem in rowmem]
        col_w = [mem.write_port() for mem in colmem]
        row_ra = [mem.read_port(domain="comb") for mem in rowmem]
        row_rb = [mem.read_port(domain="comb") for mem in rowmem]
        col_ra = [mem.read_port(domain="comb") for mem in colmem]      # 2D operands
        col_rb = [mem.read_port(domain="comb") for mem in colmem]
        col_1a = [mem.read_port(domain="comb") for mem in colmem]      # 1D operands
        col_1b = [mem.read_port(domain="comb") for mem in colmem]

        # ---------------- loading ------------------------------------------------------------------
        state = Signal(range(4))        # 0 load, 1 tiles, 2 epilogue, 3 done
        nload = len(p.loads)
        ld_which = Signal(range(nload + 1))
        ld_x = Signal(range(max(max(x for _, _, x, _, _ in p.loads), 1) + 1))
        ld_lane = Signal(range(max(R, C) + 1))
        ld_blk = Signal(range(max(max(x for _, _, x, _, _ in p.loads), 1) + 1))
        ld_t = Signal(range(max(max(t for _, _, _, t, _ in p.loads), 1) + 1))
        m.d.comb += self.in_ready.eq(state == 0)
        beat = Signal()
        m.d.comb += beat.eq(self.in_valid & self.in_ready)
        for k, (name, kind, X, T, base) in enumerate(p.loads):
            addr = base + ld_blk * T + ld_t
            ports = row_w if kind == "row" else col_w
            lanes = R if kind == "row" else C
            word = self.in_data
            if name in p.load_scales:
                # a constant factor folded into this input: the fixed-point multiply, on the way in
                word = self._scaled_word(m, self.in_data, p.load_scales[name], name)
            for d in range(lanes):
                with m.If(beat & (ld_which == k) & (ld_lane == d)):
                    m.d.comb += [ports[d].addr.eq(addr), ports[d].data.eq(word), ports[d].en.eq(1)]
            with m.If(beat & (ld_which == k)):
                with m.If(ld_t == T - 1):
                    m.d.sync += ld_t.eq(0)
                    with m.If(ld_x == X - 1):
                        m.d.sync += [ld_x.eq(0), ld_lane.eq(0), ld_blk.eq(0), ld_which.eq(k + 1)]
                        if k == nload - 1:
                            m.d.sync += state.eq(1)
                    with m.Else():
                        m.d.sync += ld_x.eq(ld_x + 1)
                        with m.If(ld_lane == lanes - 1):
                            m.d.sync += [ld_lane.eq(0), ld_blk.eq(ld_blk + 1)]
                        with m.Else():
                            m.d.sync += ld_lane.eq(ld_lane + 1)
                with m.Else():
                    m.d.sync += ld_t.eq(ld_t + 1)

        # ---------------- controller -----------------------------------------------------------------
        tcyc = Signal(range(L + 1))
        ecyc = Signal(range(LE + 1))
        out_start = Signal()
        out_tile = Signal(range(p.query_tiles + 1))    # the block of queries being streamed out
        M1 = p.loop_steps
        it = Signal(range(M1 + p.depth + 1))    # tiles started in this block of queries
        ptile = Signal(range(p.query_tiles + 1))
        # batch/head instances: an odometer of counters, the tile loop runs once per instance
        hcnt = [Signal(range(max(2, n)), name=f"inst_{v}") for v, n in p.instances]
        hlast = Const(1, 1)
        for c_, (_, n) in zip(hcnt, p.instances):
            hlast = hlast & (c_ == n - 1)

        def next_instance():
            carry = Const(1, 1)
            for c_, (_, n) in reversed(list(zip(hcnt, p.instances))):
                with m.If(carry):
                    m.d.sync += c_.eq(Mux(c_ == n - 1, 0, c_ + 1))
                carry = carry & (c_ == n - 1)

        def hoffset(flds, side, name):
            """The buffer offset of the current instance for an operand."""
            off = Signal(range(p.row_depth + p.col_depth + 2), name=name)
            total = Const(0, 1)
            for k, c_ in enumerate(hcnt):
                total = total + c_ * flds[f"{side}_hs{k}"]
            m.d.comb += off.eq(total)
            return off

        # the run of tiles this block visits: tile `first + k` is the k-th one started
        t_first = _rom(m, "tile_first", [a for a, _ in p.tile_ranges], ptile, range(M1 + 1))
        t_count = _rom(m, "tile_count", [n for _, n in p.tile_ranges], ptile, range(M1 + 1))
        last_it = Signal(range(M1 + p.depth + 1))
        m.d.comb += last_it.eq(t_count + p.depth - 2)
        out_busy = Signal()
        running = Signal()
        has_epi = len(p.epilogue) > 0
        m.d.comb += running.eq((state == 1) | ((state == 2) & ~out_busy & has_epi))
        issue2 = Signal()
        m.d.comb += issue2.eq(state == 1)

        nh = len(p.instances)
        names = _Fields.names(nh)
        f2 = {k: _rom(m, f"i2_{k}", [_Fields.encode(t[0], nh)[k] for t in p.timeline], tcyc,
                      signed(W + 2) if k in ("a_val", "b_val", "imm") else range(max(2, self._max(p, k) + 1)))
              for k in names}
        seq1 = [t[1] for t in p.timeline]
        f1t = {k: _rom(m, f"i1t_{k}", [_Fields.encode(ins, nh)[k] for ins in seq1], tcyc,
                       signed(W + 2) if k in ("a_val", "b_val", "imm") else range(max(2, self._max(p, k) + 1)))
               for k in names}
        f1e = {k: _rom(m, f"i1e_{k}", [_Fields.encode(ins, nh)[k] for ins in p.epilogue], ecyc,
                       signed(W + 2) if k in ("a_val", "b_val", "imm") else range(max(2, self._max(p, k) + 1)))
               for k in names}
        f1 = {k: Signal.like(f1t[k], name=f"i1_{k}") for k in names}
        for k in names:
            m.d.comb += f1[k].eq(Mux(state == 1, f1t[k], Mux(running, f1e[k], 0)))
        # the tile each instruction works on: `stage` tiles behind the newest one
        n2 = Signal(signed(it.shape().width + 2), name="tile2")
        n1 = Signal(signed(it.shape().width + 2), name="tile1")
        m.d.comb += [n2.eq(it - f2["stage"]), n1.eq(Mux(state == 1, it - f1t["stage"], t_count))]
        v2 = Signal()
        v1 = Signal()
        m.d.comb += [v2.eq((n2 >= 0) & (n2 < t_count)), v1.eq(Mux(state == 1, (n1 >= 0) & (n1 < t_count), running))]
        op2 = Signal.like(f2["op"])
        op1 = Signal.like(f1["op"])
        m.d.comb += [op2.eq(Mux(issue2 & v2, f2["op"], 0)), op1.eq(Mux(v1, f1["op"], 0))]
        phase2, phase1 = n2[0], n1[0]
        first2 = Signal()
        first1 = Signal()
        m.d.comb += [first2.eq(n2 == 0), first1.eq((n1 == 0) & (state == 1))]

        with m.If(state == 1):
            with m.If(tcyc == L - 1):
                m.d.sync += tcyc.eq(0)
                with m.If(it == last_it):
                    m.d.sync += [it.eq(0), state.eq(2), ecyc.eq(0)]
                    if not has_epi:       # the outputs are final iterates: stream them now
                        m.d.sync += [out_start.eq(1), out_tile.eq(ptile)]
                with m.Else():
                    m.d.sync += it.eq(it + 1)
            with m.Else():
                m.d.sync += tcyc.eq(tcyc + 1)
        with m.If(op2 != 0):
            m.d.sync += self.busy_2d.eq(self.busy_2d + 1)
        def next_block():
            with m.If(ptile == p.query_tiles - 1):
                with m.If(hlast):
                    m.d.sync += state.eq(3)
                with m.Else():
                    next_instance()
                    m.d.sync += [ptile.eq(0), state.eq(1)]
            with m.Else():
                m.d.sync += [ptile.eq(ptile + 1), state.eq(1)]

        with m.If((state == 2) & ~out_busy & ~out_start & (not has_epi)):
            # the next block of queries overwrites the state being streamed: wait for the stream
            next_block()
        with m.If((state == 2) & ~out_busy & has_epi):
            with m.If(ecyc == LE - 1):
                m.d.sync += [ecyc.eq(0), out_start.eq(1), out_tile.eq(ptile)]
                next_block()
            with m.Else():
                m.d.sync += ecyc.eq(ecyc + 1)
        with m.If(out_start):
            m.d.sync += out_start.eq(0)
        with m.If(running):
            m.d.sync += self.cycles.eq(self.cycles + 1)


        # ---------------- lanes: register files ------------------------------------------------------
        NL = p.lane_regs
        lane_v = [[Signal(signed(W), name=f"l{j}_r{k}") for k in range(NL)] for j in range(C)]
        lane_p = [[Signal(name=f"l{j}_v{k}") for k in range(NL)] for j in range(C)]

        def phys(idx, mode, bank, phase):
            # previous iterate of tile n: bank n mod 2; current: the other one; a tile's own
            # values (rot): the copy of its parity
            sel = Mux((mode == MODE["prev"]) | (mode == MODE["rot"]), phase, ~phase)
            return Mux((mode != MODE["plain"]) & sel, idx + bank, idx)

        def lane_read(j, idx, mode, bank, name, phase, first):
            pi = Signal(range(NL + 1), name=f"{name}_pi")
            m.d.comb += pi.eq(phys(idx, mode, bank, phase))
            v = Signal(signed(W), name=f"{name}_v")
            ok = Signal(name=f"{name}_ok")
            m.d.comb += [v.eq(Array(lane_v[j])[pi]), ok.eq(Array(lane_p[j])[pi])]
            # the previous iterate of the first tile is the (empty) initialization
            okf = Signal(name=f"{name}_okf")
            m.d.comb += okf.eq(ok & ~((mode == MODE["prev"]) & first))
            return v, okf

        def operand_1d(j, side, flds, name):
            src, idx, mode, bank, val = (flds[f"{side}_src"], flds[f"{side}_idx"], flds[f"{side}_mode"],
                                         flds[f"{side}_bank"], flds[f"{side}_val"])
            lv, lok = lane_read(j, idx, mode, bank, f"{name}_{side}", phase1, first1)
            port = col_1a[j] if side == "a" else col_1b[j]
            m.d.comb += port.addr.eq(idx + ptile * flds[f"{side}_stride"] + hoffset(flds, side, f"{name}_{side}ho"))
            v = Signal(signed(W), name=f"{name}_{side}v")
            ok = Signal(name=f"{name}_{side}ok")
            with m.Switch(src):
                with m.Case(SRC["lane"]):
                    m.d.comb += [v.eq(lv), ok.eq(lok)]
                with m.Case(SRC["col"]):
                    m.d.comb += [v.eq(port.data), ok.eq(1)]
                with m.Case(SRC["const"]):
                    m.d.comb += [v.eq(val), ok.eq(1)]
            return v, ok

        # ---------------- 2D instruction pipeline (stage i drives row i) ----------------------------
        stage_fields = ("op", "a_src", "a_idx", "a_mode", "a_bank", "b_src", "b_idx", "b_mode", "b_bank", "dst",
                        "dst_mode", "dst_bank", "first", "last", "filt", "imm", "a_val", "b_val")
        stages = []
        s0 = {k: Signal.like(f2[k], name=f"s0_{k}") for k in stage_fields}
        for k in stage_fields:
            m.d.comb += s0[k].eq(f2[k] if k != "op" else op2)
        m1 = Signal(range(M1 + 1), name="tile2u")
        m.d.comb += m1.eq(t_first + n2)          # the tile itself (addresses, filter); n2 counts visits
        s0["a_addr"] = Signal(range(p.row_depth + p.col_depth + 2), name="s0_a_addr")
        s0["b_addr"] = Signal(range(p.row_depth + p.col_depth + 2), name="s0_b_addr")
        h2a, h2b = hoffset(f2, "a", "h2a"), hoffset(f2, "b", "h2b")
        m.d.comb += [s0["a_addr"].eq(f2["a_idx"] + m1 * f2["a_stride"] + h2a),
                     s0["b_addr"].eq(f2["b_idx"] + m1 * f2["b_stride"] + h2b)]
        s0["m1"] = Signal(range(M1 + 1), name="s0_m1")
        s0["visit"] = Signal(range(M1 + 1), name="s0_visit")     # register copies alternate by visit
        m.d.comb += s0["visit"].eq(n2)
        s0["ptile"] = Signal(range(p.query_tiles + 1), name="s0_ptile")
        s0["dst_phys"] = Signal(range(p.lane_regs + 1), name="s0_dst_phys")
        m.d.comb += [s0["m1"].eq(m1), s0["ptile"].eq(ptile),
                     s0["dst_phys"].eq(phys(f2["dst"], f2["dst_mode"], f2["dst_bank"], phase2))]
        # column operands of the 2D instruction, read at issue and carried down with it
        for j in range(C):
            for side, port in (("a", col_ra[j]), ("b", col_rb[j])):
                v = Signal(signed(W), name=f"s0_{side}col{j}")
                ok = Signal(name=f"s0_{side}colok{j}")
                lv, lok = lane_read(j, f2[f"{side}_idx"], f2[f"{side}_mode"], f2[f"{side}_bank"], f"c2d{j}{side}",
                                    phase2, first2)
                m.d.comb += port.addr.eq(f2[f"{side}_idx"] + ptile * f2[f"{side}_stride"] + (h2a if side == "a" else h2b))
                with m.Switch(f2[f"{side}_src"]):
                    with m.Case(SRC["lane"]):
                        m.d.comb += [v.eq(lv), ok.eq(lok)]
                    with m.Case(SRC["col"]):
                        m.d.comb += [v.eq(port.data), ok.eq(1)]
                s0[f"{side}col{j}"] = v
                s0[f"{side}colok{j}"] = ok
        stages.append(s0)
        for i in range(1, R):
            prev = stages[-1]
            cur = {k: Signal.like(v, name=f"s{i}_{k}") for k, v in prev.items()}
            m.d.sync += [cur[k].eq(prev[k]) for k in prev]
            stages.append(cur)

        # ---------------- 2D PEs ------------------------------------------------------------------
        NR = p.pe_regs
        red = [[None] * C for _ in range(R)]
        bottom = [None] * C
        for i in range(R):
            st = stages[i]
            for j in range(C):
                nm = f"pe{i}_{j}"
                regs_v = [Signal(signed(W), name=f"{nm}_r{k}") for k in range(NR)]
                regs_p = [Signal(name=f"{nm}_v{k}") for k in range(NR)]
                acc = Signal(signed(AW), name=f"{nm}_acc")
                accv = Signal(name=f"{nm}_accv")
                exp_state = (Signal(signed(W), name=f"{nm}_en"), Signal(signed(W + 1), name=f"{nm}_ef"),
                             Signal(signed(2 * W + 8), name=f"{nm}_ep"), Signal(name=f"{nm}_ev"))
                row_a, row_b = row_ra[i], row_rb[i]
                if j == 0:
                    m.d.comb += [row_a.addr.eq(st["a_addr"]), row_b.addr.eq(st["b_addr"])]

                parity = st["visit"][0]

                def pe_phys(idx, mode, bank):
                    return Mux((mode == MODE["rot"]) & parity, idx + bank, idx)

                def opnd(side):
                    v = Signal(signed(W), name=f"{nm}_{side}")
                    ok = Signal(name=f"{nm}_{side}ok")
                    idx = Signal(range(NR + 1), name=f"{nm}_{side}pi")
                    m.d.comb += idx.eq(pe_phys(st[f"{side}_idx"], st[f"{side}_mode"], st[f"{side}_bank"]))
                    with m.Switch(st[f"{side}_src"]):
                        with m.Case(SRC["reg"]):
                            m.d.comb += [v.eq(Array(regs_v)[idx]), ok.eq(Array(regs_p)[idx])]
                        with m.Case(SRC["row"]):
                            m.d.comb += [v.eq((row_a if side == "a" else row_b).data), ok.eq(1)]
                        with m.Case(SRC["col"], SRC["lane"]):
                            m.d.comb += [v.eq(st[f"{side}col{j}"]), ok.eq(st[f"{side}colok{j}"])]
                        with m.Case(SRC["const"]):
                            m.d.comb += [v.eq(st[f"{side}_val"]), ok.eq(1)]
                        with m.Case(SRC["pos"]):         # a coordinate as a fixed-point value
                            m.d.comb += [v.eq(_sat(m, Array(coords)[st[f"{side}_idx"]] << F, W,
                                                   f"{nm}_{side}pos")), ok.eq(1)]
                    return v, ok

                coords = [Const(i, signed(32)), Cat(st["m1"], Const(0, 1)).as_signed(),
                          Cat(st["ptile"] * C + j, Const(0, 1)).as_signed()]     # in POSITIONS' order
                a, va = opnd("a")
                b, vb = opnd("b")
                pred = Signal(name=f"{nm}_pred")
                m.d.comb += pred.eq(Array(self._filters(st, i, j))[st["filt"]])
                res, rv = self._alu(m, st["op"], a, va, b, vb, st["imm"], exp_state, nm, divider=p.divider_2d)
                wr = Signal(name=f"{nm}_wr")
                writes = [OPS[k] for k in ("add", "sub", "mul", "max", "min", "neg", "expl")]
                m.d.comb += wr.eq(st["op"].matches(*writes, *([OPS["div"]] if p.divider_2d else [])))
                # MAC: exact products in the accumulator, rounded once into the destination
                prod = Signal(signed(2 * W), name=f"{nm}_mprod")
                m.d.comb += prod.eq(a * b)
                pv = Signal(name=f"{nm}_pv")
                m.d.comb += pv.eq(va & vb & pred)
                acc_n = Signal(signed(AW), name=f"{nm}_accn")
                accv_n = Signal(name=f"{nm}_accvn")
                m.d.comb += [acc_n.eq(Mux(st["first"], 0, acc) + Mux(pv, prod, 0)),
                             accv_n.eq(Mux(st["first"], 0, accv) | pv)]
                mac_out = _sat(m, _round_shift(acc_n, F), W, f"{nm}_macout")
                with m.If(st["op"] == OPS["mac"]):
                    m.d.sync += [acc.eq(acc_n), accv.eq(accv_n)]
                dst = Signal(range(NR + 1), name=f"{nm}_dst")
                m.d.comb += dst.eq(pe_phys(st["dst"], st["dst_mode"], st["dst_bank"]))
                for k in range(NR):
                    with m.If((dst == k) & wr):
                        m.d.sync += [regs_v[k].eq(res), regs_p[k].eq(rv & pred)]
                    with m.If((dst == k) & (st["op"] == OPS["mac"]) & st["last"]):
                        m.d.sync += [regs_v[k].eq(mac_out), regs_p[k].eq(accv_n)]
                # reduction down the column
                rin = red[i - 1][j] if i > 0 else (Const(0, signed(AW)), Const(0, 1))
                local = Signal(signed(AW), name=f"{nm}_local")
                lv_ = Signal(name=f"{nm}_localv")
                with m.Switch(st["op"]):
                    with m.Case(OPS["rmac"]):
                        m.d.comb += [local.eq(prod), lv_.eq(va & vb & pred)]
                    with m.Default():
                        m.d.comb += [local.eq(a), lv_.eq(va & pred)]
                comb_v = Signal(signed(AW), name=f"{nm}_redc")
                comb_ok = Signal(name=f"{nm}_redcok")
                both = Mux(st["op"] == OPS["rmax"], Mux(rin[0] > local, rin[0], local), rin[0] + local)
                m.d.comb += [comb_v.eq(Mux(rin[1] & lv_, both, Mux(lv_, local, rin[0]))), comb_ok.eq(rin[1] | lv_)]
                rout = (Signal(signed(AW), name=f"{nm}_redo"), Signal(name=f"{nm}_redook"))
                m.d.sync += [rout[0].eq(comb_v), rout[1].eq(comb_ok)]
                red[i][j] = rout
                if i == R - 1:
                    bottom[j] = (comb_v, comb_ok)

        # ---------------- 1D lanes ----------------------------------------------------------------
        sb = stages[R - 1]       # the reduction leaving the bottom row this cycle
        is_red = Signal()
        m.d.comb += is_red.eq(sb["op"].matches(OPS["rmax"], OPS["radd"], OPS["rmac"]))
        for j in range(C):
            nm = f"lane{j}"
            a, va = operand_1d(j, "a", f1, nm)
            b, vb = operand_1d(j, "b", f1, nm)
            exp_state = (Signal(signed(W), name=f"{nm}_en"), Signal(signed(W + 1), name=f"{nm}_ef"),
                         Signal(signed(2 * W + 8), name=f"{nm}_ep"), Signal(name=f"{nm}_ev"))
            res, rv = self._alu(m, op1, a, va, b, vb, f1["imm"], exp_state, nm, divider=True)
            wr = Signal(name=f"{nm}_wr")
            m.d.comb += wr.eq(op1.matches(OPS["add"], OPS["sub"], OPS["mul"], OPS["max"], OPS["min"],
                                          OPS["neg"], OPS["expl"], OPS["div"]))
            wdst = Signal(range(NL + 1), name=f"{nm}_wdst")
            m.d.comb += wdst.eq(phys(f1["dst"], f1["dst_mode"], f1["dst_bank"], phase1))
            # reduction arriving from the bottom of column j
            bv, bok = bottom[j]
            conv = Signal(signed(W), name=f"{nm}_conv")
            with m.Switch(sb["op"]):
                with m.Case(OPS["rmac"]):
                    m.d.comb += conv.eq(_sat(m, _round_shift(bv, F), W, f"{nm}_cmac"))
                with m.Default():
                    m.d.comb += conv.eq(_sat(m, bv, W, f"{nm}_cadd"))
            rdst = Signal(range(NL + 1), name=f"{nm}_rdst")
            m.d.comb += rdst.eq(sb["dst_phys"])
            for k in range(NL):
                with m.If(wr & (wdst == k) & running):
                    m.d.sync += [lane_v[j][k].eq(res), lane_p[j][k].eq(rv)]
                with m.If(is_red & (rdst == k)):
                    m.d.sync += [lane_v[j][k].eq(conv), lane_p[j][k].eq(bok)]

        # ---------------- outputs -----------------------------------------------------------------
        (oname, obase, obeats), = p.outputs
        obeat = Signal(range(obeats + 1))
        with m.If(out_start):
            m.d.sync += [out_busy.eq(1), obeat.eq(0)]
        lanes_out, present_out = [], []
        P = p.queries
        for j in range(C):
            w = Signal(signed(W), name=f"out{j}")
            pr = Signal(name=f"out_present{j}")
            idx = obase + obeat + Mux(t_count[0], p.output_bank, 0)
            # a lane past the last query of a partial block, or a value nothing wrote: absent, and 0
            m.d.comb += pr.eq(Array(lane_p[j])[idx] & (out_tile * C + j < P))
            m.d.comb += w.eq(Mux(pr, Array(lane_v[j])[idx], 0))
            lanes_out.append(w)
            present_out.append(pr)
        m.d.comb += [self.out_data.eq(Cat(*lanes_out)), self.out_present.eq(Cat(*present_out)),
                     self.out_valid.eq(out_busy)]
        with m.If(self.out_valid & self.out_ready):
            with m.If(obeat == obeats - 1):
                m.d.sync += out_busy.eq(0)
            with m.Else():
                m.d.sync += obeat.eq(obeat + 1)
        m.d.comb += [self.busy.eq((state == 1) | (state == 2)), self.done.eq((state == 3) & ~out_busy & ~out_start)]
        # a new job after done, without reset: the first input word offered while done returns the
        # whole engine to its reset state on that edge (the word is taken on the next, as in_ready
        # is low while done); the buffers are rewritten by the job's own loads
        restart = Signal()
        m.d.comb += restart.eq(self.done & self.in_valid)
        return ResetInserter({"sync": restart})(m)

    # -- helpers ---------------------------------------------------------------------------------
    def _scaled_word(self, m, word, constant: int, name: str):
        """``sat(round(word * constant >> frac))``: FixedPoint.mul by a constant."""
        q = self.prog.numbers
        W, F = q.width, q.frac_bits
        prod = Signal(signed(2 * W + 2), name=f"scale_{name}_prod")
        m.d.comb += prod.eq(word * Const(constant, signed(W + 1)))
        rounded = Signal(signed(2 * W + 2), name=f"scale_{name}_round")
        m.d.comb += rounded.eq((prod + (1 << (F - 1))) >> F if F else prod)
        out = Signal(signed(W), name=f"scale_{name}")
        with m.If(rounded > q.hi):
            m.d.comb += out.eq(q.hi)
        with m.Elif(rounded < q.lo):
            m.d.comb += out.eq(q.lo)
        with m.Else():
            m.d.comb += out.eq(rounded)
        return out

    @staticmethod
    def _max(p: Program, field: str) -> int:
        nh = len(p.instances)
        vals = [_Fields.encode(t[0], nh)[field] for t in p.timeline] + [_Fields.encode(t[1], nh)[field]
                                                                      for t in p.timeline]
        vals += [_Fields.encode(i, nh)[field] for i in p.epilogue]
        return max([abs(v) for v in vals] + [1])

    def _filters(self, st, i, j) -> list:
        """The predicates at PE (i, j): [always] + one per filter set of the program (the variables
        are the tile row i, the query and the step); an instruction selects one by its ``filt``."""
        p = self.prog
        env = {p.tile_var: Const(i, signed(16)), p.loop_var: Cat(st["m1"], Const(0, 1)).as_signed(),
               p.lane_var: Cat(st["ptile"] * p.cols + j, Const(0, 1)).as_signed()}
        preds = [Const(1, 1)]
        for fs in p.filter_sets:
            ok = Const(1, 1)
            for f in fs:
                lhs, rhs = _index(f.left, env, p.sizes), _index(f.right, env, p.sizes)
                ok = ok & {"<": lhs < rhs, "<=": lhs <= rhs, ">": lhs > rhs, ">=": lhs >= rhs,
                           "==": lhs == rhs, "!=": lhs != rhs}[f.op]
            preds.append(ok)
        return preds


def _index(ix, env, sizes):
    from ..einsum._ir import BinOp, Num, Sym, Var

    if isinstance(ix, Var):
        return env[ix.name]
    if isinstance(ix, Sym):
        return Const(int(sizes[ix.name]), signed(32))
    if isinstance(ix, Num):
        return Const(ix.value, signed(32))
    if isinstance(ix, BinOp):
        a, b = _index(ix.left, env, sizes), _index(ix.right, env, sizes)
        return {"+": a + b, "-": a - b, "*": a * b}[ix.op]
    raise ValueError(ix)
