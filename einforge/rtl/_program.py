"""Compiling a tile-bound cascade into the static program of the attention engine.

The engine (see ``_engine.py``) is a 2D array of R x C PEs and a 1D array of C lanes that run
*instructions*: every PE of the 2D array runs the same instruction (row ``i`` of the array ``i``
cycles after row 0), every lane of the 1D array the same one. This module turns the cascade IR into
those instructions, with no knowledge of attention:

* the binding puts every Einsum over the tile rank (M0, the array's rows) on the 2D array and the
  rest on the 1D array (the same rule as the cost model);
* 2D tile tensors (indexed by the tile rank and the query rank) live in PE registers, 1D tensors
  in lane registers (iterative ones in two banks: previous and current iterate), inputs in row
  buffers (those over the tiled rank) and column buffers (those over the query rank);
* an Einsum becomes one instruction per point of its temporal (non-spatial) space and per action
  of its operators: a MAC per product summed in time, an ALU operation per operator, six MAC steps
  per exp, six divider steps per division, and a reduction instruction when it reduces the tile rank down the array's columns;
* the Einsums of one tile are placed by the cost model's list scheduler (``tile_schedule``), so
  the hardware's timing and the model's prediction are the same schedule.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

from ..einsum import (
    DIVIDER_STEPS,
    Access,
    Call,
    Cascade,
    Const,
    FixedPoint,
    Position,
    SizeRef,
    is_constant,
    positions,
    read_nodes,
    reads_of,
)
from ..einsum._ir import BinOp, Sym, Var
from ._errors import RTLError

__all__ = ["Operand", "Instr", "Program", "compile_program", "operator_instrs", "OPS"]

# operation codes shared by the compiler, the hardware and the manifest
OPS = {"nop": 0, "mac": 1, "add": 2, "sub": 3, "mul": 4, "max": 5, "min": 6, "neg": 7,
       "exp0": 8, "exps": 9, "expl": 10, "rmax": 11, "radd": 12, "rmac": 13, "div0": 14, "divs": 15,
       "divl": 16}
SRC = {"none": 0, "reg": 1, "row": 2, "col": 3, "lane": 4, "const": 5, "pos": 6}
#: the coordinates a 2D PE knows, as operands ``Operand("pos", index=k)``: its row in the tile, the
#: tile (step of the loop), its query
POSITIONS = ("tile", "loop", "query")
MODE = {"plain": 0, "prev": 1, "cur": 2, "rot": 3}
UNION = {"add", "max", "min"}


@dataclass(frozen=True)
class Operand:
    src: str = "none"
    index: int = 0           # register, lane register, or static buffer address
    stride: int = 0          # buffer address added per slot (rows: a tile's words; columns: a block's)
    mode: str = "plain"      # iterative tensors: previous or current bank; "rot": the copy of the tile's parity
    bank: int = 0            # registers per bank of an iterative tensor
    value: int = 0           # constant (raw fixed point)


@dataclass(frozen=True)
class Instr:
    op: str
    a: Operand = Operand()
    b: Operand = Operand()
    dst: int = 0
    dst_mode: str = "plain"
    dst_bank: int = 0
    first: bool = False      # MAC: start a new sum
    last: bool = False       # MAC: write the rounded sum to dst
    filt: int = 0            # apply filter set k-1 of Program.filter_sets to the result's presence (0: none)
    imm: int = 0             # exp step coefficient
    einsum: str = ""
    stage: int = 0           # software pipelining: the tile this instruction works on, counted back


@dataclass
class Program:
    rows: int
    cols: int
    numbers: FixedPoint
    sizes: dict
    loop_steps: int                     # tiles of the iterative rank
    query_tiles: int
    row_depth: int
    col_depth: int
    pe_regs: int
    lane_regs: int
    timeline: list                      # per cycle of the initiation interval: (2D instr or None, 1D instr or None)
    epilogue: list                      # 1D instructions after the tile loop
    loads: list                         # (tensor, 'row'|'col', extent X, temporal T, base)
    outputs: list                       # (tensor, lane register base, beats)
    filters: dict                       # einsum -> (Compare..., var roles)
    filter_sets: list                   # the distinct filters; Instr.filt = index + 1
    starts: dict
    makespan: int                       # the initiation interval: a tile starts every `makespan` cycles
    busy_2d: int
    depth: int = 1                      # tiles in flight (1: one tile at a time)
    labels: dict = field(default_factory=dict)
    lane_var: str = "p"
    tile_var: str = "m0"
    loop_var: str = "m1"
    banked: dict = field(default_factory=dict)   # lane tensor -> (base, size)
    divider_2d: bool = False            # the PEs carry a divider (the cascade divides on the 2D array)
    tile_ranges: list = field(default_factory=list)   # per block of queries: (first tile, tiles visited)
    output_bank: int = 0                # the output is a final iterate: its copy offset after odd tile counts
    instances: list = field(default_factory=list)   # (variable, size) of each instance rank, outermost first
    queries: int = 0                                # size of the rank spread over the columns
    load_ranks: dict = field(default_factory=dict)  # input -> (distributed rank, temporal ranks in order)
    load_scales: dict = field(default_factory=dict)  # input -> raw constant its words are multiplied by on load
    runtime_sizes: bool = False         # a job may have fewer key tiles and queries (a header gives them)
    row_slots: int = 2                  # tiles the row buffers hold: one being loaded while others are read
    slot_lag: int = 2                   # a tile's slot is free once this many later tiles have started
    # data-dependent tiles (a block mask): the filters that choose a block's tiles from data, and, for
    # one job, the tiles each block of each instance keeps (None: the design, every tile at most)
    tile_mask: tuple = ()
    mask_inputs: tuple = ()
    block_tiles: tuple | None = None

    def keep_a_tile_per_block(self, raw: dict, rng) -> dict:
        """See :func:`keep_a_tile_per_block`."""
        return keep_a_tile_per_block(self, raw, rng)

    def block_counts(self) -> list[int]:
        """Tiles each block of queries visits, per instance and block in stream order."""
        if self.block_tiles is not None:
            return [len(t) for t in self.block_tiles]
        return [n for _, n in self.tile_ranges] * self.n_instances

    @property
    def row_slot_words(self) -> int:
        """Words of one tile in a row buffer: every key/value-like input's words per key."""
        return sum(T for _, kind, _, T, _ in self.loads if kind == "row")

    @property
    def col_slot_words(self) -> int:
        """Words of one block in a column buffer: every query-like input's words per query."""
        return sum(T for _, kind, _, T, _ in self.loads if kind == "col")

    @property
    def n_instances(self) -> int:
        """Instances (batch x heads) the tile loop runs for."""
        return math.prod(n for _, n in self.instances)


