"""Sweeps on dask.distributed against the serial path (CPU-bound cost model, 100,000 points).

Prints the serial points/s, then for 1 and 2 local workers the wall-clock points/s (cluster start-up
printed apart: it is paid once per session), the ratio to serial and the speed-up from 1 to 2
workers; first for the array-shaped cost model (100,000 points, ~0.4 M points/s serially: the store's
I/O dominates), then for the mapper's search at every point (compute-bound: what Dask is for).
Targets (issue 14): 1 worker at least as fast as the serial sweep of the issue's day (2,240
points/s), 2 workers within 1.3x of linear.
Run: .venv/bin/python benchmarks/dask_sweep.py
"""

import tempfile
import time
from pathlib import Path

from einforge.arch import client_for, load_sweep, run_distributed, sweep_columns

SPEC = """
cascade: attention-1pass
binding: fusemax
arch: fusemax
workloads: [BERT, TrXL, T5, XLM]
seq: [64K]
grid:
  array: [16x16, 32x32, 64x64, 128x128, 256x256, 512x512, 1024x1024, 16x64, 64x16, 32x128]
  buffer: [1MiB, 2MiB, 4MiB, 6MiB, 8MiB, 12MiB, 16MiB, 24MiB, 32MiB, 64MiB]
  bandwidth: [100GiB/s, 200GiB/s, 300GiB/s, 400GiB/s, 600GiB/s, 800GiB/s, 1000GiB/s, 1200GiB/s, 1600GiB/s, 2000GiB/s]
  clock: [500MHz, 540MHz, 580MHz, 620MHz, 660MHz, 700MHz, 740MHz, 780MHz, 820MHz, 860MHz, 900MHz, 940MHz, 980MHz,
          1020MHz, 1060MHz, 1100MHz, 1140MHz, 1180MHz, 1220MHz, 1260MHz, 1300MHz, 1340MHz, 1380MHz, 1420MHz, 1460MHz]
"""


SEARCH = """
cascade: attention-1pass
binding: search
arch: fusemax
workloads: [BERT, XLM]
seq: [64K]
grid:
  array: [32x32, 64x64, 128x128, 256x256]
  buffer: [4MiB, 32MiB]
  bandwidth: [100GiB/s, 200GiB/s, 400GiB/s, 800GiB/s, 1600GiB/s]
"""


def main():
    for title, text, per_batch in (("cost model", SPEC, 2500), ("the mapper's search at every point", SEARCH, 10)):
        print(f"-- {title}")
        run(text, per_batch)


def run(text, per_batch):
    with tempfile.TemporaryDirectory() as tmp:
        f = Path(tmp) / "s.yaml"
        f.write_text(text)
        spec = load_sweep(f)
        t = time.perf_counter()
        serial = sweep_columns(spec)
        ts = time.perf_counter() - t
        n = len(serial["key"])
        print(f"{n:,} points; serial: {ts:.2f} s = {n / ts:,.0f} points/s")
        rates = {}
        for workers in (1, 2):
            t = time.perf_counter()
            client = client_for(workers=workers)
            start = time.perf_counter() - t
            try:
                t = time.perf_counter()
                got = run_distributed(spec, Path(tmp) / f"store{workers}", client=client, per_batch=per_batch)
                tw = time.perf_counter() - t
            finally:
                cluster = client.cluster
                client.close()
                cluster.close()
            assert len(got["key"]) == n
            rates[workers] = n / tw
            print(f"{workers} worker(s): {tw:.2f} s = {n / tw:,.0f} points/s ({ts / tw:.2f}x serial; "
                  f"overhead {(tw - ts / workers) / n * 1e6:+.1f} us a point; cluster start-up {start:.1f} s)")
        print(f"speed-up 1 -> 2 workers: {rates[2] / rates[1]:.2f}x (linear: 2x; target within 1.3x: >= 1.54x)")


if __name__ == "__main__":
    main()
