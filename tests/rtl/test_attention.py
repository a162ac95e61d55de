"""Compiling cascades for the attention engine."""

import pytest

from einforge.einsum import DIVIDER_STEPS, FixedPoint, library, parse_cascade
from einforge.rtl import RTLError, lower, synthesize, write_design

LIB = library()


def test_interleaved_schedule_overlaps_tiles():
    d = lower(LIB["attention-1pass"].load(), "fusemax", (4, 4), FixedPoint(8, 8), {"M": 32, "P": 8, "E": 4, "F": 4})
    prog = d.program
    load2d = 4 + 1 + 7 + 1 + 4          # BQK, LM, SLN (sub + 6-MAC exp), SLD, SLNV
    load1d = 1 + 7 + 1 + 1 + 4 + 4      # RM, PRM, SPD, RD, SPNV, RNV
    # tiles interleave until the busier (1D) array issues every cycle: FuseMax's balance
    assert prog.makespan == max(load2d, load1d) and prog.depth >= 2
    assert sum(1 for a, _ in prog.timeline if a is not None) == load2d
    assert sum(1 for _, b in prog.timeline if b is not None) == load1d
    stages = {ins.stage for pair in prog.timeline for ins in pair if ins is not None}
    assert stages == set(range(prog.depth))
    # per block of queries: the tiles, then F = 4 divisions of DIVIDER_STEPS steps each
    assert d.manifest["rtl_cycles"] == d.manifest["model_cycles"] == \
        2 * ((8 + prog.depth - 1) * prog.makespan + 4 * DIVIDER_STEPS)


def test_schedule_and_manifest():
    d = lower(LIB["attention-1pass"].load(), "arch", (4, 4), FixedPoint(8, 8), {"M": 16, "P": 8, "E": 4, "F": 4})
    prog = d.program
    s = prog.starts
    # the local max leaves the 2D array after 4 rows; the running max follows; the softmax tile
    # waits for it; the 1D lanes consume SLD and SLNV as they arrive
    assert s["LM"] == 4 and s["RM"] == s["LM"] + 4 and s["SLN"] == s["RM"] + 1
    assert s["RD"] >= s["SLD"] + 4 and s["RNV"] >= s["SLNV"] + 4
    m = d.manifest
    assert m["mapping"] == {"rows": "M0", "cols": "P", "tiles": 4, "query_tiles": 2}
    assert m["rtl_cycles"] == 2 * (4 * prog.makespan + 4 * DIVIDER_STEPS) == m["model_cycles"]
    assert m["sizes"]["M0"] == 4                                  # the tile follows the array's rows


def test_more_rows_than_the_tile_is_set_for():
    d = lower(LIB["attention-1pass"].load(), "arch", (2, 2), FixedPoint(8, 8), {"M": 6, "P": 4, "E": 2, "F": 2})
    assert d.sizes["M0"] == 2 and d.sizes["M1"] == 3


def test_partition_that_does_not_divide():
    with pytest.raises(RTLError, match="does not divide"):
        lower(LIB["attention-1pass"].load(), "arch", (4, 4), FixedPoint(8, 8), {"M": 18, "P": 4, "E": 2, "F": 2})


def test_unsupported_constructs_are_named():
    with pytest.raises(RTLError, match="FuseMax placement"):
        lower(LIB["attention-1pass"].load(), "flat", (2, 2), FixedPoint(8, 8), {"M": 4, "P": 2, "E": 2, "F": 2})
    # an operator with neither an instruction nor a hardware form
    text = LIB["attention-1pass"].file.read_text().replace(
        "SLN[m1,m0,p]     = exp(BQK[m1,m0,p] - RM[m1+1,p])", "SLN[m1,m0,p]     = log(BQK[m1,m0,p] - RM[m1+1,p])")
    with pytest.raises(RTLError, match="Einsum SLN uses operator .log."):
        lower(parse_cascade(text), "arch", (2, 2), FixedPoint(8, 8), {"M": 4, "P": 2, "E": 2, "F": 2})


