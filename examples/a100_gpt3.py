"""einforge against real hardware: one GPT-3 175B layer on an A100-class accelerator, operator by
operator, against measured A100 latencies (LLMCompass's artifact, ISCA 2024).

The setting is the measurement's: tensor parallel over 4 GPUs (24 of 96 heads and 1/4 of the
projection columns per GPU), fp16, batch 8; prefill of 2048 tokens and one decode step against a
3072-token cache. Attention is unfused, as measured (Q*K, softmax and A*V are separate kernels). The
A100 is einforge's architecture file ``a100`` (public figures, cited there); every operator is a
library cascade evaluated by the cost model with the mapper's binding, nothing tuned per operator;
each evaluation is one kernel and pays the A100 file's launch overhead for its kind (LLMCompass's A100
figures: 21 us a matrix product, 12 us a softmax, 45 us a normalization or activation), as each
measured kernel was timed alone from the host (Q_K_V is three kernels, Q*K and A*V one batched kernel
each); the two
all-reduces use the alpha-beta ring on NVLink at the bandwidth NCCL sustains on it: NVIDIA's 300 GB/s a
direction less NCCL's protocol overhead, which NCCL's maintainer puts at about a fifth of the line rate
(github.com/NVIDIA/nccl-tests issue 212, 2024, said of H100's NVLink), i.e. 240 GB/s, as DRAM runs at
the share of its peak that kernels sustain; public all-reduce runs on 8-GPU A100 nodes measure a bus
bandwidth of 200-208 GB/s (nccl-tests issues 149 and 178), so 240 GB/s is if anything generous.

Run: python examples/a100_gpt3.py [--measured tests/data/llmcompass-a100/gpt3_layer_A100.csv]
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

from einforge.arch import Interconnect, Workload, all_reduce, load_architecture, search
from einforge.einsum import load_cascade

D, HEADS, HD, TP, BATCH = 12288, 96, 128, 4, 8
MEASURED = Path(__file__).resolve().parents[1] / "tests" / "data" / "llmcompass-a100" / "gpt3_layer_A100.csv"
NVLINK = Interconnect(TP, 0.8 * 300e9, 5e-6, "switch")     # line rate less NCCL's ~20% protocol overhead


def _op(arch, cascade, instances=1, **sizes):
    c = load_cascade(cascade)
    w = Workload(cascade, sizes=tuple(sorted(sizes.items())))
    return search(arch, c, w).report.latency_s * instances


def operators(phase: str, arch=None) -> dict[str, float]:
    """Seconds per operator of one GPU's share of the layer, named as in the measurement."""
    arch = arch or load_architecture("a100")
    h = HEADS // TP
    t = BATCH * (2048 if phase == "prefill" else 1)      # tokens through the projections
    q, k = (2048, 2048) if phase == "prefill" else (1, 3072)
    act = t * D * 2
    return {
        "Q_K_V": _op(arch, "gemm", 3, M=t, K=D, N=D // TP),     # three kernels, as measured
        # one batched kernel each over every (sequence, head)
        "Q_mul_K": _op(arch, "bmm", B=BATCH * h, M=q, K=HD, N=k),
        "A_mul_V": _op(arch, "bmm", B=BATCH * h, M=q, K=k, N=HD),
        "Wo_proj": _op(arch, "gemm", M=t, K=D // TP, N=D),
        "W1_proj": _op(arch, "gemm", M=t, K=D, N=4 * D // TP),
        "W2_proj": _op(arch, "gemm", M=t, K=4 * D // TP, N=D),
        # every (sequence, head, query) row is independent: the kernel's rows, spread over the lanes
        "Softmax": _op(arch, "softmax", M=k, P=BATCH * h * q),
        "LayerNorm_MHA": _op(arch, "layernorm", D=D, T=t),
        "LayerNorm_FFN": _op(arch, "layernorm", D=D, T=t),
        "GeLU": _op(arch, "gelu", D=4 * D // TP, T=t),
        "AllReduce_MHA": all_reduce(NVLINK, act),
        "AllReduce_FFN": all_reduce(NVLINK, act),
    }


def compare(measured_file=MEASURED) -> dict[str, list]:
    """phase -> rows (operator, measured s, model s, error) with a total row last."""
    with open(measured_file, newline="") as f:
        measured = list(csv.DictReader(f))
    out = {}
    for phase in ("prefill", "decode"):
        model = operators(phase)
        rows = [(r["operator"], float(r[f"{phase}_s"]), model[r["operator"]]) for r in measured]
        total_m = sum(x[1] for x in rows)
        total_e = sum(x[2] for x in rows)
        out[phase] = [(op, m, e, e / m - 1) for op, m, e in rows] + [("total", total_m, total_e, total_e / total_m - 1)]
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--measured", default=str(MEASURED))
    a = ap.parse_args(argv)
    for phase, rows in compare(a.measured).items():
        print(f"GPT-3 175B layer, {phase}, one A100 of 4 (tensor parallel), batch 8")
        print(f"  {'operator':<14} {'measured ms':>12} {'einforge ms':>12} {'error':>8}")
        for op, m, e, err in rows:
            print(f"  {op:<14} {m * 1e3:>12.3f} {e * 1e3:>12.3f} {err:>+8.1%}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
