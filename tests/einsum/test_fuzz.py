"""Property-based tests: whatever text the parser is given, it parses or raises CascadeError."""

import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from einforge.einsum import CascadeError, library, parse_cascade, parse_teaal

ALPHABET = "QKVABmnpke01M+-*/:=[](),<>&#.\n \t\"⋄xyzinfmaxexp"
VALID_TEXTS = [e.file.read_text() for e in library().values()]
TOKENS = ["[", "]", "(", ")", ",", ":", "::", "=", "+", "-", "*", "/", "max", "exp", "m1", "m1+1", "M1",
          "-inf", "0", "p", "e", "\n", " ", "stop", "ranks", "input", "Q[e,p]", "&", "<=", "⋄"]


def _parses_or_cascade_error(text):
    try:
        c = parse_cascade(text, "fuzz.cascade")
    except CascadeError as exc:
        assert str(exc)           # the message renders
        return
    assert parse_cascade(c.text()) == c   # anything accepted also prints back to itself


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(alphabet=ALPHABET, max_size=120))
def test_random_garbage(text):
    _parses_or_cascade_error(text)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, len(VALID_TEXTS) - 1), st.integers(0, 2**32 - 1), st.integers(1, 4))
def test_near_valid_mutations(which, seed, edits):
    rnd = random.Random(seed)
    text = VALID_TEXTS[which]
    for _ in range(edits):
        pos = rnd.randrange(len(text) + 1)
        kind = rnd.randrange(4)
        if kind == 0 and text:                       # delete a span
            text = text[:pos] + text[pos + rnd.randrange(1, 6):]
        elif kind == 1:                              # insert a token
            text = text[:pos] + rnd.choice(TOKENS) + text[pos:]
        elif kind == 2 and text:                     # replace a character
            text = text[:pos] + rnd.choice(ALPHABET) + text[pos + 1:]
        else:                                        # drop or duplicate a line
            lines = text.splitlines(keepends=True)
            k = rnd.randrange(len(lines))
            lines.insert(k, lines[k]) if rnd.random() < 0.5 else lines.pop(k)
            text = "".join(lines)
    _parses_or_cascade_error(text)


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=80))
def test_random_yaml(text):
    try:
        parse_teaal(text, "fuzz.yaml")
    except CascadeError:
        pass