@dataclass(frozen=True)
class _Computed:
    """An operand already computed, standing in an operator's hardware form (computed once)."""

    operand: Operand

    def accesses(self):
        return [self]


def operator_instrs(instr: str, args: list, dst: int, numbers: FixedPoint, einsum: str, dst_mode: str = "plain",
                    filt: int = 0) -> list[Instr]:
    """The instructions of one operator (its operator-table ``rtl`` instruction) writing ``dst``:
    an exp is its first step, the Horner steps and the last; a division the iterative divider's
    steps (operands in the first, the quotient written by the last); anything else one ALU
    operation. Shared by the attention engine and the vector unit, which run the same ALU."""
    if instr == "exp":
        k = numbers.exp_constants()
        return ([Instr("exp0", args[0], dst=dst, dst_mode=dst_mode, einsum=einsum)]
                + [Instr("exps", imm=c, dst=dst, dst_mode=dst_mode, einsum=einsum) for c in k["coeffs"][1:-1]]
                + [Instr("expl", imm=k["coeffs"][-1], dst=dst, dst_mode=dst_mode, filt=filt, einsum=einsum)])
    if instr == "div":
        return ([Instr("div0", args[0], args[1], dst=dst, dst_mode=dst_mode, einsum=einsum)]
                + [Instr("divs", dst=dst, dst_mode=dst_mode, einsum=einsum) for _ in range(DIVIDER_STEPS - 2)]
                + [Instr("divl", dst=dst, dst_mode=dst_mode, filt=filt, einsum=einsum)])
    if instr == "neg":
        return [Instr("neg", args[0], dst=dst, dst_mode=dst_mode, filt=filt, einsum=einsum)]
    if len(args) != 2:
        raise RTLError(f"Einsum {einsum}: {instr} of {len(args)} operands; the ALU takes two")
    return [Instr(instr, args[0], args[1], dst=dst, dst_mode=dst_mode, filt=filt, einsum=einsum)]


def _plain_vars(a: Access) -> list[str] | None:
    out = []
    for ix in a.indices:
        if not isinstance(ix, Var):
            return None
        out.append(ix.name)
    return out


