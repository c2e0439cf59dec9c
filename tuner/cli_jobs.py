"""``tuner submit`` and ``tuner jobs list|status|logs|stop``: sweeps on a Ray cluster through the Jobs API.

Exit codes as for the rest of the CLI: 2 for a bad spec (nothing is submitted), 1 for a cluster that cannot be
reached or refuses us (one line saying which), 1 for a submitted sweep that did not succeed (with --wait).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from tuner.spec import SpecError

jobs_app = typer.Typer(no_args_is_help=True, help="The sweeps submitted to a Ray cluster (Ray Jobs).")
AddressOpt = Annotated[str | None, typer.Option("--address", help="The head's dashboard address, "
                                                                  "http://HEAD:8265 (default: RAY_ADDRESS, else "
                                                                  "http://127.0.0.1:8265).")]
JobArg = Annotated[str, typer.Argument(help="The job id tuner submit printed.")]


def _remote_failed(e: Exception) -> typer.Exit:
    from tuner.cli import err

    err.print(f"[bold red]error:[/bold red] {e}", highlight=False)
    return typer.Exit(1)


def submit(spec: Annotated[Path, typer.Argument(help="The sweep spec (YAML); its directory is shipped.")],
           set_: Annotated[list[str] | None, typer.Option("--set", help="Override a spec key (repeatable).")] = None,
           address: AddressOpt = None,
           wait: Annotated[bool, typer.Option(help="Follow the sweep's output until it ends; exit 1 unless it "
                                                   "succeeded.")] = False,
           python: Annotated[str, typer.Option(help="The cluster's Python that runs `-m tuner`.")] = "python",
           ) -> None:
    """Submit a sweep to a Ray cluster: validated here, run there with `tuner run` in the spec's directory."""
    from tuner import remote
    from tuner.cli import _fail_spec, err, out

    try:
        job_id = remote.submit(spec, set_ or [], address, python=python)
    except SpecError as e:
        _fail_spec(e)
        return
    except remote.RemoteError as e:
        raise _remote_failed(e) from None
    out.print(f"submitted {job_id} to {remote.address_of(address)}", highlight=False)
    if not wait:
        err.print(f"follow it: tuner jobs logs {job_id} --follow", highlight=False)
        return
    for chunk in remote.logs(job_id, address, follow=True):
        out.out(chunk, end="", highlight=False)
    final = remote.wait(job_id, address)
    out.print(f"{job_id}: {final}", highlight=False)
    if final != "SUCCEEDED":
        raise typer.Exit(1)


@jobs_app.command("list")
def jobs_list(address: AddressOpt = None) -> None:
    """The sweeps submitted to this cluster, oldest first."""
    from tuner import remote
    from tuner.cli import out

    try:
        jobs = remote.list_jobs(address)
    except remote.RemoteError as e:
        raise _remote_failed(e) from None
    table = Table(title=f"sweeps on {remote.address_of(address)}")
    for col in ("job", "sweep", "status", "start", "end"):  # ids whole, whatever the terminal's width
        table.add_column(col, no_wrap=True, min_width=max([len(str(j[col] or "")) for j in jobs] + [len(col)]))
    for j in jobs:
        table.add_row(j["job"], j["sweep"], j["status"], j["start"] or "", j["end"] or "")
    out.print(table)


@jobs_app.command("status")
def jobs_status(job: JobArg, address: AddressOpt = None) -> None:
    """One submitted sweep's status."""
    from tuner import remote
    from tuner.cli import out

    try:
        s = remote.status(job, address)
    except remote.RemoteError as e:
        raise _remote_failed(e) from None
    out.print(f"{s['job']} ({s['sweep']}): {s['status']}" + (f" - {s['message']}" if s["message"] else ""),
              highlight=False)


@jobs_app.command("logs")
def jobs_logs(job: JobArg,
              address: AddressOpt = None,
              follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing until the job ends.")]
              = False) -> None:
    """A submitted sweep's output."""
    from tuner import remote
    from tuner.cli import out

    try:
        for chunk in remote.logs(job, address, follow=follow):
            out.out(chunk, end="", highlight=False)
    except remote.RemoteError as e:
        raise _remote_failed(e) from None


@jobs_app.command("stop")
def jobs_stop(job: JobArg, address: AddressOpt = None) -> None:
    """Stop a submitted sweep (Ray stops its driver; trials end with it)."""
    from tuner import remote
    from tuner.cli import out

    try:
        stopped = remote.stop(job, address)
    except remote.RemoteError as e:
        raise _remote_failed(e) from None
    out.print(f"{job}: {'stopping' if stopped else 'already ended'}", highlight=False)
