"""Checks of the search section: names, the space against the spec fields it tunes, points to evaluate,
population schedulers, and the fidelity knobs against the trial length they divide."""

from __future__ import annotations

import itertools
from typing import Any

from tuner._util.registry import did_you_mean
from tuner.spec import catalog
from tuner.spec import space as sp
from tuner.spec.checks.sections import problems_with
from tuner.spec.fidelity import fidelity, hyperband_bracket_size, hyperband_max_t, tokens_per_step
from tuner.spec.schema import (
    LLM_METRICS,
    LLM_TIME_ATTRS,
    PBT_MUTABLE,
    SECTIONS,
    TUNABLE,
    Problem,
    Spec,
    is_int_field,
)


def check_search(spec: Spec, given: dict[str, Any]) -> list[Problem]:
    s = spec.search
    out: list[Problem] = []
    for key, kind, name, valid in (("search.algorithm", "search algorithm", s.algorithm, catalog.SEARCHERS),
                                   ("search.scheduler", "scheduler", s.scheduler, catalog.SCHEDULERS)):
        try:
            catalog.check_name(kind, name, valid)
        except ValueError as e:
            out.append((key, str(e)))
    if s.scheduler in catalog.POPULATION_SCHEDULERS and s.algorithm not in ("random", "grid"):
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
    for key, owner in catalog.SEARCHER_OPTIONS.items():
        if key in given and s.algorithm != owner:
            out.append((f"search.{key}", f"only used by algorithm {owner} (here {s.algorithm!r})"))
    for key in catalog.POPULATION_OPTIONS:
        if key in given and s.scheduler not in catalog.POPULATION_SCHEDULERS:
            out.append((f"search.{key}", f"only used by scheduler pbt or pb2 (here {s.scheduler!r})"))
    if s.scheduler in catalog.POPULATION_SCHEDULERS:
        out += _check_population_space(spec, dims)
    if not bad and not any(k.startswith("search.space") for k, _ in out):
        out += _check_fidelity(spec)
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


def _check_fidelity(spec: Spec) -> list[Problem]:
    """The fidelity knobs against the trial length they divide."""
    s, t = spec.search, spec.train
    out: list[Problem] = []
    if not spec.is_custom and t.max_tokens is not None and spec.time_attr == "step":
        return [("train.max_tokens", "a token budget needs search.time_attr tokens (here step)")]
    b = fidelity(spec)
    if s.grace_period is not None and s.grace_period > b.max_t:
        out.append(("search.grace_period", f"{s.grace_period:g} is beyond a full trial ({b.max_t:g} {b.time_attr})"))
    if s.scheduler == "hyperband" and s.max_concurrent is not None:
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
