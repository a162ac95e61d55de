"""Decoder layers of today's LLMs as compositions of cascades, in prefill and decode, on one chip.

A layer is its operators in order (:func:`layer_ops`): the attention block's norm, Q/K/V projection,
RoPE, attention (a library cascade chosen from the model: causal grouped-query attention, with a
sliding window for Mistral-style layers, or multi-head latent attention), output projection and
residual; the FFN block's norm, FFN (SwiGLU, or GELU between two projections) and residual. Each
operator is one cascade with explicit sizes, mapped by the mapper (:func:`einforge.arch.search`) and
evaluated by the cost model; a layer's latency is the sum of its operators' (they depend on each
other), and a model's is the layers' sum.

A generation (prompt, then N tokens) reports time to first token, time per output token, tokens/s,
energy per token, and the bytes of weights and KV cache, refused when they do not fit the memory.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from ..schema import load_yaml_file, validate
from ._spec import ArchError, Architecture
from ._workload import Workload

__all__ = ["DecoderModel", "LayerOp", "LayerReport", "Generation", "DecodeOnChips", "load_model", "models",
           "layer_ops", "evaluate_layer", "generate", "decode_on_chips"]

MODELS_DIR = Path(__file__).parent / "data" / "models"


class _ModelSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    name: str
    layers: int
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    ffn: str
    ffn_dim: int
    norm: str
    window: int = 0
    latent: int = 0
    bytes_per_value: int = 2
    source: str


@dataclass(frozen=True)
class DecoderModel:
    """A decoder-only model's shape (see ``arch/data/models/*.yaml`` for the built-ins)."""

    name: str
    layers: int
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    ffn: str                  # "swiglu" or "gelu"
    ffn_dim: int
    norm: str                 # "rmsnorm" or "layernorm"
    window: int = 0           # sliding-window attention over this many keys (0: full causal)
    latent: int = 0           # multi-head latent attention: the compressed KV width (0: none)
    bytes_per_value: int = 2
    source: str = ""

    @property
    def weights_per_layer(self) -> int:
        """Parameters of one layer (projections and FFN; norms are negligible and left out)."""
        d, h, kv, hd = self.hidden, self.heads, self.kv_heads, self.head_dim
        attn = d * hd * (h + 2 * kv) + h * hd * d
        if self.latent:
            attn = d * h * hd + d * self.latent + self.latent * h * hd * 2 + h * hd * d
        ffn = (3 if self.ffn == "swiglu" else 2) * d * self.ffn_dim
        return attn + ffn

    def kv_bytes(self, batch: int, tokens: int) -> int:
        """The KV cache of every layer for ``batch`` sequences of ``tokens`` (a latent per token with
        MLA; a sliding window keeps at most ``window`` tokens)."""
        kept = min(tokens, self.window) if self.window else tokens
        per_token = self.latent if self.latent else 2 * self.kv_heads * self.head_dim
        return self.layers * batch * kept * per_token * self.bytes_per_value


def models() -> dict[str, Path]:
    """Built-in models by name."""
    return {load_model(p).name: p for p in sorted(MODELS_DIR.glob("*.yaml"))}


@lru_cache(maxsize=32)
def _load(path: Path, mtime: int) -> DecoderModel:
    data, marks, file = load_yaml_file(path, "model", ArchError)
    m = validate(_ModelSpec, data, marks, file, ArchError)
    if m.ffn not in ("swiglu", "gelu"):
        raise ArchError(f"{file}: ffn must be swiglu or gelu, not {m.ffn!r}")
    if m.norm not in ("rmsnorm", "layernorm"):
        raise ArchError(f"{file}: norm must be rmsnorm or layernorm, not {m.norm!r}")
    if m.heads % m.kv_heads:
        raise ArchError(f"{file}: {m.heads} heads cannot share {m.kv_heads} key/value heads evenly")
    return DecoderModel(**m.model_dump())


