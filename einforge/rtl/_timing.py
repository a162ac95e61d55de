"""The attention engine's timing with its inputs streamed from memory: when every input word is
taken, when every tile's first frame starts, and when the last output beat leaves.

The engine's compute schedule (a tile every ``makespan`` cycles, ``depth`` tiles in flight, then
the epilogue) is the cost model's; this adds what the memory does to it. A tile's first frame waits
(the compute side freezes) until the tile's last word is in its slot; the loader waits until the
slot it writes is free (:class:`~einforge.rtl._engine.Loader`); the memory offers words at a
bandwidth, fetching ahead into a FIFO. Everything here is an event of the hardware, so the cycle
count is exact, not an estimate; ``tests/rtl`` holds it equal to the simulated engine's.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

from ._errors import RTLError

__all__ = ["MemoryModel", "StreamTiming", "stream_timing"]


@dataclass(frozen=True)
class MemoryModel:
    """A memory that delivers ``bandwidth`` words per cycle (at most one) into a FIFO of ``fifo``
    words the engine reads from (``None``: unbounded); it fetches a word once the FIFO has room and
    the bandwidth allows. Cycle 0 is the cycle the engine takes the first word."""

    bandwidth: Fraction = Fraction(1)
    fifo: int | None = None

    def __post_init__(self):
        bw = Fraction(self.bandwidth).limit_denominator(1 << 16)
        if not 0 < bw <= 1:
            raise RTLError(f"bandwidth {self.bandwidth} words a cycle: give a value in (0, 1]")
        if self.fifo is not None and self.fifo < 1:
            raise RTLError(f"a FIFO of {self.fifo} words: give at least 1 (or none for unbounded)")
        object.__setattr__(self, "bandwidth", bw)

    def describe(self) -> str:
        fifo = "unbounded FIFO" if self.fifo is None else f"a {self.fifo}-word FIFO"
        return f"{self.bandwidth} words a cycle into {fifo}"


@dataclass(frozen=True)
class StreamTiming:
    first_input_to_last_output: int
    input_words: int
    stall_cycles: int           # cycles the compute side waited for a tile
    last_input: int             # the cycle the last word is taken


class _Words:
    """The cycles the engine takes words at, segment after segment."""

    def __init__(self, memory: MemoryModel):
        self.n, self.d = memory.bandwidth.numerator, memory.bandwidth.denominator
        self.fifo = memory.fifo
        self.count = 0
        self.last = -1              # the cycle the last word was taken
        self.taken: list[int] = []  # every word's cycle (a bounded FIFO needs them)
        self.fetch_units = 0        # when the last word was fetched, in 1/n cycles

    def take(self, count: int, allowed: int) -> int:
        """Take ``count`` words that the loader accepts from cycle ``allowed`` on; the last one's cycle."""
        if self.fifo is None:
            # unbounded: word w arrives at ceil(w d / n), at least a cycle after the one before
            # (d >= n), so once the engine has caught up with the memory it stays caught up
            first, end = self.count, self.count + count - 1
            start = max(self.last + 1, -(-first * self.d // self.n), allowed)
            self.last = max(start + count - 1, -(-end * self.d // self.n))
            self.count += count
            return self.last
        for _ in range(count):
            w = self.count
            fetched = 0
            if w:
                fetched = self.fetch_units + self.d
                if w >= self.fifo:
                    fetched = max(fetched, (self.taken[w - self.fifo] + 1) * self.n)
            self.fetch_units = fetched
            self.last = max(self.last + 1, -(-fetched // self.n), allowed)
            self.taken.append(self.last)
            self.count += 1
        return self.last


def stream_timing(prog, memory: MemoryModel = MemoryModel()) -> StreamTiming:
    """The cycles from the first input word to the last output beat of one job of ``prog``, its
    inputs offered by ``memory`` and its outputs taken at once (see the module's docstring)."""
    L, LE = prog.makespan, len(prog.epilogue)
    beats = prog.outputs[0][2]
    per_query, per_tile = prog.col_slot_words, prog.rows * prog.row_slot_words
    words = _Words(memory)
    if prog.runtime_sizes:
        words.take(2, 0)
    starts: list[int] = []          # the first frame of every tile, in order
    finished: list[int] = []        # the cycle each block's next_block happens
    frozen: list[tuple[int, int]] = []      # cycles [a, b) the compute side waited for a tile
    blocks = prog.block_counts()
    header = 1 if prog.tile_mask else 0             # a masked engine's block starts with its tile count
    streams: list[int] = []         # the cycle each block's first output beat leaves
    for g, count in enumerate(blocks):
        # the block's queries: their slot frees when the block two back is finished
        queries = min(prog.cols, prog.queries - (g % prog.query_tiles) * prog.cols)
        words.take(header + queries * per_query, finished[g - 2] + 1 if g >= 2 else 0)
        frame = finished[g - 1] + 1 if g >= 1 else 0      # when the controller could start tile 0
        for it in range(count):
            k = len(starts)
            # the loader writes tile k while tiles_loaded + slot_lag <= started + row_slots
            need = k + prog.slot_lag - prog.row_slots      # tiles started by then
            allowed = starts[need - 1] + 1 if need >= 1 else 0
            loaded = words.take(per_tile, allowed) + 1
            begin = max(frame, loaded)
            if begin > frame:
                frozen.append((frame, begin))
            starts.append(begin)
            frame = begin + L
        frame += (prog.depth - 1) * L      # the frames that drain the tiles in flight
        last_frame_end = frame - 1
        if LE:
            # the block before streams its beats from two running cycles after its finish (a tile
            # of this block may freeze the compute side in between); this epilogue waits for them
            if g >= 1:
                streams.append(_running_after(finished[g - 1], frozen, 2) + 1)
            epi = max(last_frame_end + 1, streams[-1] + beats if g >= 1 else 0)
            finished.append(epi + LE - 1)
        else:
            # the next block waits for this block's stream (two cycles after its frames, then its beats)
            finished.append(last_frame_end + 3 + beats)
    last = finished[-1] if LE else last_frame_end
    last_out = last + 2 + beats
    return StreamTiming(last_out + 1, words.count, sum(b - a for a, b in frozen), words.last)


def _running_after(cycle: int, frozen: list, n: int) -> int:
    """The ``n``-th cycle after ``cycle`` in which the compute side runs."""
    c = cycle
    for _ in range(n):
        c += 1
        for a, b in frozen:
            if a <= c < b:
                c = b
    return c
