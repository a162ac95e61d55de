"""A result store that loses nothing: a directory of Parquet files, one per completed batch.

Each batch is written to a temporary name and renamed into place, so a file either holds a whole
batch or does not exist; a run killed at any moment loses only the batches in flight. Every row
carries the key of its group of points (a hash of everything that decides their results but the
columns that tell them apart), and a batch holds whole groups, so a rerun of the same spec skips
the groups already stored and never writes a point twice.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

__all__ = ["ResultStore", "point_key"]


def point_key(params: dict) -> str:
    """A stable key for a design point: the hash of its parameters (JSON, keys sorted)."""
    text = json.dumps(params, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


class ResultStore:
    """Batches of rows (dicts of equal-length columns) under ``path``.

    Examples
    --------
    >>> import tempfile, numpy as np
    >>> store = ResultStore(tempfile.mkdtemp())
    >>> _ = store.write("b0", {"key": np.array(["a", "b"]), "x": np.array([1.0, 2.0])})
    >>> sorted(store.keys()), store.read()["x"].tolist()
    (['a', 'b'], [1.0, 2.0])
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def batches(self) -> list[Path]:
        return sorted(self.path.glob("batch-*.parquet")) if self.path.is_dir() else []

    def write(self, name: str, columns: dict) -> Path:
        """Write one batch atomically (a temporary file renamed into place)."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        self.path.mkdir(parents=True, exist_ok=True)
        final = self.path / f"batch-{name}.parquet"
        tmp = self.path / f".batch-{name}.{os.getpid()}.tmp"
        table = pa.table({k: (v.tolist() if isinstance(v, np.ndarray) and v.dtype == object else v)
                          for k, v in columns.items()})
        pq.write_table(table, tmp, compression="none")      # results are small; speed over size
        os.replace(tmp, final)
        return final

    def keys(self) -> set[str]:
        """The keys of every stored point."""
        import pyarrow.parquet as pq

        out: set[str] = set()
        for f in self.batches():
            out.update(pq.ParquetFile(f).read(columns=["key"]).column("key").to_pylist())
        return out

    def read(self) -> dict[str, np.ndarray]:
        """Every stored row as columns, in batch order (an empty dict when nothing is stored)."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        files = self.batches()
        if not files:
            return {}
        table = pa.concat_tables([pq.ParquetFile(f).read() for f in files], promote_options="default")
        return {name: table.column(name).to_numpy(zero_copy_only=False) for name in table.column_names}
