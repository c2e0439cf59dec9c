"""Helpers for tests that drive a sweep into a state and act there: wait for a condition, freeze a process, read
what a sweep has written.

A test that must catch a moment in a race (kill a driver while one trial is done and another runs, lose a node while
a trial runs on it) does not poll and hope: it freezes the processes whose progress would end that moment
(SIGSTOP), so the state it waits for holds until it acts, and then lets them go (SIGCONT).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import socket
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, Self, TypeVar

from tuner._util.net import free_port  # the loopback ports the servers here bind (tests import it from here)
from tuner.service.local_cluster import alive

VENV_BIN = Path(sys.executable).parent
__all__ = ["Lockstep", "LoopbackProxy", "PlacementGroupWatch", "alive", "cli_env", "freeze", "frozen", "result_rows",
           "rows_by_trial", "saved_trial_states", "stored_rows", "thaw", "train_run_ends", "trial_states", "wait_until"]
T = TypeVar("T")


def cli_env(**extra: str) -> dict[str, str]:
    """The environment for a `tuner`/`ray` subprocess: this venv first on PATH, token auth on (as Ray clusters
    default to), and no RAY_ADDRESS inherited from the caller."""
    env = {**os.environ, "RAY_AUTH_MODE": "token", "PATH": f"{VENV_BIN}:{os.environ.get('PATH', '')}"}
    env.pop("RAY_ADDRESS", None)
    return {**env, **extra}


def wait_until(probe: Callable[[], T | None], what: str, timeout: float = 120.0, every: float = 0.05) -> T:
    """Call ``probe`` until it returns something truthy and return that; fail after ``timeout`` s naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)


def freeze(pids: Iterable[int]) -> list[int]:
    """SIGSTOP each pid that is still there; the ones stopped."""
    stopped = []
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGSTOP)
            stopped.append(pid)
    return stopped


