"""mftpe: a multi-fidelity, multivariate TPE behind Ray Tune's Searcher interface: BOHB's model (Falkner et al.
2018) with a constant liar for trials still running.

- It learns from every rung, not from final results only: each report at or past a rung milestone is the trial's
  observation at that rung (``tuner._util.rungs.RungRecords``), and a trial a scheduler stopped early is an
  observation at the rungs it reached, never a final result. A trial that ended on its own is a full-length result,
  wherever it ended (an objective that reports once, or stops itself before ``max_t``).
- While no trial has been stopped early (one fidelity: an objective that reports once, or the fifo scheduler), every
  result is full-length and none was selected by a cut, and it is TPE as Optuna runs it: after 10 random trials the
  best 10% of them (at most 25) make the good density, the rest and the trials still running the bad one, and no
  proposal is random. BOHB's rules below are for results that cuts have selected; on one fidelity they cost (bench/
  README.md, "One fidelity").
- Until BOHB's model can run on full-length results, it models across rungs, as Optuna's TPE ranks pruned trials:
  after 10 random trials (Optuna's and HyperOpt's startup), every finished trial is ranked by the highest rung it
  reached, then by its value there, and the best ceil(sqrt(n) / 4) of the n (HyperOpt's TPE's good set) make the
  good density; the rest, and the trials still running (a constant liar, so concurrent proposals differ), the bad
  one. A trial whose rung has been shown not to predict a higher rung's is never "good" on its value there. A small
  good set drawn from how far trials got finds the good region fast; BOHB's per-rung model with a third of its
  proposals random, which ran here before, was slower to it on most LCBench tasks (bench/README.md, "A model across
  rungs until the top rung has one"). The candidates are drawn with BOHB's bandwidth factor (3): a good set of a
  few trials, drawn as it is, stays in the first basin it found.
- On full-length results it is BOHB's model (Falkner et al. 2018): once a "good" set of the best max(d + 1, 15%) of
  the full-length trials and a "bad" set of the rest both hold more than d points, it models on that rung alone.
  Trials a scheduler stopped below it (ranked under the ones that went on) and those still running (the liar) join
  the bad set.
- The densities are BOHB's multivariate kernel density estimates (``tuner.search._kde``) over the unit cube of
  ``tuner.search._space``: log ranges on a log scale, numeric choices as ordered grids. 64 candidates are drawn from
  the good density l(x); the one with the largest l(x) / g(x) wins.
- On full-length results a third of the proposals are drawn uniformly instead, as a hedge against a misleading model
  (BOHB's default); those random trials form the hedge pool (``tuner._util.rungs.HEDGE_TRIALS``): rung-asha judges
  them among themselves below its last cut. A model misled by configs that start fast would otherwise fill the low
  rungs with them, and the random configs that lead only late would be cut there as well.
- On a space whose every dimension takes only some values (choices, integer or quantized ranges) a config it has
  already run (or is running) is never proposed again while an untried one is left: the trial is seeded, so a rerun
  repeats its curve and teaches nothing, and TPE's good density, once it sits on the best config, would propose
  that config ever after. Once every config of a finite space (``tuner.spec.space.space_size``: choices and integer
  ranges of at most 64) has run, it ends the sweep (Ray Tune's ``Searcher.FINISHED``), however many trials
  ``search.num_trials`` allowed.
- Seeded; its whole state pickles, so ``tuner resume`` continues with the same model and random stream.
"""

from __future__ import annotations

import copy
import itertools
import logging
import math
import pickle
from typing import Any

import numpy as np
from ray.tune.search import Searcher
from ray.tune.search.variant_generator import parse_spec_vars

from tuner._util.objective import Objective, finite
from tuner._util.rungs import HEDGE_TRIALS, RungRecords
from tuner.search import initial_points
from tuner.search._kde import Parzen
from tuner.search._space import Param, param_of, uniform

# BOHB's defaults (Falkner et al. 2018) on full-length results: the good set is the best 15% (at least d + 1), a
# third of the proposals are random, and the best of 64 candidates drawn from the good density wins.
GOOD_FRACTION = 0.15
RANDOM_FRACTION = 1 / 3
CANDIDATES = 64
# Across rungs: random trials before the first model (Optuna's and HyperOpt's startup), and HyperOpt's TPE's good
# set, ceil(GAMMA sqrt(n)) of n trials; its candidates are drawn with BOHB's bandwidth factor: each kernel's
# bandwidths times BANDWIDTH_FACTOR (the ratio l(x) / g(x) that picks among them is unwidened).
STARTUP_TRIALS = 10
# While no trial has been stopped early (one fidelity: an objective that reports once, or a scheduler that stops
# none), every result is full-length and unselected, and it is TPE as Optuna runs it: the best ceil(TPE_GAMMA n) of
# n, at most TPE_MAX_GOOD, make the good density, and no proposal is random.
TPE_GAMMA = 0.1
TPE_MAX_GOOD = 25
GAMMA = 0.25
BANDWIDTH_FACTOR = 3.0
# Uniform draws tried for a config not yet run; then a finite space of at most LISTED_CONFIGS configs is listed to
# find one (a space nearly exhausted), and a larger one proposes a config again.
UNTRIED_DRAWS = 256
LISTED_CONFIGS = 100_000

