"""Property tests run a fixed example sequence so a test run is reproducible.

Set ``HYPOTHESIS_PROFILE=explore`` to search with fresh random examples instead.
"""

import os

from hypothesis import settings

settings.register_profile("ci", derandomize=True, database=None)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def pytest_report_header(config):
    import einforge

    return f"einforge under test: {einforge.__file__}"
