"""Architecture descriptions: dataclasses, YAML loading, and the energy and area tables.

An architecture is a DRAM, a global buffer and named PE arrays (``2d``: rows x cols, ``1d``:
lanes) whose PEs have primitive units (``mac``, ``add``, ``max``, ``div``, ``exp``). How much an
operator costs on an array follows from the operator table's recipes and the units present.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path

import yaml

__all__ = [
    "ArchError", "PEArray", "GlobalBuffer", "Architecture", "EnergyTable", "AreaTable",
    "load_architecture", "architectures", "DATA_DIR", "parse_quantity",
]

DATA_DIR = Path(__file__).parent / "data"


class ArchError(Exception):
    """An architecture, workload, binding or mapping that cannot be used; the message says why."""


_UNITS = {
    "": 1, "k": 1e3, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12,
    "Ki": 2 ** 10, "Mi": 2 ** 20, "Gi": 2 ** 30, "Ti": 2 ** 40,
}


def parse_quantity(value, what: str = "quantity", where: str = "") -> float:
    """``"940MHz"`` -> 9.4e8, ``"16MiB"`` -> 16777216, ``"400GiB/s"`` -> 429496729600, ``256`` -> 256.

    Examples
    --------
    >>> parse_quantity("16MiB"), parse_quantity("940MHz"), parse_quantity("1.5KB")
    (16777216.0, 940000000.0, 1500.0)
    """
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][+-]?\d+)?)\s*(Ki|Mi|Gi|Ti|[kKMGT]?)\s*(B|Hz|B/s|bit|b)?\s*", str(value))
    if not m:
        raise ArchError(f"{where}{what} {value!r} is not a number such as 16MiB, 940MHz or 400GiB/s")
    return float(m.group(1)) * _UNITS[m.group(2)]


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

    def buffer_per_word(self, capacity: float) -> tuple[float, float]:
        """(read, write) pJ per word for a buffer of ``capacity`` bytes (log-linear interpolation)."""
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
    import numpy as np

    x = np.array([[1.0, math.log(w), math.log(d)] for w, d, _ in points])
    y = np.array([math.log(a) for _, _, a in points])
    coef, *_ = np.linalg.lstsq(x, y, rcond=None)
    return math.exp(coef[0]), coef[1], coef[2]


@dataclass(frozen=True)
class Architecture:
    """A spatial accelerator: DRAM, global buffer, PE arrays, clock and word size."""

    name: str
    clock_hz: float
    word_bytes: int
    dram_bandwidth: float          # bytes per second
    buffer: GlobalBuffer
    arrays: tuple[PEArray, ...]
    energy: EnergyTable
    area: AreaTable
    description: str = ""
    source: str = field(default="", compare=False)

    def array(self, name: str) -> PEArray:
        for a in self.arrays:
            if a.name == name:
                return a
        raise ArchError(f"architecture {self.name} has no array {name!r} (it has {', '.join(a.name for a in self.arrays)})")

    def with_array(self, name: str, **changes) -> Architecture:
        return replace(self, arrays=tuple(replace(a, **changes) if a.name == name else a for a in self.arrays))

    def with_buffer(self, **changes) -> Architecture:
        return replace(self, buffer=replace(self.buffer, **changes))

    def area_breakdown(self) -> dict[str, float]:
        """um^2 per component: each array (PEs with their units and register file), the buffer."""
        out = {}
        for a in self.arrays:
            pe = sum(self.area.unit(u) for u in a.units) + self.area.rf_area(a.rf_depth)
            out[f"array_{a.name}"] = a.pes * pe + a.cols * self.area.link
            if a.shared_rf:
                out[f"shared_rf_{a.name}"] = self.area.rf_area(a.shared_rf)
        out["global_buffer"] = self.area.buffer_area(self.buffer.capacity, self.buffer.width_bits)
        return out

    @property
    def area_um2(self) -> float:
        return sum(self.area_breakdown().values())


def _load_yaml(path: Path, what: str):
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ArchError(f"cannot read {what} {path}: no such file") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}: " if mark else f"{path}: "
        raise ArchError(f"{where}invalid YAML: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(data, dict):
        raise ArchError(f"{path}: {what} must be a YAML mapping")
    return data


def _need(d: dict, key: str, where: str):
    if key not in d:
        raise ArchError(f"{where}missing `{key}`")
    return d[key]


@lru_cache(maxsize=16)
def _energy_table(path: Path) -> EnergyTable:
    d = _load_yaml(path, "energy table")
    w = f"{path}: "
    comp = tuple((k, float(_need(v, "energy", f"{w}compute.{k}: "))) for k, v in _need(d, "compute", w).items())
    gb = _need(d, "global_buffer", w)
    pts = tuple((parse_quantity(p["capacity"], "capacity", w), float(p["read"]), float(p["write"]))
                for p in _need(gb, "points", w))
    rf = tuple((k, float(v)) for k, v in _need(d, "register_file", w).items() if k != "source")
    return EnergyTable(d.get("name", path.stem), comp, float(_need(_need(d, "dram", w), "per_byte", w)),
                       int(gb.get("width_words", 256)), pts, rf)


@lru_cache(maxsize=16)
def _area_table(path: Path) -> AreaTable:
    d = _load_yaml(path, "area table")
    w = f"{path}: "
    comp = tuple((k, float(_need(v, "area", f"{w}compute.{k}: "))) for k, v in _need(d, "compute", w).items())
    rf = tuple((k, float(v)) for k, v in _need(d, "register_file", w).items() if k != "source")
    pts = tuple((int(p["width"]), int(p["depth"]), float(p["area"])) for p in _need(d["global_buffer"], "points", w))
    return AreaTable(d.get("name", path.stem), comp, float(d.get("link", 0.0)), rf, pts)


_KNOWN_UNITS = {"mac", "mul", "add", "max", "div", "exp", "log", "sqrt", "tanh", "sigmoid"}


def _array_from(name: str, d: dict, where: str) -> PEArray:
    if not isinstance(d, dict):
        raise ArchError(f"{where}arrays.{name} must be a mapping")
    if "lanes" in d:
        rows, cols = 1, int(d["lanes"])
    else:
        rows, cols = int(_need(d, "rows", f"{where}arrays.{name}: ")), int(_need(d, "cols", f"{where}arrays.{name}: "))
    if rows <= 0 or cols <= 0:
        raise ArchError(f"{where}arrays.{name}: rows, cols and lanes must be positive")
    units = tuple(_need(d, "units", f"{where}arrays.{name}: "))
    for u in units:
        if u not in _KNOWN_UNITS:
            raise ArchError(f"{where}arrays.{name}: unknown unit {u!r}; units are {', '.join(sorted(_KNOWN_UNITS))}")
    issue = d.get("issue", "sequential")
    if issue not in ("sequential", "pipelined"):
        raise ArchError(f"{where}arrays.{name}: issue must be sequential or pipelined, not {issue!r}")
    return PEArray(name, rows, cols, units, int(d.get("rf_depth", 0)), issue, int(d.get("shared_rf", 0)),
                   bool(d.get("fill_drain", False)), bool(d.get("skips_filtered", True)),
                   bool(d.get("row_drain", False)))


def architecture_from_dict(d: dict, base: Path = DATA_DIR, where: str = "") -> Architecture:
    """Build an :class:`Architecture` from a parsed YAML mapping (see ``data/fusemax.yaml``)."""
    for k in ("name", "clock", "word_bits", "dram", "global_buffer", "arrays"):
        _need(d, k, where)
    arrays = tuple(_array_from(n, a, where) for n, a in d["arrays"].items())
    gb = d["global_buffer"]
    energy_path = (base / d.get("energy", "energy_45nm.yaml")).resolve()
    area_path = (base / d.get("area", "area_45nm.yaml")).resolve()
    if not energy_path.exists():
        energy_path = DATA_DIR / Path(d.get("energy", "energy_45nm.yaml")).name
    if not area_path.exists():
        area_path = DATA_DIR / Path(d.get("area", "area_45nm.yaml")).name
    return Architecture(
        name=str(d["name"]),
        clock_hz=parse_quantity(d["clock"], "clock", where),
        word_bytes=int(d["word_bits"]) // 8,
        dram_bandwidth=parse_quantity(_need(d["dram"], "bandwidth", f"{where}dram: "), "bandwidth", where),
        buffer=GlobalBuffer(int(parse_quantity(_need(gb, "capacity", f"{where}global_buffer: "), "capacity", where)),
                            int(gb.get("width_bits", 4096)), int(gb.get("banks", 1))),
        arrays=arrays,
        energy=_energy_table(energy_path),
        area=_area_table(area_path),
        description=str(d.get("description", "")),
        source=str(base),
    )


def architectures() -> dict[str, Path]:
    """Built-in architecture names and their files."""
    return dict(_architectures(tuple((p, p.stat().st_mtime_ns) for p in sorted(DATA_DIR.glob("*.yaml")))))


@lru_cache(maxsize=4)
def _architectures(files) -> tuple:
    return tuple((p.stem, p) for p, _ in files if "arrays" in (yaml.safe_load(p.read_text()) or {}))


@lru_cache(maxsize=32)
def _load_builtin(f: Path, mtime: int) -> Architecture:
    return architecture_from_dict(_load_yaml(f, "architecture"), f.parent, f"{f}: ")


def load_architecture(name_or_file: str | Path) -> Architecture:
    """A built-in architecture (``fusemax``, ``flat``) or a YAML file.

    Raises
    ------
    ArchError
        Unknown name, unreadable file, or a missing/invalid field (named with the file).
    """
    p = Path(name_or_file)
    if p.is_file():
        d = _load_yaml(p, "architecture")
        return architecture_from_dict(d, p.parent, f"{p}: ")
    builtin = architectures()
    if str(name_or_file) in builtin:
        f = builtin[str(name_or_file)]
        return _load_builtin(f, f.stat().st_mtime_ns)
    raise ArchError(f"no built-in architecture named {name_or_file!r} and no such file "
                    f"(built-in: {', '.join(builtin)})")
