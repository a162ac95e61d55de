"""Workloads: transformer shapes, and how they give a cascade's ranks their sizes.

A workload names the quantities of a transformer layer in words (``batch``, ``heads``, ``kv_heads``,
``head_dim``, ``value_dim``, ``model_dim``, ``ffn_dim``, ``keys``, ``queries``). A cascade says which
of its ranks is which in its ``workload`` line (``workload M=keys P=queries E=head_dim``), so sizes
never depend on a rank's letter. Explicit sizes (``--size N=4096``) override both; a rank that gets
no size from either is an error, never a silent default.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path

from ..einsum import Cascade, CascadeError, resolve_sizes
from ..einsum._ir import WORKLOAD_FIELDS
from ..units import QuantityError, count
from ._spec import DATA_DIR, ArchError

__all__ = ["Workload", "workloads", "load_workload", "parse_seq", "seq_label", "BoundSizes", "bind_sizes"]


def parse_seq(text) -> int:
    """A sequence length: ``1K`` -> 1024, ``64K`` -> 65536, ``1M`` -> 1048576, ``4096`` -> 4096.

    Examples
    --------
    >>> parse_seq("64K"), parse_seq("1M"), parse_seq(512)
    (65536, 1048576, 512)
    """
    try:
        n = count(text, "sequence length")
    except QuantityError as exc:
        raise ArchError(str(exc)) from None
    if n <= 0:
        raise ArchError(f"sequence length must be positive, not {text!r}")
    return n


def seq_label(n: int) -> str:
    """The artifact's labels: 1K ... 1M."""
    if n >= 1 << 20 and n % (1 << 20) == 0:
        return f"{n >> 20}M"
    if n >= 1 << 10 and n % (1 << 10) == 0:
        return f"{n >> 10}K"
    return str(n)


@dataclass(frozen=True)
class Workload:
    """A transformer layer's shape, plus sizes given by rank name for what a shape does not name.

    ``kv_heads`` 0 means as many as ``heads``; ``value_dim`` 0 means ``head_dim``. ``sizes`` and
    ``params`` are (name, value) pairs by the cascade's own rank and parameter names; they win over
    the cascade's workload line.
    """

    name: str
    batch: int = 1
    heads: int = 1
    kv_heads: int = 0
    head_dim: int = 64
    value_dim: int = 0
    model_dim: int = 0
    ffn_dim: int = 0
    keys: int = 0
    queries: int = 0
    description: str = ""
    sizes: tuple = ()

    def with_seq(self, seq: int, queries: int | None = None) -> Workload:
        """Self-attention (keys = queries = seq), or cross attention/decode with ``queries`` queries."""
        return replace(self, keys=seq, queries=seq if queries is None else queries)

    def with_sizes(self, sizes: dict) -> Workload:
        """The workload with explicit sizes (by rank or parameter name) added or replaced."""
        merged = dict(self.sizes)
        merged.update(sizes)
        return replace(self, sizes=tuple(sorted(merged.items())))

    def fields(self) -> dict[str, int]:
        """Every workload field with the defaults filled in (kv_heads, value_dim)."""
        kv = self.kv_heads or self.heads
        if kv <= 0 or self.heads % kv:
            raise ArchError(f"workload {self.name}: {self.heads} heads cannot share {kv} key/value heads evenly")
        return {"batch": self.batch, "heads": self.heads, "kv_heads": kv, "head_dim": self.head_dim,
                "value_dim": self.value_dim or self.head_dim, "model_dim": self.model_dim, "ffn_dim": self.ffn_dim,
                "keys": self.keys, "queries": self.queries}

    @property
    def label(self) -> str:
        return f"{self.name}-{seq_label(self.keys)}" if self.keys else self.name


def workloads(path: Path | str = DATA_DIR / "workloads.yaml") -> dict[str, Workload]:
    """The built-in workloads (BERT, TrXL, T5, XLM) or those of a YAML file."""
    path = Path(path)
    try:
        mtime = path.stat().st_mtime_ns
    except FileNotFoundError:
        raise ArchError(f"cannot read workloads {path}: no such file") from None
    return dict(_workloads(path, mtime))


@lru_cache(maxsize=16)
def _workloads(path: Path, mtime: int) -> tuple:
    from .._cache import code_version, memo

    return memo("specs", f"workloads\n{path}\n{code_version()}", lambda: (_read_workloads(path), [path]))


def _read_workloads(path: Path) -> tuple:
    from ..schema import load_yaml_file, validate
    from ._files import WorkloadFile

    data, marks, file = load_yaml_file(path, "workloads", ArchError)
    m = validate(WorkloadFile, data, marks, file, ArchError)
    out = []
    for name, w in m.workloads.items():
        d = w.model_dump()
        sizes = tuple(sorted(d.pop("sizes").items()))
        out.append((name, Workload(name=name, sizes=sizes, **d)))
    if not out:
        raise ArchError(f"{file}: no workloads (write `workloads: {{NAME: {{batch: 1, heads: 8, ...}}}}`)")
    return tuple(out)


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


