"""The ``einforge`` command: tables for people, ``--json`` for programs.

Every subcommand prints one JSON object (or list) on stdout with ``--json``. Errors in the input
(a malformed cascade, an unknown name, a size that does not divide) print one message on stderr
and exit with status 2; a check that ran and failed exits with status 1.
"""

from __future__ import annotations

import functools
import json
import math
import sys
import time
from pathlib import Path

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .einsum._errors import CascadeError

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)

def parse_count(text: str) -> int:
    """``64K`` -> 65536, ``1M`` -> 1048576, ``4096`` -> 4096 (:func:`einforge.units.count`)."""
    from .units import QuantityError, count

    try:
        return count(text.strip())
    except QuantityError as exc:
        raise click.BadParameter(str(exc)) from None


def parse_sizes(items, real=frozenset()) -> dict[str, int | float]:
    """``R=N`` items (comma-separated or repeated); names in ``real`` take real numbers."""
    out = {}
    for item in items:
        for part in item.split(","):
            if not part:
                continue
            if "=" not in part:
                raise click.BadParameter(f"{part!r} is not a size; write RANK=N, e.g. M=4096")
            k, v = part.split("=", 1)
            out[k.strip()] = _real(k.strip(), v) if k.strip() in real else parse_count(v)
    return out


def _real(name: str, text: str) -> float:
    import math

    try:
        v = float(text)
    except ValueError:
        v = math.nan
    if not math.isfinite(v):
        raise click.BadParameter(f"{name}={text!r}: {name} is a real-valued parameter; give a finite number "
                                 "such as 30.0 or 0.125")
    return v


def _given_sizes(cascade, size, params) -> dict[str, int | float]:
    """--size R=N and --param W=N, checked against the cascade's ranks and parameters."""
    sizes = parse_sizes(list(size))
    pars = parse_sizes(list(params), real={r.name for r in cascade.ranks if r.real})
    for k in pars:
        decl = next((r for r in cascade.ranks if r.name == k), None)
        if decl is None or not decl.param:
            names = ", ".join(r.name for r in cascade.ranks if r.param) or "none"
            raise click.BadParameter(f"{k} is not a parameter of {cascade.name} (its parameters: {names})",
                                     param_hint="--param")
    for k in sizes:
        decl = next((r for r in cascade.ranks if r.name == k), None)
        if decl is None:
            raise click.BadParameter(f"{k} is not a rank of {cascade.name} (its ranks: "
                                     f"{', '.join(cascade.rank_names)})", param_hint="--size")
        if decl.real:
            raise click.BadParameter(f"{k} is a real-valued parameter of {cascade.name}; set it with --param "
                                     f"{k}=X", param_hint="--size")
    return {**sizes, **pars}


def _domain_errors():
    errs = [CascadeError]
    for mod, name in (("einforge.arch", "ArchError"), ("einforge.rtl", "RTLError"), ("einforge.sim", "SimError")):
        try:
            m = __import__(mod, fromlist=[name])
            errs.append(getattr(m, name))
        except (ImportError, AttributeError):
            pass
    return tuple(errs)


def handles_errors(fn):
    @functools.wraps(fn)
    def wrapper(*a, **k):
        try:
            return fn(*a, **k)
        except _domain_errors() as exc:
            err_console.print(f"[bold red]error:[/] {escape(str(exc))}", soft_wrap=True)
            sys.exit(2)
    return wrapper


def emit_json(obj) -> None:
    click.echo(json.dumps(obj, indent=2, default=_json_default))


def _json_default(o):
    import numpy as np

    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


def _finite(x):
    return None if x is None or not math.isfinite(x) else x


size_option = click.option("--size", "-s", "size", multiple=True, metavar="R=N",
                           help="rank size, e.g. --size M=4096 (repeatable; R=N words may also follow the name)")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="einforge")
def main():
    """Design attention accelerators from their algorithms."""


# ------------------------------------------------------------------------------------------------
# einforge cascade ...
# ------------------------------------------------------------------------------------------------


@main.group()
def cascade():
    """Write, inspect and run cascades of Extended Einsums."""


@cascade.command("list")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
@handles_errors
def cascade_list(as_json):
    """The built-in cascades."""
    from .einsum import library

    lib = library()
    order = sorted(lib.values(), key=lambda e: (e.family or "~", e.name))
    if as_json:
        emit_json([{"name": e.name, "family": e.family, "description": e.description, "file": str(e.file)}
                   for e in order])
        return
    t = Table(title="built-in cascades, by family")
    t.add_column("family")
    t.add_column("name", style="bold")
    t.add_column("description")
    last = None
    for e in order:
        t.add_row(e.family if e.family != last else "", e.name, e.description, end_section=False)
        last = e.family
    console.print(t)


@cascade.command("show")
@click.argument("cascade_ref", metavar="NAME|FILE")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
@handles_errors
def cascade_show(cascade_ref, as_json):
    """Pretty-print a cascade: ranks, tensors and Einsums."""
    from .einsum import load_cascade

    c = load_cascade(cascade_ref)
    its = c.iterative_ranks
    if as_json:
        emit_json({
            "name": c.name, "description": c.description,
            "ranks": {r.name: {"size": None if r.size is None else r.size.text(), "param": r.param,
                               "derived": r.derived, "iterative": r.name in its} for r in c.ranks},
            "tensors": {n: {"ranks": list(i.ranks), "input": i.is_input, "output": n in c.outputs,
                            "iterative": None if i.iterative is None else i.ranks[i.iterative]}
                        for n, i in c.tensors.items()},
            "einsums": [{"label": c.label(k), "text": e.text(), "kind": c.einsum_kind(k),
                         "reduce": [list(r) for r in e.reduce]} for k, e in enumerate(c.einsums)],
            "text": c.text(),
        })
        return
    console.print(f"[bold]{c.name}[/] — {c.description}" if c.description else f"[bold]{c.name}[/]")
    t = Table(title="ranks")
    for col in ("rank", "size", "kind"):
        t.add_column(col)
    for r in c.ranks:
        kind = "parameter" if r.param else ("iterative" if r.name in its else "")
        if r.derived:
            kind = (kind + ", derived").strip(", ")
        size = "bound later" if r.size is None else r.size.text()
        if r.name in its:
            size += f" (stop {its[r.name].stop.text()})"
        t.add_row(r.name, escape(size), kind)
    console.print(t)
    t = Table(title="tensors")
    for col in ("tensor", "ranks", "role"):
        t.add_column(col)
    for n, i in c.tensors.items():
        role = "input" if i.is_input else ("output" if n in c.outputs else "intermediate")
        if i.iterative is not None:
            role += f", iterative over {i.ranks[i.iterative]}"
        t.add_row(n, escape("[" + ", ".join(i.ranks) + "]"), role)
    console.print(t)
    t = Table(title="Einsums")
    t.add_column("#", justify="right")
    t.add_column("Einsum")
    t.add_column("kind")
    for k, e in enumerate(c.einsums):
        t.add_row(str(k + 1), escape(e.text()), c.einsum_kind(k))
    console.print(t)


