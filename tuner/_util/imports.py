"""Optional dependencies, imported in one place: a missing one is an error that gives the install command."""

from __future__ import annotations

import importlib
from types import ModuleType


class MissingDependency(ImportError):
    pass


def require(module: str, install: str, needed_for: str) -> ModuleType:
    """Import ``module``; if it is missing, raise MissingDependency saying what needs it and how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise MissingDependency(f"{needed_for} needs {module}: pip install '{install}'") from e
