"""Shared fixtures: a small real corpus, tiny specs, and one local Ray for every integration test."""

from __future__ import annotations

import copy
import gc
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest

from tuner.trial.data import stdlib_files

# Ray Train's controller polls its workers every 2 s, and each step of a run's start-up and end waits for a poll:
# a tenth of that saves ~5 s per Train run. Set before any Ray starts here, so every node inherits it.
os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.2")
# Token auth, as Ray clusters default to. A process reads RAY_AUTH_MODE once, at its first Ray call (importing some
# test modules makes one), so a test cannot switch it on later: the Jobs SDK would then send no token.
os.environ.setdefault("RAY_AUTH_MODE", "token")
# Bucket storage: credentials come from the environment, so dummy ones are set before any Ray starts (its workers
# inherit them; the loopback S3 server accepts any). Never ask an instance-metadata service: no traffic off loopback.
os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ.setdefault("AWS_REGION", "us-east-1")
os.environ["AWS_EC2_METADATA_DISABLED"] = "true"
# Tracking tests: W&B offline, its runs in one session directory (Ray's W&B actors inherit this environment).
os.environ["WANDB_MODE"] = "offline"
os.environ["WANDB_SILENT"] = "true"
WANDB_DIR = os.environ.setdefault("WANDB_DIR", tempfile.mkdtemp(prefix="tuner-wandb-"))


def pytest_collection_finish(session: pytest.Session) -> None:
    # Every module the tests import (Ray, torch, transformers: ~900k objects) stays for the session: the garbage
    # collector's full collections, and the last one at exit, need not walk them (they took ~5% of the unit tier).
    gc.freeze()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if Path(WANDB_DIR).name.startswith("tuner-wandb-"):  # ours, made above
        shutil.rmtree(WANDB_DIR, ignore_errors=True)

TINY: dict[str, Any] = {
    "model": {"family": "llama", "hidden_size": 32, "num_layers": 1, "num_heads": 2},
    "data": {"seq_len": 32},
    "train": {"max_steps": 20, "eval_every": 5, "batch_size": 4, "warmup_steps": 2, "lr": 3.0e-3,
              "eval_tokens": 1024},
    "search": {"algorithm": "random", "scheduler": "fifo", "num_trials": 2, "max_concurrent": 2, "seed": 0,
               "space": {"train.lr": {"loguniform": [1.0e-3, 1.0e-2]}}},
    "resources": {"cpus_per_worker": 1},
}


def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) and k != "space" else v
    return out


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """~400 KB of real text (standard-library sources) in one .txt file: small enough to tokenize in a blink."""
    path = tmp_path_factory.mktemp("corpus") / "corpus.txt"
    parts, size = [], 0
    for f in stdlib_files():
        if f.parent.name in ("json", "email") and size < 400_000:
            text = f.read_text(encoding="utf-8", errors="replace")
            parts.append(text)
            size += len(text)
    path.write_text("\n".join(parts))
    return path


@pytest.fixture(scope="session")
def storage(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One storage root for the session, so the prepared corpus is cached across sweeps."""
    return tmp_path_factory.mktemp("sweeps")


@pytest.fixture
def tiny_raw(corpus: Path, storage: Path, request: pytest.FixtureRequest):
    """Build a tiny, valid raw spec (dict); keyword sections are deep-merged (search.space is replaced)."""

    def make(**over: Any) -> dict[str, Any]:
        name = re.sub(r"[^A-Za-z0-9._-]+", "-", request.node.name).strip("-")[:100]
        raw = merge({"name": name, "storage": str(storage), **TINY}, {"data": {"source": str(corpus)}})
        return merge(raw, over)

    return make


@pytest.fixture
def shipped_job(tmp_path: Path, corpus: Path, tiny_raw: Any):
    """Make what a user ships to a cluster: a directory with a tiny spec (named ``name``) and its data, read
    relative to the spec where the job runs; results go to an absolute storage path. Returns the spec's path."""

    def make(name: str) -> Path:
        import yaml

        d = tmp_path / "job"
        d.mkdir()
        (d / "corpus.txt").write_text(Path(corpus).read_text()[:200_000])
        spec = tiny_raw(name=name, storage=str(tmp_path / "sweeps"), train={"max_steps": 10})
        spec["data"]["source"] = "corpus.txt"
        (d / "spec.yaml").write_text(yaml.safe_dump(spec))
        return d / "spec.yaml"

    return make


@pytest.fixture(scope="session")
def ray_local():
    import ray

    from tuner.sweep.tuner import start_embedded_ray

    # With the dashboard: Ray Train frees a stopped run's placement group through the state API it serves.
    start_embedded_ray(dashboard=True, num_cpus=2)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def postgres():
    """One throwaway PostgreSQL server for the session, started when a test first asks for it."""
    from support import ThrowawayPostgres

    server = ThrowawayPostgres().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def s3():
    """One loopback S3 server (moto) for the session, started when a test first asks for it."""
    from support import ThrowawayS3

    server = ThrowawayS3().start()
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A URL of an empty sweep store: SQLite in a temp dir, and a fresh database on the throwaway PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'tuner.db'}"
    return request.getfixturevalue("postgres").database()
