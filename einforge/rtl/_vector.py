"""The vector unit: ``C`` lanes running element-wise Einsums and sums in time, for the stages of a
cascade that are neither a tensor product (the GEMM array) nor a tile loop (the attention engine):
feature maps (``elu(x) + 1``), activations, the final combination of two attention outputs, a
sum over one rank.

One rank of the stage, the *lane rank*, is spread over the lanes; every tensor of the stage carries
it. The unit works on blocks of ``C`` coordinates of that rank: it loads the block's inputs into the
lanes' registers (one word a cycle), runs the stage's static program (one instruction a cycle, the
same in every lane), then streams the block's outputs (one beat of ``C`` lanes per element of the
other ranks). The program is the cost model's count, instruction for instruction: an ALU operation
per operator, six steps per exp, ``DIVIDER_STEPS`` per division, one MAC or max per point of a
reduction; the unit's ``cycles`` counts the cycles that run it.

Arithmetic is the golden model's: an operator at a time, rounded as the fixed-point number system
rounds it; a sum in time in a wide accumulator, rounded once (a sum of two-factor products, or of
values); presence as the executor's (``+``, ``max`` and ``min`` keep the operand that exists).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

from amaranth import Array, Cat, Module, Mux, ResetInserter, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..einsum import (
    Access,
    Call,
    Cascade,
    Const,
    FixedPoint,
    Position,
    SizeRef,
    Var,
    is_constant,
    product_factors,
)
from ._errors import RTLError
from ._program import OPS, SRC, Instr, Operand, _Computed, _eval_static, _fold, _subst, operator_instrs
from ._units import alu, mul_width, round_shift, sat

__all__ = ["VectorProgram", "VectorUnit", "compile_vector", "lane_rank_of", "lower_vector"]

_WRITES = ("add", "sub", "mul", "max", "min", "neg", "expl", "divl")


@dataclass(frozen=True)
class VectorProgram:
    """A stage compiled for the vector unit: what each lane holds and the instructions of a block."""

    lanes: int
    numbers: FixedPoint
    lane_rank: str
    extent: int                  # size of the lane rank
    registers: int
    instrs: tuple                # one block's instructions, in issue order
    loads: tuple                 # (input, first register, temporal ranks), in stream order
    outputs: tuple               # (output, temporal ranks, the register of each element), in stream order
    sizes: tuple                 # (rank, size) pairs
    presets: tuple = ()          # (register, raw value): initial iterates, set as a block's loading starts

    @property
    def blocks(self) -> int:
        return -(-self.extent // self.lanes)

    @property
    def input_registers(self) -> int:
        return sum(self._size(t) for _, _, t in self.loads)

    @property
    def output_registers(self) -> tuple:
        """The register each output beat of a block reads, in stream order."""
        return tuple(r for _, _, regs in self.outputs for r in regs)

    def lanes_in(self, block: int) -> int:
        return min(self.lanes, self.extent - block * self.lanes)

    @property
    def cycles(self) -> int:
        """Cycles running instructions (the unit's ``cycles``): blocks x program length."""
        return self.blocks * len(self.instrs)

    def _size(self, ranks) -> int:
        sz = dict(self.sizes)
        return math.prod(sz[r] for r in ranks)


def lane_rank_of(cascade: Cascade, sizes: dict | None, wanted: str | None = None) -> str:
    """The rank spread over the lanes: ``wanted``, or of the ranks every tensor of the stage carries
    and no Einsum reduces, the largest (the last of the first output's ranks on a tie).

    Raises
    ------
    RTLError
        No such rank, or ``wanted`` is not one.
    """
    tensors = [t.name for t in cascade.inputs] + [e.name for e in cascade.einsums]
    common = None
    for t in tensors:
        ranks = set(cascade.tensors[t].ranks)
        common = ranks if common is None else common & ranks
    reduced = {v.upper() for e in cascade.einsums for v, _ in e.reduce} | set(cascade.iterative_ranks)
    usable = [r for r in cascade.tensors[cascade.outputs[0]].ranks if r in (common or set()) and r not in reduced]
    if wanted is not None:
        if wanted not in usable:
            raise RTLError(f"{cascade.name}: {wanted} cannot be the vector unit's lane rank (the ranks every tensor "
                           f"carries and no Einsum reduces: {', '.join(usable) or 'none'})")
        return wanted
    if not usable:
        raise RTLError(f"{cascade.name}: the vector unit spreads one rank over its lanes, and no rank is carried by "
                       "every tensor and reduced by no Einsum; cut the stage into parts that share one "
                       f"(einforge rewrite {cascade.name} --stage OUTPUTS:INPUTS)")
    return usable[-1] if sizes is None else max(reversed(usable), key=lambda r: sizes[r])


def compile_vector(cascade: Cascade, lanes: int, numbers: FixedPoint, sizes: dict,
                   lane_rank: str | None = None) -> VectorProgram:
    """Compile an element-wise stage for ``lanes`` vector lanes.

    Raises
    ------
    RTLError
        Naming the Einsum and what the lanes cannot do (filters, iterative ranks, an index that is
        not static, a product of more than two tensors, an operator without an instruction).
    """
    check_vector(cascade)
    lane = lane_rank_of(cascade, sizes, lane_rank)
    return _Compiler(cascade, lanes, numbers, sizes, lane).program()


def check_vector(cascade: Cascade) -> None:
    """What the vector unit refuses before any size is known (raises :class:`RTLError`)."""
    if len(cascade.iterative_ranks) > 1:
        raise RTLError(f"{cascade.name} loops over {len(cascade.iterative_ranks)} iterative ranks; the vector unit "
                       "runs one loop")
    for i, e in enumerate(cascade.einsums):
        kind = cascade.einsum_kind(i)
        if e.filters and kind != "init":
            raise RTLError(f"Einsum {e.name} has a filter ({e.filters[0].text()}); the vector unit has no masking")
        for ix in e.output.indices:
            if not isinstance(ix, Var) and kind != "update":
                raise RTLError(f"Einsum {e.name}: the vector unit writes outputs at plain rank variables, "
                               f"not {ix.text()}")
    lane_rank_of(cascade, None)


class _Compiler:
    """Registers for every tensor's block, then each Einsum's instructions point by point."""

    def __init__(self, cascade, lanes, numbers, sizes, lane):
        self.c, self.C, self.q, self.sizes, self.lane = cascade, lanes, numbers, dict(sizes), lane
        self.lv = lane.lower()
        # a loop over an iterative rank is unrolled; its iterates are registers (bound + 1 of them)
        (self.loop, it), = cascade.iterative_ranks.items() if cascade.iterative_ranks else ((None, None),)
        self.steps = int(it.bound.evaluate(self.sizes)) if it is not None else 0
        self.loop_var = it.var if it is not None else None
        self.regs: dict[str, tuple[int, list]] = {}
        # a copy or re-layout (``BK[m,e] = K[e,m]``) takes no instruction and no register: reads
        # of it read its source, as the cost model counts it free
        self.alias = {e.name: e for e in cascade.einsums if isinstance(e.expr, Access) and not e.reduce}
        self.n = 0
        loads = []
        for t in cascade.inputs:
            loads.append((t.name, self._allocate(t.name), tuple(self._temporal(t.name))))
        for e in cascade.einsums:
            if e.name not in self.regs and e.name not in self.alias:
                self._allocate(e.name)
        self.loads = tuple(loads)
        self.fixed = self.n
        self.top = self.n

    def _temporal(self, t):
        return [r for r in self.c.tensors[t].ranks if r != self.lane]

    def _extent(self, t, r) -> int:
        """Coordinates of ``t`` along ``r``: an iterative tensor keeps every iterate, 0..bound."""
        info = self.c.tensors[t]
        it = info.ranks[info.iterative] if info.iterative is not None else None
        return self.sizes[r] + (1 if r == it else 0)

    def _allocate(self, t) -> int:
        base = self.n
        self.regs[t] = (base, self._temporal(t))
        self.n += math.prod(self._extent(t, r) for r in self._temporal(t))
        return base

    def _temp(self) -> int:
        k = self.n
        self.n += 1
        self.top = max(self.top, self.n)
        return k

    def _register(self, t, env) -> int:
        base, temporal = self.regs[t]
        off = 0
        for r in temporal:
            off = off * self._extent(t, r) + env[r.lower()]
        return base + off

    def program(self) -> VectorProgram:
        instrs, presets = [], []
        for e, env in self._order():
            if env.get(self.loop_var) == 0 and self._is_initial(e):
                presets += self._preset(e, env)
            else:
                instrs += self._einsum(e, env)
        outs = []
        for o in self.c.outputs:
            temporal = self._temporal(o)
            whole = Access(o, tuple(Var(r.lower()) for r in self.c.tensors[o].ranks))
            regs = tuple(self._operand(whole, env, o).index for env in self._points([r.lower() for r in temporal]))
            outs.append((o, tuple(temporal), regs))
        outs = tuple(outs)
        return VectorProgram(self.C, self.q, self.lane, self.sizes[self.lane], max(1, self.top), tuple(instrs),
                             self.loads, outs, tuple(sorted(self.sizes.items())), tuple(presets))

    def _is_initial(self, e) -> bool:
        """An initial iterate set to a constant: the lanes preset it (free, as the cost model has it)."""
        i = self.c.einsums.index(e)
        return self.c.einsum_kind(i) == "init" and not e.expr.accesses() and not e.reduce

    def _preset(self, e, fixed) -> list:
        out = []
        for env in self._points([v for ix in e.output.indices for v in sorted(ix.variables())
                                 if v != self.lv and v not in fixed]):
            env = {**env, **fixed}
            value = self._expr(e.expr, env, e.name, [])
            out.append((self._operand(e.output, env, e.name).index, value.value))
        return out

    # ---------------- operands -----------------------------------------------------------------
    def _operand(self, a: Access, env: dict, einsum: str) -> Operand:
        while a.tensor in self.alias:
            lay = self.alias[a.tensor]
            sub = {ix.name: a.indices[k] for k, ix in enumerate(lay.output.indices)}
            a = Access(lay.expr.tensor, tuple(_subst(ix, sub) for ix in lay.expr.indices))
        if a.tensor not in self.regs:
            raise RTLError(f"Einsum {einsum} reads {a.tensor}, which the stage does not hold")
        info = self.c.tensors[a.tensor]
        at = {}
        for r, ix in zip(info.ranks, a.indices):
            if r == self.lane:
                if not (isinstance(ix, Var) and ix.name == self.lv):
                    raise RTLError(f"Einsum {einsum}: {a.text()} must be read at the lane's own {self.lv} (the lanes "
                                   "do not exchange values)")
                continue
            k = _eval_static(ix, env, self.sizes, einsum)
            if not 0 <= k < self._extent(a.tensor, r):
                raise RTLError(f"Einsum {einsum}: {a.text()} reads outside {a.tensor}; the vector unit reads only "
                               "coordinates that exist")
            at[r.lower()] = k
        return Operand("reg", self._register(a.tensor, at))

    def _const(self, v: float) -> Operand:
        return Operand("const", value=int(self.q.const(v)))

    def _expr(self, x, env, einsum, out, dst=None) -> Operand:
        """Instructions computing ``x`` (into ``dst`` when given); the operand holding it."""
        if isinstance(x, Access):
            return self._operand(x, env, einsum)
        if isinstance(x, _Computed):
            return x.operand
        if isinstance(x, Const):
            return self._const(x.value)
        if isinstance(x, SizeRef):
            return self._const(self.sizes[x.name])
        if isinstance(x, Position):
            if x.var == self.lv:
                raise RTLError(f"Einsum {einsum} uses the lane rank's position {x.var!r} as a value; a lane does "
                               "not know its coordinate (give the positions as an input tensor)")
            return self._const(env[x.var])
        if not isinstance(x, Call):
            raise RTLError(f"Einsum {einsum}: cannot compile {x!r}")
        if is_constant(x):
            return self._const(float(_fold(x, self.sizes, self.c)))
        op = self.c.operators[x.op]
        args = [self._expr(a, env, einsum, out) for a in x.args]
        if op.rtl is None and op.expand is not None:
            return self._expr(op.expand(*[_Computed(a) for a in args]), env, einsum, out, dst)
        if op.rtl is None:
            raise RTLError(f"Einsum {einsum} uses operator {x.op!r}, which the vector lanes cannot compute (no "
                           "instruction and no hardware form from add, sub, mul, max, min, neg, exp and div)")
        dst = self._temp() if dst is None else dst
        out += operator_instrs(op.rtl, args, dst, self.q, einsum)
        return Operand("reg", dst)

    # ---------------- Einsums ------------------------------------------------------------------
    def _points(self, names):
        for combo in itertools.product(*[range(self.sizes[v.upper()]) for v in names]):
            yield dict(zip(names, combo))

    def _order(self):
        """Einsums in execution order, each with the loop step it runs at: the initial iterates,
        the Einsums before the loop, the loop's body step by step, the Einsums after it."""
        c, lv = self.c, self.loop_var
        work = [(i, e) for i, e in enumerate(c.einsums) if e.name not in self.alias]
        if lv is None:
            return [(e, {}) for _, e in work]
        inits = [(e, {lv: 0}) for i, e in work if c.einsum_kind(i) == "init"]
        rest = [(i, e) for i, e in work if c.einsum_kind(i) != "init"]
        in_loop = [k for k, (_, e) in enumerate(rest) if lv in e.variables()]
        if in_loop and in_loop != list(range(in_loop[0], in_loop[-1] + 1)):
            between = next(e for k, (_, e) in enumerate(rest) if in_loop[0] < k < in_loop[-1] and k not in in_loop)
            raise RTLError(f"Einsum {between.name} sits inside the loop over {self.loop} but does not use {lv!r}; "
                           "move it before or after the loop")
        first, last = (in_loop[0], in_loop[-1]) if in_loop else (len(rest), len(rest) - 1)
        body = [e for _, e in rest[first:last + 1]]
        return (inits + [(e, {}) for _, e in rest[:first]]
                + [(e, {lv: step}) for step in range(self.steps) for e in body]
                + [(e, {}) for _, e in rest[last + 1:]])

    def _einsum(self, e, fixed: dict) -> list:
        out_vars = list(dict.fromkeys(v for ix in e.output.indices for v in sorted(ix.variables())
                                      if v != self.lv and v not in fixed))
        if len(e.reduce) > 1:
            raise RTLError(f"Einsum {e.name} reduces {len(e.reduce)} ranks; the vector unit sums one in time")
        factors = product_factors(e.expr)
        # the golden model's sum-of-products path (Executor._fast_ok): every reduction a sum, and
        # something to contract (a sum, more than two factors, or a constant factor)
        contracted = factors is not None and all(op == "+" for _, op in e.reduce) and (
            bool(e.reduce) or len(factors) != 2 or not all(isinstance(f, Access) for f in factors)) and any(
            isinstance(f, Access) for f in factors)
        instrs: list = []
        for env in self._points(out_vars):
            env = {**env, **fixed}
            self.n = self.fixed
            dst = self._operand(e.output, env, e.name).index
            if contracted:
                self._contraction(e, factors, env, dst, instrs)
            elif e.reduce:
                self._reduction(e, env, dst, instrs)
            else:
                res = self._expr(e.expr, env, e.name, instrs, dst)
                if res != Operand("reg", dst):     # a copy or a constant
                    instrs.append(Instr("add", res, Operand("none"), dst=dst, einsum=e.name))
        return instrs

    def _contraction(self, e, factors, env, dst, instrs):
        """A sum of products as the golden model forms it: exact products in a wide accumulator,
        rounded once; two tensors at most (a MAC), constants not allowed in a sum."""
        tensors = [f for f in factors if isinstance(f, Access)]
        consts = [f for f in factors if not isinstance(f, Access)]
        if len(tensors) > 2 or (consts and e.reduce) or not tensors:
            raise RTLError(f"Einsum {e.name}: the golden model rounds a product of {len(tensors)} tensors"
                           f"{' and constants' if consts else ''} once; the vector lanes multiply two tensors "
                           "exactly at a time: split the product into Einsums of two factors")
        if not e.reduce:
            x = tensors[0] if len(tensors) == 1 else Call("*", tuple(tensors))
            if consts:
                x = Call("*", (Call("*", tuple(consts)) if len(consts) > 1 else consts[0], x))
            res = self._expr(x, env, e.name, instrs, dst)
            if res != Operand("reg", dst):
                instrs.append(Instr("add", res, Operand("none"), dst=dst, einsum=e.name))
            return
        v = e.reduce[0][0]
        n = self.sizes[v.upper()]
        for k in range(n):
            env2 = dict(env, **{v: k})
            a = self._operand(tensors[0], env2, e.name)
            b = self._operand(tensors[1], env2, e.name) if len(tensors) == 2 else self._const(1.0)
            instrs.append(Instr("mac", a, b, dst=dst, first=k == 0, last=k == n - 1, einsum=e.name))

    def _reduction(self, e, env, dst, instrs):
        """max or min in time: the first value copied, each next one compared (presence is kept
        by whichever operand exists, as the golden model's reduction over present points)."""
        v, opname = e.reduce[0]
        if opname not in ("max", "min", "+"):
            raise RTLError(f"Einsum {e.name} reduces with {opname!r}; the vector unit sums, or takes max or min")
        n = self.sizes[v.upper()]
        mark = self.n
        for k in range(n):
            self.n = mark
            x = self._expr(e.expr, dict(env, **{v: k}), e.name, instrs)
            if opname == "+":
                instrs.append(Instr("mac", x, self._const(1.0), dst=dst, first=k == 0, last=k == n - 1,
                                    einsum=e.name))
            elif k == 0:
                instrs.append(Instr("add", x, Operand("none"), dst=dst, einsum=e.name))
            else:
                instrs.append(Instr(opname, Operand("reg", dst), x, dst=dst, einsum=e.name))


# ---------------- hardware ------------------------------------------------------------------------
_FIELDS = ("op", "a_src", "a_idx", "a_val", "b_src", "b_idx", "b_val", "dst", "first", "last", "imm")


def _encode(ins: Instr) -> dict:
    return {"op": OPS[ins.op], "a_src": SRC[ins.a.src], "a_idx": ins.a.index, "a_val": ins.a.value,
            "b_src": SRC[ins.b.src], "b_idx": ins.b.index, "b_val": ins.b.value, "dst": ins.dst,
            "first": int(ins.first), "last": int(ins.last), "imm": ins.imm}


def _shapes(p: VectorProgram) -> dict:
    enc = [_encode(i) for i in p.instrs]
    out = {}
    for k in _FIELDS:
        if k in ("op", "a_src", "b_src"):       # every code, so every case of the ALU is representable
            out[k] = range(max((OPS if k == "op" else SRC).values()) + 1)
        elif k in ("a_val", "b_val", "imm"):
            out[k] = signed(p.numbers.width + 2)
        else:
            out[k] = range(max(2, max([abs(e[k]) for e in enc] + [1]) + 1))
    return out


class VectorLane(wiring.Component):
    """One lane: a register file for its block of every tensor, the ALU (with the exp steps and the
    divider) and a MAC accumulator for sums in time. A load port writes input words into registers;
    a read port serves the output stream."""

    def __init__(self, prog: VectorProgram, fields: dict, acc_width: int):
        self.prog, self.AW = prog, acc_width
        W, NR = prog.numbers.width, prog.registers
        ports = {f"i_{k}": In(fields[k]) for k in _FIELDS}
        ports.update(run=In(1), preset=In(1), load_en=In(1), load_reg=In(range(NR + 1)), load_data=In(signed(W)),
                     out_reg=In(range(NR + 1)), out=Out(signed(W)), out_ok=Out(1))
        super().__init__(ports)

    def elaborate(self, platform):
        m = Module()
        q, NR = self.prog.numbers, self.prog.registers
        W, F = q.width, q.frac_bits
        regs_v = [Signal(signed(W), name=f"r{k}") for k in range(NR)]
        regs_p = [Signal(name=f"v{k}") for k in range(NR)]
        m.d.comb += [self.out.eq(Array(regs_v)[self.out_reg]), self.out_ok.eq(Array(regs_p)[self.out_reg])]

        def operand(side):
            v, ok = Signal(signed(W), name=side), Signal(name=f"{side}_ok")
            idx = getattr(self, f"i_{side}_idx")
            with m.Switch(getattr(self, f"i_{side}_src")):
                with m.Case(SRC["reg"]):
                    m.d.comb += [v.eq(Array(regs_v)[idx]), ok.eq(Array(regs_p)[idx])]
                with m.Case(SRC["const"]):
                    m.d.comb += [v.eq(getattr(self, f"i_{side}_val")), ok.eq(1)]
            return v, ok

        a, va = operand("a")
        b, vb = operand("b")
        op = Signal.like(self.i_op)
        m.d.comb += op.eq(Mux(self.run, self.i_op, OPS["nop"]))
        res, rv, prod = alu(m, q, op, a, va, b, vb, self.i_imm, "alu", divider=True)
        # the accumulator: exact products summed, rounded once into the destination
        acc, accv = Signal(signed(self.AW), name="acc"), Signal(name="acc_ok")
        acc_n, accv_n = Signal(signed(self.AW), name="acc_next"), Signal(name="acc_next_ok")
        m.d.comb += [acc_n.eq(Mux(self.i_first, 0, acc) + Mux(va & vb, prod, 0)),
                     accv_n.eq(Mux(self.i_first, 0, accv) | (va & vb))]
        mac = Signal()
        m.d.comb += mac.eq(op == OPS["mac"])
        with m.If(mac):
            m.d.sync += [acc.eq(acc_n), accv.eq(accv_n)]
        summed = sat(m, round_shift(acc_n, F), W, "mac_out")
        wr = Signal()
        m.d.comb += wr.eq(op.matches(*[OPS[k] for k in _WRITES]))
        for k in range(NR):
            with m.If(self.load_en & (self.load_reg == k)):
                m.d.sync += [regs_v[k].eq(self.load_data), regs_p[k].eq(1)]
            with m.Elif(wr & (self.i_dst == k)):
                m.d.sync += [regs_v[k].eq(res), regs_p[k].eq(rv)]
            with m.Elif(mac & self.i_last & (self.i_dst == k)):
                m.d.sync += [regs_v[k].eq(summed), regs_p[k].eq(accv_n)]
        with m.If(self.preset):            # initial iterates: presets are no input's registers
            for k, value in self.prog.presets:
                m.d.sync += [regs_v[k].eq(value), regs_p[k].eq(1)]
        return m


class VectorUnit(wiring.Component):
    """``C`` vector lanes with a block-at-a-time controller (load, run, stream out).

    Stream protocol as the GEMM array's: one input word per beat (per block, each input's elements
    in stream order, the block's lanes innermost), one output beat of ``C`` lanes per element of a
    block's outputs (lanes past the rank's end carry zeros, not present); a new job starts in band by
    offering its first word while the unit is done.
    """

    def __init__(self, prog: VectorProgram):
        self.prog = prog
        C, W = prog.lanes, prog.numbers.width
        terms = max([v for _, v in prog.sizes] + [2])         # no sum in time has more terms
        self.acc_bits = 2 * mul_width(prog.numbers) + math.ceil(math.log2(terms)) + 1
        super().__init__({
            "in_data": In(signed(W)), "in_valid": In(1), "in_ready": Out(1),
            "out_data": Out(C * W), "out_present": Out(C), "out_valid": Out(1), "out_ready": In(1),
            "busy": Out(1), "done": Out(1), "cycles": Out(32),
        })

    LOAD, RUN, OUT, DONE = range(4)

    def elaborate(self, platform):
        m = Module()
        p = self.prog
        fields = _shapes(p)
        lanes = [VectorLane(p, fields, self.acc_bits) for _ in range(p.lanes)]
        for k, ln in enumerate(lanes):
            m.submodules[f"lane{k}"] = ln
        state = Signal(range(4))
        block = Signal(range(p.blocks + 1))
        valid_lanes = Signal(range(p.lanes + 1))       # the last block may cover fewer
        m.d.comb += valid_lanes.eq(Mux(block == p.blocks - 1, p.extent - (p.blocks - 1) * p.lanes, p.lanes))
        self._load(m, lanes, state, valid_lanes)
        self._run(m, lanes, state, fields)
        self._stream(m, lanes, state, block, valid_lanes)
        m.d.comb += [self.busy.eq((state == self.RUN) | (state == self.OUT)), self.done.eq(state == self.DONE)]
        restart = Signal()
        m.d.comb += restart.eq(self.done & self.in_valid)
        return ResetInserter({"sync": restart})(m)

    def _load(self, m, lanes, state, valid_lanes):
        """Word (register s, lane l) of the block, lanes innermost; presets with the first word."""
        p = self.prog
        s, lane_at = Signal(range(max(2, p.input_registers + 1))), Signal(range(p.lanes + 1))
        m.d.comb += self.in_ready.eq(state == self.LOAD)
        beat_in = Signal()
        m.d.comb += beat_in.eq(self.in_valid & self.in_ready)
        for k, lane in enumerate(lanes):
            m.d.comb += [lane.load_en.eq(beat_in & (lane_at == k)), lane.load_reg.eq(s),
                         lane.load_data.eq(self.in_data), lane.preset.eq(beat_in & (s == 0) & (lane_at == 0))]
        with m.If(beat_in):
            with m.If(lane_at == valid_lanes - 1):
                m.d.sync += lane_at.eq(0)
                with m.If(s == p.input_registers - 1):
                    # a stage of copies only has no instruction to run
                    m.d.sync += [s.eq(0), state.eq(self.RUN if p.instrs else self.OUT)]
                with m.Else():
                    m.d.sync += s.eq(s + 1)
            with m.Else():
                m.d.sync += lane_at.eq(lane_at + 1)

    def _run(self, m, lanes, state, fields):
        """The program, one instruction a cycle, the same in every lane; ``cycles`` counts them."""
        p = self.prog
        pc = Signal(range(len(p.instrs) + 1))
        enc = [_encode(i) for i in p.instrs]
        running = Signal()
        m.d.comb += running.eq(state == self.RUN)
        for k in _FIELDS:
            sig = Signal(fields[k], name=f"i_{k}")
            with m.Switch(pc):
                for n, e in enumerate(enc):
                    if e[k]:
                        with m.Case(n):
                            m.d.comb += sig.eq(e[k])
            for lane in lanes:
                m.d.comb += getattr(lane, f"i_{k}").eq(sig)
        for lane in lanes:
            m.d.comb += lane.run.eq(running)
        with m.If(running):
            m.d.sync += self.cycles.eq(self.cycles + 1)
            with m.If(pc == len(p.instrs) - 1):
                m.d.sync += [pc.eq(0), state.eq(self.OUT)]
            with m.Else():
                m.d.sync += pc.eq(pc + 1)

    def _stream(self, m, lanes, state, block, valid_lanes):
        """One beat per output register of the block; then the next block, or done."""
        p = self.prog
        outs = p.output_registers
        o = Signal(range(len(outs) + 1))
        reg = Signal(range(p.registers + 1))
        with m.Switch(o):
            for n, r in enumerate(outs):
                if r:
                    with m.Case(n):
                        m.d.comb += reg.eq(r)
        words, present = [], []
        for k, lane in enumerate(lanes):
            m.d.comb += lane.out_reg.eq(reg)
            here = Signal(name=f"here{k}")
            m.d.comb += here.eq(k < valid_lanes)
            words.append(Mux(here, lane.out, 0))
            present.append(here & lane.out_ok)
        m.d.comb += [self.out_data.eq(Cat(*words)), self.out_present.eq(Cat(*present)),
                     self.out_valid.eq(state == self.OUT)]
        with m.If(self.out_valid & self.out_ready):
            with m.If(o == len(outs) - 1):
                m.d.sync += o.eq(0)
                with m.If(block == p.blocks - 1):
                    m.d.sync += state.eq(self.DONE)
                with m.Else():
                    m.d.sync += [block.eq(block + 1), state.eq(self.LOAD)]
            with m.Else():
                m.d.sync += o.eq(o + 1)


def lower_vector(cascade: Cascade, lanes: int, numbers: FixedPoint, sizes: dict, lane_rank: str | None = None):
    """The vector unit for ``cascade`` (an element-wise stage) as a :class:`~einforge.rtl.Design`."""
    import numpy as np

    from ._lower import Design, _ports, _verilog_name, model_cycles

    prog = compile_vector(cascade, lanes, numbers, sizes, lane_rank)
    top = VectorUnit(prog)
    top._MustUse__silence = True
    C, L, lane = lanes, prog.extent, prog.lane_rank
    tens = cascade.tensors

    def lane_last(name, arr):
        """``arr`` (a tensor in its rank order) as [temporal..., lane]."""
        ranks = list(tens[name].ranks)
        order = [k for k, r in enumerate(ranks) if r != lane] + [ranks.index(lane)]
        return np.transpose(np.asarray(arr), order).reshape(-1, L)

    def pack(raw):
        flat = [lane_last(n, raw[n]) for n, _, _ in prog.loads]
        words = []
        for b in range(prog.blocks):
            lo, hi = b * C, b * C + prog.lanes_in(b)
            for f in flat:
                words += [int(x) for x in f[:, lo:hi].ravel()]
        return words

    def beats_of(arrays):
        """Per block, per output element: C lanes of (value, present)."""
        out = []
        for b in range(prog.blocks):
            for vals, pres in arrays:
                for k in range(vals.shape[0]):
                    beat = []
                    for j in range(C):
                        x = b * C + j
                        ok = x < L and bool(pres[k, x])
                        beat.append([int(vals[k, x]) if ok else 0, int(ok)])
                    out.append(beat)
        return out

    def expect(golden):
        arrays = []
        for n, _, _ in prog.outputs:
            pres = golden.get(n + "?")
            vals = lane_last(n, golden[n])
            arrays.append((vals, np.ones(vals.shape, bool) if pres is None else lane_last(n, pres)))
        return beats_of(arrays)

    def unpack(beats):
        it = iter(beats)
        flat = {n: np.zeros((len(regs), L), np.int64) for n, _, regs in prog.outputs}
        for b in range(prog.blocks):
            for n, _, _ in prog.outputs:
                for k in range(flat[n].shape[0]):
                    beat = next(it)
                    for j in range(prog.lanes_in(b)):
                        flat[n][k, b * C + j] = beat[j]
        result = {}
        for n, t, _ in prog.outputs:
            ranks = list(tens[n].ranks)
            have = list(t) + [lane]
            arr = flat[n].reshape([sizes[r] for r in have])
            result[n] = np.transpose(arr, [have.index(r) for r in ranks])
        return result

    name = _verilog_name(cascade.name)
    manifest = {
        "design": name, "cascade": cascade.name, "datapath": "vector lanes (element-wise, a block of lanes at a time)",
        "array": [1, C],
        "numbers": {"format": numbers.describe(), "width": numbers.width, "frac_bits": numbers.frac_bits,
                    "accumulator_bits": top.acc_bits, "rounding": "half up", "saturation": True},
        "sizes": {k: int(v) for k, v in sizes.items()},
        "mapping": {"rows": None, "cols": lane, "blocks": prog.blocks},
        "program": {"instructions_per_block": len(prog.instrs), "lane_registers": prog.registers},
        "ports": _ports(top),
        "input_stream": f"per block of {C} {lane}: " + ", ".join(
            f"{n} ({prog._size(t)} words a lane)" for n, _, t in prog.loads) + ", lanes innermost",
        "output_stream": f"per block of {C} {lane}: " + ", ".join(
            f"{n} ({len(regs)} beats)" for n, _, regs in prog.outputs) + f", {C} lanes a beat",
        "input_words": L * prog.input_registers,
        "output_beats": prog.blocks * len(prog.output_registers),
        "rtl_cycles_formula": "blocks * instructions per block (loading and streaming out are not overlapped)",
        "rtl_cycles": prog.cycles,
        "fill_drain": False,
    }
    d = Design(top, name, cascade, numbers, sizes, (1, C), manifest, pack, unpack, expect, binding=vector_binding(
        cascade, lane))
    manifest["model_cycles"] = model_cycles(d)
    return d


def vector_binding(cascade: Cascade, lane: str):
    """The cost model's view of the unit: every Einsum on the 1D lanes, the lane rank across them,
    one Einsum after another."""
    from ..arch import Binding

    return Binding(name="vector", rule="tile", mapping="unfused", schedule="sequential",
                   explicit=tuple((e.name, "1d") for e in cascade.einsums), spatial=(("1d", (("cols", (lane,)),)),))
