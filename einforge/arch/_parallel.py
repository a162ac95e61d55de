"""Many chips: links and collectives (alpha-beta), and how a decoder layer's attention is split
across chips by tensor parallelism (Megatron), DeepSpeed-Ulysses, Ring Attention (contiguous,
striped, zigzag) and USP (Ulysses x Ring).

Collectives follow the alpha-beta model: a message of ``m`` bytes over one link takes
``alpha + m / beta``. With ``n`` chips on a ring, all-reduce of ``M`` bytes takes
``2 (n-1) (alpha + M / (n beta))`` (reduce-scatter then all-gather, bandwidth-optimal), all-gather
and reduce-scatter ``(n-1) (alpha + M / (n beta))``; on a switch each chip has its own link, so an
all-to-all in which each chip holds ``M`` bytes takes ``(n-1) alpha + (n-1)/n M / beta``. A 2D torus
all-reduces along its rows, then its columns.

Ring attention passes key/value blocks around the ring while each chip computes its block: a step
costs ``max(compute, transfer)``; the sequence split is the cascade's key rank partitioned across
chips and the merge of the partial results is the 1-pass cascade's running max and sum.
"""

from __future__ import annotations

from dataclasses import dataclass

from ._spec import ArchError

__all__ = ["Interconnect", "all_reduce", "all_gather", "reduce_scatter", "all_to_all", "ParallelReport",
           "ulysses", "ring_attention", "tensor_parallel", "megatron_sp", "usp"]


@dataclass(frozen=True)
class Interconnect:
    """``chips`` chips joined by links of ``bandwidth`` bytes/s each way and ``latency`` seconds."""

    chips: int
    bandwidth: float
    latency: float = 0.0
    topology: str = "ring"          # "ring", "switch" or "torus" (rows x cols = chips)
    rows: int = 0                   # a torus's rows (its columns are chips / rows)

    def __post_init__(self):
        if self.topology not in ("ring", "switch", "torus"):
            raise ArchError(f"topology must be ring, switch or torus, not {self.topology!r}")
        if self.topology == "torus" and (self.rows <= 0 or self.chips % self.rows):
            raise ArchError(f"a torus of {self.chips} chips needs rows dividing it (rows={self.rows})")
        if self.chips < 1 or self.bandwidth <= 0:
            raise ArchError("an interconnect needs at least one chip and a positive bandwidth")


def _ring(n: int, alpha: float, beta: float, m: float, rounds: int) -> float:
    return rounds * (n - 1) * (alpha + m / (n * beta)) if n > 1 else 0.0


def all_reduce(net: Interconnect, nbytes: float) -> float:
    """Seconds to all-reduce ``nbytes`` on every chip."""
    if net.topology == "torus":
        r, c = net.rows, net.chips // net.rows
        return _ring(c, net.latency, net.bandwidth, nbytes, 2) + _ring(r, net.latency, net.bandwidth, nbytes / c, 2)
    return _ring(net.chips, net.latency, net.bandwidth, nbytes, 2)


def all_gather(net: Interconnect, nbytes: float) -> float:
    """Seconds to gather ``nbytes`` in all (each chip contributes ``nbytes / chips``)."""
    return _ring(net.chips, net.latency, net.bandwidth, nbytes, 1)


reduce_scatter = all_gather


def all_to_all(net: Interconnect, nbytes: float) -> float:
    """Seconds for an all-to-all in which each chip holds ``nbytes`` and keeps ``1/chips`` of it.

    Raises
    ------
    ArchError
        On a ring or torus, where messages share links in ways this model does not price.
    """
    n = net.chips
    if net.topology != "switch":
        raise ArchError(f"all-to-all is modelled on a switch, not a {net.topology}; use topology: switch")
    return (n - 1) * net.latency + (n - 1) / n * nbytes / net.bandwidth


@dataclass(frozen=True)
class ParallelReport:
    """Attention of one layer split over chips: per chip."""

    strategy: str
    chips: int
    compute_s: float            # the chip's attention compute
    comm_s: float               # communication time, before overlap
    exposed_s: float            # communication not hidden behind compute
    latency_s: float            # compute + exposed
    bytes_sent: float           # per chip
    steps: int                  # communication steps (collectives or ring hops)
    memory_bytes: float         # the chip's K/V (and Q/O) for the attention


