"""Golden models, cocotb testbenches and simulator runners: prove the generated RTL right."""

from ._runner import SimError, SimResult, golden, saturation, simulate, simulators, stimuli

__all__ = ["SimError", "SimResult", "golden", "saturation", "simulate", "simulators", "stimuli"]
