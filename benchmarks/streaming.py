"""The streaming attention engine's latency: the exact timing model against the cost model's roofline.

For designs on both bindings and memories from one word a cycle down to 1/8, prints the cycles from
the first input word to the last output beat as the engine's event timing predicts them
(``stream_timing``, which the RTL tests hold equal to simulation), the cost model's latency for the
same arrays, mapping and bandwidth (``model_latency``), their difference, and which bound the job
sits on (compute: the cost model's compute cycles; memory: its words at the bandwidth).
Run: .venv/bin/python benchmarks/streaming.py
"""

from fractions import Fraction

from einforge.einsum import FixedPoint, library
from einforge.rtl import MemoryModel, lower, model_latency, stream_timing

DESIGNS = [("attention-1pass", "fusemax", (4, 4), {"M": 256, "P": 64, "E": 4, "F": 4}),
           ("attention-1pass", "arch", (4, 4), {"M": 512, "P": 16, "E": 2, "F": 2}),
           ("attention-1pass", "arch", (8, 8), {"M": 512, "P": 64, "E": 2, "F": 2}),
           ("attention-1pass", "fusemax", (16, 16), {"M": 2048, "P": 64, "E": 2, "F": 2}),
           ("attention-causal", "fusemax", (4, 4), {"M": 256, "P": 256, "E": 4, "F": 4}),
           ("attention-gqa", "fusemax", (4, 4), {"M": 64, "P": 16, "E": 4, "F": 4, "B": 1, "G": 2, "R": 4})]


def main():
    lib = library()
    worst = 0.0
    for name, binding, array, sizes in DESIGNS:
        d = lower(lib[name].load(), binding, array, FixedPoint(8, 8), sizes)
        compute = d.manifest["model_cycles"]
        print(f"{name} ({binding}, {array[0]}x{array[1]}, {sizes}): compute {compute:.0f} cycles")
        for bw in (Fraction(1), Fraction(1, 2), Fraction(1, 8)):
            memory = MemoryModel(bw)
            t = stream_timing(d.program, memory)
            model = model_latency(d, memory)
            exact = t.first_input_to_last_output
            bound = "memory" if t.input_words / bw > compute else "compute"
            err = (model - exact) / exact
            worst = max(worst, abs(err))
            print(f"   {str(bw):>4s} words/cycle: exact {exact:9d}  cost model {model:11.0f}  {err:+6.2%}  "
                  f"({bound}-bound; {t.stall_cycles} cycles waiting for tiles)")
    print(f"largest |cost model - exact| / exact: {worst:.2%}")


if __name__ == "__main__":
    main()
