"""Cross-field checks of a sweep spec: everything the schema alone cannot say. Each check returns (dotted key,
message) pairs; ``cross_checks`` runs them all so that one ``tuner validate`` reports every problem."""

from __future__ import annotations

import importlib
import itertools
import json
import math
import sys
from pathlib import Path
from typing import Any

from tuner import space as sp
from tuner.registry import did_you_mean
from tuner.spec import (
    BUILTIN_SOURCES,
    LLM_METRICS,
    LLM_TIME_ATTRS,
    MODEL_FAMILIES,
    PBT_MUTABLE,
    POPULATION_SCHEDULERS,
    SECTIONS,
    TUNABLE,
    DataSpec,
    ModelSpec,
    Problem,
    ResourcesSpec,
    Spec,
    TrainSpec,
    _pydantic_problems,
    is_int_field,
    upper_bound,
)

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")


def cross_checks(spec: Spec, raw: dict[str, Any]) -> list[Problem]:
    given = {k: v for k, v in raw.items() if isinstance(v, dict)}
    out: list[Problem] = []
    if "://" in spec.storage:
        out.append(("storage", "remote storage URIs are not supported yet; use a local or shared (NFS) path"))
    if spec.is_custom:
        out += [(k, "not used with trainable (a custom objective replaces model/data/train)")
                for k in ("model", "data", "train") if k in raw]
        out += _check_trainable(spec)
    else:
        out += check_model(spec.model, given.get("model", {}))
        out += check_pretrained(spec)
        out += check_train(spec.train, given.get("train", {}))
        out += check_data(spec.data)
    out += check_resources(spec.resources)
    if not spec.is_custom:
        out += check_batch(spec, given.get("train", {}))
    elif spec.resources.workers_per_trial > 1:
        out.append(("resources.workers_per_trial", "a custom trainable runs in one process; sharded trials (more "
                                                   "than 1 worker) are for the LLM trial"))
    out += _check_search(spec, given.get("search", {}))
    if spec.budget.gpu_hours is not None and spec.resources.gpus_per_worker == 0:
        out.append(("budget.gpu_hours", "the trials use no GPU (resources.gpus_per_worker is 0): this limit would "
                                        "never be reached; use budget.cpu_hours or budget.wall_clock"))
    return out


# --- sections ---------------------------------------------------------------------------------------------------

