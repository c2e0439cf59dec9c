"""The one converter between the three spellings of a spec key: dotted (``train.lr``, the spec and its
``search.space``), nested (``{"train": {"lr": ...}}``, the LLM trial's config) and slashed (``train/lr``, how Ray
Tune's searchers and result frames flatten a nested config)."""

from __future__ import annotations

from typing import Any


def set_path(tree: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    for p in parents:
        tree = tree.setdefault(p, {})
    tree[leaf] = value


def get_path(tree: dict[str, Any], dotted: str) -> Any:
    """The value at a dotted key; KeyError (or TypeError) when the tree has none there."""
    for p in dotted.split("."):
        tree = tree[p]
    return tree


def nest(flat: dict[str, Any]) -> dict[str, Any]:
    """Dotted keys -> a nested tree."""
    tree: dict[str, Any] = {}
    for key, value in flat.items():
        set_path(tree, key, value)
    return tree


def slashed(dotted: str) -> str:
    return dotted.replace(".", "/")


def flatten(tree: dict[str, Any], sep: str = "/") -> dict[str, Any]:
    """A nested tree -> keys joined by ``sep`` (``/``: as Ray Tune's searchers name nested parameters)."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            out.update({f"{key}{sep}{k}": v for k, v in flatten(value, sep).items()})
        else:
            out[key] = value
    return out


def python_value(obj: Any) -> Any:
    """numpy scalars (as some searchers suggest them) -> Python numbers, recursively."""
    if isinstance(obj, dict):
        return {k: python_value(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [python_value(v) for v in obj]
    return obj.item() if type(obj).__module__ == "numpy" and hasattr(obj, "item") else obj
