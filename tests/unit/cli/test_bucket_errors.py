"""Bucket storage that cannot work fails before anything starts, in one line naming the storage URI: a malformed URI
is a spec error (exit 2); no credentials, an unreachable endpoint or a missing bucket exit 1."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from support import cli_env, free_port

OBJECTIVE = "from ray import tune\n\ndef train(config):\n    tune.report({'loss': config['x']})\n"


def tuner(tmp_path: Path, command: str, env: dict[str, str] | None = None, **spec: object):
    (tmp_path / "objective.py").write_text(OBJECTIVE)
    raw = {"name": "b", "trainable": "objective:train",
           "search": {"metric": "loss", "mode": "min", "space": {"x": {"uniform": [0, 1]}}}, **spec}
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(raw))
    return subprocess.run([sys.executable, "-m", "tuner", command, "spec.yaml"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120, env=env or cli_env(TUNER_CACHE=str(tmp_path / "cache")))


@pytest.mark.parametrize(("storage", "says"), [
    ("s3://", "expected s3://<bucket>/<prefix>"),
    ("s3://bucket//prefix", "expected s3://<bucket>/<prefix>"),
    ("ftp://host/dir", "unsupported scheme 'ftp'"),
])
def test_a_malformed_storage_uri_is_a_spec_error(tmp_path, storage, says):
    done = tuner(tmp_path, "validate", storage=storage)
    assert done.returncode == 2, done.stderr
    assert "storage:" in done.stderr and says in done.stderr
    assert "Traceback" not in done.stderr


def test_an_endpoint_for_local_storage_is_a_spec_error(tmp_path):
    done = tuner(tmp_path, "validate", storage=str(tmp_path / "sweeps"), storage_endpoint="http://127.0.0.1:9000")
    assert done.returncode == 2 and "storage_endpoint:" in done.stderr


def one_line_error(done: subprocess.CompletedProcess, uri: str, says: str) -> None:
    assert done.returncode == 1, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()  # the run's announcement ("running ..."), then the error
    assert [line for line in lines if not line.startswith("running ")] == [lines[-1]], done.stderr
    assert lines[-1].startswith("storage: ") and uri in lines[-1] and says in lines[-1], lines[-1]


def test_an_unreachable_endpoint_fails_before_anything_starts(tmp_path):
    endpoint = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    done = tuner(tmp_path, "run", storage="s3://bucket/sweeps", storage_endpoint=endpoint)
    one_line_error(done, "s3://bucket/sweeps/b", "cannot reach the storage endpoint")
    assert not (tmp_path / "cache").exists()  # no store, no mirror: nothing was started


def test_a_missing_bucket_fails_before_anything_starts(tmp_path, s3):
    done = tuner(tmp_path, "run", storage="s3://no-such-bucket/sweeps", storage_endpoint=s3.endpoint)
    one_line_error(done, "s3://no-such-bucket/sweeps/b", "bucket 'no-such-bucket' does not exist")
    assert not (tmp_path / "cache").exists()


def test_missing_credentials_fail_before_anything_starts(tmp_path, s3):
    env = {k: v for k, v in cli_env(TUNER_CACHE=str(tmp_path / "cache")).items() if not k.startswith("AWS_")}
    env.update(HOME=str(tmp_path), AWS_EC2_METADATA_DISABLED="true")  # no profile files, no instance role
    done = tuner(tmp_path, "run", env=env, storage=s3.bucket("creds") + "/sweeps", storage_endpoint=s3.endpoint)
    one_line_error(done, "s3://creds/sweeps/b", "no AWS credentials")
    assert "testing" not in done.stderr and os.environ["AWS_SECRET_ACCESS_KEY"] not in done.stderr
