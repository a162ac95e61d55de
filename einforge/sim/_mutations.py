"""Fault injection: how much of what can go wrong in the RTL the default verification catches.

Each mutation edits the exported Verilog of a design the way a real bug would break it; for the
attention engine:
one PE dropping bit 0 of its products (its MAC, multiply and exp share one multiplier), ``done``
stuck high, an extra output beat, a cycle counter that counts twice, an exp datapath with a wrong
log2(e) constant, a loader that writes into slots still to be read, a controller that starts a
tile without waiting for its words, an output stream that never marks a packet's last beat;
for the vector unit (``VECTOR_MUTATIONS``) the faults it can have of the same kinds.
:func:`mutation_score`
runs the default verification (:func:`einforge.sim.verify`) on each mutant and reports which were
caught; every one should be.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from ._runner import SUITE, SimError, verify

__all__ = ["Mutation", "MUTATIONS", "VECTOR_MUTATIONS", "mutation_score"]


@dataclass(frozen=True)
class Mutation:
    name: str
    apply: Callable[[str, object], str]      # (Verilog text, design) -> mutated text

    def __call__(self, text: str, design) -> str:
        out = self.apply(text, design)
        if out == text:
            raise SimError(f"mutation {self.name} found nothing to change in {design.name}'s Verilog")
        return out


def _in_module(text, module: str, edit) -> str:
    """``edit`` applied to the body of one Verilog module (the engine's units are modules of their own)."""
    start = re.search(rf"^module \\?{re.escape(module)} ?\(", text, re.M)
    if not start:
        return text
    end = text.index("endmodule", start.end())
    return text[:start.start()] + edit(text[start.start():end]) + text[end:]


def _pe_lsb(i: int, j: int):
    return _product_lsb(f"pe{i}_{j}")


def _product_lsb(unit: str):
    """Unit ``unit`` (a PE or a lane: a Verilog module of its own) drops bit 0 of its products."""
    def apply(text, design):
        def edit(body):
            width = re.search(r"wire \[(\d+):0\] alu_prod;", body)
            if not width:
                return body
            bits = int(width.group(1)) + 1
            return re.sub(r"(assign alu_prod = )(.*);", rf"\1(\2) & ~{bits}'d1;", body, count=1)
        return _in_module(text, f"{design.name}.{unit}", edit)
    return apply


def _done_stuck(text, design):
    """The engine's ``done`` port stuck high (what the testbench sees; inside, the engine runs on)."""
    def edit(body):
        head, rest = body.split("\n", 1)
        rest = re.sub(r"(?<![\\\w$.])done(?![\w$])", "done_inner", rest)     # the wire, not ports
        return head + "\n" + rest.replace("output done_inner;", "output done;\n  assign done = 1'h1;")
    return _in_module(text, design.name, edit)


def _extra_beat(text, design):
    def bump(m):
        width, value = m.group(2), int(m.group(3), 16)
        return f"{m.group(1)}{width}'h{value + 1:x}"
    return _in_module(text, f"{design.name}.output",
                      lambda body: re.sub(r"(\bbeat == )(\d+)'h([0-9a-f]+)", bump, body, count=1))


def _cycles_twice(text, design):
    return _in_module(text, f"{design.name}.controller",
                      lambda body: re.sub(r"(= cycles \+ )1'h1;", r"\g<1>2'h2;", body, count=1))


def _slot_never_busy(text, design):
    """The loader's free-slot test always passes: it writes tiles into slots still to be read."""
    return _in_module(text, f"{design.name}.loader",
                      lambda body: re.sub(r"= ahead <= \d+'h[0-9a-f]+;", "= 1'h1;", body, count=1))


def _never_waits(text, design):
    return _in_module(text, f"{design.name}.controller",
                      lambda body: re.sub(r"assign stall = .*;", "assign stall = 1'h0;", body, count=1))


def _last_stuck_low(text, design):
    return _in_module(text, f"{design.name}.output",
                      lambda body: re.sub(r"assign out_last = .*;", "assign out_last = 1'h0;", body, count=1))


def _exp_constant(text, design):
    """Every exp unit (PEs and lanes) multiplies by log2(e) + 1 LSB in its first step."""
    log2e = design.numbers.exp_constants()["log2e"]
    return re.sub(rf"(alu_my = \d+)'h0*{log2e:x};", lambda m: f"{m.group(1)}'h{log2e + 1:x};", text)


def _vector_extra_beat(text, design):
    """The vector unit streams one beat more per block (its output counter ends one later)."""
    def bump(m):
        return f"{m.group(1)}{m.group(2)}'h{int(m.group(3), 16) + 1:x}"
    return _in_module(text, design.name, lambda body: re.sub(r"(\bo == )(\d+)'h([0-9a-f]+)", bump, body, count=1))


def _vector_cycles_twice(text, design):
    return _in_module(text, design.name, lambda body: re.sub(r"(= cycles \+ )1'h1;", r"\g<1>2'h2;", body, count=1))


MUTATIONS = (
    Mutation("one PE drops bit 0 of its products", _pe_lsb(0, 1)),
    Mutation("done stuck high", _done_stuck),
    Mutation("one extra output beat", _extra_beat),
    Mutation("cycle counter counts twice", _cycles_twice),
    Mutation("wrong log2(e) in the exp datapath", _exp_constant),
    Mutation("loader writes into slots still to be read", _slot_never_busy),
    Mutation("a tile starts before its words arrive", _never_waits),
    Mutation("out_last stuck low", _last_stuck_low),
)


#: the vector unit's (``einforge.rtl`` lowers element-wise stages to it): its controller is the top module
VECTOR_MUTATIONS = (
    Mutation("one lane drops bit 0 of its products", _product_lsb("lane1")),
    Mutation("done stuck high", _done_stuck),
    Mutation("one extra output beat", _vector_extra_beat),
    Mutation("cycle counter counts twice", _vector_cycles_twice),
    Mutation("wrong log2(e) in the exp datapath", _exp_constant),
)


def mutation_score(design, *, sim: str = "icarus", suite=SUITE, mutations=MUTATIONS, workers: int = 1) -> dict:
    """Run the default verification on the design and on each mutant.

    ``workers`` > 1 runs that many verifications at a time, each in a process of its own (a
    simulation is one busy core; the verdicts do not depend on it).

    Returns ``{"clean": passed?, "caught": [...], "missed": [...], "share": caught / total}``; a
    mutant is caught when its verdict fails.
    """
    from ..rtl import export_verilog

    text = export_verilog(design)
    texts = [None] + [mut(text, design) for mut in mutations]
    if workers > 1:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        import cloudpickle  # a design holds its operators' functions, which pickle cannot

        blob = cloudpickle.dumps(design)
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            verdicts = list(pool.map(_verdict_of, [blob] * len(texts), [sim] * len(texts), [suite] * len(texts),
                                     texts))
    else:
        verdicts = [_verdict(design, sim, suite, t) for t in texts]
    caught, missed = [], []
    for mut, (passed, failed) in zip(mutations, verdicts[1:]):
        (missed if passed else caught).append({"mutation": mut.name, "failed_checks": failed})
    total = len(caught) + len(missed)
    return {"clean": verdicts[0][0], "caught": caught, "missed": missed,
            "share": len(caught) / total if total else 0.0}


def _verdict(design, sim, suite, verilog) -> tuple[bool, list]:
    r = verify(design, sim=sim, suite=suite, verilog=verilog)
    return r.passed, r.details.get("failed_checks", [])


def _verdict_of(blob: bytes, sim, suite, verilog) -> tuple[bool, list]:
    import pickle

    return _verdict(pickle.loads(blob), sim, suite, verilog)