@cascade.command("run")
@click.argument("cascade_ref", metavar="NAME|FILE")
@click.argument("sizes", nargs=-1, metavar="[R=N]...")
@size_option
@click.option("--reference", "reference_ref", metavar="NAME|FILE",
              help="another cascade to check against on the same inputs (e.g. the library cascade you rewrote)")
@click.option("--seed", default=0, show_default=True, help="seed of the random inputs")
@click.option("--scale", default=1.0, show_default=True, help="standard deviation of the random inputs")
@click.option("--tol", default=1e-9, show_default=True, help="largest relative error that passes")
@click.option("--fixed", "fixed", metavar="I.F",
              help="also run in signed fixed point with I integer (sign included) and F fraction bits, as the "
                   "RTL computes, and check every output against float64 within its derived error bound")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
@handles_errors
def cascade_run(cascade_ref, sizes, size, reference_ref, seed, scale, tol, fixed, as_json):
    """Run a cascade on random inputs and check it.

    A built-in cascade is compared with its direct numpy computation; any cascade with
    --reference OTHER is compared with OTHER on the same inputs. Without either, nothing is
    compared and the report says so. Outputs with NaN or infinities fail. With --fixed I.F the
    cascade also runs in that fixed-point format on the same inputs (rounded to it), and each
    output must lie within its error bound of float64, derived by running error analysis of the
    format's arithmetic; no finite bound fails (the format cannot be shown to hold the cascade)."""
    import numpy as np

    from .einsum import compare_outputs, evaluate, library, load_cascade, random_inputs, resolve_sizes

    c = load_cascade(cascade_ref)
    sz = resolve_sizes(c, parse_sizes(list(size) + list(sizes), real={r.name for r in c.ranks if r.real}))
    x = random_inputs(c, sz, np.random.default_rng(seed), scale)
    t0 = time.perf_counter()
    out = evaluate(c, x, sz)
    seconds = time.perf_counter() - t0
    ref, against = None, None
    if reference_ref is not None:
        other = load_cascade(reference_ref)
        missing = [t.name for t in c.inputs if t.name not in {i.name for i in other.inputs}]
        if missing:
            raise CascadeError(f"{other.name} has no input {', '.join(missing)}; the reference must read the "
                               f"same inputs as {c.name}")
        osz = resolve_sizes(other, {k: v for k, v in sz.items() if k in {r.name for r in other.ranks}
                                    and not other.rank(k).derived})
        ref, against = evaluate(other, {k: v for k, v in x.items() if k in {i.name for i in other.inputs}}, osz), \
            other.name
    else:
        entry = library().get(c.name)
        if entry is not None and entry.reference is not None and c == entry.load():
            ref, against = entry.reference(x, sz), "direct numpy"
    nonfinite = [o for o in c.outputs if not np.all(np.isfinite(out[o]))]
    compared, abs_err, rel_err = compare_outputs(ref, out, c.outputs) if ref is not None else ([], None, None)
    if ref is not None and not compared:
        raise CascadeError(f"{against} has none of the outputs of {c.name} ({', '.join(c.outputs)}): "
                           "nothing to compare")
    accurate = None if not compared else rel_err <= tol
    format_check = _fixed_point_check(c, x, sz, fixed) if fixed else None
    passed = not nonfinite and accurate is not False and (format_check is None or format_check["within_bound"])
    if as_json:
        emit_json({"cascade": c.name, "sizes": sz, "reference": against, "compared": compared,
                   "max_abs_error": abs_err if abs_err is None or math.isfinite(abs_err) else "inf",
                   "max_rel_error": rel_err if rel_err is None or math.isfinite(rel_err) else "inf",
                   "non_finite_outputs": nonfinite, "seconds": seconds,
                   "passed": passed if compared or format_check else (False if nonfinite else None),
                   "fixed_point": format_check,
                   "outputs": {o: list(out[o].shape) for o in c.outputs}})
    else:
        console.print(f"[bold]{c.name}[/]  sizes: " + " ".join(f"{k}={v}" for k, v in sz.items()))
        for o in c.outputs:
            with np.errstate(all="ignore"):
                console.print(f"  {o}{escape(str(list(out[o].shape)))}  mean {np.mean(out[o]):.6g}  "
                              f"max |.| {np.max(np.abs(out[o])) if out[o].size else 0:.6g}")
        if nonfinite:
            console.print(f"  [red]FAILED[/]: {', '.join(nonfinite)} hold NaN or infinite values")
        if not compared:
            console.print("  nothing compared: not a built-in cascade; give --reference OTHER to check it "
                          "against another cascade")
        else:
            verdict = "[green]ok[/]" if accurate else "[red]FAILED[/]"
            console.print(f"  {', '.join(compared)} vs {against}: max abs error {abs_err:.3e}, relative "
                          f"{rel_err:.3e} (tolerance {tol:g}) {verdict}")
        if format_check:
            verdict = "[green]ok[/]" if format_check["within_bound"] else "[red]FAILED[/]"
            for o, r in format_check["outputs"].items():
                bound = r["bound"] if isinstance(r["bound"], str) else f"{r['bound']:.3e}"
                console.print(f"  {o} in {format_check['format']} vs float64: max abs error {r['max_abs_error']:.3e}, "
                              f"derived bound {bound}")
            console.print(f"  {format_check['format']} {verdict}"
                          + ("" if format_check["within_bound"] else ": no finite error bound at some output "
                             "(a value leaves the format or a division meets a divisor within its own error); "
                             "use more bits"))
        console.print(f"  evaluated in {seconds:.3f} s")
    if not passed:
        sys.exit(1)


def _fixed_point_check(c, inputs, sizes, fmt: str) -> dict:
    """``c`` run in the fixed-point format ``fmt`` ("I.F") on ``inputs`` rounded to it: per output, the
    largest error against float64 on the same rounded inputs and the largest derived bound."""
    from .einsum import FixedPoint, format_error

    try:
        int_bits, frac_bits = (int(v) for v in fmt.removeprefix("Q").split("."))
        q = FixedPoint(int_bits, frac_bits)
    except ValueError as exc:
        raise click.BadParameter(f"{fmt!r} is not a fixed-point format: give I.F, e.g. 8.8 ({exc})",
                                 param_hint="--fixed") from exc
    r = format_error(c, {k: q.to_float(q.from_float(v)) for k, v in inputs.items()}, sizes, q)
    return {"format": q.describe(), "within_bound": r["within_bound"],
            "outputs": {o: {"max_abs_error": v["max_abs_error"],
                            "bound": v["bound"] if math.isfinite(v["bound"]) else "inf"}
                        for o, v in r["outputs"].items()}}


# ------------------------------------------------------------------------------------------------
# einforge analyze / rewrite
# ------------------------------------------------------------------------------------------------


