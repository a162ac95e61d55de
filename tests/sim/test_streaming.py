"""The streaming engine: K/V tiles and query blocks stream in from a memory model with a bandwidth.

Every simulated job's first-input-to-last-output cycles must equal the timing model's
(``stream_timing``), for every binding, memory and tile-skipping pattern here; the verdict itself
requires it (``latency_equal_model``), so these tests also check that the check ran.
"""

from fractions import Fraction

import pytest

from einforge.einsum import FixedPoint, library
from einforge.rtl import MemoryModel, lower, model_latency, stream_timing
from einforge.sim import run_jobs, simulate, simulators, stimuli

LIB = library()
# Verilator (when installed) for the one design most tests here share, whose cold build costs about
# a minute; Icarus builds the others in seconds
SIM = "verilator" if simulators()["verilator"] else "icarus"
OTHER_SIM = "icarus" if simulators()["icarus"] else SIM
needs_sim = pytest.mark.skipif(not any(simulators().values()), reason="no simulator installed")


def _design(name="attention-1pass", binding="fusemax", array=(4, 4), **sizes):
    return lower(LIB[name].load(), binding, array, FixedPoint(8, 8), {"M": 32, "P": 12, "E": 4, "F": 4, **sizes})


def _check(r, memory, design):
    assert r.passed, r.details["failed_checks"]
    want = stream_timing(design.program, memory).first_input_to_last_output
    assert r.details["model_first_input_to_last_output"] == want
    assert r.details["first_input_to_last_output"] == want


MEMORIES = [MemoryModel(), MemoryModel(Fraction(1, 2)), MemoryModel(Fraction(3, 10)), MemoryModel(Fraction(7, 8), 3),
            MemoryModel(Fraction(1), 1)]


@needs_sim
@pytest.mark.parametrize("memory", MEMORIES, ids=lambda m: m.describe())
def test_latency_equals_the_timing_model_for_any_memory(memory):
    # interleaved tiles, 8 of them, and a partial last block of queries (10 = 4 + 4 + 2), as a
    # smaller job of the shared design
    d = _design()
    job = d.at({"M": 32, "P": 10, "E": 4, "F": 4})
    r = run_jobs(d, [("random", 3, stimuli(job, 3, "random"), job)], sim=SIM, memory=memory)
    _check(r, memory, job)


@needs_sim
@pytest.mark.parametrize("name,binding,sizes", [
    ("attention-1pass", "arch", {"M": 24, "P": 8}),                      # one tile at a time
    ("attention-causal", "fusemax", {"M": 32, "P": 32}),                 # blocks skip tiles: fewer words
    ("attention-window", "fusemax", {"M": 32, "P": 32, "W": 5}),
])
def test_latency_equals_the_timing_model_across_cascades(name, binding, sizes):
    d = _design(name, binding, **sizes)
    memory = MemoryModel(Fraction(2, 3))
    _check(simulate(d, sim=OTHER_SIM, seed=4, memory=memory), memory, d)


@needs_sim
def test_smaller_jobs_stream_back_to_back_and_keep_the_timing():
    d = _design("attention-1pass", "fusemax", M=32, P=12)
    memory = MemoryModel(Fraction(3, 4))
    jobs = [("random", 0, stimuli(d, 0, "random"))]
    for sizes in ({"M": 8, "P": 3}, {"M": 20, "P": 12}):
        view = d.at({"M": sizes["M"], "P": sizes["P"], "E": 4, "F": 4})
        jobs.append(("random", 1, stimuli(view, 1, "random"), view))
    r = run_jobs(d, jobs, sim=SIM, memory=memory)
    assert r.passed, r.details["failed_checks"]


def test_buffers_hold_slots_not_sequences():
    """Streaming: the buffers hold a few tiles and two blocks of queries, whatever the lengths."""
    small, big = _design(M=16, P=8), _design(M=512, P=256)
    assert (small.program.row_depth, small.program.col_depth) == (big.program.row_depth, big.program.col_depth)
    p = small.program
    assert p.row_depth == p.row_slots * (4 + 4) and p.col_depth == 2 * 4      # K and V; Q
    assert p.row_slots >= p.slot_lag and p.row_slots & (p.row_slots - 1) == 0


@pytest.mark.parametrize("binding", ["arch", "fusemax"])
@pytest.mark.parametrize("M,P", [(16, 4), (64, 12), (128, 40)])
def test_latency_is_bounded_by_compute_and_by_memory(binding, M, P):
    """Derived bounds: no job is faster than streaming its words at the bandwidth, nor than its
    compute (the cost model's cycles); a slower memory or a smaller FIFO never helps."""
    d = _design(binding=binding, M=M, P=P)
    prev = 0
    for bw in (Fraction(1), Fraction(3, 4), Fraction(1, 2), Fraction(1, 5)):
        t = stream_timing(d.program, MemoryModel(bw))
        assert t.input_words == len(d.pack(stimuli(d, 0, "random")))
        assert t.first_input_to_last_output >= max(d.manifest["model_cycles"], (t.input_words - 1) / bw + 1)
        assert t.first_input_to_last_output >= prev
        prev = t.first_input_to_last_output
        bounded = stream_timing(d.program, MemoryModel(bw, 2))
        assert bounded.first_input_to_last_output >= t.first_input_to_last_output


