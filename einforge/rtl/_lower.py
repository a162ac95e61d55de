"""Lowering a cascade onto RTL: pick the datapath from the IR, size it, describe its streams.

The lowering reads only the cascade IR and the binding: it recognizes a tensor-product Einsum
(``Z[.., m, n] = A[.., k, m] * B[.., k, n]`` summed over ``k``, with shared batch ranks) and maps
``m`` onto the array's rows and ``n`` onto its columns.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ..einsum import Access, Call, Cascade, FixedPoint, resolve_sizes
from ..einsum._ir import Var, rank_of
from ._errors import RTLError

__all__ = ["Design", "lower", "gemm_roles"]


@dataclass
class Design:
    """A lowered design: the Amaranth component, its name, and how to talk to it.

    ``manifest`` describes ports, parameters, sizes, the stream formats and the cycle count the
    cost model predicts; ``pack`` turns input arrays (raw fixed-point integers) into the input
    stream; ``unpack`` turns output beats back into the output tensor.
    """

    top: object
    name: str
    cascade: Cascade
    numbers: FixedPoint
    sizes: dict
    array: tuple
    manifest: dict = field(default_factory=dict)
    _pack: object = None
    _unpack: object = None
    _expect: object = None
    _at: object = None
    program: object = None        # the attention engine's compiled program (None for the GEMM array)
    _for_job: object = None       # a design whose work depends on its inputs' data: its view of one job
    binding: object = None        # the attention engine's binding (the cost model's view of it)

    def pack(self, raw_inputs: dict) -> list[int]:
        return self._pack(raw_inputs)

    def unpack(self, beats: list[list[int]]) -> dict:
        return self._unpack(beats)

    def at(self, sizes: dict) -> Design:
        """This hardware running a job of other (smaller) sizes: its input stream, expected beats
        and predicted cycles. Only designs whose manifest has ``runtime_sizes`` take them.

        Raises
        ------
        RTLError
            The design's sizes are fixed, or the job does not fit it.
        """
        if self._at is None:
            raise RTLError(f"{self.name}'s sizes are fixed when it is generated; lower it at the job's sizes")
        return self._at(sizes)

    def for_job(self, raw_inputs: dict) -> Design:
        """This design running a job on ``raw_inputs``: itself, unless the data chooses its work (a
        tile mask), when the view carries that job's stream, tiles and predicted cycles."""
        return self if self._for_job is None else self._for_job(raw_inputs)

    def expected_beats(self, golden: dict) -> list[list[list[int]]]:
        """Every output beat the design must stream: per lane ``[value, present]`` (absent lanes
        are 0 and not present)."""
        return self._expect(golden)


@dataclass(frozen=True)
class GemmRoles:
    """The GEMM array's view of a tensor product: ``a`` streams down the rows (its own output rank
    ``m``), ``b`` across the columns (``n``), ``k`` is summed in time, ``batch`` ranks run one after
    another. ``m`` or ``n`` is None when that operand brings no output rank of its own (a
    matrix-vector product): the array uses one row or one column for it."""

    einsum: str
    a: str
    b: str
    out: str
    k: str
    m: str | None
    n: str | None
    batch: tuple

    def vars(self) -> tuple:
        """The rank variables the array iterates over."""
        return tuple(v for v in (self.k, self.m, self.n) if v is not None) + self.batch


def _plain(a: Access, what: str, e) -> list[str]:
    vs = []
    for ix in a.indices:
        if not isinstance(ix, Var):
            raise RTLError(f"Einsum {e.name}: the GEMM array needs plain rank variables in {what} {a.text()}, "
                           f"not {ix.text()!r}; re-layout the tensor in a separate Einsum first")
        vs.append(ix.name)
    return vs