def thaw(pids: Iterable[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)


@contextlib.contextmanager
def frozen(pids: Iterable[int] = ()) -> Iterator[list[int]]:
    """Processes stopped for the block; more can be added to the yielded list. Every one is continued at the end,
    whatever happens, so no test leaves a stopped process behind."""
    held = freeze(pids)
    try:
        yield held
    finally:
        thaw(held)


class _Background:
    """A context manager that runs ``_run`` in a daemon thread until the block ends (``done`` is set)."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.done.set()
        self.thread.join()


class Lockstep(_Background):
    """Keeps ``trials`` running trials within ``lead`` steps of each other: the processes of the trial furthest ahead
    are stopped (SIGSTOP) while it leads the one furthest behind by ``lead`` or more, and let go when that one catches
    up. ``progress()`` gives each trial's step (by any key), ``pids(key)`` its processes. A trial at ``end`` is done and
    never held (its idle actor may be reused for another trial)."""

    def __init__(self, progress: Callable[[], dict[str, int]], pids: Callable[[str], list[int]], *, lead: int,
                 trials: int, end: int):
        super().__init__()
        self.progress, self.pids, self.lead, self.trials, self.end = progress, pids, lead, trials, end
        self.held: list[int] = []
        self.holds = 0

    def _run(self) -> None:
        while not self.done.is_set():
            steps = sorted((step, key) for key, step in self.progress().items())
            behind = steps[0][0] if len(steps) == self.trials else 0
            ahead = steps[-1] if steps else None
            if ahead is not None and ahead[0] < self.end and ahead[0] - behind >= self.lead:
                if not self.held:
                    self.held = freeze(self.pids(ahead[1]))
                    self.holds += bool(self.held)
            elif self.held:
                thaw(self.held)
                self.held = []
            time.sleep(0.05)
        thaw(self.held)


class PlacementGroupWatch(_Background):
    """When each placement group was first seen pending, created and removed (wall-clock times), polled every
    ``every`` s from ``table()``: {id: (state, bundle count)}, by default this process's Ray's own table. A sharded
    trial's Train run holds its workers' resources in one such group."""

    def __init__(self, table: Callable[[], dict[str, tuple[str, int]]] | None = None, every: float = 0.1):
        super().__init__()
        self.table, self.every = table or _local_placement_groups, every
        self.groups: dict[str, dict[str, Any]] = {}

    def runs(self, bundles: int) -> list[dict[str, Any]]:
        """The groups of ``bundles`` bundles seen pending or created (not only removed, as the groups of earlier runs
        are), in the order they were created (never-created ones last)."""
        found = [g for g in list(self.groups.values())
                 if g["bundles"] == bundles and ("PENDING" in g or "CREATED" in g)]
        return sorted(found, key=lambda g: g.get("CREATED", math.inf))

    def _run(self) -> None:
        while not self.done.is_set():
            self._poll(time.time())
            time.sleep(self.every)

    def _poll(self, now: float) -> None:
        try:
            table = self.table()
        except Exception:  # a poll the server did not answer: the next one will
            return
        for pg_id, (state, bundles) in table.items():
            self.groups.setdefault(pg_id, {"id": pg_id, "bundles": bundles}).setdefault(state, now)
        for pg_id, group in self.groups.items():
            if pg_id not in table:  # gone from the table altogether: removed too
                group.setdefault("REMOVED", now)


def _local_placement_groups() -> dict[str, tuple[str, int]]:
    import ray

    return {pg_id: (pg["state"], len(pg["bundles"])) for pg_id, pg in ray.util.placement_group_table().items()}


def train_run_ends(rows: Iterable[dict[str, Any]]) -> dict[str, float]:
    """Each sharded trial's Train run (by its ``train_run`` name) and the timestamp of its last report."""
    ends: dict[str, float] = {}
    for r in rows:
        ends[r["train_run"]] = max(ends.get(r["train_run"], 0.0), r["timestamp"])
    return ends


def result_rows(trial_dir: Path) -> list[dict[str, Any]]:
    """The rows of a trial's result.json (written by the driver as each result arrives)."""
    f = Path(trial_dir) / "result.json"
    if not f.is_file():
        return []
    rows = []
    for line in f.read_text().splitlines():
        with contextlib.suppress(ValueError):  # a line being written
            rows.append(json.loads(line))
    return rows


def rows_by_trial(sweep_dir: Path) -> dict[str, list[dict[str, Any]]]:
    """trial_<id> -> its result rows, for every trial directory of a sweep."""
    return {d.name: result_rows(d) for d in sorted(Path(sweep_dir).glob("trial_*"))}


def saved_trial_states(sweep_dir: Path) -> dict[str, tuple[str, str | None]]:
    """trial id -> (status, latest checkpoint) in the experiment state Ray Tune last saved to the sweep's storage:
    what `tuner resume` restores. Status: PENDING, RUNNING, PAUSED, TERMINATED or ERROR; the checkpoint is the path
    a restored trial continues from (None: it starts over)."""
    states = sorted(Path(sweep_dir).glob("experiment_state-*.json"))
    if not states:
        return {}
    try:
        return trial_states(states[-1].read_text())
    except (OSError, ValueError):  # being replaced
        return {}


def trial_states(experiment_state: str) -> dict[str, tuple[str, str | None]]:
    """``saved_trial_states`` of an experiment_state-*.json's text."""
    from ray.tune.utils.serialization import TuneFunctionDecoder

    out = {}
    for trial_json, runtime_json in json.loads(experiment_state).get("trial_data", []):
        trial = json.loads(trial_json)
        # A result's checkpoint is registered in a second step after the result (Tune asks the trial's actor for
        # it): only the checkpoint manager says which one a restore would use. (Our own sweep: trusted pickles.)
        manager = json.loads(runtime_json, cls=TuneFunctionDecoder, allow_cloudpickle=True)["checkpoint_manager"]
        latest = manager.latest_checkpoint_result
        out[trial["trial_id"]] = (trial["status"], latest.checkpoint.path if latest else None)
    return out


def stored_rows(db: Path, sweep: str) -> dict[str, list[dict[str, Any]]]:
    """trial id -> the result rows the sweep store holds for it, in the order reported. The store commits each
    result as the driver receives it; a trial's result.json is written as Tune syncs it, in bursts."""
    import sqlite3

    if not Path(db).is_file():
        return {}
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)) as c:
        try:
            rows = c.execute("select t.trial_id, r.metrics from results r join trials t on r.trial_pk = t.id "
                             "join sweeps s on t.sweep_id = s.id where s.name = ? "
                             "order by t.id, r.generation, r.training_iteration", (sweep,)).fetchall()
        except sqlite3.OperationalError:  # the tables are not there yet
            return {}
    out: dict[str, list[dict[str, Any]]] = {}
    for trial_id, metrics in rows:
        out.setdefault(trial_id, []).append(json.loads(metrics))
    return out


SWEEP_SPEC = {"search": {"space": {"train.lr": {"loguniform": [1e-4, 1e-2]}, "model.num_layers": {"choice": [1, 2]}}}}


def fill_sweep_store(engine: Any, name: str = "s1", trials: int = 4) -> None:
    """A sweep of ``trials`` trials with three reports each, the first stopped early, the rest completed."""
    from tuner import store

    sweep_id = store.start_sweep(engine, name, spec=SWEEP_SPEC, storage=f"/tmp/{name}", metric="val_loss", mode="min")
    for i in range(trials):
        tid = f"t{i}"
        store.record_trial(engine, sweep_id, tid, config={"train.lr": 1e-3 * (i + 1), "model.num_layers": 1 + i % 2},
                           status="running")
        for it in range(1, 4):
            store.record_result(engine, sweep_id, tid, {"training_iteration": it, "tokens": 100 * it,
                                                        "val_loss": 3.0 - 0.2 * it - 0.1 * i, "time_total_s": it,
                                                        "node_ip": "127.0.0.1"})
        store.record_trial(engine, sweep_id, tid, status="stopped" if i == 0 else "completed")


