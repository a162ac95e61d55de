"""The execution layer: work that outgrows one process runs as tasks on ``dask.distributed``.

A local cluster (one single-threaded worker process per core) listens on the loopback address only,
its dashboard too. ``scheduler="tcp://host:8786"`` (or ``tls://...``) uses an existing cluster; Dask's
own configuration supplies the TLS certificates for a ``tls://`` address (``distributed.comm.tls``
in ``~/.config/dask/*.yaml`` or ``DASK_DISTRIBUTED__COMM__TLS__...`` variables). Results come back to
this process, which writes each completed batch to a :class:`~einforge.arch._store.ResultStore`, so
a killed run loses only the batches in flight and a rerun resumes.
"""

from __future__ import annotations

import hashlib
import os

import numpy as np

from ._spec import ArchError
from ._store import ResultStore

__all__ = ["run_distributed", "client_for", "as_completed_results", "run_into_store"]


def client_for(scheduler: str | None = None, workers: int | None = None):
    """A ``distributed.Client``: on ``scheduler`` when given, else on a new local cluster of
    ``workers`` processes (default: the machine's cores) bound to 127.0.0.1."""
    import logging

    from distributed import Client, LocalCluster

    if scheduler:
        return Client(scheduler)
    cluster = LocalCluster(n_workers=workers or os.cpu_count() or 1, threads_per_worker=1, processes=True,
                           host="127.0.0.1", dashboard_address="127.0.0.1:0", silence_logs=logging.ERROR)
    return Client(cluster)


def as_completed_results(client, tasks: dict):
    """Submit ``tasks`` (name -> (function, *arguments)) and yield (name, result) as each finishes.

    Raises
    ------
    ArchError
        A task failed (its exception is in the message).
    """
    from distributed import as_completed

    futures = {client.submit(fn, *args, key=name, pure=False): name for name, (fn, *args) in tasks.items()}
    for fut in as_completed(futures):
        if fut.status == "error":
            raise ArchError(f"task {futures[fut]} failed: {fut.exception()}")
        yield futures[fut], fut.result()


def run_into_store(store: ResultStore, tasks: dict, *, client=None, scheduler: str | None = None,
                   workers: int | None = None, progress=None) -> None:
    """Run ``tasks`` (batch name -> (function, *arguments), each returning columns with a ``key``
    column) on Dask and write each result to ``store`` under its name as it finishes; a cluster made
    here is closed afterwards. ``progress`` gets each batch's row count."""
    if not tasks:
        return
    own = client is None
    if own:
        client = client_for(scheduler, workers)
    try:
        for name, cols in as_completed_results(client, {f"einforge-{n}": t for n, t in tasks.items()}):
            store.write(name.removeprefix("einforge-"), cols)
            if progress is not None:
                progress(len(cols["key"]))
    finally:
        if own:
            cluster = client.cluster
            client.close()
            cluster.close()


def _batches(spec, groups: list, per_batch: int) -> list[tuple[str, list]]:
    """Whole groups packed into batches of about ``per_batch`` points; a batch is named by its groups."""
    points = len(spec.buffers) * len(spec.bandwidths) * len(spec.clocks)
    size = max(1, per_batch // max(points, 1))
    out = []
    for k in range(0, len(groups), size):
        chunk = groups[k:k + size]
        name = hashlib.sha256("|".join(key for key, _ in chunk).encode()).hexdigest()[:20]
        out.append((name, [g for _, g in chunk]))
    return out


def run_distributed(spec, store_path, *, scheduler: str | None = None, workers: int | None = None,
                    client=None, per_batch: int = 2000, progress=None) -> dict[str, np.ndarray]:
    """Evaluate a sweep spec's groups as Dask tasks into the store at ``store_path`` and return every
    stored point (with the Pareto marks), as :func:`~einforge.arch._sweep.sweep_columns` would.

    Groups already in the store are skipped: a rerun of an interrupted run finishes it. ``progress``
    is called with the number of points of each completed batch.

    Raises
    ------
    ArchError
        The store holds points of another sweep (its keys are not this spec's), or a task failed.
    """
    from .. import __version__
    from ._sweep import _checked, evaluate_groups, finish_columns, group_key, sweep_groups

    hashes = {c: hashlib.sha256(_checked(spec, c).text().encode()).hexdigest()[:16] for c in spec.cascades}
    store = ResultStore(store_path)
    keyed = [(group_key(spec, g, hashes[g[0]]), g) for g in sweep_groups(spec)]
    have = store.keys()
    foreign = have - {k for k, _ in keyed}
    if foreign:
        raise ArchError(f"{store_path} holds {len(foreign)} group(s) of another sweep (another spec, cascade, "
                        f"or einforge {__version__}'s predecessor); use a new directory for this one")
    todo = _batches(spec, [(k, g) for k, g in keyed if k not in have], per_batch)
    run_into_store(store, {f"sweep-{name}": (evaluate_groups, spec, groups) for name, groups in todo},
                   client=client, scheduler=scheduler, workers=workers, progress=progress)
    cols = store.read()
    if not cols:
        raise ArchError(f"{store_path}: the sweep has no points")
    order = {k: i for i, (k, _) in enumerate(keyed)}
    idx = np.argsort([order[k] for k in cols["key"]], kind="stable")     # the serial order
    return finish_columns({k: v[idx] for k, v in cols.items()}, spec)
