"""The trial's optimizer: AdamW with decoupled weight decay on matrices only, the learning-rate schedule, and
applying a trial's hyperparameters to a restored optimizer (after a PBT exploit they differ from the checkpoint's)."""

from __future__ import annotations

import math
from typing import Any

import torch

from tuner.spec import TrainSpec


def adamw(model: Any, t: TrainSpec) -> torch.optim.Optimizer:
    """Two parameter groups: weight decay on matrices (and embeddings), none on biases and norms."""
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": t.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=t.lr, betas=(t.beta1, t.beta2), fused=fused_supported(params))


def fused_supported(params: list[torch.Tensor]) -> bool:
    """One fused kernel per step instead of a loop over tensors, where torch has it for every parameter's device
    (CUDA, and the CPU since torch 2.4) and dtype."""
    from torch.optim.optimizer import _get_fused_kernels_supported_devices

    devices = set(_get_fused_kernels_supported_devices())
    return bool(params) and all(p.device.type in devices and p.is_floating_point() for p in params)


def lr_at(t: TrainSpec, position: float, step_size: float, max_t: float) -> float:
    """Linear warmup over ``warmup_steps`` steps, then cosine decay to ``min_lr_ratio * lr`` at ``max_t``.

    ``position`` is the progress before this step in the fidelity's units (tokens or steps); writing the schedule
    in those units keeps it continuous when a PBT exploit changes the batch size.
    """
    warm = t.warmup_steps * step_size
    if position < warm:
        return t.lr * (position + step_size) / warm
    frac = min(1.0, (position - warm) / max(max_t - warm, 1e-12))
    return t.lr * (t.min_lr_ratio + (1 - t.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * frac)))


def set_lr(optimizer: Any, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


def apply_hyperparameters(optimizer: Any, t: TrainSpec) -> None:
    """This trial's hyperparameters win over the ones saved with the optimizer (they differ after a PBT exploit);
    the moments and step counts are kept. The LR is set from the schedule at every step."""
    optimizer = getattr(optimizer, "optimizer", optimizer)  # Accelerate's wrapper holds the torch optimizer
    decay, no_decay = optimizer.param_groups
    decay["weight_decay"], no_decay["weight_decay"] = t.weight_decay, 0.0
    for group in optimizer.param_groups:
        group["betas"] = (t.beta1, t.beta2)