def ulysses(net: Interconnect, batch: int, seq: int, heads: int, kv_heads: int, head_dim: int, bytes_per_value: int,
            attention_s, *, backward: bool = False) -> ParallelReport:
    """DeepSpeed-Ulysses: each chip holds ``seq / P`` tokens; all-to-alls turn Q, K, V into a head
    split before attention and the output back after it. Bytes each chip sends:
    ``(P-1)/P * B * (S/P) * d * b * (2H + 2H_kv)`` (with K/V heads replicated up to P when there are
    fewer). ``attention_s(queries, keys, heads, kv_heads)`` prices the chip's attention. The backward
    pass moves the same volume (dO in, dQ, dK, dV out) and computes ``BACKWARD_COMPUTE`` times as much."""
    p = net.chips
    if heads % p:
        raise ArchError(f"Ulysses splits the {heads} heads over {p} chips: they must divide")
    kv = max(kv_heads, p) if kv_heads < p else kv_heads
    local = batch * (seq // p) * head_dim * bytes_per_value
    sent = (p - 1) / p * local * (2 * heads + 2 * kv)
    comm = sum(all_to_all(net, local * n) for n in (heads, kv, kv, heads))
    compute = attention_s(seq, seq, heads // p, max(kv // p, 1)) * (BACKWARD_COMPUTE if backward else 1.0)
    return ParallelReport("ulysses" + ("-backward" if backward else ""), p, compute, comm, comm, compute + comm, sent, 4,
                          batch * seq * head_dim * bytes_per_value * (2 * heads + 2 * kv) / p)


#: a block's backward against its forward: FlashAttention-2 recomputes the logits and runs four
#: products where the forward runs two (Dao, ICLR 2024): 2.5x the forward's FLOPs
BACKWARD_COMPUTE = 2.5


def ring_attention(net: Interconnect, batch: int, seq: int, heads: int, kv_heads: int, head_dim: int,
                   bytes_per_value: int, block_s, *, causal: bool = True, layout: str = "zigzag",
                   backward: bool = False) -> ParallelReport:
    """Ring attention: each chip keeps ``seq / P`` queries and passes its key/value block around the
    ring, P-1 hops of ``2 B (S/P) H_kv d b`` bytes, each overlapped with one block of attention
    (``block_s(queries, keys)``, a full block of S/P x S/P). Causal with a contiguous split, step 0
    is the diagonal (half a block) and every later step waits for a chip with a full block; striped
    or zigzag splits give every chip half a block a step: (2P-1)/P less time.

    ``backward``: the gradient pass moves the key/value block and its accumulating gradients dK, dV
    (twice the bytes a hop) and computes ``BACKWARD_COMPUTE`` times a forward block."""
    p = net.chips
    if layout not in ("contiguous", "striped", "zigzag"):
        raise ArchError(f"layout must be contiguous, striped or zigzag, not {layout!r}")
    blk = seq // p
    c = block_s(blk, blk) * (BACKWARD_COMPUTE if backward else 1.0)
    hop = 2 * batch * blk * kv_heads * head_dim * bytes_per_value * (2 if backward else 1)
    t_hop = net.latency + hop / net.bandwidth if p > 1 else 0.0
    if not causal:
        works = [c] * p
    elif layout == "contiguous":
        works = [c / 2] + [c] * (p - 1)
    else:
        works = [c / 2] * p
    # step k computes with the block that arrived during step k-1; the transfer of the next block
    # overlaps this step's compute
    exposed = sum(max(0.0, t_hop - w) for w in works[:-1]) if p > 1 else 0.0
    compute = sum(works)
    return ParallelReport(f"ring-{layout}" + ("-backward" if backward else ""), p, compute, t_hop * (p - 1), exposed,
                          compute + exposed,
                          hop * (p - 1), p - 1, 2 * batch * blk * head_dim * bytes_per_value * (heads + 2 * kv_heads))


def tensor_parallel(net: Interconnect, batch: int, tokens: int, hidden: int, bytes_per_value: int,
                    layer_s) -> ParallelReport:
    """Megatron tensor parallelism: heads and FFN columns split over the chips, two all-reduces of
    the activations (B x T x D) per layer, not overlapped. ``layer_s(chips)`` prices the chip's
    share of the layer."""
    act = batch * tokens * hidden * bytes_per_value
    comm = 2 * all_reduce(net, act)
    compute = layer_s(net.chips)
    n = net.chips
    return ParallelReport("tensor", n, compute, comm, comm, compute + comm, 2 * 2 * (n - 1) / n * act, 2, act)


def megatron_sp(net: Interconnect, batch: int, seq: int, hidden: int, bytes_per_value: int, layer_s) -> ParallelReport:
    """Megatron-LM sequence parallelism (with tensor parallelism): the norms and dropout run on
    ``seq / P`` tokens; two all-gathers and two reduce-scatters of the B x S x D activations per layer
    replace tensor parallelism's all-reduces, so each chip sends ``4 (P-1)/P B S D b`` bytes, whatever P
    (Ulysses sends P times less for multi-head attention)."""
    n = net.chips
    act = batch * seq * hidden * bytes_per_value
    comm = 2 * all_gather(net, act) + 2 * reduce_scatter(net, act)
    compute = layer_s(n)
    return ParallelReport("megatron-sp", n, compute, comm, comm, compute + comm, 4 * (n - 1) / n * act, 4, act / n)


def usp(net: Interconnect, ulysses_degree: int, batch: int, seq: int, heads: int, kv_heads: int, head_dim: int,
        bytes_per_value: int, block_s) -> ParallelReport:
    """USP: Ulysses within groups of ``ulysses_degree`` chips (on their switch), Ring Attention across
    the groups (zigzag). The group's all-to-alls move its S/R tokens; each ring step passes blocks of
    S/R tokens of the group's share of the K/V heads."""
    n = net.chips
    if n % ulysses_degree:
        raise ArchError(f"{n} chips do not split into groups of {ulysses_degree}")
    r = n // ulysses_degree
    u_net = Interconnect(ulysses_degree, net.bandwidth, net.latency, "switch")
    r_net = Interconnect(r, net.bandwidth, net.latency, "ring")
    kv_u = max(kv_heads // ulysses_degree, 1)
    uly = ulysses(u_net, batch, seq // r, heads, kv_heads, head_dim, bytes_per_value,
                  lambda q, k, h, g: 0.0) if ulysses_degree > 1 else None
    ring = ring_attention(r_net, batch, seq, heads // ulysses_degree, kv_u, head_dim, bytes_per_value, block_s)
    comm = (uly.comm_s if uly else 0.0) + ring.comm_s
    exposed = (uly.exposed_s if uly else 0.0) + ring.exposed_s
    return ParallelReport("usp", n, ring.compute_s, comm, exposed, ring.compute_s + exposed,
                          (uly.bytes_sent if uly else 0.0) + ring.bytes_sent, (4 if uly else 0) + ring.steps,
                          ring.memory_bytes)
