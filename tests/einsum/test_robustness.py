"""No traceback for any input: every file either runs or is refused with a CascadeError that names
its place. The explicit cases are the ones that once crashed; the fuzz tests cover the class."""

import json
import random

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from einforge.cli import main
from einforge.einsum import CascadeError, analyze, evaluate, library, load_cascade, parse_cascade, resolve_sizes

NAMES = [chr(65 + i // 26) + chr(65 + i % 26) for i in range(60)]


@pytest.mark.parametrize("text,message", [
    ("ranks M=4\ninput K[m]\nZ[m] = " + "+".join(["K[m]"] * 50000) + "\n", "nests deeper than 200 levels"),
    ("ranks M=4\ninput K[m]\nZ[m] = " + "(" * 10000 + "K[m]" + ")" * 10000 + "\n", "nests deeper than 200 levels"),
    ("ranks M=4\ninput K[m]\nZ[m] = " + "-" * 5000 + "K[m]\n", "nests deeper than 200 levels"),
    ("ranks M=99999999999999999999999\ninput K[m]\nZ = K[m]\n", "too large"),
    ("ranks M=4 N=M//0\ninput K[m]\nZ = K[m]\n", "M//0 divides by zero"),
    ("ranks M=4\ninput K[m]\noutput K\nZ = K[m]\n", "3:8: K is an input"),
    ("ranks M=4\ninput K[m]\nZ[m] = K[M]\n", "out of range"),
    ("ranks M=4\nparam Z=0\ninput K[m]\nY[m] = K[m//Z]\n", "divides by zero"),
])
def test_hostile_texts_are_refused_clearly(text, message):
    with pytest.raises(CascadeError, match=message):
        c = parse_cascade(text)
        evaluate(c, {t.name: np.ones([4] * len(t.ranks)) for t in c.inputs})


def test_sixty_ranks_in_one_product():
    c = parse_cascade("ranks " + " ".join(f"{n}=1" for n in NAMES) + "\ninput " +
                      " ".join(f"X{n}[{n.lower()}]" for n in NAMES) + "\nZ = " +
                      " * ".join(f"X{n}[{n.lower()}]" for n in NAMES) + "\n")
    analyze(c)
    assert evaluate(c, {t.name: np.full([1], 2.0) for t in c.inputs})["Z"] == 2.0 ** 60


def test_files_with_a_bom_load_and_invalid_utf8_is_refused(tmp_path):
    f = tmp_path / "bom.cascade"
    text = library()["attention-1pass"].file.read_text()
    f.write_bytes(b"\xef\xbb\xbf" + text.encode())
    assert load_cascade(f).text() == library()["attention-1pass"].load().text()
    f.write_bytes(text.encode().replace(b"P=16", b"P=\xff6"))
    line = next(k for k, s in enumerate(text.splitlines(), 1) if "P=16" in s)
    with pytest.raises(CascadeError, match=rf"bom.cascade:{line}:\d+: not UTF-8"):
        load_cascade(f)


def test_tensors_too_large_to_hold_are_refused():
    c = library()["attention-1pass"].load()
    with pytest.raises(CascadeError, match="too many to run"):
        evaluate(c, {"Q": np.zeros((8, 1 << 20)), "K": np.zeros((8, 1 << 20)), "V": np.zeros((8, 1 << 20))},
                 {"M": 1 << 20, "P": 1 << 20, "M0": 1}, keep="all")


# -- fuzz: accepted cascades also analyze and run, or say why not ------------------------------

VALID = [e.file.read_text() for e in library().values()]
TOKENS = ["[", "]", "(", ")", ",", ":", "::", "=", "+", "-", "*", "/", "//", "%", "max", "exp", "m1", "m1+1",
          "M1", "-inf", "0", "1", "p", "e", "\n", " ", "stop", "ranks", "input", "output", "param", "workload",
          "&", "<=", "<", "!=", "M", "P", "log", "sqrt", "keys", "9999999999999"]


def _mutate(seed, edits):
    rnd = random.Random(seed)
    text = VALID[rnd.randrange(len(VALID))]
    for _ in range(edits):
        pos = rnd.randrange(len(text) + 1)
        kind = rnd.randrange(3)
        if kind == 0 and text:
            text = text[:pos] + text[pos + rnd.randrange(1, 6):]
        elif kind == 1:
            text = text[:pos] + rnd.choice(TOKENS) + text[pos:]
        else:
            lines = text.splitlines(keepends=True)
            k = rnd.randrange(len(lines))
            lines.insert(k, lines[k]) if rnd.random() < 0.5 else lines.pop(k)
            text = "".join(lines)
    return text


@settings(max_examples=250, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.integers(0, 2**32 - 1), st.integers(1, 3))
def test_mutated_cascades_run_or_are_refused(seed, edits):
    text = _mutate(seed, edits)
    try:
        c = parse_cascade(text, "fuzz.cascade")
        analyze(c)
        sizes = {r.name: 3 for r in c.ranks if r.size is None and not r.param}
        sizes.update({r.name: 2 for r in c.ranks if r.size is None and r.param})
        sz = resolve_sizes(c, sizes)
        x = {t.name: np.random.default_rng(0).normal(size=[sz[r] for r in t.ranks]) for t in c.inputs}
        evaluate(c, x, sz)
    except CascadeError as exc:
        assert str(exc)


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.integers(0, 2**32 - 1), st.integers(1, 3))
def test_cascade_run_never_passes_a_non_finite_output(tmp_path_factory, seed, edits):
    f = tmp_path_factory.mktemp("fuzz") / "fuzz.cascade"
    f.write_text(_mutate(seed, edits))
    r = CliRunner().invoke(main, ["cascade", "run", str(f), "--json"], catch_exceptions=False)
    assert r.exit_code in (0, 1, 2), r.output
    if r.exit_code == 0:
        out = json.loads(r.output)
        assert out["non_finite_outputs"] == [] and out["passed"] is not False