def check_model(m: ModelSpec, given: dict[str, Any]) -> list[Problem]:
    out: list[Problem] = []
    if m.pretrained is not None:
        arch = ("family", "hidden_size", "num_layers", "num_heads", "intermediate_size")
        return [(f"model.{k}", "not used with model.pretrained (the architecture comes from its config.json)")
                for k in arch if k in given]
    if m.family not in MODEL_FAMILIES:
        out.append(("model.family", f"unknown family {m.family!r}{did_you_mean(m.family, MODEL_FAMILIES)}; "
                                    f"valid: {', '.join(MODEL_FAMILIES)}"))
    if m.hidden_size % m.num_heads:
        out.append(("model.num_heads", f"hidden_size {m.hidden_size} is not divisible by num_heads {m.num_heads}"))
    elif (m.hidden_size // m.num_heads) % 2 and m.family != "gpt2":
        out.append(("model.num_heads", f"head size {m.hidden_size // m.num_heads} must be even for rotary "
                                       f"position embeddings ({m.family})"))
    return out


def check_pretrained(spec: Spec) -> list[Problem]:
    """A local model directory with weights' config and a tokenizer, long enough for the longest seq_len."""
    path = spec.model.pretrained
    if path is None:
        return []
    d = Path(path)
    if not (d / "config.json").is_file():
        return [("model.pretrained", f"{d} is not a local model directory (no config.json); tuner never downloads")]
    out: list[Problem] = []
    if not any((d / f).is_file() for f in TOKENIZER_FILES):
        out.append(("model.pretrained", f"{d} has no tokenizer (none of {', '.join(TOKENIZER_FILES)})"))
    try:
        config = json.loads((d / "config.json").read_text())
    except (OSError, ValueError) as e:
        return [*out, ("model.pretrained", f"{d / 'config.json'} is unreadable: {e}")]
    limit = config.get("max_position_embeddings") or config.get("n_positions")
    longest = int(upper_bound(spec, "data.seq_len"))
    if isinstance(limit, int) and longest > limit:
        out.append(("data.seq_len", f"{longest} is longer than the pretrained model's {limit} positions"))
    return out


def check_train(t: TrainSpec, given: dict[str, Any]) -> list[Problem]:
    out: list[Problem] = []
    if t.max_tokens is not None:
        if "max_steps" in given:
            out.append(("train.max_tokens", "give train.max_steps or train.max_tokens, not both"))
        return out  # the step checks against a token budget need the whole spec: _check_budget
    if t.eval_every > t.max_steps:
        out.append(("train.eval_every", f"{t.eval_every} is more than train.max_steps {t.max_steps}"))
    if t.warmup_steps >= t.max_steps:
        out.append(("train.warmup_steps", f"{t.warmup_steps} leaves no steps after warmup "
                                          f"(train.max_steps is {t.max_steps})"))
    return out


def check_data(d: DataSpec) -> list[Problem]:
    out: list[Problem] = []
    for i, s in enumerate(d.source):
        key = "data.source" if len(d.source) == 1 else f"data.source.{i}"
        if s.startswith("builtin:"):
            if s not in BUILTIN_SOURCES:
                out.append((key, f"unknown built-in corpus {s!r}; valid: {', '.join(BUILTIN_SOURCES)}"))
            continue
        p = Path(s)
        if not s.strip():
            continue  # reported while resolving paths
        if not p.exists():
            out.append((key, f"no such file or directory: {p}"))
        elif p.is_file() and p.suffix not in (".txt", ".jsonl"):
            out.append((key, f"{p.name}: only .txt and .jsonl files are read"))
    return out


def check_resources(r: ResourcesSpec) -> list[Problem]:
    out: list[Problem] = []
    if r.strategy == "fsdp" and r.workers_per_trial == 1:
        out.append(("resources.strategy", "fsdp shards a trial over its workers: set resources.workers_per_trial "
                                          ">= 2, or strategy ddp"))
    if r.workers_per_trial > 1 and r.gpus_per_worker != int(r.gpus_per_worker):
        out.append(("resources.gpus_per_worker", f"{r.gpus_per_worker:g}: the workers of a sharded trial need whole "
                                                 f"GPUs (NCCL cannot share one); fractions are for single-worker "
                                                 f"trials"))
    elif r.gpus_per_worker > 1 and r.gpus_per_worker != int(r.gpus_per_worker):
        out.append(("resources.gpus_per_worker", f"{r.gpus_per_worker:g}: above 1, GPUs per worker must be whole"))
    return out


def check_batch(spec: Spec, given_train: dict[str, Any]) -> list[Problem]:
    """With ``train.global_batch_size`` every per-device batch size the sweep can draw must divide it evenly over
    the workers: gradient accumulation makes up the rest."""
    t, world = spec.train, spec.resources.workers_per_trial
    if t.global_batch_size is None:
        return []
    out: list[Problem] = []
    if "grad_accum_steps" in given_train or "train.grad_accum_steps" in spec.search.space:
        out.append(("train.grad_accum_steps", "is derived from train.global_batch_size (global / (batch_size x "
                                              "workers_per_trial)); give one of them"))
    dim = spec.dimensions().get("train.batch_size")
    sizes = sorted({int(v) for v in dim.candidates()}) if dim is not None and dim.is_discrete else [t.batch_size]
    if dim is not None and not dim.is_discrete:
        out.append(("search.space.train.batch_size", "with train.global_batch_size, tune batch_size with choice "
                                                      "or grid (each value must divide the global batch)"))
    bad = [b for b in sizes if t.global_batch_size % (b * world)]
    if bad:
        out.append(("train.global_batch_size", f"{t.global_batch_size} is not a multiple of train.batch_size x "
                                               f"resources.workers_per_trial for batch_size "
                                               f"{', '.join(map(str, bad))} (x {world} workers)"))
    return out


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


# --- search -----------------------------------------------------------------------------------------------------

def _check_search(spec: Spec, given: dict[str, Any]) -> list[Problem]:
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
    if s.scheduler in POPULATION_SCHEDULERS and s.algorithm not in ("random", "grid"):
        # Ray Tune refuses it at fit(): the population scheduler chooses the configurations itself.
        out.append(("search.algorithm", f"{s.algorithm} cannot drive scheduler {s.scheduler} (it mutates the "
                                        f"configurations itself): use algorithm random (or grid), or preset pbt"))
    if not spec.is_custom:
        if s.metric not in LLM_METRICS:
            out.append(("search.metric", f"the LLM trial reports {', '.join(LLM_METRICS)}; got {s.metric!r}"))
        if s.time_attr is not None and s.time_attr not in LLM_TIME_ATTRS:
            out.append(("search.time_attr", f"the LLM trial's fidelity is one of {', '.join(LLM_TIME_ATTRS)}; "
                                            f"got {s.time_attr!r}"))
    elif "metric" not in given:
        out.append(("search.metric", "required with a custom trainable (the name your function reports)"))

    if not s.space:
        out.append(("search.space", "is empty: name at least one hyperparameter to tune"))
    dims, bad = sp.parse_space(s.space)
    out += [(f"search.space.{k}", m) for k, m in bad]
    if not spec.is_custom:
        out += _check_llm_space(spec, dims)
    if s.algorithm == "grid":
        out += [(f"search.space.{k}", f"grid search needs choice or grid dimensions, not {d.kind}")
                for k, d in dims.items() if not d.is_discrete]
        if s.points_to_evaluate:
            out.append(("search.points_to_evaluate", "grid search runs every combination; points do not apply"))
    else:
        out += [(f"search.space.{k}", f"grid dimensions need algorithm grid (here {s.algorithm!r}); use choice")
                for k, d in dims.items() if d.kind == "grid"]
    out += _check_points(spec, dims)
    for key, owner in (("sampler", "optuna"), ("acquisition", "bayesopt")):
        if key in given and s.algorithm != owner:
            out.append((f"search.{key}", f"only used by algorithm {owner} (here {s.algorithm!r})"))
    for key in ("perturbation_interval", "quantile_fraction", "resample_probability"):
        if key in given and s.scheduler not in POPULATION_SCHEDULERS:
            out.append((f"search.{key}", f"only used by scheduler pbt or pb2 (here {s.scheduler!r})"))
    if s.scheduler in POPULATION_SCHEDULERS:
        out += _check_population_space(spec, dims)
    if not bad and not any(k.startswith("search.space") for k, _ in out):
        out += _check_budget(spec)
    return out


def _check_llm_space(spec: Spec, dims: dict[str, sp.Dimension]) -> list[Problem]:
    out: list[Problem] = []
    valid = [f"{sec}.{f}" for sec, fields in TUNABLE.items() for f in fields]
    ok: dict[str, sp.Dimension] = {}
    for key, dim in dims.items():
        sec, _, field = key.partition(".")
        if field not in TUNABLE.get(sec, ()):
            exists = sec in SECTIONS and field in SECTIONS[sec].model_fields
            why = ("is fixed for a sweep and cannot be tuned" if exists
                   else f"does not name a spec field{did_you_mean(key, valid)}")
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
    # Every value a dimension can take must make a valid spec (the fixed spec's own problems are reported once,
    # not again under every key); model dimensions with few values are checked in every combination.
    base = set(problems_with(spec, {}))
    for key, dim in ok.items():
        for value in dim.candidates():
            for k, m in problems_with(spec, {key: value}):
                if (k, m) not in base:
                    out.append((f"search.space.{key}", f"value {value!r} gives an invalid spec: {k}: {m}"))
    enumerable = {k: d.values() for k, d in ok.items() if k.startswith("model.") and d.values() is not None}
    if len(enumerable) > 1 and not out:
        combos = itertools.product(*enumerable.values())  # type: ignore[arg-type]
        for combo in itertools.islice(combos, 4096):
            assignment = dict(zip(enumerable, combo, strict=True))
            found = [p for p in problems_with(spec, assignment) if p not in base]
            if found:
                out.append(("search.space", f"{assignment} gives an invalid spec: {found[0][0]}: {found[0][1]}"))
                break
    return out


def problems_with(spec: Spec, assignment: dict[str, Any]) -> list[Problem]:
    """The problems of the model/data/train sections with ``assignment`` (dotted keys) applied."""
    sections: dict[str, dict[str, Any]] = {sec: getattr(spec, sec).model_dump() for sec in ("model", "train")}
    for key, value in assignment.items():
        sec, _, field = key.partition(".")
        sections.setdefault(sec, getattr(spec, sec).model_dump())[field] = value
    out: list[Problem] = []
    for sec, data in sections.items():
        try:
            obj = SECTIONS[sec].model_validate(data, strict=True)
        except Exception as e:  # a pydantic ValidationError
            out += _pydantic_problems(e, prefix=f"{sec}.")  # type: ignore[arg-type]
            continue
        if sec == "model":
            out += check_model(obj, {})  # type: ignore[arg-type]
        elif sec == "train":
            out += check_train(obj, {})  # type: ignore[arg-type]
    return out


def _check_points(spec: Spec, dims: dict[str, sp.Dimension]) -> list[Problem]:
    """Each point names every dimension with a value it can take (the searchers need whole points)."""
    out: list[Problem] = []
    for i, point in enumerate(spec.search.points_to_evaluate):
        key = f"search.points_to_evaluate.{i}"
        out += [(f"{key}.{k}", "is not a key of search.space") for k in point if k not in spec.search.space]
        missing = [k for k in dims if k not in point]
        if missing:
            out.append((key, f"gives no value for {', '.join(missing)} (a point names every key of search.space)"))
        for k, v in point.items():
            if k in dims and not dims[k].contains(v):
                out.append((f"{key}.{k}", f"{v!r} is outside its dimension {dims[k].kind}: {list(dims[k].args)}"))
        if not spec.is_custom and not out:
            out += [(f"{key}", f"gives an invalid spec: {k}: {m}") for k, m in problems_with(spec, point)]
    return out


def _check_population_space(spec: Spec, dims: dict[str, sp.Dimension]) -> list[Problem]:
    """PBT and PB2 change hyperparameters of a running trial: only what can change mid-training may be tuned."""
    out: list[Problem] = []
    for key, dim in dims.items():
        if not spec.is_custom and key not in PBT_MUTABLE:
            out.append((f"search.space.{key}", f"{spec.search.scheduler} changes hyperparameters mid-training; "
                                               f"{key} cannot change then (mutable: {', '.join(PBT_MUTABLE)})"))
        elif spec.search.scheduler == "pb2" and dim.is_discrete:
            out.append((f"search.space.{key}", "pb2 models numeric ranges; use a range here, or scheduler pbt"))
    return out


def hyperband_bracket_size(max_t: float, eta: float) -> int:
    """Trials in HyperBand's largest bracket, as Ray's HyperBandScheduler sizes it."""
    s_max_1 = int(round(math.log(max_t) / math.log(eta))) + 1 if max_t > 1 else 1
    return math.ceil(eta ** (s_max_1 - 1))


def _check_budget(spec: Spec) -> list[Problem]:
    """The fidelity knobs against the trial budget they divide."""
    from tuner.budget import budget, tokens_per_step

    s, t = spec.search, spec.train
    out: list[Problem] = []
    if not spec.is_custom and t.max_tokens is not None and spec.time_attr == "step":
        return [("train.max_tokens", "a token budget needs search.time_attr tokens (here step)")]
    b = budget(spec)
    if s.grace_period is not None and s.grace_period > b.max_t:
        out.append(("search.grace_period", f"{s.grace_period:g} is beyond a full trial ({b.max_t:g} {b.time_attr})"))
    if s.scheduler == "hyperband" and s.max_concurrent is not None:
        from tuner.schedulers import hyperband_max_t

        n0 = hyperband_bracket_size(hyperband_max_t(spec, b), s.reduction_factor)
        if s.max_concurrent < n0:
            out.append(("search.max_concurrent", f"hyperband pauses trials at each rung and paused trials count "
                                                 f"against max_concurrent: its first bracket needs {n0} trials, so "
                                                 f"{s.max_concurrent} never fills it (nothing is ever stopped). Drop "
                                                 f"max_concurrent (the resources limit what runs at once) or make it "
                                                 f">= {n0}"))
    if s.perturbation_interval is not None and s.perturbation_interval >= b.max_t:
        out.append(("search.perturbation_interval", f"{s.perturbation_interval:g} leaves no perturbation inside a "
                                                    f"full trial ({b.max_t:g} {b.time_attr})"))
    if not spec.is_custom and t.max_tokens is not None:
        steps = b.max_t / tokens_per_step(spec)  # the fewest steps any trial makes: at the largest batch
        if t.eval_every > steps:
            out.append(("train.eval_every", f"{t.eval_every} is more than the {steps:.0f} steps of train.max_tokens "
                                            f"at the largest batch"))
        if t.warmup_steps >= steps:
            out.append(("train.warmup_steps", f"{t.warmup_steps} leaves no steps after warmup in train.max_tokens "
                                              f"({steps:.0f} steps at the largest batch)"))
    return out
