"""`tuner cluster rehearse`'s local autoscaling config, from the shipped cloud configs (no Ray), and its CLI errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tuner.service.rehearsal import HEAD_TYPE, PROVIDER, local_config

REPO = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize("name", ["aws-gpu.yaml", "gcp-gpu.yaml"])
def test_the_rehearsal_keeps_the_clouds_node_types_and_scaling(name):
    cloud = yaml.safe_load((REPO / "cluster" / name).read_text())
    local = local_config(cloud, gcs_address="127.0.0.1:1234", idle_timeout_minutes=0.1)
    head = cloud["available_node_types"][cloud["head_node_type"]]
    assert local["available_node_types"][HEAD_TYPE]["resources"] == head["resources"]
    workers = {k: v for k, v in local["available_node_types"].items() if k != HEAD_TYPE}
    assert workers.keys() == cloud["available_node_types"].keys() - {cloud["head_node_type"]}
    for type_name, t in workers.items():
        original = cloud["available_node_types"][type_name]
        assert t["resources"] == original["resources"]  # GPUs as logical GPUs
        assert (t["min_workers"], t["max_workers"]) == (original.get("min_workers", 0), original["max_workers"])
    assert local["max_workers"] == cloud["max_workers"] and local["upscaling_speed"] == cloud["upscaling_speed"]
    assert local["idle_timeout_minutes"] == 0.1
    assert local_config(cloud, gcs_address="x")["idle_timeout_minutes"] == cloud["idle_timeout_minutes"]
    assert local["provider"]["module"] == PROVIDER and local["provider"]["gcs_address"] == "127.0.0.1:1234"


def test_bad_configs_are_one_line_errors(tmp_path):
    def tuner(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "tuner", "cluster", *args], capture_output=True, text=True,
                              timeout=120)

    (tmp_path / "no_types.yaml").write_text("max_workers: 2\n")
    r = tuner("publish", str(tmp_path / "no_types.yaml"))
    assert r.returncode == 2 and "available_node_types" in r.stderr and "Traceback" not in r.stderr
    r = tuner("rehearse", str(tmp_path / "missing.yaml"), "--state-dir", str(tmp_path / "state"))
    assert r.returncode == 2 and "cannot read" in r.stderr and "Traceback" not in r.stderr
    r = tuner("rehearse", str(tmp_path / "no_types.yaml"), "--state-dir", str(tmp_path / "state"))
    assert r.returncode == 2 and "head_node_type" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "state").exists()  # nothing started
    r = tuner("reclaim", "--state-dir", str(tmp_path / "state"))
    assert r.returncode == 1 and "tuner cluster" in r.stderr and "Traceback" not in r.stderr
