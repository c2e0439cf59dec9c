"""The search-space dialect of a sweep spec and its conversion to Ray Tune domains (Ray is imported only for that).

Each dimension is a one-key mapping, e.g. ``{loguniform: [1.0e-4, 3.0e-2]}``:

  uniform: [lo, hi]          loguniform: [lo, hi]          (floats)
  quniform: [lo, hi, q]      qloguniform: [lo, hi, q]      (rounded to a multiple of q)
  randint: [lo, hi]          integers lo <= x < hi, as ``ray.tune.randint``
  choice: [a, b, ...]        one of the values
  grid: [a, b, ...]          every value (``algorithm: grid`` only)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

KINDS = ("uniform", "loguniform", "quniform", "qloguniform", "randint", "choice", "grid")
DISCRETE = ("choice", "grid")


@dataclass(frozen=True)
class Dimension:
    kind: str
    args: tuple[Any, ...]

    @property
    def is_discrete(self) -> bool:
        return self.kind in DISCRETE

    @property
    def is_integer(self) -> bool:
        """Every value this dimension can produce is an integer."""
        if self.kind == "randint":
            return True
        if self.kind in ("quniform", "qloguniform"):
            return all(_is_int(a) for a in self.args)
        if self.is_discrete:
            return all(_is_int(v) for v in self.args)
        return False

    def candidates(self) -> list[Any]:
        """Values that bound what this dimension produces: all of them if discrete, else the extremes."""
        if self.is_discrete:
            return list(self.args)
        lo, hi = self.args[0], self.args[1]
        if self.kind == "randint":
            return [lo, hi - 1]
        if self.kind in ("quniform", "qloguniform"):
            q = self.args[2]
            lo, hi = math.ceil(lo / q) * q, math.floor(hi / q) * q
            return [int(lo), int(hi)] if self.is_integer else [lo, hi]
        return [lo, hi]

    def values(self, limit: int = 64) -> list[Any] | None:
        """Every value this dimension can take, if there are at most ``limit`` of them; else None."""
        if self.is_discrete:
            return list(self.args)
        if not self.is_integer:
            return None
        lo, hi = self.candidates()
        step = self.args[2] if len(self.args) == 3 else 1
        if (hi - lo) // step + 1 > limit:
            return None
        if self.kind == "qloguniform":
            return None  # log-quantized: the extremes bound it well enough
        return list(range(lo, hi + 1, step))

    def contains(self, value: Any) -> bool:
        if self.is_discrete:
            return value in self.args
        if not _is_num(value) or (self.is_integer and not _is_int(value)):
            return False
        lo, hi = self.candidates()
        return lo <= value <= hi

    def to_tune(self, *, grid: bool = False, integer: bool = False) -> Any:
        """The Ray Tune domain. ``grid`` turns discrete dimensions into grid_search; ``integer`` makes
        quantized dimensions produce ints (for integer spec fields)."""
        from ray import tune

        a = self.args
        if self.is_discrete:
            return tune.grid_search(list(a)) if grid else tune.choice(list(a))
        if self.kind == "uniform":
            return tune.uniform(a[0], a[1])
        if self.kind == "loguniform":
            return tune.loguniform(a[0], a[1])
        if self.kind == "randint":
            return tune.randint(a[0], a[1])
        if self.kind == "quniform":
            return tune.qrandint(*a) if integer else tune.quniform(*a)
        return tune.qlograndint(*a) if integer else tune.qloguniform(*a)


class SpaceError(ValueError):
    pass


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def parse_dimension(value: Any) -> Dimension:
    """Parse one dimension of the dialect; raises SpaceError with a message that says what is wrong."""
    if not isinstance(value, dict) or len(value) != 1:
        raise SpaceError(f"a dimension is a one-key mapping such as {{loguniform: [1.0e-4, 1.0e-2]}}; "
                         f"kinds: {', '.join(KINDS)}")
    (kind, args), = value.items()
    if kind not in KINDS:
        raise SpaceError(f"unknown dimension kind {kind!r}; valid: {', '.join(KINDS)}")
    if not isinstance(args, list) or not args:
        raise SpaceError(f"{kind} takes a non-empty list")
    if kind in DISCRETE:
        return Dimension(kind, tuple(args))
    want = 3 if kind.startswith("q") else 2
    form = "[lo, hi, q]" if want == 3 else "[lo, hi]"
    if len(args) != want or not all(_is_num(a) for a in args):
        raise SpaceError(f"{kind} takes {form} as numbers, got {args!r}")
    lo, hi = args[0], args[1]
    if not lo < hi:
        raise SpaceError(f"{kind} needs lo < hi, got {args!r}")
    if "log" in kind and lo <= 0:
        raise SpaceError(f"{kind} needs lo > 0, got {args!r}")
    if kind == "randint" and not (_is_int(lo) and _is_int(hi)):
        raise SpaceError(f"randint takes integers [lo, hi), got {args!r}")
    if want == 3:
        q = args[2]
        if q <= 0:
            raise SpaceError(f"{kind} needs q > 0, got {args!r}")
        if not all(math.isclose(b / q, round(b / q), rel_tol=0, abs_tol=1e-9) for b in (lo, hi)):
            raise SpaceError(f"{kind} needs lo and hi to be multiples of q, got {args!r}")
    return Dimension(kind, tuple(args))


def parse_space(raw: dict[str, Any]) -> tuple[dict[str, Dimension], list[tuple[str, str]]]:
    """Parse every dimension; returns the parsed ones and (key, problem) for the rest."""
    dims: dict[str, Dimension] = {}
    problems: list[tuple[str, str]] = []
    for key, value in raw.items():
        try:
            dims[key] = parse_dimension(value)
        except SpaceError as e:
            problems.append((key, str(e)))
    return dims, problems


def grid_size(dims: dict[str, Dimension]) -> int:
    return math.prod(len(d.args) for d in dims.values())


def space_size(dims: dict[str, Dimension]) -> int | None:
    """How many configs the space holds where every dimension takes few values (choices, integer ranges of at most
    64); None where a dimension is continuous or a larger range."""
    counts = [d.values() for d in dims.values()]
    if not counts or any(values is None for values in counts):
        return None
    return math.prod(len({repr(v) for v in values}) for values in counts if values is not None)