# ------------------------------------------------------------------------------------------------
# binding a workload to a cascade's ranks
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BoundSizes:
    """A cascade's sizes for one workload: every rank and parameter, the independent instances the
    cascade is run for (batch x heads its ranks do not cover), and where each number came from."""

    sizes: dict
    instances: int
    origin: dict            # name -> "workload: keys", "--size", "mapping: ...", "derived", "cascade default"

    def describe(self) -> str:
        parts = [f"{k}={v} ({self.origin.get(k, '?')})" for k, v in self.sizes.items()]
        return ", ".join(parts) + f"; instances {self.instances}"


def bind_sizes(cascade: Cascade, workload: Workload, mapping: dict[str, int] | None = None) -> BoundSizes:
    """Sizes of ``cascade``'s ranks and parameters for ``workload``.

    Each rank takes, in order: an explicit size of the workload (``--size``); a size the mapping
    fixes (a tile mapped onto the array's rows, ``mapping``); the cascade's ``workload`` line.
    Parameters fall back to the cascade's default, reported as such. Instances are the workload's
    batch x heads divided by what the cascade's ranks cover.

    Raises
    ------
    ArchError
        A rank with no size from any of these, a workload line that does not divide evenly, a size
        that does not fit its partition.

    Examples
    --------
    >>> from einforge.einsum import load_cascade
    >>> b = bind_sizes(load_cascade("attention-1pass"), load_workload("BERT", "4K"), {"M0": 256})
    >>> b.sizes["M"], b.sizes["P"], b.sizes["M0"], b.sizes["M1"], b.instances
    (4096, 4096, 256, 16, 768)
    """
    b = _bind_sizes(cascade, workload, tuple(sorted((mapping or {}).items())))
    return BoundSizes(dict(b.sizes), b.instances, dict(b.origin))      # the caller's own dicts


@lru_cache(maxsize=4096)
def _bind_sizes(cascade: Cascade, workload: Workload, mapping: tuple) -> BoundSizes:
    """:func:`bind_sizes` for value-equal arguments, worked out once (a layer prices the same
    operator shapes over and over)."""
    mapping = dict(mapping)
    fields = workload.fields()
    explicit = dict(workload.sizes)
    decls = {r.name: r for r in cascade.ranks}
    unknown = sorted(set(explicit) - set(decls))
    if unknown:
        raise ArchError(f"{cascade.name} has no rank or parameter {', '.join(unknown)} "
                        f"(its ranks: {', '.join(cascade.rank_names)})")
    line = dict(cascade.workload)
    given: dict[str, int] = {}
    origin: dict[str, str] = {}
    for r in cascade.ranks:
        if r.derived:
            continue
        number = float if r.real else int           # real-valued parameters stay real
        if r.name in explicit:
            given[r.name], origin[r.name] = number(explicit[r.name]), "given"
        elif mapping and r.name in mapping:
            given[r.name], origin[r.name] = int(mapping[r.name]), "mapping"
        elif r.name in line:
            try:
                v = line[r.name].evaluate(fields)
            except CascadeError as exc:
                raise ArchError(f"workload {workload.label}: {cascade.name}'s {r.name}={line[r.name].text()}: "
                                f"{exc.message}") from None
            if v != int(v) or v <= 0:
                raise ArchError(f"workload {workload.label}: {cascade.name}'s {r.name}={line[r.name].text()} is "
                                f"{v:g}, not a positive whole number")
            given[r.name], origin[r.name] = int(v), f"workload: {line[r.name].text()}"
        elif r.param and r.size is not None:
            given[r.name], origin[r.name] = number(r.size.value), "cascade default"
    missing = [r.name for r in cascade.ranks if not r.derived and r.name not in given]
    if missing:
        roles = ", ".join(missing)
        raise ArchError(
            f"{cascade.name}: {'rank' if len(missing) == 1 else 'ranks'} {roles} "
            f"{'gets' if len(missing) == 1 else 'get'} no size from workload {workload.label}. Give "
            f"{'it' if len(missing) == 1 else 'them'} one with --size {missing[0]}=N, or say in the cascade which "
            f"workload field {'it is' if len(missing) == 1 else 'they are'} (e.g. `workload {missing[0]}=keys`; "
            f"fields: {', '.join(WORKLOAD_FIELDS)})")
    try:
        sizes = resolve_sizes(cascade, given)
    except CascadeError as exc:
        raise ArchError(f"workload {workload.label} on {cascade.name}: {exc.message}"
                        + (f" ({exc.hint})" if exc.hint else "")) from None
    for r in cascade.ranks:
        if r.derived:
            origin[r.name] = f"derived: {r.size.text()}"
    return BoundSizes(sizes, _instances(cascade, fields, workload), origin)


def _instances(cascade: Cascade, fields: dict, workload: Workload) -> int:
    """batch x heads over what the workload line's ranks cover of them (a cascade without a
    workload line is one instance: nothing attaches it to the workload's batch or heads)."""
    if not cascade.workload:
        return 1
    instance_fields = ("batch", "heads", "kv_heads")
    only = {k: (v if k in instance_fields else 1) for k, v in fields.items()}
    # a rank sized by other fields alone (I=head_dim/2) covers none of the instances
    covered = math.prod(expr.evaluate(only) for _, expr in cascade.workload
                        if expr.variables() & set(instance_fields))
    total = fields["batch"] * fields["heads"]
    inst = total / covered
    if inst < 1 or not float(inst).is_integer():
        raise ArchError(f"{cascade.name}'s ranks cover {covered:g} of workload {workload.label}'s "
                        f"{total} batch x heads, which does not divide it")
    return int(inst)
