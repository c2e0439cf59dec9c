"""The trial's fidelity: how long a trial runs and how often it reports, in the units of ``time_attr``. (Not the
compute budget of the spec's ``budget`` key: that is ``tuner.schedulers.compute_budget``.)

With ``tokens`` as the fidelity (the default for the LLM trial) a full trial is a token budget: ``train.max_tokens``,
or ``max_steps`` at the largest tokens-per-step the space allows. A trial that drew a smaller batch runs more steps,
so every trial sees the same data and the schedulers compare like with like; it reports every ``eval_every`` steps'
worth of tokens at the largest batch, the same token points for every trial.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from tuner._util.rungs import rung_levels
from tuner.spec import catalog
from tuner.spec.schema import Spec, TrainSpec, upper_bound

CUSTOM_MAX_T = 100  # Ray Tune's ASHA default, for custom trainables that set no search.max_t


@dataclass(frozen=True)
class Fidelity:
    time_attr: str
    max_t: float  # a full trial, in time_attr units
    eval_interval: float  # report (evaluate + checkpoint) every this many time_attr units
    grace_period: float
    # Multi-fidelity milestones (tuner._util.rungs): the trial reports at each of them too, so that the rung-based
    # scheduler and searcher judge every trial at the same fidelities. Empty for sweeps that use none.
    rungs: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "rungs", tuple(self.rungs))  # (a list, once it has been through JSON)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def grad_accum_steps(t: TrainSpec, world_size: int) -> int:
    """Micro-batches per optimizer step on each worker: derived from ``global_batch_size`` when it is set."""
    if t.global_batch_size is not None:
        return max(1, t.global_batch_size // (t.batch_size * world_size))
    return t.grad_accum_steps


def tokens_per_step(spec: Spec) -> int:
    """The most tokens one optimizer step can take in this sweep (over all of a trial's workers)."""
    seq_len = int(upper_bound(spec, "data.seq_len"))
    if spec.train.global_batch_size is not None:
        return spec.train.global_batch_size * seq_len
    sequences = int(upper_bound(spec, "train.batch_size")) * int(upper_bound(spec, "train.grad_accum_steps"))
    return sequences * spec.resources.workers_per_trial * seq_len


def fidelity(spec: Spec) -> Fidelity:
    s, t = spec.search, spec.train
    time_attr = spec.time_attr
    if spec.is_custom:
        max_t, interval, warmup = s.max_t or CUSTOM_MAX_T, 1, 0
    elif time_attr == "step":
        max_t, interval, warmup = s.max_t or t.max_steps, t.eval_every, t.warmup_steps
    else:
        per_step = tokens_per_step(spec)
        max_t, interval = s.max_t or t.max_tokens or t.max_steps * per_step, t.eval_every * per_step
        warmup = t.warmup_steps * per_step
    rungs: tuple[float, ...] = ()
    if s.scheduler in catalog.RUNG_SCHEDULERS or s.algorithm in catalog.RUNG_SEARCHERS:
        rungs = rung_levels(max_t, s.reduction_factor, min_t=warmup, grace=s.grace_period)
    return Fidelity(time_attr, max_t, interval, s.grace_period or interval, rungs)


def hyperband_max_t(spec: Spec, f: Fidelity) -> float:
    """HyperBand sizes its brackets from max_t: in tokens (~1e6) it would build a dozen brackets whose first runs
    every trial to the end. The LLM trial reports at equal token intervals, so its reports are the same fidelity in
    units HyperBand can bracket."""
    return f.max_t if spec.is_custom else max(1, round(f.max_t / f.eval_interval))


def hyperband_bracket_size(max_t: float, eta: float) -> int:
    """Trials in HyperBand's largest bracket, as Ray's HyperBandScheduler sizes it."""
    s_max_1 = int(round(math.log(max_t) / math.log(eta))) + 1 if max_t > 1 else 1
    return math.ceil(eta ** (s_max_1 - 1))
