"""Decoder layers of today's LLMs: models, layers as compositions of cascades, prefill, decode and
generation on one chip; attention split over chips, checked against the published forms."""

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from einforge.arch import (
    ArchError,
    Interconnect,
    all_gather,
    all_reduce,
    all_to_all,
    evaluate,
    evaluate_layer,
    generate,
    layer_ops,
    load_architecture,
    load_binding,
    load_model,
    megatron_sp,
    models,
    ring_attention,
    tensor_parallel,
    ulysses,
    usp,
)
from einforge.einsum import analyze, load_cascade

FUSEMAX = load_architecture("fusemax")


def test_the_built_in_models_load_with_their_sources():
    names = set(models())
    assert {"Llama-3-8B", "Llama-3-70B", "Mistral-7B", "GPT-3-175B", "DeepSeek-V2-Lite"} <= names
    for n in names:
        m = load_model(n)
        assert m.source and m.heads % m.kv_heads == 0
    # parameter counts near the published sizes (projections and FFN of every layer)
    assert 6.5e9 < load_model("Llama-3-8B").layers * load_model("Llama-3-8B").weights_per_layer < 7.5e9
    assert 170e9 < load_model("GPT-3-175B").layers * load_model("GPT-3-175B").weights_per_layer < 176e9


def test_a_bad_model_file_names_the_line(tmp_path):
    f = tmp_path / "m.yaml"
    f.write_text("name: x\nlayers: 2\nhidden: 64\nheads: 4\nkv_heads: 3\nhead_dim: 16\nffn: swiglu\nffn_dim: 128\n"
                 "norm: rmsnorm\nsource: me\n")
    with pytest.raises(ArchError, match="4 heads cannot share 3"):
        load_model(f)
    f.write_text("name: x\nlayer: 2\n")
    with pytest.raises(ArchError, match=r"m.yaml:2:1: unknown key 'layer' \(did you mean 'layers'\?\)"):
        load_model(f)


def test_a_layer_is_its_operators_in_order():
    names = [o.name for o in layer_ops(load_model("Llama-3-8B"), "prefill", 1, 128)]
    assert names == ["norm_attention", "qkv_projection", "rope", "attention", "output_projection",
                     "residual_attention", "norm_ffn", "ffn", "residual_ffn"]
    gpt = [o.name for o in layer_ops(load_model("GPT-3-175B"), "decode", 1, 1, kv=64)]
    assert "gelu" in gpt and "ffn_up" in gpt
    mla = layer_ops(load_model("DeepSeek-V2-Lite"), "decode", 1, 1, kv=64)
    assert next(o for o in mla if o.name == "attention").cascade == "attention-mla-decode"


def _attention_bytes(b, h, g, q, k, d, bytes_per_value=2):
    return (b * h * q * d + 2 * b * g * k * d + b * h * q * d) * bytes_per_value


@pytest.mark.parametrize("name", ["Llama-3-8B", "GPT-3-175B"])
def test_kv_bytes_use_the_kv_heads_and_the_one_pass_mapping_meets_its_bound(name):
    m = load_model(name)
    dec = evaluate_layer(FUSEMAX, m, "decode", 4, 1, kv=1024)
    # a decode step reads each K/V head once however many query heads share it
    assert dec.op("attention")[5] == pytest.approx(_attention_bytes(4, m.heads, m.kv_heads, 1, 1024, m.head_dim))
    pre = evaluate_layer(FUSEMAX, m, "prefill", 1, 512)
    bound = _attention_bytes(1, m.heads, m.kv_heads, 512, 512, m.head_dim)
    assert pre.op("attention")[5] >= bound * (1 - 1e-12)
    c = load_cascade("attention-gqa-causal")
    assert analyze(c).passes["M"] == 1             # so its bound is reading everything once


def test_fused_attention_is_never_below_the_pass_bound():
    m = load_model("Llama-3-8B")
    for seq in (256, 2048, 16384):
        r = evaluate_layer(FUSEMAX, m, "prefill", 8, seq).op("attention")
        assert r[5] >= _attention_bytes(8, m.heads, m.kv_heads, seq, seq, m.head_dim) * (1 - 1e-12)


