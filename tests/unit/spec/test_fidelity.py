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