def test_pes_get_a_divider_only_when_the_2d_array_divides():
    sizes = {"M": 4, "P": 2, "E": 2, "F": 2}
    plain = lower(LIB["attention-1pass"].load(), "arch", (2, 2), FixedPoint(8, 8), sizes)
    assert "divstep" not in plain.manifest["units_2d"]
    text = LIB["attention-1pass"].file.read_text().replace(
        "SLN[m1,m0,p]     = exp(BQK[m1,m0,p] - RM[m1+1,p])", "SLN[m1,m0,p]     = BQK[m1,m0,p] / RM[m1+1,p]")
    divided = lower(parse_cascade(text), "arch", (2, 2), FixedPoint(8, 8), sizes)
    assert divided.manifest["units_2d"] == ["mac", "add", "max", "divstep"]
    # sigmoid has no instruction of its own: it is built from max, sub, exp, min, neg, add and div
    sig = lower(LIB["attention-sigmoid-tiled"].load(), "arch", (2, 2), FixedPoint(8, 8), sizes)
    assert "divstep" in sig.manifest["units_2d"]
    ops = [ins.op for ins, _ in sig.program.timeline if ins is not None and ins.einsum == "S"]
    assert ops.count("exp0") == 2 and ops.count("div0") == 1 and ops.count("divl") == 1 and ops.count("min") == 1
    assert ops.count("divs") == DIVIDER_STEPS - 2
    # the cost model sees the same PEs, so its cycle count still matches the program's
    assert sig.manifest["model_cycles"] == sig.manifest["rtl_cycles"]


def test_generate_and_coarse_synthesis(tmp_path):
    d = lower(LIB["attention-1pass"].load(), "arch", (2, 2), FixedPoint(8, 8), {"M": 4, "P": 2, "E": 2, "F": 2})
    files = write_design(d, tmp_path)
    assert files["verilog"].read_text().count("module ") >= 1
    stats = synthesize(files["verilog"], d.name, mode="coarse")
    assert stats["cells"] > 100


@pytest.mark.parametrize("name", ["attention-1pass", "attention-causal", "attention-fa1"])
@pytest.mark.parametrize("array,e", [((4, 4), 4), ((4, 4), 8), ((4, 4), 16), ((8, 8), 16)])
def test_interleaved_tiles_start_at_the_resource_bound(name, array, e):
    # no recurrence of these cascades is longer than a tile's work on the busier array, so the
    # modulo schedule's initiation interval is that array's instruction count per tile
    R, C = array
    d = lower(LIB[name].load(), "fusemax", array, FixedPoint(8, 8), {"M": 4 * R, "P": C, "E": e, "F": e})
    tl = d.program.timeline
    bound = max(sum(a is not None for a, _ in tl), sum(b is not None for _, b in tl))
    assert d.program.makespan == bound


@pytest.mark.parametrize("binding", ["arch", "fusemax"])
def test_batch_and_heads_run_one_instance_at_a_time(binding):
    # GQA's B x G x R instances each run the 1-pass tile loop: the registers hold one instance, so
    # the program is the single-head one and the cycles are the instance count times its cycles
    sizes = {"M": 16, "P": 8, "E": 4, "F": 4}
    one = lower(LIB["attention-1pass"].load(), binding, (4, 4), FixedPoint(8, 8), sizes)
    gqa = lower(LIB["attention-gqa"].load(), binding, (4, 4), FixedPoint(8, 8), {**sizes, "B": 2, "G": 2, "R": 3})
    assert gqa.manifest["instances"] == {"b": 2, "g": 2, "r": 3}
    assert (gqa.program.pe_regs, gqa.program.lane_regs) == (one.program.pe_regs, one.program.lane_regs)
    assert gqa.manifest["rtl_cycles"] == 12 * one.manifest["rtl_cycles"]
    assert gqa.manifest["model_cycles"] == gqa.manifest["rtl_cycles"]