@main.command()
@click.argument("cascade_ref", metavar="NAME|FILE")
@click.option("--rank", "ranks", multiple=True, help="analyse only this rank (repeatable); default: all")
@click.option("--plot", "plot", type=click.Path(dir_okay=False), help="draw the dependency graph (.png/.svg/.pdf)")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
@handles_errors
def analyze(cascade_ref, ranks, plot, as_json):
    """Lower bound on passes per rank, fusion groups, footprint and traffic formulas."""
    from .einsum import analyze as run_analysis
    from .einsum import load_cascade, plot_cascade

    c = load_cascade(cascade_ref)
    a = run_analysis(c, list(ranks) or None)
    if plot:
        main_rank = ranks[0] if ranks else max(a.reports, key=lambda r: (a.reports[r].passes, r == "M"))
        plot_cascade(c, plot, report=a.reports[main_rank])
    if as_json:
        emit_json(a.to_json())
        return
    console.print(f"[bold]{c.name}[/]" + (f" — {c.description}" if c.description else ""))
    t = Table(title="passes per rank")
    t.add_column("rank")
    t.add_column("passes", justify="right")
    t.add_column("multi-pass tensors (pass levels read)")
    t.add_column("barriers")
    for r, rep in a.reports.items():
        multi = ", ".join(f"{k}{list(v)}" for k, v in rep.multi_pass_tensors.items()) or "-"
        t.add_row(r, str(rep.passes), escape(multi), ", ".join(rep.barriers) or "-")
    console.print(t)
    shown = [r for r in a.reports]
    t = Table(title="pass level of each Einsum")
    t.add_column("Einsum")
    for r in shown:
        t.add_column(r, justify="center")
    for lab in c.labels:
        cells = []
        for r in shown:
            rep = a.reports[r]
            lv = rep.einsum_pass.get(lab)
            cell = "" if lv is None else str(lv)
            if rep.role.get(lab) == "boundary":
                cell += "b"
            cells.append(cell)
        t.add_row(lab, *cells)
    console.print(t)
    console.print("  (b: runs at the boundary after that pass, over completed per-tile summaries)")
    for r, rep in a.reports.items():
        if rep.passes <= 1 and not rep.live_across_passes:
            continue
        console.print(f"[bold]{r}[/]: fusion groups " + " | ".join(
            f"pass {k + 1}: {', '.join(g)}" for k, g in enumerate(rep.fusion_groups)))
        if rep.boundary:
            console.print("   boundary: " + "; ".join(f"after pass {k}: {', '.join(v)}" for k, v in rep.boundary.items()))
        rows = f" per ({', '.join(rep.row_ranks)})" if rep.row_ranks else ""
        console.print(f"   live footprint{rows}: {rep.footprint}   (whole problem: {rep.footprint_total})")
        console.print(f"   DRAM traffic(capacity): {rep.traffic}")
    console.print("  symbols: rank sizes, s = bytes per word, capacity = buffer capacity in bytes")
    if plot:
        console.print(f"  graph drawn to {plot}")


@main.command()
@click.argument("cascade_ref", metavar="NAME|FILE")
@click.option("--defer-division", "defer", is_flag=True, help="defer divisions past the sums that read them")
@click.option("--host-layouts", "host", is_flag=True,
              help="leave chunk gathers of inputs and blocked output writes to the host (chunked attention)")
@click.option("--stage", "stage", metavar="OUTS:INS",
              help="keep the stage computing OUTS from INS (comma-separated tensors, e.g. OC:QC,CKV), to lower "
                   "each stage of a cascade to its own hardware")
@click.option("--running-max", "running", metavar="RANK", help="make the global max over RANK a running max over tiles")
@click.option("--tile", type=int, default=None, help="tile size of the running max (default: from the rank's default size)")
@click.option("-o", "--output", "out", type=click.Path(dir_okay=False), help="write the cascade here instead of printing it")
@handles_errors
def rewrite(cascade_ref, defer, host, stage, running, tile, out):
    """Apply rewrites (a stage, host layouts, division deferral, then running max) and print the cascade.

    The first two keep the arithmetic; the running max changes the order of its steps and is
    checked against the original on random inputs."""
    from pathlib import Path

    from .einsum import defer_division, host_layouts, load_cascade, running_max, subcascade

    if not defer and not running and not host and not stage:
        raise click.UsageError("choose a rewrite: --stage OUTS:INS, --host-layouts, --defer-division and/or "
                               "--running-max RANK")
    c = load_cascade(cascade_ref)
    if stage:
        outs, sep, ins = stage.partition(":")
        if not sep or not outs or not ins:
            raise click.BadParameter(f"{stage!r}: give OUTPUTS:INPUTS, e.g. OC:QC,CKV", param_hint="--stage")
        c = subcascade(c, outs.split(","), ins.split(","))
    if host:
        c = host_layouts(c)
    if defer:
        c = defer_division(c)
    if running:
        c = running_max(c, running, tile_size=tile)
    text = c.text()
    if out:
        Path(out).write_text(text)
        err_console.print(f"wrote {out}")
    else:
        click.echo(text, nl=False)


# ------------------------------------------------------------------------------------------------
# einforge evaluate / sweep / figures
# ------------------------------------------------------------------------------------------------

_DEFAULT_BINDING = {"fusemax": "fusemax", "flat": "flat"}
_DEFAULT_CASCADE = {"fusemax": "attention-1pass", "arch": "attention-1pass", "cascade": "attention-1pass",
                    "flat": "attention-3pass", "unfused": "attention-3pass"}


def _defaults_used(ctx, names) -> list[str]:
    """The options of this command the user left at their defaults, as ``--opt value``."""
    from click.core import ParameterSource

    out = []
    for n in names:
        if ctx.get_parameter_source(n) == ParameterSource.DEFAULT and ctx.params.get(n) not in (None, False, ()):
            out.append(f"--{n.replace('_ref', '').replace('_', '-')} {ctx.params[n]}")
    return out


def _sizes_line(r) -> str:
    return ", ".join(f"{k}={v} ({r.size_origin.get(k, '')})" for k, v in r.sizes.items())


@main.command("evaluate")
@click.option("--arch", "arch_ref", default="fusemax", show_default=True, help="fusemax, flat or an architecture YAML file")
@click.option("--cascade", "cascade_ref", default=None, help="cascade name or file (default: the binding's cascade)")
@click.option("--binding", "binding_ref", default=None,
              help="fusemax, arch, cascade, flat, unfused or a binding YAML file (default: the architecture's own)")