def gemm_roles(cascade: Cascade) -> GemmRoles:
    """Recognize the single tensor-product Einsum the GEMM array computes.

    Raises
    ------
    RTLError
        Naming the Einsum and what the array cannot do (more Einsums, filters, operators its MAC
        PEs lack, more than one reduced rank...).
    """
    from ..arch.schedule import actions as _actions

    work = [(i, e) for i, e in enumerate(cascade.einsums) if cascade.einsum_kind(i) == "plain"]
    if len(work) != 1 or cascade.iterative_ranks:
        names = ", ".join(e.name for _, e in work)
        raise RTLError(f"{cascade.name}: the GEMM array computes one tensor-product Einsum; this cascade has "
                       f"{len(work)} ({names}). The attention engine runs cascades that loop over tiles of keys "
                       f"(an iterative rank, as in attention-1pass); get one with `einforge rewrite "
                       f"{cascade.name} --defer-division --running-max M` for softmax (with --host-layouts when "
                       f"it gathers chunks or writes blocked outputs), or partition the key rank "
                       f"by hand (attention-sigmoid-tiled), or split out one tensor product for the GEMM array")
    _, e = work[0]
    if not (isinstance(e.expr, Call) and e.expr.op == "*" and len(e.expr.args) == 2
            and all(isinstance(x, Access) for x in e.expr.args)):
        try:
            _actions(cascade, e, ("mac",), "2d")
        except Exception as exc:  # an operator the MAC PEs lack
            msg = str(exc).split(";")[0]
            raise RTLError(f"{msg}; the GEMM PE template has only a MAC unit") from None
        raise RTLError(f"Einsum {e.name} must be a product of two tensors summed over one rank, A[...] * B[...]; "
                       "the GEMM PE template computes sum(A*B)")
    acts, _ = _actions(cascade, e, ("mac",), "2d")
    if set(acts) != {"mac"} or acts["mac"] != 1:
        raise RTLError(f"Einsum {e.name} is not one multiply-accumulate per point (it needs "
                       f"{dict(acts)}); the GEMM PE template computes sum(A*B)")
    if e.filters:
        raise RTLError(f"Einsum {e.name} has a filter ({e.filters[0].text()}); the GEMM array has no masking")
    a, b = e.expr.args
    va, vb = _plain(a, "operand", e), _plain(b, "operand", e)
    vo = _plain(e.output, "output", e)
    red = [v for v, _ in e.reduce]
    if len(red) != 1:
        raise RTLError(f"Einsum {e.name} reduces {len(red)} ranks ({', '.join(red) or 'none'}); the GEMM array "
                       "reduces exactly one, in time")
    k = red[0]
    if k not in va or k not in vb:
        raise RTLError(f"Einsum {e.name}: the reduced rank {k!r} must index both operands")
    batch = tuple(v for v in vo if v in va and v in vb)
    first = next((v for v in vo if v not in batch), None)
    if first is not None and first in vb:      # the operand of the first output rank feeds the rows
        a, b, va, vb = b, a, vb, va
    rows = [v for v in vo if v in va and v not in vb]
    cols = [v for v in vo if v in vb and v not in va]
    if len(rows) > 1 or len(cols) > 1 or len(vo) != len(batch) + len(rows) + len(cols):
        raise RTLError(f"Einsum {e.name}: the output must have at most one rank of each operand (rows and "
                       f"columns of the array) plus shared batch ranks; got {e.output.text()}")
    if not rows and not cols:
        raise RTLError(f"Einsum {e.name}: neither operand brings an output rank of its own ({e.output.text()} "
                       "is a dot product per batch element): nothing to spread over the array's rows or columns; "
                       "compute it on the attention engine's lanes or batch it into a matrix product")
    if len(set(va)) != len(va) or len(set(vb)) != len(vb):
        raise RTLError(f"Einsum {e.name}: repeated rank variables in an operand are not supported")
    return GemmRoles(e.name, a.tensor, b.tensor, e.name, k, rows[0] if rows else None, cols[0] if cols else None,
                     batch)


