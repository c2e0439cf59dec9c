"""The dashboard and the report as a user sees them: a real small sweep fills the store, Debian's chromium (driven
by Playwright) opens the sweeps list and the sweep's page, finds every plot drawn with data and no console error,
takes a screenshot, and sees a report added to the store appear within 5 s without a reload; the offline report
draws every plot with the network cut off. chromium comes from scripts/system-deps.sh (make test): without it this
test fails, it does not skip."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from support import DashboardServer

from tuner import store
from tuner.spec import validate
from tuner.sweep.driver import run_sweep

pytestmark = pytest.mark.integration

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update"]
PLOTS = ("progress", "curves", "parallel", "importance")


def drawn(page: Any, timeout_ms: int = 30_000) -> None:
    """Every plot of the sweep page is a plotly graph div with data."""
    for name in PLOTS:
        try:
            page.wait_for_function(f"document.getElementById('fig-{name}')?.data?.length > 0", timeout=timeout_ms)
        except Exception as e:
            raise AssertionError(f"plot {name} not drawn: {page.inner_text(f'#fig-{name}')!r}") from e


@pytest.fixture(scope="module")
def browser() -> Any:
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), "chromium is missing: scripts/system-deps.sh (run by make test) installs it"
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield b
        b.close()


def test_the_dashboard_and_the_report_of_a_real_sweep(ray_local: Any, tiny_raw: Any, storage: Path, browser: Any,
                                                      tmp_path: Path) -> None:
    spec = validate(tiny_raw(search={
        "algorithm": "mftpe", "scheduler": "rung-asha", "num_trials": 8, "max_concurrent": 2,
        "space": {"train.lr": {"loguniform": [1e-3, 3e-2]}, "train.batch_size": {"choice": [2, 4]}}}))
    run_sweep(spec)
    engine = store.open_store(None, storage)
    console_errors: list[str] = []
    try:
        with DashboardServer(engine) as server:
            page = browser.new_page()
            page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: console_errors.append(str(e)))
            page.goto(f"http://127.0.0.1:{server.port}/")
            page.click(f"a:text-is('{spec.name}')")  # the sweeps list links to the sweep's page
            drawn(page)
            shot = tmp_path / "sweep.png"
            page.screenshot(path=str(shot), full_page=True)
            assert shot.stat().st_size > 20_000

            sweep_pk = _sweep_pk(engine, spec.name)
            added = time.monotonic()
            store.record_trial(engine, sweep_pk, "added-live", config={"train.lr": 5e-3}, status="running")
            store.record_result(engine, sweep_pk, "added-live", {"training_iteration": 1, "tokens": 128,
                                                                 "val_loss": 9.0})
            page.wait_for_selector("td:text-is('added-live')", timeout=5_000)
            assert time.monotonic() - added < 5
            assert console_errors == []
            page.close()
    finally:
        engine.dispose()

    from tuner.cli.views import report as write_report

    from_store, from_dir = tmp_path / "store.html", tmp_path / "dir.html"
    write_report(spec.name, output=from_store, store=None, storage=storage)
    write_report(str(spec.sweep_dir), output=from_dir, store=None, storage=storage)  # the directory alone
    for report in (from_store, from_dir):
        offline = browser.new_context(offline=True)
        try:
            page = offline.new_page()
            requests: list[str] = []
            page.on("request", lambda r, seen=requests: seen.append(r.url))
            page.goto(report.as_uri())
            drawn(page)
            assert requests == [report.as_uri()]  # nothing fetched but the file itself
        finally:
            offline.close()


def _sweep_pk(engine: Any, name: str) -> int:
    from sqlalchemy import select
    from sqlalchemy.orm import Session

    with Session(engine) as s:
        return int(s.scalar(select(store.Sweep.id).where(store.Sweep.name == name)))
