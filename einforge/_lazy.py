"""Package namespaces whose names load on first use (a command pays only for what it touches)."""

from __future__ import annotations

import importlib


def lazy_names(package: str, namespace: dict, modules: dict[str, list[str]]):
    """(``__all__``, ``__getattr__``, ``__dir__``) for ``package``: each public name of ``modules``
    (private module -> names) is imported from its module the first time it is asked for."""
    where = {name: module for module, names in modules.items() for name in names}

    def __getattr__(name):
        module = where.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{module}"), name)
        namespace[name] = value
        return value

    def __dir__():
        return sorted(set(namespace) | set(where))

    return list(where), __getattr__, __dir__
