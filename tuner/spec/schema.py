"""The sweep spec's typed schema: one pydantic model per section, the errors it reports, and the constants the
checks share. Nothing here imports Ray or torch."""

from __future__ import annotations

import re
import types
import typing
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator

from tuner._util import tree
from tuner._util.registry import did_you_mean
from tuner._util.storage import Bucket, is_remote
from tuner.spec import space as sp

Problem = tuple[str, str]

MODEL_FAMILIES = ("llama", "mistral", "qwen2", "gpt2")
BUILTIN_SOURCES = ("builtin:python-stdlib",)
LLM_METRICS = ("val_loss", "val_ppl", "train_loss")
LLM_TIME_ATTRS = ("tokens", "step")
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
    # torch.compile of the model's forward: pays off on a GPU over long trials; its first step costs tens of
    # seconds of compilation (about 40 s on a 2-core CPU even for a tiny model), so it is off unless asked for.
    compile: bool = False


class SearchSpec(_Section):
    metric: str = "val_loss"
    mode: Literal["min", "max"] = "min"
    preset: str | None = None  # fills algorithm + scheduler (tuner.search.presets)
    algorithm: str = "mftpe"  # (the default preset fills both: tuner.spec.presets)
    scheduler: str = "rung-asha"
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
    synch: bool = False  # pbt, pb2: every trial waits at each perturbation for the others (Ray's synchronous PBT)
    max_failures: int = Field(0, ge=0)


class ResourcesSpec(_Section):
    workers_per_trial: int = Field(1, gt=0)
    cpus_per_worker: float = Field(1.0, gt=0.0)
    gpus_per_worker: float = Field(0.0, ge=0.0)
    strategy: Literal["ddp", "fsdp"] = "ddp"  # workers_per_trial > 1
    placement: Literal["pack", "spread"] = "pack"  # of a trial's workers: as few nodes as possible, or each on its own
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
    """What the sweep keeps of its trials' checkpoints (tuner.sweep.checkpoint_policy)."""

    keep_best: int | None = Field(None, gt=0)  # the best K ended trials keep theirs; None: every trial
    max_total_gb: float | None = Field(None, gt=0.0)  # all checkpoints together, as far as live trials allow


class WandbSpec(_Section):
    """Weights & Biases, through Ray's WandbLoggerCallback: one run per trial, grouped by the sweep's name. The API
    key comes from WANDB_API_KEY or `wandb login`, never from the spec; WANDB_MODE=offline keeps runs local."""

    project: str = Field(min_length=1)
    entity: str | None = None
    group: str | None = None  # default: the sweep's name


class MlflowSpec(_Section):
    """MLflow, through Ray's MLflowLoggerCallback: one run per trial in one experiment."""

    tracking_uri: str | None = None  # default: MLFLOW_TRACKING_URI, else MLflow's own default (./mlruns)
    experiment: str | None = None  # default: the sweep's name


class TrackingSpec(_Section):
    wandb: WandbSpec | None = None
    mlflow: MlflowSpec | None = None


class TrialSpec(_Section):
    """What one LLM trial trains with: the sweep spec's sections, with the trial's hyperparameters applied."""

    model: ModelSpec
    data: DataSpec
    train: TrainSpec
    resources: ResourcesSpec


class Spec(_Section):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$", max_length=128)
    storage: str = "./sweeps"  # a local or shared directory, or s3://bucket/prefix, gs://bucket/prefix
    storage_endpoint: str | None = None  # an S3-compatible server's URL (else AWS_ENDPOINT_URL, else AWS)
    trainable: str | None = Field(None, pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
    model: ModelSpec = Field(default_factory=ModelSpec)
    data: DataSpec = Field(default_factory=DataSpec)
    train: TrainSpec = Field(default_factory=TrainSpec)
    search: SearchSpec = Field(default_factory=SearchSpec)
    resources: ResourcesSpec = Field(default_factory=ResourcesSpec)
    budget: ComputeBudgetSpec = Field(default_factory=ComputeBudgetSpec)
    checkpoint: CheckpointSpec = Field(default_factory=CheckpointSpec)
    tracking: TrackingSpec = Field(default_factory=TrackingSpec)
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
    def bucket(self) -> Bucket | None:
        """The sweep's prefix in a bucket (``<storage>/<name>``), or None for local storage."""
        if not is_remote(self.storage):
            return None
        return Bucket(self.storage.rstrip("/"), self.storage_endpoint).child(self.name)

    @property
    def sweep_dir(self) -> Path:
        """The sweep's local directory: its results, or, for a bucket, the driver's mirror of its own files."""
        bucket = self.bucket
        if bucket is not None:
            return bucket.mirror()
        return Path(self.storage).expanduser().resolve() / self.name

    @property
    def location(self) -> str:
        """Where the sweep's results are, as a user names it: a directory or a bucket URI."""
        bucket = self.bucket
        return bucket.uri if bucket is not None else str(self.sweep_dir)

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
        return dict(flat) if self.is_custom else tree.nest(flat)


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
        return float(tree.get_path(spec.model_dump(), key))
    return max(float(v) for v in dim.candidates() if isinstance(v, (int, float)))


def pydantic_problems(err: ValidationError, prefix: str = "") -> list[Problem]:
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
