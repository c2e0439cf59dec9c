"""bayesopt: Gaussian-process Bayesian optimization (bayesian-optimization 3.x) as a Ray Tune Searcher.

Ray's own ``BayesOptSearch`` calls ``bayes_opt.UtilityFunction``, which bayes_opt 2.0 removed, so it fails with every
current release; pinning an old bayes_opt is not an option. This adapter drives the 3.x API directly and covers what a
sweep needs: nested Tune spaces with constants, log-scaled, quantized, integer and categorical dimensions, ``mode``,
``points_to_evaluate``, seeded suggestions, a "constant liar" for trials still running, and save/restore.

Each ``suggest()`` fits a fresh ``BayesianOptimization`` on the stored observations, so the state is plain data: a
suggestion depends only on the seed, the suggestion count and the observations (and pending points) so far.
"""

from __future__ import annotations

import contextlib
import copy
import io
import math
import numbers
import warnings
from typing import Any, NamedTuple

import numpy as np
from bayes_opt import BayesianOptimization, acquisition
from ray import cloudpickle
from ray.tune.search import UNDEFINED_METRIC_MODE, UNDEFINED_SEARCH_SPACE, Searcher
from ray.tune.search.sample import Categorical, Domain, Float, Integer, LogUniform, Quantized, Uniform
from ray.tune.search.variant_generator import parse_spec_vars
from ray.tune.utils import flatten_dict
from ray.tune.utils.util import unflatten_dict
from threadpoolctl import threadpool_limits

from tuner.search import initial_points

ACQUISITIONS = {  # bayes_opt's own defaults (kappa for an unconstrained UCB, xi as for its constrained EI)
    "ucb": lambda: acquisition.UpperConfidenceBound(kappa=2.576),
    "ei": lambda: acquisition.ExpectedImprovement(xi=0.01),
    "poi": lambda: acquisition.ProbabilityOfImprovement(xi=0.01),
}
_STATE = ("_metric", "_mode", "_acquisition", "_n_initial", "_random_state", "_points", "_dims", "_constants",
          "_observed", "_pending", "_count")


class _Dim(NamedTuple):
    """One searched dimension, its value within [low, high]. bayes_opt searches x: the value ("float"), its log
    ("log"), k of the grid value k * q ("grid", an integer parameter) or an index into ``choices`` ("choice")."""

    kind: str
    low: Any
    high: Any
    cast: type = float
    q: float = 0  # grid step; 0: continuous
    choices: tuple = ()

    def pbounds(self) -> tuple:
        if self.kind == "float":
            return self.low, self.high
        if self.kind == "log":
            return math.log(self.low), math.log(self.high)
        if self.kind == "grid":
            return round(self.low / self.q), round(self.high / self.q), int
        return 0, len(self.choices) - 1, int

    def decode(self, x: float) -> Any:
        if self.kind == "choice":
            return self.choices[min(max(round(x), 0), len(self.choices) - 1)]
        v = math.exp(x) if self.kind == "log" else x * self.q if self.kind == "grid" else x
        v = round(v / self.q) * self.q if self.q else v
        return self.cast(min(max(v, self.low), self.high))

    def encode(self, value: Any) -> float:
        if self.kind == "choice":
            for i, c in enumerate(self.choices):
                with contextlib.suppress(TypeError, ValueError):  # an array's == is no bool
                    if c is value or bool(c == value):
                        return float(i)
            raise ValueError(f"{value!r} is not one of the choices {list(self.choices)}")
        if self.kind == "grid":
            lo, hi, _ = self.pbounds()
            return float(min(max(round(value / self.q), lo), hi))
        v = min(max(float(value), self.low), self.high)
        return math.log(v) if self.kind == "log" else v


def _grid_index(bound: float, q: float, inward: Any) -> int:
    """``bound``'s index on the grid of multiples of q, rounded inwards unless it is (nearly) on the grid."""
    scaled = bound / q
    return round(scaled) if math.isclose(scaled, round(scaled)) else int(inward(scaled))


