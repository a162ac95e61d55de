"""The reference executor against numpy on the 1-pass attention cascade: CPU time and peak memory.

Baselines, run in the same process: plain numpy softmax attention (V softmax(K^T Q)), and a tiled
numpy loop that keeps one tile of logits at a time (what FlashAttention computes). CPU time is the
min and median of 5 runs (3 from M=P=8K), einforge's and numpy's interleaved; memory is
tracemalloc's peak. Issue targets: within 2x of numpy's time
and within 2x of the tiled loop's memory.
BLAS runs on one thread for both: CPU time is the work done, and idle BLAS threads spin-waiting
between many small products would count as work (einforge's products are per tile).
Run: .venv/bin/python benchmarks/executor.py   (--big adds M=P=32K, E=F=128: about a minute)
"""

import os

for _v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")        # before numpy starts its BLAS

import sys  # noqa: E402
import tracemalloc  # noqa: E402

import numpy as np  # noqa: E402
from _timing import cpu_pair  # noqa: E402

from einforge.einsum import evaluate, library, random_inputs, resolve_sizes  # noqa: E402


def peak(fn):
    tracemalloc.start()
    fn()
    _, p = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return p


def numpy_attention(x):
    s = x["K"].T @ x["Q"]
    s -= s.max(axis=0, keepdims=True)
    np.exp(s, out=s)
    return x["V"] @ (s / s.sum(axis=0, keepdims=True))


def tiled_numpy(x, tile):
    q, k, v = x["Q"], x["K"], x["V"]
    m = np.full(q.shape[1], -np.inf)
    d = np.zeros(q.shape[1])
    acc = np.zeros((v.shape[0], q.shape[1]))
    for t in range(0, k.shape[1], tile):
        s = k[:, t:t + tile].T @ q
        m2 = np.maximum(m, s.max(axis=0))
        p = np.exp(s - m2)
        corr = np.exp(m - m2)
        d = d * corr + p.sum(axis=0)
        acc = acc * corr + v[:, t:t + tile] @ p
        m = m2
    return acc / d


def main():
    entry = library()["attention-1pass"]
    c = entry.load()
    shapes = [(1024, 64, 256), (4096, 64, 256), (4096, 128, 256), (8192, 128, 512)]
    if "--big" in sys.argv:
        shapes.append((32768, 128, 1024))
    for n, e, m0 in shapes:
        sizes = resolve_sizes(c, {"M": n, "P": n, "E": e, "F": e, "M0": m0})
        x = random_inputs(c, sizes, np.random.default_rng(0))
        (t_min, t_med, out), (n_min, n_med, ref) = cpu_pair(lambda x=x, sizes=sizes: evaluate(c, x, sizes),
                                                            lambda x=x: numpy_attention(x), reps=5 if n <= 4096 else 3)
        err = np.max(np.abs(out["AV"] - ref)) / np.max(np.abs(ref))
        mem = peak(lambda x=x, sizes=sizes: evaluate(c, x, sizes))
        mem_np = peak(lambda x=x: numpy_attention(x))
        mem_tiled = peak(lambda x=x, m0=m0: tiled_numpy(x, m0))
        print(f"M=P={n:5d} E=F={e:3d} M0={m0:3d}: einforge {t_min * 1e3:7.1f} ms (median {t_med * 1e3:7.1f}), "
              f"numpy {n_min * 1e3:7.1f} ms (median {n_med * 1e3:7.1f}) "
              f"-> {t_min / n_min:4.1f}x the time; peak memory {mem / 1e6:7.1f} MB, numpy {mem_np / 1e6:7.1f} MB, "
              f"tiled numpy {mem_tiled / 1e6:6.1f} MB -> {mem / mem_tiled:4.1f}x the tiled loop; rel. error {err:.1e}")


if __name__ == "__main__":
    main()
