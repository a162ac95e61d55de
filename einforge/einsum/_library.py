"""The attention library: built-in cascades and the direct numpy computations they must match.

Each built-in cascade is a ``.cascade`` file in ``einforge/einsum/library``; this module pairs it
with a *reference*: what the cascade computes, written directly in numpy (``softmax(QK)V`` and so
on) and independent of the executor, so that running one against the other checks both.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from ._cascade import Cascade, parse_cascade
from ._errors import CascadeError
from ._ops import OperatorTable

__all__ = ["LibraryEntry", "library", "load_cascade", "random_inputs", "LIBRARY_DIR"]

LIBRARY_DIR = Path(__file__).parent / "library"


def _softmax(s, axis):
    s = s - np.max(s, axis=axis, keepdims=True)
    e = np.exp(s)
    return e / np.sum(e, axis=axis, keepdims=True)


def _masked_softmax(s, mask, axis):
    s = np.where(mask, s, -np.inf)
    return _softmax(s, axis)


def _attention(x, sz):
    """Q[e,p], K[e,m], V[f,m] -> AV[f,p] = V softmax_m(K^T Q)."""
    s = x["K"].T @ x["Q"]
    return {"AV": x["V"] @ _softmax(s, 0)}


def _attention_masked(mask_fn):
    def ref(x, sz):
        s = x["K"].T @ x["Q"]
        m = np.arange(s.shape[0])[:, None]
        p = np.arange(s.shape[1])[None, :]
        return {"AV": x["V"] @ _masked_softmax(s, mask_fn(m, p, sz), 0)}
    return ref


def _attention_grouped(x, sz):
    s = np.einsum("bgrep,bgem->bgrmp", x["Q"], x["K"])
    return {"AV": np.einsum("bgfm,bgrmp->bgrfp", x["V"], _softmax(s, 3))}


def _attention_mha(x, sz):
    s = np.einsum("bhep,bhem->bhmp", x["Q"], x["K"]) / np.sqrt(sz["E"])
    return {"AV": np.einsum("bhfm,bhmp->bhfp", x["V"], _softmax(s, 2))}


def _attention_decode(x, sz):
    s = np.einsum("gre,gem->grm", x["Q"], x["K"])
    valid = np.arange(s.shape[-1]) < sz["L"]
    return {"AV": np.einsum("gfm,grm->grf", x["V"], _masked_softmax(s, valid, 2))}


def _attention_sigmoid(x, sz):
    s = x["K"].T @ x["Q"] / np.sqrt(sz["E"]) - np.log(sz["M"])
    return {"AV": x["V"] @ (1.0 / (1.0 + np.exp(-s)))}


def _elu1(x):
    return np.where(x > 0, x + 1.0, np.exp(np.minimum(x, 0.0)))


def _attention_linear(x, sz):
    fq, fk = _elu1(x["Q"]), _elu1(x["K"])
    num = (fk @ x["V"].T).T @ fq          # V phi(K)^T phi(Q)
    den = fk.sum(axis=1) @ fq
    return {"AV": num / den}


def _attention_hedgehog(x, sz):
    hq = x["WQ"] @ x["Q"] + x["BQ"][:, None]
    hk = x["WK"] @ x["K"] + x["BK"][:, None]
    fq = _softmax(np.concatenate([hq, -hq]), 0)        # features over [h; -h]
    fk = _softmax(np.concatenate([hk, -hk]), 0)
    num = x["V"] @ fk.T @ fq
    den = fk.sum(axis=1) @ fq
    return {"AV": num / den}


def _softmax_only(x, sz):
    return {"A": _softmax(x["S"], 0)}


def _toy(x, sz):
    return {"Z": np.array(np.dot(x["A"], x["B"]) * np.sum(x["A"]))}


def _encoder_linear(x, sz):
    return {"QP": x["X"] @ x["WQ"], "KP": x["X"] @ x["WK"], "VP": x["X"] @ x["WV"],
            "H2": (x["ATT"] @ x["WO"] @ x["W1"]) @ x["W2"]}


_REFERENCES: dict[str, Callable] = {
    "encoder-linear": _encoder_linear,
    "attention-3pass": _attention,
    "attention-3pass-deferred": _attention,
    "attention-naive": _attention,
    "attention-naive-deferred": _attention,
    "attention-2pass": _attention,
    "attention-2pass-deferred": _attention,
    "attention-1pass": _attention,
    "attention-fa1": _attention,
    "attention-cross": _attention,
    "attention-causal": _attention_masked(lambda m, p, sz: m <= p),
    "attention-window": _attention_masked(lambda m, p, sz: (p - sz["W"] < m) & (m <= p)),
    "attention-gqa": _attention_grouped,
    "attention-mqa": _attention_grouped,
    "attention-mha": _attention_mha,
    "attention-decode": _attention_decode,
    "attention-sigmoid": _attention_sigmoid,
    "attention-sigmoid-tiled": _attention_sigmoid,
    "attention-linear": _attention_linear,
    "attention-hedgehog": _attention_hedgehog,
    "softmax-online": _softmax_only,
    "cascade1": _toy,
    "cascade2": _toy,
    "cascade3": _toy,
}

# inputs that are weights get a smaller scale so feature maps stay in a sensible range
_INPUT_SCALE = {"attention-hedgehog": {"WQ": 0.3, "WK": 0.3, "BQ": 0.3, "BK": 0.3}}


@dataclass(frozen=True)
class LibraryEntry:
    """A built-in cascade: its file, and the direct computation it is checked against."""

    name: str
    file: Path
    description: str
    reference: Callable[[Mapping[str, np.ndarray], Mapping[str, int]], dict] | None

    def load(self, operators: OperatorTable | None = None) -> Cascade:
        return _parse_file(self.file, self.file.stat().st_mtime_ns, operators)


def library() -> dict[str, LibraryEntry]:
    """All built-in cascades by name, in name order (a file ``NAME.cascade`` holds cascade NAME).

    Examples
    --------
    >>> lib = library()
    >>> lib["attention-1pass"].load().outputs
    ('AV',)
    """
    files = tuple((f, f.stat().st_mtime_ns) for f in sorted(LIBRARY_DIR.glob("*.cascade")))
    return dict(_library(files))


@lru_cache(maxsize=4)
def _library(files) -> tuple:
    out = []
    for f, _ in files:
        c = _parse_file(f, f.stat().st_mtime_ns, None)
        if c.name != f.stem:
            raise CascadeError(f"{f}: the library file of cascade {c.name!r} must be named {c.name}.cascade")
        out.append((c.name, LibraryEntry(c.name, f, c.description, _REFERENCES.get(c.name))))
    return tuple(out)


@lru_cache(maxsize=128)
def _parse_file(path: Path, mtime: int, operators) -> Cascade:
    """Parsed cascades are immutable, so a file unchanged since its last parse is not parsed again."""
    return parse_cascade(path.read_text(), str(path), operators)


def load_cascade(name_or_file: str | os.PathLike, operators: OperatorTable | None = None) -> Cascade:
    """A built-in cascade by name, or a cascade file (``.cascade`` text or TeAAL ``.yaml``).

    Raises
    ------
    CascadeError
        If ``name_or_file`` is neither a built-in name nor a readable file, or the file is invalid.
    """
    s = os.fspath(name_or_file)
    p = Path(s)
    if p.is_file():
        text = _read_text(p)
        if p.suffix in (".yaml", ".yml"):
            from ._teaal import parse_teaal

            return parse_teaal(text, s, operators)
        return parse_cascade(text, s, operators)
    own = LIBRARY_DIR / f"{s}.cascade"
    if os.sep not in s and own.is_file():       # the one file, not the whole library
        c = _parse_file(own, own.stat().st_mtime_ns, operators)
        if c.name != own.stem:
            raise CascadeError(f"{own}: the library file of cascade {c.name!r} must be named {c.name}.cascade")
        return c
    if p.suffix or os.sep in s:
        raise CascadeError(f"cannot read {s}: no such file")
    raise CascadeError(
        f"no built-in cascade named {s!r} and no file of that name",
        None, "`einforge cascade list` shows the built-in cascades",
    )


def _read_text(p: Path) -> str:
    """The file's text: UTF-8, a byte-order mark accepted; anything else is refused with its position."""
    from ._errors import Source, Span

    raw = p.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        col = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise CascadeError(f"not UTF-8 text (byte 0x{raw[exc.start]:02x})", Span(Source("", str(p)), line, col),
                           "save the file as UTF-8") from None
    return text.lstrip("\ufeff")


def random_inputs(cascade: Cascade, sizes: Mapping[str, int], rng: np.random.Generator,
                  scale: float = 1.0) -> dict[str, np.ndarray]:
    """Standard-normal inputs shaped by the cascade's inputs (weights of library cascades scaled)."""
    per = _INPUT_SCALE.get(cascade.name, {})
    return {
        t.name: rng.normal(size=[sizes[r] for r in t.ranks]) * scale * per.get(t.name, 1.0)
        for t in cascade.inputs
    }
