"""Bindings: which array runs each Einsum, how ranks map onto the arrays, how Einsums overlap.

A binding is data. The built-in ones are rules over the cascade IR, so they apply to any cascade:

* ``fusemax`` — every Einsum over the tile rank (the one mapped to the 2D array's rows) runs on the
  2D array, the rest on the 1D array; tiled mapping; the two arrays overlap (epoch pipelining);
* ``arch`` — the same placement, one tile at a time (no interleaving);
* ``cascade`` — tensor products on the 2D array, everything else on the 1D array; tiled mapping;
* ``flat`` — tensor products on the 2D array, the softmax on the 1D array; FLAT's dataflow;
* ``unfused`` — tensor products on the 2D array, softmax on the 1D array; each phase reads its
  inputs from DRAM and writes its outputs back.

A binding is complete in itself: nothing about it depends on where a cascade file sits. Users
give their own YAML file with the same fields.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from ..einsum import Access, Cascade, product_factors
from ._spec import ArchError

__all__ = ["Binding", "load_binding", "BINDINGS", "bind_arrays", "is_layout", "is_tensor_product", "binding_yaml"]

BINDINGS = ("fusemax", "arch", "cascade", "flat", "unfused")

_DEFAULTS = {
    # the FuseMax evaluation's mappings (Timeloop's) keep a number of query blocks resident that
    # divides the blocks: resident_groups "divide" reproduces them; the mapper's are "balanced"
    "fusemax": dict(rule="tile", mapping="tiled", schedule="overlap", skip_empty_tiles=True, resident_groups="divide",
                    description="+Binding (FuseMax): softmax tiles on the 2D array, corrections on the 1D array, arrays interleaved"),
    "arch": dict(rule="tile", mapping="tiled", schedule="sequential", drain=True, skip_empty_tiles=True,
                 resident_groups="divide",
                 description="+Architecture: FuseMax placement, one tile at a time with the 2D drain exposed"),
    # +Cascade as the FuseMax evaluation models it on FLAT's hardware: resident query blocks sized for
    # half of FLAT's 32 MiB buffer (the artifact computes its P1 for 16 MiB), and every action on
    # FLAT's 1D PEs one cycle, exp with its subtraction two (FuseMax artifact, FlatPEProposal)
    "cascade": dict(rule="product", mapping="tiled", schedule="overlap", skip_empty_tiles=True,
                    buffer_share=0.5, issue={"1d": "sequential"}, resident_groups="divide",
                    description="+Cascade: the 1-pass cascade with tensor products on 2D and the softmax on 1D"),
    "flat": dict(rule="product", mapping="flat", schedule="overlap",
                 description="FLAT: fused logit/attend tiles, softmax on the 1D array"),
    "unfused": dict(rule="product", mapping="unfused", schedule="phases",
                    description="unfused: each tensor product and the softmax as separate phases through DRAM"),
}



@dataclass(frozen=True)
class Binding:
    """How a cascade runs on an architecture.

    ``arrays`` maps Einsum labels to arrays (``None``: free, e.g. a re-layout). ``spatial`` maps
    each array dimension to candidate ranks (the first one an Einsum has is spread over that
    dimension). ``schedule`` is ``overlap`` (arrays run concurrently: latency is the busiest
    array), ``sequential`` (no overlap between Einsums), ``stages`` (sum over stages of the
    busiest array in the stage) or ``phases`` (separate phases through DRAM).
    ``skip_empty_tiles``: the controller skips a step of the tile loop for a block of queries when
    every Einsum over the tile is empty there (a causal mask's upper tiles, a KV cache's unused
    part), as FlashAttention-2 does; the iterates then stay as they are. ``resident_blocks`` caps
    the blocks of queries the tiled mapping keeps resident, which share each key/value tile fetched
    (the attention engine's RTL keeps one: every block streams its tiles). ``resident_groups``:
    ``balanced`` keeps the fewest groups of resident blocks the buffer holds, as equal as can be
    (the last may be smaller); ``divide`` keeps a number of blocks that divides them, as the
    FuseMax evaluation's Timeloop mappings do (503 blocks, a prime: one at a time).
    """

    name: str
    rule: str = "tile"
    mapping: str = "tiled"
    schedule: str = "overlap"
    description: str = ""
    explicit: tuple = ()                       # (label, array) overrides
    spatial: tuple = ()                        # ((array, ((dim, (ranks...)), ...)), ...)
    einsum_spatial: tuple = ()                 # (label, ((dim, rank), ...)) overrides (FLAT)
    stages: tuple = ()                         # (((array, (labels...)), ...), drain label or None)
    drain: bool = False                        # sequential schedule: expose the 2D drain of row reductions
    issue: tuple = ()                          # (array, "sequential"|"pipelined") overrides
    buffer_share: float = 1.0                  # share of the global buffer the tiled mapping may fill
    resident_blocks: int | None = None         # at most this many blocks of queries resident (None: what fits)
    resident_groups: str = "balanced"          # "balanced" or "divide" (see above)
    tile: int | None = None                    # keys per tile (default: the grid's rows)
    skip_empty_tiles: bool = False
    source: str = field(default="", compare=False)

    def spatial_for(self, array: str) -> dict[str, tuple[str, ...]]:
        for a, dims in self.spatial:
            if a == array:
                return {d: tuple(rs) for d, rs in dims}
        return {}

    def issue_for(self, array: str, default: str) -> str:
        return dict(self.issue).get(array, default)


def is_layout(e) -> bool:
    """A pure re-layout (``BK[e,m1,m0] = K[e, m1*M0+m0]``): data movement, no arithmetic."""
    return isinstance(e.expr, Access) and not e.reduce


def is_tensor_product(e) -> bool:
    """A sum over a rank of a product of at least two tensors (GEMM-like: QK, AV, SLNV)."""
    factors = product_factors(e.expr)
    acc = None if factors is None else [f for f in factors if isinstance(f, Access)]
    return acc is not None and len(acc) >= 2 and bool(e.reduce) and all(op == "+" for _, op in e.reduce)


def bind_arrays(cascade: Cascade, binding: Binding, tile_rank: str | None) -> dict[str, str | None]:
    """Label -> array for every Einsum (``None`` for initializations and re-layouts)."""
    return dict(_bind_arrays(cascade, binding, tile_rank))


@lru_cache(maxsize=1024)
def _bind_arrays(cascade: Cascade, binding: Binding, tile_rank: str | None) -> tuple:
    # a pure function of frozen values, asked for on every evaluation
    explicit = dict(binding.explicit)
    unknown = set(explicit) - set(cascade.labels)
    if unknown:
        raise ArchError(f"binding {binding.name} names {', '.join(sorted(unknown))}, which are not Einsums of "
                        f"{cascade.name} (its Einsums: {', '.join(cascade.labels)})")
    out: dict[str, str | None] = {}
    tile_var = tile_rank.lower() if tile_rank else None
    for i, e in enumerate(cascade.einsums):
        lab = cascade.label(i)
        if lab in explicit:
            out[lab] = explicit[lab]
        elif cascade.einsum_kind(i) == "init" or is_layout(e):
            out[lab] = None
        elif binding.rule == "tile":
            if tile_var is None:
                raise ArchError(f"binding {binding.name} puts Einsums over the tile rank on the 2D array, but "
                                f"{cascade.name} has no rank mapped to the 2D rows; partition the sequence rank "
                                "(e.g. M into M1 tiles of M0) or use the cascade/flat/unfused bindings")
            out[lab] = "2d" if tile_var in e.variables() else "1d"
        elif binding.rule == "product":
            out[lab] = "2d" if is_tensor_product(e) else "1d"
        else:
            raise ArchError(f"binding {binding.name}: unknown rule {binding.rule!r} (use tile, product or explicit)")
    return tuple(out.items())


def _from_spec(name: str, given: dict, where: str) -> Binding:
    """The binding of the fields a file gives (validated; none for a built-in) over its base's."""
    base = dict(_DEFAULTS.get(given.get("base") or name, _DEFAULTS["fusemax"]))
    for k in ("rule", "mapping", "schedule", "description", "drain", "skip_empty_tiles", "buffer_share",
              "resident_groups"):
        if given.get(k) is not None:
            base[k] = given[k]
    # by default the roles of the ranks decide what goes on each array dimension (arch._model)
    sp = tuple((a, tuple((dim, tuple(rs if isinstance(rs, list) else [rs])) for dim, rs in dims.items()))
               for a, dims in given.get("spatial", {}).items())
    stages = []
    for st in given.get("stages", []):
        drain = st.get("drain")
        if isinstance(drain, list):
            raise ArchError(f"{where}binding {name}: a stage's drain names one Einsum")
        stages.append((tuple((a, tuple(v if isinstance(v, list) else [v])) for a, v in st.items() if a != "drain"),
                       drain))
    if stages and given.get("schedule") is None:
        base["schedule"] = "stages"
    return Binding(
        name=name, rule=base["rule"], mapping=base["mapping"], schedule=base["schedule"],
        description=base.get("description", ""), drain=bool(base.get("drain", False)),
        skip_empty_tiles=bool(base.get("skip_empty_tiles", False)),
        explicit=tuple(given.get("arrays", {}).items()), spatial=sp, stages=tuple(stages),
        einsum_spatial=tuple((k, tuple(v.items())) for k, v in given.get("einsum_spatial", {}).items()),
        issue=tuple((given.get("issue") or base.get("issue") or {}).items()),
        buffer_share=float(base.get("buffer_share", 1.0)), tile=given.get("tile"),
        resident_blocks=given.get("resident_blocks"), resident_groups=base.get("resident_groups", "balanced"),
        source=where,
    )


def load_binding(name_or_file: str, cascade: Cascade) -> Binding:
    """A built-in binding or a YAML file.

    Raises
    ------
    ArchError
        Unknown binding name, unreadable file, unknown fields (with file, line and column).
    """
    p = Path(str(name_or_file))
    if p.is_file():
        from ..schema import load_yaml_file, validate
        from ._files import BindingSpec

        data, marks, file = load_yaml_file(p, "binding", ArchError)
        if not isinstance(data, dict):
            raise ArchError(f"{file}: a binding file is a YAML mapping of fields to values")
        name = p.stem
        if len(data) == 1 and next(iter(data)) not in BindingSpec.model_fields and \
                isinstance(next(iter(data.values())), dict):
            # the binding under its own name:  mine: {base: fusemax, ...}
            name = next(iter(data))
            data = data[name]
            marks = {k[1:]: v for k, v in marks.items() if k and k[0] == name}
        spec = validate(BindingSpec, data, marks, file, ArchError)
        return _from_spec(name, spec.model_dump(exclude_unset=True), f"{file}: ")
    name = str(name_or_file)
    if name not in BINDINGS:
        raise ArchError(f"no built-in binding named {name!r} and no such file (built-in: {', '.join(BINDINGS)})")
    return _from_spec(name, {}, "")


def binding_yaml(b: Binding) -> str:
    """A binding file that loads back to ``b`` (the fields that change a result)."""
    import yaml

    d: dict = {"rule": b.rule, "mapping": b.mapping, "schedule": b.schedule}
    if b.description:
        d["description"] = b.description
    if b.explicit:
        d["arrays"] = dict(b.explicit)
    if b.spatial:
        d["spatial"] = {a: {dim: list(rs) for dim, rs in dims} for a, dims in b.spatial}
    if b.issue:
        d["issue"] = dict(b.issue)
    if b.einsum_spatial:
        d["einsum_spatial"] = {lab: dict(dims) for lab, dims in b.einsum_spatial}
    if b.stages:
        raise ArchError(f"binding {b.name}: stage lists are not written to files yet")
    d.update(buffer_share=b.buffer_share, drain=b.drain, skip_empty_tiles=b.skip_empty_tiles)
    if b.tile is not None:
        d["tile"] = b.tile
    if b.resident_blocks is not None:
        d["resident_blocks"] = b.resident_blocks
    d["resident_groups"] = b.resident_groups
    return yaml.safe_dump({b.name: d}, sort_keys=False)
