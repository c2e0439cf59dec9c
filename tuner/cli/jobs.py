"""``tuner submit`` and ``tuner jobs list|status|logs|stop``: sweeps on a Ray cluster through the Jobs API.

Exit codes as for the rest of the CLI: 2 for a bad spec (nothing is submitted), 1 for a cluster that cannot be
reached or refuses us (one line saying which), 1 for a submitted sweep that did not succeed (with --wait).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from tuner.cli.options import JobArg, JsonOpt, SetOpt, err, fail, fail_spec, out, print_json
from tuner.cli.options import JobsAddressOpt as AddressOpt
from tuner.service import jobs as ray_jobs
from tuner.spec import SpecError

jobs_app = typer.Typer(no_args_is_help=True, help="The sweeps submitted to a Ray cluster (Ray Jobs).")


def submit(spec: Annotated[Path, typer.Argument(help="The sweep spec (YAML); its directory is shipped.")],
           set_: SetOpt = None,
           address: AddressOpt = None,
           wait: Annotated[bool, typer.Option(help="Follow the sweep's output until it ends; exit 1 unless it "
                                                   "succeeded.")] = False,
           python: Annotated[str, typer.Option(help="The cluster's Python that runs `-m tuner`.")] = "python",
           json_: JsonOpt = False) -> None:
    """Submit a sweep to a Ray cluster: validated here, run there with `tuner run` in the spec's directory."""
    try:
        job_id = ray_jobs.submit(spec, set_ or [], address, python=python)
    except SpecError as e:
        fail_spec(e)
    except ray_jobs.RemoteError as e:
        fail(str(e))
    where = ray_jobs.address_of(address)
    (err if json_ else out).print(f"submitted {job_id} to {where}", highlight=False)
    if not wait:
        err.print(f"follow it: tuner jobs logs {job_id} --follow", highlight=False)
        if json_:
            print_json({"job_id": job_id, "address": where, "status": None})
        return
    for chunk in ray_jobs.logs(job_id, address, follow=True):
        (err if json_ else out).out(chunk, end="", highlight=False)
    final = ray_jobs.wait(job_id, address)
    if json_:
        print_json({"job_id": job_id, "address": where, "status": final})
    else:
        out.print(f"{job_id}: {final}", highlight=False)
    if final != "SUCCEEDED":
        raise typer.Exit(1)


@jobs_app.command("list")
def jobs_list(address: AddressOpt = None, json_: JsonOpt = False) -> None:
    """The sweeps submitted to this cluster, oldest first."""
    try:
        listed = ray_jobs.list_jobs(address)
    except ray_jobs.RemoteError as e:
        fail(str(e))
    if json_:
        print_json(listed)
        return
    table = Table(title=f"sweeps on {ray_jobs.address_of(address)}")
    for col in ("job", "sweep", "status", "start", "end"):  # ids whole, whatever the terminal's width
        table.add_column(col, no_wrap=True, min_width=max([len(str(j[col] or "")) for j in listed] + [len(col)]))
    for j in listed:
        table.add_row(j["job"], j["sweep"], j["status"], j["start"] or "", j["end"] or "")
    out.print(table)


@jobs_app.command("status")
def jobs_status(job: JobArg, address: AddressOpt = None, json_: JsonOpt = False) -> None:
    """One submitted sweep's status."""
    try:
        s = ray_jobs.status(job, address)
    except ray_jobs.RemoteError as e:
        fail(str(e))
    if json_:
        print_json(s)
        return
    out.print(f"{s['job']} ({s['sweep']}): {s['status']}" + (f" - {s['message']}" if s["message"] else ""),
              highlight=False)


@jobs_app.command("logs")
def jobs_logs(job: JobArg,
              address: AddressOpt = None,
              follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing until the job ends.")]
              = False) -> None:
    """A submitted sweep's output."""
    try:
        for chunk in ray_jobs.logs(job, address, follow=follow):
            out.out(chunk, end="", highlight=False)
    except ray_jobs.RemoteError as e:
        fail(str(e))


@jobs_app.command("stop")
def jobs_stop(job: JobArg, address: AddressOpt = None) -> None:
    """Stop a submitted sweep (Ray stops its driver; trials end with it)."""
    try:
        stopped = ray_jobs.stop(job, address)
    except ray_jobs.RemoteError as e:
        fail(str(e))
    out.print(f"{job}: {'stopping' if stopped else 'already ended'}", highlight=False)
