"""What tuner's Tune callbacks share: a hook that fails costs a warning, never the sweep."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

Hook = Callable[..., None]


def best_effort(describe: Callable[[Any], str]) -> Callable[[Hook], Hook]:
    """Decorate a callback's hooks: an exception is logged as ``<describe(callback)>: <hook> failed: ...`` (on the
    hook's module's logger) and the sweep goes on."""

    def wrap(hook: Hook) -> Hook:
        @functools.wraps(hook)
        def run(self: Any, *args: Any, **kwargs: Any) -> None:
            try:
                hook(self, *args, **kwargs)
            except Exception as e:
                logging.getLogger(hook.__module__).warning("%s: %s failed: %s: %s", describe(self), hook.__name__,
                                                           type(e).__name__, e)

        return run

    return wrap
