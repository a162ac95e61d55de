"""An output-stationary systolic array for a tensor product ``Z[b,m,n] = sum_k A[b,k,m] * B[b,k,n]``.

Structure (Amaranth 0.5):

* **operand buffers**: one memory per array row for A (row ``i`` holds the ``m = i (mod R)``
  columns of A) and one per array column for B, filled from the input stream;
* **skew**: row ``i`` is delayed ``i`` cycles and column ``j`` ``j`` cycles, so that PE ``(i, j)``
  sees ``A[k, m0+i]`` and ``B[k, n0+j]`` at the same cycle ``k + i + j`` of a tile;
* **MAC PEs**: each registers its operands to its right and lower neighbours and accumulates the
  exact product in a wide accumulator; at the start of the next tile the sum moves to a result
  register and the accumulator restarts;
* **drain**: result rows leave through the output stream, ``C`` lanes per beat, rounded and
  saturated to the number format, while the next tile computes;
* **controller**: loads, then issues tiles back to back (``K + R + C - 2`` cycles each: the skew
  fill and drain are not overlapped between tiles, SCALE-Sim's output-stationary dataflow).

Stream protocol: a beat moves when ``valid`` and ``ready`` are both high. Input: all of A in
``[b][k][m]`` order, then all of B in ``[b][k][n]`` order, one word per beat. Output: for each
tile in ``(b, m-tile, n-tile)`` order, one beat per valid row of the tile, lane ``j`` holding
``Z[b, m0+row, n0+j]`` (lanes past ``N`` carry zeros).
"""

from __future__ import annotations

import math

from amaranth import Array, Cat, Module, Mux, ResetInserter, Signal, signed
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import In, Out

from ._errors import RTLError

__all__ = ["MacPE", "SystolicGemm"]


class MacPE(wiring.Component):
    """A multiply-accumulate PE of an output-stationary array."""

    def __init__(self, width: int, acc_bits: int):
        self.width, self.acc_bits = width, acc_bits
        super().__init__({
            "a_in": In(signed(width)), "b_in": In(signed(width)),
            "a_out": Out(signed(width)), "b_out": Out(signed(width)),
            "clear": In(1),
            "result": Out(signed(acc_bits)),
        })

    def elaborate(self, platform):
        m = Module()
        acc = Signal(signed(self.acc_bits))
        prod = Signal(signed(2 * self.width))
        m.d.comb += prod.eq(self.a_in * self.b_in)
        m.d.sync += [self.a_out.eq(self.a_in), self.b_out.eq(self.b_in)]
        with m.If(self.clear):
            m.d.sync += [self.result.eq(acc), acc.eq(prod)]
        with m.Else():
            m.d.sync += acc.eq(acc + prod)
        return m


