"""The LLM trial's training loop, without Ray: set up, restore, step, evaluate, report and checkpoint.

``fit`` calls ``report(metrics, checkpoint_dir)`` at every evaluation; ``tuner.trial.entry`` is the Ray Tune
trainable around it. A checkpoint holds the full state (``tuner.trial.checkpoint``), so a restored trial continues
bit for bit; when the restored trial's hyperparameters differ from the checkpoint's (a PBT exploit), the new ones
are applied on top of the restored optimizer state. Under ``torch.distributed`` (a Ray Train worker group) the same
loop runs on every rank: DDP through Accelerate, or FSDP2 ``fully_shard`` with sharded checkpoints.
"""

from __future__ import annotations

import contextlib
import math
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from tuner.spec import TrialSpec
from tuner.spec.fidelity import Fidelity, grad_accum_steps
from tuner.trial.checkpoint import (
    Progress,
    get_rng,
    load_checkpoint,
    load_state,
    meta,
    save_checkpoint,
    seed_all,
    set_rng,
    write_trial_json,
)
from tuner.trial.data import TokenData
from tuner.trial.model import build_model, build_tokenizer, compile_model
from tuner.trial.optim import adamw, apply_hyperparameters, lr_at, set_lr
from tuner.trial.parallel import (
    check_same_spec,
    fully_shard_model,
    is_sharded,
    layout_metrics,
    load_sharded,
    save_sharded,
)

EVAL_BATCH = 16
Report = Callable[[dict[str, Any], Path], None]
Restore = dict[str, Any] | str | Path | None


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; the trial ends with this error and the sweep goes on."""


@dataclass
class _Run:
    """One training run's live state."""

    spec: TrialSpec
    fidelity: Fidelity
    accelerator: Any
    model: Any
    optimizer: Any
    data: TokenData
    progress: Progress
    world: int
    rank: int
    fsdp: bool
    resumed_from: str = ""  # lineage: whose checkpoint this run continues ("" for a fresh start) ...
    resumed_at: int = 0  # ... and at which step

    @property
    def accum(self) -> int:
        return grad_accum_steps(self.spec.train, self.world)

    @property
    def tokens_per_step(self) -> int:
        return self.spec.train.batch_size * self.accum * self.world * self.spec.data.seq_len

    @property
    def position(self) -> int:
        return self.progress.tokens if self.fidelity.time_attr == "tokens" else self.progress.step

    @property
    def step_size(self) -> int:
        return self.tokens_per_step if self.fidelity.time_attr == "tokens" else 1


def fit(spec: TrialSpec, fidelity: Fidelity, data_dir: str | Path, report: Report, restore: Restore = None,
        trial_id: str = "") -> None:
    """Train until the fidelity's ``max_t``, calling ``report`` at every evaluation (on every rank of a sharded
    trial). ``restore`` is a checkpoint directory, or a single-process checkpoint's state (``load_checkpoint``);
    ``trial_id`` labels the checkpoints this run writes, so that a trial restored from another one's checkpoint (a
    PBT exploit) reports where it came from."""
    run = _setup(spec, fidelity, data_dir)
    _restore(run, restore)
    _train(run, report, trial_id)


def _setup(spec: TrialSpec, fidelity: Fidelity, data_dir: str | Path) -> _Run:
    torch.set_num_threads(max(1, int(spec.resources.cpus_per_worker)))
    accelerator = _accelerator(spec.train.mixed_precision)
    world, rank = accelerator.num_processes, accelerator.process_index
    if world > 1:
        check_same_spec(spec)
    data = TokenData(data_dir)
    data.check(spec.data.seq_len)
    seed_all(spec.train.seed)  # the same initial weights on every rank
    model = build_model(spec.model, seq_len=spec.data.seq_len, tokenizer=build_tokenizer(spec.model))
    fsdp = world > 1 and spec.resources.strategy == "fsdp"
    if fsdp:
        model = fully_shard_model(model, accelerator)
    if spec.train.compile:
        model = compile_model(model)
    return _Run(spec, fidelity, accelerator, model, adamw(model, spec.train), data,
                Progress(next_eval=fidelity.eval_interval), world, rank, fsdp)


def _restore(run: _Run, restore: Restore) -> None:
    """Load a checkpoint (if any) into the run, then wrap the model and optimizer for the run's strategy."""
    t = run.spec.train
    state = load_checkpoint(restore) if isinstance(restore, (str, Path)) and not is_sharded(restore) else restore
    if isinstance(state, dict):
        run.progress = load_state(run.model, run.optimizer, state, t)
    if not run.fsdp:
        run.model, run.optimizer = run.accelerator.prepare(run.model, run.optimizer)
    if isinstance(state, (str, Path)):  # sharded: every rank loads its shards into the wrapped model
        state = load_sharded(Path(state), run.model, run.optimizer, run.rank)
        apply_hyperparameters(run.optimizer, t)
        run.progress = Progress(**state["progress"])
    run.resumed_from, run.resumed_at = (state or {}).get("origin", ""), run.progress.step
    if state is not None:
        if run.accelerator.scaler is not None and state.get("scaler"):
            run.accelerator.scaler.load_state_dict(state["scaler"])
        if state.get("rng") is not None:
            set_rng(state["rng"])


