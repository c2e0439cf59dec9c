"""A custom trainable (``trainable: module:function``): importable from the spec's directory."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Any

from tuner.spec.schema import Problem, Spec


def check_trainable(spec: Spec) -> list[Problem]:
    try:
        load_trainable(spec)
    except ValueError as e:
        return [("trainable", str(e))]
    return []


def load_trainable(spec: Spec) -> Any:
    """Import ``module:function`` from the spec's directory (as the driver and every trial will)."""
    assert spec.trainable is not None
    module_name, _, attr = spec.trainable.partition(":")
    here = Path(spec.spec_dir).resolve()
    if spec.spec_dir in sys.path:
        sys.path.remove(spec.spec_dir)
    sys.path.insert(0, spec.spec_dir)
    # A module of the same name imported earlier from elsewhere must not stand in for the spec's own.
    top = module_name.split(".")[0]
    loaded = getattr(sys.modules.get(top), "__file__", None)
    ours = (here / f"{top}.py").exists() or (here / top).is_dir()
    if loaded and ours and here not in Path(loaded).resolve().parents:
        for name in [n for n in sys.modules if n == top or n.startswith(top + ".")]:
            del sys.modules[name]
    importlib.invalidate_caches()
    try:
        module = importlib.import_module(module_name)
    except Exception as e:
        raise ValueError(f"cannot import {module_name!r} from {spec.spec_dir}: {type(e).__name__}: {e}") from None
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise ValueError(f"{module_name!r} has no function {attr!r}")
    return fn
