"""The YAML schemas of einforge's files (pydantic models): architectures, energy and area tables,
workloads and bindings.

Imported only when a file is validated: a command that reads only built-in files it has read
before takes their contents from the cache (``einforge._cache``) and never loads pydantic.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeInt,
    PositiveInt,
    StrictInt,
    StrictStr,
    StringConstraints,
    field_validator,
    model_validator,
)

from ..units import Quantity, count

__all__ = ["ArchSpec", "EnergySpec", "AreaSpec", "WorkloadFile", "BindingSpec"]

_BYTES, _BANDWIDTH, _CLOCK, _TIME = Quantity("bytes"), Quantity("bytes/second"), Quantity("hertz"), Quantity("seconds")
_Text = Annotated[str, StringConstraints(min_length=1)]
_Positive = Annotated[float, Field(gt=0)] | Annotated[int, Field(gt=0)]
_NonNegative = Annotated[float, Field(ge=0)] | Annotated[int, Field(ge=0)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class ArraySpec(Strict):
    rows: PositiveInt | None = None
    cols: PositiveInt | None = None
    lanes: PositiveInt | None = None
    units: list[Literal["mac", "mul", "add", "max", "div", "divstep", "exp", "log", "sqrt", "tanh", "sigmoid"]]
    rf_depth: NonNegativeInt = 0
    issue: Literal["sequential", "pipelined"] = "sequential"
    shared_rf: NonNegativeInt = 0
    fill_drain: bool = False
    skips_filtered: bool = True
    row_drain: bool = False

    @model_validator(mode="after")
    def _shape(self):
        if self.lanes is not None and (self.rows is not None or self.cols is not None):
            raise ValueError("give either lanes (a 1D array) or rows and cols (a 2D array), not both")
        if self.lanes is None and (self.rows is None or self.cols is None):
            raise ValueError("a 2D array needs rows and cols; a 1D array needs lanes")
        if not self.units:
            raise ValueError("an array needs at least one unit")
        return self


class BufferSpec(Strict):
    capacity: _BYTES
    width_bits: PositiveInt = 4096
    banks: PositiveInt = 1


class DramSpec(Strict):
    bandwidth: _BANDWIDTH


def _known_family(name: str) -> str:
    from ..einsum import library

    known = sorted({e.family for e in library().values() if e.family})
    if name not in known:
        raise ValueError(f"no cascade family {name!r}; families: {', '.join(known)}")
    return name


_FAMILY = Annotated[str, AfterValidator(_known_family)]


class ArchSpec(Strict):
    name: _Text
    description: str = ""
    clock: _CLOCK
    word_bits: Annotated[int, Field(ge=1, le=64)]
    dram: DramSpec
    global_buffer: BufferSpec
    arrays: dict[str, ArraySpec]
    launch_overhead: _TIME | None = None
    launch_overhead_by_family: dict[_FAMILY, _TIME] | None = None
    energy: str = "energy_45nm.yaml"
    area: str = "area_45nm.yaml"
    source: str = ""

    @model_validator(mode="after")
    def _arrays(self):
        if not self.arrays:
            raise ValueError("an architecture needs at least one array")
        return self



class ComputeEnergy(Strict):
    energy: _Positive
    source: _Text


class BufferPointEnergy(Strict):
    capacity: _BYTES
    read: _Positive
    write: _Positive


class BufferEnergy(Strict):
    width_words: PositiveInt = 256
    source: _Text
    points: Annotated[list[BufferPointEnergy], Field(min_length=1)]


class RegisterFileEnergy(Strict):
    read_base: float
    per_entry: float
    min_entries: PositiveInt
    adder_per_bit: float
    source: _Text


class DramEnergy(Strict):
    per_byte: Annotated[float, Field(gt=0)]
    source: _Text


class EnergySpec(Strict):
    name: str
    units: Literal["pJ"]
    source: _Text
    compute: dict[str, ComputeEnergy]
    dram: DramEnergy
    global_buffer: BufferEnergy
    register_file: RegisterFileEnergy


class ComputeArea(Strict):
    area: _NonNegative
    source: _Text


class BufferPointArea(Strict):
    width: PositiveInt
    depth: PositiveInt
    area: _Positive


class BufferArea(Strict):
    source: _Text
    points: Annotated[list[BufferPointArea], Field(min_length=1)]


class RegisterFileArea(Strict):
    per_bit: float
    bits: PositiveInt
    per_entry: float
    min_entries: PositiveInt
    adder_per_bit: float
    source: _Text


class AreaSpec(Strict):
    name: str
    units: Literal["um2"]
    source: _Text
    compute: dict[str, ComputeArea]
    link: float = 0.0
    link_source: str = ""
    register_file: RegisterFileArea
    global_buffer: BufferArea


class WorkloadModel(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    description: StrictStr = ""
    batch: StrictInt = Field(1, ge=1)
    heads: StrictInt = Field(1, ge=1)
    kv_heads: StrictInt = Field(0, ge=0)
    head_dim: StrictInt = Field(64, ge=1)
    value_dim: StrictInt = Field(0, ge=0)
    model_dim: StrictInt = Field(0, ge=0)
    ffn_dim: StrictInt = Field(0, ge=0)
    keys: int | str = 0
    queries: int | str = 0
    sizes: dict[str, int | str] = {}

    @field_validator("keys", "queries")
    @classmethod
    def _length(cls, v):
        return count(v, "length")

    @field_validator("sizes")
    @classmethod
    def _sizes(cls, v):
        return {k: count(n, k) for k, n in v.items()}


class WorkloadFile(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    workloads: dict[str, WorkloadModel]


class BindingSpec(BaseModel):
    """The fields of a binding file (see :class:`Binding`)."""

    model_config = ConfigDict(extra="forbid", strict=True)
    base: Literal["fusemax", "arch", "cascade", "flat", "unfused"] | None = None
    rule: Literal["tile", "product"] | None = None
    mapping: Literal["tiled", "flat", "unfused"] | None = None
    schedule: Literal["overlap", "sequential", "stages", "phases"] | None = None
    description: str | None = None
    arrays: dict[str, str] = {}
    spatial: dict[str, dict[Literal["rows", "cols"], str | list[str]]] = {}
    stages: list[dict[str, str | list[str]]] = []
    issue: dict[str, Literal["sequential", "pipelined"]] = {}
    buffer_share: Annotated[float, Field(gt=0, le=1)] | Annotated[int, Field(gt=0, le=1)] | None = None
    drain: bool | None = None
    einsum_spatial: dict[str, dict[Literal["rows", "cols"], str]] = {}
    skip_empty_tiles: bool | None = None
    tile: Annotated[int, Field(gt=0)] | None = None
    resident_blocks: Annotated[int, Field(gt=0)] | None = None
    resident_groups: Literal["balanced", "divide"] | None = None
