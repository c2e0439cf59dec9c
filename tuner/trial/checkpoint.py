"""A single-process trial's checkpoint: the full state (model, optimizer, grad scaler, RNG states, progress; the data
position and the LR schedule are pure functions of the progress), so a restored trial continues bit for bit.
Sharded trials write theirs through ``tuner.trial.parallel``; both carry ``trial.json`` (spec, progress, metrics)
for people and tools, and ``export_model`` turns either into a ``save_pretrained`` directory."""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tuner.spec import TrainSpec, TrialSpec
from tuner.spec.fidelity import Fidelity
from tuner.trial.model import build_model, build_tokenizer
from tuner.trial.optim import apply_hyperparameters
from tuner.trial.parallel import is_sharded, load_sharded_model, read_meta, resolve_checkpoint

CHECKPOINT_FORMAT = 1
STATE_FILE = "state.pt"


@dataclass
class Progress:
    step: int = 0
    tokens: int = 0
    next_eval: float = 0.0  # in the fidelity's time_attr units


def meta(accelerator: Any, spec: TrialSpec, fidelity: Fidelity, progress: Progress, trial_id: str) -> dict[str, Any]:
    """What a checkpoint holds besides the weights and the optimizer."""
    return {"format": CHECKPOINT_FORMAT, "progress": asdict(progress), "origin": trial_id, "spec": spec.model_dump(),
            "fidelity": fidelity.as_dict(),
            "scaler": accelerator.scaler.state_dict() if accelerator.scaler is not None else None}


def save_checkpoint(path: Path, accelerator: Any, model: Any, optimizer: Any, spec: TrialSpec, fidelity: Fidelity,
                    progress: Progress, metrics: dict[str, Any], trial_id: str = "") -> None:
    state = {**meta(accelerator, spec, fidelity, progress, trial_id),
             "model": accelerator.unwrap_model(model).state_dict(), "optimizer": optimizer.state_dict(),
             "rng": get_rng()}
    torch.save(state, path / STATE_FILE)
    write_trial_json(path, state, metrics)


def write_trial_json(path: Path, meta: dict[str, Any], metrics: dict[str, Any]) -> None:
    (path / "trial.json").write_text(json.dumps({"spec": meta["spec"], "progress": meta["progress"],
                                                 "metrics": metrics}, indent=1))


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    # Our own file: it holds numpy RNG state, which the weights-only unpickler refuses.
    state = torch.load(Path(path) / STATE_FILE, map_location="cpu", weights_only=False)
    if state.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path}: not a tuner checkpoint of format {CHECKPOINT_FORMAT}")
    return state


def load_state(model: Any, optimizer: Any, state: dict[str, Any], t: TrainSpec) -> Progress:
    """A single-process checkpoint's weights and optimizer into an unwrapped model and optimizer."""
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as e:
        raise RuntimeError(f"the checkpoint's model does not fit this trial's architecture: {e}") from None
    optimizer.load_state_dict(state["optimizer"])
    apply_hyperparameters(optimizer, t)
    return Progress(**state["progress"])


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


# --- random state -----------------------------------------------------------------------------------------------

def seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def get_rng() -> dict[str, Any]:
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def set_rng(rng: dict[str, Any]) -> None:
    random.setstate(rng["python"])
    np.random.set_state(rng["numpy"])
    torch.set_rng_state(rng["torch"])
    if rng.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])
