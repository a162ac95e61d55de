"""Start-up cost of the command line: CPU time of `einforge --help` and `einforge evaluate` (the
default FuseMax point), each a fresh process, min and median of repetitions after one warm-up run
(which fills the cache of read files), and the bare interpreter as the baseline.

The einforge measured is the installed one, as the `einforge` command runs it (``-P``: not the
checkout in the current directory, whose sources this environment never keeps compiled, since
PYTHONDONTWRITEBYTECODE is set, so each run would compile them again).
Target (issue 12): both commands under 0.25 s CPU.
Run: .venv/bin/python benchmarks/startup.py
"""

import resource
import statistics
import subprocess
import sys

CLI = "from einforge.cli import main; main()"


def child_cpu(args, reps=15):
    """CPU seconds (user + system) of ``reps`` runs of a child process, after one warm-up."""
    subprocess.run(args, check=True, capture_output=True)
    times = []
    for _ in range(reps):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        subprocess.run(args, check=True, capture_output=True)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        times.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return min(times), statistics.median(times)


def main():
    base_min, base_med = child_cpu([sys.executable, "-P", "-c", "pass"])
    print(f"{'python -c pass (baseline)':32s} min {base_min:.3f} s, median {base_med:.3f} s CPU")
    for label, extra in (("einforge --help", ["--help"]), ("einforge evaluate", ["evaluate"])):
        lo, med = child_cpu([sys.executable, "-P", "-c", CLI, *extra])
        print(f"{label:32s} min {lo:.3f} s, median {med:.3f} s CPU ({med / base_med:.1f}x the bare interpreter; "
              f"target 0.25 s: {'met' if med <= 0.25 else 'not met'})")


if __name__ == "__main__":
    main()
