"""``tuner`` command line: validate, run, results, sweeps list/show, submit, jobs list/status/logs/stop.

Exit codes: 0 success; 2 invalid spec or usage (every problem printed with its dotted key, nothing started);
1 a runtime failure, with a message that says what failed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from tuner.spec import Spec, SpecError, load

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Hyperparameter tuning for transformer language models on Ray Tune, from one YAML spec.")
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

sweeps_app = typer.Typer(no_args_is_help=True, help="The sweeps recorded in the sweep store.")
app.add_typer(sweeps_app, name="sweeps")

SetOpt = Annotated[list[str] | None, typer.Option("--set", help="Override a spec key: --set train.lr=1.0e-3 "
                                                                "(repeatable; values are YAML).")]
StoreOpt = Annotated[str | None, typer.Option("--store", help="The sweep store: a SQLAlchemy URL "
                                                             "(postgresql://host/db, sqlite:///path) or a SQLite file; "
                                                             "default <storage>/tuner.db.")]
StorageOpt = Annotated[Path, typer.Option("--storage", help="The sweeps' storage directory (the spec's `storage`), "
                                                            "where the default store lies.")]
AddressOpt = Annotated[str | None, typer.Option(help="Ray cluster address (default: RAY_ADDRESS, else an embedded "
                                                     "local Ray).")]
VerboseOpt = Annotated[bool, typer.Option(help="Show the trials' own output.")]


def _load(spec_path: Path, overrides: list[str] | None) -> Spec:
    try:
        return load(spec_path, overrides or [])
    except SpecError as e:
        _fail_spec(e)
        raise  # unreachable


def _fail_spec(e: SpecError) -> None:
    err.print(f"[bold red]{e.source}: {len(e.problems)} problem(s)[/bold red]", highlight=False)
    for key, msg in e.problems:
        err.print(f"  [bold]{key}[/bold]: {msg}", highlight=False)
    raise typer.Exit(2)


def _describe(spec: Spec) -> str:
    from tuner.budget import budget
    from tuner.sweep import num_trials

    b = budget(spec)
    s = spec.search
    what = spec.trainable if spec.is_custom else f"{spec.model.pretrained or spec.model.family} LM"
    every = " (every grid combination)" if s.algorithm == "grid" else ""
    return (f"{spec.name}: {num_trials(spec)} trials{every} of {what}; {s.algorithm} + {s.scheduler}, "
            f"{s.metric} ({s.mode}); a full trial is {b.max_t:,.0f} {b.time_attr}, reporting every "
            f"{b.eval_interval:,.0f}; results in {spec.sweep_dir}")


@app.command()
def validate(spec: Annotated[Path, typer.Argument(help="The sweep spec (YAML).")], set_: SetOpt = None) -> None:
    """Check a spec and print what it would run; starts nothing."""
    s = _load(spec, set_)
    out.print(f"ok {_describe(s)}", highlight=False)


@app.command()
def run(spec: Annotated[Path, typer.Argument(help="The sweep spec (YAML).")], set_: SetOpt = None,
        address: AddressOpt = None,
        overwrite: Annotated[bool, typer.Option(help="Replace the results of an earlier sweep of this name.")] = False,
        verbose: VerboseOpt = False,
        store: StoreOpt = None) -> None:
    """Run a sweep and print its leaderboard; every result is recorded in the sweep store as it arrives."""
    from tuner.report import print_summary
    from tuner.sweep import run_sweep

    s = _load(spec, set_)
    err.print(f"running {_describe(s)}", highlight=False)
    result = _drive(lambda: run_sweep(s, address=address, overwrite=overwrite, verbose=verbose, store=store),
                    f"sweep {s.name}", source=str(spec))
    print_summary(result.summary, out)
    if result.summary.get("interrupted"):
        err.print(f"[bold yellow]interrupted[/bold yellow]: {sum(t['state'] != 'error' for t in result.trials)} "
                  f"trial(s) reported; results so far are in {result.path}", highlight=False)
        raise typer.Exit(130)
    if result.trials and all(t["state"] == "error" for t in result.trials):
        err.print("[bold red]every trial failed[/bold red]")
        raise typer.Exit(1)


def _drive(call: Any, what: str, source: str = "spec") -> Any:
    """Run a sweep-driving call (run, resume, extend): a bad spec, data source or --store exits 2, Ctrl+C 130, a
    runtime failure 1, each in one line."""
    from tuner.data import DataError
    from tuner.store import StoreError

    try:
        return call()
    except SpecError as e:
        _fail_spec(e)
        raise  # unreachable
    except DataError as e:
        _fail_spec(SpecError([(e.key, str(e))], source))
        raise  # unreachable
    except StoreError as e:
        err.print(f"[bold red]--store:[/bold red] {e}", highlight=False)
        raise typer.Exit(2) from None
    except KeyboardInterrupt:
        err.print("interrupted")
        raise typer.Exit(130) from None
    except Exception as e:  # a runtime failure: say what failed, without a traceback
        err.print(f"[bold red]{what} failed:[/bold red] {type(e).__name__}: {e}", highlight=False)
        raise typer.Exit(1) from None


@app.command()
def resume(name: Annotated[str, typer.Argument(help="The sweep's name (or its directory).")],
           storage: StorageOpt = Path("./sweeps"),
           address: AddressOpt = None,
           verbose: VerboseOpt = False,
           store: StoreOpt = None) -> None:
    """Finish a sweep whose driver died: unfinished trials continue from their checkpoints, finished ones stay."""
    from tuner.report import print_summary
    from tuner.resume import resume_sweep

    d = Path(name) if Path(name).is_dir() else storage / name
    err.print(f"resuming {d}", highlight=False)
    result = _drive(lambda: resume_sweep(d, address=address, verbose=verbose, store=store), f"resuming {name}")
    print_summary(result.summary, out)
    if result.summary.get("interrupted"):
        raise typer.Exit(130)


@app.command()
def extend(name: Annotated[str, typer.Argument(help="The finished sweep's name (or its directory).")],
           trials: Annotated[int, typer.Option("--trials", min=1, help="How many trials to add.")],
           storage: StorageOpt = Path("./sweeps"),
           address: AddressOpt = None,
           verbose: VerboseOpt = False,
           store: StoreOpt = None) -> None:
    """Add trials to a finished sweep; its searcher starts from every past observation."""
    from tuner.extend import extend_sweep
    from tuner.report import print_summary

    d = Path(name) if Path(name).is_dir() else storage / name
    err.print(f"extending {d} by {trials} trial(s)", highlight=False)
    result = _drive(lambda: extend_sweep(d, trials, address=address, verbose=verbose, store=store),
                    f"extending {name}")
    print_summary(result.summary, out)


@app.command()
def results(path: Annotated[Path, typer.Argument(help="A sweep directory (<storage>/<name>) or its summary.json.")],
            ) -> None:
    """Print the leaderboard of a finished sweep from disk."""
    from tuner.report import print_summary
    from tuner.sweep import load_summary

    try:
        summary = load_summary(path)
        print_summary(summary, out)
    except FileNotFoundError:
        err.print(f"[bold red]{path}: no summary.json[/bold red] (is it a finished sweep's directory?)")
        raise typer.Exit(2) from None
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        err.print(f"[bold red]{path}: not a tuner summary.json[/bold red] ({type(e).__name__}: {e})")
        raise typer.Exit(2) from None


def _store(url: str | None, storage: Path, name: str | None = None) -> Any:
    """The store to read (creating nothing); exit 2 if it cannot be opened."""
    from tuner.store import NoStore, StoreError, open_store

    try:
        return open_store(url, storage, create=False)
    except NoStore as e:
        what = f"no sweep named {name!r}: " if name else ""
        err.print(f"[bold red]{what}{e}[/bold red] (pass --storage DIR or --store URL)", highlight=False)
        raise typer.Exit(2) from None
    except StoreError as e:
        err.print(f"[bold red]--store:[/bold red] {e}", highlight=False)
        raise typer.Exit(2) from None


@sweeps_app.command("list")
def sweeps_list(storage: StorageOpt = Path("./sweeps"), store: StoreOpt = None) -> None:
    """List the sweeps in the store, newest first: status, trials, best value, compute spent."""
    from sqlalchemy.exc import SQLAlchemyError

    from tuner.report import print_sweeps
    from tuner.store import list_sweeps, safe_url

    engine = _store(store, storage)
    try:
        print_sweeps(list_sweeps(engine), out, safe_url(engine.url))
    except SQLAlchemyError as e:
        err.print(f"[bold red]reading the sweep store failed:[/bold red] {type(e).__name__}: {e}", highlight=False)
        raise typer.Exit(1) from None
    finally:
        engine.dispose()


@sweeps_app.command("show")
def sweeps_show(name: Annotated[str, typer.Argument(help="The sweep's name.")],
                storage: StorageOpt = Path("./sweeps"), store: StoreOpt = None) -> None:
    """Print a sweep's leaderboard from the store, with the compute it spent (also while it runs)."""
    from sqlalchemy.exc import SQLAlchemyError

    from tuner.report import print_store_leaderboard
    from tuner.store import UnknownSweep, safe_url, sweep_leaderboard

    engine = _store(store, storage, name)
    try:
        print_store_leaderboard(sweep_leaderboard(engine, name), out)
    except UnknownSweep as e:
        err.print(f"[bold red]{e}[/bold red] ({safe_url(engine.url)})", highlight=False)
        raise typer.Exit(2) from None
    except SQLAlchemyError as e:
        err.print(f"[bold red]reading the sweep store failed:[/bold red] {type(e).__name__}: {e}", highlight=False)
        raise typer.Exit(1) from None
    finally:
        engine.dispose()


def _register_remote() -> None:
    from tuner.cli_jobs import jobs_app, submit

    app.command()(submit)
    app.add_typer(jobs_app, name="jobs")


_register_remote()


def _register_schedule() -> None:
    from tuner.cli_schedule import schedule_app, scheduler

    app.command()(scheduler)
    app.add_typer(schedule_app, name="schedule")


_register_schedule()


def _register_cluster() -> None:
    from tuner.cli_cluster import cluster_app

    app.add_typer(cluster_app, name="cluster")


_register_cluster()


def main() -> None:
    app(prog_name="tuner")


if __name__ == "__main__":
    main()
