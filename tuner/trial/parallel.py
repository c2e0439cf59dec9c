"""What the LLM trial needs under ``torch.distributed`` (a Ray Train worker group): FSDP2 sharding, sharded
checkpoints, and the checks that the sharding engaged and that every rank trains the same trial.

Accelerate ignores its FSDP plugin on CPU, so FSDP here is torch's own ``fully_shard`` (FSDP2), which shards on CPU
(gloo) and GPU (NCCL) alike; DDP stays Accelerate's. A sharded checkpoint is a ``torch.distributed.checkpoint``
directory (each rank writes its own shards; Ray Train gathers every rank's files into one checkpoint) plus
``meta.pt`` (progress, spec, budget) from rank 0 and each rank's RNG states.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path
from typing import Any

import torch

SHARDS = "shards"
META = "meta.pt"
POINTER = "pointer.json"


def check_same_spec(spec: Any) -> None:
    """Every rank must train the same trial (HF transformers #34641 applied hyperparameters on rank 0 only)."""
    import torch.distributed as dist

    digest = hashlib.sha256(spec.model_dump_json().encode()).hexdigest()
    digests: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(digests, digest)
    if len(set(digests)) != 1:
        raise RuntimeError(f"the ranks of this trial received different configs: {digests}")


def fully_shard_model(model: Any, accelerator: Any) -> Any:
    """FSDP2: shard each transformer block, then the rest (embeddings, norm, head) at the root."""
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    device = accelerator.device
    model.to(device)
    mesh = init_device_mesh(device.type, (dist.get_world_size(),))
    blocks = set(getattr(model, "_no_split_modules", None) or ())
    for module in model.modules():
        if type(module).__name__ in blocks:
            fully_shard(module, mesh=mesh)
    fully_shard(model, mesh=mesh)
    return model


def layout_metrics(model: Any, world_size: int) -> dict[str, Any]:
    """How the trial's parameters lie on this rank: proof that the strategy engaged, reported with every result."""
    from torch.distributed.tensor import DTensor
    from torch.nn.parallel import DistributedDataParallel

    params = list(model.parameters())
    total = sum(p.numel() for p in params)
    local = sum(p.to_local().numel() if isinstance(p, DTensor) else p.numel() for p in params)
    if isinstance(model, DistributedDataParallel):
        wrapper = "DistributedDataParallel"
    elif any(isinstance(p, DTensor) for p in params):
        wrapper = "FSDP2"
    else:
        wrapper = "none"
    return {"world_size": world_size, "wrapper": wrapper, "param_numel": total, "local_param_numel": local}


def _optimizer(optimizer: Any) -> Any:
    return getattr(optimizer, "optimizer", optimizer)  # Accelerate's wrapper holds the torch optimizer


def save_sharded(path: Path, model: Any, optimizer: Any, meta: dict[str, Any], rng: dict[str, Any],
                 rank: int) -> None:
    """Every rank calls this with its own (local) ``path``; Ray Train merges the ranks' files into one checkpoint."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict

    model_sd, optim_sd = get_state_dict(model, _optimizer(optimizer))
    dcp.save({"model": model_sd, "optim": optim_sd}, checkpoint_id=str(path / SHARDS))
    torch.save(rng, path / f"rng_rank{rank}.pt")
    if rank == 0:
        torch.save(meta, path / META)


def is_sharded(path: str | Path) -> bool:
    return (Path(path) / META).is_file()


def read_meta(path: str | Path) -> dict[str, Any]:
    return torch.load(Path(path) / META, map_location="cpu", weights_only=False)


def load_sharded(path: Path, model: Any, optimizer: Any, rank: int) -> dict[str, Any]:
    """Load a sharded checkpoint into this rank's (already wrapped) model and optimizer; any world size works, as
    torch.distributed.checkpoint reshards. Returns the checkpoint's meta with this rank's RNG states."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

    optim = _optimizer(optimizer)
    model_sd, optim_sd = get_state_dict(model, optim)
    state: dict[str, Any] = {"model": model_sd, "optim": optim_sd}
    dcp.load(state, checkpoint_id=str(path / SHARDS))
    set_state_dict(model, optim, model_state_dict=state["model"], optim_state_dict=state["optim"])
    meta = read_meta(path)
    rng = path / f"rng_rank{rank}.pt"
    meta["rng"] = torch.load(rng, weights_only=False) if rng.is_file() else None
    return meta


def load_sharded_model(path: Path, model: Any) -> None:
    """The full weights of a sharded checkpoint into a plain (unsharded) model, in one process."""
    import torch.distributed.checkpoint as dcp

    state = {"model": model.state_dict()}
    with warnings.catch_warnings():  # "assuming the intent is to load in a single process": it is
        warnings.simplefilter("ignore", UserWarning)
        dcp.load(state, checkpoint_id=str(Path(path) / SHARDS))
    model.load_state_dict(state["model"])


def write_pointer(directory: Path, target: str, **extra: Any) -> Path:
    """A Tune checkpoint of a sharded trial: Ray Train owns the weights, Tune keeps where they are."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / POINTER).write_text(json.dumps({"checkpoint": target, **extra}))
    return directory


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint directory, following a sharded trial's pointer to the Ray Train checkpoint it names."""
    p = Path(path)
    if (p / POINTER).is_file():
        return Path(json.loads((p / POINTER).read_text())["checkpoint"])
    return p