@click.option("--model", "model", default="BERT", show_default=True, help="BERT, TrXL, T5, XLM or a workload YAML file")
@click.option("--seq", default="64K", show_default=True, help="sequence length: 1K, 64K, 1M or an integer")
@size_option
@click.option("--param", "params", multiple=True, metavar="W=N", help="parameter value, e.g. --param W=512 (repeatable)")
@click.option("--end-to-end", "e2e", is_flag=True, help="add the encoder's linear layers")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
@click.pass_context
@handles_errors
def evaluate_cmd(ctx, arch_ref, cascade_ref, binding_ref, model, seq, size, params, e2e, as_json):
    """Latency, utilization, traffic, energy and area of a cascade bound onto an architecture.

    Ranks take their sizes from the workload through the cascade's `workload` line; --size and
    --param override them. Every size used, and where it came from, is printed with the result."""
    from .arch import evaluate, load_architecture, load_binding, load_workload
    from .einsum import load_cascade

    arch = load_architecture(arch_ref)
    binding_name = binding_ref or _DEFAULT_BINDING.get(arch.name, "fusemax")
    c = load_cascade(cascade_ref or _DEFAULT_CASCADE.get(binding_name, "attention-1pass"))
    b = load_binding(binding_name, c)
    w = load_workload(model, seq).with_sizes(_given_sizes(c, size, params))
    r = evaluate(arch, c, b, w, name=f"{c.name}/{b.name}@{arch.name}:{w.label}")
    defaults = _defaults_used(ctx, ["arch_ref", "model", "seq"])
    if cascade_ref is None:
        defaults.append(f"--cascade {c.name}")
    if binding_ref is None:
        defaults.append(f"--binding {b.name}")
    lin = None
    if e2e:
        lc = load_cascade("encoder-linear")
        # the linear layers take the workload as it is (--size names the attention cascade's ranks)
        lin = evaluate(arch, lc, load_binding("unfused", lc), load_workload(model, seq),
                       name=f"encoder-linear@{arch.name}:{w.label}")
    if as_json:
        out = r.to_json()
        out["defaults_used"] = defaults
        if lin is not None:
            out["end_to_end"] = {"latency_s": r.latency_s + lin.latency_s, "energy_pJ": r.energy_pJ + lin.energy_pJ,
                                 "traffic_bytes": r.traffic_bytes + lin.traffic_bytes, "linear": lin.to_json()}
        emit_json(out)
        return
    console.print(f"[bold]{escape(r.design)}[/]  ({b.description})")
    console.print(f"  sizes: {escape(_sizes_line(r))}; instances {r.instances}")
    if defaults:
        console.print(f"  defaults used: {escape(', '.join(defaults))}")
    for warning in r.warnings:
        console.print(f"  [yellow]note:[/] {escape(warning)}")
    d = r.details
    bound = "memory" if r.memory_s >= r.compute_s else "compute"
    launch = d.get("launch_overhead_s", 0.0)
    console.print(f"  latency {r.latency_s:.6g} s ({bound}-bound: compute {r.compute_s:.4g} s, memory {r.memory_s:.4g} s"
                  + (f", plus a kernel launch of {launch:.4g} s" if launch else "") + ")")
    console.print(f"  utilization: 2D {r.util_2d:.4f}, 1D {r.util_1d:.4f}")
    console.print(f"  DRAM traffic {r.traffic_bytes:.6g} B" + (f"   P1={d['P1']} P2={d['P2']}" if "P2" in d else ""))
    console.print(f"  energy {r.energy_pJ:.6g} pJ   area {r.area_um2:.6g} um2")
    if "flat_dataflow" in d:
        console.print(f"  FLAT dataflow ({d['flat_dataflow']}): {d['granularity']} granularity, P1={d['P1']}, "
                      f"{d['stationarity']} stationary, on chip: {d['on_chip']}, spilled {d['proportion_spilled']:.3g}")
    t = Table(title="per Einsum")
    for col in ("Einsum", "array", "cycles", "2D util", "1D util", "energy pJ", "share"):
        t.add_column(col, justify="left" if col in ("Einsum", "array") else "right")
    for lab, ec in r.per_einsum.items():
        if ec.array is None:
            continue
        t.add_row(lab, ec.array, f"{ec.cycles:.4g}", f"{r.einsum_util(lab, '2d'):.4f}", f"{r.einsum_util(lab, '1d'):.4f}",
                  f"{ec.energy_pJ:.4g}", f"{ec.energy_pJ / r.energy_pJ:.1%}")
    console.print(t)
    t = Table(title="energy by component")
    t.add_column("component")
    t.add_column("pJ", justify="right")
    t.add_column("share", justify="right")
    for k, v in sorted(r.energy_breakdown_pJ.items(), key=lambda kv: -kv[1]):
        t.add_row(k, f"{v:.4g}", f"{v / r.energy_pJ:.1%}")
    console.print(t)
    if lin is not None:
        console.print(f"  end to end (+ linear layers): latency {r.latency_s + lin.latency_s:.6g} s, "
                      f"energy {r.energy_pJ + lin.energy_pJ:.6g} pJ")


@main.command("search")
@click.argument("cascade_ref", metavar="NAME|FILE")
@click.option("--arch", "arch_ref", default="fusemax", show_default=True, help="fusemax, flat or an architecture YAML file")
@click.option("--model", "model", default="BERT", show_default=True, help="BERT, TrXL, T5, XLM or a workload YAML file")
@click.option("--seq", default="64K", show_default=True, help="sequence length: 1K, 64K, 1M or an integer")
@size_option
@click.option("--param", "params", multiple=True, metavar="W=N", help="parameter value (repeatable)")
@click.option("--objective", type=click.Choice(["latency", "energy", "edp"]), default="latency", show_default=True)
@click.option("--max-energy", "max_energy", default=None, metavar="seed|PJ",
              help="refuse mappings over this energy; 'seed' = no more than FuseMax's binding")
@click.option("--area-budget", "area_budget", type=float, default=None, metavar="UM2", help="refuse a larger architecture")
@click.option("--rtl", "rtl", is_flag=True, help="only placements the generated attention engine implements")
@click.option("-o", "--output", "out", type=click.Path(dir_okay=False), help="write the best binding here (YAML)")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
@handles_errors
def search_cmd(cascade_ref, arch_ref, model, seq, size, params, objective, max_energy, area_budget, rtl, out,
               as_json):
    """Find the best binding of a cascade for one design point (branch and bound over each Einsum's
    array, the column rank, the tile size and the schedule); -o writes it as a binding file that
    `einforge evaluate --binding FILE` reproduces."""
    from pathlib import Path

    from rich.progress import Progress

    from .arch import binding_yaml, load_architecture, load_workload, search
    from .einsum import load_cascade

    arch = load_architecture(arch_ref)
    c = load_cascade(cascade_ref)
    w = load_workload(model, seq).with_sizes(_given_sizes(c, size, params))
    budget = None if max_energy is None else ("seed" if max_energy == "seed" else float(max_energy))
    with Progress(console=err_console, transient=True, disable=as_json) as prog:
        task = prog.add_task("searching", total=None)
        r = search(arch, c, w, objective=objective, area_budget=area_budget, max_energy=budget, rtl=rtl,
                   progress=lambda done, total: prog.update(task, completed=done, total=total))
    if out:
        Path(out).write_text(binding_yaml(r.binding))
    if as_json:
        emit_json({**r.to_json(), "written": out})
        return
    console.print(f"[bold]{c.name}[/] on {arch.name}, {w.label}, objective {objective}")
    console.print(f"  {escape(r.summary())}")
    console.print(f"  best: latency {r.report.latency_s:.6g} s, energy {r.report.energy_pJ:.6g} pJ, "
                  f"utilization 2D {r.report.util_2d:.4f} / 1D {r.report.util_1d:.4f}")
    b = r.binding
    console.print(f"  binding: schedule {b.schedule}, tile {b.tile}, "
                  f"columns {escape(str(dict((a, dict(d)) for a, d in b.spatial)))}")
    if b.explicit:
        by = {}
        for lab, arr in b.explicit:
            by.setdefault(arr, []).append(lab)
        for arr, labs in by.items():
            console.print(f"    {arr}: {', '.join(labs)}")
    if out:
        console.print(f"  wrote {out}")


