"""Where einforge keeps what it can recompute: exported Verilog, simulator builds, parsed quantities.

Everything cached is a pure function of its key (which names the inputs and the code that made it),
so a cache can be deleted at any time. ``EINFORGE_CACHE`` moves it, ``EINFORGE_NO_CACHE`` turns it off.
"""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir(kind: str) -> Path | None:
    """The directory for ``kind`` (not created), or ``None`` when caching is off."""
    if os.environ.get("EINFORGE_NO_CACHE"):
        return None
    base = os.environ.get("EINFORGE_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "einforge")
    return Path(base) / kind
