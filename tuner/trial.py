"""The LLM trial: setup, train, evaluate, checkpoint and restore, in one explicit loop.

``fit`` knows nothing of Ray: it calls ``report(metrics, checkpoint_dir)`` at every evaluation. ``train_llm`` is
the Ray Tune function trainable around it. A checkpoint holds the full state (model, optimizer, grad scaler, RNG
states, progress; the data position and the LR schedule are pure functions of the progress), so a restored trial
continues bit for bit. When the restored trial's hyperparameters differ from the checkpoint's (a PBT exploit), the
new ones are applied on top of the restored optimizer state.
"""

from __future__ import annotations

import contextlib
import json
import math
import random
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tuner.budget import Budget, grad_accum_steps
from tuner.data import TokenData
from tuner.distributed import (
    check_same_spec,
    fully_shard_model,
    is_sharded,
    layout_metrics,
    load_sharded,
    load_sharded_model,
    read_meta,
    resolve_checkpoint,
    save_sharded,
)
from tuner.model import build_model, build_tokenizer
from tuner.space import python_value
from tuner.spec import TrainSpec, TrialSpec

CHECKPOINT_FORMAT = 1
EVAL_BATCH = 16
Report = Callable[[dict[str, Any], Path], None]


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; the trial ends with this error and the sweep goes on."""


@dataclass
class Progress:
    step: int = 0
    tokens: int = 0
    next_eval: float = 0.0  # in budget.time_attr units


def lr_at(t: TrainSpec, position: float, step_size: float, max_t: float) -> float:
    """Linear warmup over ``warmup_steps`` steps, then cosine decay to ``min_lr_ratio * lr`` at ``max_t``.

    ``position`` is the progress before this step in the budget's units (tokens or steps); writing the schedule in
    those units keeps it continuous when a PBT exploit changes the batch size.
    """
    warm = t.warmup_steps * step_size
    if position < warm:
        return t.lr * (position + step_size) / warm
    frac = min(1.0, (position - warm) / max(max_t - warm, 1e-12))
    return t.lr * (t.min_lr_ratio + (1 - t.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * frac)))


def fit(spec: TrialSpec, budget: Budget, data_dir: str | Path, report: Report,
        restore: dict[str, Any] | str | Path | None = None, trial_id: str = "") -> None:
    """Train until the budget is spent, calling ``report`` at every evaluation (on every rank of a sharded trial).

    ``restore`` is a checkpoint directory, or a single-process checkpoint's state (``load_checkpoint``);
    ``trial_id`` labels the checkpoints this run writes, so that a trial restored from another one's checkpoint (a
    PBT exploit) reports where it came from. Under ``torch.distributed`` (a Ray Train worker group) the same loop
    runs on every rank: DDP through Accelerate, or FSDP2 ``fully_shard`` with sharded checkpoints.
    """
    t, seq_len = spec.train, spec.data.seq_len
    torch.set_num_threads(max(1, int(spec.resources.cpus_per_worker)))
    accelerator = _accelerator(t.mixed_precision)
    world, rank = accelerator.num_processes, accelerator.process_index
    if world > 1:
        check_same_spec(spec)
    data = TokenData(data_dir)
    data.check(seq_len)
    tokenizer = build_tokenizer(spec.model)

    _seed_all(t.seed)  # the same initial weights on every rank
    model = build_model(spec.model, seq_len=seq_len, tokenizer=tokenizer)
    fsdp = world > 1 and spec.resources.strategy == "fsdp"
    if fsdp:
        model = fully_shard_model(model, accelerator)
    optimizer = _adamw(model, t)
    progress = Progress(next_eval=budget.eval_interval)
    state = load_checkpoint(restore) if isinstance(restore, (str, Path)) and not is_sharded(restore) else restore
    if isinstance(state, dict):
        progress = _load_state(model, optimizer, state, t)
    if not fsdp:
        model, optimizer = accelerator.prepare(model, optimizer)
    if isinstance(state, (str, Path)):
        state = load_sharded(Path(state), model, optimizer, rank)
        _apply_hyperparameters(getattr(optimizer, "optimizer", optimizer), t)
        progress = Progress(**state["progress"])
    # Lineage: which trial's checkpoint this run continues, at which step ("" and 0 for a fresh start).
    resumed_from, resumed_at = (state or {}).get("origin", ""), progress.step
    if state is not None:
        if accelerator.scaler is not None and state.get("scaler"):
            accelerator.scaler.load_state_dict(state["scaler"])
        if state.get("rng") is not None:
            _set_rng(state["rng"])

    device = accelerator.device
    val = torch.from_numpy(data.val_windows(t.eval_tokens, seq_len)).to(device)
    cuda = device.type == "cuda"
    accum = grad_accum_steps(t, world)
    tokens_per_step = t.batch_size * accum * world * seq_len
    by_tokens = budget.time_attr == "tokens"
    step_size = tokens_per_step if by_tokens else 1
    layout = layout_metrics(model, world)

    def position() -> int:
        return progress.tokens if by_tokens else progress.step

    model.train()
    loss_sum = torch.zeros((), device=device)
    steps, started = 0, time.perf_counter()
    while position() < budget.max_t:
        lr = lr_at(t, position(), step_size, budget.max_t)
        for group in optimizer.param_groups:
            group["lr"] = lr
        for micro in range(accum):
            # Each rank draws its own micro-batches of the step's global batch.
            x = torch.from_numpy(data.batch(t.seed, progress.step, micro * world + rank, t.batch_size, seq_len))
            # Pinned + non-blocking: the host samples the next batch while the GPU still runs this step.
            x = x.pin_memory().to(device, non_blocking=True) if cuda else x
            sync = micro == accum - 1
            if fsdp:
                model.set_requires_gradient_sync(sync)
            with contextlib.nullcontext() if sync or fsdp else accelerator.no_sync(model):
                with accelerator.autocast() if fsdp else contextlib.nullcontext():
                    loss = model(input_ids=x, labels=x).loss
                if accum > 1:
                    loss = loss / accum
                accelerator.backward(loss)
            loss_sum += loss.detach()
        if t.grad_clip > 0:
            accelerator.clip_grad_norm_(model.parameters(), t.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        progress.step += 1
        progress.tokens += tokens_per_step
        steps += 1

        if position() >= progress.next_eval or position() >= budget.max_t:
            if world > 1:
                torch.distributed.all_reduce(loss_sum)
                loss_sum /= world
            train_loss = (loss_sum / steps).item()  # the one host sync per report: time after it
            elapsed = time.perf_counter() - started
            val_loss = evaluate(model, val, device, autocast=accelerator.autocast if fsdp else None)
            if not (math.isfinite(train_loss) and math.isfinite(val_loss)):
                raise NonFiniteLossError(f"loss is not finite at step {progress.step} (train_loss {train_loss}, "
                                         f"val_loss {val_loss}, lr {lr:.3g}); the trial stops here")
            while progress.next_eval <= position():
                progress.next_eval += budget.eval_interval
            metrics = {"step": progress.step, "tokens": progress.tokens, "train_loss": train_loss,
                       "val_loss": val_loss, "val_ppl": math.exp(min(val_loss, 50.0)), "lr": lr,
                       "tokens_per_s": steps * tokens_per_step / max(elapsed, 1e-9), "resumed_at_step": resumed_at,
                       "resumed_from": resumed_from, **layout}
            with tempfile.TemporaryDirectory(prefix="tuner-ckpt-") as d:
                if world > 1:
                    meta = _meta(accelerator, spec, budget, progress, trial_id)
                    save_sharded(Path(d), model, optimizer, meta, _get_rng(), rank)
                    if rank == 0:
                        _write_trial_json(Path(d), meta, metrics)
                else:
                    save_checkpoint(Path(d), accelerator, model, optimizer, spec, budget, progress, metrics,
                                    trial_id)
                report(metrics, Path(d))
            loss_sum.zero_()
            steps, started = 0, time.perf_counter()


@torch.no_grad()
def evaluate(model: Any, windows: torch.Tensor, device: torch.device, autocast: Any = None) -> float:
    """Mean loss over fixed windows (every rank of a sharded trial evaluates all of them, in step)."""
    model.eval()
    total = torch.zeros((), device=device)
    for i in range(0, len(windows), EVAL_BATCH):
        x = windows[i:i + EVAL_BATCH]
        with autocast() if autocast is not None else contextlib.nullcontext():
            total += model(input_ids=x, labels=x).loss.float() * len(x)
    model.train()
    return (total / len(windows)).item()


# --- checkpoints ------------------------------------------------------------------------------------------------

def _meta(accelerator: Any, spec: TrialSpec, budget: Budget, progress: Progress, trial_id: str) -> dict[str, Any]:
    """What a checkpoint holds besides the weights and the optimizer."""
    return {"format": CHECKPOINT_FORMAT, "progress": asdict(progress), "origin": trial_id, "spec": spec.model_dump(),
            "budget": budget.as_dict(),
            "scaler": accelerator.scaler.state_dict() if accelerator.scaler is not None else None}


def save_checkpoint(path: Path, accelerator: Any, model: Any, optimizer: Any, spec: TrialSpec, budget: Budget,
                    progress: Progress, metrics: dict[str, Any], trial_id: str = "") -> None:
    state = {**_meta(accelerator, spec, budget, progress, trial_id),
             "model": accelerator.unwrap_model(model).state_dict(), "optimizer": optimizer.state_dict(),
             "rng": _get_rng()}
    torch.save(state, path / "state.pt")
    _write_trial_json(path, state, metrics)


def _write_trial_json(path: Path, meta: dict[str, Any], metrics: dict[str, Any]) -> None:
    (path / "trial.json").write_text(json.dumps({"spec": meta["spec"], "progress": meta["progress"],
                                                 "metrics": metrics}, indent=1))


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    # Our own file: it holds numpy RNG state, which the weights-only unpickler refuses.
    state = torch.load(Path(path) / "state.pt", map_location="cpu", weights_only=False)
    if state.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path}: not a tuner checkpoint of format {CHECKPOINT_FORMAT}")
    return state


def _load_state(model: Any, optimizer: Any, state: dict[str, Any], t: TrainSpec) -> Progress:
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as e:
        raise RuntimeError(f"the checkpoint's model does not fit this trial's architecture: {e}") from None
    optimizer.load_state_dict(state["optimizer"])
    _apply_hyperparameters(optimizer, t)
    return Progress(**state["progress"])


def _apply_hyperparameters(optimizer: Any, t: TrainSpec) -> None:
    """This trial's hyperparameters win over the ones saved with the optimizer (they differ after a PBT exploit);
    the moments and step counts are kept. The LR is set from the schedule at every step."""
    decay, no_decay = optimizer.param_groups
    decay["weight_decay"], no_decay["weight_decay"] = t.weight_decay, 0.0
    for group in optimizer.param_groups:
        group["betas"] = (t.beta1, t.beta2)


def export_model(checkpoint_dir: str | Path, out_dir: str | Path) -> Path:
    """Write a checkpoint's model and tokenizer with ``save_pretrained`` (loadable by AutoModelForCausalLM)."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    checkpoint_dir = resolve_checkpoint(checkpoint_dir)
    sharded = is_sharded(checkpoint_dir)
    state = read_meta(checkpoint_dir) if sharded else load_checkpoint(checkpoint_dir)
    spec = TrialSpec.model_validate(state["spec"])
    tokenizer = build_tokenizer(spec.model)
    model = build_model(spec.model, seq_len=spec.data.seq_len, tokenizer=tokenizer)
    if sharded:
        load_sharded_model(checkpoint_dir, model)
    else:
        model.load_state_dict(state["model"])
    out = Path(out_dir)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