def test_generation_reports_and_refuses_what_does_not_fit():
    m = load_model("Llama-3-8B")
    g = generate(FUSEMAX, m, batch=2, prompt=256, new_tokens=16)
    assert g.ttft_s == pytest.approx(m.layers * g.prefill.latency_s)
    assert g.tpot_s == pytest.approx(m.layers * (g.decode_first.latency_s + g.decode_last.latency_s) / 2)
    assert g.tokens_per_s == pytest.approx(2 / g.tpot_s)
    assert g.kv_bytes == m.layers * 2 * 272 * 2 * m.kv_heads * m.head_dim * 2
    with pytest.raises(ArchError, match="do not fit 8.0 GiB"):
        generate(FUSEMAX, m, batch=2, prompt=256, new_tokens=16, memory_bytes=8 * 2**30)
    # a sliding window keeps the cache at the window
    mistral = load_model("Mistral-7B")
    assert mistral.kv_bytes(1, 100_000) == mistral.kv_bytes(1, 4096)


def test_each_operator_is_the_cost_model_of_its_cascade():
    m = load_model("Llama-3-8B")
    rep = evaluate_layer(FUSEMAX, m, "prefill", 1, 256)
    op = next(o for o in layer_ops(m, "prefill", 1, 256) if o.name == "qkv_projection")
    c = load_cascade("gemm")
    direct = evaluate(FUSEMAX, c, load_binding(rep.op("qkv_projection")[2], c), op.workload)
    assert rep.op("qkv_projection")[3] == direct.latency_s
    assert rep.latency_s == pytest.approx(sum(o[3] for o in rep.ops))



def test_a_layer_prices_alike_operators_once_and_each_as_the_mapper_alone_does():
    # the two norms and the two residual adds are one shape each: priced once, yet every row must be
    # what the mapper's own report of that operator says
    from einforge.arch import search

    m = load_model("Llama-3-8B")
    rep = evaluate_layer(FUSEMAX, m, "decode", 2, 1, kv=512)
    for op in layer_ops(m, "decode", 2, 1, 512):
        found = search(FUSEMAX, load_cascade(op.cascade), op.workload).report
        row = rep.op(op.name)
        assert (row[3], row[4], row[5]) == (found.latency_s, found.energy_pJ, found.traffic_bytes), op.name

@settings(max_examples=200, deadline=None)
@given(start=st.integers(1, 500), lengths=st.lists(st.integers(1, 300), min_size=1, max_size=3),
       slopes=st.lists(st.integers(-5, 5), min_size=3, max_size=3), base=st.integers(0, 1000))
def test_decode_steps_sum_a_piecewise_linear_cost_exactly(start, lengths, slopes, base):
    # a cost linear between consecutive evaluated cache lengths: the sum over every step equals the
    # sum of the cost at each cache length
    from einforge.arch._llm import _steps_sum

    ends = [start]
    for n in lengths:
        ends.append(ends[-1] + n)

    def cost(k):
        v = base
        for (a, b), s in zip(zip(ends, ends[1:]), slopes):
            v += s * (min(k, b) - a) if k > a else 0
        return v

    assert _steps_sum(ends, [cost(k) for k in ends]) == sum(cost(k) for k in range(ends[0], ends[-1] + 1))
    assert _steps_sum([start, start], [7.0, 7.0]) == 7.0


def test_a_generation_past_the_sliding_window_is_priced_at_the_window_too():
    # Mistral's attention stops growing once the cache holds its window: a line from the first to
    # the last step would overstate the steps before the window is full
    m = load_model("Mistral-7B")
    prompt, tokens = m.window - 1000, 3000
    g = generate(FUSEMAX, m, 4, prompt, tokens)
    at = {k: evaluate_layer(FUSEMAX, m, "decode", 4, 1, kv=k) for k in (prompt + 1, m.window, prompt + tokens)}
    assert at[m.window].op("attention")[3] == at[prompt + tokens].op("attention")[3]     # the window
    first, full = at[prompt + 1].latency_s, at[m.window].latency_s
    steps_before = m.window - prompt                                                  # prompt+1 .. window
    expect = m.layers * (steps_before * (first + full) / 2 + (tokens - steps_before) * full)
    assert g.tpot_s * tokens == pytest.approx(expect, rel=1e-12)
    assert g.tpot_s * tokens > m.layers * tokens * (first + full) / 2                 # the chord's underestimate


