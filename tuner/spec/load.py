"""Loading a sweep spec: YAML, ``--set a.b=c`` overrides, presets, local paths made absolute, then validation that
reports every problem at once.

``load(path, overrides)`` returns a ``Spec`` or raises ``SpecError`` whose ``problems`` are (dotted key, message)
pairs; the cross-field checks are ``tuner.spec.checks``. Nothing here imports Ray or torch: ``tuner validate`` is
instant and starts nothing.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from tuner._util.yamlio import YamlError, loads
from tuner.spec.checks import cross_checks
from tuner.spec.presets import apply_preset
from tuner.spec.schema import Problem, Spec, SpecError, pydantic_problems

# --- loading and overrides --------------------------------------------------------------------------------------

def load(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Spec:
    path = Path(path)
    try:
        raw = loads(path.read_text())
    except FileNotFoundError:
        raise SpecError([("spec", f"no such file: {path}")], str(path)) from None
    except IsADirectoryError:
        raise SpecError([("spec", f"{path} is a directory, not a spec file")], str(path)) from None
    except (YamlError, UnicodeDecodeError) as e:  # yaml errors carry the line and column
        raise SpecError([("spec", f"not valid YAML: {e}")], str(path)) from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise SpecError([("spec", f"the top level must be a mapping, got {type(raw).__name__}")], str(path))
    problems = apply_overrides(raw, overrides)
    return validate(raw, spec_dir=path.parent.resolve(), source=str(path), problems=problems)


def apply_overrides(raw: dict[str, Any], overrides: list[str] | tuple[str, ...]) -> list[Problem]:
    """Apply ``a.b=c`` overrides in place; values are parsed as YAML (``8`` -> int, ``[1, 2]`` -> list).

    Under ``search.space`` the rest of the path is one key, so ``search.space.train.lr={uniform: [0, 1]}`` works.
    """
    problems: list[Problem] = []
    for item in overrides:
        key, eq, text = item.partition("=")
        key = key.strip()
        if not eq or not key:
            problems.append((f"--set {item}", "expected KEY=VALUE, e.g. --set train.lr=1.0e-3"))
            continue
        try:
            value = loads(text) if text.strip() else ""
        except YamlError as e:
            problems.append((key, f"--set value is not valid YAML: {e}"))
            continue
        parts = key.split(".")
        if parts[:2] == ["search", "space"] and len(parts) > 2:
            parts = ["search", "space", ".".join(parts[2:])]
        node = raw
        for i, p in enumerate(parts[:-1]):
            child = node.setdefault(p, {})
            if child is None:
                child = node[p] = {}
            if not isinstance(child, dict):
                problems.append((".".join(parts[: i + 1]), f"is not a mapping, cannot set {key}"))
                break
            node = child
        else:
            node[parts[-1]] = value
    return problems


# --- validation -------------------------------------------------------------------------------------------------

def validate(raw: dict[str, Any], *, spec_dir: str | Path = ".", source: str = "spec",
             problems: list[Problem] | None = None) -> Spec:
    """Validate a raw spec mapping: the schema (strict types), then every cross-field check."""
    problems = list(problems or [])
    raw = copy.deepcopy(raw)
    spec_dir = str(Path(spec_dir).resolve())
    if isinstance(raw.get("search", {}), dict):
        problems += apply_preset(raw.setdefault("search", {}))
    problems += _resolve_paths(raw, spec_dir)
    try:
        spec = _parse(raw, spec_dir)
    except ValidationError as e:
        typed = pydantic_problems(e)
        problems += typed
        # Drop the keys that failed and check the rest too, so that one run reports every problem; leave out what
        # only follows from a key already reported.
        flagged = [k for k, _ in typed]
        try:
            repaired = _parse(_without(raw, e), spec_dir)
        except ValidationError:
            raise SpecError(_dedupe(problems), source) from None
        problems += [(k, m) for k, m in cross_checks(repaired, raw) if not _follows(k, flagged)]
        raise SpecError(_dedupe(problems), source) from None
    problems += cross_checks(spec, raw)
    if problems:
        raise SpecError(_dedupe(problems), source)
    return spec


def _parse(raw: dict[str, Any], spec_dir: str) -> Spec:
    spec = Spec.model_validate(raw, strict=True)
    spec._spec_dir = spec_dir
    return spec


def _resolve_paths(raw: dict[str, Any], spec_dir: str) -> list[Problem]:
    """Local paths in the spec are relative to the spec's directory; make them absolute (trials run elsewhere)."""
    problems: list[Problem] = []

    def absolute(p: str) -> str:
        return str((Path(spec_dir) / Path(p).expanduser()).resolve())

    model, data = raw.get("model"), raw.get("data")
    if isinstance(model, dict) and isinstance(model.get("pretrained"), str):
        model["pretrained"] = absolute(model["pretrained"]) if model["pretrained"] else ""
    if isinstance(data, dict) and "source" in data:
        source = data["source"]
        many = isinstance(source, list)
        items: list[Any] = source if isinstance(source, list) else [source]
        for i, s in enumerate(items):
            if isinstance(s, str) and not s.startswith("builtin:"):
                if not s.strip():
                    problems.append((f"data.source.{i}" if many else "data.source", "is an empty path"))
                items[i] = absolute(s) if s.strip() else s
        data["source"] = items if many else items[0]
    return problems


def _follows(key: str, flagged: list[str]) -> bool:
    return any(key == f or key.startswith(f + ".") or f.startswith(key + ".") for f in flagged)


def _dedupe(problems: list[Problem]) -> list[Problem]:
    return list(dict.fromkeys(problems))


def _without(raw: dict[str, Any], err: ValidationError) -> dict[str, Any]:
    """A copy of ``raw`` without the (section-level) keys that failed validation; a bad name or trainable becomes a
    stand-in, so the rest is still checked in the right mode."""
    out = {k: dict(v) if isinstance(v, dict) else v for k, v in raw.items()}
    stand_in = {"name": "spec", "trainable": "invalid:invalid"}
    for e in err.errors():
        loc = [str(p) for p in e["loc"]]
        if loc[0] in stand_in:
            out[loc[0]] = stand_in[loc[0]]
        elif len(loc) == 1 or not isinstance(out.get(loc[0]), dict):
            out.pop(loc[0], None)
        else:
            out[loc[0]].pop(loc[1], None)
    return out