# --- setup helpers ----------------------------------------------------------------------------------------------

def _accelerator(mixed_precision: str) -> Any:
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    # Accelerate keeps process-wide state; a reused Tune actor runs several trials, each with its own settings.
    AcceleratorState._reset_state(reset_partial_state=True)
    cuda = torch.cuda.is_available()
    if mixed_precision == "auto":
        mixed_precision = "bf16" if cuda and torch.cuda.is_bf16_supported() else "no"
    if mixed_precision == "fp16" and not cuda:
        raise ValueError("train.mixed_precision fp16 needs a GPU; use no or bf16")
    return Accelerator(cpu=not cuda, mixed_precision=mixed_precision)


def _adamw(model: Any, t: TrainSpec) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": t.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=t.lr, betas=(t.beta1, t.beta2))


def _seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _get_rng() -> dict[str, Any]:
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def _set_rng(rng: dict[str, Any]) -> None:
    random.setstate(rng["python"])
    np.random.set_state(rng["numpy"])
    torch.set_rng_state(rng["torch"])
    if rng.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])


# --- Ray Tune -------------------------------------------------------------------------------------------------

def train_llm(config: dict[str, Any]) -> None:
    """The Ray Tune function trainable. ``config`` is the resolved spec (model, data, train, resources) plus
    ``run`` (the prepared data and the budget), as the sweep builds it."""
    from ray import tune

    config = python_value(config)
    spec = TrialSpec.model_validate({k: config[k] for k in TrialSpec.model_fields})
    budget = Budget(**config["run"]["budget"])
    if spec.resources.workers_per_trial > 1:
        from tuner.sharded import train_sharded

        return train_sharded(config, spec, budget)

    import ray

    node = {"node_id": ray.get_runtime_context().get_node_id()}  # on a cluster: which node the trial ran on

    def report(metrics: dict[str, Any], checkpoint_dir: Path) -> None:
        tune.report({**metrics, **node}, checkpoint=tune.Checkpoint.from_directory(checkpoint_dir))

    restore = None
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as d:
            restore = load_checkpoint(d)
    fit(spec, budget, config["run"]["data_dir"], report, restore=restore, trial_id=tune.get_context().get_trial_id())
