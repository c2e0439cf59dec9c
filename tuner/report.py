"""The leaderboard of a finished sweep: a rich table and a CSV, both from summary.json."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table


def leaderboard_rows(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """Trials ranked by their value (best first; trials without a value last)."""
    sign = 1 if summary["mode"] == "min" else -1
    trials = sorted(summary["trials"], key=lambda t: (t["value"] is None, sign * (t["value"] or 0.0)))
    rows = []
    for rank, t in enumerate(trials, 1):
        row = {"rank": rank, "trial_id": t["trial_id"], "state": t["state"], summary["metric"]: t["value"]}
        row.update(t["config"])
        row.update({"iterations": t["iterations"], summary["time_attr"]: t["last_result"].get(summary["time_attr"]),
                    "time_s": round(t["last_result"].get("time_total_s") or 0.0, 1)})
        rows.append(row)
    return rows


def write_leaderboard_csv(summary: dict[str, Any], path: Path) -> None:
    rows = leaderboard_rows(summary)
    fields = list(dict.fromkeys(k for r in rows for k in r))
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)


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


def print_summary(summary: dict[str, Any], console: Console | None = None) -> None:
    console = console or Console()
    if not console.is_terminal:
        console.width = max(console.width, 200)  # a log or a pipe: don't squeeze the table into 80 columns
    console.print(leaderboard_table(summary))
    best, c = summary.get("best"), summary["compute"]
    tokens = f", {c['tokens']:,} tokens" if c.get("tokens") else ""
    console.print(f"compute: {c['trial_seconds']:.0f} trial-seconds, {c['iterations']} iterations{tokens}",
                  highlight=False)
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
