"""The attention engine's units, each its own Verilog module: the ALU both arrays share, a 2D PE, a
1D lane and an operand buffer.

A PE and a lane compute with one multiplier: the MAC's product, the ALU's multiply and every step
of the exp (``x * log2(e)`` and the five Horner steps ``p * f + c``) take turns on it, as FuseMax
computes exp on the MAC. The Horner state never reaches ``2**(frac + 2)`` (the coefficients are
``ln(2)**n / n!``, the fraction is in ``[0, 1)``, so each step adds at most its coefficient and a
rounding), so one ``max(width, frac + 4)``-bit operand pair serves every product.
"""

from __future__ import annotations

from amaranth import Array, Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import In, Out

from ..einsum import DIVIDER_STEPS
from ._errors import RTLError
from ._program import MODE, OPS, SRC

__all__ = ["sat", "round_shift", "alu", "PE", "Lane", "Buffer", "mul_width"]


def sat(m, x, w, name):
    """``x`` saturated to a signed ``w``-bit word."""
    lo, hi = -(1 << (w - 1)), (1 << (w - 1)) - 1
    out = Signal(signed(w), name=name)
    m.d.comb += out.eq(Mux(x > hi, hi, Mux(x < lo, lo, x)))
    return out


def round_shift(x, s):
    """``x / 2**s`` rounded half up (the fixed-point rounding of the golden model)."""
    return (x + (1 << (s - 1))) >> s if s > 0 else x


def mul_width(numbers) -> int:
    """Operand width of the shared multiplier (see the module docstring)."""
    return max(numbers.width, numbers.frac_bits + 4)


def _exp_registers(m, numbers, name):
    """The exp's state between its steps: integer part, fraction, Horner value, presence."""
    W, F = numbers.width, numbers.frac_bits
    return (Signal(signed(W), name=f"{name}_en"), Signal(signed(F + 2), name=f"{name}_ef"),
            Signal(signed(mul_width(numbers)), name=f"{name}_ep"), Signal(name=f"{name}_ev"))


def alu(m, numbers, op, a, va, b, vb, imm, name, *, divider: bool):
    """One ALU operation on (value, presence) operands.

    Returns ``(result, presence, product)``: ``product`` is the shared multiplier's output, which a
    PE's MAC uses for ``mac``/``rmac`` (operands ``a * b``). The exp steps update the unit's exp
    registers as a side effect.
    """
    W, F = numbers.width, numbers.frac_bits
    MW = mul_width(numbers)
    consts = numbers.exp_constants()
    en, ef, ep, ev = _exp_registers(m, numbers, name)
    res = Signal(signed(W), name=f"{name}_res")
    rv = Signal(name=f"{name}_rv")
    # the one multiplier and what it multiplies this cycle
    mx, my = Signal(signed(MW), name=f"{name}_mx"), Signal(signed(MW), name=f"{name}_my")
    with m.Switch(op):
        with m.Case(OPS["exp0"]):
            m.d.comb += [mx.eq(a), my.eq(consts["log2e"])]
        with m.Case(OPS["exps"], OPS["expl"]):
            m.d.comb += [mx.eq(ep), my.eq(ef)]
        with m.Default():
            m.d.comb += [mx.eq(a), my.eq(b)]
    prod = Signal(signed(2 * MW), name=f"{name}_prod")
    m.d.comb += prod.eq(mx * my)
    # a product as a word: the ALU's multiply, and the exp's first step t = x * log2(e) = n + f
    t = sat(m, round_shift(prod, F), W, f"{name}_mul")
    n_new = Signal(signed(W), name=f"{name}_n")
    m.d.comb += n_new.eq(t >> F)
    f_new = Signal(signed(F + 2), name=f"{name}_f")
    m.d.comb += f_new.eq(t[:F] if F else 0)        # t - n * 2**F: the low bits
    # a Horner step: p * f + c
    horner = Signal(signed(2 * MW + 2), name=f"{name}_horner")
    m.d.comb += horner.eq(round_shift(prod + (imm << F), F))
    exp_out = _scale_by_power_of_two(m, horner, en, W, F, name)
    with m.Switch(op):
        with m.Case(OPS["add"], OPS["max"], OPS["min"]):
            s_add = sat(m, a + b, W, f"{name}_add")
            both = Mux(op == OPS["add"], s_add, Mux(op == OPS["max"], Mux(a > b, a, b), Mux(a < b, a, b)))
            m.d.comb += [res.eq(Mux(va & vb, both, Mux(va, a, b))), rv.eq(va | vb)]
        with m.Case(OPS["sub"]):
            m.d.comb += [res.eq(sat(m, a - b, W, f"{name}_sub")), rv.eq(va & vb)]
        with m.Case(OPS["mul"]):
            m.d.comb += [res.eq(t), rv.eq(va & vb)]
        with m.Case(OPS["neg"]):
            m.d.comb += [res.eq(sat(m, -a, W, f"{name}_neg")), rv.eq(va)]
        with m.Case(OPS["exp0"]):
            m.d.sync += [en.eq(n_new), ef.eq(f_new), ep.eq(consts["coeffs"][0]), ev.eq(va)]
        with m.Case(OPS["exps"]):
            m.d.sync += ep.eq(horner)
        with m.Case(OPS["expl"]):
            m.d.comb += [res.eq(exp_out), rv.eq(ev)]
    if divider:
        quotient, quotient_ok = _divider(m, numbers, op, a, va, b, vb, name)
        with m.If(op == OPS["divl"]):
            m.d.comb += [res.eq(quotient), rv.eq(quotient_ok)]
    return res, rv, prod


