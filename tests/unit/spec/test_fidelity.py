"""Fidelity budgets: tokens stay fair when batch size is tuned."""

from __future__ import annotations

from tuner.spec import validate
from tuner.spec.fidelity import fidelity


def test_token_budget_uses_the_largest_batch(tiny_raw):
    spec = validate(tiny_raw(search={"space": {"train.batch_size": {"choice": [2, 4, 8]}}}))
    b = fidelity(spec)
    assert b.time_attr == "tokens"
    assert b.max_t == 20 * 8 * 32  # max_steps at the largest batch, times seq_len
    assert b.eval_interval == 5 * 8 * 32 and b.grace_period == b.eval_interval


def test_step_budget_and_explicit_knobs(tiny_raw):
    spec = validate(tiny_raw(search={"time_attr": "step", "grace_period": 10}))
    b = fidelity(spec)
    assert (b.time_attr, b.max_t, b.eval_interval, b.grace_period) == ("step", 20, 5, 10)
    raw = tiny_raw(train={"max_tokens": 6400})
    del raw["train"]["max_steps"]
    spec = validate(raw)
    assert fidelity(spec).max_t == 6400 and fidelity(spec).eval_interval == 5 * 4 * 32  # eval_every at the batch


def test_custom_trainable_defaults(tmp_path):
    (tmp_path / "obj.py").write_text("def f(config):\n    pass\n")
    spec = validate({"name": "c", "trainable": "obj:f", "search": {"metric": "loss", "max_t": 27,
                                                                   "space": {"x": {"uniform": [0, 1]}}}},
                    spec_dir=tmp_path)
    b = fidelity(spec)
    assert (b.time_attr, b.max_t, b.grace_period) == ("training_iteration", 27, 1)


def test_rungs_are_geometric_from_a_27th_of_a_trial_and_start_after_the_warmup(tiny_raw):
    """The default preset's rungs: 1/27, 1/9, 1/3 and 1 of a full trial, none before the LR warmup ends; a sweep
    that judges no trial at rungs has none (the trial then reports only every eval_every)."""
    raw = tiny_raw(train={"max_steps": 270, "eval_every": 30, "warmup_steps": 5})
    del raw["search"]["algorithm"], raw["search"]["scheduler"]
    b = fidelity(validate(raw))
    per_step = 4 * 32
    assert b.rungs == tuple(270 * per_step / 3 ** k for k in (3, 2, 1, 0))
    raw["train"]["warmup_steps"] = 20  # past 270 / 27 = 10 steps: the first rung goes
    assert fidelity(validate(raw)).rungs == tuple(270 * per_step / 3 ** k for k in (2, 1, 0))
    raw["search"]["grace_period"] = 20 * per_step  # an explicit first rung, times the reduction factor
    assert fidelity(validate(raw)).rungs == (20 * per_step, 60 * per_step, 180 * per_step, 270 * per_step)
    assert fidelity(validate(tiny_raw())).rungs == ()  # random + fifo
    assert fidelity(validate(tiny_raw(search={"algorithm": "tpe", "scheduler": "asha"}))).rungs == ()


def test_a_custom_trainables_rungs_follow_its_max_t(tmp_path):
    (tmp_path / "obj.py").write_text("def f(config):\n    pass\n")
    spec = validate({"name": "c", "trainable": "obj:f", "search": {"metric": "loss", "max_t": 81,
                                                                   "space": {"x": {"uniform": [0, 1]}}}},
                    spec_dir=tmp_path)
    assert fidelity(spec).rungs == (3.0, 9.0, 27.0, 81.0)
