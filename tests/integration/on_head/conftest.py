"""The integration tests that need a real `ray start --head` (the Jobs API, a driver killed and resumed, the
scheduler). A package, so that its head stops when they end instead of idling through the rest of the session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tuner.service import local_cluster


@pytest.fixture(scope="package")
def ray_head(tmp_path_factory: pytest.TempPathFactory) -> Iterator[local_cluster.Cluster]:
    """A real `ray start --head` on 127.0.0.1 with 2 CPUs and no worker nodes (token auth on, as Ray defaults, and
    its own ports: the session's local Ray holds Ray's default ones), started and stopped as `tuner cluster` does,
    so stopping it stops that head and nothing else. ``.dashboard`` is for the Jobs API, ``.gcs`` for --address."""
    state = tmp_path_factory.mktemp("ray_head")
    cluster = local_cluster.up(0, head_cpus=2, state_dir=state)
    yield cluster
    local_cluster.down(state)
