"""The integration tests that need a real `ray start --head` (the Jobs API, a driver killed and resumed, the
scheduler). A package, so that its head stops when they end instead of idling through the rest of the session."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass(frozen=True)
class Head:
    dashboard: str  # http://127.0.0.1:PORT, for the Jobs API
    gcs: str  # 127.0.0.1:PORT, for ray.init / tuner run --address


@pytest.fixture(scope="package")
def ray_head(tmp_path_factory: pytest.TempPathFactory):
    """A real `ray start --head` on 127.0.0.1 (token auth on, as Ray defaults), owned by this fixture: started with
    --block, so stopping its process stops that head and nothing else."""
    import os
    import subprocess
    import sys
    import time
    import urllib.error
    import urllib.request

    venv_bin = str(Path(sys.executable).parent)
    port, dashboard = _free_port(), _free_port()
    env = {**os.environ, "PATH": f"{venv_bin}:{os.environ.get('PATH', '')}", "RAY_AUTH_MODE": "token"}
    env.pop("RAY_ADDRESS", None)
    log = tmp_path_factory.mktemp("ray_head") / "head.log"
    with open(log, "w") as f:
        head = subprocess.Popen(
            [f"{venv_bin}/ray", "start", "--head", "--block", "--node-ip-address", "127.0.0.1", "--port", str(port),
             "--dashboard-host", "127.0.0.1", "--dashboard-port", str(dashboard), "--num-cpus", "2",
             # Its own agent ports: the session's local Ray (ray_local) holds Ray's default ones.
             "--dashboard-agent-listen-port", str(_free_port()), "--dashboard-agent-grpc-port", str(_free_port()),
             "--runtime-env-agent-port", str(_free_port()), "--metrics-export-port", str(_free_port()),
             "--disable-usage-stats"], env=env, stdout=f, stderr=subprocess.STDOUT, start_new_session=True)
    address = f"http://127.0.0.1:{dashboard}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"{address}/api/version", timeout=2)  # noqa: S310 - loopback only
            break
        except urllib.error.HTTPError:  # it answered (401 without a token): it is up
            break
        except OSError:
            if head.poll() is not None:
                raise RuntimeError(f"ray start --head exited: {log.read_text()[-2000:]}") from None
            time.sleep(1)
    else:
        head.terminate()
        raise RuntimeError(f"the head's dashboard never answered: {log.read_text()[-2000:]}")
    yield Head(dashboard=address, gcs=f"127.0.0.1:{port}")
    head.terminate()  # ray start --block stops the head's processes when it is told to stop
    try:
        head.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(head.pid, 9)
    # `ray start` records its cluster for later ray.init() calls to join; ours is gone (`ray stop` would do this).
    current = Path(os.environ.get("RAY_TMPDIR", "/tmp")) / "ray" / "ray_current_cluster"
    if current.is_file() and current.read_text().strip().endswith(f":{port}"):
        current.unlink()
