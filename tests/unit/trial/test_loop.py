"""The LLM trial without Ray: exact restore, hyperparameters applied on restore, NaN isolation, export."""

from __future__ import annotations

import contextlib
import math
from pathlib import Path

import pytest
import torch

from tuner.spec import DataSpec, ModelSpec, ResourcesSpec, TrainSpec, TrialSpec
from tuner.spec.fidelity import Fidelity
from tuner.trial.checkpoint import export_model, load_checkpoint
from tuner.trial.data import prepare
from tuner.trial.loop import NonFiniteLossError, fit
from tuner.trial.model import build_model, build_tokenizer
from tuner.trial.optim import lr_at


class Stop(Exception):
    pass


def tiny(**train) -> TrialSpec:
    t = {"max_steps": 24, "eval_every": 6, "batch_size": 4, "warmup_steps": 3, "lr": 3e-3, "eval_tokens": 512,
         "weight_decay": 0.1, **train}
    return TrialSpec(model=ModelSpec(hidden_size=32, num_layers=1, num_heads=2, dropout=0.1),
                     data=DataSpec(seq_len=32), train=TrainSpec(**t), resources=ResourcesSpec())


@pytest.fixture(scope="module")
def data_dir(corpus, tmp_path_factory) -> Path:
    return prepare([str(corpus)], build_tokenizer(ModelSpec()), tmp_path_factory.mktemp("data"),
                   val_fraction=0.1).path


def run(spec, budget, data_dir, restore=None, stop_after=None):
    """Train; return (metrics per report, checkpoint state per step)."""
    metrics, states = [], {}

    def report(m, ckpt_dir):
        metrics.append(m)
        states[m["step"]] = load_checkpoint(ckpt_dir)
        if stop_after and len(metrics) == stop_after:
            raise Stop

    with contextlib.suppress(Stop):
        fit(spec, budget, data_dir, report, restore=restore)
    return metrics, states


@pytest.mark.parametrize("time_attr", ["step", "tokens"])
def test_restore_continues_bit_for_bit(data_dir, time_attr):
    spec = tiny()
    per = 4 * 32 if time_attr == "tokens" else 1
    budget = Fidelity(time_attr, 24 * per, 6 * per, 6 * per)
    full, _ = run(spec, budget, data_dir)
    assert [m["step"] for m in full] == [6, 12, 18, 24]
    first, states = run(spec, budget, data_dir, stop_after=2)
    resumed, _ = run(spec, budget, data_dir, restore=states[12])
    assert [m["step"] for m in resumed] == [18, 24]
    for a, b in zip(full[2:], resumed, strict=True):
        assert (a["train_loss"], a["val_loss"], a["lr"]) == (b["train_loss"], b["val_loss"], b["lr"])


def test_the_trial_reports_at_every_rung_milestone_too(data_dir):
    """Rungs between evaluations get a report of their own (at the first step at or past them), so a rung-based
    scheduler and searcher judge every trial at the same fidelity; a restored trial does not report again at a
    rung it already passed."""
    spec = tiny()
    budget = Fidelity("step", 24, 12, 12, rungs=(24 / 9, 8.0, 24.0))
    full, states = run(spec, budget, data_dir)
    assert [m["step"] for m in full] == [3, 8, 12, 24]
    resumed, _ = run(spec, budget, data_dir, restore=states[8])
    assert [m["step"] for m in resumed] == [12, 24]


def test_restore_applies_the_new_hyperparameters_over_the_optimizer_state(data_dir):
    budget = Fidelity("step", 24, 6, 6)
    _, states = run(tiny(), budget, data_dir, stop_after=2)
    donor = states[12]
    seen = {}

    def report(m, ckpt_dir):
        state = load_checkpoint(ckpt_dir)
        seen["groups"] = state["optimizer"]["param_groups"]
        seen["adam_step"] = float(state["optimizer"]["state"][0]["step"])
        seen["m"] = m
        raise Stop

    new = tiny(lr=1e-2, weight_decay=0.3, beta2=0.99)
    with pytest.raises(Stop):
        fit(new, budget, data_dir, report, restore=donor)
    decay, no_decay = seen["groups"]
    assert seen["m"]["step"] == 18  # resumed from the donor's step 12
    assert decay["weight_decay"] == 0.3 and no_decay["weight_decay"] == 0.0 and decay["betas"] == (0.9, 0.99)
    assert seen["m"]["lr"] == pytest.approx(lr_at(new.train, 17, 1, 24))
    assert seen["adam_step"] == 18  # the donor's Adam state was kept and continued, not re-initialised


def test_lr_schedule_warms_up_then_decays_to_the_floor():
    t = TrainSpec(lr=1.0, warmup_steps=4, min_lr_ratio=0.1, max_steps=100)
    lrs = [lr_at(t, s, 1, 100) for s in range(100)]
    assert lrs[:4] == [0.25, 0.5, 0.75, 1.0]
    assert all(a >= b for a, b in zip(lrs[4:], lrs[5:], strict=False))
    assert lr_at(t, 100, 1, 100) == pytest.approx(0.1)
    # In token units with a different step size the shape is the same.
    assert lr_at(t, 2 * 128, 128, 100 * 128) == pytest.approx(lrs[2])


