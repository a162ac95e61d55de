"""Architecture descriptions: dataclasses, YAML loading, and the energy and area tables.

An architecture is a DRAM, a global buffer and named PE arrays (``2d``: rows x cols, ``1d``:
lanes) whose PEs have primitive units (``mac``, ``add``, ``max``, ``div``, ``exp``). How much an
operator costs on an array follows from the operator table's recipes and the units present.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace
from functools import cached_property, lru_cache
from pathlib import Path

from ..units import QuantityError, quantity

__all__ = [
    "ArchError", "PEArray", "GlobalBuffer", "Architecture", "EnergyTable", "AreaTable",
    "load_architecture", "architectures", "DATA_DIR", "parse_quantity",
]

DATA_DIR = Path(__file__).parent / "data"


class ArchError(Exception):
    """An architecture, workload, binding or mapping that cannot be used; the message says why."""


def parse_quantity(value, dimension: str = "bytes", what: str = "quantity") -> float:
    """A quantity with a unit, in the base unit of ``dimension`` (see :mod:`einforge.units`).

    Examples
    --------
    >>> parse_quantity("16MiB"), parse_quantity("940MHz", "hertz"), parse_quantity("1.5kB")
    (16777216.0, 940000000.0, 1500.0)
    """
    try:
        return quantity(value, dimension, what)
    except QuantityError as exc:
        raise ArchError(str(exc)) from None


@dataclass(frozen=True)
class PEArray:
    """A PE array. A 1D array has ``rows == 1`` and ``cols`` lanes."""

    name: str
    rows: int
    cols: int
    units: tuple[str, ...]
    rf_depth: int = 0
    issue: str = "sequential"     # sequential: one action per cycle; pipelined: units in parallel
    shared_rf: int = 0            # words of a register file shared by the array (FuseMax's 1D RF)
    fill_drain: bool = False      # charge the skew fill and drain (rows + cols - 2) of every tile
    skips_filtered: bool = True   # points a filter removes cost no cycles (else they run, masked)
    row_drain: bool = False       # row reductions reach the 1D array `rows` cycles after issue, and a
                                  # sequential schedule waits for every one of them (no cross-tile overlap)

    @property
    def pes(self) -> int:
        return self.rows * self.cols

    @property
    def dims(self) -> tuple[tuple[str, int], ...]:
        return (("rows", self.rows), ("cols", self.cols)) if self.rows > 1 else (("cols", self.cols),)


@dataclass(frozen=True)
class GlobalBuffer:
    capacity: int                 # bytes
    width_bits: int = 4096
    banks: int = 1


@dataclass(frozen=True)
class EnergyTable:
    """Energy per action (pJ), read from a data file that names its sources."""

    name: str
    compute: tuple[tuple[str, float], ...]
    dram_per_byte: float
    buffer_width_words: int
    buffer_points: tuple[tuple[float, float, float], ...]   # (capacity bytes, read, write) per access
    rf: tuple[tuple[str, float], ...]

    def unit(self, name: str) -> float:
        for k, v in self.compute:
            if k == name:
                return v
        raise ArchError(f"energy table {self.name} has no energy for unit {name!r}")

    @cached_property
    def _prices(self) -> dict:
        """Per-access prices worked out once per table (a frozen value: they cannot go stale)."""
        return {}

    def buffer_per_word(self, capacity: float) -> tuple[float, float]:
        """(read, write) pJ per word for a buffer of ``capacity`` bytes (log-linear interpolation)."""
        key = ("buffer", capacity)
        if key not in self._prices:
            self._prices[key] = self._buffer_per_word(capacity)
        return self._prices[key]

    def _buffer_per_word(self, capacity: float) -> tuple[float, float]:
        pts = sorted(self.buffer_points)
        w = self.buffer_width_words
        if len(pts) == 1:
            return pts[0][1] / w, pts[0][2] / w
        x = math.log2(capacity)
        for (c0, r0, w0), (c1, r1, w1) in zip(pts, pts[1:]):
            if x <= math.log2(c1) or (c1, r1, w1) == pts[-1]:
                t = (x - math.log2(c0)) / (math.log2(c1) - math.log2(c0))
                # energy per access grows geometrically with capacity in CACTI's range
                r = r0 * (r1 / r0) ** t
                wr = w0 * (w1 / w0) ** t
                return r / w, wr / w
        raise AssertionError

    def rf_access(self, depth: int) -> tuple[float, float]:
        """(read, write) pJ of one register-file access of the given depth."""
        key = ("rf", depth)
        if key not in self._prices:
            self._prices[key] = self._rf_access(depth)
        return self._prices[key]

    def _rf_access(self, depth: int) -> tuple[float, float]:
        d = dict(self.rf)
        entries = max(d["min_entries"], depth)
        adder = d["adder_per_bit"] * max(1, math.ceil(math.log2(max(2, depth))))
        return d["read_base"] + entries * d["per_entry"] + adder, entries * d["per_entry"] + adder


@dataclass(frozen=True)
class AreaTable:
    name: str
    compute: tuple[tuple[str, float], ...]
    link: float
    rf: tuple[tuple[str, float], ...]
    buffer_points: tuple[tuple[int, int, float], ...]

    def unit(self, name: str) -> float:
        for k, v in self.compute:
            if k == name:
                return v
        raise ArchError(f"area table {self.name} has no area for unit {name!r}")

    def rf_area(self, depth: int) -> float:
        if depth <= 0:
            return 0.0
        d = dict(self.rf)
        entries = max(d["min_entries"], depth)
        return d["bits"] * entries * d["per_bit"] + entries * d["per_entry"] + d["adder_per_bit"] * math.ceil(math.log2(max(2, depth)))

    def buffer_area(self, capacity_bytes: float, width_bits: int) -> float:
        """CACTI area of a buffer: a table point when the shape is known, else a power-law fit."""
        depth = capacity_bytes * 8 / width_bits
        for w, dp, a in self.buffer_points:
            if w == width_bits and abs(dp - depth) < 0.5:
                return a
        a, bw, bd = _buffer_fit(self.buffer_points)
        return a * width_bits ** bw * depth ** bd


@lru_cache(maxsize=8)
def _buffer_fit(points):
    """Least squares of log area = c0 + c1 log width + c2 log depth: the 3x3 normal equations,
    solved by Cramer's rule (three coefficients do not need numpy, which start-up would pay for)."""
    rows = [(1.0, math.log(w), math.log(d)) for w, d, _ in points]
    ys = [math.log(a) for _, _, a in points]
    ata = [[sum(r[i] * r[j] for r in rows) for j in range(3)] for i in range(3)]
    aty = [sum(r[i] * y for r, y in zip(rows, ys)) for i in range(3)]

    def det(m):
        return (m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1]) - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
                + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0]))

    d = det(ata)
    if abs(d) < 1e-12:
        raise ArchError("the area table's buffer points do not determine a fit (give at least 3 distinct shapes)")
    coef = [det([[aty[i] if j == k else ata[i][j] for j in range(3)] for i in range(3)]) / d for k in range(3)]
    return math.exp(coef[0]), coef[1], coef[2]


