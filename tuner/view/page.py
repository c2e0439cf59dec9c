"""The HTML of the sweeps list and of a sweep's page. A fragment is the page's body (tables and empty figure divs);
``shell`` wraps it with plotly and a little script that draws the figures and, on the live dashboard, polls the
JSON API to redraw both. ``report_html`` is the same page as one self-contained file: plotly inlined, no request
made when it opens."""

from __future__ import annotations

import json
from datetime import datetime
from html import escape
from typing import Any
from urllib.parse import quote

from tuner._util.objective import finite

FIGURES = {  # each figure's place, and what it says until the sweep has the data to draw it
    "progress": "best so far against compute: no result yet",
    "curves": "learning curves: no result yet",
    "parallel": "parallel coordinates: no trial with a value yet",
    "importance": "hyperparameter importance: needs 3 trials with results",
}

STYLE = """
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}h1{font-size:1.4em}h2{font-size:1.1em;margin-top:1.5em}
table{border-collapse:collapse;font-size:.85em}td,th{border:1px solid #ddd;padding:3px 7px;text-align:left}
th[data-sort]{cursor:pointer;background:#f4f4f4}.num{text-align:right}.err{color:#b00}.muted{color:#777}
.figs{display:grid;grid-template-columns:repeat(auto-fit,minmax(520px,1fr));gap:10px}
"""

SCRIPT = """
const LIVE = %(live)s, EVERY_MS = 2000;
function draw(figs) {
  for (const [name, fig] of Object.entries(figs || {})) {
    const el = document.getElementById('fig-' + name);
    if (!el) continue;
    if (!el.data) el.innerHTML = '';  // the "not enough data yet" note
    Plotly.react(el, fig.data, fig.layout, {responsive: true, displaylogo: false});
  }
}
document.addEventListener('click', e => {  // sortable tables: click a header
  const th = e.target.closest('th[data-sort]'); if (!th) return;
  const table = th.closest('table'), i = [...th.parentNode.children].indexOf(th), body = table.tBodies[0];
  const asc = th.dataset.dir !== 'asc'; th.dataset.dir = asc ? 'asc' : 'desc';
  const key = r => { const c = r.children[i]; const v = c.dataset.v ?? c.textContent; const n = parseFloat(v);
                     return isNaN(n) ? v : n; };
  [...body.rows].sort((a, b) => { const x = key(a), y = key(b); return (x > y ? 1 : x < y ? -1 : 0) * (asc ? 1 : -1); })
    .forEach(r => body.appendChild(r));
});
async function poll() {
  try {
    const r = await fetch(LIVE, {credentials: 'same-origin'});
    if (r.ok) { const v = await r.json(); document.getElementById('body').innerHTML = v.html; draw(v.figures); }
  } catch (e) {}
  setTimeout(poll, EVERY_MS);
}
draw(%(figures)s);
if (LIVE) setTimeout(poll, EVERY_MS);
"""


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.5g}"
    if isinstance(v, datetime):
        return v.strftime("%Y-%m-%d %H:%M:%S")
    return str(v)


def _cell(v: Any, cls: str = "") -> str:
    sort = f' data-v="{escape(str(v))}"' if isinstance(v, (int, float)) and finite(v) else ""
    return f'<td class="{cls}"{sort}>{escape(_fmt(v))}</td>'


