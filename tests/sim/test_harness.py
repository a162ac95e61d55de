"""The simulation harness: its HDL memory model times every word as the testbench's Python one does."""

from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from einforge.einsum import FixedPoint, library, parse_cascade
from einforge.rtl import MemoryModel, export_verilog, lower, stream_timing
from einforge.sim import run_jobs, simulators, stimuli
from einforge.sim._harness import FIFO_SLOTS, design_ports, harness_verilog

LIB = library()
SIM = "verilator" if simulators()["verilator"] else "icarus"
needs_sim = pytest.mark.skipif(not any(simulators().values()), reason="no simulator installed")


def _design():
    return lower(LIB["attention-1pass"].load(), "fusemax", (2, 2), FixedPoint(8, 8), {"M": 16, "P": 6, "E": 2, "F": 2})


def test_the_harness_passes_every_port_of_the_design_through():
    d = _design()
    text = export_verilog(d)
    ports = design_ports(text, d.name)
    assert ports["in_data"] == ("input", 16) and ports["out_data"][0] == "output"
    harness = harness_verilog(text, d.name, 100)
    for name, (direction, width) in ports.items():
        if name not in ("in_valid", "in_data", "clk", "rst"):
            assert f".{name}({name})" in harness
            assert f"{direction} {'' if width == 1 else f'[{width - 1}:0] '}{name};" in harness


@needs_sim
@pytest.mark.parametrize("memory", [MemoryModel(), MemoryModel(Fraction(3, 10)), MemoryModel(Fraction(7, 8), 3),
                                    MemoryModel(Fraction(1), 1), MemoryModel(Fraction(1, 2), 2)],
                         ids=lambda m: m.describe())
def test_the_hdl_memory_times_words_as_the_testbench_does(memory):
    """Two jobs back to back (the second in band), the memory in the harness and in the testbench:
    the same cycles and first-input-to-last-output, both equal to the timing model's."""
    d = _design()
    jobs = [("random", 0, stimuli(d, 0, "random")), ("lsb", 1, stimuli(d, 1, "lsb"))]
    hdl = run_jobs(d, jobs, sim=SIM, memory=memory)
    python = run_jobs(d, jobs, sim=SIM, memory=memory, memory_in_hdl=False)
    want = stream_timing(d.program, memory).first_input_to_last_output
    assert hdl.passed and python.passed
    assert hdl.details["memory_model"] == "harness" and python.details["memory_model"] == "testbench"
    assert hdl.details["first_input_to_last_output"] == python.details["first_input_to_last_output"] == want
    assert [j["cycles"] for j in hdl.details["jobs"]] == [j["cycles"] for j in python.details["jobs"]]


@needs_sim
def test_a_fifo_beyond_the_harness_runs_in_the_testbench():
    d = _design()
    memory = MemoryModel(Fraction(1, 2), FIFO_SLOTS + 1)
    r = run_jobs(d, [("random", 0, stimuli(d, 0, "random"))], sim=SIM, memory=memory)
    assert r.passed and r.details["memory_model"] == "testbench"


@needs_sim
def test_the_gemm_array_streams_from_the_harness_too():
    d = lower(parse_cascade("ranks K=70 M=5 N=6\ninput A[k,m] B[k,n]\nZ[m,n] = A[k,m] * B[k,n]\n"), array=(4, 4))
    r = run_jobs(d, [("random", 0, stimuli(d, 0, "random"))], sim=SIM)      # 70*11 words: 25 loads of 32
    assert r.passed and r.details["memory_model"] == "harness"


@needs_sim
@settings(max_examples=8, deadline=None, derandomize=True)
@given(num=st.integers(1, 7), den=st.integers(1, 7), fifo=st.one_of(st.none(), st.integers(1, 12)))
def test_any_memory_is_timed_by_the_harness_as_the_timing_model_says(num, den, fifo):
    """Bandwidths n/d (at most a word a cycle) and FIFOs of any depth: the harness's first input to
    last output is the timing model's, job after job."""
    memory = MemoryModel(Fraction(min(num, den), den), fifo)
    d = _design()
    r = run_jobs(d, [("random", 0, stimuli(d, 0, "random")), ("ones", 0, stimuli(d, 0, "ones"))], sim=SIM,
                 memory=memory)
    assert r.passed and r.details["memory_model"] == "harness", r.details["failed_checks"]
    assert r.details["first_input_to_last_output"] == stream_timing(d.program, memory).first_input_to_last_output
