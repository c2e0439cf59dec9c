"""The sweep spec: a typed schema, ``--set a.b=c`` overrides, and validation that reports every problem at once.

``load(path, overrides)`` returns a ``Spec`` or raises ``SpecError`` whose ``problems`` are (dotted key, message)
pairs. Validation imports neither Ray nor torch: ``tuner validate`` is instant and starts nothing.
"""

from __future__ import annotations

import difflib
import importlib
import itertools
import sys
import types
import typing
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from tuner import space as sp
from tuner.yamlio import loads

Problem = tuple[str, str]

MODEL_FAMILIES = ("llama", "mistral", "qwen2", "gpt2")
BUILTIN_SOURCES = ("builtin:python-stdlib",)
LLM_METRICS = ("val_loss", "val_ppl", "train_loss")
LLM_TIME_ATTRS = ("tokens", "step")
# Spec fields a sweep may tune. Everything else is fixed per sweep (data is tokenized once, before any trial).
TUNABLE = {
    "model": ("hidden_size", "num_layers", "num_heads", "intermediate_size", "dropout"),
    "data": ("seq_len",),
    "train": ("max_steps", "batch_size", "grad_accum_steps", "lr", "min_lr_ratio", "weight_decay",
              "warmup_steps", "grad_clip", "beta1", "beta2", "seed"),
}


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ModelSpec(_Section):
    family: str = "llama"
    pretrained: str | None = None
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
    max_tokens: int | None = Field(None, gt=0)
    eval_every: int = Field(50, gt=0)
    eval_tokens: int = Field(16384, gt=0)
    batch_size: int = Field(16, gt=0)
    grad_accum_steps: int = Field(1, gt=0)
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
    algorithm: str = "tpe"
    scheduler: str = "asha"
    num_trials: int = Field(12, gt=0)
    max_concurrent: int | None = Field(None, gt=0)
    seed: int = 0
    space: dict[str, Any] = Field(default_factory=dict)
    points_to_evaluate: list[dict[str, Any]] = Field(default_factory=list)
    time_attr: str | None = None
    max_t: float | None = Field(None, gt=0)
    grace_period: float | None = Field(None, gt=0)
    reduction_factor: float = Field(3.0, gt=1.0)
    max_failures: int = Field(0, ge=0)


class ResourcesSpec(_Section):
    workers_per_trial: int = Field(1, gt=0)
    cpus_per_worker: float = Field(1.0, gt=0.0)
    gpus_per_worker: float = Field(0.0, ge=0.0)


