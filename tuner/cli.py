"""``tuner`` command line: validate, run, results.

Exit codes: 0 success; 2 invalid spec or usage (every problem printed with its dotted key, nothing started);
1 a runtime failure, with a message that says what failed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from tuner.spec import Spec, SpecError, load

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Hyperparameter tuning for transformer language models on Ray Tune, from one YAML spec.")
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

SetOpt = Annotated[list[str] | None, typer.Option("--set", help="Override a spec key: --set train.lr=1.0e-3 "
                                                                "(repeatable; values are YAML).")]


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
        address: Annotated[str | None, typer.Option(help="Ray cluster address (default: RAY_ADDRESS, else an "
                                                         "embedded local Ray).")] = None,
        overwrite: Annotated[bool, typer.Option(help="Replace the results of an earlier sweep of this name.")] = False,
        verbose: Annotated[bool, typer.Option(help="Show the trials' own output.")] = False) -> None:
    """Run a sweep and print its leaderboard."""
    from tuner.data import DataError
    from tuner.report import print_summary
    from tuner.sweep import run_sweep

    s = _load(spec, set_)
    err.print(f"running {_describe(s)}", highlight=False)
    try:
        result = run_sweep(s, address=address, overwrite=overwrite, verbose=verbose)
    except SpecError as e:
        _fail_spec(e)
    except DataError as e:
        _fail_spec(SpecError([(e.key, str(e))], str(spec)))
    except KeyboardInterrupt:
        err.print("interrupted")
        raise typer.Exit(130) from None
    except Exception as e:  # a runtime failure: say what failed, without a traceback
        err.print(f"[bold red]sweep {s.name} failed:[/bold red] {type(e).__name__}: {e}", highlight=False)
        raise typer.Exit(1) from None
    print_summary(result.summary, out)
    if result.summary.get("interrupted"):
        err.print(f"[bold yellow]interrupted[/bold yellow]: {sum(t['state'] != 'error' for t in result.trials)} "
                  f"trial(s) reported; results so far are in {result.path}", highlight=False)
        raise typer.Exit(130)
    if result.trials and all(t["state"] == "error" for t in result.trials):
        err.print("[bold red]every trial failed[/bold red]")
        raise typer.Exit(1)


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


def main() -> None:
    app(prog_name="tuner")


if __name__ == "__main__":
    main()