@main.command()
@click.argument("spec", type=click.Path(dir_okay=False))
@click.option("-o", "--output", "out", type=click.Path(dir_okay=False), required=True, help="results CSV")
@size_option
@click.option("--param", "params", multiple=True, metavar="W=N", help="parameter value for every point (repeatable)")
@click.option("--store", type=click.Path(file_okay=False), default=None,
              help="run on Dask and keep each finished batch in this directory (Parquet); rerun to resume")
@click.option("--scheduler", default=None, metavar="ADDRESS",
              help="a running Dask scheduler (tcp://host:8786 or tls://...; TLS from Dask's config)")
@click.option("--workers", type=int, default=None, help="local Dask workers (default: one per core)")
@click.option("--batch-points", type=int, default=2000, show_default=True,
              help="points per Dask task (whole groups of one array and workload)")
@click.option("--json", "as_json", is_flag=True, help="print a JSON summary")
@handles_errors
def sweep(spec, out, size, params, store, scheduler, workers, batch_points, as_json):
    """Evaluate the cross product of a sweep spec (architecture parameters x workloads x lengths x
    the sizes and parameters it sweeps); --size and --param fix a rank or parameter for every point.

    With --store (or --scheduler / --workers) the work runs as Dask tasks (a local cluster on
    127.0.0.1 unless --scheduler names one) and every finished batch is written to the store at
    once: a run stopped at any moment loses only the batches in flight, and the same command
    resumes it. The CSV (and Parquet) table is written from the store at the end."""
    from dataclasses import replace

    from rich.progress import Progress

    from .arch import load_sweep, run_sweep, write_table
    from .arch._workload import seq_label
    from .einsum import load_cascade

    s = load_sweep(spec)
    fixed = {}
    for c in s.cascades:
        fixed = _given_sizes(load_cascade(c), size, params)
    if fixed:
        swept = {k for k, _ in s.sizes}
        clash = sorted(set(fixed) & swept)
        if clash:
            raise click.BadParameter(f"{', '.join(clash)} is swept by the spec; do not fix it too")
        s = replace(s, sizes=s.sizes + tuple((k, (v,)) for k, v in fixed.items()))
    with Progress(console=err_console, transient=True, disable=as_json) as prog:
        task = prog.add_task("evaluating", total=s.size)
        if store or scheduler or workers:
            from .arch import run_distributed

            cols = run_distributed(s, store or f"{out}.store", scheduler=scheduler, workers=workers,
                                   per_batch=batch_points, progress=lambda n: prog.advance(task, n))
            keys = list(cols)
            rows = [dict(zip(keys, vals)) for vals in zip(*(cols[k].tolist() for k in keys))]
        else:
            rows = run_sweep(s, progress=lambda: prog.advance(task))
    files = write_table(rows, out)
    front = [r for r in rows if r["pareto_latency_area"]]
    if as_json:
        emit_json({"points": len(rows), "failed": sum(1 for r in rows if r["error"]),
                   "pareto_latency_area": len(front), "files": [str(f) for f in files]})
        return
    console.print(f"{len(rows)} points, {sum(1 for r in rows if r['error'])} that do not fit; "
                  f"{len(front)} on the latency/area Pareto front; wrote {', '.join(str(f) for f in files)}")
    t = Table(title="latency/area Pareto front")
    for col in ("workload", "seq", "array", "buffer", "latency s", "area um2", "energy pJ"):
        t.add_column(col)
    for r in front:
        t.add_row(r["workload"], seq_label(r["seq"]), f"{r['rows']}x{r['cols']}", f"{r['buffer_bytes'] / 2**20:g} MiB",
                  f"{r['latency_s']:.4g}", f"{r['area_um2']:.4g}", f"{r['energy_pJ']:.4g}")
    console.print(t)


@main.command("plot")
@click.argument("results", type=click.Path(exists=True))
@click.option("-x", "x", required=True, help="column on the x axis (e.g. latency_s)")
@click.option("-y", "y", required=True, help="column on the y axis (e.g. energy_pJ)")
@click.option("--color", default=None, help="column whose values get a colour each (e.g. workload)")
@click.option("--line", is_flag=True, help="lines through the points of each colour, in x order")
@click.option("--logx", is_flag=True, help="logarithmic x axis")
@click.option("--logy", is_flag=True, help="logarithmic y axis")
@click.option("--no-pareto", is_flag=True, help="do not draw the Pareto front")
@click.option("--title", default=None)
@click.option("-o", "--output", "out", required=True, type=click.Path(dir_okay=False),
              help="the figure: .png, .pdf or .svg")
@handles_errors
def plot_cmd(results, x, y, color, line, logx, logy, no_pareto, title, out):
    """Plot two columns of sweep results (a CSV, a Parquet file or a --store directory), coloured by
    a third, with the Pareto front (both minimized) of each colour."""
    from .arch import load_results, plot_results

    path = plot_results(load_results(results), x, y, out, color=color, line=line, logx=logx, logy=logy,
                        pareto=not no_pareto, title=title)
    console.print(f"wrote {path}")


@main.group()
def llm():
    """Decoder layers of LLMs: models, generation on one chip, decode on many."""


@llm.command("models")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
@handles_errors
def llm_models(as_json):
    """The built-in decoder models and their shapes."""
    from .arch import load_model, models

    rows = [load_model(n) for n in models()]
    if as_json:
        emit_json([{k: getattr(m, k) for k in ("name", "layers", "hidden", "heads", "kv_heads", "head_dim", "ffn",
                                               "ffn_dim", "norm", "window", "latent", "source")} for m in rows])
        return
    t = Table(title="decoder models")
    for col in ("name", "layers", "hidden", "heads", "kv heads", "FFN", "norm", "attention"):
        t.add_column(col)
    for m in rows:
        att = f"MLA (latent {m.latent})" if m.latent else (f"window {m.window}" if m.window else "causal GQA")
        t.add_row(m.name, str(m.layers), str(m.hidden), str(m.heads), str(m.kv_heads), f"{m.ffn} {m.ffn_dim}",
                  m.norm, att)
    console.print(t)
    console.print("sources: `einforge llm models --json`")


