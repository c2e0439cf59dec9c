"""tuner report: one sweep's page as a single HTML file that opens offline (plotly inlined, nothing fetched), from
the sweep store; an unknown sweep is a one-line error."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from support import fill_sweep_store as fill

from tuner import store
from tuner.view import figures, report_html


def test_the_report_is_one_self_contained_file(tmp_path: Path) -> None:
    engine = store.open_store(None, tmp_path)
    fill(engine)
    engine.dispose()
    out = tmp_path / "r" / "report.html"
    cli = subprocess.run([sys.executable, "-m", "tuner", "report", "s1", "--storage", str(tmp_path), "-o", str(out)],
                         capture_output=True, text=True, timeout=120)
    assert cli.returncode == 0, cli.stderr
    from plotly.offline import get_plotlyjs

    html = out.read_text()
    own = html.replace(get_plotlyjs(), "")  # plotly.js itself names its web site in strings
    assert "t3" in html and "Plotly" in html and len(html) > 1_000_000  # plotly.js is inside
    assert not re.search(r"<script[^>]+src=", own) and not re.search(r"href=['\"]https?:", own)  # nothing to fetch
    figs = json.loads(re.search(r"draw\((\{.*\})\);", html).group(1))  # type: ignore[union-attr]
    assert set(figs) == {"progress", "curves", "parallel", "importance"}


def test_an_unknown_sweep_is_a_usage_error(tmp_path: Path) -> None:
    store.open_store(None, tmp_path).dispose()
    cli = subprocess.run([sys.executable, "-m", "tuner", "report", "nope", "--storage", str(tmp_path)],
                         capture_output=True, text=True, timeout=120)
    assert cli.returncode == 2 and "no sweep named 'nope'" in cli.stderr and "Traceback" not in cli.stderr


def test_text_from_the_store_stays_text(tmp_path: Path) -> None:
    """A metric or trial named like markup is escaped in the page and cannot end the figures' script."""
    engine = store.open_store(None, tmp_path)
    sweep_id = store.start_sweep(engine, "x", spec={}, storage=str(tmp_path), metric="</script><b>m", mode="min")
    store.record_trial(engine, sweep_id, "<i>t</i>", config={"k": "<b>v</b>"}, status="completed")
    store.record_result(engine, sweep_id, "<i>t</i>", {"training_iteration": 1, "</script><b>m": 1.0})
    sweep = store.sweep_detail(engine, "x")
    html = report_html(sweep, figures(sweep))
    assert "<i>t</i>" not in html.split("<script>")[0] and "&lt;i&gt;t&lt;/i&gt;" in html
    assert html.count("</script>") == html.count("<script")
    engine.dispose()


def test_pbt_lineage_from_the_store(tmp_path: Path) -> None:
    engine = store.open_store(None, tmp_path)
    fill(engine)
    sweep_id = store.find_sweep(engine, "s1")
    assert sweep_id is not None
    pk = _pk(engine)
    store.record_exploit(engine, pk, "t1", donor="t3", at={"training_iteration": 2, "tokens": 200},
                         config={"train.lr": 0.004})
    sweep = store.sweep_detail(engine, "s1")
    [t1] = [t for t in sweep["leaderboard"] if t["trial_id"] == "t1"]
    assert [(e["donor"], e["at"]["tokens"], e["config"]) for e in t1["exploits"]] == [("t3", 200, {"train.lr": 0.004})]
    lineage = figures(sweep)["lineage"]["data"]
    assert any("t1 cloned t3 at tokens 200" in (tr.get("hovertemplate") or "") for tr in lineage)
    sweep["spec"] = {"search": {"scheduler": "pbt"}}
    assert 'id="fig-lineage"' in report_html(sweep, figures(sweep))
    engine.dispose()


def _pk(engine: object) -> int:
    from sqlalchemy import select
    from sqlalchemy.orm import Session

    with Session(engine) as s:  # type: ignore[call-overload]
        return int(s.scalar(select(store.Sweep.id).where(store.Sweep.name == "s1")))


def test_the_budget_shows_each_limit_beside_what_was_spent(tmp_path: Path) -> None:
    engine = store.open_store(None, tmp_path)
    fill(engine)
    sweep = store.sweep_detail(engine, "s1")
    sweep["spec"] = {"budget": {"cpu_hours": 2.0}, "resources": {"workers_per_trial": 2, "cpus_per_worker": 3}}
    html = report_html(sweep, figures(sweep))
    spent = sweep["compute"]["trial_seconds"] / 3600 * 2 * 3
    assert "cpu_hours (CPU-hours)" in html and f"{spent:.5g}" in html
    assert [b["label"] for b in figures(sweep)["progress"]["layout"]["updatemenus"][0]["buttons"]] == \
        ["trial-seconds", "tokens"]
    engine.dispose()