def load_model(name_or_file: str | Path) -> DecoderModel:
    """A built-in model (``Llama-3-8B``, ``llama3-8b``) or a model YAML file.

    Raises
    ------
    ArchError
        No such model, or a file that is not a valid model.
    """
    p = Path(name_or_file)
    if p.is_file():
        return _load(p.resolve(), p.stat().st_mtime_ns)
    for f in sorted(MODELS_DIR.glob("*.yaml")):
        m = _load(f, f.stat().st_mtime_ns)
        if str(name_or_file).lower() in (m.name.lower(), f.stem):
            return m
    names = [_load(f, f.stat().st_mtime_ns).name for f in sorted(MODELS_DIR.glob("*.yaml"))]
    raise ArchError(f"no model named {name_or_file!r} (built-in: {', '.join(names)}) and no such file")


@dataclass(frozen=True)
class LayerOp:
    """One operator of a layer: a library cascade and the workload that sizes it (named by the
    cascade: operators of one shape, such as the two norms, are one workload)."""

    name: str
    cascade: str
    workload: Workload


def layer_ops(model: DecoderModel, phase: str, batch: int, tokens: int, kv: int | None = None) -> list[LayerOp]:
    """The operators of one decoder layer.

    Parameters
    ----------
    phase : ``prefill`` (``tokens`` prompt tokens per sequence, attending causally to themselves) or
        ``decode`` (one new token per sequence against a KV cache of ``kv`` tokens)
    """
    if phase not in ("prefill", "decode"):
        raise ArchError(f"phase must be prefill or decode, not {phase!r}")
    if phase == "decode" and not kv:
        raise ArchError("decode needs the KV cache length (kv=...)")
    m = model
    t = batch * (tokens if phase == "prefill" else 1)             # tokens through the projections
    d, h, g, hd = m.hidden, m.heads, m.kv_heads, m.head_dim
    norm = "rmsnorm" if m.norm == "rmsnorm" else "layernorm"

    def gemm(name, k, n):
        return LayerOp(name, "gemm", Workload("gemm", sizes=(("K", k), ("M", t), ("N", n))))

    def sized(name, cascade, **sizes):
        return LayerOp(name, cascade, Workload(cascade, sizes=tuple(sorted(sizes.items()))))

    ops = [sized("norm_attention", norm, D=d, T=t)]
    if m.latent:
        ops += [gemm("q_projection", d, h * hd), gemm("kv_compression", d, m.latent)]
    else:
        ops.append(gemm("qkv_projection", d, (h + 2 * g) * hd))
    # every query and key head of every sequence rotated at each position, the angles made once a position
    positions = tokens if phase == "prefill" else 1
    ops.append(sized("rope", "rope", I=hd // 2, P=positions, H=batch * (h + (g if not m.latent else 0))))
    ops.append(_attention(m, phase, batch, tokens, kv))
    ops += [gemm("output_projection", h * hd, d), sized("residual_attention", "residual", D=d, T=t),
            sized("norm_ffn", norm, D=d, T=t)]
    if m.ffn == "swiglu":
        ops.append(sized("ffn", "ffn-swiglu", D=d, F=m.ffn_dim, T=t))
    else:
        ops += [gemm("ffn_up", d, m.ffn_dim), sized("gelu", "gelu", D=m.ffn_dim, T=t),
                gemm("ffn_down", m.ffn_dim, d)]
    ops.append(sized("residual_ffn", "residual", D=d, T=t))
    return ops


def _attention(m: DecoderModel, phase: str, batch: int, tokens: int, kv: int | None) -> LayerOp:
    if m.latent:
        if phase == "prefill":
            return LayerOp("attention", "attention-mla", Workload(
                "attention-mla", batch=batch, heads=m.heads, head_dim=m.head_dim, keys=tokens, queries=tokens,
                sizes=(("C", m.latent),)))
        return LayerOp("attention", "attention-mla-decode", Workload(
            "attention-mla-decode", batch=batch, heads=m.heads, head_dim=m.head_dim, keys=kv, sizes=(("C", m.latent),)))
    if phase == "prefill":
        window = m.window or tokens
        return LayerOp("attention", "attention-gqa-causal", Workload(
            "attention-gqa-causal", batch=batch, heads=m.heads, kv_heads=m.kv_heads, head_dim=m.head_dim, keys=tokens,
            queries=tokens, sizes=(("W", window),)))
    keys = min(kv, m.window) if m.window else kv          # a rolling cache of the window
    return LayerOp("attention", "attention-decode", Workload(
        "attention-decode", batch=batch, heads=m.heads, kv_heads=m.kv_heads, head_dim=m.head_dim, keys=keys))


@dataclass(frozen=True)
class LayerReport:
    """One layer: per-operator latency, energy and DRAM bytes, and their sums; ``bindings`` holds each
    operator's binding (by operator name), to price the layer again at another shape with the same
    mapping (``evaluate_layer(..., bindings=report.bindings)``)."""

    model: str
    phase: str
    ops: tuple                 # (name, cascade, binding, latency_s, energy_pJ, traffic_bytes)
    latency_s: float
    energy_pJ: float
    traffic_bytes: float
    details: dict = field(default_factory=dict, compare=False)
    bindings: dict = field(default_factory=dict, compare=False, repr=False)

    def op(self, name: str) -> tuple:
        return next(o for o in self.ops if o[0] == name)


def evaluate_layer(arch: Architecture, model: DecoderModel, phase: str, batch: int, tokens: int,
                   kv: int | None = None, bindings: dict | None = None) -> LayerReport:
    """One decoder layer on ``arch``, every operator with the mapper's best binding (latency first),
    or with the binding ``bindings`` gives for its name.

    The mapper's choice is remembered per operator shape, and the cost model's price per operator
    shape and binding (the two norms and the two residual adds are alike; all are frozen values, so
    neither memo can go stale).

    Raises
    ------
    ArchError
        ``bindings`` names an operator the layer does not have.
    """
    ops = layer_ops(model, phase, batch, tokens, kv)
    unknown = sorted(set(bindings or {}) - {op.name for op in ops})
    if unknown:
        raise ArchError(f"bindings for {', '.join(unknown)}: a {model.name} {phase} layer has no such operator "
                        f"(its operators: {', '.join(op.name for op in ops)})")
    rows, used = _price_ops(arch, ops, bindings)
    return LayerReport(model.name, phase, tuple(rows), sum(o[3] for o in rows), sum(o[4] for o in rows),
                       sum(o[5] for o in rows), bindings=used)


def _price_ops(arch: Architecture, ops: list[LayerOp], bindings: dict | None = None) -> tuple[list, dict]:
    """(rows (name, cascade, binding name, latency s, energy pJ, DRAM bytes), binding by name) of
    ``ops``, each distinct operator shape priced once."""
    rows, used = [], {}
    for op in ops:
        given = (bindings or {}).get(op.name)
        binding = given if given else _mapped(arch, op.cascade, op.workload)[1]
        latency, energy, traffic = _priced(arch, op.cascade, binding, op.workload)
        used[op.name] = binding
        rows.append((op.name, op.cascade, binding.name, latency, energy, traffic))
    return rows, used


@lru_cache(maxsize=65536)
def _priced(arch: Architecture, cascade_name: str, binding, workload: Workload) -> tuple[float, float, float]:
    """One operator shape with one binding, priced once (a layer's alike operators, a decode step's
    dense operators under every parallelism strategy; all frozen values, so it cannot go stale)."""
    from ._designs import price

    return price(arch, _library_cascade(cascade_name), binding, workload)


@lru_cache(maxsize=256)
def _library_cascade(name: str):
    """A library cascade, parsed once (library files are package data)."""
    from ..einsum import load_cascade

    return load_cascade(name)


@lru_cache(maxsize=4096)
def _mapped(arch: Architecture, cascade_name: str, workload: Workload):
    """The cascade of one operator shape, and the mapper's best binding of it."""
    from ._search import search

    cascade = _library_cascade(cascade_name)
    return cascade, search(arch, cascade, workload).binding


@dataclass(frozen=True)
class Generation:
    """A prompt of ``prompt`` tokens, then ``new_tokens`` generated, for ``batch`` sequences."""

    model: str
    batch: int
    prompt: int
    new_tokens: int
    ttft_s: float                 # time to first token: the prefill of every layer
    tpot_s: float                 # mean time per output token over the decode steps
    tokens_per_s: float           # generated tokens per second (the batch's)
    energy_per_token_pJ: float    # decode energy per generated token
    weight_bytes: int
    kv_bytes: int                 # the KV cache at the end
    prefill: LayerReport
    decode_first: LayerReport
    decode_last: LayerReport


def generate(arch: Architecture, model: DecoderModel, batch: int, prompt: int, new_tokens: int,
             memory_bytes: float | None = None) -> Generation:
    """Prefill, then ``new_tokens`` decode steps with the cache growing from ``prompt`` tokens.

    Decode steps are evaluated at the first and the last cache length (and, for a sliding window the
    cache outgrows on the way, at the window) and summed as lines between them: every operator's
    cost is constant in the cache length except attention's, which the model prices per key tile,
    linear up to the rounding of the last tile, and constant once the cache holds the window.

    Raises
    ------
    ArchError
        Weights and the final KV cache exceed ``memory_bytes`` (when given).
    """
    weights = model.layers * model.weights_per_layer * model.bytes_per_value
    kv_end = model.kv_bytes(batch, prompt + new_tokens)
    if memory_bytes is not None and weights + kv_end > memory_bytes:
        raise ArchError(f"{model.name}: {weights / 2**30:.1f} GiB of weights and a {kv_end / 2**30:.1f} GiB KV cache "
                        f"({batch} x {prompt + new_tokens} tokens) do not fit {memory_bytes / 2**30:.1f} GiB; use "
                        "more chips, a smaller batch or a shorter context")
    pre = evaluate_layer(arch, model, "prefill", batch, prompt)
    steps = max(new_tokens, 1)
    ends = [prompt + 1, prompt + steps]                # the cache lengths of the first and last steps
    if model.window and ends[0] < model.window < ends[1]:
        ends.insert(1, model.window)                   # attention stops growing with the window
    layers = [evaluate_layer(arch, model, "decode", batch, 1, kv=k) for k in ends]
    decode_s = model.layers * _steps_sum(ends, [r.latency_s for r in layers])
    decode_pJ = model.layers * _steps_sum(ends, [r.energy_pJ for r in layers])
    return Generation(model.name, batch, prompt, new_tokens, ttft_s=model.layers * pre.latency_s,
                      tpot_s=decode_s / steps, tokens_per_s=batch * steps / decode_s,
                      energy_per_token_pJ=decode_pJ / (batch * steps), weight_bytes=weights, kv_bytes=kv_end,
                      prefill=pre, decode_first=layers[0], decode_last=layers[-1])


def _steps_sum(ends: list[int], values: list[float]) -> float:
    """The sum over every cache length from ``ends[0]`` to ``ends[-1]`` of a cost that is linear
    between consecutive ``ends`` (``values`` there): each segment's lengths, its start included
    only for the first (the others start where the one before ended)."""
    if ends[0] == ends[-1]:
        return values[0]
    total = 0.0
    for k, (a, b) in enumerate(zip(ends, ends[1:])):
        total += (b - a + 1) * (values[k] + values[k + 1]) / 2 - (values[k] if k else 0.0)
    return total


@dataclass(frozen=True)
class DecodeOnChips:
    """One decode step of a whole model on several chips: per chip."""

    strategy: str
    chips: int
    kv: int
    compute_s: float            # per token, every layer
    comm_s: float               # per token, not overlapped
    latency_s: float            # time per output token
    bytes_sent: float           # per chip per token
    memory_bytes: float         # per chip: its weights and its part of the KV cache


def decode_on_chips(arch: Architecture, model: DecoderModel, batch: int, kv: int, net, strategy: str,
                    ulysses_degree: int = 0, memory_bytes: float | None = None) -> DecodeOnChips:
    """Time per output token of ``model`` with a ``kv``-token cache on ``net.chips`` chips of ``arch``.

    Every strategy shards the dense part of each layer (projections, FFN) by tensor parallelism
    (two all-reduces of the token's activations per layer); they differ in how attention and its KV
    cache are split: ``tensor`` and ``ulysses`` by heads (for one new token Ulysses' all-to-alls of
    Q/K/V/O replace nothing but move the same heads), ``ring`` by sequence (each chip attends to its
    share of the cache with every head; the partial results merge by the 1-pass cascade's running
    max and sum, an all-reduce of B x H x (d + 2) fp32 values, after an all-gather of the token's
    queries), ``usp`` by heads within groups of ``ulysses_degree`` chips and by sequence across the
    groups. K/V heads fewer than the chips splitting heads are replicated (and read on each).

    Raises
    ------
    ArchError
        An unknown strategy, heads that do not split, or (with ``memory_bytes``, per chip) weights and
        cache share that do not fit.
    """
    from dataclasses import replace

    from ._parallel import all_gather, all_reduce, all_to_all

    n = net.chips
    b = model.bytes_per_value
    if strategy == "usp":
        u = ulysses_degree or n
        if n % u:
            raise ArchError(f"{n} chips do not split into Ulysses groups of {u}")
        heads_split, seq_split = u, n // u
    else:
        heads_split, seq_split = {"tensor": (n, 1), "ulysses": (n, 1), "ring": (1, n)}.get(strategy, (0, 0))
        if not heads_split:
            raise ArchError(f"strategy must be tensor, ulysses, ring or usp, not {strategy!r}")
    if model.heads % heads_split or model.heads % n:
        raise ArchError(f"{model.heads} heads do not split over {heads_split} (and {n}) chips")
    kv_split = max(1, min(heads_split, model.kv_heads))
    # attention: the chip's heads over its share of the cache
    att_model = replace(model, heads=model.heads // heads_split, kv_heads=max(model.kv_heads // kv_split, 1))
    keys = -(-kv // seq_split)
    att_ops = [op for op in layer_ops(att_model, "decode", batch, 1, keys) if op.name == "attention"]
    att = sum(row[3] for row in _price_ops(arch, att_ops)[0])
    # the dense part: 1/n of every projection and of the FFN
    dense_model = replace(model, heads=model.heads // n, kv_heads=max(model.kv_heads // min(n, model.kv_heads), 1),
                          ffn_dim=model.ffn_dim // n)
    dense_ops = [op for op in layer_ops(dense_model, "decode", batch, 1, keys) if op.name != "attention"]
    dense = sum(row[3] for row in _price_ops(arch, dense_ops)[0])
    act = batch * model.hidden * b
    comm = 2 * all_reduce(net, act)
    sent = 2 * 2 * (n - 1) / n * act
    if strategy == "ulysses" or (strategy == "usp" and heads_split > 1):
        sw = type(net)(heads_split, net.bandwidth, net.latency, "switch")
        per = batch * model.head_dim * b
        comm += sum(all_to_all(sw, per * h / heads_split) for h in (model.heads, model.kv_heads, model.kv_heads,
                                                                      model.heads))
        sent += (heads_split - 1) / heads_split * per * (2 * model.heads + 2 * model.kv_heads) / heads_split
    if seq_split > 1:
        ring = type(net)(seq_split, net.bandwidth, net.latency, "ring")
        q = batch * (model.heads // heads_split) * model.head_dim * b
        partial = batch * (model.heads // heads_split) * (model.head_dim + 2) * 4          # fp32 partials
        comm += all_gather(ring, q) + all_reduce(ring, partial)
        sent += (seq_split - 1) / seq_split * q + 2 * (seq_split - 1) / seq_split * partial
    weights = model.weights_per_layer * b / n
    kv_bytes = model.kv_bytes(batch, kv) / model.layers / (kv_split * seq_split)
    need = model.layers * (weights + kv_bytes)
    if memory_bytes is not None and need > memory_bytes:
        raise ArchError(f"{model.name} with {strategy} on {n} chips: {need / 2**30:.1f} GiB a chip (weights and its "
                        f"share of a {batch} x {kv}-token cache) do not fit {memory_bytes / 2**30:.1f} GiB")
    name = strategy if strategy != "usp" else f"usp({heads_split}x{seq_split})"
    return DecodeOnChips(name, n, kv, model.layers * (att + dense), model.layers * comm,
                         model.layers * (att + dense + comm), model.layers * sent, need)