@llm.command("generate")
@click.option("--model", "model_ref", default="Llama-3-8B", show_default=True, help="a built-in model or a YAML file")
@click.option("--arch", "arch_ref", default="fusemax", show_default=True)
@click.option("--batch", default=1, show_default=True)
@click.option("--prompt", default="2K", show_default=True, help="prompt tokens")
@click.option("--tokens", default="256", show_default=True, help="tokens to generate")
@click.option("--memory", default=None, help="the chip's memory (e.g. 80GiB): refuse what does not fit")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
@handles_errors
def llm_generate(model_ref, arch_ref, batch, prompt, tokens, memory, as_json):
    """Prefill a prompt, then generate tokens: time to first token, time per output token, tokens/s,
    energy per token, weights and KV cache; every operator of a layer mapped by the mapper."""
    from .arch import generate, load_architecture, load_model
    from .units import quantity

    m = load_model(model_ref)
    mem = quantity(memory, "bytes", "--memory") if memory else None
    g = generate(load_architecture(arch_ref), m, batch, parse_count(prompt), parse_count(tokens), memory_bytes=mem)
    out = {"model": m.name, "arch": arch_ref, "batch": batch, "prompt": g.prompt, "new_tokens": g.new_tokens,
           "memory_checked": mem is not None,
           "ttft_s": g.ttft_s, "tpot_s": g.tpot_s, "tokens_per_s": g.tokens_per_s,
           "energy_per_token_pJ": g.energy_per_token_pJ, "weight_bytes": g.weight_bytes, "kv_bytes": g.kv_bytes,
           "prefill_layer": [dict(zip(("op", "cascade", "binding", "latency_s", "energy_pJ", "traffic_bytes"), o))
                             for o in g.prefill.ops]}
    if as_json:
        emit_json(out)
        return
    console.print(f"[bold]{m.name}[/] on {arch_ref}, batch {batch}, prompt {g.prompt}, {g.new_tokens} new tokens")
    console.print(f"  time to first token {g.ttft_s:.4g} s, time per output token {g.tpot_s * 1e3:.4g} ms, "
                  f"{g.tokens_per_s:.4g} tokens/s, {g.energy_per_token_pJ * 1e-9:.4g} mJ a token")
    console.print(f"  weights {g.weight_bytes / 2**30:.1f} GiB, KV cache at the end {g.kv_bytes / 2**30:.2f} GiB"
                  + ("" if mem else " (memory not checked: give --memory)"))
    t = Table(title="one prefill layer")
    for col in ("operator", "cascade", "binding", "ms", "MB"):
        t.add_column(col)
    for o in g.prefill.ops:
        t.add_row(o[0], o[1], o[2], f"{o[3] * 1e3:.4g}", f"{o[5] / 1e6:.4g}")
    console.print(t)


@llm.command("decode")
@click.option("--model", "model_ref", default="Llama-3-70B", show_default=True)
@click.option("--arch", "arch_ref", default="fusemax", show_default=True)
@click.option("--batch", default=8, show_default=True)
@click.option("--context", default="32K", show_default=True, help="KV cache length")
@click.option("--chips", default=8, show_default=True)
@click.option("--link", default="300GB/s", show_default=True, help="link bandwidth each way")
@click.option("--latency", default=2e-6, show_default=True, help="link latency, seconds")
@click.option("--memory", default=None, help="each chip's memory (e.g. 96GiB)")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
@handles_errors
def llm_decode(model_ref, arch_ref, batch, context, chips, link, latency, memory, as_json):
    """Time per output token on several chips (a switch) for tensor parallelism, Ulysses, Ring
    Attention and USP splits; the fastest that fits is marked."""
    from .arch import ArchError, Interconnect, decode_on_chips, load_architecture, load_model
    from .units import quantity

    m = load_model(model_ref)
    arch = load_architecture(arch_ref)
    net = Interconnect(chips, quantity(link, "bytes/second", "--link"), latency, "switch")
    mem = quantity(memory, "bytes", "--memory") if memory else None
    kv = parse_count(context)
    rows = []
    strategies = [("tensor", 0), ("ulysses", 0), ("ring", 0)] + [("usp", u) for u in (2, 4) if chips % u == 0 and u < chips]
    for strategy, u in strategies:
        try:
            r = decode_on_chips(arch, m, batch, kv, net, strategy, u, memory_bytes=mem)
            rows.append({"strategy": r.strategy, "tpot_s": r.latency_s, "comm_s": r.comm_s,
                         "memory_bytes": r.memory_bytes, "error": ""})
        except ArchError as exc:
            rows.append({"strategy": strategy if not u else f"usp({u}x{chips // u})", "tpot_s": None, "comm_s": None,
                         "memory_bytes": None, "error": str(exc)})
    ok = [r for r in rows if r["tpot_s"] is not None]
    best = min(ok, key=lambda r: r["tpot_s"])["strategy"] if ok else None
    if as_json:
        emit_json({"model": m.name, "chips": chips, "context": kv, "batch": batch, "best": best, "rows": rows,
                   "memory_checked": mem is not None})
        return
    t = Table(title=f"{m.name} decode, batch {batch}, {kv} tokens of context, {chips} chips")
    for col in ("strategy", "ms a token", "communication ms", "memory a chip GiB", ""):
        t.add_column(col)
    for r in rows:
        if r["tpot_s"] is None:
            t.add_row(r["strategy"], "does not fit" if "fit" in r["error"] else "refused", "", "", "")
        else:
            t.add_row(r["strategy"], f"{r['tpot_s'] * 1e3:.4g}", f"{r['comm_s'] * 1e3:.3g}",
                      f"{r['memory_bytes'] / 2**30:.1f}", "fastest" if r["strategy"] == best else "")
    console.print(t)
    if mem is None:
        console.print("  memory not checked: give --memory (each chip's) to refuse what does not fit")


@main.command("figures")
@click.option("-o", "--output", "out", type=click.Path(file_okay=False), required=True, help="output directory")
@handles_errors
def figures_cmd(out):
    """Regenerate the FuseMax paper's Figures 6-12 (PNG, PDF and CSV)."""
    from .arch import figures

    t0 = time.perf_counter()
    files = figures(out)
    console.print(f"wrote {len(files)} files to {out} in {time.perf_counter() - t0:.1f} s")


# ------------------------------------------------------------------------------------------------
# einforge rtl ...
# ------------------------------------------------------------------------------------------------


def _parse_array(text: str) -> tuple[int, int]:
    try:
        r, c = (int(x) for x in text.lower().split("x"))
    except ValueError:
        raise click.BadParameter(f"{text!r} is not an array shape such as 4x4") from None
    return r, c


