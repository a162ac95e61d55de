"""Golden models, cocotb testbenches and simulator runners: prove the generated RTL right."""

from ._regress import RegressionSpec, load_regression, regress, run_design
from ._runner import (
                      SUITE,
                      SimError,
                      SimResult,
                      accuracy,
                      golden,
                      mask_densities,
                      run_jobs,
                      run_stages,
                      saturation,
                      simulate,
                      simulators,
                      stimuli,
                      verify,
)

__all__ = ["SUITE", "SimError", "SimResult", "accuracy", "golden", "mask_densities", "run_jobs", "run_stages", "saturation", "simulate",
           "simulators", "stimuli", "verify", "RegressionSpec", "load_regression", "regress", "run_design"]
