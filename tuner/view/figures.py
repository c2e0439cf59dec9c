"""The sweep page's plotly figures, as plain JSON-able dicts (``plotly.io.to_json`` / ``Figure.to_plotly_json``), from
one sweep of ``tuner.store.sweep_detail``: best-so-far against compute, learning curves with where a scheduler stopped
each trial, parallel coordinates of the tuned hyperparameters, and their importance (Optuna's fANOVA evaluator)."""

from __future__ import annotations

import json
import logging
import math
from datetime import datetime
from typing import Any

import plotly.graph_objects as go
import plotly.io as pio

from tuner._util.objective import Objective, finite

log = logging.getLogger(__name__)
LAYOUT = {"margin": {"l": 60, "r": 20, "t": 40, "b": 50}, "height": 380, "template": "plotly_white"}


def figures(sweep: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Figure name -> figure dict. Figures that need data the sweep lacks (no results yet, fewer than two finished
    trials for importance) are left out."""
    trials = sweep["leaderboard"]
    out = {}
    for name, build in (("progress", _progress), ("curves", _curves), ("parallel", _parallel),
                        ("importance", _importance), ("lineage", _lineage)):
        try:
            fig = build(sweep, trials)
        except Exception:  # one figure's failure must not cost the page: it shows the others
            log.exception("figure %s of sweep %s", name, sweep.get("name"))
            continue
        if fig is not None:
            out[name] = json.loads(pio.to_json(fig))
    return out


def time_attr(sweep: dict[str, Any]) -> str:
    """The x axis of learning curves: the sweep's fidelity (tokens for the LLM trial), else report count."""
    search = (sweep.get("spec") or {}).get("search") or {}
    attr = search.get("time_attr")
    if attr:
        return str(attr)
    rows = [r for t in sweep["leaderboard"] for r in t["results"]]
    return "tokens" if rows and all("tokens" in r for r in rows) else "training_iteration"


def rungs(sweep: dict[str, Any]) -> tuple[float, ...]:
    """The rung milestones of a rung-based sweep (``tuner.spec.fidelity``), or () when none or the spec is gone."""
    from tuner.spec import Spec
    from tuner.spec.fidelity import fidelity

    try:
        return fidelity(Spec.model_validate(sweep.get("spec") or {})).rungs
    except Exception:  # an older spec or a custom one this version no longer reads: draw no rungs
        return ()


def _progress(sweep: dict[str, Any], trials: list[dict[str, Any]]) -> go.Figure | None:
    """The best value reported so far against the compute spent so far, every report in the order it arrived: in
    trial-seconds, and in tokens when the trials count them (buttons switch the axis)."""
    metric, objective = sweep["metric"], Objective(sweep["metric"], sweep["mode"])
    rows = sorted(((r.get("created_at") or datetime.min, t["trial_id"], r) for t in trials for r in t["results"]),
                  key=lambda x: (str(x[0]), x[1]))
    if not rows:
        return None
    spent: dict[str, dict[tuple[str, int], float]] = {"time_total_s": {}, "tokens": {}}
    best, seconds, tokens, ys = None, [], [], []
    for _, trial_id, r in rows:
        for key, per_trial in spent.items():
            per_trial[(trial_id, r.get("generation", 0))] = float(r.get(key) or 0.0)
        if finite(r.get(metric)) and (best is None or objective.better(r[metric], best)):
            best = r[metric]
        if best is not None:
            seconds.append(sum(spent["time_total_s"].values()))
            tokens.append(sum(spent["tokens"].values()))
            ys.append(best)
    fig = go.Figure(go.Scatter(x=seconds, y=ys, mode="lines", line={"shape": "hv"}, name=f"best {metric}"))
    fig.update_layout(title=f"best {metric} so far against compute", xaxis_title="trial-seconds",
                      yaxis_title=metric, **LAYOUT)
    if any(tokens):
        fig.update_layout(updatemenus=[{"type": "buttons", "direction": "right", "x": 1, "y": 1.15, "buttons": [
            {"label": "trial-seconds", "method": "update", "args": [{"x": [seconds]}, {"xaxis.title.text":
                                                                                      "trial-seconds"}]},
            {"label": "tokens", "method": "update", "args": [{"x": [tokens]}, {"xaxis.title.text": "tokens"}]}]}])
    return fig


def _curves(sweep: dict[str, Any], trials: list[dict[str, Any]]) -> go.Figure | None:
    metric, attr, levels = sweep["metric"], time_attr(sweep), rungs(sweep)
    fig = go.Figure()
    for t in trials:
        pts = [(r[attr], r[metric]) for r in t["results"] if finite(r.get(metric)) and r.get(attr) is not None]
        if not pts:
            continue
        xs, ys = zip(*pts, strict=True)
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines+markers", marker={"size": 4}, name=t["trial_id"],
                                 legendgroup=t["trial_id"], hovertemplate=f"{t['trial_id']}<br>%{{x}}: %{{y}}"))
        if t["state"] == "stopped":
            rung = sum(1 for level in levels if xs[-1] >= level * (1 - 1e-9))
            where = f"rung {rung} of {len(levels)}" if levels else f"{attr} {xs[-1]:g}"
            fig.add_trace(go.Scatter(x=[xs[-1]], y=[ys[-1]], mode="markers", showlegend=False,
                                     legendgroup=t["trial_id"], marker={"symbol": "x", "size": 11, "color": "red"},
                                     hovertemplate=f"{t['trial_id']} stopped at {where}<extra></extra>"))
    if not fig.data:
        return None
    for level in levels[:-1]:
        fig.add_vline(x=level, line={"dash": "dot", "color": "grey", "width": 1})
    fig.update_layout(title=f"learning curves (x: stopped early{', dotted: rungs' if levels else ''})",
                      xaxis_title=attr, yaxis_title=metric, **LAYOUT)
    return fig