class DashboardServer:
    """``tuner dashboard``'s app served by uvicorn in a thread, on a free loopback port."""

    def __init__(self, engine: Any, token: str | None = None, jobs_address: str | None = None):
        import uvicorn

        from tuner.service.dashboard import create_app

        self.port = free_port()
        app = create_app(engine, token, jobs_address)
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> DashboardServer:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:  # polls the server's own flag; it starts in well under a second
            assert time.monotonic() < deadline, "the dashboard did not start"
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.should_exit = True
        self.thread.join(10)

    def get(self, path: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], str]:
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.status, dict(r.headers), r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers), e.read().decode()


class ThrowawayPostgres:
    """A PostgreSQL server of Debian's ``postgresql`` package in a temp dir, on a free loopback port, for the tests.
    initdb refuses root, so the server runs as the ``postgres`` user (through ``runuser`` when the tests run as
    root). Each ``database()`` is a fresh, empty database."""

    def __init__(self) -> None:
        import glob
        import shutil
        import tempfile

        bins = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
        assert bins, "PostgreSQL is missing: scripts/system-deps.sh (run by make test) installs Debian's postgresql"
        self.bin = Path(bins[-1]).parent
        self.root = Path(tempfile.mkdtemp(prefix="tuner-pg-"))
        self.data, self.port, self.count = self.root / "data", free_port(), 0
        self.as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self.as_postgres:
            shutil.chown(self.root, "postgres", "postgres")

    def _run(self, *cmd: str) -> None:
        import subprocess

        subprocess.run([*self.as_postgres, *cmd], check=True, capture_output=True, text=True, timeout=120)

    def start(self) -> ThrowawayPostgres:
        self._run(str(self.bin / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")
        options = f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.root} -c fsync=off"
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.root / "log"), "-o", options,
                  "-w", "start")
        return self

    def database(self) -> str:
        """A URL of a new empty database (psycopg 3)."""
        import psycopg

        self.count += 1
        name = f"t{self.count}"
        with psycopg.connect(f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres",
                             autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{name}"

    def stop(self) -> None:
        import shutil

        with contextlib.suppress(Exception):
            self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.root, ignore_errors=True)


class ThrowawayS3:
    """A real S3 API on a free loopback port: moto's server mode (``moto[server]``), in its own process, so it can be
    stopped and started again on the same port (an outage). Any credentials are accepted: the tests set dummy ones
    in the environment, as users set real ones."""

    def __init__(self) -> None:
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.proc: Any = None

    def start(self) -> ThrowawayS3:
        import subprocess

        self.proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(lambda: _answers(self.endpoint), "the S3 server", timeout=60, every=0.1)
        return self

    def bucket(self, name: str) -> str:
        """A new empty bucket's URI."""
        import pyarrow.fs as pafs

        fs = pafs.S3FileSystem(endpoint_override=f"127.0.0.1:{self.port}", scheme="http", allow_bucket_creation=True)
        fs.create_dir(name)
        return f"s3://{name}"

    def filesystem(self) -> Any:
        import pyarrow.fs as pafs

        return pafs.S3FileSystem(endpoint_override=f"127.0.0.1:{self.port}", scheme="http")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=30)


def _answers(url: str) -> bool | None:
    try:
        urllib.request.urlopen(url, timeout=2).close()
        return True
    except urllib.error.HTTPError:
        return True
    except OSError:
        return None


class LoopbackProxy:
    """A TCP forwarder on a free loopback port to ``target_port``: ``stop()`` closes it and every connection through
    it (the endpoint is down: connections are refused), ``start()`` opens it again on the same port."""

    def __init__(self, target_port: int) -> None:
        self.port, self.target = free_port(), target_port
        self.server: socket.socket | None = None
        self.conns: list[socket.socket] = []
        self.lock = threading.Lock()

    def start(self) -> LoopbackProxy:
        server = socket.socket()
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", self.port))
        server.listen(64)
        self.server = server
        threading.Thread(target=self._accept, args=(server,), daemon=True).start()
        return self

    def stop(self) -> None:
        with self.lock:
            server, self.server = self.server, None
            conns, self.conns = self.conns, []
        for s in [server, *conns]:
            if s is not None:
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()

    def _accept(self, server: socket.socket) -> None:
        while True:
            try:
                client, _ = server.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target))
            with self.lock:
                if self.server is not server:
                    client.close()
                    upstream.close()
                    return
                self.conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(a: socket.socket, b: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := a.recv(65536):
                b.sendall(data)
        with contextlib.suppress(OSError):
            b.shutdown(socket.SHUT_WR)
