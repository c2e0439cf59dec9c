"""What the CLI prints of sweeps: a finished sweep's leaderboard (from summary.json), the store's sweeps and a
sweep's leaderboard from the store, as rich tables."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from tuner.sweep.summary import leaderboard_rows


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}" if abs(v) < 1e5 else f"{v:.3e}"
    return str(v)


def _short(columns: list[str]) -> list[str]:
    """Column headers: a dotted key shows its last part unless two keys share it."""
    last = [c.rsplit(".", 1)[-1] for c in columns]
    return [s if last.count(s) == 1 else c for c, s in zip(columns, last, strict=True)]


def leaderboard_table(summary: dict[str, Any], limit: int = 20) -> Table:
    rows = leaderboard_rows(summary)
    table = Table(title=f"{summary['name']}: {len(rows)} trials, {summary['metric']} ({summary['mode']})")
    columns = list(rows[0].keys()) if rows else []
    for col, header in zip(columns, _short(columns), strict=True):
        table.add_column(header, justify="left" if col in ("trial_id", "state") else "right", no_wrap=True)
    for r in rows[:limit]:
        style = "bold green" if r["rank"] == 1 and r[summary["metric"]] is not None else None
        table.add_row(*(_fmt(v) for v in r.values()), style=style)
    return table


def budget_line(b: dict[str, Any]) -> str:
    """The budget against what was spent, and whether it ended the sweep."""
    units = {"cpu_hours": "CPU-hours", "gpu_hours": "GPU-hours", "wall_clock_s": "s wall clock"}
    parts = [f"{b['spent'][k]:.4g} of {v:.4g} {units[k]}" for k, v in b["limits"].items()]
    ended = f"; the budget ended the sweep ({units[b['ended_by']]} spent)" if b.get("ended_by") else ""
    return f"budget: {', '.join(parts)}{ended}"


def print_summary(summary: dict[str, Any], console: Console | None = None) -> None:
    console = console or Console()
    _wide(console)
    console.print(leaderboard_table(summary))
    best, c = summary.get("best"), summary["compute"]
    tokens = f", {c['tokens']:,} tokens" if c.get("tokens") else ""
    console.print(f"compute: {c['trial_seconds']:.0f} trial-seconds, {c['iterations']} iterations{tokens}",
                  highlight=False)
    if c.get("budget"):
        console.print(budget_line(c["budget"]), highlight=False)
    if best:
        console.print(f"best: trial {best['trial_id']} {summary['metric']}={best['value']:.4f} "
                      f"config={best['config']}", highlight=False)
        if best.get("checkpoint"):
            console.print(f"best checkpoint: {best['checkpoint']}", highlight=False)
        if summary.get("best_model"):
            console.print(f"best model: {summary['best_model']}", highlight=False)
    errors = [t for t in summary["trials"] if t.get("error")]
    for t in errors[:5]:
        console.print(f"[red]trial {t['trial_id']} failed:[/red] {t['error']}", highlight=False)


# ---- from the sweep store (tuner.store) ------------------------------------------------------------------------


def _when(t: Any) -> str:
    return t.astimezone().strftime("%Y-%m-%d %H:%M") if t is not None else "-"


def _wide(console: Console) -> None:
    if not console.is_terminal:
        console.width = max(console.width, 200)  # a log or a pipe: don't squeeze the table into 80 columns


def print_sweeps(sweeps: list[dict[str, Any]], console: Console, where: str) -> None:
    """``tuner sweeps list``: one row per sweep of the store (tuner.store.list_sweeps), newest first."""
    _wide(console)
    table = Table(title=f"{len(sweeps)} sweep(s) in {where}")
    for col in ("name", "status", "trials", "metric", "best", "trial", "trial_s", "iterations", "tokens", "created"):
        table.add_column(col, justify="left" if col in ("name", "status", "metric", "trial", "created") else "right",
                         no_wrap=True)
    style = {"running": "cyan", "interrupted": "yellow", "failed": "red"}
    for w in sweeps:
        c = w["compute"]
        table.add_row(w["name"], w["status"], str(w["trials"]), f"{w['metric']} ({w['mode']})", _fmt(w["best_value"]),
                      _fmt(w["best_trial_id"]), f"{c['trial_seconds']:.0f}", str(c["iterations"]),
                      f"{c['tokens']:,}" if c["tokens"] is not None else "-", _when(w["created_at"]),
                      style=style.get(w["status"]))
    console.print(table)


def print_store_leaderboard(board: dict[str, Any], console: Console, limit: int = 50) -> None:
    """``tuner sweeps show NAME``: the trials ranked from the store (tuner.store.sweep_leaderboard), and the compute
    the sweep spent."""
    _wide(console)
    rows = board["leaderboard"]
    keys = list(dict.fromkeys(k for r in rows for k in r["config"]))
    with_tokens = any(r["tokens"] is not None for r in rows)
    table = Table(title=f"{board['name']} ({board['status']}): {len(rows)} trials, {board['metric']} ({board['mode']})")
    columns = ["rank", "trial_id", "state", board["metric"], *keys, "iterations", *(["tokens"] if with_tokens else []),
               "time_s"]
    for col, header in zip(columns, _short(columns), strict=True):
        table.add_column(header, justify="left" if col in ("trial_id", "state") else "right", no_wrap=True)
    for r in rows[:limit]:
        cells = [r["rank"], r["trial_id"], r["state"], r["value"], *(r["config"].get(k) for k in keys), r["iterations"],
                 *([r["tokens"]] if with_tokens else []), round(r["seconds"] or 0.0, 1)]
        style = "bold green" if r["rank"] == 1 and r["value"] is not None else None
        table.add_row(*(_fmt(v) for v in cells), style=style)
    console.print(table)
    c = board["compute"]
    tokens = f", {c['tokens']:,} tokens" if c.get("tokens") else ""
    console.print(f"compute: {c['trial_seconds']:.0f} trial-seconds, {c['iterations']} iterations{tokens} "
                  f"over {board['trials']} trials", highlight=False)
    best = next((r for r in rows if r["rank"] == 1 and r["value"] is not None), None)
    if best:
        console.print(f"best: trial {best['trial_id']} {board['metric']}={best['value']:.4f} config={best['config']}",
                      highlight=False)
        if best.get("checkpoint"):
            console.print(f"best checkpoint: {best['checkpoint']}", highlight=False)
    console.print(f"results: {board['storage']} (started {_when(board['created_at'])}, "
                  f"ended {_when(board['finished_at'])})", highlight=False)
    for r in [r for r in rows if r.get("error")][:5]:
        console.print(f"[red]trial {r['trial_id']} failed:[/red] {r['error']}", highlight=False)
