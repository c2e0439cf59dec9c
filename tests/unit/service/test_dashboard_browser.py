"""The dashboard in a real browser (Debian's chromium through Playwright): the sweep page draws its figures with
the plotly the dashboard serves (no network), sorts its leaderboard, and shows a trial recorded after it loaded
without a reload."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import pytest
from support import fill_sweep_store as fill
from test_dashboard import Server, _sweep_pk  # a sibling module (pytest puts its folder on sys.path)

from tuner import store

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update"]

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs chromium: make test installs it "
                                                                     "(scripts/system-deps.sh)")


def test_the_sweep_page_draws_sorts_and_updates_live(tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    engine: Any = store.open_store(None, tmp_path)
    fill(engine)
    errors: list[str] = []
    with Server(engine) as s, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            page = browser.new_page()
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(f"http://127.0.0.1:{s.port}/sweeps/s1")
            for name in ("progress", "curves", "parallel", "importance"):
                page.wait_for_selector(f"#fig-{name} .main-svg", timeout=30_000)  # plotly drew it
            first = lambda: page.locator("table tbody tr td:nth-child(2)").first.inner_text()  # noqa: E731
            assert first() == "t3"  # ranked, best first
            page.click("th:has-text('rank')")
            page.click("th:has-text('rank')")  # descending: the worst first
            assert first() != "t3"
            started = time.monotonic()
            store.record_trial(engine, _sweep_pk(engine), "late-trial", config={"train.lr": 5e-3}, status="running")
            page.wait_for_selector("text=late-trial", timeout=15_000)  # the page polls every 3 s
            assert time.monotonic() - started < 15
            assert errors == []
        finally:
            browser.close()
    engine.dispose()
