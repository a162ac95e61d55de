"""Workloads: transformer shapes that bind a cascade's rank sizes."""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path

import yaml

from ._spec import DATA_DIR, ArchError

__all__ = ["Workload", "workloads", "load_workload", "parse_seq"]

_RANKS = ("B", "H", "G", "E", "F", "D", "S", "M", "P")


def parse_seq(text) -> int:
    """``1K`` -> 1024, ``64K`` -> 65536, ``1M`` -> 1048576, ``4096`` -> 4096.

    Examples
    --------
    >>> parse_seq("64K"), parse_seq("1M"), parse_seq(512)
    (65536, 1048576, 512)
    """
    if isinstance(text, int):
        return text
    t = str(text).strip()
    mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    try:
        if t and t[-1].upper() in mult:
            return int(t[:-1]) * mult[t[-1].upper()]
        return int(t)
    except ValueError:
        raise ArchError(f"sequence length {text!r} is not a count such as 4096, 64K or 1M") from None


def seq_label(n: int) -> str:
    """The artifact's labels: 1K ... 1M."""
    if n >= 1 << 20 and n % (1 << 20) == 0:
        return f"{n >> 20}M"
    if n >= 1 << 10 and n % (1 << 10) == 0:
        return f"{n >> 10}K"
    return str(n)


@dataclass(frozen=True)
class Workload:
    """A transformer layer's shape: batch B, heads H (G key/value groups for GQA), head dimensions
    E (queries/keys) and F (values), model width D, FFN width S, key length M and query length P."""

    name: str
    B: int = 1
    H: int = 1
    E: int = 64
    F: int = 64
    D: int = 0
    S: int = 0
    M: int = 0
    P: int = 0
    G: int = 0          # key/value heads for grouped-query attention; 0 means G = H
    description: str = ""
    extra: tuple = ()   # (rank, size) pairs for ranks a transformer shape does not name

    def with_seq(self, seq: int, query_len: int | None = None) -> Workload:
        """Self-attention (M = P = seq), or cross attention/decode with ``query_len`` queries."""
        return replace(self, M=seq, P=seq if query_len is None else query_len)

    @property
    def groups(self) -> int:
        return self.G or self.H

    def rank_sizes(self) -> dict[str, int]:
        """Sizes by rank name, including R = H / G (query heads per key/value head)."""
        if self.groups and self.H % self.groups:
            raise ArchError(f"workload {self.name}: H={self.H} heads cannot share G={self.groups} key/value heads")
        out = {"B": self.B, "H": self.H, "G": self.groups, "R": self.H // self.groups, "E": self.E,
               "F": self.F, "D": self.D, "S": self.S, "M": self.M, "P": self.P}
        out.update(dict(self.extra))
        return out

    @property
    def label(self) -> str:
        return f"{self.name}-{seq_label(self.M)}" if self.M else self.name


def _from_dict(name: str, d: dict, where: str) -> Workload:
    if not isinstance(d, dict):
        raise ArchError(f"{where}workload {name} must be a mapping of rank sizes")
    unknown = set(d) - set(_RANKS) - {"description"}
    if unknown:
        raise ArchError(f"{where}workload {name}: unknown field(s) {', '.join(sorted(unknown))}; "
                        f"use {', '.join(_RANKS)}")
    vals = {}
    for k in _RANKS:
        if k in d:
            v = d[k]
            if k in ("M", "P"):
                v = parse_seq(v)
            if not isinstance(v, int) or v < 0:
                raise ArchError(f"{where}workload {name}: {k} must be a non-negative integer, not {v!r}")
            vals[k] = v
    return Workload(name=name, description=str(d.get("description", "")), **vals)


def workloads(path: Path = DATA_DIR / "workloads.yaml") -> dict[str, Workload]:
    """The built-in workloads (BERT, TrXL, T5, XLM) or those of a YAML file."""
    path = Path(path)
    try:
        return dict(_workloads(path, path.stat().st_mtime_ns))
    except FileNotFoundError:
        raise ArchError(f"cannot read workloads {path}: no such file") from None


@lru_cache(maxsize=16)
def _workloads(path: Path, mtime: int) -> tuple:
    try:
        data = yaml.safe_load(Path(path).read_text())
    except FileNotFoundError:
        raise ArchError(f"cannot read workloads {path}: no such file") from None
    except yaml.YAMLError as exc:
        raise ArchError(f"{path}: invalid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ArchError(f"{path}: a workload file maps names to rank sizes")
    return tuple((k, _from_dict(k, v, f"{path}: ")) for k, v in data.items())


def load_workload(name_or_file: str, seq: int | str | None = None) -> Workload:
    """A built-in model (``BERT``) or the first workload of a YAML file, at sequence length ``seq``."""
    p = Path(str(name_or_file))
    if p.is_file():
        w = next(iter(workloads(p).values()))
    else:
        builtin = workloads()
        match = {k.lower(): v for k, v in builtin.items()}.get(str(name_or_file).lower())
        if match is None:
            raise ArchError(f"no built-in workload named {name_or_file!r} and no such file "
                            f"(built-in: {', '.join(builtin)})")
        w = match
    if seq is not None:
        w = w.with_seq(parse_seq(seq))
    return w