@dataclass(frozen=True)
class Architecture:
    """A spatial accelerator: DRAM, global buffer, PE arrays, clock and word size."""

    name: str
    clock_hz: float
    word_bytes: float               # bits / 8: a 12-bit word is 1.5 bytes
    dram_bandwidth: float          # bytes per second
    buffer: GlobalBuffer
    arrays: tuple[PEArray, ...]
    energy: EnergyTable
    area: AreaTable
    description: str = ""
    source: str = field(default="", compare=False)
    # host time to start one kernel (one cascade's evaluation) and see it finish, serial with the work:
    # a GPU timed kernel by kernel pays it; an accelerator that runs a cascade as one program does not
    launch_overhead_s: float = 0.0
    # the same for the kernels of one cascade family, (family, seconds), where the host launches that
    # kind otherwise (a library call for a matrix product, a compiled kernel for a normalization)
    launch_overhead_by_family: tuple[tuple[str, float], ...] = ()

    def launch_overhead_for(self, family: str) -> float:
        """Seconds to launch one kernel of a cascade of ``family``: the family's own figure when the
        architecture gives one, else :attr:`launch_overhead_s`."""
        for f, seconds in self.launch_overhead_by_family:
            if f == family:
                return seconds
        return self.launch_overhead_s

    def array(self, name: str) -> PEArray:
        for a in self.arrays:
            if a.name == name:
                return a
        raise ArchError(f"architecture {self.name} has no array {name!r} (it has {', '.join(a.name for a in self.arrays)})")

    def parts(self) -> dict[str, str]:
        """Which array plays which part, by shape: ``{"2d": name, "1d": name}`` (the PE grid and the
        row of lanes). Array names are the architecture's own and mean nothing to the model."""
        grids = [a.name for a in self.arrays if a.rows > 1]
        rows = [a.name for a in self.arrays if a.rows == 1]
        if len(grids) > 1 or len(rows) > 1:
            raise ArchError(f"architecture {self.name} has {len(grids)} PE grids and {len(rows)} rows of lanes; "
                            "the cost model maps a cascade onto one grid and one row of lanes")
        return {**({"2d": grids[0]} if grids else {}), **({"1d": rows[0]} if rows else {})}

    def part(self, role: str) -> PEArray:
        """The PE grid (``"2d"``) or the row of lanes (``"1d"``)."""
        parts = self.parts()
        if role not in parts:
            raise ArchError(f"architecture {self.name} has no {'PE grid' if role == '2d' else 'row of lanes'}")
        return self.array(parts[role])

    def with_part(self, role: str, **changes) -> Architecture:
        return self.with_array(self.part(role).name, **changes)

    def with_array(self, name: str, **changes) -> Architecture:
        return replace(self, arrays=tuple(replace(a, **changes) if a.name == name else a for a in self.arrays))

    def with_buffer(self, **changes) -> Architecture:
        return replace(self, buffer=replace(self.buffer, **changes))

    def area_breakdown(self) -> dict[str, float]:
        """um^2 per component: each array (PEs with their units and register file), the buffer."""
        return dict(self._area_parts)

    # Worked out once per architecture (a frozen value: the cache cannot go stale; equality and
    # hashing see only the fields)
    @cached_property
    def _area_parts(self) -> dict[str, float]:
        out = {}
        for a in self.arrays:
            pe = sum(self.area.unit(u) for u in a.units) + self.area.rf_area(a.rf_depth)
            out[f"array_{a.name}"] = a.pes * pe + a.cols * self.area.link
            if a.shared_rf:
                out[f"shared_rf_{a.name}"] = self.area.rf_area(a.shared_rf)
        out["global_buffer"] = self.area.buffer_area(self.buffer.capacity, self.buffer.width_bits)
        return out

    @cached_property
    def area_um2(self) -> float:
        return sum(self._area_parts.values())

    def extrapolations(self) -> tuple[str, ...]:
        """Where this architecture's energy or area comes from outside the tables' measured range."""
        return self._extrapolations

    @cached_property
    def _extrapolations(self) -> tuple[str, ...]:
        out = []
        caps = [c for c, _, _ in self.energy.buffer_points]
        cap = self.buffer.capacity
        if not min(caps) <= cap <= max(caps):
            out.append(f"global-buffer energy extrapolated: {cap / 2**20:g} MiB is outside the table's "
                       f"measured {min(caps) / 2**20:g}-{max(caps) / 2**20:g} MiB ({self.energy.name})")
        widths = [w for w, _, _ in self.area.buffer_points]
        depths = [d for _, d, _ in self.area.buffer_points]
        depth = cap * 8 / self.buffer.width_bits
        if not (min(widths) <= self.buffer.width_bits <= max(widths) and min(depths) <= depth <= max(depths)):
            out.append(f"global-buffer area extrapolated: {self.buffer.width_bits} bits x {depth:g} rows is outside "
                       f"the table's measured {min(widths)}-{max(widths)} bits x {min(depths)}-{max(depths)} rows "
                       f"({self.area.name})")
        return tuple(out)