def _scale_by_power_of_two(m, p, n, W, F, name):
    """``p * 2**n`` as a word: left shifts saturate, right shifts round (the golden model's exp)."""
    nl = Signal(range(W + 2), name=f"{name}_nl")
    nr = Signal(range(F + 4), name=f"{name}_nr")
    m.d.comb += [nl.eq(Mux(n > W + 1, W + 1, Mux(n < 0, 0, n))),
                 nr.eq(Mux(-n > F + 3, F + 3, Mux(n > 0, 0, -n)))]
    pw = len(p)
    left = Signal(signed(pw + W + 2), name=f"{name}_left")
    m.d.comb += left.eq(p << nl)
    half = Signal(signed(pw), name=f"{name}_half")
    nr1 = Signal(range(F + 4), name=f"{name}_nr1")
    m.d.comb += [nr1.eq(Mux(nr == 0, 0, nr - 1)), half.eq(Mux(nr == 0, 0, Const(1, signed(pw)) << nr1))]
    right = Signal(signed(pw), name=f"{name}_right")
    m.d.comb += right.eq((p + half) >> nr)
    out = Signal(signed(W), name=f"{name}_exp")
    m.d.comb += out.eq(Mux(n >= 0, sat(m, left, W, f"{name}_sleft"), sat(m, right, W, f"{name}_sright")))
    return out


