"""The docstring examples of every module run, against the installed einforge."""

import doctest
import importlib
import pkgutil

import pytest

import einforge


def _modules():
    for info in pkgutil.walk_packages(einforge.__path__, "einforge."):
        if ".testbenches" in info.name:
            continue  # cocotb testbenches import cocotb's simulator hooks
        yield info.name


@pytest.mark.parametrize("name", sorted(_modules()))
def test_docstring_examples(name):
    module = importlib.import_module(name)
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    for test in finder.find(module, name):
        runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples in {name} failed"
