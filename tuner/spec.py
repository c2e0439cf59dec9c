"""The sweep spec: a typed schema, ``--set a.b=c`` overrides, and validation that reports every problem at once.

``load(path, overrides)`` returns a ``Spec`` or raises ``SpecError`` whose ``problems`` are (dotted key, message)
pairs. The cross-field checks live in ``tuner.checks``. Validation imports neither Ray nor torch: ``tuner validate``
is instant and starts nothing.
"""

from __future__ import annotations

import copy
import re
import types
import typing
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator

from tuner import space as sp
from tuner.registry import did_you_mean
from tuner.search.presets import apply_preset
from tuner.yamlio import YamlError, loads

Problem = tuple[str, str]

MODEL_FAMILIES = ("llama", "mistral", "qwen2", "gpt2")
BUILTIN_SOURCES = ("builtin:python-stdlib",)
LLM_METRICS = ("val_loss", "val_ppl", "train_loss")
LLM_TIME_ATTRS = ("tokens", "step")
POPULATION_SCHEDULERS = ("pbt", "pb2")
# Spec fields a sweep may tune. Everything else is fixed per sweep (data is tokenized once, before any trial; the
# trial length is the sweep's budget).
TUNABLE = {
    "model": ("hidden_size", "num_layers", "num_heads", "intermediate_size", "dropout"),
    "data": ("seq_len",),
    "train": ("batch_size", "grad_accum_steps", "lr", "min_lr_ratio", "weight_decay", "warmup_steps", "grad_clip",
              "beta1", "beta2", "seed"),
}
# What PBT/PB2 may change in a running LLM trial: not the architecture or the sequence length.
PBT_MUTABLE = ("model.dropout", "train.batch_size", "train.grad_accum_steps", "train.lr", "train.min_lr_ratio",
               "train.weight_decay", "train.warmup_steps", "train.grad_clip", "train.beta1", "train.beta2")


class _Section(BaseModel):
    # No NaN or infinity anywhere: an infinite budget would train forever.
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class ModelSpec(_Section):
    family: str = "llama"
    pretrained: str | None = None  # a local directory; made absolute (relative to the spec) on load
    hidden_size: int = Field(64, gt=0)
    num_layers: int = Field(2, gt=0)
    num_heads: int = Field(4, gt=0)
    intermediate_size: int | None = Field(None, gt=0)
    dropout: float | None = Field(None, ge=0.0, lt=1.0)  # None: the model's own (0.0 from config)