log = logging.getLogger(__name__)


class MultiFidelityTPE(Searcher):
    def __init__(self, *, time_attr: str, levels: tuple[float, ...], stops_early: bool, seed: int = 0,
                 points_to_evaluate: list[dict] | None = None, random_fraction: float = RANDOM_FRACTION,
                 space_size: int | None = None, metric: str | None = None, mode: str | None = None):
        super().__init__(metric=metric, mode=mode)
        self.time_attr, self.stops_early = time_attr, stops_early
        self.records = RungRecords(levels)
        self.random_fraction = random_fraction
        self.space_size = space_size  # the configs of a finite space (tuner.spec.space.space_size): then it ends
        self.rng = np.random.default_rng(seed)
        self.points = list(points_to_evaluate or [])
        self.params: list[Param] = []
        self.configs: dict[str, np.ndarray] = {}  # trial id -> its encoded config
        self.live: set[str] = set()  # suggested, not yet complete
        self.hedge: set[str] = set()  # proposed at random while the model was on the top rung
        self.tried: set[str] = set()  # the configs run or running, where a config can come up twice (_key)
        self.last_seen: dict[str, Any] = {}  # trial id -> the time_attr of the last result it was given

    # --- Ray Tune's Searcher interface ---------------------------------------------------------------------

    def set_search_properties(self, metric: str | None, mode: str | None, config: dict, **spec: Any) -> bool:
        if self.params:
            return False
        _, domains, grids = parse_spec_vars(config)
        if grids:
            raise ValueError("mftpe does not run grid_search dimensions: use choice, or algorithm grid")
        self.params = [param_of(path, domain) for path, domain in domains]
        self.tried = {k for k in map(self._key, self.configs.values()) if k is not None}
        self._metric, self._mode = self._metric or metric, self._mode or mode
        return True

    def suggest(self, trial_id: str) -> dict | None:
        if not self.params:
            raise RuntimeError("mftpe has no search space: Ray Tune calls set_search_properties first")
        if self.points:  # suggested as given; the model sees it encoded
            point = self.points.pop(0)
            self._add(trial_id, np.array([p.encode(_get(point, p.path)) for p in self.params]))
            return copy.deepcopy(point)
        if self.space_size is not None and len(self.tried) >= self.space_size:
            log.info("mftpe: every one of the %d configs of the space has run; the sweep ends", self.space_size)
            return Searcher.FINISHED  # type: ignore[return-value]  # (Ray's own annotation leaves it out)
        x, hedge = self._propose()
        if hedge:
            self.hedge.add(trial_id)
            HEDGE_TRIALS.add(trial_id)
        self._add(trial_id, x)
        return self._decode(x)

    def _add(self, trial_id: str, x: np.ndarray) -> None:
        self.configs[trial_id] = x
        self.live.add(trial_id)
        key = self._key(x)
        if key is not None:
            self.tried.add(key)

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        loss = self._loss(result)
        if trial_id in self.configs and self.time_attr in result:
            self.last_seen[trial_id] = result[self.time_attr]
            if loss is not None:
                self.records.record(trial_id, float(result[self.time_attr]), loss)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        """A trial that ended on its own ran its whole fidelity, however far that was (an objective that reports
        once, or stops itself before ``max_t``): its value is a full-length result. One a scheduler stopped counts at
        the rungs it reached. Ray Tune tells the two apart for us: it passes a trial that returned its last result
        again, while the result that made a scheduler stop a trial never reached ``on_trial_result``. A NaN or
        infinite final value teaches nothing (as tuner.search.FiniteResults does for the others)."""
        self.live.discard(trial_id)
        last_seen = self.last_seen.pop(trial_id, None)
        loss = self._loss(result or {})
        if error or loss is None or trial_id not in self.configs:
            return
        t = (result or {}).get(self.time_attr)
        if t is None or not self.stops_early or (last_seen is not None and last_seen == t):
            self.records.record_final(trial_id, loss)
        else:
            self.records.record(trial_id, float(t), loss)

    def get_state(self) -> dict:
        return dict(self.__dict__)

    def set_state(self, state: dict) -> None:
        self.__dict__.update(state)
        self.hedge = set(state.get("hedge", ()))
        self.tried = {k for k in map(self._key, self.configs.values()) if k is not None}
        HEDGE_TRIALS.update(self.hedge)

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as f:
            pickle.dump(self.get_state(), f)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as f:
            self.set_state(pickle.load(f))

    # --- the model ------------------------------------------------------------------------------------------

    def model_rung(self) -> int | None:
        """The highest rung with enough observations for both densities whose ranking is trusted, or None."""
        d = len(self.params)
        for k in range(self.records.top, -1, -1):
            n = len(self.records.values[k])
            if n - self._good_count(n) > d and self.records.reliable(k):
                return k
        return None

    def _key(self, x: np.ndarray) -> str | None:
        """The config ``x`` decodes to, comparable with others; None where the space has a continuous dimension (two
        draws never coincide there)."""
        if not all(p.discrete or p.integer or p.q for p in self.params):
            return None
        return repr(self._decode(x))

    def _uniform(self) -> np.ndarray:
        """A uniform draw of a config not yet run, while the space has one."""
        x = uniform(self.params, self.rng)
        for _ in range(UNTRIED_DRAWS):
            if self._key(x) not in self.tried:
                return x
            x = uniform(self.params, self.rng)
        if self.space_size is None or self.space_size > LISTED_CONFIGS:
            return x
        configs = itertools.product(*(p.positions() for p in self.params))
        left = [c for c in configs if self._key(np.array(c)) not in self.tried]
        return np.array(left[int(self.rng.integers(len(left)))]) if left else x

    def _good_count(self, n: int) -> int:
        return max(len(self.params) + 1, math.ceil(GOOD_FRACTION * n))

    def _propose(self) -> tuple[np.ndarray, bool]:
        """A config, and whether it joins the hedge pool."""
        top = self.records.top
        cut = self._stopped_early()  # ranked under the ones that went on: bad on the top rung too
        if not cut:
            return self._propose_tpe(), False
        if self.model_rung() != top:
            return self._propose_across_rungs(), False
        if self.rng.random() < self.random_fraction:
            return self._uniform(), True
        ranked = sorted(self.records.values[top].items(), key=lambda item: item[1])
        n_good = self._good_count(len(ranked))
        pending = [t for t in self.live if self.records.rung_reached(t) < top]  # the constant liar
        good, bad = [t for t, _ in ranked[:n_good]], [t for t, _ in ranked[n_good:]]
        return self._best_candidate(good, bad + pending + cut), False

    def _stopped_early(self) -> list[str]:
        """The finished trials that a scheduler stopped below the top rung."""
        return [t for t in self.configs if t not in self.live and 0 <= self.records.rung_reached(t) < self.records.top]

    def _propose_tpe(self) -> np.ndarray:
        """TPE on full-length results, with Optuna's good set, while no trial has been stopped early."""
        ranked = [t for t, _ in sorted(self.records.values[self.records.top].items(), key=lambda item: item[1])]
        if len(self.configs) < STARTUP_TRIALS or len(ranked) < 2:
            return self._uniform()
        n_good = min(math.ceil(TPE_GAMMA * len(ranked)), TPE_MAX_GOOD)
        return self._best_candidate(ranked[:n_good], ranked[n_good:] + sorted(self.live))

    def _propose_across_rungs(self) -> np.ndarray:
        finished = ((t, self.records.rung_reached(t)) for t in self.configs if t not in self.live)
        reached = {t: k for t, k in finished if k >= 0}  # finished trials with a value, and their highest rung
        if len(self.configs) < STARTUP_TRIALS or len(reached) < 2:
            return self._uniform()
        ranked = sorted(reached, key=lambda t: (-reached[t], self.records.values[reached[t]][t]))
        n_good = math.ceil(GAMMA * math.sqrt(len(ranked)))
        trusted = {k: self.records.reliable(k) for k in set(reached.values())}
        good = [t for t in ranked if trusted[reached[t]]][:n_good]
        if not good:
            return self._uniform()
        return self._best_candidate(good, [t for t in ranked if t not in good] + sorted(self.live), BANDWIDTH_FACTOR)

    def _best_candidate(self, good: list[str], bad: list[str], widen: float = 1.0) -> np.ndarray:
        below = Parzen(self.params, np.array([self.configs[t] for t in good]))
        above = Parzen(self.params, np.array([self.configs[t] for t in bad]))
        candidates = below.sample(self.rng, CANDIDATES, widen)
        if self.tried:
            candidates = candidates[[self._key(x) not in self.tried for x in candidates]]
            if not len(candidates):  # the good density sits on configs already run
                return self._uniform()
        return candidates[int(np.argmax(below.log_pdf(candidates) - above.log_pdf(candidates)))]

    def _decode(self, x: np.ndarray) -> dict:
        out: dict = {}
        for p, u in zip(self.params, x, strict=True):
            node = out
            for key in p.path[:-1]:
                node = node.setdefault(key, {})
            node[p.path[-1]] = p.decode(float(u))
        return out

    def _loss(self, result: dict) -> float | None:
        value = result.get(self._metric) if self._metric else None
        if not finite(value):
            return None
        return Objective(self._metric or "", self._mode or "min").loss(float(value))  # type: ignore[arg-type]


def _get(point: dict, path: tuple[Any, ...]) -> Any:
    node: Any = point
    for key in path:
        node = node[key]
    return node


def mftpe(spec: Any) -> Any:
    from tuner.spec.fidelity import fidelity
    from tuner.spec.space import space_size

    f = fidelity(spec)
    return MultiFidelityTPE(time_attr=f.time_attr, levels=f.rungs or (f.max_t,), stops_early=spec.search.scheduler
                            != "fifo", seed=spec.search.seed, points_to_evaluate=initial_points(spec) or None,
                            space_size=space_size(spec.dimensions()))