def _lowered(cascade_ref, array, sizes, size, int_bits, frac_bits, binding, lane_rank=None):
    from .arch import Binding
    from .einsum import FixedPoint, load_cascade
    from .rtl import lower

    c = load_cascade(cascade_ref)
    try:
        numbers = FixedPoint(int_bits, frac_bits)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    if lane_rank is not None:
        if binding is not None:
            raise click.UsageError("--lane-rank places a vector-unit stage; --binding places the attention engine's "
                                   "cascades: give one of them")
        binding = Binding(name="lanes", spatial=(("1d", (("cols", (lane_rank,)),)),))
    d = lower(c, binding, _parse_array(array), numbers, parse_sizes(list(size) + list(sizes)))
    if lane_rank is not None and not d.manifest["datapath"].startswith("vector lanes"):
        raise click.UsageError(f"--lane-rank applies to stages the vector unit runs; {c.name} lowers to the "
                               f"{d.manifest['datapath'].split(' (')[0]}")
    return d


def _lane_note(d, lane_rank) -> str | None:
    """The vector unit's lane rank when the user did not choose it (a default printed with the result)."""
    if lane_rank is not None or not d.manifest["datapath"].startswith("vector lanes"):
        return None
    return (f"lanes across {d.manifest['mapping']['cols']} (default: the largest rank every tensor of the stage "
            "carries; --lane-rank chooses)")


rtl_options = [
    click.argument("cascade_ref", metavar="NAME|FILE"),
    click.argument("sizes", nargs=-1, metavar="[R=N]..."),
    click.option("--array", default="4x4", show_default=True, help="2D array shape RxC"),
    size_option,
    click.option("--int-bits", default=8, show_default=True, help="integer bits of the fixed-point format (sign included)"),
    click.option("--frac-bits", default=8, show_default=True, help="fraction bits of the fixed-point format"),
    click.option("--binding", default=None, help="binding for cascades with several Einsums (fusemax or arch)"),
    click.option("--lane-rank", default=None, help="the rank a vector-unit stage spreads over its lanes"),
]


def _rtl_opts(fn):
    for opt in reversed(rtl_options):
        fn = opt(fn)
    return fn


@main.group()
def rtl():
    """Generate, synthesize and verify RTL for a cascade."""


@rtl.command("generate")
@_rtl_opts
@click.option("-o", "--output", "out", type=click.Path(file_okay=False), required=True, help="output directory")
@click.option("--json", "as_json", is_flag=True, help="print the manifest as JSON")
@handles_errors
def rtl_generate(cascade_ref, sizes, array, size, int_bits, frac_bits, binding, lane_rank, out, as_json):
    """Write the design's Verilog and a JSON manifest (ports, parameters, sizes, expected cycles)."""
    from .rtl import write_design

    d = _lowered(cascade_ref, array, sizes, size, int_bits, frac_bits, binding, lane_rank)
    files = write_design(d, out)
    if as_json:
        emit_json({"files": {k: str(v) for k, v in files.items()},
                   **d.manifest})
        return
    m = d.manifest
    console.print(f"[bold]{d.name}[/]: {m['datapath']} on {m['array'][0]}x{m['array'][1]}, {m['numbers']['format']}")
    if _lane_note(d, lane_rank):
        console.print(f"  {_lane_note(d, lane_rank)}")
    console.print(f"  wrote {files['verilog']} and {files['manifest']}")
    console.print(f"  expected cycles: RTL {m['rtl_cycles']}, cost model {m['model_cycles']:.0f}")


@rtl.command("synth")
@_rtl_opts
@click.option("--mode", type=click.Choice(["full", "coarse"]), default="full", show_default=True,
              help="coarse: word-level cells without techmapping (fast for big arrays)")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
@handles_errors
def rtl_synth(cascade_ref, sizes, array, size, int_bits, frac_bits, binding, lane_rank, mode, as_json):
    """Synthesize the design with Yosys: cells by type and, in full mode, logic depth and an area
    estimate next to the cost model's area of the same arrays."""
    import tempfile

    from .rtl import synthesize, write_design
    from .rtl._arch import model_area

    d = _lowered(cascade_ref, array, sizes, size, int_bits, frac_bits, binding, lane_rank)
    with tempfile.TemporaryDirectory() as tmp:
        files = write_design(d, tmp)
        stats = synthesize(files["verilog"], d.name, mode=mode)
    # the cost model's area of the same arrays (its global buffer is an SRAM macro the RTL lacks)
    model = model_area(d)
    stats["model_array_area_um2"] = sum(model.values())
    if "area_um2" in stats:
        stats["synthesized_over_model"] = stats["area_um2"] / stats["model_array_area_um2"]
    if as_json:
        emit_json({"design": d.name, **stats})
        return
    console.print(f"[bold]{d.name}[/] ({mode}): {stats['cells']} cells")
    if "logic_depth" in stats:
        console.print(f"  longest path {stats['logic_depth']} gate levels; {stats['gate_equivalents']:.0f} gate "
                      f"equivalents, {stats['area_um2']:.4g} um2 at 45 nm; the cost model's arrays: "
                      f"{stats['model_array_area_um2']:.4g} um2 (synthesized / model = {stats['synthesized_over_model']:.2f})")
    t = Table()
    t.add_column("cell")
    t.add_column("count", justify="right")
    for k, v in stats["cells_by_type"].items():
        t.add_row(escape(k), str(v))
    console.print(t)


@rtl.command("regress")
@click.argument("spec", type=click.Path(dir_okay=False, exists=True))
@click.option("--store", type=click.Path(file_okay=False), default=None,
              help="where results go (default: SPEC's name + .store); rerun to resume")
@click.option("--scheduler", default=None, metavar="ADDRESS", help="a running Dask scheduler")
@click.option("--workers", type=int, default=None, help="local Dask workers (default: one per core)")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
@handles_errors
def rtl_regress(spec, store, scheduler, workers, as_json):
    """Run a regression matrix (cascades x arrays x bindings x seeds x simulators) on Dask; every
    design's results go to the store as they finish. Exit status 1 if any run failed."""
    from rich.progress import Progress

    from .sim import load_regression, regress

    s = load_regression(spec)
    total = len(s.designs()) * len(s.seeds)
    with Progress(console=err_console, transient=True, disable=as_json) as prog:
        task = prog.add_task("simulating", total=total)
        cols = regress(s, store or f"{spec}.store", scheduler=scheduler, workers=workers,
                       progress=lambda n: prog.advance(task, n))
    keys = ("cascade", "array", "binding", "simulator", "format", "seed", "passed", "compared_lanes", "cycles",
            "model_cycles", "max_abs_error_vs_float", "seconds", "error")
    rows = [dict(zip(keys, vals)) for vals in zip(*(cols[k].tolist() for k in keys))]
    failed = [r for r in rows if not r["passed"]]
    if as_json:
        emit_json({"runs": len(rows), "failed": len(failed), "rows": rows})
    else:
        t = Table(title=f"RTL regression: {len(rows)} runs, {len(failed)} failed")
        for col in ("cascade", "array", "binding", "sim", "format", "seed", "passed", "lanes", "cycles", "model",
                    "error vs float", "s"):
            t.add_column(col)
        for r in rows:
            t.add_row(Path(r["cascade"]).name, r["array"], r["binding"], r["simulator"], r["format"], str(r["seed"]),
                      "yes" if r["passed"] else "[red]NO[/]", str(r["compared_lanes"]), f"{r['cycles']:g}",
                      f"{r['model_cycles']:g}", f"{r['max_abs_error_vs_float']:.3g}", f"{r['seconds']:.1f}")
        console.print(t)
        for r in failed:
            if r["error"]:
                console.print(f"  {Path(r['cascade']).name} {r['array']} {r['binding']}: {r['error'][:300]}")
    if failed:
        raise SystemExit(1)