class DataSpec(_Section):
    source: list[str] = Field(default_factory=lambda: ["builtin:python-stdlib"], min_length=1)
    seq_len: int = Field(128, gt=1, le=65536)
    val_fraction: float = Field(0.05, gt=0.0, le=0.5)
    text_field: str = "text"

    @field_validator("source", mode="before")
    @classmethod
    def _one_or_many(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v


class TrainSpec(_Section):
    max_steps: int = Field(400, gt=0)
    max_tokens: int | None = Field(None, gt=0)  # instead of max_steps: a token budget
    eval_every: int = Field(50, gt=0)
    eval_tokens: int = Field(16384, gt=0)
    batch_size: int = Field(16, gt=0)
    grad_accum_steps: int = Field(1, gt=0)
    # Sequences per optimizer step over all workers; when set, grad_accum_steps is derived from it
    # (global / (batch_size x workers)), so tuning batch_size keeps the tokens per step.
    global_batch_size: int | None = Field(None, gt=0)
    lr: float = Field(3.0e-4, gt=0.0)
    min_lr_ratio: float = Field(0.1, ge=0.0, le=1.0)
    weight_decay: float = Field(0.01, ge=0.0)
    warmup_steps: int = Field(20, ge=0)
    grad_clip: float = Field(1.0, ge=0.0)
    beta1: float = Field(0.9, ge=0.0, lt=1.0)
    beta2: float = Field(0.95, ge=0.0, lt=1.0)
    seed: int = 0
    mixed_precision: Literal["auto", "no", "bf16", "fp16"] = "auto"


class SearchSpec(_Section):
    metric: str = "val_loss"
    mode: Literal["min", "max"] = "min"
    preset: str | None = None  # fills algorithm + scheduler (tuner.search.presets)
    algorithm: str = "tpe"
    scheduler: str = "asha"
    sampler: Literal["tpe", "gp", "cmaes", "random"] | None = None  # algorithm optuna
    acquisition: Literal["ucb", "ei", "poi"] | None = None  # algorithm bayesopt
    num_trials: int = Field(12, gt=0)
    max_concurrent: int | None = Field(None, gt=0)
    seed: int = 0
    space: dict[str, Any] = Field(default_factory=dict)
    points_to_evaluate: list[dict[str, Any]] = Field(default_factory=list)
    time_attr: str | None = None
    max_t: float | None = Field(None, gt=0)
    grace_period: float | None = Field(None, gt=0)
    reduction_factor: float = Field(3.0, gt=1.0)
    perturbation_interval: float | None = Field(None, gt=0)  # pbt, pb2; in time_attr units
    quantile_fraction: float = Field(0.25, gt=0.0, le=0.5)  # pbt, pb2
    resample_probability: float = Field(0.25, ge=0.0, le=1.0)  # pbt
    max_failures: int = Field(0, ge=0)


class ResourcesSpec(_Section):
    workers_per_trial: int = Field(1, gt=0)
    cpus_per_worker: float = Field(1.0, gt=0.0)
    gpus_per_worker: float = Field(0.0, ge=0.0)
    strategy: Literal["ddp", "fsdp"] = "ddp"  # workers_per_trial > 1
    placement: Literal["pack", "spread"] = "pack"  # of a trial's workers over nodes
    max_worker_failures: int = Field(1, ge=0)  # worker-group restarts from the latest checkpoint, per trial run


class ComputeBudgetSpec(_Section):
    """The sweep's compute budget (the ``budget`` key): once any limit is spent, no trial starts and the running
    ones stop at their next checkpoint. Compute is each trial's resources x the time it trained."""

    gpu_hours: float | None = Field(None, gt=0.0)
    cpu_hours: float | None = Field(None, gt=0.0)
    wall_clock: float | None = Field(None, gt=0.0)  # seconds; "90m", "2h", "1h30m" and "45s" are read as such

    @field_validator("wall_clock", mode="before")
    @classmethod
    def _duration(cls, v: Any) -> Any:
        return parse_duration(v) if isinstance(v, str) else float(v) if isinstance(v, int) else v

    @property
    def limited(self) -> bool:
        return any(v is not None for v in (self.gpu_hours, self.cpu_hours, self.wall_clock))


_DURATION = re.compile(r"^\s*(?:(\d+(?:\.\d+)?)\s*h)?\s*(?:(\d+(?:\.\d+)?)\s*m)?\s*(?:(\d+(?:\.\d+)?)\s*s)?\s*$")


def parse_duration(text: str) -> float:
    """Seconds in ``"2h"``, ``"90m"``, ``"1h30m"``, ``"45s"`` or a plain number of seconds."""
    try:
        return float(text)
    except ValueError:
        pass
    m = _DURATION.match(text)
    if not m or not any(m.groups()):
        raise ValueError("expected seconds or a duration such as 90m, 2h, 1h30m, 45s")
    h, mins, secs = (float(g) if g else 0.0 for g in m.groups())
    return h * 3600 + mins * 60 + secs


class CheckpointSpec(_Section):
    """What the sweep keeps of its trials' checkpoints (tuner.checkpoints)."""

    keep_best: int | None = Field(None, gt=0)  # the best K ended trials keep theirs; None: every trial
    max_total_gb: float | None = Field(None, gt=0.0)  # all checkpoints together, as far as live trials allow


class TrialSpec(_Section):
    """What one LLM trial trains with: the sweep spec's sections, with the trial's hyperparameters applied."""

    model: ModelSpec
    data: DataSpec
    train: TrainSpec
    resources: ResourcesSpec


class Spec(_Section):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$", max_length=128)
    storage: str = "./sweeps"
    trainable: str | None = Field(None, pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
    model: ModelSpec = Field(default_factory=ModelSpec)
    data: DataSpec = Field(default_factory=DataSpec)
    train: TrainSpec = Field(default_factory=TrainSpec)
    search: SearchSpec = Field(default_factory=SearchSpec)
    resources: ResourcesSpec = Field(default_factory=ResourcesSpec)
    budget: ComputeBudgetSpec = Field(default_factory=ComputeBudgetSpec)
    checkpoint: CheckpointSpec = Field(default_factory=CheckpointSpec)
    # Where the spec file lies: the trainable's module is imported from there.
    _spec_dir: str = PrivateAttr(".")

    @property
    def spec_dir(self) -> str:
        return self._spec_dir

    @property
    def is_custom(self) -> bool:
        return self.trainable is not None

    @property
    def time_attr(self) -> str:
        if self.search.time_attr:
            return self.search.time_attr
        return "training_iteration" if self.is_custom else "tokens"

    @property
    def sweep_dir(self) -> Path:
        return Path(self.storage).expanduser().resolve() / self.name

    @cached_property
    def parsed_space(self) -> dict[str, sp.Dimension]:
        return sp.parse_space(self.search.space)[0]

    def dimensions(self) -> dict[str, sp.Dimension]:
        return dict(self.parsed_space)

    def tune_domains(self, *, grid: bool = False) -> dict[str, Any]:
        """Dotted key -> Ray Tune domain; quantized dimensions of integer spec fields produce ints."""
        out = {}
        for key, dim in self.parsed_space.items():
            sec, _, field = key.partition(".")
            integer = not self.is_custom and is_int_field(SECTIONS[sec], field)
            out[key] = dim.to_tune(grid=grid, integer=integer)
        return out

    def nest(self, flat: dict[str, Any]) -> dict[str, Any]:
        """Dotted keys -> the nested layout of the trial config (custom trainables keep plain names)."""
        if self.is_custom:
            return dict(flat)
        tree: dict[str, Any] = {}
        for key, value in flat.items():
            sp.set_path(tree, key, value)
        return tree


class SpecError(ValueError):
    """Every problem in a spec, each as (dotted key, message)."""

    def __init__(self, problems: list[Problem], source: str = "spec"):
        self.problems = problems
        self.source = source
        lines = "\n".join(f"  {k}: {m}" for k, m in problems)
        super().__init__(f"invalid {source} ({len(problems)} problem{'s' * (len(problems) != 1)}):\n{lines}")

    def __reduce__(self) -> tuple[Any, ...]:  # raised in Ray workers and subprocesses: pickle what __init__ takes
        return (type(self), (self.problems, self.source))


SECTIONS: dict[str, type[_Section]] = {
    "model": ModelSpec, "data": DataSpec, "train": TrainSpec, "search": SearchSpec, "resources": ResourcesSpec,
    "budget": ComputeBudgetSpec, "checkpoint": CheckpointSpec,
}


def is_int_field(cls: type[BaseModel], field: str) -> bool:
    ann = cls.model_fields[field].annotation
    args = typing.get_args(ann) if isinstance(ann, types.UnionType) or typing.get_origin(ann) else (ann,)
    return int in args and float not in args


def upper_bound(spec: Spec, key: str) -> float:
    """The largest value the spec field at ``key`` takes in this sweep (its tuned range, or its fixed value)."""
    dim = spec.dimensions().get(key)
    if dim is None:
        return float(sp.get_path(spec.model_dump(), key))
    return max(float(v) for v in dim.candidates() if isinstance(v, (int, float)))


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
    from tuner.checks import cross_checks

    problems = list(problems or [])
    raw = copy.deepcopy(raw)
    spec_dir = str(Path(spec_dir).resolve())
    if isinstance(raw.get("search", {}), dict):
        problems += apply_preset(raw.setdefault("search", {}))
    problems += _resolve_paths(raw, spec_dir)
    try:
        spec = _parse(raw, spec_dir)
    except ValidationError as e:
        typed = _pydantic_problems(e)
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


def _pydantic_problems(err: ValidationError, prefix: str = "") -> list[Problem]:
    out: list[Problem] = []
    for e in err.errors():
        loc = [str(p) for p in e["loc"] if p != "[key]"]
        key = prefix + ".".join(loc)
        if e["type"] == "extra_forbidden":
            out.append((key, _unknown_key_message(loc, prefix)))
        elif e["type"] == "missing":
            out.append((key, "required"))
        elif e["loc"] and e["loc"][-1] == "[key]":
            out.append((key, f"keys here must be strings, got {e.get('input')!r}"))
        else:
            msg = e["msg"].removeprefix("Value error, ")
            out.append((key, f"{msg[0].lower()}{msg[1:]}, got {e.get('input')!r}"))
    return out


def _unknown_key_message(loc: list[str], prefix: str) -> str:
    parent = [*([prefix.rstrip(".")] if prefix else []), *loc[:-1]]
    model: type[BaseModel] = SECTIONS.get(parent[0], Spec) if len(parent) == 1 else Spec
    valid = list(model.model_fields)
    return f"unknown key{did_you_mean(loc[-1], valid)}; valid keys here: {', '.join(valid)}"


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