# ------------------------------------------------------------------------------------------------
# files: one schema per kind, quantities with units, errors with file:line:col
# ------------------------------------------------------------------------------------------------


def _load(path: Path, model, what: str):
    from ..schema import load_yaml_file, validate

    data, marks, file = load_yaml_file(path, what, ArchError)
    if not isinstance(data, dict):
        raise ArchError(f"{file}: {what} must be a YAML mapping of keys to values")
    return validate(model, data, marks, file, ArchError)


@lru_cache(maxsize=16)
def _energy_table(path: Path, mtime: int) -> EnergyTable:
    from ._files import EnergySpec

    d = _load(path, EnergySpec, "energy table")
    gb = d.global_buffer
    rf = d.register_file.model_dump(exclude={"source"})
    return EnergyTable(d.name, tuple((k, float(v.energy)) for k, v in d.compute.items()), float(d.dram.per_byte),
                       gb.width_words, tuple((p.capacity, float(p.read), float(p.write)) for p in gb.points),
                       tuple((k, float(v)) for k, v in rf.items()))


@lru_cache(maxsize=16)
def _area_table(path: Path, mtime: int) -> AreaTable:
    from ._files import AreaSpec

    d = _load(path, AreaSpec, "area table")
    rf = d.register_file.model_dump(exclude={"source"})
    return AreaTable(d.name, tuple((k, float(v.area)) for k, v in d.compute.items()), float(d.link),
                     tuple((k, float(v)) for k, v in rf.items()),
                     tuple((p.width, p.depth, float(p.area)) for p in d.global_buffer.points))


