"""cocotb testbench for einforge's stream designs (GEMM and attention arrays).

The stimulus (a JSON file named by EINFORGE_STIMULUS) holds jobs, each with its input words and
expected output beats (per lane ``[value, present]`` from the fixed-point golden model) and a seed
for random valid/ready gaps; jobs run one after another: the first from reset, each later one started
in band by offering its first word while the design is done (no reset; ``"restart": "reset"`` in the
stimulus resets before every job instead). The words come from the memory model in the simulation
harness around the design (HDL: the testbench loads them and starts it, then wakes per output beat),
or, with random input gaps, from the testbench's own model of the same memory; it collects the output
beats and their presence bits, and compares every lane of every beat, present or absent. After the last
expected beat it keeps watching: a further beat is an error, and ``done`` must rise and stay up.
It writes what it saw to EINFORGE_RESULT; the Python side decides the verdict.
"""

import json
import os
import random
import time

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, First, ReadOnly, RisingEdge, Timer
from cocotb.utils import get_sim_time

WATCH = 64      # cycles to watch for extra beats and for done after the last expected beat
PERIOD = 10     # ns


def _signed(v: int, bits: int) -> int:
    return v - (1 << bits) if v & (1 << (bits - 1)) else v


@cocotb.test()
async def stream_matches_golden(dut):
    with open(os.environ["EINFORGE_STIMULUS"]) as f:
        stim = json.load(f)
    cocotb.start_soon(Clock(dut.clk, PERIOD, unit="ns").start())
    reports = []
    for k, job in enumerate(stim["jobs"]):
        reports.append(await _run_job(dut, stim, job, reset=k == 0 or stim.get("restart") == "reset"))
    with open(os.environ["EINFORGE_RESULT"], "w") as f:
        json.dump({"jobs": reports}, f)


async def _load(dut, stim, words):
    """Write the job's input words into the harness's memory, ``load_words`` a cycle, and set its
    memory model: bandwidth n/d words a cycle, a FIFO of ``fifo`` words (0: unbounded)."""
    width, per = stim["width"], stim["load_words"]
    mask = (1 << width) - 1
    dut.load_en.value = 1
    for base in range(0, len(words), per):
        packed = 0
        for j, w in enumerate(words[base:base + per]):
            packed |= (w & mask) << (j * width)
        dut.load_addr.value = base // per
        dut.load_data.value = packed
        await RisingEdge(dut.clk)
    dut.load_en.value = 0
    n, d = stim.get("bandwidth", [1, 1])
    dut.n_words.value = len(words)
    dut.bw_n.value, dut.bw_d.value = n, d
    dut.fifo_depth.value = stim.get("fifo") or 0


