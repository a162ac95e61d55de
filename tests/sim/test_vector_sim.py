"""The vector unit under cocotb: element-wise stages bit-exact against the golden model, on the
cost model's cycles; MossFormer's joint attention run stage by stage on three kinds of RTL."""

import numpy as np
import pytest

from einforge.einsum import FixedPoint, evaluate, library, parse_cascade, running_max, subcascade
from einforge.rtl import lower
from einforge.sim import run_stages, simulators, verify
from einforge.sim._mutations import VECTOR_MUTATIONS, mutation_score

needs_icarus = pytest.mark.skipif(not simulators()["icarus"], reason="Icarus Verilog is not installed")
LIB = library()
Q88 = FixedPoint(8, 8)


def _run_and_check(designs, values=None):
    """The stages one after another (:func:`einforge.sim.run_stages`), each bit-exact, on its
    predicted cycles and within an error bound below one; every value given or computed."""
    values, results = run_stages(designs, values, seed=3)
    for d, r in zip(designs, results):
        assert r.passed and r.cycles == r.model_cycles and r.error_bound_vs_float < 1, (d.name, r.details["failed_checks"])
    return values


def _stage(name, outs=None, ins=None):
    c = LIB[name].load()
    return c if outs is None else subcascade(c, outs, ins)


@needs_icarus
@pytest.mark.parametrize("stage,sizes,lanes", [
    (("residual",), {"D": 3, "T": 6}, 4),                      # a last block of two lanes
    (("gelu",), {"D": 2, "T": 5}, 4),                          # tanh from sigmoid's hardware form
    (("silu",), {"D": 3, "T": 4}, 4),
    (("softmax",), {"M": 5, "P": 6}, 4),                       # max, exp, a sum and a division per lane
    (("attention-lolcats", ["FQ"], ["Q"]), {"E": 3, "P": 5}, 2),   # elu(x) + 1 feature map
    (("attention-mossformer", ["Z"], ["FK"]), {"E": 5, "M": 6}, 4),   # a sum in time
    (("attention-cca", ["KC"], ["K"]), {"E": 2, "M": 8, "G": 4}, 4),  # pooling: a gather, a sum, a division
])
def test_element_wise_stages_are_bit_exact_on_the_models_cycles(stage, sizes, lanes):
    d = lower(_stage(*stage), None, (2, lanes), Q88, sizes)
    assert d.manifest["datapath"].startswith("vector lanes")
    r = verify(d)
    assert r.passed and r.bit_exact, r.details["failed_checks"]
    assert r.cycles == r.model_cycles == d.manifest["rtl_cycles"]
    outs = sum(int(np.prod([d.sizes[x] for x in d.cascade.tensors[o].ranks])) for o in d.cascade.outputs)
    jobs = len(r.details["jobs"])
    assert r.present_lanes == outs * jobs                              # every output of every job compared
    assert r.compared_lanes == d.manifest["output_beats"] * lanes * jobs   # and the absent lanes past the end


@needs_icarus
@pytest.mark.parametrize("text", [
    "ranks E=3 M=5\ninput K[e,m]\nBK[m,e] = K[e,m]\nY[m,e] = BK[m,e] * BK[m,e]\noutput BK Y\n",
    "ranks E=3 M=5\ninput K[e,m]\nBK[m,e] = K[e,m]\n",          # copies only: no instruction at all
])
def test_a_copy_streams_its_source(text):
    # an output that is a re-layout of an input takes no instruction: its beats read the input's registers
    d = lower(parse_cascade(text), None, (2, 4), Q88, {})
    r = verify(d)
    assert r.passed and r.bit_exact and r.cycles == r.model_cycles == len(d.top.prog.instrs) * 2


@needs_icarus
def test_every_vector_unit_mutation_is_caught():
    d = lower(LIB["softmax"].load(), None, (2, 4), Q88, {"M": 4, "P": 6})
    r = mutation_score(d, mutations=VECTOR_MUTATIONS, workers=2)
    assert r["clean"] and not r["missed"], r["missed"]
    assert len(r["caught"]) == len(VECTOR_MUTATIONS)
    by = {c["mutation"]: set(c["failed_checks"]) for c in r["caught"]}
    assert "cycles_equal_model" in by["cycle counter counts twice"] and "done" in by["done stuck high"]


@needs_icarus
def test_mossformer_runs_stage_by_stage_and_composes_bit_exactly():
    """MossFormer's joint attention on the hardware it needs: the elu feature maps and the sum of
    the key features on the vector unit, the three tensor products of the linear branch on the
    GEMM array, and the chunked softmax (tiles outside a query block's chunk skipped) with the final
    combination on the attention engine. Each stage runs on what the stages before computed
    (bit-exact, on its predicted cycles, within its error bound); the last one's output is the whole
    cascade's golden model (with the engine's running max) bit for bit."""
    mf = LIB["attention-mossformer"].load()
    q = FixedPoint(12, 8)          # GD sums E x M feature products of ~2: beyond Q8.8's range
    sizes = {"M": 16, "P": 16, "E": 4, "F": 4, "C": 8}
    cuts = [(["FQ"], ["Q"]), (["FK"], ["K"]), (["KV"], ["FK", "V"]), (["Z"], ["FK"]), (["GN"], ["FQ", "KV"]),
            (["GD"], ["FQ", "Z"]), (["AV"], ["Q", "K", "V", "GN", "GD"])]
    stages = [subcascade(mf, outs, ins) for outs, ins in cuts]
    stages[-1] = running_max(stages[-1], "M", tile_size=4)
    designs = [lower(s, "fusemax", (4, 4), q, {k: v for k, v in sizes.items() if k in {r.name for r in s.ranks}})
               for s in stages]
    kinds = [d.manifest["datapath"].split(" (")[0] for d in designs]
    assert kinds == ["vector lanes", "vector lanes", "output-stationary GEMM", "vector lanes",
                     "output-stationary GEMM", "output-stationary GEMM", "attention engine"]
    # the chunk mask leaves each block of 4 queries the 2 tiles of its chunk of 8, not all 4
    assert designs[-1].manifest["tiles_visited"] == [2, 2, 2, 2]
    values = _run_and_check(designs)
    whole = evaluate(running_max(mf, "M", tile_size=4), {k: q.to_float(values[k]) for k in ("Q", "K", "V")},
                     {**sizes, "M0": 4}, q)
    assert np.array_equal(values["AV"], whole["AV"])