@pytest.mark.parametrize("phase,tokens,kv", [("prefill", 256, None), ("decode", 1, 512)])
def test_rope_makes_each_angle_once_a_position_for_every_head_of_every_sequence(phase, tokens, kv):
    # the angles and their cosines and sines depend on (pair, position) alone: doubling the vectors
    # rotated at each position doubles the rotations, not the trigonometry
    from dataclasses import replace

    m = load_model("Llama-3-8B")
    op = next(o for o in layer_ops(m, phase, 2, tokens, kv) if o.name == "rope")
    sizes = dict(op.workload.sizes)
    assert sizes == {"I": m.head_dim // 2, "P": tokens if phase == "prefill" else 1,
                     "H": 2 * (m.heads + m.kv_heads)}
    c = load_cascade("rope")
    b = load_binding("unfused", c)
    one = evaluate(FUSEMAX, c, b, op.workload)
    two = evaluate(FUSEMAX, c, b, replace(op.workload, sizes=tuple({**sizes, "H": 2 * sizes["H"]}.items())))
    for label in ("ANG", "C", "S"):
        assert two.per_einsum[label].actions == one.per_einsum[label].actions, label
        assert two.per_einsum[label].cycles == one.per_einsum[label].cycles, label
    for label in ("YE", "YO"):
        assert two.per_einsum[label].actions == {u: 2 * n for u, n in one.per_einsum[label].actions.items()}, label


def test_a_layer_priced_again_with_its_bindings_is_each_operator_with_that_binding():
    # the mapping of one shape carried to another: every row is the cost model of its cascade with
    # the carried binding at the new shape, whatever the mapper would pick there
    m = load_model("Llama-3-8B")
    first = evaluate_layer(FUSEMAX, m, "prefill", 1, 256)
    assert set(first.bindings) == {op.name for op in layer_ops(m, "prefill", 1, 256)}
    again = evaluate_layer(FUSEMAX, m, "prefill", 1, 512, bindings=first.bindings)
    for op in layer_ops(m, "prefill", 1, 512):
        c = load_cascade(op.cascade)
        direct = evaluate(FUSEMAX, c, first.bindings[op.name], op.workload)
        row = again.op(op.name)
        assert row[2] == first.bindings[op.name].name == again.bindings[op.name].name
        assert (row[3], row[4], row[5]) == (direct.latency_s, direct.energy_pJ, direct.traffic_bytes), op.name


def test_a_binding_given_for_one_operator_changes_only_that_row():
    m = load_model("Llama-3-8B")
    mapped = evaluate_layer(FUSEMAX, m, "decode", 2, 1, kv=512)
    unfused = load_binding("unfused", load_cascade("attention-decode"))
    mine = evaluate_layer(FUSEMAX, m, "decode", 2, 1, kv=512, bindings={"attention": unfused})
    assert mine.op("attention")[2] == "unfused" != mapped.op("attention")[2]
    assert mine.op("attention")[3] >= mapped.op("attention")[3]       # the mapper picks the fastest
    assert [r for r in mine.ops if r[0] != "attention"] == [r for r in mapped.ops if r[0] != "attention"]


def test_bindings_for_an_operator_the_layer_lacks_are_refused():
    m = load_model("Llama-3-8B")
    b = load_binding("unfused", load_cascade("gemm"))
    with pytest.raises(ArchError, match=r"ffn_up.*no such operator.*ffn"):
        evaluate_layer(FUSEMAX, m, "decode", 1, 1, kv=64, bindings={"ffn_up": b})


# ------------------------------------------------------------------------------------------------
# many chips: the published forms
# ------------------------------------------------------------------------------------------------

def test_collectives_follow_the_alpha_beta_forms():
    net = Interconnect(8, 100e9, 2e-6)
    m = 64 << 20
    assert all_reduce(net, m) == pytest.approx(2 * 7 * (2e-6 + m / (8 * 100e9)))
    assert all_gather(net, m) == pytest.approx(7 * (2e-6 + m / (8 * 100e9)))
    sw = Interconnect(8, 100e9, 2e-6, "switch")
    assert all_to_all(sw, m) == pytest.approx(7 * 2e-6 + 7 / 8 * m / 100e9)
    with pytest.raises(ArchError, match="all-to-all is modelled on a switch"):
        all_to_all(net, m)
    torus = Interconnect(8, 100e9, 2e-6, "torus", rows=2)
    assert all_reduce(torus, m) == pytest.approx(2 * 3 * (2e-6 + m / (4 * 100e9)) + 2 * 1 * (2e-6 + m / 4 / (2 * 100e9)))