def _table_file(ref: str, base: Path, what: str, where: str) -> Path:
    """A table named by the architecture: a file relative to it, or a built-in table's file name."""
    p = (base / ref).resolve()
    if p.is_file():
        return p
    if (DATA_DIR / ref).is_file():
        return DATA_DIR / ref
    raise ArchError(f"{where}{what} table {ref!r}: no such file next to the architecture "
                    f"and no built-in table of that name (built-in: {', '.join(_builtin_tables())})")


def _builtin_tables() -> list[str]:
    return sorted(p.name for p in DATA_DIR.glob("*_45nm.yaml"))


def architecture_from_spec(d, base: Path, where: str = "") -> Architecture:
    arrays = tuple(
        PEArray(name, 1 if a.lanes else a.rows, a.lanes or a.cols, tuple(a.units), a.rf_depth, a.issue,
                a.shared_rf, a.fill_drain, a.skips_filtered, a.row_drain)
        for name, a in d.arrays.items())
    ep = _table_file(d.energy, base, "energy", where)
    ap = _table_file(d.area, base, "area", where)
    energy = _energy_table(ep, ep.stat().st_mtime_ns)
    area = _area_table(ap, ap.stat().st_mtime_ns)
    for a in arrays:
        for u in a.units:
            energy.unit(u) if u in dict(energy.compute) else _missing_unit(where, a.name, u, "energy", ep)
            area.unit(u) if u in dict(area.compute) else _missing_unit(where, a.name, u, "area", ap)
    return Architecture(
        name=d.name, clock_hz=d.clock, word_bytes=d.word_bits / 8, dram_bandwidth=d.dram.bandwidth,
        buffer=GlobalBuffer(int(d.global_buffer.capacity), d.global_buffer.width_bits, d.global_buffer.banks),
        arrays=arrays, energy=energy, area=area, description=d.description, source=str(base),
        launch_overhead_s=d.launch_overhead or 0.0,
        launch_overhead_by_family=tuple(sorted((d.launch_overhead_by_family or {}).items())),
    )


def _missing_unit(where, array, unit, what, table):
    raise ArchError(f"{where}array {array}: unit {unit!r} has no {what} in {table}; add it to the table "
                    "(with its source) or use a unit the table has")


def architectures() -> dict[str, Path]:
    """Built-in architecture names and their files."""
    return dict(_architectures(tuple((p, p.stat().st_mtime_ns) for p in sorted(DATA_DIR.glob("*.yaml")))))


@lru_cache(maxsize=4)
def _architectures(files) -> tuple:
    # a built-in file is an architecture when it has a top-level `arrays:` key (read as text: the
    # list is needed before any file is parsed)
    return tuple((p.stem, p) for p, _ in files if re.search(r"^arrays\s*:", p.read_text(), re.M))


@lru_cache(maxsize=32)
def _load_file(f: Path, mtime: int) -> Architecture:
    from .._cache import code_version, memo

    return memo("specs", f"architecture\n{f}\n{code_version()}", lambda: _read_architecture(f))


def _read_architecture(f: Path) -> tuple[Architecture, list[Path]]:
    """The architecture of a file, and the files it was made from (it and its tables)."""
    from ._files import ArchSpec

    d = _load(f, ArchSpec, "architecture")
    arch = architecture_from_spec(d, f.parent, f"{f}: ")
    return arch, [f, _table_file(d.energy, f.parent, "energy", ""), _table_file(d.area, f.parent, "area", "")]


def load_architecture(name_or_file: str | Path) -> Architecture:
    """A built-in architecture (``fusemax``, ``flat``) or a YAML file.

    Raises
    ------
    ArchError
        Unknown name, unreadable file, or a missing/invalid field (named with the file).
    """
    p = Path(name_or_file)
    if p.is_file():
        p = p.resolve()
        return _load_file(p, p.stat().st_mtime_ns)
    builtin = architectures()
    if str(name_or_file) in builtin:
        f = builtin[str(name_or_file)]
        return _load_file(f, f.stat().st_mtime_ns)
    raise ArchError(f"no built-in architecture named {name_or_file!r} and no such file "
                    f"(built-in: {', '.join(builtin)})")
