"""cocotb testbench for einforge's stream designs (GEMM and attention arrays).

The stimulus (a JSON file named by EINFORGE_STIMULUS) holds the input words, the expected output
beats (from the fixed-point golden model; ``null`` lanes are not compared), the lane width and a
seed for random valid/ready gaps. The testbench streams the words in, collects the output beats,
compares them bit for bit, counts cycles, and writes a JSON report to EINFORGE_RESULT.
"""

import json
import os
import random

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ReadOnly, RisingEdge


def _signed(v: int, bits: int) -> int:
    return v - (1 << bits) if v & (1 << (bits - 1)) else v


@cocotb.test()
async def stream_matches_golden(dut):
    with open(os.environ["EINFORGE_STIMULUS"]) as f:
        stim = json.load(f)
    width = stim["width"]
    lanes = stim["lanes"]
    rnd = random.Random(stim.get("seed", 0))
    gap_in = stim.get("input_gaps", 0.0)
    gap_out = stim.get("output_gaps", 0.0)
    words = stim["inputs"]
    expected = stim["expected"]
    limit = stim.get("timeout_cycles", 10_000_000)

    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    dut.rst.value = 1
    dut.in_valid.value = 0
    dut.in_data.value = 0
    dut.out_ready.value = 0
    for _ in range(3):
        await RisingEdge(dut.clk)
    dut.rst.value = 0

    beats = []
    state = {"cycle": 0, "first_in": None, "last_out": None, "in_done": len(words) == 0}

    async def drive():
        i = 0
        while i < len(words):
            if gap_in and rnd.random() < gap_in:
                dut.in_valid.value = 0
            else:
                dut.in_valid.value = 1
                dut.in_data.value = words[i]
            await ReadOnly()
            accepted = bool(dut.in_valid.value) and bool(dut.in_ready.value)
            await RisingEdge(dut.clk)
            if accepted:
                if state["first_in"] is None:
                    state["first_in"] = state["cycle"]
                i += 1
        dut.in_valid.value = 0
        state["in_done"] = True

    cocotb.start_soon(drive())
    mask = (1 << width) - 1
    while len(beats) < len(expected) and state["cycle"] < limit:
        ready = not (gap_out and rnd.random() < gap_out)
        dut.out_ready.value = int(ready)
        await ReadOnly()
        if ready and bool(dut.out_valid.value):
            val = dut.out_data.value
            if not val.is_resolvable:
                raise AssertionError(f"output beat {len(beats)} at cycle {state['cycle']} has X/Z bits: {val}")
            raw = int(val)
            beats.append([_signed((raw >> (width * j)) & mask, width) for j in range(lanes)])
            state["last_out"] = state["cycle"]
        await RisingEdge(dut.clk)
        state["cycle"] += 1
    dut.out_ready.value = 0
    for _ in range(4):
        if bool(dut.done.value):
            break
        await RisingEdge(dut.clk)
    mismatches = []
    for b, (got, want) in enumerate(zip(beats, expected)):
        for j, w in enumerate(want):
            if w is not None and got[j] != w:
                mismatches.append([b, j, got[j], w])
    report = {
        "beats": beats,
        "received": len(beats),
        "expected_beats": len(expected),
        "mismatches": mismatches[:50],
        "mismatch_count": len(mismatches),
        "cycles": int(dut.cycles.value),
        "busy_2d": int(dut.busy_2d.value) if hasattr(dut, "busy_2d") else None,
        "first_input_to_last_output": None if state["first_in"] is None or state["last_out"] is None
        else state["last_out"] - state["first_in"] + 1,
        "done": bool(dut.done.value),
        "timed_out": state["cycle"] >= limit,
    }
    with open(os.environ["EINFORGE_RESULT"], "w") as f:
        json.dump(report, f)
    assert not report["timed_out"], f"timed out after {limit} cycles with {len(beats)} of {len(expected)} beats"
    assert len(beats) == len(expected), f"received {len(beats)} beats, expected {len(expected)}"
    assert not mismatches, f"{len(mismatches)} lanes differ from the golden model, first: {mismatches[:5]}"
