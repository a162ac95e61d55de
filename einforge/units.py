"""Quantities with dimensions: the one parser for every number einforge reads from a file or a flag.

Two kinds of numbers appear in einforge's inputs:

* **counts** (sequence lengths, rank sizes, array shapes): plain integers, optionally with a binary
  multiple as the literature writes context lengths: ``64K`` = 65536 tokens, ``1M`` = 2**20;
* **physical quantities** (capacities, bandwidths, clocks): a number *and a unit*, read by pint
  with SI prefixes as SI defines them and IEC prefixes for powers of two: ``16MiB`` = 2**24 bytes,
  ``64Mbit`` = 8e6 bytes, ``400GiB/s``, ``940MHz``. A quantity without a unit, or with a unit of the
  wrong dimension (``capacity: 940MHz``), is refused.

Examples
--------
>>> count("64K"), count("1M"), count(4096)
(65536, 1048576, 4096)
>>> quantity("16MiB", "bytes"), quantity("64Mbit", "bytes"), quantity("400GiB/s", "bytes/second")
(16777216.0, 8000000.0, 429496729600.0)
>>> quantity("940MHz", "hertz")
940000000.0
>>> quantity("940MHz", "bytes")
Traceback (most recent call last):
...
einforge.units.QuantityError: '940MHz' is a frequency, not a size in bytes (write e.g. 16MiB or 64kB)
"""

from __future__ import annotations

import math
import re
from functools import lru_cache

__all__ = ["QuantityError", "count", "quantity", "DIMENSIONS", "Quantity", "Count"]


class QuantityError(ValueError):
    """A number that is not a count or quantity of the expected kind; the message says what to write."""


_BINARY = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}

#: what each expected dimension is called, and an example of it
DIMENSIONS = {
    "bytes": ("a size in bytes", "16MiB or 64kB", "byte"),
    "bytes/second": ("a bandwidth", "400GiB/s or 1.6TB/s", "byte / second"),
    "hertz": ("a frequency", "940MHz or 1GHz", "hertz"),
    "bits": ("a width in bits", "4096bit or 512B", "bit"),
    "seconds": ("a time", "20us or 1.5ms", "second"),
}
_NAMES = {"[information]": "a size in bytes", "[information] / [time]": "a bandwidth", "1 / [time]": "a frequency",
          "[time]": "a time", "dimensionless": "a plain number"}


def count(value, what: str = "count") -> int:
    """A non-negative whole number; ``K``/``M``/``G``/``T`` suffixes are binary multiples (1K = 1024).

    Raises
    ------
    QuantityError
        Not a whole number, negative, or beyond what a signed 64-bit integer holds.
    """
    if isinstance(value, bool):
        raise QuantityError(f"{what} {value!r} is not a count such as 4096, 64K or 1M")
    if isinstance(value, int):
        n = value
    elif isinstance(value, float) and value.is_integer():
        n = int(value)
    else:
        m = re.fullmatch(r"\s*(\d+)\s*([KMGT]?)\s*", str(value))
        if not m:
            raise QuantityError(f"{what} {value!r} is not a count such as 4096, 64K or 1M "
                                "(K, M, G, T are binary multiples: 64K = 65536)")
        n = int(m.group(1)) * _BINARY.get(m.group(2), 1)
    if n < 0:
        raise QuantityError(f"{what} must not be negative, not {value!r}")
    if n >= 1 << 63:
        raise QuantityError(f"{what} {value!r} is too large (at most 2**63 - 1)")
    return n


@lru_cache(maxsize=1)
def _registry():
    # a registry of just the units einforge reads: building pint's full default one costs ~0.5 s
    import pint

    ureg = pint.UnitRegistry(None, autoconvert_offset_to_baseunit=False)
    for d in ("bit = [information] = b", "byte = 8 * bit = B", "second = [time] = s", "hertz = 1 / second = Hz",
              "kilo- = 1e3 = k- = K-", "mega- = 1e6 = M-", "giga- = 1e9 = G-", "tera- = 1e12 = T-",
              "peta- = 1e15 = P-", "kibi- = 2**10 = Ki-", "mebi- = 2**20 = Mi-", "gibi- = 2**30 = Gi-",
              "tebi- = 2**40 = Ti-", "milli- = 1e-3 = m-", "micro- = 1e-6 = u-", "nano- = 1e-9 = n-",
              "pico- = 1e-12 = p-"):
        ureg.define(d)
    return ureg