def _dimension(key: str, domain: Domain) -> _Dim | tuple[Any]:
    """A Tune domain as a _Dim, or as a 1-tuple of its only value; ValueError naming ``key`` if unsupported."""
    sampler, q = domain.get_sampler(), 0
    if isinstance(sampler, Quantized):
        sampler, q = sampler.get_sampler(), sampler.q
    if isinstance(domain, Categorical) and isinstance(sampler, Uniform) and domain.categories:
        dim = _Dim("choice", 0, len(domain.categories) - 1, choices=tuple(domain.categories))
        return dim if len(dim.choices) > 1 else (dim.choices[0],)
    if not (isinstance(domain, (Float, Integer)) and isinstance(sampler, (Uniform, LogUniform))):
        raise ValueError(f"bayesopt cannot search {key!r}: unsupported domain {type(domain).__name__} "
                         f"with sampler {sampler}; use uniform, loguniform, randint, lograndint, q* or choice")
    cast, log = int if isinstance(domain, Integer) else float, isinstance(sampler, LogUniform)
    if not q and cast is float:
        dim = _Dim("log" if log else "float", domain.lower, domain.upper)
        return dim if dim.low < dim.high else (dim.low,)
    # A grid of multiples of q. Tune's integer samplers exclude the upper bound when q is 1 (randint, lograndint).
    q = q or 1
    lo, hi = _grid_index(domain.lower, q, math.ceil), _grid_index(domain.upper, q, math.floor)
    if cast is int and q == 1:
        hi -= 1
    if hi < lo:
        raise ValueError(f"bayesopt cannot search {key!r}: no multiple of q={q} in [{domain.lower}, {domain.upper}]")
    low, high = cast(max(lo * q, domain.lower)), cast(min(hi * q, domain.upper))
    if lo == hi:
        return (low,)
    return _Dim("log" if log else "grid", low, high, cast, q)  # log: search log(value), then snap to the grid


