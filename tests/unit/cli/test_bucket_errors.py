"""Bucket storage that cannot work fails before anything starts, in one line naming the storage URI: a malformed URI
is a spec error (exit 2); no credentials, an unreachable endpoint or a missing bucket exit 1."""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

import pytest
import yaml
from support import free_port

OBJECTIVE = "from ray import tune\n\ndef train(config):\n    tune.report({'loss': config['x']})\n"


class Done(NamedTuple):
    returncode: int
    stdout: str
    stderr: str


def tuner(tmp_path: Path, command: str, env: dict[str, str | None] | None = None, **spec: object) -> Done:
    """`tuner COMMAND spec.yaml` in this process (the errors come before anything starts Ray)."""
    from typer.testing import CliRunner

    from tuner.cli import app

    (tmp_path / "objective.py").write_text(OBJECTIVE)
    raw = {"name": "b", "trainable": "objective:train",
           "search": {"metric": "loss", "mode": "min", "space": {"x": {"uniform": [0, 1]}}}, **spec}
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(raw))
    done = CliRunner().invoke(app, [command, str(tmp_path / "spec.yaml")],
                              env={"TUNER_CACHE": str(tmp_path / "cache"), "RAY_ADDRESS": "", **(env or {})})
    return Done(done.exit_code, done.stdout, done.stderr)


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


def one_line_error(done: Done, uri: str, says: str) -> None:
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
    env: dict[str, str | None] = {k: None for k in os.environ if k.startswith("AWS_")}
    env.update(HOME=str(tmp_path), AWS_EC2_METADATA_DISABLED="true")  # no profile files, no instance role
    done = tuner(tmp_path, "run", env=env, storage=s3.bucket("creds") + "/sweeps", storage_endpoint=s3.endpoint)
    one_line_error(done, "s3://creds/sweeps/b", "no AWS credentials")
    assert "testing" not in done.stderr and os.environ["AWS_SECRET_ACCESS_KEY"] not in done.stderr