def test_a_tile_that_does_not_span_the_rows_is_refused():
    # --size M0=8 on a 4x4 array once became M0=4 silently
    with pytest.raises(RTLError, match=r"the tile M0=8 must span the array's 4 rows"):
        lower(LIB["attention-1pass"].load(), "fusemax", (4, 4), FixedPoint(8, 8),
              {"M": 16, "P": 8, "E": 4, "F": 4, "M0": 8})


@pytest.mark.parametrize("label", ["RM", "PRM", "RD", "SPD"])
def test_per_query_einsums_on_the_grid_are_refused(label):
    # the grid hands the lanes only what it reduces over the tile: an Einsum per query there would
    # compute values no lane can read (the engine once accepted it and produced wrong numbers)
    import dataclasses

    from einforge.arch import load_binding

    c = LIB["attention-1pass"].load()
    b = dataclasses.replace(load_binding("fusemax", c), explicit=((label, "2d"),))
    with pytest.raises(RTLError, match=f"Einsum {label} is bound to the grid but does not range over the tile"):
        lower(c, b, (4, 4), FixedPoint(8, 8), {"M": 16, "P": 8, "E": 4, "F": 4})


@pytest.mark.parametrize("name", ["attention-1pass", "attention-fa1", "attention-causal", "attention-sigmoid-tiled",
                                  "attention-alibi", "attention-gqa"])
@pytest.mark.parametrize("binding", ["fusemax", "arch"])
def test_the_cost_model_sees_the_registers_the_compiler_allocated(name, binding):
    """One rule for what a PE holds: the cost model's view of the engine has the program's register
    counts, and its register check accepts every program (a value reduced across the rows, such as
    a tile's local max, lands at the column's end and is not counted per PE; FlashAttention-1's
    interleaved tiles were refused with 6 values for 5 registers when it was)."""
    from einforge.arch import evaluate
    from einforge.rtl._arch import rtl_architecture, rtl_binding, rtl_workload

    d = lower(LIB[name].load(), binding, (4, 4), FixedPoint(8, 8), {"M": 16, "P": 8, "E": 4, "F": 4})
    arch = rtl_architecture(d)
    assert arch.array("2d").rf_depth == d.program.pe_regs and arch.array("1d").rf_depth == d.program.lane_regs
    r = evaluate(arch, d.cascade, rtl_binding(d), rtl_workload(d))
    assert r.details["compute_cycles"] == d.manifest["model_cycles"] == d.manifest["rtl_cycles"]


SEER = LIB["attention-seer"].load().text()


@pytest.mark.parametrize("text,sizes,message", [
    (SEER, {"B0": 2}, "multiple of its 4 columns"),                          # a block would keep part of a tile
    (SEER.replace("BQK[m1,m0,p: ", "BQK[m1,m0: m1*M0+m0 <= p,p: "), {"B0": 4}, "cannot be combined"),  # + causal
    (SEER.replace("BM[m1,p//B0]!=0", "BM[m1,p]!=0").replace("BM[m1,b]", "BM[m1,p]"), {"B0": 4},
     "reads BM at p"),                                                       # a mask per query, finer than blocks
])
def test_a_block_mask_the_engine_cannot_follow_is_refused(text, sizes, message):
    with pytest.raises(RTLError, match=message):
        lower(parse_cascade(text), "fusemax", (4, 4), FixedPoint(8, 8), {"M": 32, "P": 16, "E": 4, "F": 4, **sizes})


def test_a_block_that_keeps_no_tile_is_refused_with_its_name():
    import numpy as np

    d = lower(LIB["attention-seer"].load(), "fusemax", (4, 4), FixedPoint(8, 8),
              {"M": 32, "P": 16, "E": 4, "F": 4, "B0": 4})
    raw = {t.name: np.zeros([d.sizes[r] for r in t.ranks], np.int64) for t in d.cascade.inputs}
    raw["BM"][:, :2] = 256                      # blocks 0 and 1 keep every tile, blocks 2 and 3 none
    with pytest.raises(RTLError, match="block 2 of queries .* keeps no tile"):
        d.for_job(raw)