class Spec(_Section):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$", max_length=128)
    storage: str = "./sweeps"
    trainable: str | None = Field(None, pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
    model: ModelSpec = Field(default_factory=ModelSpec)
    data: DataSpec = Field(default_factory=DataSpec)
    train: TrainSpec = Field(default_factory=TrainSpec)
    search: SearchSpec = Field(default_factory=SearchSpec)
    resources: ResourcesSpec = Field(default_factory=ResourcesSpec)
    # Where the spec file lies: data paths and the trainable's module are found relative to it.
    spec_dir: str = Field(".", exclude=True)

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
        return storage_path(self.storage) / self.name

    def dimensions(self) -> dict[str, sp.Dimension]:
        return sp.parse_space(self.search.space)[0]

    def data_paths(self) -> list[str]:
        """Sources with relative paths resolved against the spec's directory."""
        return [s if s.startswith("builtin:") else str((Path(self.spec_dir) / s).resolve())
                for s in self.data.source]


def storage_path(storage: str) -> Path:
    if "://" in storage:
        raise NotImplementedError("remote storage URIs are not supported yet")
    return Path(storage).expanduser().resolve()


class SpecError(ValueError):
    """Every problem in a spec, each as (dotted key, message)."""

    def __init__(self, problems: list[Problem], source: str = "spec"):
        self.problems = problems
        self.source = source
        lines = "\n".join(f"  {k}: {m}" for k, m in problems)
        super().__init__(f"invalid {source} ({len(problems)} problem{'s' * (len(problems) != 1)}):\n{lines}")


SECTIONS: dict[str, type[_Section]] = {
    "model": ModelSpec, "data": DataSpec, "train": TrainSpec, "search": SearchSpec, "resources": ResourcesSpec,
}
_TOP_KEYS = [k for k in Spec.model_fields if k != "spec_dir"]


# --- loading and overrides --------------------------------------------------------------------------------------

def load(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Spec:
    path = Path(path)
    try:
        raw = loads(path.read_text())
    except FileNotFoundError:
        raise SpecError([("spec", f"no such file: {path}")], str(path)) from None
    except Exception as e:  # yaml errors carry the line and column
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
        except Exception as e:
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
    problems = list(problems or [])
    raw = {k: v for k, v in raw.items() if k != "spec_dir"}
    try:
        spec = Spec.model_validate({**raw, "spec_dir": str(spec_dir)})
    except ValidationError as e:
        typed = _pydantic_problems(e, raw)
        problems += typed
        # Drop the keys that failed and check the rest too, so that one run reports every problem.
        flagged = {k for k, _ in typed}
        try:
            repaired = Spec.model_validate({**_without(raw, e), "spec_dir": str(spec_dir)})
        except ValidationError:
            raise SpecError(_dedupe(problems), source) from None
        problems += [(k, m) for k, m in _cross_checks(repaired, raw) if k not in flagged]
        raise SpecError(_dedupe(problems), source) from None
    problems += _cross_checks(spec, raw)
    if problems:
        raise SpecError(_dedupe(problems), source)
    return spec


def _without(raw: dict[str, Any], err: ValidationError) -> dict[str, Any]:
    """A copy of ``raw`` without the (section-level) keys that failed validation; a bad name becomes a stand-in."""
    out = {k: dict(v) if isinstance(v, dict) else v for k, v in raw.items()}
    for e in err.errors():
        loc = [str(p) for p in e["loc"]]
        if loc[0] == "name":
            out["name"] = "spec"
        elif len(loc) == 1 or not isinstance(out.get(loc[0]), dict):
            out.pop(loc[0], None)
        else:
            out[loc[0]].pop(loc[1], None)
    return out


def _dedupe(problems: list[Problem]) -> list[Problem]:
    return list(dict.fromkeys(problems))


def _pydantic_problems(err: ValidationError, raw: dict[str, Any], prefix: str = "") -> list[Problem]:
    out: list[Problem] = []
    for e in err.errors():
        loc = [str(p) for p in e["loc"]]
        key = prefix + ".".join(loc)
        if e["type"] == "extra_forbidden":
            out.append((key, _unknown_key_message(loc, prefix)))
        elif e["type"] == "missing":
            out.append((key, "required"))
        else:
            msg = e["msg"]
            out.append((key, f"{msg[0].lower()}{msg[1:]}, got {e.get('input')!r}"))
    return out


def _unknown_key_message(loc: list[str], prefix: str) -> str:
    parent = loc[:-1] if not prefix else [prefix.rstrip("."), *loc[:-1]]
    model: type[BaseModel] = Spec
    for p in parent:
        model = SECTIONS.get(p, model) if model is Spec else model
    valid = [k for k in (model.model_fields if model is not Spec else _TOP_KEYS) if k != "spec_dir"]
    close = difflib.get_close_matches(loc[-1], valid, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"unknown key{hint}; valid keys here: {', '.join(valid)}"


def _cross_checks(spec: Spec, raw: dict[str, Any]) -> list[Problem]:
    out: list[Problem] = []
    if spec.is_custom:
        out += [(k, "not used with trainable (a custom objective replaces model/data/train)")
                for k in ("model", "data", "train") if k in raw]
        out += _check_trainable(spec)
    else:
        out += _check_model(spec.model, raw.get("model") or {})
        out += _check_train(spec.train)
        out += _check_data(spec.data, spec.spec_dir)
    out += _check_resources(spec.resources)
    out += _check_search(spec, raw)
    return out


def _check_model(m: ModelSpec, raw_model: dict[str, Any]) -> list[Problem]:
    out: list[Problem] = []
    if m.pretrained is not None:
        given = [k for k in ("family", "hidden_size", "num_layers", "num_heads", "intermediate_size")
                 if k in raw_model]
        out += [(f"model.{k}", "not used with model.pretrained (the architecture comes from its config.json)")
                for k in given]
        if not (Path(m.pretrained).expanduser() / "config.json").is_file():
            out.append(("model.pretrained",
                        f"{m.pretrained} is not a local model directory (no config.json); tuner never downloads"))
        return out
    if m.family not in MODEL_FAMILIES:
        close = difflib.get_close_matches(m.family, MODEL_FAMILIES, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        out.append(("model.family", f"unknown family {m.family!r}{hint}; valid: {', '.join(MODEL_FAMILIES)}"))
    if m.hidden_size % m.num_heads:
        out.append(("model.num_heads", f"hidden_size {m.hidden_size} is not divisible by num_heads {m.num_heads}"))
    elif (m.hidden_size // m.num_heads) % 2 and m.family != "gpt2":
        out.append(("model.num_heads", f"head size {m.hidden_size // m.num_heads} must be even for rotary "
                                        f"position embeddings ({m.family})"))
    return out


def _check_train(t: TrainSpec) -> list[Problem]:
    out: list[Problem] = []
    if t.eval_every > t.max_steps:
        out.append(("train.eval_every", f"{t.eval_every} is more than train.max_steps {t.max_steps}"))
    if t.warmup_steps >= t.max_steps:
        out.append(("train.warmup_steps", f"{t.warmup_steps} leaves no steps after warmup "
                                          f"(train.max_steps is {t.max_steps})"))
    return out


def _check_data(d: DataSpec, spec_dir: str | Path) -> list[Problem]:
    out: list[Problem] = []
    for i, s in enumerate(d.source):
        key = "data.source" if len(d.source) == 1 else f"data.source.{i}"
        if s.startswith("builtin:"):
            if s not in BUILTIN_SOURCES:
                out.append((key, f"unknown built-in corpus {s!r}; valid: {', '.join(BUILTIN_SOURCES)}"))
            continue
        p = (Path(spec_dir) / s).expanduser()
        if not p.exists():
            out.append((key, f"no such file or directory: {p}"))
        elif p.is_file() and p.suffix not in (".txt", ".jsonl"):
            out.append((key, f"{p.name}: only .txt and .jsonl files are read"))
    return out


def _check_resources(r: ResourcesSpec) -> list[Problem]:
    if r.workers_per_trial > 1:
        return [("resources.workers_per_trial",
                 "sharded trials (more than 1 worker) are not available yet; use 1")]
    return []


def _check_trainable(spec: Spec) -> list[Problem]:
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


def _check_search(spec: Spec, raw: dict[str, Any]) -> list[Problem]:
    from tuner.schedulers import SCHEDULERS
    from tuner.search import SEARCHERS

    s = spec.search
    out: list[Problem] = []
    for key, registry, name in (("search.algorithm", SEARCHERS, s.algorithm),
                                ("search.scheduler", SCHEDULERS, s.scheduler)):
        try:
            registry.check(name)
        except ValueError as e:
            out.append((key, str(e)))
    if not spec.is_custom:
        if s.metric not in LLM_METRICS:
            out.append(("search.metric", f"the LLM trial reports {', '.join(LLM_METRICS)}; got {s.metric!r}"))
        if s.time_attr is not None and s.time_attr not in LLM_TIME_ATTRS:
            out.append(("search.time_attr", f"the LLM trial's fidelity is one of {', '.join(LLM_TIME_ATTRS)}; "
                                            f"got {s.time_attr!r}"))
    elif "metric" not in (raw.get("search") or {}):
        out.append(("search.metric", "required with a custom trainable (the name your function reports)"))

    if not s.space:
        out.append(("search.space", "is empty: name at least one hyperparameter to tune"))
    dims, bad = sp.parse_space(s.space)
    out += [(f"search.space.{k}", m) for k, m in bad]
    if not spec.is_custom:
        out += _check_llm_space(spec, dims)
    if s.algorithm == "grid":
        cont = [k for k, d in dims.items() if not d.is_discrete]
        out += [(f"search.space.{k}", f"grid search needs choice or grid dimensions, not {dims[k].kind}")
                for k in cont]
    else:
        out += [(f"search.space.{k}", f"grid dimensions need algorithm grid (here {s.algorithm!r}); use choice")
                for k, d in dims.items() if d.kind == "grid"]
    for i, point in enumerate(s.points_to_evaluate):
        out += [(f"search.points_to_evaluate.{i}.{k}", "is not a key of search.space")
                for k in point if k not in s.space]
    return out


def _check_llm_space(spec: Spec, dims: dict[str, sp.Dimension]) -> list[Problem]:
    out: list[Problem] = []
    valid = [f"{sec}.{f}" for sec, fields in TUNABLE.items() for f in fields]
    ok: dict[str, sp.Dimension] = {}
    for key, dim in dims.items():
        sec, _, field = key.partition(".")
        if field not in TUNABLE.get(sec, ()):
            exists = sec in SECTIONS and field in SECTIONS[sec].model_fields
            close = difflib.get_close_matches(key, valid, n=1)
            why = ("is fixed for a sweep and cannot be tuned" if exists
                   else "does not name a spec field" + (f" (did you mean {close[0]!r}?)" if close else ""))
            out.append((f"search.space.{key}", f"{why}; tunable: {', '.join(valid)}"))
            continue
        if spec.model.pretrained and sec == "model" and field != "dropout":
            out.append((f"search.space.{key}", "a pretrained model's architecture cannot be tuned"))
            continue
        if is_int_field(SECTIONS[sec], field) and not dim.is_integer:
            out.append((f"search.space.{key}", f"{key} is an integer: use randint, choice of integers, or "
                                               f"quniform/qloguniform with integer bounds and q"))
            continue
        ok[key] = dim
    # Every value a dimension can take must make a valid spec; discrete combinations are checked together.
    for key, dim in ok.items():
        for value in dim.candidates():
            for k, m in _problems_with(spec, {key: value}):
                out.append((f"search.space.{key}", f"value {value!r} gives an invalid spec: {k}: {m}"))
    discrete = {k: d for k, d in ok.items() if d.is_discrete and k.startswith("model.")}
    if len(discrete) > 1 and sp.grid_size(discrete) <= 4096 and not out:
        for combo in itertools.product(*(d.args for d in discrete.values())):
            assignment = dict(zip(discrete, combo, strict=True))
            for k, m in _problems_with(spec, assignment):
                out.append(("search.space", f"{assignment} gives an invalid spec: {k}: {m}"))
                break
    return out


def _problems_with(spec: Spec, assignment: dict[str, Any]) -> list[Problem]:
    sections: dict[str, dict[str, Any]] = {}
    for key, value in assignment.items():
        sec, _, field = key.partition(".")
        sections.setdefault(sec, getattr(spec, sec).model_dump())[field] = value
    out: list[Problem] = []
    for sec, data in sections.items():
        try:
            obj = SECTIONS[sec].model_validate(data)
        except ValidationError as e:
            out += _pydantic_problems(e, data, prefix=f"{sec}.")
            continue
        if sec == "model":
            out += _check_model(obj, {})  # type: ignore[arg-type]
        elif sec == "train":
            out += _check_train(obj)  # type: ignore[arg-type]
    return out


def is_int_field(cls: type[BaseModel], field: str) -> bool:
    ann = cls.model_fields[field].annotation
    args = typing.get_args(ann) if isinstance(ann, types.UnionType) or typing.get_origin(ann) else (ann,)
    return int in args and float not in args


def resolve(spec: Spec, assignment: dict[str, Any]) -> Spec:
    """The spec with tuned values applied at their dotted keys (what a trial trains with)."""
    data = spec.model_dump()
    for key, value in assignment.items():
        sp.set_path(data, key, value)
    return Spec.model_validate({**data, "spec_dir": spec.spec_dir})


def upper_bound(spec: Spec, key: str) -> float:
    """The largest value the spec field at ``key`` takes in this sweep (its tuned range, or its fixed value)."""
    dim = spec.dimensions().get(key)
    if dim is None:
        return float(sp.get_path(spec.model_dump(), key))
    return max(float(v) for v in dim.candidates() if isinstance(v, (int, float)))