async def _run_job(dut, stim, job, reset=True):
    """One job (from reset, or started in band after the last one's done): stream its inputs,
    collect and compare its outputs, watch the protocol."""
    width = stim["width"]
    lanes = stim["lanes"]
    rnd = random.Random(job.get("seed", 0))
    gap_in = stim.get("input_gaps", 0.0)
    gap_out = stim.get("output_gaps", 0.0)
    words = job["inputs"]
    expected = job["expected"]
    limit = stim.get("timeout_cycles", 10_000_000)
    # the harness's memory model offers the words (one Python step per output beat, not per word),
    # unless random input gaps need the testbench's hand on in_valid
    in_hdl = hasattr(dut, "direct") and not gap_in and stim.get("memory_in_hdl", False)
    if reset:
        dut.rst.value = 1
        dut.in_valid.value = 0
        dut.in_data.value = 0
        dut.out_ready.value = 0
        if hasattr(dut, "direct"):
            dut.go.value = dut.halt.value = dut.load_en.value = 0
        for _ in range(3):
            await RisingEdge(dut.clk)
        dut.rst.value = 0
    else:
        dut.out_ready.value = 0
    if hasattr(dut, "direct"):
        dut.direct.value = int(not in_hdl)
    if in_hdl:
        await _load(dut, stim, words)

    clock_start = time.perf_counter()
    beats, presence, lasts = [], [], []
    has_last = hasattr(dut, "out_last")
    state = {"cycle": 0, "first_in": None, "last_out": None, "done_early": False, "stop": False}
    start_ns = get_sim_time("ns")

    def now() -> int:
        return round((get_sim_time("ns") - start_ns) / PERIOD)

    # the memory: `bandwidth` = n/d words a cycle into a FIFO of `fifo` words (None: unbounded); it
    # fetches word w once the FIFO has room and the bandwidth allows (in 1/n cycles, from the cycle
    # the engine takes the first word); the engine can take a word from the cycle after its fetch
    n, d = stim.get("bandwidth", [1, 1])
    fifo = stim.get("fifo")

    async def drive():
        i, valid, taken, fetch_units, avail, t0 = 0, None, [], 0, 0, None
        while i < len(words) and not state["stop"]:
            cycle = now()
            if i and not gap_in and cycle - t0 < avail:
                # the memory has no word for the engine before cycle t0 + avail: sleep until then
                if valid:
                    dut.in_valid.value = valid = 0
                await ClockCycles(dut.clk, t0 + avail - cycle)
                continue
            offer = not (gap_in and rnd.random() < gap_in) and (i == 0 or cycle - t0 >= avail)
            if offer != valid:                 # (writes cost time: only when something changes)
                dut.in_valid.value = valid = int(offer)
            if offer:
                dut.in_data.value = words[i]
            await ReadOnly()
            ready = bool(dut.in_ready.value)
            if offer and not ready and not gap_in:
                # the engine takes nothing until in_ready rises (a slot frees, or a restart): sleep
                # until then; it rises just after a clock edge, where the loop goes on
                await First(RisingEdge(dut.in_ready), Timer(max(1, limit - cycle) * PERIOD, unit="ns"))
                continue
            if offer and ready:
                if t0 is None:
                    t0 = state["first_in"] = cycle
                taken.append(cycle - t0)
                i += 1
                fetch_units += d
                if fifo is not None and i >= fifo:
                    fetch_units = max(fetch_units, (taken[i - fifo] + 1) * n)
                avail = -(-fetch_units // n)
            await RisingEdge(dut.clk)
        dut.in_valid.value = 0

    async def start_memory():
        dut.go.value = 1
        await RisingEdge(dut.clk)
        dut.go.value = 0

    driver = cocotb.start_soon(start_memory() if in_hdl else drive())
    mask = (1 << width) - 1

    def take():
        val = dut.out_data.value
        pres = dut.out_present.value
        if not val.is_resolvable or not pres.is_resolvable:
            raise AssertionError(f"output beat {len(beats)} at cycle {state['cycle']} has X/Z bits: {val} {pres}")
        raw, praw = int(val), int(pres)
        beats.append([_signed((raw >> (width * j)) & mask, width) for j in range(lanes)])
        if has_last:
            lasts.append(int(dut.out_last.value))
        presence.append([(praw >> j) & 1 for j in range(lanes)])
        state["last_out"] = now()

    dut.out_ready.value = int(not gap_out)
    while len(beats) < len(expected) and state["cycle"] < limit:
        ready = True
        if gap_out:
            ready = rnd.random() >= gap_out
            dut.out_ready.value = int(ready)
        await ReadOnly()
        done_now = bool(dut.done.value)
        begun = state["first_in"] is not None or (in_hdl and bool(dut.started.value))
        if done_now and begun:                            # (the last job's done holds until restart)
            state["done_early"] = True
        valid = bool(dut.out_valid.value)
        if ready and valid:
            take()
        if not valid and not done_now and not gap_out and driver.done():
            # nothing happens here until a beat is offered or done rises: sleep until then (or the
            # time limit) instead of waking every cycle; both change just after a clock edge, where
            # the loop goes on
            await First(RisingEdge(dut.out_valid), RisingEdge(dut.done),
                        Timer(max(1, limit - state["cycle"]) * PERIOD, unit="ns"))
            state["cycle"] = round((get_sim_time("ns") - start_ns) / PERIOD)
            continue
        await RisingEdge(dut.clk)
        state["cycle"] += 1
    # keep accepting: a beat beyond the expected ones is an error; done must rise and stay up
    extra, done_seen, done_dropped = 0, False, False
    dut.out_ready.value = 1
    for _ in range(WATCH):
        await ReadOnly()
        if bool(dut.out_valid.value):
            extra += 1
            take()
        d = bool(dut.done.value)
        done_dropped |= done_seen and not d
        done_seen |= d
        await RisingEdge(dut.clk)
    state["stop"] = True
    await driver
    if in_hdl:
        if int(dut.started.value):
            state["first_in"] = int(dut.first_at.value)
        dut.halt.value = 1
        await RisingEdge(dut.clk)
        dut.halt.value = 0
    mismatches, compared, present = [], 0, 0
    for b, (got, got_p, want) in enumerate(zip(beats, presence, expected)):
        for j, (wv, wp) in enumerate(want):
            compared += 1
            present += wp
            if got[j] != wv or got_p[j] != wp:
                mismatches.append([b, j, got[j], wv, got_p[j], wp])
    return {
        "beats": beats[:len(expected)],
        "lasts": lasts if has_last else None,
        "received": len(beats) - extra,
        "extra_beats": extra,
        "expected_beats": len(expected),
        "compared_lanes": compared,
        "present_lanes": present,
        "mismatches": mismatches[:50],
        "mismatch_count": len(mismatches),
        "cycles": int(dut.cycles.value),
        "busy_2d": int(dut.busy_2d.value) if hasattr(dut, "busy_2d") else None,
        "first_input_to_last_output": None if state["first_in"] is None or state["last_out"] is None
        else state["last_out"] - state["first_in"] + 1,
        "done": done_seen and not done_dropped and not state["done_early"],
        "timed_out": state["cycle"] >= limit,
        "simulated_cycles": state["cycle"] + WATCH,
        "memory_model": "harness" if in_hdl else "testbench",
        "simulation_seconds": time.perf_counter() - clock_start,
    }
