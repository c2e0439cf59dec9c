"""Sweeps on a Ray cluster through the Ray Jobs API: submit a spec, then list, follow and stop its jobs.

``submit`` validates the spec here first (a bad spec never reaches the cluster), ships the spec's directory as the
job's working dir and runs ``python -m tuner run SPEC --set ...`` there, so relative paths in the spec resolve on
the cluster as they do here. Ray's token auth is honoured as the Jobs SDK does it (``RAY_AUTH_MODE=token``, the
token in ``~/.ray/auth_token`` or ``RAY_AUTH_TOKEN``). Connection and auth failures are one-line ``RemoteError``s.
"""

from __future__ import annotations

import asyncio
import os
import shlex
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tuner.spec import load

DEFAULT_ADDRESS = "http://127.0.0.1:8265"
AGENT_WAIT_S = 60.0
SWEEP_KEY = "tuner_sweep"  # job metadata: which jobs are tuner sweeps
# Never shipped with the working dir: results, environments, caches.
EXCLUDES = ["sweeps/", ".venv/", ".git/", "__pycache__/", "*.pt", "*.distcp", ".cache/"]


class RemoteError(RuntimeError):
    """A cluster that cannot be reached or refuses us: one line for the user, exit code 1."""


class JobExists(RemoteError):
    """The cluster already holds a job under the submission id asked for (it was submitted before)."""


def address_of(address: str | None) -> str:
    return address or os.environ.get("RAY_ADDRESS") or DEFAULT_ADDRESS


def client(address: str | None) -> Any:
    from ray.dashboard.modules.dashboard_sdk import AuthenticationError
    from ray.job_submission import JobSubmissionClient

    addr = address_of(address)
    if not addr.startswith(("http://", "https://")):
        raise RemoteError(f"--address {addr}: give the head's dashboard address, e.g. http://HEAD:8265")
    try:
        return _checked(JobSubmissionClient(addr), addr)
    except AuthenticationError as e:
        raise RemoteError(_auth_message(addr, str(e))) from None
    except (ConnectionError, OSError) as e:
        raise RemoteError(f"cannot reach a Ray cluster at {addr} ({_first_line(e)}): is its head up and its "
                          f"dashboard on that address?") from None


def _checked(c: Any, addr: str) -> Any:
    """The client's version check does not need a token; listing jobs does: find a missing token now."""
    from ray.dashboard.modules.dashboard_sdk import AuthenticationError

    try:
        c.list_jobs()
    except AuthenticationError as e:
        raise RemoteError(_auth_message(addr, str(e))) from None
    return c


def _auth_message(addr: str, text: str) -> str:
    if "required" in text.lower() or "401" in text:
        return (f"the Ray cluster at {addr} requires a token and none was sent: set RAY_AUTH_MODE=token and put the "
                f"cluster's token in ~/.ray/auth_token or RAY_AUTH_TOKEN")
    return (f"the Ray cluster at {addr} refused the token (RAY_AUTH_TOKEN or ~/.ray/auth_token): it is not this "
            f"cluster's")


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0][:200]


def entrypoint(spec_file: str, overrides: list[str], python: str = "python", store: str | None = None) -> str:
    args = [python, "-m", "tuner", "run", spec_file]
    for item in overrides:
        args += ["--set", item]
    if store:
        args += ["--store", store]
    return shlex.join(args)


def submit(spec_path: str | Path, overrides: list[str], address: str | None, *, python: str = "python",
           submission_id: str | None = None, store: str | None = None) -> str:
    """Submit a sweep; returns the job's submission id (``submission_id`` if given, else a new one); the job's
    `tuner run` records into ``store`` if given. Raises SpecError (exit 2) before contacting anyone, JobExists if the
    cluster already holds a job with that submission id."""
    path = Path(spec_path).resolve()
    spec = load(path, overrides)
    c = client(address)
    job_id = submission_id or f"tuner-{spec.name}-{uuid.uuid4().hex[:8]}"
    deadline = time.monotonic() + AGENT_WAIT_S
    while True:
        try:
            c.submit_job(entrypoint=entrypoint(path.name, overrides, python, store), submission_id=job_id,
                         runtime_env={"working_dir": str(path.parent), "excludes": EXCLUDES},
                         metadata={SWEEP_KEY: spec.name, "spec": path.name})
            return job_id
        except RuntimeError as e:
            # A head that has just started answers before its job agent is up: "No available agent".
            if "no available agent" in str(e).lower() and time.monotonic() < deadline:
                time.sleep(2)
                continue
            if f"{job_id} already exists" in str(e):
                raise JobExists(f"the cluster at {address_of(address)} already has a job {job_id}") from None
            raise RemoteError(f"the cluster at {address_of(address)} refused the job: {_first_line(e)}") from None


def list_jobs(address: str | None) -> list[dict[str, Any]]:
    jobs = client(address).list_jobs()
    out = [{"job": j.submission_id, "sweep": (j.metadata or {}).get(SWEEP_KEY), "status": str(j.status.value),
            "start": _time(j.start_time), "end": _time(j.end_time), "entrypoint": j.entrypoint}
           for j in jobs if (j.metadata or {}).get(SWEEP_KEY)]
    return sorted(out, key=lambda j: j["start"] or "")


def status(job_id: str, address: str | None) -> dict[str, Any]:
    info = _info(client(address), job_id)
    return {"job": info.submission_id, "sweep": (info.metadata or {}).get(SWEEP_KEY), "status": info.status.value,
            "message": info.message, "start": _time(info.start_time), "end": _time(info.end_time)}


def stop(job_id: str, address: str | None) -> bool:
    c = client(address)
    _info(c, job_id)
    return bool(c.stop_job(job_id))


def logs(job_id: str, address: str | None, *, follow: bool = False) -> Iterator[str]:
    c = client(address)
    _info(c, job_id)
    if not follow:
        yield c.get_job_logs(job_id)
        return
    loop = asyncio.new_event_loop()
    tail = c.tail_job_logs(job_id)
    try:
        while True:
            try:
                yield loop.run_until_complete(tail.__anext__())
            except StopAsyncIteration:
                return
    finally:
        loop.run_until_complete(tail.aclose())
        loop.close()


def wait(job_id: str, address: str | None, *, poll_s: float = 1.0) -> str:
    """Block until the job ends; its final status."""
    c = client(address)
    while True:
        s = c.get_job_status(job_id)
        if s.is_terminal():
            return str(s.value)
        time.sleep(poll_s)


def _info(c: Any, job_id: str) -> Any:
    try:
        return c.get_job_info(job_id)
    except RuntimeError as e:
        if "does not exist" in str(e) or "404" in str(e):
            raise RemoteError(f"no job {job_id} on this cluster (tuner jobs list shows them)") from None
        raise


def _time(ms: int | None) -> str | None:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ms / 1000)) if ms else None