def test_ulysses_bytes_are_the_published_volume_and_constant_as_s_and_p_grow():
    def sent(p, s, h=32, g=8, d=128, b=2, batch=1):
        net = Interconnect(p, 100e9, 0.0, "switch")
        return ulysses(net, batch, s, h, g, d, b, lambda q, k, hh, gg: 0.0).bytes_sent

    for p in (2, 4, 8):
        assert sent(p, 8192) == pytest.approx((p - 1) / p * 1 * (8192 / p) * 128 * 2 * (2 * 32 + 2 * 8))
    # S/P fixed: the volume stays (up to (P-1)/P)
    assert sent(8, 8192 * 4) / sent(2, 8192) == pytest.approx((7 / 8) / (1 / 2))


def test_ring_attention_hides_its_transfers_exactly_at_the_published_block_size():
    b, h, g, d, beta, flops = 2, 32, 8, 128, 50e9, 100e12
    threshold = (b / 2) * (g / h) * flops / beta       # tokens per chip (per batch sequence)

    def block(q, k):                                  # a full block at the chip's peak: 4 B q k H d FLOPs
        return 4 * 1 * q * k * h * d / flops

    net = Interconnect(4, beta, 0.0)
    for blk, hidden in ((math.ceil(threshold) + 8, True), (math.floor(threshold) - 8, False)):
        r = ring_attention(net, 1, 4 * blk, h, g, d, b, block, causal=False)
        assert (r.exposed_s == 0.0) is hidden


def test_a_causal_contiguous_ring_takes_2p_minus_1_over_p_of_the_balanced_time():
    for p in (2, 4, 8):
        net = Interconnect(p, 1e30, 0.0)             # free transfers: compute alone
        args = (net, 1, 64 * p, 8, 8, 64, 2, lambda q, k: 1.0)
        cont = ring_attention(*args, layout="contiguous").latency_s
        zig = ring_attention(*args, layout="zigzag").latency_s
        assert cont / zig == pytest.approx((2 * p - 1) / p)


def test_tensor_parallelism_and_usp_report_per_chip():
    net = Interconnect(4, 100e9, 1e-6)
    tp = tensor_parallel(net, 8, 2048, 12288, 2, lambda n: 1e-3 / n)
    assert tp.comm_s == pytest.approx(2 * all_reduce(net, 8 * 2048 * 12288 * 2)) and tp.compute_s == 2.5e-4
    u = usp(Interconnect(8, 100e9, 1e-6), 2, 1, 8192, 32, 8, 128, 2, lambda q, k: 1e-4)
    assert u.chips == 8 and u.steps == 4 + 3 and u.bytes_sent > 0


def test_ulysses_sends_p_times_less_than_megatron_sequence_parallelism():
    # multi-head attention (H_kv = H, H d = D): Ulysses' 4 (P-1)/P B (S/P) D b against Megatron's 4 (P-1)/P B S D b
    for p in (2, 4, 8, 16):
        sw = Interconnect(p, 100e9, 0.0, "switch")
        uly = ulysses(sw, 1, 8192, 32, 32, 128, 2, lambda q, k, h, g: 0.0).bytes_sent
        meg = megatron_sp(Interconnect(p, 100e9, 0.0), 1, 8192, 32 * 128, 2, lambda n: 0.0).bytes_sent
        assert meg / uly == pytest.approx(p)


def test_backward_moves_gradients_too():
    net = Interconnect(4, 100e9, 0.0)
    fwd = ring_attention(net, 1, 4096, 32, 8, 128, 2, lambda q, k: 1e-3)
    bwd = ring_attention(net, 1, 4096, 32, 8, 128, 2, lambda q, k: 1e-3, backward=True)
    assert bwd.bytes_sent == 2 * fwd.bytes_sent and bwd.compute_s == pytest.approx(2.5 * fwd.compute_s)
    sw = Interconnect(4, 100e9, 0.0, "switch")
    uf = ulysses(sw, 1, 4096, 32, 8, 128, 2, lambda q, k, h, g: 1e-3)
    ub = ulysses(sw, 1, 4096, 32, 8, 128, 2, lambda q, k, h, g: 1e-3, backward=True)
    assert ub.bytes_sent == uf.bytes_sent and ub.compute_s == pytest.approx(2.5 * uf.compute_s)