def _train(run: _Run, report: Report, trial_id: str) -> None:
    t, f = run.spec.train, run.fidelity
    device = run.accelerator.device
    val = torch.from_numpy(run.data.val_windows(t.eval_tokens, run.spec.data.seq_len)).to(device)
    layout = layout_metrics(run.model, run.world)
    run.model.train()
    loss_sum = torch.zeros((), device=device)  # summed on the device: no host sync between reports
    steps, started, reported = 0, time.perf_counter(), run.position
    while run.position < f.max_t:
        lr = lr_at(t, run.position, run.step_size, f.max_t)
        set_lr(run.optimizer, lr)
        loss_sum += _step(run)
        steps += 1
        at_rung = any(reported < rung <= run.position for rung in f.rungs)  # every trial is judged at the rungs
        if run.position >= run.progress.next_eval or run.position >= f.max_t or at_rung:
            metrics = _evaluate(run, val, loss_sum, steps, time.perf_counter() - started, lr)
            _checkpoint_and_report(run, {**metrics, **layout}, report, trial_id)
            loss_sum.zero_()
            steps, started, reported = 0, time.perf_counter(), run.position


def _step(run: _Run) -> torch.Tensor:
    """One optimizer step over the step's global batch; the step's (detached) loss."""
    t, seq_len, accum = run.spec.train, run.spec.data.seq_len, run.accum
    device, model, accelerator = run.accelerator.device, run.model, run.accelerator
    total = torch.zeros((), device=device)
    for micro in range(accum):
        # Each rank draws its own micro-batches of the step's global batch.
        batch = run.data.batch(t.seed, run.progress.step, micro * run.world + run.rank, t.batch_size, seq_len)
        x = torch.from_numpy(batch)
        # Pinned + non-blocking: the host samples the next batch while the GPU still runs this step.
        x = x.pin_memory().to(device, non_blocking=True) if device.type == "cuda" else x
        sync = micro == accum - 1
        if run.fsdp:
            model.set_requires_gradient_sync(sync)
        with contextlib.nullcontext() if sync or run.fsdp else accelerator.no_sync(model):
            with accelerator.autocast() if run.fsdp else contextlib.nullcontext():
                loss = model(input_ids=x, labels=x).loss
            if accum > 1:
                loss = loss / accum
            accelerator.backward(loss)
        total += loss.detach()
    if t.grad_clip > 0:
        accelerator.clip_grad_norm_(model.parameters(), t.grad_clip)
    run.optimizer.step()
    run.optimizer.zero_grad(set_to_none=True)
    run.progress.step += 1
    run.progress.tokens += run.tokens_per_step
    return total


def _evaluate(run: _Run, val: torch.Tensor, loss_sum: torch.Tensor, steps: int, elapsed: float,
              lr: float) -> dict[str, Any]:
    """The report's metrics: the mean train loss since the last report and the validation loss."""
    if run.world > 1:
        torch.distributed.all_reduce(loss_sum)
        loss_sum /= run.world
    train_loss = (loss_sum / steps).item()  # the one host sync per report: time after it
    val_loss = evaluate(run.model, val, run.accelerator.device,
                        autocast=run.accelerator.autocast if run.fsdp else None)
    p = run.progress
    if not (math.isfinite(train_loss) and math.isfinite(val_loss)):
        raise NonFiniteLossError(f"loss is not finite at step {p.step} (train_loss {train_loss}, val_loss "
                                 f"{val_loss}, lr {lr:.3g}); the trial stops here")
    while p.next_eval <= run.position:
        p.next_eval += run.fidelity.eval_interval
    return {"step": p.step, "tokens": p.tokens, "train_loss": train_loss, "val_loss": val_loss,
            "val_ppl": math.exp(min(val_loss, 50.0)), "lr": lr,
            "tokens_per_s": steps * run.tokens_per_step / max(elapsed, 1e-9), "resumed_at_step": run.resumed_at,
            "resumed_from": run.resumed_from}


def _checkpoint_and_report(run: _Run, metrics: dict[str, Any], report: Report, trial_id: str) -> None:
    with tempfile.TemporaryDirectory(prefix="tuner-ckpt-") as d:
        if run.world > 1:
            m = meta(run.accelerator, run.spec, run.fidelity, run.progress, trial_id)
            save_sharded(Path(d), run.model, run.optimizer, m, get_rng(), run.rank)
            if run.rank == 0:
                write_trial_json(Path(d), m, metrics)
        else:
            save_checkpoint(Path(d), run.accelerator, run.model, run.optimizer, run.spec, run.fidelity,
                            run.progress, metrics, trial_id)
        report(metrics, Path(d))


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
