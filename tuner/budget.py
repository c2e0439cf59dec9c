"""How long a trial runs and how often it reports, in the units of the sweep's fidelity (``time_attr``).

With ``tokens`` as the fidelity (the default for the LLM trial) a full trial is a token budget: ``max_steps`` at
the largest tokens-per-step the space allows. A trial that drew a smaller batch runs more steps, so every trial
sees the same data and the schedulers compare like with like.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from tuner.spec import Spec, upper_bound

CUSTOM_MAX_T = 100  # Ray Tune's ASHA default, for custom trainables that set no search.max_t


@dataclass(frozen=True)
class Budget:
    time_attr: str
    max_t: float  # a full trial, in time_attr units
    eval_interval: float  # report (evaluate + checkpoint) every this many time_attr units
    grace_period: float

    def as_dict(self) -> dict[str, float | str]:
        return asdict(self)


def budget(spec: Spec) -> Budget:
    s = spec.search
    time_attr = spec.time_attr
    if spec.is_custom:
        max_t = s.max_t or CUSTOM_MAX_T
        return Budget(time_attr, max_t, 1, s.grace_period or 1)
    max_steps = upper_bound(spec, "train.max_steps")
    evals = max_steps / spec.train.eval_every
    if time_attr == "step":
        max_t = s.max_t or max_steps
    else:
        per_step = (upper_bound(spec, "train.batch_size") * upper_bound(spec, "train.grad_accum_steps")
                    * upper_bound(spec, "data.seq_len"))
        max_t = s.max_t or spec.train.max_tokens or max_steps * per_step
    interval = max_t / evals
    return Budget(time_attr, max_t, interval, s.grace_period or interval)
