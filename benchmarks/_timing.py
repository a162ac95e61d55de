"""CPU time of a call, as every benchmark reports it: min and median over repetitions."""

import statistics
import time


def cpu(fn, reps=5):
    """(min seconds, median seconds, the last result) of ``reps`` calls of ``fn``, in CPU time."""
    times, out = [], None
    for _ in range(reps):
        t = time.process_time()
        out = fn()
        times.append(time.process_time() - t)
    return min(times), statistics.median(times), out


def cpu_pair(fn, baseline, reps=5):
    """:func:`cpu` of ``fn`` and of ``baseline``, their calls interleaved (fn, baseline, fn, ...) so
    that both see the same machine: on a shared machine whose speed drifts between runs, a ratio
    of two figures taken minutes apart measures the drift."""
    times: tuple = ([], [])
    outs = [None, None]
    for _ in range(reps):
        for k, f in enumerate((fn, baseline)):
            t = time.process_time()
            outs[k] = f()
            times[k].append(time.process_time() - t)
    return tuple((min(ts), statistics.median(ts), out) for ts, out in zip(times, outs))
