"""Fault sensitivity, measured: the default verification catches every injected RTL fault."""

import pytest

from einforge.einsum import FixedPoint, library
from einforge.rtl import lower
from einforge.sim import simulators
from einforge.sim._mutations import MUTATIONS, mutation_score


@pytest.mark.skipif(not simulators()["icarus"], reason="Icarus Verilog is not installed")
def test_every_listed_mutation_is_caught():
    # compute-bound (a tile's 8 words arrive within its 14-cycle frame) and 16 tiles a block: the
    # loader gets far enough ahead that writing into a busy slot would corrupt a tile
    d = lower(library()["attention-1pass"].load(), "fusemax", (2, 2), FixedPoint(8, 8),
              {"M": 32, "P": 4, "E": 2, "F": 2})
    r = mutation_score(d, workers=2)          # verdicts as with one; two simulations at a time
    assert r["clean"]                          # the unmutated design passes
    assert not r["missed"], r["missed"]
    assert len(r["caught"]) == len(MUTATIONS) and r["share"] == 1.0
    by = {c["mutation"]: set(c["failed_checks"]) for c in r["caught"]}
    assert "done" in by["done stuck high"]
    assert "cycles_equal_model" in by["cycle counter counts twice"]
    assert "beats" in by["one extra output beat"]
    assert "packet_framing" in by["out_last stuck low"]