def _lineage(sweep: dict[str, Any], trials: list[dict[str, Any]]) -> go.Figure | None:
    """PBT/PB2: each trial's span of reports, and an arrow from the donor to the trial at each exploit, with the
    new values on hover."""
    exploits = [(t["trial_id"], e) for t in trials for e in t.get("exploits") or []]
    if not exploits:
        return None
    attr = time_attr(sweep)
    fig = go.Figure()
    for t in trials:
        xs = [r[attr] for r in t["results"] if r.get(attr) is not None]
        if xs:
            fig.add_trace(go.Scatter(x=[min(xs), max(xs)], y=[t["trial_id"]] * 2, mode="lines", showlegend=False,
                                     line={"color": "lightgrey", "width": 6}, hoverinfo="skip"))
    for trial_id, e in exploits:
        x = (e.get("at") or {}).get(attr)
        values = ", ".join(f"{k}={_short(v)}" for k, v in (e.get("config") or {}).items())
        fig.add_trace(go.Scatter(x=[x, x], y=[e["donor"], trial_id], mode="lines+markers", showlegend=False,
                                 marker={"symbol": ["circle", "triangle-right"], "size": [6, 11]},
                                 hovertemplate=f"{trial_id} cloned {e['donor']} at {attr} {x}<br>{values}"
                                               "<extra></extra>"))
    fig.update_layout(title=f"PBT lineage ({len(exploits)} exploits: donor -> trial)", xaxis_title=attr,
                      yaxis_title="trial", **LAYOUT)
    return fig