class SystolicGemm(wiring.Component):
    """R x C output-stationary GEMM with operand buffers, streams and a tile controller.

    Parameters
    ----------
    rows, cols : array shape R x C
    batch, k, m, n : problem sizes (a batched GEMM over ``batch``)
    width, frac_bits : fixed-point format of operands and results
    """

    def __init__(self, rows: int, cols: int, batch: int, k: int, m: int, n: int, width: int, frac_bits: int):
        if min(rows, cols, batch, k, m, n) < 1:
            raise RTLError("array dimensions and problem sizes must be positive")
        self.R, self.C, self.BT, self.K, self.M, self.N = rows, cols, batch, k, m, n
        self.W, self.F = width, frac_bits
        self.TM, self.TN = math.ceil(m / rows), math.ceil(n / cols)
        self.T = k + rows + cols - 2                      # cycles of one tile
        self.acc_bits = 2 * width + max(1, math.ceil(math.log2(max(2, k)))) + 1
        self.tiles = batch * self.TM * self.TN
        super().__init__({
            "in_data": In(signed(width)), "in_valid": In(1), "in_ready": Out(1),
            "out_data": Out(cols * width), "out_present": Out(cols), "out_valid": Out(1), "out_ready": In(1),
            "busy": Out(1), "done": Out(1), "cycles": Out(32),
        })

    @property
    def expected_cycles(self) -> int:
        """Compute cycles with the output always ready: tiles x (K + R + C - 2)."""
        return self.tiles * self.T

    def elaborate(self, platform):
        m = Module()
        R, C, BT, K, M, N, W, F = self.R, self.C, self.BT, self.K, self.M, self.N, self.W, self.F
        TM, TN, T = self.TM, self.TN, self.T
        depth_a = BT * TM * K
        depth_b = BT * TN * K

        mem_a = [memory.Memory(shape=signed(W), depth=depth_a, init=[]) for _ in range(R)]
        mem_b = [memory.Memory(shape=signed(W), depth=depth_b, init=[]) for _ in range(C)]
        for i, mem in enumerate(mem_a):
            m.submodules[f"mem_a{i}"] = mem
        for j, mem in enumerate(mem_b):
            m.submodules[f"mem_b{j}"] = mem
        wa = [mem.write_port() for mem in mem_a]
        wb = [mem.write_port() for mem in mem_b]
        ra = [mem.read_port() for mem in mem_a]
        rb = [mem.read_port() for mem in mem_b]

        # ---------------- loading: A[b][k][m] then B[b][k][n] -----------------------------------
        ld_b = Signal(range(BT + 1))
        ld_k = Signal(range(K + 1))
        ld_x = Signal(range(max(M, N) + 1))        # m or n
        ld_i = Signal(range(max(R, C) + 1))        # lane of the word: x mod R (or C)
        ld_t = Signal(range(max(TM, TN) + 1))      # x div R (or C)
        loading_b = Signal()
        state = Signal(range(5))                   # 0 load, 1 run, 2 flush, 3 finish, 4 done
        m.d.comb += self.in_ready.eq(state == 0)
        beat_in = Signal()
        m.d.comb += beat_in.eq(self.in_valid & self.in_ready)
        addr_ld_a = Signal(range(depth_a + 1))
        addr_ld_b = Signal(range(depth_b + 1))
        m.d.comb += [addr_ld_a.eq((ld_b * TM + ld_t) * K + ld_k), addr_ld_b.eq((ld_b * TN + ld_t) * K + ld_k)]
        for i in range(R):
            m.d.comb += [wa[i].addr.eq(addr_ld_a), wa[i].data.eq(self.in_data),
                         wa[i].en.eq(beat_in & ~loading_b & (ld_i == i))]
        for j in range(C):
            m.d.comb += [wb[j].addr.eq(addr_ld_b), wb[j].data.eq(self.in_data),
                         wb[j].en.eq(beat_in & loading_b & (ld_i == j))]
        lanes = Mux(loading_b, C, R)
        extent = Mux(loading_b, N, M)
        with m.If(beat_in):
            with m.If(ld_x == extent - 1):
                m.d.sync += [ld_x.eq(0), ld_i.eq(0), ld_t.eq(0)]
                with m.If(ld_k == K - 1):
                    m.d.sync += ld_k.eq(0)
                    with m.If(ld_b == BT - 1):
                        m.d.sync += ld_b.eq(0)
                        with m.If(loading_b):
                            m.d.sync += state.eq(1)
                        with m.Else():
                            m.d.sync += loading_b.eq(1)
                    with m.Else():
                        m.d.sync += ld_b.eq(ld_b + 1)
                with m.Else():
                    m.d.sync += ld_k.eq(ld_k + 1)
            with m.Else():
                m.d.sync += ld_x.eq(ld_x + 1)
                with m.If(ld_i == lanes - 1):
                    m.d.sync += [ld_i.eq(0), ld_t.eq(ld_t + 1)]
                with m.Else():
                    m.d.sync += ld_i.eq(ld_i + 1)

        # ---------------- tile issue ----------------------------------------------------------------
        t_b = Signal(range(BT + 1))
        t_m = Signal(range(TM + 1))
        t_n = Signal(range(TN + 1))
        t = Signal(range(T + 1))                   # cycle within the tile being issued
        issuing = Signal()
        m.d.comb += issuing.eq(state == 1)
        rd_addr_a = Signal(range(depth_a + 1))
        rd_addr_b = Signal(range(depth_b + 1))
        m.d.comb += [rd_addr_a.eq((t_b * TM + t_m) * K + t), rd_addr_b.eq((t_b * TN + t_n) * K + t)]
        for i in range(R):
            m.d.comb += [ra[i].addr.eq(rd_addr_a), ra[i].en.eq(1)]
        for j in range(C):
            m.d.comb += [rb[j].addr.eq(rd_addr_b), rb[j].en.eq(1)]
        feed_valid = Signal()                      # the memories' outputs this cycle are operands
        start_next = Signal()                      # a tile window (or the final capture) starts now

        drain_busy = Signal()
        can_start = Signal()
        m.d.comb += can_start.eq(~drain_busy)

        tile_rows_issued = Signal(range(R + 1))   # valid rows of the tile being issued
        m.d.comb += tile_rows_issued.eq(Mux(t_m == TM - 1, M - (TM - 1) * R, R))
        tile_cols_issued = Signal(range(C + 1))   # valid columns: the last tile of N may be partial
        m.d.comb += tile_cols_issued.eq(Mux(t_n == TN - 1, N - (TN - 1) * C, C))
        win_cols, win_cols_next, d_cols = (Signal(range(C + 1), name=n) for n in ("win_cols", "win_cols_next", "d_cols"))
        win_rows = Signal(range(R + 1))            # valid rows of the tile in the array
        win_rows_next = Signal(range(R + 1))
        have_tile = Signal()                       # a tile is in the array (not yet captured)
        stall = Signal()
        m.d.comb += stall.eq((t == 0) & ~can_start)
        m.d.sync += [feed_valid.eq(issuing & ~stall & (t < K)), start_next.eq(0)]

        with m.If(issuing & ~stall):
            with m.If(t == 0):
                m.d.sync += [start_next.eq(1), win_rows_next.eq(tile_rows_issued), win_cols_next.eq(tile_cols_issued)]
            with m.If(t == T - 1):
                m.d.sync += t.eq(0)
                with m.If(t_n == TN - 1):
                    m.d.sync += t_n.eq(0)
                    with m.If(t_m == TM - 1):
                        m.d.sync += t_m.eq(0)
                        with m.If(t_b == BT - 1):
                            m.d.sync += state.eq(2)
                        with m.Else():
                            m.d.sync += t_b.eq(t_b + 1)
                    with m.Else():
                        m.d.sync += t_m.eq(t_m + 1)
                with m.Else():
                    m.d.sync += t_n.eq(t_n + 1)
            with m.Else():
                m.d.sync += t.eq(t + 1)
        with m.If((state == 2) & can_start):       # final capture of the last tile
            m.d.sync += [start_next.eq(1), win_rows_next.eq(0), state.eq(3)]

        # ---------------- skew lines and the PE array -----------------------------------------
        a_edge = []
        for i in range(R):
            x = Signal(signed(W), name=f"feed_a{i}")
            m.d.comb += x.eq(Mux(feed_valid, ra[i].data, 0))
            for d in range(i):
                y = Signal(signed(W), name=f"skew_a{i}_{d}")
                m.d.sync += y.eq(x)
                x = y
            a_edge.append(x)
        b_edge = []
        for j in range(C):
            x = Signal(signed(W), name=f"feed_b{j}")
            m.d.comb += x.eq(Mux(feed_valid, rb[j].data, 0))
            for d in range(j):
                y = Signal(signed(W), name=f"skew_b{j}_{d}")
                m.d.sync += y.eq(x)
                x = y
            b_edge.append(x)
        pes = [[MacPE(W, self.acc_bits) for _ in range(C)] for _ in range(R)]
        for i in range(R):
            for j in range(C):
                pe = pes[i][j]
                m.submodules[f"pe_{i}_{j}"] = pe
                m.d.comb += [
                    pe.a_in.eq(a_edge[i] if j == 0 else pes[i][j - 1].a_out),
                    pe.b_in.eq(b_edge[j] if i == 0 else pes[i - 1][j].b_out),
                    pe.clear.eq(start_next),
                ]

        # ---------------- cycle counter -----------------------------------------------------------
        in_window = Signal()
        with m.If(start_next):
            m.d.sync += in_window.eq(win_rows_next != 0)
        with m.If((start_next & (win_rows_next != 0)) | (in_window & ~start_next)):
            m.d.sync += self.cycles.eq(self.cycles + 1)

        # ---------------- drain -------------------------------------------------------------------
        d_row = Signal(range(R + 1))
        d_rows = Signal(range(R + 1))
        m.d.comb += drain_busy.eq(d_row != d_rows)
        with m.If(start_next):
            m.d.sync += [win_rows.eq(win_rows_next), win_cols.eq(win_cols_next), have_tile.eq(win_rows_next != 0)]
            with m.If(have_tile):
                m.d.sync += [d_row.eq(0), d_rows.eq(win_rows), d_cols.eq(win_cols)]
        half = (1 << (F - 1)) if F > 0 else 0
        lo, hi = -(1 << (W - 1)), (1 << (W - 1)) - 1
        lanes_out = []
        for j in range(C):
            col = Array([pes[i][j].result for i in range(R)])
            sel = Signal(signed(self.acc_bits), name=f"drain_{j}")
            m.d.comb += sel.eq(col[d_row])
            rounded = Signal(signed(self.acc_bits + 1), name=f"rounded_{j}")
            m.d.comb += rounded.eq((sel + half) >> F)
            word = Signal(signed(W), name=f"out_{j}")
            m.d.comb += word.eq(Mux(j >= d_cols, 0, Mux(rounded > hi, hi, Mux(rounded < lo, lo, rounded))))
            lanes_out.append(word)
        m.d.comb += [self.out_data.eq(Cat(*lanes_out)), self.out_valid.eq(drain_busy),
                     self.out_present.eq(Cat(*[j < d_cols for j in range(C)]))]
        with m.If(self.out_valid & self.out_ready):
            m.d.sync += d_row.eq(d_row + 1)
        with m.If((state == 3) & ~drain_busy & ~start_next):
            m.d.sync += state.eq(4)
        m.d.comb += [self.busy.eq((state == 1) | (state == 2) | (state == 3)), self.done.eq(state == 4)]
        # a new job after done, without reset: the first input word offered while done restarts the
        # array on that edge (it is taken on the next; the operand buffers are rewritten by the load)
        restart = Signal()
        m.d.comb += restart.eq(self.done & self.in_valid)
        return ResetInserter({"sync": restart})(m)