@needs_icarus
@pytest.mark.parametrize("binding", ["arch", "fusemax"])
def test_lolcats_runs_its_feature_maps_on_the_lanes_and_both_attentions_in_one_pass(binding):
    """LoLCATs: the elu feature maps on the vector unit; the window's softmax and the linear
    attention outside it on the attention engine, one pass over the key tiles (two filters, the
    window's sums rescaled by the running max, the linear sums not), exp(-max) and the joint
    normalization on the lanes after the loop. Bit-exact per stage and composed."""
    lc = LIB["attention-lolcats"].load()
    sizes = {"M": 16, "P": 16, "E": 4, "F": 4, "W": 4}
    stages = [subcascade(lc, ["FQ"], ["Q"]), subcascade(lc, ["FK"], ["K"]),
              running_max(subcascade(lc, ["AV"], ["Q", "K", "V", "FQ", "FK"]), "M", tile_size=4)]
    designs = [lower(s, binding, (4, 4), Q88, {k: v for k, v in sizes.items() if k in {r.name for r in s.ranks}})
               for s in stages]
    assert [d.program is not None for d in designs] == [False, False, True]
    values = _run_and_check(designs)
    whole = evaluate(running_max(lc, "M", tile_size=4), {k: Q88.to_float(values[k]) for k in ("Q", "K", "V")},
                     {**sizes, "M0": 4}, Q88)
    assert np.array_equal(values["AV"], whole["AV"])


@needs_icarus
def test_core_context_aware_attention_pools_on_the_lanes_and_attends_over_joint_keys():
    """CCA: the pooled core keys and values (a sum of G tokens, divided by G) on the vector unit; the
    host concatenates them with the local keys along the joint rank J (a layout, no arithmetic); the
    engine runs the joint softmax over J with one filter per part of it (core tokens before the
    window, the window's local tokens). Bit-exact per stage, and composed equal to the whole
    cascade's golden model with the engine's running max over J."""
    cca = LIB["attention-cca"].load()
    sizes = {"M": 16, "P": 16, "E": 4, "F": 4, "G": 4, "W": 4}
    pooled = [subcascade(cca, ["KC"], ["K"]), subcascade(cca, ["VC"], ["V"])]
    core = running_max(subcascade(cca, ["AV"], ["Q", "KJ", "VJ"]), "J", tile_size=4)
    pool_designs = [lower(s, None, (4, 4), Q88, {"E": 4, "F": 4, "M": 16, "G": 4}) for s in pooled]
    engine = lower(core, "fusemax", (4, 4), Q88, sizes)
    assert [d.manifest["datapath"].split(" (")[0] for d in pool_designs] == ["vector lanes"] * 2
    values = _run_and_check(pool_designs)
    # the host's concatenation: core tokens first, then the sequence
    values["KJ"] = np.concatenate([values["KC"], values["K"]], axis=1)
    values["VJ"] = np.concatenate([values["VC"], values["V"]], axis=1)
    values = _run_and_check([engine], values)
    got = values["AV"]
    whole = evaluate(running_max(cca, "J", tile_size=4), {k: Q88.to_float(values[k]) for k in ("Q", "K", "V")},
                     {**sizes, "J0": 4}, Q88)
    assert np.array_equal(got, whole["AV"])


@needs_icarus
@pytest.mark.parametrize("heads,lanes", [(3, 2), (4, 4)])
def test_aaren_scans_one_head_per_lane_and_emits_an_output_per_step(heads, lanes):
    """Attention as an RNN: the scan is unrolled into the lanes' program (the iterates are
    registers; the initial ones are preset while a block loads, free as in the cost model), each
    lane scans its own head and every step's output streams out. Bit-exact, on the model's cycles."""
    d = lower(LIB["attention-aaren"].load(), None, (2, lanes), Q88, {"H": heads, "E": 3, "F": 2, "M": 5})
    assert d.manifest["datapath"].startswith("vector lanes") and d.manifest["mapping"]["cols"] == "H"
    assert d.top.prog.presets                          # -inf, 0, 0: the initial iterates
    r = verify(d)
    assert r.passed and r.bit_exact and r.cycles == r.model_cycles, r.details["failed_checks"]
    assert r.present_lanes == 2 * 5 * heads * len(r.details["jobs"])     # F x M outputs per head


def test_stages_in_the_wrong_order_are_refused_before_any_simulation():
    from einforge.sim import SimError

    mf = LIB["attention-mossformer"].load()
    sizes = {"M": 8, "P": 8, "E": 2, "F": 2}
    designs = [lower(subcascade(mf, o, i), None, (2, 2), Q88, sizes) for o, i in
               ((["GN"], ["FQ", "KV"]), (["FQ"], ["Q"]))]
    with pytest.raises(SimError, match="reads FQ, which no input or earlier stage gives"):
        run_stages(designs)