def test_non_finite_loss_raises_a_clear_error(data_dir):
    with pytest.raises(NonFiniteLossError, match="not finite at step 6"):
        fit(tiny(lr=1e4, warmup_steps=0), Fidelity("step", 24, 6, 6), data_dir, lambda m, d: None)


def test_gpt2_family_trains_and_loss_falls(data_dir):
    spec = tiny()
    spec = spec.model_copy(update={"model": ModelSpec(family="gpt2", hidden_size=32, num_layers=1, num_heads=2)})
    metrics, _ = run(spec, Fidelity("step", 24, 6, 6), data_dir)
    assert metrics[-1]["val_loss"] < metrics[0]["val_loss"] < math.log(384)
    assert set(metrics[0]) >= {"step", "tokens", "train_loss", "val_loss", "val_ppl", "lr", "tokens_per_s"}


def test_export_is_loadable_by_transformers(data_dir, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    spec = tiny()
    metrics, states = run(spec, Fidelity("step", 12, 6, 6), data_dir)
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    torch.save(states[12], ckpt / "state.pt")
    out = export_model(ckpt, tmp_path / "best_model")
    model = AutoModelForCausalLM.from_pretrained(out)
    tok = AutoTokenizer.from_pretrained(out)
    x = torch.tensor([tok("def f(x):\n    return x", add_special_tokens=False)["input_ids"]])
    with torch.no_grad():
        loss = model(input_ids=x, labels=x).loss.item()
    assert math.isfinite(loss) and loss < math.log(384)
    assert model.config.num_hidden_layers == 1 and model.config.hidden_size == 32


def test_trains_from_a_local_pretrained_directory(data_dir, tmp_path):
    tok = build_tokenizer(ModelSpec())
    base = build_model(ModelSpec(hidden_size=32, num_layers=1, num_heads=2), seq_len=32, tokenizer=tok)
    base.save_pretrained(tmp_path / "lm")
    tok.save_pretrained(tmp_path / "lm")
    spec = tiny()
    spec = spec.model_copy(update={"model": ModelSpec(pretrained=str(tmp_path / "lm"), dropout=0.0)})
    metrics, _ = run(spec, Fidelity("step", 12, 6, 6), data_dir)
    assert len(metrics) == 2 and metrics[-1]["val_loss"] < math.log(384)


def test_gradient_accumulation_counts_every_micro_batch(data_dir):
    spec = tiny(batch_size=2, grad_accum_steps=2)
    metrics, states = run(spec, Fidelity("tokens", 24 * 4 * 32, 6 * 4 * 32, 6 * 4 * 32), data_dir)
    assert [m["step"] for m in metrics] == [6, 12, 18, 24]  # 2 x 2 sequences per optimizer step
    assert metrics[-1]["tokens"] == 24 * 4 * 32 and metrics[-1]["val_loss"] < metrics[0]["val_loss"]
    assert float(states[24]["optimizer"]["state"][0]["step"]) == 24  # one optimizer step per 2 micro-batches


@pytest.mark.parametrize("family", ["llama", "gpt2", "mistral", "qwen2"])
def test_models_use_sdpa_attention_and_a_fused_adamw(family):
    from tuner.trial.optim import adamw

    model = build_model(ModelSpec(family=family, hidden_size=32, num_layers=1, num_heads=2), seq_len=32,
                        tokenizer=build_tokenizer(ModelSpec()))
    assert model.config._attn_implementation == "sdpa"
    optimizer = adamw(model, TrainSpec())
    assert all(g["fused"] for g in optimizer.param_groups)  # torch >= 2.4 has the fused kernel on the CPU too


def test_a_compiled_trial_trains_as_the_plain_one_and_their_checkpoints_interchange(data_dir, monkeypatch):
    import torch._dynamo

    import tuner.trial.model

    # Dynamo traces the model as for inductor; the "eager" backend runs the traced graph without inductor's C++
    # code generation (~40 s on this CPU), so the test checks tuner's compiled path, not torch's compiler.
    monkeypatch.setattr(tuner.trial.model, "COMPILE_BACKEND", "eager")
    budget = Fidelity("step", 12, 6, 6)
    plain, _ = run(tiny(), budget, data_dir)
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    compiled, states = run(tiny(compile=True), budget, data_dir)
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] >= 1  # the forward ran compiled
    for a, b in zip(plain, compiled, strict=True):
        assert a["val_loss"] == pytest.approx(b["val_loss"], rel=1e-5)
    resumed, _ = run(tiny(), Fidelity("step", 18, 6, 6), data_dir, restore=states[12])  # a plain trial restores it
    assert [m["step"] for m in resumed] == [18] and math.isfinite(resumed[0]["val_loss"])
