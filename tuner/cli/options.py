"""What every command group shares: the consoles, one set of option types, and the ways a command ends.

Exit codes: 0 success; 2 an invalid spec or usage (every problem printed with its dotted key, nothing started);
1 a runtime failure, with a one-line message that says what failed.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console

from tuner.spec import Spec, SpecError, load

USAGE, FAILURE = 2, 1

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

SpecArg = Annotated[Path, typer.Argument(help="The sweep spec (YAML).")]
SetOpt = Annotated[list[str] | None, typer.Option("--set", help="Override a spec key: --set train.lr=1.0e-3 "
                                                                "(repeatable; values are YAML).")]
StoreOpt = Annotated[str | None, typer.Option("--store", help="The sweep store: a SQLAlchemy URL "
                                                             "(postgresql://host/db, sqlite:///path) or a SQLite file; "
                                                             "default <storage>/tuner.db.")]
StorageOpt = Annotated[Path, typer.Option("--storage", help="The sweeps' storage directory (the spec's `storage`), "
                                                            "where the default store lies.")]
RayAddressOpt = Annotated[str | None, typer.Option("--address", help="Ray cluster address (default: RAY_ADDRESS, "
                                                                     "else an embedded local Ray).")]
JobsAddressOpt = Annotated[str | None, typer.Option("--address", help="The head's dashboard address, "
                                                                      "http://HEAD:8265 (default: RAY_ADDRESS, else "
                                                                      "http://127.0.0.1:8265).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout, nothing else there.")]
VerboseOpt = Annotated[bool, typer.Option(help="Show the trials' own output.")]
JobArg = Annotated[str, typer.Argument(help="The job id tuner submit printed.")]
DEFAULT_STORAGE = Path("./sweeps")


def print_json(obj: Any) -> None:
    """One JSON document on stdout: numpy scalars as numbers, non-finite floats as null, anything else as text."""
    from tuner.store import jsonable

    sys.stdout.write(json.dumps(jsonable(obj), indent=2) + "\n")
    sys.stdout.flush()


def fail(message: str, code: int = FAILURE) -> NoReturn:
    """One line on stderr, then exit ``code``."""
    err.print(f"[bold red]error:[/bold red] {message}", highlight=False)
    raise typer.Exit(code)


def fail_spec(e: SpecError) -> NoReturn:
    """Every problem of a spec, each with its dotted key; exit 2."""
    err.print(f"[bold red]{e.source}: {len(e.problems)} problem(s)[/bold red]", highlight=False)
    for key, msg in e.problems:
        err.print(f"  [bold]{key}[/bold]: {msg}", highlight=False)
    raise typer.Exit(USAGE)


def load_spec(path: Path, overrides: list[str] | None) -> Spec:
    try:
        return load(path, overrides or [])
    except SpecError as e:
        fail_spec(e)


def open_store(url: str | None, storage: Path, *, create: bool = False, sweep: str | None = None) -> Any:
    """The sweep store's engine; exit 2 if it cannot be opened or, without ``create``, does not exist (``sweep``
    names the sweep a reader looked for). Opening brings an older store's schema up to date (store.migrate)."""
    from tuner.store import NoStore, StoreError
    from tuner.store import open_store as open_engine

    try:
        engine = open_engine(url, storage, create=create)
    except NoStore as e:
        what = f"no sweep named {sweep!r}: " if sweep else ""
        err.print(f"[bold red]{what}{e}[/bold red] (pass --storage DIR or --store URL)", highlight=False)
        raise typer.Exit(USAGE) from None
    except StoreError as e:
        fail(f"--store: {e}", USAGE)
    return engine
