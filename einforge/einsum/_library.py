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
from typing import TYPE_CHECKING

from ._cascade import Cascade, parse_cascade
from ._errors import CascadeError
from ._ops import OperatorTable

if TYPE_CHECKING:
    import numpy as np

__all__ = ["LibraryEntry", "library", "load_cascade", "random_inputs", "LIBRARY_DIR"]

LIBRARY_DIR = Path(__file__).parent / "library"


_INPUT_SCALE = {"attention-hedgehog": {"WQ": 0.3, "WK": 0.3, "BQ": 0.3, "BK": 0.3}}


@dataclass(frozen=True)
class LibraryEntry:
    """A built-in cascade: its file, and the direct computation it is checked against."""

    name: str
    file: Path
    description: str
    reference: Callable[[Mapping[str, np.ndarray], Mapping[str, int]], dict] | None
    family: str = ""

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
        from ._references import REFERENCES

        out.append((c.name, LibraryEntry(c.name, f, c.description, REFERENCES.get(c.name), c.family)))
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
    """Standard-normal inputs shaped by the cascade's inputs (weights of library cascades scaled); an
    input a data-dependent filter reads (``density`` line) is a 0/1 mask with its declared density."""
    per = _INPUT_SCALE.get(cascade.name, {})
    masks = dict(cascade.densities)
    out = {}
    for t in cascade.inputs:
        shape = [sizes[r] for r in t.ranks]
        if t.name in masks:        # a mask a data-dependent filter reads: 1 with its declared density
            out[t.name] = (rng.random(size=shape) < cascade.density(t.name, sizes)).astype(float)
        else:
            out[t.name] = rng.normal(size=shape) * scale * per.get(t.name, 1.0)
    return out
