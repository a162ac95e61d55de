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
