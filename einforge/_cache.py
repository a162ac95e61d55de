"""Where einforge keeps what it can recompute: exported Verilog, simulator builds, parsed quantities.

Everything cached is a pure function of its key (which names the inputs and the code that made it),
so a cache can be deleted at any time. ``EINFORGE_CACHE`` moves it, ``EINFORGE_NO_CACHE`` turns it off.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path


def cache_dir(kind: str) -> Path | None:
    """The directory for ``kind`` (not created), or ``None`` when caching is off."""
    if os.environ.get("EINFORGE_NO_CACHE"):
        return None
    base = os.environ.get("EINFORGE_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "einforge")
    return Path(base) / kind


def memo(kind: str, key: str, build):
    """``build()``'s value, kept on disk (as a pickle under ``kind``) until a file it read changes.

    ``build`` returns ``(value, files)``: the value and every file it was made from. A kept value
    is used only while each of those files has the content it had then, so an edited file is
    read again; ``key`` names everything else the value depends on (include :func:`code_version`).
    Errors are never kept. A missing, corrupt or read-only cache only costs the time of ``build``.
    """
    import hashlib
    import pickle

    base = cache_dir(kind)
    if base is None:
        return build()[0]
    path = base / (hashlib.sha256(key.encode()).hexdigest()[:32] + ".pickle")
    try:
        deps, value = pickle.loads(path.read_bytes())
        if all(_digest(Path(p)) == d for p, d in deps):
            return value
    except Exception:  # noqa: BLE001 - absent, stale or corrupt: make it again
        pass
    value, files = build()
    try:
        data = pickle.dumps(([(str(p), _digest(Path(p))) for p in files], value))
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_bytes(data)
        tmp.replace(path)
    except Exception:  # noqa: BLE001 - a cache that cannot be written costs time, never correctness
        pass
    return value


def _digest(p: Path) -> str | None:
    import hashlib

    try:
        return hashlib.sha256(p.read_bytes()).hexdigest()
    except OSError:
        return None


@lru_cache(maxsize=1)
def code_version() -> str:
    """einforge's version and the size and time of every module file: a changed module changes it."""
    import hashlib

    from . import __version__

    h = hashlib.sha256(__version__.encode())
    root = Path(__file__).parent
    for p in sorted(root.rglob("*.py")):
        st = p.stat()
        h.update(f"{p.relative_to(root)}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()
