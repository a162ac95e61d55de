"""Sweeps on dask.distributed: a real local cluster gives the serial results bit for bit, the store
resumes without duplicates, and a run killed with SIGKILL loses only the batches in flight."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from einforge.arch import ArchError, ResultStore, load_sweep, run_distributed, sweep_columns

SPEC = """
cascade: attention-1pass
binding: fusemax
arch: fusemax
workloads: [BERT, XLM]
seq: [4K, 64K]
grid:
  array: [16x16, 64x64, 256x256]
  buffer: [1MiB, 64MiB]
  bandwidth: [100GiB/s, 400GiB/s]
"""

# the mapper searches every point (~30 ms): slow enough to be stopped midway
SLOW = """
cascade: attention-1pass
binding: search
arch: fusemax
workloads: [BERT, XLM, T5]
seq: [64K]
grid:
  array: [64x64, 128x128, 256x256]
  buffer: [4MiB, 32MiB]
  bandwidth: [100GiB/s, 200GiB/s, 400GiB/s, 800GiB/s, 1600GiB/s]
"""


def _equal(a: dict, b: dict):
    assert list(a) == list(b)
    for k in a:
        x, y = np.asarray(a[k]), np.asarray(b[k])
        assert x.shape == y.shape, k
        if x.dtype.kind == "f" or y.dtype.kind == "f":
            assert np.array_equal(x.astype(float), y.astype(float), equal_nan=True), k
        else:
            assert x.tolist() == y.tolist(), k


@pytest.fixture(scope="module")
def client():
    from einforge.arch import client_for

    c = client_for(workers=2)
    yield c
    cluster = c.cluster
    c.close()
    cluster.close()


def _spec(tmp_path, text, name="s.yaml"):
    f = tmp_path / name
    f.write_text(text)
    return load_sweep(f)


def test_a_local_cluster_gives_the_serial_results_bit_for_bit(tmp_path, client):
    assert all(w.startswith("tcp://127.0.0.1:") for w in client.scheduler_info()["workers"])   # loopback only
    spec = _spec(tmp_path, SPEC)
    done = []
    got = run_distributed(spec, tmp_path / "store", client=client, per_batch=8, progress=done.append)
    _equal(got, sweep_columns(spec))
    assert len(ResultStore(tmp_path / "store").batches()) > 1 and sum(done) == spec.size


def test_the_store_resumes_without_duplicates(tmp_path, client):
    spec = _spec(tmp_path, SPEC)
    store = tmp_path / "store"
    first = run_distributed(spec, store, client=client, per_batch=8)
    files = ResultStore(store).batches()
    for f in files[::2]:                 # as if those batches had been in flight
        f.unlink()
    again = run_distributed(spec, store, client=client, per_batch=8)
    _equal(again, first)
    assert len(ResultStore(store).batches()) == len(files) and len(again["key"]) == spec.size
    untouched = run_distributed(spec, store, client=client, per_batch=8)     # nothing left to do
    _equal(untouched, first)


def test_a_store_of_another_sweep_is_refused(tmp_path, client):
    store = tmp_path / "store"
    run_distributed(_spec(tmp_path, SPEC), store, client=client)
    other = _spec(tmp_path, SPEC.replace("attention-1pass", "attention-causal"), "o.yaml")
    with pytest.raises(ArchError, match="another sweep"):
        run_distributed(other, store, client=client)


def test_a_killed_run_resumes_to_the_uninterrupted_result(tmp_path):
    spec_file = tmp_path / "slow.yaml"
    spec_file.write_text(SLOW)
    store = tmp_path / "store"
    cmd = [sys.executable, "-m", "einforge.cli", "sweep", str(spec_file), "-o", str(tmp_path / "r.csv"),
           "--store", str(store), "--workers", "1", "--batch-points", "10", "--json"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 120
    while not ResultStore(store).batches() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)          # the driver and its cluster, at once
    proc.wait()
    stored = ResultStore(store).batches()
    total = 9                                    # one batch per array and workload: 2 buffers x 5 bandwidths
    assert 1 <= len(stored) < total, "the run was not stopped midway"
    spec = load_sweep(spec_file)
    resumed = run_distributed(spec, store, workers=1, per_batch=10)
    _equal(resumed, sweep_columns(spec))
    assert len(ResultStore(store).batches()) == total


def test_a_killed_worker_costs_nothing_but_time(tmp_path):
    from einforge.arch import client_for

    spec = _spec(tmp_path, SLOW)
    client = client_for(workers=2)
    try:
        pids = client.run(os.getpid)                 # worker address -> process id
        victim = next(iter(pids.values()))
        store = tmp_path / "store"
        killed = []

        def progress(n):                             # after the first batch, kill a worker mid-run
            if not killed:
                os.kill(victim, signal.SIGKILL)
                killed.append(victim)

        got = run_distributed(spec, store, client=client, per_batch=10, progress=progress)
        assert killed
        _equal(got, sweep_columns(spec))
    finally:
        cluster = client.cluster
        client.close()
        cluster.close()