@pytest.mark.parametrize("M,P", [(64, 8), (128, 16), (512, 16)])
def test_an_engine_that_keeps_up_hides_the_loads(M, P):
    """When a tile's words arrive within its frame (per-tile words <= makespan at one word a
    cycle), only the job's first tile waits: for the header, the first block's queries and its own
    words; every later tile and block is loaded while earlier ones compute, however many there are."""
    d = _design(binding="arch", M=M, P=P, E=2, F=2)
    per_tile, first_block = 4 * (2 + 2), 4 * 2
    assert per_tile <= d.program.makespan and d.program.runtime_sizes
    assert stream_timing(d.program, MemoryModel()).stall_cycles == 2 + first_block + per_tile


def test_memory_model_refuses_impossible_bandwidths():
    from einforge.rtl import RTLError

    for bad in (0, Fraction(3, 2), -1):
        with pytest.raises(RTLError, match="bandwidth"):
            MemoryModel(bad)
    with pytest.raises(RTLError, match="FIFO"):
        MemoryModel(1, 0)


@pytest.mark.parametrize("name,binding,array,sizes,bw", [
    # memory-bound (a 16-bit port: a tile's words outnumber its frame's cycles)
    ("attention-1pass", "fusemax", (4, 4), {"M": 256, "P": 64, "E": 4, "F": 4}, Fraction(1)),
    ("attention-1pass", "fusemax", (4, 4), {"M": 256, "P": 64, "E": 16, "F": 16}, Fraction(1, 8)),
    ("attention-1pass", "arch", (8, 8), {"M": 512, "P": 64, "E": 8, "F": 8}, Fraction(1, 2)),
    ("attention-1pass", "fusemax", (16, 16), {"M": 2048, "P": 64, "E": 2, "F": 2}, Fraction(1)),
    ("attention-causal", "fusemax", (4, 4), {"M": 256, "P": 256, "E": 4, "F": 4}, Fraction(1, 2)),
    # compute-bound
    ("attention-1pass", "arch", (4, 4), {"M": 512, "P": 16, "E": 2, "F": 2}, Fraction(1)),
    ("attention-1pass", "arch", (2, 2), {"M": 512, "P": 8, "E": 2, "F": 2}, Fraction(1, 2)),
    ("attention-causal", "arch", (4, 4), {"M": 512, "P": 512, "E": 2, "F": 2}, Fraction(1)),
])
def test_the_cost_model_with_the_same_bandwidth_predicts_the_latency_within_2_percent(name, binding, array, sizes, bw):
    """The cost model's roofline (one block of queries resident, DRAM as fast as the memory)
    against the engine's exact timing, away from the compute/memory crossover."""
    d = lower(LIB[name].load(), binding, array, FixedPoint(8, 8), sizes)
    memory = MemoryModel(bw)
    exact = stream_timing(d.program, memory).first_input_to_last_output
    assert abs(model_latency(d, memory) - exact) <= 0.02 * exact


@pytest.mark.parametrize("binding", ["arch", "fusemax"])
@pytest.mark.parametrize("bw", [Fraction(1), Fraction(2, 3), Fraction(1, 7)])
def test_the_unbounded_fifo_closed_form_equals_the_word_by_word_timing(binding, bw):
    """An unbounded FIFO is timed a segment at a time; a FIFO larger than the job, word by word."""
    for name, sizes in (("attention-1pass", {"M": 64, "P": 12}), ("attention-causal", {"M": 32, "P": 32})):
        d = _design(name, binding, **sizes)
        assert stream_timing(d.program, MemoryModel(bw)) == stream_timing(d.program, MemoryModel(bw, 10**9))


@needs_sim
@pytest.mark.parametrize("memory", [MemoryModel(Fraction(1, 2)), MemoryModel(Fraction(3, 4), 5)], ids=lambda m: m.describe())
def test_a_block_mask_streams_only_the_kept_tiles_on_time(memory):
    """Each block's count word, then its queries and kept tiles: first input to last output equals
    the timing model's for that job's tiles."""
    d = _design("attention-seer", "fusemax", M=32, P=16, B0=8)
    raw = stimuli(d, 2, "random")
    job = d.for_job(raw)
    r = run_jobs(d, [("random", 2, raw)], sim=OTHER_SIM, memory=memory)
    _check(r, memory, job)
    assert job.program.block_tiles is not None and sum(job.manifest["tiles_visited"]) < 8 * 4