def _short(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _parallel(sweep: dict[str, Any], trials: list[dict[str, Any]]) -> go.Figure | None:
    scored = [t for t in trials if finite(t["value"])]
    keys = sorted({k for t in scored for k in (t["config"] or {})})
    if not scored or not keys:
        return None
    dims = []
    for k in keys:
        values = [(t["config"] or {}).get(k) for t in scored]
        numbers = _numbers(values)
        if numbers is not None:
            logged = _log_scaled(numbers)
            dims.append({"label": f"log10 {k}" if logged else k,
                         "values": [math.log10(v) if logged else v for v in numbers]})
        else:
            labels = sorted({str(v) for v in values})
            dims.append({"label": k, "values": [labels.index(str(v)) for v in values],
                         "tickvals": list(range(len(labels))), "ticktext": labels})
    metric = [t["value"] for t in scored]
    dims.append({"label": sweep["metric"], "values": metric})
    scale = "Viridis_r" if sweep["mode"] == "min" else "Viridis"
    fig = go.Figure(go.Parcoords(line={"color": metric, "colorscale": scale, "showscale": True}, dimensions=dims))
    layout = {**LAYOUT, "margin": {"l": 80, "r": 80, "t": 100, "b": 30}}  # room for the axis labels above
    fig.update_layout(title={"text": "hyperparameters of every trial with a value", "y": 0.97}, **layout)
    return fig


def _importance(sweep: dict[str, Any], trials: list[dict[str, Any]]) -> go.Figure | None:
    """fANOVA importance (Optuna's evaluator) over the trials' values at one fidelity, so that they compare: the
    longest that at least 3 trials reached (with early stopping most trials never run to the end)."""
    import optuna

    at, level = _at_one_fidelity(sweep, trials)
    keys = sorted({k for t in trials if t["trial_id"] in at for k in (t["config"] or {})})
    if len(at) < 3 or not keys or len(set(at.values())) < 2:  # equal values: nothing to apportion
        return None
    configs = {t["trial_id"]: t["config"] for t in trials if t["trial_id"] in at}
    dists: dict[str, Any] = {}
    for k in keys:
        numbers = _numbers([c.get(k) for c in configs.values()])
        if numbers is not None:
            lo, hi = min(numbers), max(numbers)
            if lo < hi:
                dists[k] = optuna.distributions.FloatDistribution(lo, hi, log=_log_scaled(numbers))
        else:
            dists[k] = optuna.distributions.CategoricalDistribution(sorted({str(c.get(k)) for c in configs.values()}))
    if not dists:
        return None
    direction = optuna.study.StudyDirection.MINIMIZE if sweep["mode"] == "min" else \
        optuna.study.StudyDirection.MAXIMIZE
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no "A new study created in memory" per page view
    try:
        study = optuna.create_study(direction=direction)
        for trial_id, value in at.items():
            c = configs[trial_id]
            params = {k: (float(c[k]) if isinstance(d, optuna.distributions.FloatDistribution) else str(c.get(k)))
                      for k, d in dists.items()}
            study.add_trial(optuna.trial.create_trial(params=params, distributions=dists, value=value))
        scores = optuna.importance.get_param_importances(
            study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0))
    finally:
        optuna.logging.set_verbosity(verbosity)
    names = list(scores)[::-1]
    fig = go.Figure(go.Bar(x=[scores[n] for n in names], y=names, orientation="h"))
    fig.update_layout(title=f"hyperparameter importance (fANOVA, {len(at)} trials at {time_attr(sweep)} {level:g})",
                      xaxis_title="share of the variance of " + sweep["metric"], **LAYOUT)
    return fig


def _at_one_fidelity(sweep: dict[str, Any], trials: list[dict[str, Any]], least: int = 3) -> tuple[dict[str, float],
                                                                                                  float]:
    """Each trial's value at the longest fidelity that at least ``least`` trials reached (a trial's value there is
    what it reported first at or past it), and that fidelity."""
    metric, attr = sweep["metric"], time_attr(sweep)
    curves = {t["trial_id"]: [(float(r[attr]), float(r[metric])) for r in t["results"]
                              if finite(r.get(metric)) and finite(r.get(attr))] for t in trials if t["config"]}
    reached = sorted((pts[-1][0] for pts in curves.values() if pts), reverse=True)
    if len(reached) < least:
        return {}, 0.0
    level = reached[least - 1]
    return {tid: next(v for t, v in pts if t >= level) for tid, pts in curves.items()
            if pts and pts[-1][0] >= level}, level


def _numbers(values: list[Any]) -> list[float] | None:
    """The values as floats when all are numbers (not booleans), else None (a categorical dimension)."""
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return [float(v) for v in values]
    return None


def _log_scaled(values: list[float]) -> bool:
    """Positive values over two orders of magnitude or more: drawn and modelled on a log scale."""
    return min(values) > 0 and max(values) / min(values) >= 100