def compile_program(cascade: Cascade, binding, array: tuple[int, int], numbers: FixedPoint, sizes: dict) -> Program:
    """Compile ``cascade`` for an ``R x C`` attention engine; raises :class:`RTLError` naming the
    Einsum and the construct the engine cannot run. The buffers hold slots of streamed tiles and
    query blocks, so their sizes do not depend on the sequence lengths."""
    from ..arch.schedule import aliases as _aliases
    from ..arch.schedule import instance_ranks, modulo_schedule, tile_schedule
    from ..arch.schedule import loop_members as _loop_members
    from ..arch.schedule import plan as _plan
    from ._arch import engine_architecture

    R, C = array
    q = numbers
    from ..arch import ArchError

    tile_mask, cascade = _split_tile_mask(cascade, binding, array, sizes)

    # PEs get a divider only when an Einsum bound to the 2D array cannot be computed without one
    divider_2d = False
    try:
        arch = engine_architecture(R, C)
        plan = _plan(cascade, binding, arch, sizes)
    except ArchError as exc:
        try:
            arch = engine_architecture(R, C, divider_2d=True)
            plan = _plan(cascade, binding, arch, sizes)
            divider_2d = True
        except ArchError:
            raise RTLError(str(exc)) from None
    if plan.tile_rank is None:
        raise RTLError(f"{cascade.name}: the attention engine needs a tile rank on the 2D rows (M0)")
    if plan.row_rank is None:
        raise RTLError(f"{cascade.name}: the attention engine needs a query rank on the columns (P)")
    if not cascade.iterative_ranks or plan.loop_var is None:
        raise RTLError(f"{cascade.name}: the attention engine runs a loop over an iterative rank of tiles")
    tv, lv, mv = plan.tile_rank.lower(), plan.row_rank.lower(), plan.loop_var
    for p in plan.einsums:
        if p.array == "2d" and tv not in p.vars:
            raise RTLError(f"Einsum {p.label} is bound to the grid but does not range over the tile rank "
                           f"{plan.tile_rank}: the attention engine's grid computes an Einsum per key of the tile "
                           "and hands the lanes only what it reduces over the tile; bind it to the lanes")
    if sizes[plan.tile_rank] != R:
        raise RTLError(f"the tile rank {plan.tile_rank} is {sizes[plan.tile_rank]}, but the array has {R} rows; "
                       f"give --size {plan.tile_rank}={R}")
    alias = _aliases(plan)
    members = _loop_members(plan)
    by = {p.label: p for p in plan.einsums}
    vsize = {r.name.lower(): sizes[r.name] for r in cascade.ranks if not r.param}
    for rk, it in cascade.iterative_ranks.items():
        vsize[it.var] = int(it.bound.evaluate(sizes))
    M1 = vsize[mv]
    P = sizes[plan.row_rank]
    # batch and head ranks: the controller runs the whole tile loop once per instance, so registers
    # hold one instance and buffer addresses step by a stride per instance rank
    inst = instance_ranks(plan)
    ptiles = math.ceil(P / C)
    parent = next((r.size.left.name for r in cascade.ranks
                   if r.derived and isinstance(r.size, BinOp) and r.size.op == "/" and isinstance(r.size.right, Sym)
                   and r.size.right.name == plan.tile_rank and isinstance(r.size.left, Sym)), None)

    # ---------------- inputs: row buffers (over the tiled rank) and column buffers (queries) -------
    # Inputs stream in: a slot of the row buffers holds one tile of every key/value-like input (of one
    # instance), a slot of the column buffers one block of queries; the controller reads the slot of
    # the tile or block it works on, so buffer addresses carry no tile, block or instance offset.
    loads = []
    load_ranks: dict[str, tuple[str, list]] = {}
    regions: dict[str, tuple[str, int, int, list]] = {}     # input -> (kind, base, temporal size, temporal ranks)
    row_slot = col_slot = 0
    for t in cascade.inputs:
        ranks = list(t.ranks)
        temporal = [r for r in ranks if r not in (parent, plan.row_rank) and r.lower() not in inst]
        tsize = math.prod(sizes[r] for r in temporal) if temporal else 1
        if parent in ranks and plan.row_rank not in ranks:
            loads.append((t.name, "row", sizes[parent], tsize, row_slot))
            load_ranks[t.name] = (parent, temporal)
            regions[t.name] = ("row", row_slot, tsize, temporal)
            row_slot += tsize
        elif plan.row_rank in ranks and parent not in ranks:
            loads.append((t.name, "col", P, tsize, col_slot))
            load_ranks[t.name] = (plan.row_rank, temporal)
            regions[t.name] = ("col", col_slot, tsize, temporal)
            col_slot += tsize
        else:
            readers = [e.name for e in cascade.einsums if t.name in {a.tensor for a in e.expr.accesses()}]
            raise RTLError(f"input {t.name}[{','.join(ranks)}] must carry either the tiled rank {parent} or the "
                           f"query rank {plan.row_rank}, not both or neither"
                           + (f"; a weight like it belongs to a stage of its own: lower the attention core alone "
                              f"(einforge rewrite {cascade.name} --stage OUTPUTS:INPUTS) and run {', '.join(readers)} "
                              "on the GEMM array" if parent not in ranks and plan.row_rank not in ranks else ""))

    # ---------------- constant factors, folded into an input on its load path -----------------------
    stripped, load_scales = _fold_constants(cascade, plan, vsize, q)

    # ---------------- storage of computed tensors ---------------------------------------------------
    pe_reg: dict[str, tuple[int, list]] = {}
    lane_reg: dict[str, tuple[int, list, bool]] = {}
    n_pe = n_lane = 0
    # when tiles interleave, every value of a tile lives in one of two copies chosen by the tile's
    # parity, so that the next tile can start before this one has read it (the scheduler assumes so)
    interleaved = binding.schedule == "overlap"
    rotating: set[str] = set()

    def temporal_of(t):
        info = cascade.tensors[t]
        return [r for k, r in enumerate(info.ranks)
                if r.lower() not in (tv, lv, mv) and r.lower() not in inst and k != info.iterative]

    for p in plan.einsums:
        if p.array is None or p.output in alias:
            continue
        t = p.output
        info = cascade.tensors[t]
        tmp = temporal_of(t)
        n = math.prod(sizes[r] for r in tmp) if tmp else 1
        has_tile = tv in {r.lower() for r in info.ranks}
        if lv not in {r.lower() for r in info.ranks}:
            raise RTLError(f"Einsum {p.label}: its output {t} has no query rank {plan.row_rank}; the engine keeps "
                           "results per query (one column / lane each)")
        rot = interleaved and info.iterative is None and p.label in members
        if rot:
            rotating.add(t)
        if has_tile:
            if p.array != "2d":
                raise RTLError(f"Einsum {p.label} produces a tile tensor on the 1D array")
            if t not in pe_reg:
                pe_reg[t] = (n_pe, tmp)
                n_pe += n * (2 if rot else 1)
        elif t not in lane_reg:
            banked = info.iterative is not None
            lane_reg[t] = (n_lane, tmp, banked)
            n_lane += n * (2 if banked or rot else 1)
    for t, info in cascade.tensors.items():
        if info.iterative is not None and t not in lane_reg and not info.is_input:
            raise RTLError(f"iterative tensor {t} must live in the 1D lanes")

    temps_pe = [n_pe]       # next free temporary, grows as needed
    temps_lane = [n_lane]
    max_pe = [n_pe]
    max_lane = [n_lane]

    def size_of(tmp):
        return math.prod(sizes[r] for r in tmp) if tmp else 1

    def toff(ranks, env, t):
        off = 0
        for r in ranks:
            off = off * sizes[r] + env[r.lower()]
        return off

    # ---------------- operands ---------------------------------------------------------------------
    def operand(a: Access, env: dict, einsum: str, array: str) -> Operand:
        t = alias.get(a.tensor, a.tensor)
        info = cascade.tensors[t]
        while a.tensor in alias:        # a copy or re-layout: read its source, variables substituted
            lay = next(e for e in cascade.einsums if e.name == a.tensor)
            sub = {ix.name: a.indices[k] for k, ix in enumerate(lay.output.indices)}
            a = Access(lay.expr.tensor, tuple(_subst(ix, sub) for ix in lay.expr.indices))
        if info.is_input:
            kind, base, tsize, temporal = regions[t]
            envi = {}
            base_env = {**env, **{h: 0 for h in inst}}
            for r, ix in zip(info.ranks, a.indices):
                if r in temporal:
                    envi[r.lower()] = _eval_static(ix, base_env, sizes, einsum)
                elif r == parent:
                    if not _is_tile_index(ix, mv, tv, plan.tile_rank):
                        raise RTLError(f"Einsum {einsum}: {t} must be read at {mv}*{plan.tile_rank}+{tv} "
                                       f"(one tile per step), not {ix.text()}")
                elif r.lower() in inst:
                    if not (isinstance(ix, Var) and ix.name == r.lower()):
                        raise RTLError(f"Einsum {einsum}: {t} must be read at its instance {r.lower()}, "
                                       f"not {ix.text()} (each instance streams its own slice)")
                elif not (isinstance(ix, Var) and ix.name == lv):
                    raise RTLError(f"Einsum {einsum}: {t} must be read at the query {lv}, not {ix.text()}")
            off = toff(temporal, envi, t)
            if kind == "row":
                if array != "2d":
                    raise RTLError(f"Einsum {einsum}: {t} is spread over the 2D rows; the 1D array cannot read it")
                return Operand("row", base + off, stride=row_slot)
            return Operand("col", base + off, stride=col_slot)
        vs = _plain_vars(a)
        if t in pe_reg:
            if vs is None or tv not in vs or lv not in vs:
                raise RTLError(f"Einsum {einsum}: read {a.text()} at the tile ({tv}) and query ({lv}) it was made at")
            base, tmp = pe_reg[t]
            if t in rotating:
                return Operand("reg", base + toff(tmp, {r.lower(): env[r.lower()] for r in tmp}, t), mode="rot",
                               bank=size_of(tmp))
            return Operand("reg", base + toff(tmp, {r.lower(): env[r.lower()] for r in tmp}, t))
        if t in lane_reg:
            base, tmp, banked = lane_reg[t]
            mode = "plain"
            if banked:
                kind = cascade.access_kind(a)
                mode = {"prev": "prev", "next": "cur", "final": "prev"}.get(kind)
                if mode is None:
                    raise RTLError(f"Einsum {einsum}: {a.text()} reads an iterate the engine does not keep")
            envt = {}
            for r, ix in zip(info.ranks, a.indices):
                if r in tmp:
                    envt[r.lower()] = _eval_static(ix, env, sizes, einsum)
            if t in rotating:
                if array == "1d" and einsum not in members:
                    raise RTLError(f"Einsum {einsum} reads {t} after the tile loop; keep it in an iterative tensor")
                mode = "rot"
            nb = size_of(tmp) if (banked or t in rotating) else 0
            return Operand("lane", base + toff(tmp, envt, t), mode=mode, bank=nb)
        raise RTLError(f"Einsum {einsum}: {t} is not available to the engine here")

    def const(v: float) -> Operand:
        return Operand("const", value=int(q.const(v)))

    # ---------------- expressions -> instructions --------------------------------------------------
    def compile_expr(x, env, array, einsum, out, dst=None, dst_mode="plain", filt=False):
        """Instructions computing ``x``; returns the operand holding it."""
        if isinstance(x, Access):
            return operand(x, env, einsum, array)
        if isinstance(x, _Computed):
            return x.operand
        if isinstance(x, Const):
            return const(x.value)
        if isinstance(x, SizeRef):
            return const(sizes[x.name])
        if isinstance(x, Position):
            where = {tv: "tile", mv: "loop", lv: "query"}.get(x.var)
            if array != "2d" or where is None:
                raise RTLError(f"Einsum {einsum} uses the position {x.var!r} as a value; the engine's 2D PEs know "
                               f"their coordinates {tv}, {mv} and {lv} only (bind the Einsum to the 2D array, or "
                               "give the positions as an input tensor)")
            return Operand("pos", index=POSITIONS.index(where))
        if not isinstance(x, Call):
            raise RTLError(f"Einsum {einsum}: cannot compile {x!r}")
        if is_constant(x):                      # a constant subexpression, folded now
            return const(float(_fold(x, sizes, cascade)))
        op = cascade.operators[x.op]
        args = [compile_expr(a, env, array, einsum, out) for a in x.args]
        if op.rtl is None and op.expand is not None:       # built from the engine's own instructions
            form = op.expand(*[_Computed(a) for a in args])
            return compile_expr(form, env, array, einsum, out, dst, dst_mode, filt)
        if dst is None:
            dst = _temp(array)
        instr = op.rtl
        if instr is None:
            raise RTLError(f"Einsum {einsum} uses operator {x.op!r}, which the engine's PEs cannot compute "
                           "(it has no instruction for it and no hardware form built from add, sub, mul, max, min, neg, "
                           "exp and div; give the operator an rtl instruction or an expand form in the operator table)")
        if instr == "div" and array == "2d" and not divider_2d:
            raise RTLError(f"Einsum {einsum} uses operator '/', which the 2D PEs (units: mac, add, max) lack; "
                           "bind the division to the 1D array (it has a divider)")
        out += operator_instrs(instr, args, dst, q, einsum, dst_mode, filt)
        return Operand("reg" if array == "2d" else "lane", dst, mode=dst_mode)

    def _temp(array):
        if array == "2d":
            k = temps_pe[0]
            temps_pe[0] += 1
            max_pe[0] = max(max_pe[0], temps_pe[0])
            return k
        k = temps_lane[0]
        temps_lane[0] += 1
        max_lane[0] = max(max_lane[0], temps_lane[0])
        return k

    def envs(ranks):
        names = [r.lower() for r in ranks]
        for combo in itertools.product(*[range(vsize[v]) for v in names]):
            yield dict(zip(names, combo))

    def dest(t, env):
        if t in pe_reg:
            base, tmp = pe_reg[t]
            return base + toff(tmp, env, t), ("rot" if t in rotating else "plain")
        base, tmp, banked = lane_reg[t]
        return base + toff(tmp, env, t), ("cur" if banked else ("rot" if t in rotating else "plain"))

    def bank_of(t):
        if t in lane_reg and (lane_reg[t][2] or t in rotating):
            return size_of(lane_reg[t][1])
        if t in pe_reg and t in rotating:
            return size_of(pe_reg[t][1])
        return 0

    # the distinct filters of the 2D Einsums: each instruction names the one its Einsum applies
    filter_sets = list(dict.fromkeys(cascade.einsums[p.index].filters for p in plan.einsums
                                     if p.array == "2d" and cascade.einsums[p.index].filters))

    def compile_einsum(p) -> list[Instr]:
        e = cascade.einsums[p.index]
        temps_pe[0], temps_lane[0] = n_pe, n_lane
        instrs: list[Instr] = []
        filt = filter_sets.index(e.filters) + 1 if e.filters else 0
        if filt and p.array != "2d":
            raise RTLError(f"Einsum {p.label}: filters are evaluated by the 2D PEs only")
        out_tmp = temporal_of(e.name)
        red = [(v, op) for v, op in e.reduce]
        tile_red = [(v, op) for v, op in red if v == tv]
        time_red = [(v, op) for v, op in red if v != tv]
        for v, _ in time_red:
            if v in (lv, mv):
                raise RTLError(f"Einsum {p.label} reduces {v!r}, which the engine keeps in space or in the loop")
        if p.array == "1d" and red:
            raise RTLError(f"Einsum {p.label}: the 1D lanes do not reduce ({', '.join(v for v, _ in red)})")
        expr = stripped.get(p.label, e.expr)
        for env in envs(out_tmp):
            d, dmode = dest(e.name, env)
            if tile_red:
                if time_red:
                    raise RTLError(f"Einsum {p.label} reduces the tile rank and {time_red[0][0]!r} at once")
                op = tile_red[0][1]
                x = expr
                if op == "+" and isinstance(x, Call) and x.op == "*" and len(x.args) == 2 and all(
                        isinstance(a, Access) for a in x.args):
                    a = operand(x.args[0], env, p.label, "2d")
                    b = operand(x.args[1], env, p.label, "2d")
                    instrs.append(Instr("rmac", a, b, dst=d, dst_mode=dmode, filt=filt, einsum=p.label))
                elif op in ("+", "max"):
                    a = compile_expr(x, env, "2d", p.label, instrs)
                    instrs.append(Instr("radd" if op == "+" else "rmax", a, dst=d, dst_mode=dmode, filt=filt,
                                        einsum=p.label))
                else:
                    raise RTLError(f"Einsum {p.label} reduces the tile rank with {op!r}; the columns add or take maxima")
            elif time_red:
                if len(time_red) != 1 or time_red[0][1] != "+" or not (
                        isinstance(expr, Call) and expr.op == "*" and len(expr.args) == 2
                        and all(isinstance(a, Access) for a in expr.args)):
                    raise RTLError(f"Einsum {p.label}: a sum in time must be a product of two tensors (a MAC)")
                v = time_red[0][0]
                n = vsize[v]
                for k in range(n):
                    env2 = dict(env, **{v: k})
                    a = operand(expr.args[0], env2, p.label, p.array)
                    b = operand(expr.args[1], env2, p.label, p.array)
                    instrs.append(Instr("mac", a, b, dst=d, dst_mode=dmode, first=k == 0, last=k == n - 1,
                                        filt=filt, einsum=p.label))
            elif isinstance(expr, Call) and expr.accesses():
                compile_expr(expr, env, p.array, p.label, instrs, dst=d, dst_mode=dmode, filt=filt)
            else:
                # a copy (AV = RO[f,M1,p]): add an absent operand, which keeps value and presence
                res = compile_expr(expr, env, p.array, p.label, instrs)
                instrs.append(Instr("add", res, Operand("none"), dst=d, dst_mode=dmode, filt=filt, einsum=p.label))
        nb = bank_of(e.name)
        return [Instr(i.op, i.a, i.b, i.dst, i.dst_mode, nb if i.dst_mode in ("cur", "rot") else 0, i.first,
                      i.last, i.filt, i.imm, i.einsum) for i in instrs]

    # ---------------- the tile loop and the epilogue -----------------------------------------------
    per = {}
    blocks = {}
    for p in plan.einsums:
        if p.array is None:
            continue
        e = cascade.einsums[p.index]
        if p.label in members:
            blocks[p.label] = compile_einsum(p)
            per[p.label] = len(blocks[p.label])
        elif mv in e.variables():
            raise RTLError(f"Einsum {p.label} runs over the tiles but outside the loop")
    if binding.schedule == "overlap":
        ms = modulo_schedule(plan, per)
        starts, makespan, depth = ms.starts, ms.ii, ms.depth
    else:
        starts, makespan = tile_schedule(plan, per, True)
        makespan, depth = int(makespan), 1
    timeline = [[None, None] for _ in range(makespan)]
    busy = 0
    for lab, instrs in blocks.items():
        slot = 0 if by[lab].array == "2d" else 1
        for k, ins in enumerate(instrs):
            cyc = int(starts[lab]) + k
            at = cyc % makespan
            if timeline[at][slot] is not None:
                raise RTLError(f"internal: schedule conflict at cycle {at} ({lab})")
            timeline[at][slot] = Instr(ins.op, ins.a, ins.b, ins.dst, ins.dst_mode, ins.dst_bank, ins.first,
                                       ins.last, ins.filt, ins.imm, ins.einsum, cyc // makespan)
            busy += slot == 0
    epilogue = []
    outputs = []
    output_bank = 0
    for p in plan.einsums:
        if p.array is None or p.label in members:
            continue
        if p.array != "1d":
            raise RTLError(f"Einsum {p.label} runs on the 2D array after the tile loop; only the 1D lanes finish up")
        epilogue.extend(compile_einsum(p))
    for o in cascade.outputs:
        if o in alias:
            # a copy of a final iterate (AV = RO[f,M1,p]): stream the bank that holds it
            lay = next(e for e in cascade.einsums if e.name == o)
            src = lay.expr.tensor
            if src not in lane_reg or not lane_reg[src][2] or cascade.access_kind(lay.expr) != "final" or [
                    ix.text() for k, ix in enumerate(lay.expr.indices) if k != cascade.tensors[src].iterative] != [
                    ix.text() for ix in lay.output.indices]:
                raise RTLError(f"output {o} copies {lay.expr.text()}; the engine streams per-query lane results or "
                               "the final iterate of one, in the same order")
            base, tmp, _ = lane_reg[src]
            n = size_of(tmp)
            outputs.append((o, base, n))
            output_bank = n        # the final iterate sits in the second copy after an odd number of tiles
            continue
        if o not in lane_reg:
            raise RTLError(f"output {o} must be a per-query result of the 1D lanes")
        base, tmp, banked = lane_reg[o]
        if banked:
            raise RTLError(f"output {o} is iterative; write its final iterate to a plain tensor")
        outputs.append((o, base, size_of(tmp)))

    filters = {}
    for p in plan.einsums:
        e = cascade.einsums[p.index]
        if e.filters and p.array == "2d":
            for f in e.filters:
                for v in f.variables():
                    if v not in (tv, lv, mv):
                        raise RTLError(f"Einsum {p.label}: the filter {f.text()} uses {v!r}; the PEs evaluate filters "
                                       f"over {tv}, {lv} and {mv} only")
            filters[p.label] = e.filters
    # the controller visits, for each block of queries, the run of tiles holding a point (all of them
    # unless the binding skips empty tiles); a block with none still runs one, for its outputs
    ranges = [(0, M1)] * ptiles
    if binding.skip_empty_tiles:
        from ..arch.schedule import visited_tiles

        seen = visited_tiles(plan, vsize, sizes, range(M1), range(ptiles))
        ranges = []
        for b in range(ptiles):
            idx = [int(k) for k in seen[:, b].nonzero()[0]]
            if not idx:
                ranges.append((0, 1))
            elif idx[-1] - idx[0] + 1 != len(idx):
                raise RTLError(f"{cascade.name}: the tiles holding points of query block {b} are not one run "
                               f"({idx}); the engine skips a leading and a trailing run only. Use a binding "
                               "with skip_empty_tiles: false")
            else:
                ranges.append((idx[0], len(idx)))
    lag = _slot_lag(timeline, makespan, R)
    slots = 1 << max(1, (lag - 1).bit_length())
    return Program(
        rows=R, cols=C, numbers=q, sizes=dict(sizes), loop_steps=M1, query_tiles=ptiles,
        row_depth=max(1, slots * row_slot), col_depth=max(1, 2 * col_slot), pe_regs=max(1, max_pe[0]),
        lane_regs=max(1, max_lane[0]), timeline=[tuple(x) for x in timeline], epilogue=epilogue,
        loads=loads, outputs=outputs, filters=filters, filter_sets=filter_sets,
        starts={k: int(v) for k, v in starts.items()},
        makespan=makespan, busy_2d=busy, depth=depth, lane_var=lv, tile_var=tv, loop_var=mv,
        banked={t: (b, math.prod(sizes[r] for r in tmp) if tmp else 1) for t, (b, tmp, bk) in lane_reg.items() if bk},
        load_ranks=load_ranks, load_scales=load_scales, divider_2d=divider_2d, tile_ranges=ranges, output_bank=output_bank,
        instances=[(h, vsize[h]) for h in inst], queries=P,
        # (the header gives the sizes as words, so they must fit one)
        tile_mask=tile_mask, mask_inputs=tuple(sorted({t for f in tile_mask for t in reads_of(f)})),
        runtime_sizes=not tile_mask and max(M1, P) < 2 ** (q.width - 1) and _sizes_can_change(
            ranges, M1, filter_sets, {parent, plan.row_rank} | {r.name for r in cascade.ranks if r.name.lower() == mv}),
        row_slots=slots, slot_lag=lag,
    )


def _split_tile_mask(cascade: Cascade, binding, array, sizes) -> tuple[tuple, Cascade]:
    """(the filters that read data, the cascade without them): a block mask chooses whole tiles for
    whole blocks of queries (SeerAttention's ``BQK[m1,m0,p: BM[m1, p//B0] != 0]``), which the host
    resolves: each block's stream carries the number of tiles it keeps, then only those. So the
    mask may read the data at the tile (the loop variable) and at blocks of queries that hold whole
    blocks of the engine's columns (``p // B0`` with B0 a multiple of them), nothing finer."""
    from ..arch.schedule import plan as _plan
    from ._arch import engine_architecture

    data = [(i, f) for i, e in enumerate(cascade.einsums) for f in e.filters if reads_of(f)]
    if not data:
        return (), cascade
    R, C = array
    try:
        plan = _plan(cascade, binding, engine_architecture(R, C, divider_2d=True), sizes)
    except Exception as exc:       # noqa: BLE001 - the full compile names the problem
        raise RTLError(str(exc)) from None
    if plan.loop_var is None or plan.row_rank is None:
        raise RTLError(f"{cascade.name}: a filter on data chooses tiles of a loop over keys; this cascade has none")
    mv, lv = plan.loop_var, plan.row_rank.lower()
    for i, f in data:
        label = cascade.label(i)
        if f.variables() - {mv, lv}:
            raise RTLError(f"Einsum {label}: the filter {f.text()} reads data and uses "
                           f"{', '.join(sorted(f.variables() - {mv, lv}))}; the engine takes a mask over tiles "
                           f"({mv}) and blocks of queries ({lv} // B) only")
        for r in read_nodes(f):
            for ix in r.indices:
                if isinstance(ix, Var) and ix.name == mv:
                    continue
                if isinstance(ix, BinOp) and ix.op == "//" and isinstance(ix.left, Var) and ix.left.name == lv \
                        and int(ix.right.evaluate(sizes)) % C == 0:
                    continue
                raise RTLError(f"Einsum {label}: the filter {f.text()} reads {r.tensor} at {ix.text()}; the engine "
                               f"takes a mask over whole tiles ({mv}) and blocks of queries ({lv} // B, B a multiple "
                               f"of its {C} columns), so that a block keeps or skips a tile whole")
    drop = {t for _, f in data for t in reads_of(f)}
    readers = [e for e in cascade.einsums if drop & {a.tensor for a in e.expr.accesses()}]
    if readers:
        raise RTLError(f"Einsum {readers[0].name} computes with the mask {sorted(drop)[0]}; the engine reads it in "
                       "filters only")
    from dataclasses import replace

    stripped = replace(cascade, einsums=tuple(replace(e, filters=tuple(f for f in e.filters if not reads_of(f)))
                                              for e in cascade.einsums),
                       inputs=tuple(t for t in cascade.inputs if t.name not in drop),
                       densities=tuple((t, v) for t, v in cascade.densities if t not in drop))
    others = [f.text() for i, e in enumerate(stripped.einsums) for f in e.filters if stripped.einsum_kind(i) != "init"]
    if others or any(positions(e.expr) for e in stripped.einsums):
        raise RTLError(f"{cascade.name}: a mask that chooses tiles from data cannot be combined with "
                       f"{'the filter ' + others[0] if others else 'positions as values'} in the engine (the kept "
                       "tiles are not a run whose positions the controller counts)")
    return tuple(f for _, f in data), stripped


def kept_tiles(prog: Program, raw: dict) -> tuple:
    """For a job of an engine with a tile mask: the tiles each block of queries keeps, per
    instance and block in stream order, from the raw mask inputs."""
    import numpy as np

    from ..einsum._ir import TENSORS

    q = prog.numbers
    tiles = np.arange(prog.loop_steps).reshape(-1, 1)
    firsts = (np.arange(prog.query_tiles) * prog.cols).reshape(1, -1)
    env = {**prog.sizes, prog.loop_var: tiles, prog.lane_var: firsts,
           TENSORS: {t: q.to_float(np.asarray(raw[t])) for t in prog.mask_inputs}}
    keep = np.ones((prog.loop_steps, prog.query_tiles), bool)
    for f in prog.tile_mask:
        keep &= np.broadcast_to(np.asarray(f.evaluate(env), bool), keep.shape)
    per_block = tuple(tuple(int(k) for k in keep[:, b].nonzero()[0]) for b in range(prog.query_tiles))
    return per_block * prog.n_instances


def keep_a_tile_per_block(prog: Program, raw: dict, rng) -> dict:
    """``raw`` with its mask inputs changed so that every block of queries keeps at least one tile
    (a block that keeps none has no outputs to stream): one tile, chosen by ``rng``, of each such
    block is set to the first of 1, -1, 0 and the format's extremes that the mask's filters keep."""
    import numpy as np

    from ..einsum._ir import TENSORS

    if not prog.tile_mask:
        return raw
    q = prog.numbers
    out = {k: np.array(v, copy=True) for k, v in raw.items()}
    for k, tiles in enumerate(kept_tiles(prog, out)[:prog.query_tiles]):
        if tiles:
            continue
        env = {**prog.sizes, prog.loop_var: int(rng.integers(prog.loop_steps)), prog.lane_var: k * prog.cols}
        for value in (q.one, -q.one, 0, q.hi, q.lo):
            for f in prog.tile_mask:
                for r in read_nodes(f):
                    out[r.tensor][tuple(int(ix.evaluate(env)) for ix in r.indices)] = value
            env[TENSORS] = {t: q.to_float(out[t]) for t in prog.mask_inputs}
            if all(bool(f.evaluate(env)) for f in prog.tile_mask):
                break
    return out


def _slot_lag(timeline: list, makespan: int, rows: int) -> int:
    """How many later tiles must have started before a tile's row-buffer slot may be overwritten.

    Tile ``n``'s rows are read by the instructions of stages up to ``s`` (in the frames of tiles
    ``n .. n+s``); an instruction runs a cycle after it is fetched (the decode stage) and reaches row
    ``i`` ``i`` cycles later, so its last read can fall ``(rows - 1) // makespan + 1`` frames after its
    own. Once tile ``n + s + that + 1`` has started, no read of tile ``n`` is pending: the loader,
    which sees the start a cycle later, may write its slot then."""
    reads = [ins.stage for ins, _ in timeline if ins is not None and "row" in (ins.a.src, ins.b.src)]
    return max(reads, default=0) + (rows - 1) // max(1, makespan) + 2


def _sizes_can_change(ranges: list, tiles: int, filter_sets: list, changing: set) -> bool:
    """Whether the engine can run a job with fewer key tiles or queries than it was built for: every
    block visits every tile, and no filter compares against the number of keys, tiles or queries."""
    if any(r != (0, tiles) for r in ranges):
        return False
    return not any(f.symbols() & changing for fs in filter_sets for f in fs)


def _subst(ix, sub):
    if isinstance(ix, Var):
        return sub.get(ix.name, ix)
    if isinstance(ix, BinOp):
        return BinOp(ix.op, _subst(ix.left, sub), _subst(ix.right, sub))
    return ix


def _is_tile_index(ix, mv, tv, tile_rank) -> bool:
    return (isinstance(ix, BinOp) and ix.op == "+" and isinstance(ix.left, BinOp) and ix.left.op == "*"
            and isinstance(ix.left.left, Var) and ix.left.left.name == mv and isinstance(ix.left.right, Sym)
            and ix.left.right.name == tile_rank and isinstance(ix.right, Var) and ix.right.name == tv)


def _eval_static(ix, env, sizes, einsum):
    try:
        return int(ix.evaluate({**sizes, **env}))
    except Exception:
        raise RTLError(f"Einsum {einsum}: index {ix.text()} must be known at compile time") from None


def _fold(x, sizes, cascade):
    import numpy as np

    if isinstance(x, Const):
        return x.value
    if isinstance(x, SizeRef):
        return float(sizes[x.name])
    op = cascade.operators[x.op]
    with np.errstate(all="ignore"):
        return float(op.fn(*[np.float64(_fold(a, sizes, cascade)) for a in x.args]))



def _fold_constants(cascade: Cascade, plan, vsize: dict, numbers) -> tuple[dict, dict]:
    """Products with constant factors (``Q*BK*(1/sqrt(E))``): the constant is folded into the
    operand ``fold_target`` picks, as the executor folds it. The engine multiplies that input's
    words on their way in, so the Einsum itself is a plain product.

    Returns (label -> the product without its constants, input -> raw constant)."""
    from ..einsum import fold_target, product_factors

    layout = {}
    for i, e in enumerate(cascade.einsums):
        if isinstance(e.expr, Access) and not e.reduce and cascade.tensors[e.expr.tensor].is_input:
            layout[e.name] = e.expr.tensor
    stripped, scales = {}, {}
    for i, e in enumerate(cascade.einsums):
        factors = product_factors(e.expr)
        if factors is None or all(isinstance(f, Access) for f in factors):
            continue
        accs = [f for f in factors if isinstance(f, Access)]
        label = cascade.label(i)
        if not accs:
            continue                    # a constant (an initialization)
        if len(accs) != 2:
            raise RTLError(f"Einsum {label}: the engine multiplies two tensors; this product has {len(accs)}")
        k = fold_target(factors, e.output_variables(), vsize)
        src = layout.get(factors[k].tensor, factors[k].tensor) if k is not None else None
        if src is None or not cascade.tensors[src].is_input:
            raise RTLError(f"Einsum {label}: its constant factor would scale "
                           f"{'the result' if k is None else factors[k].tensor}, which the engine cannot "
                           "fold on a load path; multiply an input tensor by the constant instead")
        readers = [cascade.label(j) for j, f in enumerate(cascade.einsums)
                   if any(a.tensor in (src, factors[k].tensor) for a in f.expr.accesses())]
        if set(readers) - {label, *(x for x, s_ in layout.items() if s_ == src)}:
            raise RTLError(f"Einsum {label}: its constant factor is folded into {src}, which "
                           f"{', '.join(r for r in readers if r != label)} also read unscaled")
        value = _constant_value(cascade, [f for f in factors if not isinstance(f, Access)], vsize)
        scales[src] = int(numbers.const(value))
        stripped[label] = Call("*", tuple(accs))
    return stripped, scales


def _constant_value(cascade: Cascade, consts, vsize) -> float:
    import numpy as np

    from ..einsum import Const, SizeRef

    sizes = {k.upper(): v for k, v in vsize.items()}

    def val(x):
        if isinstance(x, Const):
            return float(x.value)
        if isinstance(x, SizeRef):
            return float(sizes[x.name])
        with np.errstate(all="ignore"):
            return float(cascade.operators[x.op].fn(*[np.float64(val(a)) for a in x.args]))

    return math.prod(val(c) for c in consts)
