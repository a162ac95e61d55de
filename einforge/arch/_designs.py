"""Named designs (the FuseMax evaluation's ablations) and the end-to-end encoder model.

A design is a cascade plus a binding plus an architecture, nothing more:

=========  ================  ===============  ============
design     cascade           binding          architecture
=========  ================  ===============  ============
unfused    attention-3pass   unfused          flat
flat       attention-3pass   flat             flat
cascade    attention-1pass   cascade          flat
arch       attention-1pass   arch             fusemax
fusemax    attention-1pass   fusemax          fusemax
=========  ================  ===============  ============
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from ..einsum import Cascade, load_cascade
from ._binding import Binding, load_binding
from ._flat import flat_dataflow, flat_spatial, flat_table_applies, search_flat_dataflow
from ._model import _price
from ._model import evaluate as _evaluate
from ._plan import _plan
from ._report import Report
from ._spec import ArchError, Architecture, load_architecture
from ._workload import Workload

__all__ = ["DESIGNS", "design", "evaluate", "evaluate_design", "end_to_end"]

DESIGNS = {
    "unfused": ("attention-3pass", "unfused", "flat"),
    "flat": ("attention-3pass", "flat", "flat"),
    "cascade": ("attention-1pass", "cascade", "flat"),
    "arch": ("attention-1pass", "arch", "fusemax"),
    "fusemax": ("attention-1pass", "fusemax", "fusemax"),
}
DESIGNS["binding"] = DESIGNS["fusemax"]

# the hardware the encoder's linear layers run on next to each attention design
LINEAR_ARCH = {"unfused": "flat", "flat": "flat", "cascade": "flat", "arch": "fusemax", "fusemax": "fusemax",
               "binding": "fusemax"}


@dataclass(frozen=True)
class Design:
    name: str
    cascade: Cascade
    binding: Binding
    arch: Architecture


def design(name: str) -> Design:
    """One of the evaluation's designs by name (see the module docstring)."""
    if name not in DESIGNS:
        raise ArchError(f"no design named {name!r} (designs: {', '.join(DESIGNS)})")
    c, b, a = DESIGNS[name]
    cascade = load_cascade(c)
    return Design(name, cascade, load_binding(b, cascade), load_architecture(a))


def evaluate(arch: Architecture, cascade: Cascade, binding: Binding, workload: Workload,
             *, flat: dict | None = None, name: str | None = None) -> Report:
    """Cost of one design point (see :mod:`einforge.arch._model` for how each number is made).

    For the FLAT mapping the dataflow comes from ``flat``, from FLAT's table (its own accelerator),
    or from a search of FLAT's space (:class:`einforge.arch._flat.FlatSpace`).

    Examples
    --------
    >>> from einforge.arch import load_architecture, load_binding, load_workload
    >>> from einforge.einsum import load_cascade
    >>> c = load_cascade("attention-1pass")
    >>> r = evaluate(load_architecture("fusemax"), c, load_binding("fusemax", c), load_workload("BERT", "64K"))
    >>> round(r.util_2d, 3), round(r.util_1d, 3)
    (0.991, 1.0)
    """
    if binding.mapping == "flat":
        logit, attend = flat_products(arch, cascade, binding)
        flow = flat if flat is not None else flat_dataflow(workload.name, workload.keys)
        if flat is None and (flow is None or not flat_table_applies(arch)):
            flow = search_flat_dataflow(arch, cascade, binding, workload, logit, attend)
        b = replace(binding, einsum_spatial=flat_spatial(flow, logit, attend, cascade))
        r = _evaluate(arch, cascade, b, workload, flat_dataflow=flow, design=name)
        r.details["flat_dataflow"] = "searched" if flow.get("searched") else "FLAT's table"
        return r
    return _evaluate(arch, cascade, binding, workload, design=name)


def price(arch: Architecture, cascade: Cascade, binding: Binding, workload: Workload) -> tuple[float, float, float]:
    """(latency s, energy pJ, DRAM bytes) of one design point: :func:`evaluate`'s three totals, made
    the same way, without the rest of its report (per-Einsum costs, breakdowns, details), for
    callers that price many points and keep only the totals (a decoder layer's operators).

    Examples
    --------
    >>> from einforge.arch import load_architecture, load_binding, load_workload
    >>> from einforge.einsum import load_cascade
    >>> c, a, w = load_cascade("attention-1pass"), load_architecture("fusemax"), load_workload("BERT", "4K")
    >>> r = evaluate(a, c, load_binding("fusemax", c), w)
    >>> price(a, c, load_binding("fusemax", c), w) == (r.latency_s, r.energy_pJ, r.traffic_bytes)
    True
    """
    if binding.mapping == "flat":                 # FLAT's dataflow is chosen by evaluate
        r = evaluate(arch, cascade, binding, workload)
        return r.latency_s, r.energy_pJ, r.traffic_bytes
    return _price(arch, cascade, binding, workload)


def flat_products(arch: Architecture, cascade: Cascade, binding: Binding) -> tuple[str, str]:
    """The labels of the two tensor products FLAT fuses around the softmax."""
    from ._model import _by_role
    from ._traffic import flat_products as products

    parts_arch, parts_binding = _by_role(arch, binding, arch.parts())
    logit, attend = products(_plan(cascade, parts_binding, parts_arch))
    return logit.label, attend.label


def evaluate_design(name: str, workload: Workload) -> Report:
    d = design(name)
    return evaluate(d.arch, d.cascade, d.binding, workload, name=f"{name}:{workload.label}")


def end_to_end(name: str, workload: Workload) -> tuple[Report, Report]:
    """(attention, linear layers) of one encoder layer for a design; add them for the whole layer."""
    att = evaluate_design(name, workload)
    lin_c = load_cascade("encoder-linear")
    arch = load_architecture(LINEAR_ARCH[name])
    lin = evaluate(arch, lin_c, load_binding("unfused", lin_c), workload, name=f"{name}-linear:{workload.label}")
    return att, lin