def lower(cascade: Cascade, binding=None, array: tuple[int, int] = (4, 4), numbers: FixedPoint | None = None,
          sizes: dict | None = None) -> Design:
    """Lower ``cascade`` onto an ``R x C`` array in the ``numbers`` fixed-point format.

    A single tensor-product Einsum lowers to the output-stationary GEMM array; a cascade looping
    over tiles of keys (the 1-pass attention cascade) to the attention engine (2D + 1D arrays); an
    element-wise stage (feature maps, activations, combining outputs, a sum in time) to the vector
    unit's ``C`` lanes.

    Raises
    ------
    RTLError
        If the cascade or an operator has no datapath here; the message names the Einsum.
    """
    numbers = numbers or FixedPoint(8, 8)
    r, c = array
    if r < 1 or c < 1:
        raise RTLError(f"array {r}x{c}: rows and columns must be positive")
    if cascade.iterative_ranks:
        from ..einsum import roles
        from ._attention import lower_attention

        if roles(cascade).tile is not None:
            return lower_attention(cascade, binding, (r, c), numbers, dict(sizes or {}))
        # a loop over single steps (a recurrence, a scan): the vector unit's, one lane per sequence
        not_engine = RTLError(f"{cascade.name} partitions no rank into tiles for the attention engine's rows "
                              "(write K[e, m1*M0+m0] to stream M in tiles of M0)")
        return _lower_vector(cascade, binding, c, numbers, sizes, not_engine)
    try:
        gemm_roles(cascade)   # structural problems first, before any size is needed
    except RTLError as not_gemm:
        return _lower_vector(cascade, binding, c, numbers, sizes, not_gemm)
    try:
        sz = resolve_sizes(cascade, sizes or {})
    except Exception as exc:
        raise RTLError(str(exc)) from None
    return _lower_gemm(cascade, (r, c), numbers, sz)


def _lower_vector(cascade, binding, lanes, numbers, sizes, not_gemm) -> Design:
    """A stage that is no tensor product: the vector unit's, or refused with both reasons."""
    from ._vector import check_vector, lower_vector

    lane = None
    if binding is not None and not isinstance(binding, str):
        lane = next(iter(binding.spatial_for("1d").get("cols", ())), None)
    try:
        check_vector(cascade)
    except RTLError as not_vector:
        raise RTLError(f"{not_gemm}. Nor can the vector unit run it: {not_vector}") from None
    try:
        sz = resolve_sizes(cascade, sizes or {})
    except Exception as exc:
        raise RTLError(str(exc)) from None
    try:
        return lower_vector(cascade, lanes, numbers, sz, lane)
    except RTLError as not_vector:
        raise RTLError(f"{not_gemm}. Nor can the vector unit run it: {not_vector}") from None


