"""``tuner`` command line, one module per command group: ``sweeps`` (validate, run, resume, extend, results, sweeps
list/show), ``jobs`` (submit, jobs ...), ``schedules`` (schedule ..., scheduler), ``cluster``, ``views``
(dashboard, report), ``stores`` (store upgrade); ``options`` holds
what they share (consoles, option types, exit codes) and ``render`` what they print.

Exit codes: 0 success; 2 invalid spec or usage (every problem printed with its dotted key, nothing started);
1 a runtime failure, with a message that says what failed.
"""

from __future__ import annotations

import gc

import typer

from tuner.cli import cluster, jobs, schedules, stores, sweeps, views

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Hyperparameter tuning for transformer language models on Ray Tune, from one YAML spec.")
for command in (sweeps.validate, sweeps.run, sweeps.resume, sweeps.extend, sweeps.results, jobs.submit,
                schedules.scheduler, views.dashboard, views.report):
    app.command()(command)
app.add_typer(sweeps.sweeps_app, name="sweeps")
app.add_typer(jobs.jobs_app, name="jobs")
app.add_typer(schedules.schedule_app, name="schedule")
app.add_typer(cluster.cluster_app, name="cluster")
app.add_typer(stores.store_app, name="store")


def main() -> None:
    try:
        app(prog_name="tuner")
    finally:
        # The interpreter's last garbage collection walks every object a sweep leaves (Ray's, torch's, transformers'):
        # ~3 s at exit after a sweep here. The process frees them all when it ends, so they skip that walk.
        gc.freeze()