@rtl.command("test")
@_rtl_opts
@click.option("--sim", type=click.Choice(["icarus", "verilator"]), default=None,
              help="simulator (default: Verilator when installed, it runs the engine ~10x faster; else Icarus)")
@click.option("--seed", default=None, type=int, help="one random stimulus with this seed (default: the suite)")
@click.option("--stimulus", type=click.Choice(["random", "zeros", "extremes", "alternating", "ones", "lsb"]),
              default=None, help="one stimulus of this kind (default: the suite)")
@click.option("--waves", is_flag=True, help="record a waveform (kept with the run's files)")
@click.option("--build-dir", "build_dir", type=click.Path(file_okay=False), default=None,
              help="keep the run's Verilog, stimulus, logs and waveform here")
@click.option("--keep", is_flag=True, help="keep the run's files in a fresh directory and print it")
@click.option("--bandwidth", default=None, help="memory bandwidth in words a cycle, e.g. 1, 0.5 or 3/8 (default: 1)")
@click.option("--fifo", default=None, type=click.IntRange(min=1),
              help="words the memory fetches ahead of the engine (default: unbounded)")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
@handles_errors
def rtl_test(cascade_ref, sizes, array, size, int_bits, frac_bits, binding, lane_rank, sim, seed, stimulus, waves,
             build_dir,
             keep, bandwidth, fifo, as_json):
    """Simulate the design with cocotb against the fixed-point golden model.

    By default the design runs the verification suite (random operands under three seeds, and
    directed patterns at the products' last bit, alternating signs and ones), each job from
    reset. The inputs stream from a memory of the given bandwidth. A verdict compares every output
    lane, present or absent, and also requires the exact number of beats, done, RTL cycles equal
    to the cost model's, the first-input-to-last-output cycles equal to the streaming timing model's,
    and an accurate format. A failing run keeps its files and prints where."""
    import tempfile
    from fractions import Fraction

    from .rtl import MemoryModel
    from .sim import mask_densities, simulate, simulators, verify

    d = _lowered(cascade_ref, array, sizes, size, int_bits, frac_bits, binding, lane_rank)
    defaults = {}
    if sim is None:
        sim = defaults["sim"] = "verilator" if simulators()["verilator"] else "icarus"
    try:
        bw = Fraction(bandwidth) if bandwidth is not None else Fraction(1)
    except (ValueError, ZeroDivisionError):
        raise click.BadParameter(f"{bandwidth!r} is not a number of words a cycle (e.g. 1, 0.5, 3/8)",
                                 param_hint="--bandwidth") from None
    memory = MemoryModel(bw, fifo)
    if bandwidth is None:
        defaults["bandwidth"] = "1 word a cycle"
    if fifo is None:
        defaults["fifo"] = "unbounded"
    if mask_densities(d):
        defaults["mask_density"] = mask_densities(d)
    if _lane_note(d, lane_rank):
        defaults["lane_rank"] = d.manifest["mapping"]["cols"]
    if keep and build_dir is None:
        build_dir = tempfile.mkdtemp(prefix=f"einforge-{d.name}-")
    if seed is None and stimulus is None:
        r = verify(d, sim=sim, build_dir=build_dir, waves=waves, memory=memory)
    else:
        r = simulate(d, sim=sim, seed=seed or 0, kind=stimulus or "random", build_dir=build_dir, waves=waves,
                     memory=memory)
    files = r.details.get("files")
    chosen = "sim" not in defaults
    latency = (r.details.get("first_input_to_last_output"), r.details.get("model_first_input_to_last_output"),
               r.details.get("cost_model_latency"))
    if as_json:
        emit_json({**r.to_json(), "jobs": r.details.get("jobs"), "files": files, "memory": memory.describe(),
                   "first_input_to_last_output": latency[0], "model_first_input_to_last_output": latency[1],
                   "cost_model_latency": latency[2], "defaults_used": defaults})
    else:
        verdict = "[green]passed[/]" if r.passed else "[red]FAILED[/]"
        jobs = r.details.get("jobs")
        on = sim if chosen else f"{sim} (default: the faster simulator installed)"
        console.print(f"[bold]{d.name}[/] on {on}: {verdict} ({len(jobs) if jobs else 1} stimuli, "
                      f"{r.compared_lanes} lanes compared, {r.present_lanes} present), bit-exact: {r.bit_exact}, "
                      f"accurate: {r.accurate}, done: {r.done}")
        if r.details.get("failed_checks"):
            console.print(f"  failed checks: {', '.join(r.details['failed_checks'])}")
        if _lane_note(d, lane_rank):
            console.print(f"  {_lane_note(d, lane_rank)}")
        for t, share in defaults.get("mask_density", {}).items():
            console.print(f"  mask {t}: random stimuli keep each tile with probability {share:g} (the cascade's "
                          "declared density; default), and every block at least one")
        for t, (n, big) in r.saturated.items():
            console.print(f"  {t}: {n} values leave the {d.numbers.int_bits}.{d.numbers.frac_bits} format's range "
                          f"(up to {big:.4g}): use more integer bits (--int-bits)")
        console.print(f"  cycles: RTL {r.cycles}, cost model {r.model_cycles:.0f} "
                      f"({(r.cycles - r.model_cycles) / r.model_cycles:+.2%})")
        if latency[1] is not None:
            console.print(f"  first input to last output, inputs from {memory.describe()}"
                          f"{' (default)' if 'bandwidth' in defaults else ''}: RTL {latency[0]}, "
                          f"timing model {latency[1]}, cost model (roofline, same bandwidth) {latency[2]:.0f} "
                          f"({(latency[2] - latency[0]) / latency[0]:+.2%})")
        console.print(f"  max |error| against float64: {r.max_abs_error_vs_float:.4g}, derived bound "
                      f"{r.error_bound_vs_float:.4g} (running error analysis of the format)   ({r.seconds:.1f} s)")
        if r.details.get("mismatches"):
            console.print("  first mismatches (beat, lane, got, expected, got present, expected present): "
                          f"{r.details['mismatches'][:5]}")
        if files:
            console.print(f"  files (Verilog, its simulation harness, stimulus, logs{', waveform' if waves else ''}): {files}")
    if not r.passed:
        sys.exit(1)


if __name__ == "__main__":  # pragma: no cover
    main()
