"""``tuner validate|run|resume|extend|results`` and ``tuner sweeps list|show``: a sweep from its spec to its
leaderboard."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from tuner.cli.options import (
    DEFAULT_STORAGE,
    USAGE,
    JsonOpt,
    RayAddressOpt,
    SetOpt,
    SpecArg,
    StorageOpt,
    StoreOpt,
    VerboseOpt,
    err,
    fail_spec,
    load_spec,
    open_store,
    out,
    print_json,
)
from tuner.spec import Spec, SpecError

sweeps_app = typer.Typer(no_args_is_help=True, help="The sweeps recorded in the sweep store.")


def _describe(spec: Spec) -> str:
    from tuner.spec.fidelity import fidelity
    from tuner.sweep.summary import num_trials

    b = fidelity(spec)
    s = spec.search
    what = spec.trainable if spec.is_custom else f"{spec.model.pretrained or spec.model.family} LM"
    trials = num_trials(spec)
    every = (" (every grid combination)" if s.algorithm == "grid" else
             f" (every config of the space; {s.num_trials} asked)" if trials < s.num_trials else "")
    return (f"{spec.name}: {trials} trials{every} of {what}; {s.algorithm} + {s.scheduler}, "
            f"{s.metric} ({s.mode}); a full trial is {b.max_t:,.0f} {b.time_attr}, reporting every "
            f"{b.eval_interval:,.0f}; results in {spec.location}")


def validate(spec: SpecArg, set_: SetOpt = None, json_: JsonOpt = False) -> None:
    """Check a spec and print what it would run (--json: the resolved spec); starts nothing."""
    s = load_spec(spec, set_)
    if json_:
        err.print(f"ok {_describe(s)}", highlight=False)
        print_json(s.model_dump(mode="json"))
        return
    out.print(f"ok {_describe(s)}", highlight=False)


def run(spec: SpecArg, set_: SetOpt = None,
        address: RayAddressOpt = None,
        overwrite: Annotated[bool, typer.Option(help="Replace the results of an earlier sweep of this name.")] = False,
        verbose: VerboseOpt = False,
        store: StoreOpt = None) -> None:
    """Run a sweep and print its leaderboard; every result is recorded in the sweep store as it arrives."""
    from tuner.cli.render import print_summary
    from tuner.sweep.driver import run_sweep

    s = load_spec(spec, set_)
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
    from tuner._util.storage import StorageError
    from tuner.store import StoreError
    from tuner.trial.data import DataError

    try:
        return call()
    except SpecError as e:
        fail_spec(e)
    except StorageError as e:  # the bucket: no credentials, unreachable, missing
        err.print(f"[bold red]storage:[/bold red] {e}", highlight=False)
        raise typer.Exit(1) from None
    except DataError as e:
        fail_spec(SpecError([(e.key, str(e))], source))
    except StoreError as e:
        err.print(f"[bold red]--store:[/bold red] {e}", highlight=False)
        raise typer.Exit(USAGE) from None
    except KeyboardInterrupt:
        err.print("interrupted")
        raise typer.Exit(130) from None
    except Exception as e:  # a runtime failure: say what failed, without a traceback
        err.print(f"[bold red]{what} failed:[/bold red] {type(e).__name__}: {e}", highlight=False)
        raise typer.Exit(1) from None


def _sweep_location(name: str, storage: Path) -> str | Path:
    """A sweep named on the command line: a bucket URI as given, a directory, or a name under --storage."""
    from tuner._util.storage import is_remote

    if is_remote(name):
        return name
    return Path(name) if Path(name).is_dir() else storage / name


def resume(name: Annotated[str, typer.Argument(help="The sweep's name, its directory or its bucket URI "
                                                    "(s3://bucket/prefix/<name>).")],
           storage: StorageOpt = DEFAULT_STORAGE,
           address: RayAddressOpt = None,
           verbose: VerboseOpt = False,
           store: StoreOpt = None,
           retry_errored: Annotated[bool, typer.Option("--retry-errored", help="Run errored trials again from their "
                                                       "last checkpoint.")] = False,
           restart_errored: Annotated[bool, typer.Option("--restart-errored", help="Run errored trials again from "
                                                         "scratch.")] = False) -> None:
    """Finish a sweep whose driver died: unfinished trials continue from their checkpoints, finished ones stay
    (errored ones too, unless --retry-errored or --restart-errored)."""
    from tuner.cli.render import print_summary
    from tuner.sweep.driver import resume_sweep

    if retry_errored and restart_errored:
        err.print("[bold red]--retry-errored and --restart-errored exclude each other[/bold red]")
        raise typer.Exit(USAGE)
    errored = "retry" if retry_errored else "restart" if restart_errored else None
    d = _sweep_location(name, storage)
    err.print(f"resuming {d}" + (f" ({errored} errored trials)" if errored else ""), highlight=False)
    result = _drive(lambda: resume_sweep(d, address=address, verbose=verbose, store=store, errored=errored),
                    f"resuming {name}")
    print_summary(result.summary, out)
    if result.summary.get("interrupted"):
        raise typer.Exit(130)


def extend(name: Annotated[str, typer.Argument(help="The finished sweep's name, its directory or its bucket URI.")],
           trials: Annotated[int, typer.Option("--trials", min=1, help="How many trials to add.")],
           storage: StorageOpt = DEFAULT_STORAGE,
           address: RayAddressOpt = None,
           verbose: VerboseOpt = False,
           store: StoreOpt = None) -> None:
    """Add trials to a finished sweep; its searcher starts from every past observation."""
    from tuner.cli.render import print_summary
    from tuner.sweep.driver import extend_sweep

    d = _sweep_location(name, storage)
    err.print(f"extending {d} by {trials} trial(s)", highlight=False)
    result = _drive(lambda: extend_sweep(d, trials, address=address, verbose=verbose, store=store),
                    f"extending {name}")
    print_summary(result.summary, out)


def results(path: Annotated[str, typer.Argument(help="A sweep directory (<storage>/<name>), its summary.json, or "
                                                     "its bucket URI (s3://bucket/prefix/<name>).")],
            json_: JsonOpt = False) -> None:
    """Print the leaderboard of a finished sweep from disk or from its bucket."""
    from tuner._util.storage import StorageError
    from tuner.cli.render import print_summary
    from tuner.sweep.records import local_dir
    from tuner.sweep.summary import load_summary

    try:
        summary = load_summary(local_dir(path))
        print_json(summary) if json_ else print_summary(summary, out)
    except SpecError as e:
        fail_spec(e)
    except StorageError as e:
        err.print(f"[bold red]storage:[/bold red] {e}", highlight=False)
        raise typer.Exit(1) from None
    except FileNotFoundError:
        err.print(f"[bold red]{path}: no summary.json[/bold red] (is it a finished sweep's directory?)")
        raise typer.Exit(USAGE) from None
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        err.print(f"[bold red]{path}: not a tuner summary.json[/bold red] ({type(e).__name__}: {e})")
        raise typer.Exit(USAGE) from None


@sweeps_app.command("list")
def sweeps_list(storage: StorageOpt = DEFAULT_STORAGE, store: StoreOpt = None, json_: JsonOpt = False) -> None:
    """List the sweeps in the store, newest first: status, trials, best value, compute spent."""
    from sqlalchemy.exc import SQLAlchemyError

    from tuner.cli.render import print_sweeps
    from tuner.store import list_sweeps, safe_url

    engine = open_store(store, storage)
    try:
        listed = list_sweeps(engine)
        print_json(listed) if json_ else print_sweeps(listed, out, safe_url(engine.url))
    except SQLAlchemyError as e:
        err.print(f"[bold red]reading the sweep store failed:[/bold red] {type(e).__name__}: {e}", highlight=False)
        raise typer.Exit(1) from None
    finally:
        engine.dispose()


@sweeps_app.command("show")
def sweeps_show(name: Annotated[str, typer.Argument(help="The sweep's name.")],
                storage: StorageOpt = DEFAULT_STORAGE, store: StoreOpt = None, json_: JsonOpt = False) -> None:
    """Print a sweep's leaderboard from the store, with the compute it spent (also while it runs)."""
    from sqlalchemy.exc import SQLAlchemyError

    from tuner.cli.render import print_store_leaderboard
    from tuner.store import UnknownSweep, safe_url, sweep_leaderboard

    engine = open_store(store, storage, sweep=name)
    try:
        board = sweep_leaderboard(engine, name)
        print_json(board) if json_ else print_store_leaderboard(board, out)
    except UnknownSweep as e:
        err.print(f"[bold red]{e}[/bold red] ({safe_url(engine.url)})", highlight=False)
        raise typer.Exit(USAGE) from None
    except SQLAlchemyError as e:
        err.print(f"[bold red]reading the sweep store failed:[/bold red] {type(e).__name__}: {e}", highlight=False)
        raise typer.Exit(1) from None
    finally:
        engine.dispose()