class BayesOptSearcher(Searcher):
    """Bayesian optimization over a (nested) Ray Tune space with bayes_opt 3.x; see the module docstring."""

    def __init__(self, space: dict | None = None, metric: str | None = None, mode: str | None = None,
                 points_to_evaluate: list[dict] | None = None, acquisition: str = "ucb", n_initial_points: int = 5,
                 random_state: int = 0):
        if acquisition not in ACQUISITIONS:
            raise ValueError(f"unknown acquisition {acquisition!r}: expected one of {', '.join(ACQUISITIONS)}")
        super().__init__(metric=metric, mode=mode)
        self._acquisition = acquisition
        self._n_initial = max(1, n_initial_points)  # the GP needs one real observation to lie relative to
        self._random_state = random_state
        self._points = [flatten_dict(p, prevent_delimiter=True) for p in points_to_evaluate or []]
        self._dims: dict[str, _Dim] | None = None  # flat key ("train/lr") -> dimension; None until a space is set
        self._constants: dict[str, Any] = {}
        self._observed: list[tuple[dict[str, float], float]] = []  # (bayes_opt params, target to maximize)
        self._pending: dict[str, dict[str, float]] = {}  # trial_id -> bayes_opt params, suggested, not completed
        self._count = 0
        if space:
            self._set_space(space)

    def _set_space(self, config: dict) -> None:
        _, _, grid_vars = parse_spec_vars(config)
        if grid_vars:
            keys = ", ".join("/".join(map(str, path)) for path, _ in grid_vars)
            raise ValueError(f"bayesopt cannot search grid_search parameters: {keys}")
        flat = flatten_dict(config, prevent_delimiter=True)
        dims = {}
        for path, domain in parse_spec_vars(flat)[1]:
            key = "/".join(map(str, path))
            if len(path) > 1:
                raise ValueError(f"bayesopt cannot search {key!r}: a search domain inside a list")
            dims[key] = _dimension(key, domain)
        self._constants = {k: v for k, v in flat.items() if not isinstance(dims.get(k), _Dim)}
        self._constants.update({k: d[0] for k, d in dims.items() if not isinstance(d, _Dim)})
        self._dims = {k: d for k, d in dims.items() if isinstance(d, _Dim)}

    def set_search_properties(self, metric: str | None, mode: str | None, config: dict, **spec: Any) -> bool:
        if self._dims is not None:
            return False
        self._set_space(config)
        self._metric = metric or self._metric
        self._mode = mode or self._mode
        return True

    def _optimizer(self, seed: int) -> BayesianOptimization:
        with warnings.catch_warnings():  # "Non-float parameters are experimental": integer and choice dimensions
            warnings.simplefilter("ignore")
            return BayesianOptimization(f=None, pbounds={k: d.pbounds() for k, d in (self._dims or {}).items()},
                                        acquisition_function=ACQUISITIONS[self._acquisition](), random_state=seed,
                                        allow_duplicate_points=True, verbose=0)

    def _next_params(self, seed: int, random: bool) -> dict[str, float]:
        if not self._dims:
            return {}
        opt = self._optimizer(seed)
        if random:
            return {k: float(v) for k, v in opt.random_sample(1)[0].items()}
        # Constant liar: pending points count as observed at the worst target, so the GP steers away from them.
        lie = min(target for _, target in self._observed)
        # bayes_opt prints every duplicate it registers (even at verbose=0); GP fits warn on convergence. One BLAS
        # thread: the GP's matrices are tiny and threads only contend (5x slower on two cores).
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings(), threadpool_limits(1):
            warnings.simplefilter("ignore")
            for params, target in [*self._observed, *((p, lie) for p in self._pending.values())]:
                opt.register(params=params, target=target)
            return {k: float(v) for k, v in opt.suggest().items()}

    def suggest(self, trial_id: str) -> dict | None:
        dims = self._dims
        if dims is None:
            raise RuntimeError(UNDEFINED_SEARCH_SPACE.format(cls=type(self).__name__, space="space"))
        if not self._metric or self._mode not in ("min", "max"):
            raise RuntimeError(UNDEFINED_METRIC_MODE.format(cls=type(self).__name__, metric=self._metric,
                                                            mode=self._mode))
        seed = int(np.random.SeedSequence([self._random_state % 2**32, self._count]).generate_state(1)[0])
        self._count += 1
        point = self._points.pop(0) if self._points else {}
        params = self._next_params(seed, random=bool(point) or len(self._observed) < self._n_initial)
        params.update({k: dims[k].encode(v) for k, v in point.items() if k in dims})  # missing: random
        self._pending[trial_id] = params
        config = {**copy.deepcopy(self._constants), **{k: d.decode(params[k]) for k, d in dims.items()}, **point}
        return unflatten_dict(config)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        params = self._pending.pop(trial_id, None)
        value = (result or {}).get(self._metric)
        if params is not None and isinstance(value, numbers.Real) and math.isfinite(value):
            self._observed.append((params, float(value) if self._mode == "max" else -float(value)))

    def get_state(self) -> dict:
        return copy.deepcopy({name: getattr(self, name) for name in _STATE})

    def set_state(self, state: dict) -> None:
        self.__dict__.update(state)

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as f:
            cloudpickle.dump(self.get_state(), f)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as f:
            self.set_state(cloudpickle.load(f))


def bayesopt(spec: Any) -> BayesOptSearcher:
    s = spec.search
    # Startup trials as for tpe: like Optuna's 10, but a third of small sweeps so the GP gets to steer them.
    return BayesOptSearcher(points_to_evaluate=initial_points(spec) or None,
                            acquisition=s.acquisition or "ucb",
                            n_initial_points=min(10, max(2, s.num_trials // 3)), random_state=s.seed)