def _table(headers: list[str], rows: list[list[str]], sortable: bool = True) -> str:
    th = "".join(f"<th{' data-sort' if sortable else ''}>{escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"


def _compute(c: dict[str, Any]) -> str:
    parts = [f"{c.get('trial_seconds') or 0:,.0f} trial-seconds"]
    if c.get("tokens"):
        parts.append(f"{c['tokens']:,} tokens")
    return ", ".join(parts)


def sweeps_fragment(sweeps: list[dict[str, Any]], schedules: list[dict[str, Any]], *, link: str = "sweeps/",
                    jobs: list[dict[str, Any]] | str | None = None, jobs_address: str | None = None) -> str:
    """The sweeps list; the cron schedules with their last runs; with ``jobs`` (or the one-line reason they could
    not be listed) the sweeps submitted to the Ray head at ``jobs_address``."""
    if sweeps:
        rows = [[f'<td><a href="{escape(link + quote(w["name"], safe=""))}">{escape(w["name"])}</a></td>',
                 _cell(w["status"]),
                 _cell(w["trials"] - w.get("running", 0), "num"), _cell(w.get("running", 0), "num"),
                 _cell(f"{w['metric']} ({w['mode']})"), _cell(w["best_value"], "num"),
                 _cell((w.get("compute") or {}).get("trial_seconds"), "num"), _cell(w["created_at"]),
                 _cell(w["finished_at"])] for w in sweeps]
        table = _table(["sweep", "state", "trials done", "running", "metric", "best", "trial-seconds", "started",
                        "ended"], rows)
    else:
        table = '<p class="muted">No sweeps in this store yet.</p>'
    out = f"<h1>Sweeps</h1>{table}"
    if schedules:
        rows = [[_cell(s["name"]), _cell(s["cron"]), _cell(s["spec_path"]), _cell(s["enabled"]),
                 _cell(s["last_fired"]), _cell(_run(s.get("last_run")))] for s in schedules]
        out += "<h2>Schedules</h2>" + _table(["schedule", "cron", "spec", "enabled", "last fired", "last run"], rows)
        runs = [[_cell(s["name"]), _cell(r["due_at"]), _cell(r["status"]), _cell(r["sweep_name"]), _cell(r["job_id"]),
                 f'<td class="err">{escape(_first_line(r.get("error")))}</td>']
                for s in schedules for r in s.get("runs") or []]
        if runs:
            out += "<h2>Scheduled runs</h2>" + _table(["schedule", "due", "state", "sweep", "job", "error"], runs)
    if isinstance(jobs, str):
        out += f"<h2>Ray jobs on {escape(jobs_address or '')}</h2><p class='err'>{escape(jobs)}</p>"
    elif jobs is not None:
        rows = [[_cell(j["job"]), _cell(j["sweep"]), _cell(j["status"]), _cell(j["start"]), _cell(j["end"])]
                for j in jobs]
        table = _table(["job", "sweep", "status", "start", "end"], rows) if rows else \
            "<p class='muted'>No sweeps submitted there yet.</p>"
        out += f"<h2>Ray jobs on {escape(jobs_address or '')}</h2>" + table
    return out


def _run(run: dict[str, Any] | None) -> str | None:
    if not run:
        return None
    return " ".join(_fmt(run.get(k)) for k in ("status", "sweep_name", "job_id") if run.get(k))


def sweep_fragment(sweep: dict[str, Any]) -> str:
    trials = sweep["leaderboard"]
    done = sweep["trials"] - sweep.get("running", 0)
    head = (f"<h1>{escape(sweep['name'])}</h1><p>{escape(sweep['status'])} &middot; {done} trials done, "
            f"{sweep.get('running', 0)} running &middot; {escape(sweep['metric'])} ({escape(sweep['mode'])}), best "
            f"{escape(_fmt(sweep['best_value']))} (trial {escape(_fmt(sweep['best_trial_id']))}) &middot; "
            f"{escape(_compute(sweep.get('compute') or {}))} &middot; started {escape(_fmt(sweep['created_at']))}"
            f", ended {escape(_fmt(sweep['finished_at']))}</p>")
    shown = dict(FIGURES)
    if ((sweep.get("spec") or {}).get("search") or {}).get("scheduler") in ("pbt", "pb2"):
        shown["lineage"] = "PBT lineage: no exploit yet"
    figs = '<div class="figs">' + "".join(f'<div id="fig-{n}"><p class="muted">{escape(note)}</p></div>'
                                          for n, note in shown.items()) + "</div>"
    keys = sorted({k for t in trials for k in (t["config"] or {})})
    rows = [[_cell(t["rank"], "num"), _cell(t["trial_id"]), _cell(t["state"]), _cell(t["value"], "num"),
             *[_cell((t["config"] or {}).get(k), "num") for k in keys], _cell(t["iterations"], "num"),
             _cell(t["tokens"], "num"), _cell(t["seconds"], "num")] for t in trials]
    board = "<h2>Leaderboard</h2>" + _table(["rank", "trial", "state", sweep["metric"], *keys, "reports", "tokens",
                                             "seconds"], rows)
    detail_rows = [[_cell(t["trial_id"]), _cell(t["state"]), _cell(_node(t)),
                    f'<td class="err">{escape(_first_line(t.get("error")))}</td>', _cell(t.get("checkpoint"))]
                   for t in trials]
    details = "<h2>Trials</h2>" + _table(["trial", "state", "node", "error", "checkpoint"], detail_rows)
    return head + _budget(sweep) + figs + board + details


def _node(t: dict[str, Any]) -> str | None:
    last = t["results"][-1] if t.get("results") else {}
    return last.get("node_ip") or last.get("hostname")


def _first_line(text: str | None) -> str:
    return (text or "").strip().splitlines()[-1] if text else ""


def _budget(sweep: dict[str, Any]) -> str:
    """The compute budget's limits beside what the sweep's trials spent (Tune's own time counters)."""
    limits = ((sweep.get("spec") or {}).get("budget") or {})
    c = sweep.get("compute") or {}
    rows = []
    # As the budget's ledger counts: each trial's resources x the time it trained.
    res = (sweep.get("spec") or {}).get("resources") or {}
    hours, workers = (c.get("trial_seconds") or 0) / 3600, res.get("workers_per_trial") or 1
    spent = {"cpu_hours": hours * workers * (res.get("cpus_per_worker") or 1),
             "gpu_hours": hours * workers * (res.get("gpus_per_worker") or 0),
             "wall_clock": _wall(sweep)}
    for key, unit in (("cpu_hours", "CPU-hours"), ("gpu_hours", "GPU-hours"), ("wall_clock", "seconds")):
        if limits.get(key) is not None:
            rows.append([_cell(f"{key} ({unit})"), _cell(limits[key], "num"), _cell(spent[key], "num")])
    if not rows:
        return ""
    return "<h2>Budget</h2>" + _table(["limit", "value", "spent so far"], rows, sortable=False)


def _wall(sweep: dict[str, Any]) -> float | None:
    """Seconds from the sweep's start to its end (or now, while it runs)."""
    from datetime import timezone

    start, end = sweep.get("created_at"), sweep.get("finished_at") or datetime.now(timezone.utc)
    if not isinstance(start, datetime) or not isinstance(end, datetime):
        return None
    return (end - start).total_seconds()


def shell(title: str, fragment: str, figures: dict[str, Any], *, plotly: str, live: str | None = None) -> str:
    """A whole page. ``plotly``: a <script> tag (inline source, or a src URL the dashboard serves)."""
    # "</" inside a script's JSON would end the script: a metric or trial named "</script>" must stay data.
    script = SCRIPT % {"live": json.dumps(live), "figures": json.dumps(figures).replace("</", "<\\/")}
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{escape(title)}</title>"
            f"<link rel='icon' href='data:,'><style>{STYLE}</style>"
            f"{plotly}</head><body><div id='body'>{fragment}</div><script>{script}</script></body></html>")


def report_html(sweep: dict[str, Any], figs: dict[str, Any]) -> str:
    """The sweep page as one file that opens offline: plotly.js is inlined."""
    from plotly.offline import get_plotlyjs

    return shell(f"tuner: {sweep['name']}", sweep_fragment(sweep), figs,
                 plotly=f"<script>{get_plotlyjs()}</script>")