def _lower_gemm(cascade, array, numbers, sz) -> Design:
    from ._gemm import SystolicGemm

    roles = gemm_roles(cascade)
    R, C = array
    size = {v: sz[rank_of(v)] for v in roles.vars()}
    bt = math.prod(size[v] for v in roles.batch) if roles.batch else 1
    own_m, own_n = [v for v in (roles.m,) if v], [v for v in (roles.n,) if v]
    # a matrix-vector product's vector takes one row or one column
    K, M, N = size[roles.k], math.prod(size[v] for v in own_m), math.prod(size[v] for v in own_n)
    top = SystolicGemm(R, C, bt, K, M, N, numbers.width, numbers.frac_bits)
    top._MustUse__silence = True   # a design may be lowered only for its manifest or cycle count
    einsum = cascade.einsums[[e.name for e in cascade.einsums].index(roles.einsum)]
    a_vars = [ix.name for ix in next(x for x in einsum.expr.args if x.tensor == roles.a).indices]
    b_vars = [ix.name for ix in next(x for x in einsum.expr.args if x.tensor == roles.b).indices]
    o_vars = [ix.name for ix in einsum.output.indices]

    def order(arr, have, want):
        return np.transpose(np.asarray(arr), [have.index(v) for v in want])

    def pack(raw):
        a = order(raw[roles.a], a_vars, list(roles.batch) + [roles.k] + own_m).reshape(bt, K, M)
        b = order(raw[roles.b], b_vars, list(roles.batch) + [roles.k] + own_n).reshape(bt, K, N)
        return [int(x) for x in a.ravel()] + [int(x) for x in b.ravel()]

    def tiles():
        for bb in range(bt):
            for tm in range(top.TM):
                for tn in range(top.TN):
                    yield bb, tm, tn

    def unpack(beats):
        z = np.zeros((bt, M, N), dtype=np.int64)
        it = iter(beats)
        for bb, tm, tn in tiles():
            for row in range(min(R, M - tm * R)):
                beat = next(it)
                for j in range(min(C, N - tn * C)):
                    z[bb, tm * R + row, tn * C + j] = beat[j]
        shaped = z.reshape([size[v] for v in roles.batch] + [size[v] for v in own_m + own_n])
        have = list(roles.batch) + own_m + own_n
        return {roles.out: np.transpose(shaped, [have.index(v) for v in o_vars])}

    def expect(golden):
        z = order(golden[roles.out], o_vars, list(roles.batch) + own_m + own_n).reshape(bt, M, N)
        beats = []
        for bb, tm, tn in tiles():
            for row in range(min(R, M - tm * R)):
                beat = []
                for j in range(C):
                    n = tn * C + j
                    beat.append([int(z[bb, tm * R + row, n]), 1] if n < N else [0, 0])
                beats.append(beat)
        return beats

    name = _verilog_name(cascade.name)
    manifest = {
        "design": name, "cascade": cascade.name, "datapath": "output-stationary GEMM", "array": [R, C],
        "numbers": {"format": numbers.describe(), "width": numbers.width, "frac_bits": numbers.frac_bits,
                    "accumulator_bits": top.acc_bits, "rounding": "half up", "saturation": True},
        "sizes": {k: int(v) for k, v in sz.items()},
        "mapping": {"rows": rank_of(roles.m) if roles.m else None, "cols": rank_of(roles.n) if roles.n else None,
                    "reduced": rank_of(roles.k),
                    "batch": [rank_of(v) for v in roles.batch], "tiles": top.tiles},
        "ports": _ports(top),
        "input_stream": f"{roles.a} as [{','.join(list(roles.batch) + [roles.k] + own_m)}] then "
                        f"{roles.b} as [{','.join(list(roles.batch) + [roles.k] + own_n)}], one word per beat",
        "output_stream": f"{roles.out} per tile ({','.join(list(roles.batch))}{',' if roles.batch else ''}"
                         f"m-tile,n-tile): one beat per row, {C} lanes",
        "input_words": bt * K * (M + N),
        "output_beats": sum(min(R, M - tm * R) for _, tm, _ in tiles()),
        "rtl_cycles_formula": "tiles * (K + R + C - 2)",
        "rtl_cycles": top.expected_cycles,
    }
    d = Design(top, name, cascade, numbers, sz, (R, C), manifest, pack, unpack, expect)
    manifest["model_cycles"] = model_cycles(d)
    return d


def _ports(top) -> dict:
    out = {}
    for pname, member in top.signature.members.items():
        out[pname] = {"direction": "in" if member.flow.name == "In" else "out",
                      "width": member.shape.width if hasattr(member.shape, "width") else int(member.shape),
                      "signed": bool(getattr(member.shape, "signed", False))}
    out["clk"] = {"direction": "in", "width": 1, "signed": False}
    out["rst"] = {"direction": "in", "width": 1, "signed": False}
    return out


def _verilog_name(name: str) -> str:
    s = "".join(ch if ch.isalnum() else "_" for ch in name)
    return s if s[0].isalpha() else "d_" + s


def model_cycles(design: Design) -> float:
    """What the cost model predicts for this array and mapping (fill and drain included)."""
    from ..arch import ArchError, evaluate
    from ._arch import rtl_architecture, rtl_binding, rtl_workload

    arch = rtl_architecture(design)
    binding = rtl_binding(design)
    try:
        r = evaluate(arch, design.cascade, binding, rtl_workload(design))
    except ArchError as exc:
        raise RTLError(f"cost model: {exc}") from None
    return r.details["compute_cycles"]


def model_latency(design: Design, memory) -> float | None:
    """The cost model's latency (cycles) of the attention engine with its inputs from ``memory``:
    the same arrays, mapping and sizes, DRAM as fast as the memory, one block of queries resident.
    It is the model's roofline (the busier of compute and traffic), not the engine's event timing
    (:func:`~einforge.rtl.stream_timing`), so it leaves out each block's first tile and last
    outputs; None for the GEMM array."""
    from ..arch import ArchError, evaluate
    from ._arch import rtl_architecture, rtl_binding, rtl_workload

    if design.program is None:
        return None
    try:
        r = evaluate(rtl_architecture(design, memory), design.cascade, rtl_binding(design),
                     rtl_workload(design))
    except ArchError as exc:
        raise RTLError(f"cost model: {exc}") from None
    return r.latency_s
