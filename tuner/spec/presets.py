"""Named presets: thin compositions of a searcher and a scheduler (as Syne Tune's baselines are).

``search.preset`` fills ``search.algorithm`` and ``search.scheduler``; giving either one as well, with another
value, is an error. Without a preset, mf-tpe is the default; a lone scheduler or algorithm gets its natural
partner (PBT/PB2 sample their initial population at random; a grid runs every combination to the end; mftpe and
rung-asha judge trials at the same rungs, so each is the other's; under fifo every trial runs to the end, and
mftpe is TPE as Optuna runs it, which beat HyperOpt's TPE on most seeds on one fidelity: bench/README.md, "One
fidelity").
"""

from __future__ import annotations

from typing import Any

PRESETS: dict[str, dict[str, str]] = {
    # The default: multi-fidelity TPE learning at every rung, and ASHA without free passes over the same rungs.
    "mf-tpe": {"algorithm": "mftpe", "scheduler": "rung-asha"},
    "asha-tpe": {"algorithm": "tpe", "scheduler": "asha"},
    "hyperband-tpe": {"algorithm": "tpe", "scheduler": "hyperband"},  # BOHB-like: TPE proposes, HyperBand prunes
    "pbt": {"algorithm": "random", "scheduler": "pbt"},
    "random": {"algorithm": "random", "scheduler": "fifo"},
}
DEFAULT = "mf-tpe"
PARTNER_SCHEDULER = {"grid": "fifo", "mftpe": "rung-asha"}  # of a lone algorithm (else asha)
PARTNER_ALGORITHM = {"pbt": "random", "pb2": "random", "rung-asha": "mftpe", "fifo": "mftpe"}  # (else tpe)


def apply_preset(search: dict[str, Any]) -> list[tuple[str, str]]:
    """Fill ``algorithm`` and ``scheduler`` in a raw ``search`` mapping, in place; returns the problems."""
    preset = search.get("preset")
    if preset is None:
        if "algorithm" not in search and "scheduler" not in search:
            search.update(PRESETS[DEFAULT])
        elif "algorithm" not in search:
            search["algorithm"] = PARTNER_ALGORITHM.get(search["scheduler"], "tpe")
        elif "scheduler" not in search:
            search["scheduler"] = PARTNER_SCHEDULER.get(search["algorithm"], "asha")
        return []
    if not isinstance(preset, str) or preset not in PRESETS:
        return [("search.preset", f"unknown preset {preset!r}; valid: {', '.join(PRESETS)}")]
    problems = []
    for key, value in PRESETS[preset].items():
        if key in search and search[key] != value:
            problems.append((f"search.{key}", f"{search[key]!r} conflicts with search.preset {preset!r} "
                                              f"(which means {key}: {value}); drop one of them"))
        search[key] = value
    return problems
