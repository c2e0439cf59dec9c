"""Checks of the model, data, train and resources sections, alone and together (the batch over the workers)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tuner._util.registry import did_you_mean
from tuner.spec.schema import (
    BUILTIN_SOURCES,
    MODEL_FAMILIES,
    SECTIONS,
    DataSpec,
    ModelSpec,
    Problem,
    ResourcesSpec,
    Spec,
    TrainSpec,
    pydantic_problems,
    upper_bound,
)

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")


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
            out += pydantic_problems(e, prefix=f"{sec}.")  # type: ignore[arg-type]
            continue
        if sec == "model":
            out += check_model(obj, {})  # type: ignore[arg-type]
        elif sec == "train":
            out += check_train(obj, {})  # type: ignore[arg-type]
    return out