def quantity(value, dimension: str, what: str = "") -> float:
    """The magnitude of ``value`` in the base unit of ``dimension`` (bytes, bytes/second, hertz, bits,
    seconds).

    Raises
    ------
    QuantityError
        No unit, a unit of another dimension, an unknown unit, or a value that is not positive and finite.
    """
    name, example, unit = DIMENSIONS[dimension]
    label = f"{what} " if what else ""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        raise QuantityError(f"{label}{value!r} has no unit; write {name} with its unit, e.g. {example}")
    text = str(value).strip()
    bare = re.fullmatch(r"([0-9.]+)\s*([kKMGT]i?)", text)
    if bare:
        raise QuantityError(f"{label}{value!r} has no unit; write {name} with its unit, e.g. {bare.group(1)}"
                            f"{bare.group(2)[0].upper()}iB (binary) or {bare.group(1)}{bare.group(2)[0].lower()}"
                            f"{'B' if dimension == 'bytes' else 'B/s' if dimension == 'bytes/second' else 'Hz'} (SI)")
    if not re.fullmatch(r"[0-9.eE+\-]+\s*[A-Za-z/ *]+", text):
        raise QuantityError(f"{label}{value!r} is not {name} with a unit, e.g. {example}")
    known = _known()
    if f"{dimension}|{text}" in known:
        return known[f"{dimension}|{text}"]
    mag = _parse(text, dimension, label)
    _remember(known, f"{dimension}|{text}", mag)
    return mag


def _parse(text: str, dimension: str, label: str) -> float:
    name, example, unit = DIMENSIONS[dimension]
    import pint

    ureg = _registry()
    try:
        q = ureg.Quantity(text)
    except (pint.errors.UndefinedUnitError, pint.errors.DefinitionSyntaxError, AttributeError, TypeError,
            ValueError, SyntaxError) as exc:
        raise QuantityError(f"{label}{text!r}: {exc}; write {name} such as {example}") from None
    target = ureg.Quantity(1, unit)
    if q.dimensionality != target.dimensionality:
        got = _NAMES.get(str(q.dimensionality), f"a quantity of dimension {q.dimensionality}")
        raise QuantityError(f"{label}{text!r} is {got}, not {name} (write e.g. {example})")
    mag = float(q.to(unit).magnitude)
    if not math.isfinite(mag) or mag <= 0:
        raise QuantityError(f"{label}{text!r} must be positive and finite")
    return mag


# Quantities read before, kept on disk: pint takes ~0.3 s to import, a command reads a handful of
# quantities, and a reading is a pure function of the text and of this module (which defines the
# units), so the file is named by this module's hash. Only successful readings are kept.

@lru_cache(maxsize=1)
def _known_file():
    import hashlib
    from pathlib import Path

    from ._cache import cache_dir

    base = cache_dir("quantities")
    if base is None:
        return None
    return base / f"{hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:16]}.json"


@lru_cache(maxsize=1)
def _known() -> dict:
    """The readings on disk (this process adds its own)."""
    import json

    path = _known_file()
    try:
        return dict(json.loads(path.read_text())) if path is not None else {}
    except (OSError, ValueError):
        return {}


def _remember(known: dict, key: str, value: float) -> None:
    known[key] = value
    path = _known_file()
    if path is None:
        return
    import json
    import os

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(known))
        tmp.replace(path)
    except OSError:
        pass


def Quantity(dimension: str):  # noqa: N802 - used as a type in file schemas
    """A pydantic field type: a quantity of ``dimension`` read with :func:`quantity` (a float in
    the base unit)."""
    from typing import Annotated

    from pydantic import BeforeValidator

    def read(v):
        try:
            return quantity(v, dimension)
        except QuantityError as exc:
            raise ValueError(str(exc)) from None

    return Annotated[float, BeforeValidator(read)]


def Count(what: str = "count"):  # noqa: N802 - used as a type in file schemas
    """A pydantic field type: a count read with :func:`count` (``64K`` = 65536)."""
    from typing import Annotated

    from pydantic import BeforeValidator

    def read(v):
        try:
            return count(v, what)
        except QuantityError as exc:
            raise ValueError(str(exc)) from None

    return Annotated[int, BeforeValidator(read)]