def _divider(m, numbers, op, a, va, b, vb, name):
    """The iterative divider: ``a / b`` in fixed point over ``DIVIDER_STEPS`` instructions.

    ``div0`` takes the operands' magnitudes and signs; each ``divs`` finds the next
    ``ceil((width + frac) / (DIVIDER_STEPS - 2))`` quotient bits by restoring division; ``divl``
    returns the quotient: the truncated magnitude ``(|a| << frac) // |b|`` with the sign applied,
    saturated; by 0, the signed extreme of ``a``'s sign (the golden model's ``FixedPoint.div``).
    Each step is a few subtractions deep, like the rest of the datapath.
    """
    W, F = numbers.width, numbers.frac_bits
    bits = -(-(W + F) // (DIVIDER_STEPS - 2))
    NB = bits * (DIVIDER_STEPS - 2)       # the numerator, zero-padded on top to whole steps
    rem = Signal(W + 1, name=f"{name}_drem")
    num = Signal(NB, name=f"{name}_dnum")
    quo = Signal(NB, name=f"{name}_dquo")
    den = Signal(W, name=f"{name}_dden")
    neg, a_neg, zero, ok = (Signal(name=f"{name}_d{k}") for k in ("neg", "aneg", "zero", "ok"))
    abs_a, abs_b = Signal(W, name=f"{name}_dabsa"), Signal(W, name=f"{name}_dabsb")
    m.d.comb += [abs_a.eq(Mux(a < 0, -a, a)), abs_b.eq(Mux(b < 0, -b, b))]
    with m.If(op == OPS["div0"]):
        m.d.sync += [rem.eq(0), num.eq(abs_a << F), quo.eq(0), den.eq(abs_b), neg.eq((a < 0) ^ (b < 0)),
                     a_neg.eq(a < 0), zero.eq(abs_b == 0), ok.eq(va & vb)]
    r, q, n = rem, quo, num
    for k in range(bits):                 # one quotient bit per stage
        t = Signal(W + 1, name=f"{name}_dt{k}")
        m.d.comb += t.eq(Cat(n[NB - 1], r))
        ge = Signal(name=f"{name}_dge{k}")
        m.d.comb += ge.eq(t >= den)
        r_next, q_next = Signal(W + 1, name=f"{name}_dr{k}"), Signal(NB, name=f"{name}_dq{k}")
        m.d.comb += [r_next.eq(Mux(ge, t - den, t)), q_next.eq(Cat(ge, q))]
        r, q, n = r_next, q_next, (n << 1)[:NB]
    with m.If(op == OPS["divs"]):
        m.d.sync += [rem.eq(r), num.eq(n), quo.eq(q)]
    signed_q = Signal(signed(NB + 2), name=f"{name}_dsq")
    m.d.comb += signed_q.eq(Mux(neg, -quo, quo))
    out = Signal(signed(W), name=f"{name}_div")
    m.d.comb += out.eq(Mux(zero, Mux(a_neg, numbers.lo, numbers.hi), sat(m, signed_q, W, f"{name}_sdiv")))
    return out, ok


class PE(wiring.Component):
    """A 2D PE at row ``row``, column ``col``: registers, a MAC accumulator, the ALU, a filter, and
    its step of the column reduction.

    ``fields`` are the shapes of the instruction it runs (``i_*`` ports). Operands come from its
    registers, its row's buffer (``row_a``/``row_b``), its column's buffer or lane (``col_a``/
    ``col_b``, read at issue), a constant, or its own coordinates. ``red_in`` is the reduction from
    the PE above; ``red_out`` (registered) goes to the PE below, ``red_now`` (combinational) to the
    lane when this is the bottom row.
    """

    INSTR = ("op", "a_src", "a_idx", "a_mode", "a_bank", "a_val", "b_src", "b_idx", "b_mode", "b_bank", "b_val",
             "dst", "dst_mode", "dst_bank", "first", "last", "filt", "imm", "m1", "visit", "ptile")

    def __init__(self, prog, row: int, col: int, fields: dict, acc_width: int):
        self.prog, self.row, self.col, self.AW = prog, row, col, acc_width
        W = prog.numbers.width
        ports = {f"i_{k}": In(fields[k]) for k in self.INSTR}
        for side in "ab":
            ports.update({f"row_{side}": In(signed(W)), f"col_{side}": In(signed(W)), f"col_{side}_ok": In(1)})
        ports.update(red_in=In(signed(acc_width)), red_in_ok=In(1), red_out=Out(signed(acc_width)),
                     red_out_ok=Out(1), red_now=Out(signed(acc_width)), red_now_ok=Out(1))
        super().__init__(ports)

    def elaborate(self, platform):
        m = Module()
        p, q = self.prog, self.prog.numbers
        W, F, NR = q.width, q.frac_bits, p.pe_regs
        ins = {k: getattr(self, f"i_{k}") for k in self.INSTR}
        regs_v = [Signal(signed(W), name=f"r{k}") for k in range(NR)]
        regs_p = [Signal(name=f"v{k}") for k in range(NR)]
        parity = ins["visit"][0]

        def physical(idx, mode, bank):       # the copy of this tile's parity ("rot" tensors)
            return Mux((mode == MODE["rot"]) & parity, idx + bank, idx)

        coords = [Const(self.row, signed(32)), Cat(ins["m1"], Const(0, 1)).as_signed(),
                  Cat(ins["ptile"] * p.cols + self.col, Const(0, 1)).as_signed()]      # in POSITIONS' order

        def operand(side):
            v, ok = Signal(signed(W), name=side), Signal(name=f"{side}_ok")
            idx = Signal(range(NR + 1), name=f"{side}_reg")
            m.d.comb += idx.eq(physical(ins[f"{side}_idx"], ins[f"{side}_mode"], ins[f"{side}_bank"]))
            with m.Switch(ins[f"{side}_src"]):
                with m.Case(SRC["reg"]):
                    m.d.comb += [v.eq(Array(regs_v)[idx]), ok.eq(Array(regs_p)[idx])]
                with m.Case(SRC["row"]):
                    m.d.comb += [v.eq(getattr(self, f"row_{side}")), ok.eq(1)]
                with m.Case(SRC["col"], SRC["lane"]):
                    m.d.comb += [v.eq(getattr(self, f"col_{side}")), ok.eq(getattr(self, f"col_{side}_ok"))]
                with m.Case(SRC["const"]):
                    m.d.comb += [v.eq(ins[f"{side}_val"]), ok.eq(1)]
                with m.Case(SRC["pos"]):         # a coordinate as a fixed-point value
                    m.d.comb += [v.eq(sat(m, Array(coords)[ins[f"{side}_idx"]] << F, W, f"{side}_pos")), ok.eq(1)]
            return v, ok

        a, va = operand("a")
        b, vb = operand("b")
        pred = Signal()
        m.d.comb += pred.eq(Array(filter_predicates(p, self.row, self.col, ins["m1"], ins["ptile"]))[ins["filt"]])
        res, rv, prod = alu(m, q, ins["op"], a, va, b, vb, ins["imm"], "alu", divider=p.divider_2d)
        mac_out, mac_ok = self._mac(m, ins, prod, va & vb & pred)
        writes = [OPS[k] for k in ("add", "sub", "mul", "max", "min", "neg", "expl")]
        wr = Signal()
        m.d.comb += wr.eq(ins["op"].matches(*writes, *([OPS["divl"]] if p.divider_2d else [])))
        dst = Signal(range(NR + 1))
        m.d.comb += dst.eq(physical(ins["dst"], ins["dst_mode"], ins["dst_bank"]))
        for k in range(NR):
            with m.If((dst == k) & wr):
                m.d.sync += [regs_v[k].eq(res), regs_p[k].eq(rv & pred)]
            with m.If((dst == k) & (ins["op"] == OPS["mac"]) & ins["last"]):
                m.d.sync += [regs_v[k].eq(mac_out), regs_p[k].eq(mac_ok)]
        self._reduce(m, ins["op"], a, va, prod, va & vb & pred, pred)
        return m

    def _mac(self, m, ins, prod, present):
        """The accumulator: exact products summed, rounded once into the destination."""
        q, AW = self.prog.numbers, self.AW
        acc, accv = Signal(signed(AW), name="acc"), Signal(name="acc_ok")
        acc_n, accv_n = Signal(signed(AW), name="acc_next"), Signal(name="acc_next_ok")
        m.d.comb += [acc_n.eq(Mux(ins["first"], 0, acc) + Mux(present, prod, 0)),
                     accv_n.eq(Mux(ins["first"], 0, accv) | present)]
        with m.If(ins["op"] == OPS["mac"]):
            m.d.sync += [acc.eq(acc_n), accv.eq(accv_n)]
        return sat(m, round_shift(acc_n, q.frac_bits), q.width, "mac_out"), accv_n

    def _reduce(self, m, op, a, va, prod, prod_ok, pred):
        """This PE's step of a reduction down its column (max, sum, or sum of products)."""
        local, local_ok = Signal(signed(self.AW), name="red_local"), Signal(name="red_local_ok")
        with m.Switch(op):
            with m.Case(OPS["rmac"]):
                m.d.comb += [local.eq(prod), local_ok.eq(prod_ok)]
            with m.Default():
                m.d.comb += [local.eq(a), local_ok.eq(va & pred)]
        rin, rin_ok = self.red_in, self.red_in_ok
        both = Mux(op == OPS["rmax"], Mux(rin > local, rin, local), rin + local)
        m.d.comb += [self.red_now.eq(Mux(rin_ok & local_ok, both, Mux(local_ok, local, rin))),
                     self.red_now_ok.eq(rin_ok | local_ok)]
        m.d.sync += [self.red_out.eq(self.red_now), self.red_out_ok.eq(self.red_now_ok)]


def filter_predicates(p, row, col, m1, ptile) -> list:
    """The predicates at PE (row, col): [always] + one per filter set of the program (over the tile
    row, the query and the step); an instruction selects one by its ``filt``."""
    env = {p.tile_var: Const(row, signed(16)), p.loop_var: Cat(m1, Const(0, 1)).as_signed(),
           p.lane_var: Cat(ptile * p.cols + col, Const(0, 1)).as_signed()}
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
        if ix.op in ("//", "%"):            # by a size or a number: a constant divisor (floor, as the IR)
            if not isinstance(ix.right, (Num, Sym)):
                raise RTLError(f"the filter index {ix.text()} divides by a variable; the PEs divide by constants")
            return a // b if ix.op == "//" else a % b
        return {"+": a + b, "-": a - b, "*": a * b}[ix.op]
    raise ValueError(ix)


class Lane(wiring.Component):
    """A 1D lane: a register file (iterative tensors in two banks), the ALU with a divider, and the
    landing of its column's reductions.

    Register indices arrive already mapped to the physical register (``*_reg``) by the controller;
    ``*_init`` marks a read of an iterative tensor's initial value, which is empty. Reads for the
    2D array's column operands (``r2a``/``r2b``) and for the output stream are ports too.
    """

    def __init__(self, prog, fields: dict, acc_width: int):
        self.prog, self.AW = prog, acc_width
        W, NL = prog.numbers.width, prog.lane_regs
        reg = range(NL + 1)
        ports = {"op": In(fields["op"]), "imm": In(fields["imm"]), "dst_reg": In(reg), "write": In(1)}
        for side in "ab":
            ports.update({f"{side}_src": In(fields[f"{side}_src"]), f"{side}_reg": In(reg),
                          f"{side}_init": In(1), f"{side}_val": In(fields[f"{side}_val"]),
                          f"{side}_col": In(signed(W))})
        ports.update(red_en=In(1), red_mac=In(1), red_reg=In(reg), red_value=In(signed(acc_width)),
                     red_ok=In(1))
        for port in ("r2a", "r2b", "out"):
            ports.update({f"{port}_reg": In(reg), f"{port}_init": In(1), f"{port}": Out(signed(W)),
                          f"{port}_ok": Out(1)})
        super().__init__(ports)

    def elaborate(self, platform):
        m = Module()
        p, q = self.prog, self.prog.numbers
        W, F, NL = q.width, q.frac_bits, p.lane_regs
        regs_v = [Signal(signed(W), name=f"r{k}") for k in range(NL)]
        regs_p = [Signal(name=f"v{k}") for k in range(NL)]

        def read(idx, init, v, ok):
            m.d.comb += [v.eq(Array(regs_v)[idx]), ok.eq(Array(regs_p)[idx] & ~init)]

        for port in ("r2a", "r2b", "out"):
            read(getattr(self, f"{port}_reg"), getattr(self, f"{port}_init"), getattr(self, port),
                 getattr(self, f"{port}_ok"))

        def operand(side):
            lv, lok = Signal(signed(W), name=f"{side}_lane"), Signal(name=f"{side}_lane_ok")
            read(getattr(self, f"{side}_reg"), getattr(self, f"{side}_init"), lv, lok)
            v, ok = Signal(signed(W), name=side), Signal(name=f"{side}_ok")
            with m.Switch(getattr(self, f"{side}_src")):
                with m.Case(SRC["lane"]):
                    m.d.comb += [v.eq(lv), ok.eq(lok)]
                with m.Case(SRC["col"]):
                    m.d.comb += [v.eq(getattr(self, f"{side}_col")), ok.eq(1)]
                with m.Case(SRC["const"]):
                    m.d.comb += [v.eq(getattr(self, f"{side}_val")), ok.eq(1)]
            return v, ok

        a, va = operand("a")
        b, vb = operand("b")
        res, rv, _ = alu(m, q, self.op, a, va, b, vb, self.imm, "alu", divider=True)
        wr = Signal()
        m.d.comb += wr.eq(self.write & self.op.matches(OPS["add"], OPS["sub"], OPS["mul"], OPS["max"], OPS["min"],
                                                       OPS["neg"], OPS["expl"], OPS["divl"]))
        # a reduction arriving from the bottom of the column: a sum of products is rounded once
        conv = Signal(signed(W))
        m.d.comb += conv.eq(Mux(self.red_mac, sat(m, round_shift(self.red_value, F), W, "red_mac"),
                                sat(m, self.red_value, W, "red_sum")))
        for k in range(NL):
            with m.If(wr & (self.dst_reg == k)):
                m.d.sync += [regs_v[k].eq(res), regs_p[k].eq(rv)]
            with m.If(self.red_en & (self.red_reg == k)):
                m.d.sync += [regs_v[k].eq(conv), regs_p[k].eq(self.red_ok)]
        return m


class Buffer(wiring.Component):
    """An operand buffer: one write port and ``reads`` combinational read ports."""

    def __init__(self, depth: int, width: int, reads: int):
        self.depth, self.reads = depth, reads
        ports = {"w_addr": In(range(max(2, depth))), "w_data": In(signed(width)), "w_en": In(1)}
        for k in range(reads):
            ports.update({f"r{k}_addr": In(range(max(2, depth))), f"r{k}_data": Out(signed(width))})
        super().__init__(ports)

    def elaborate(self, platform):
        m = Module()
        m.submodules.mem = mem = memory.Memory(shape=self.w_data.shape(), depth=self.depth, init=[])
        w = mem.write_port()
        m.d.comb += [w.addr.eq(self.w_addr), w.data.eq(self.w_data), w.en.eq(self.w_en)]
        for k in range(self.reads):
            r = mem.read_port(domain="comb")
            m.d.comb += [r.addr.eq(getattr(self, f"r{k}_addr")), getattr(self, f"r{k}_data").eq(r.data)]
        return m
