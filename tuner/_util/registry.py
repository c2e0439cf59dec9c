"""Name -> lazily imported factory. An unknown name lists the valid ones (as Ray Tune's search registry does)."""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable, Iterable
from typing import Any


def did_you_mean(name: str, valid: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(valid), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


class UnknownNameError(ValueError):
    def __init__(self, kind: str, name: str, valid: Iterable[str]):
        self.kind, self.name, self.valid = kind, name, sorted(valid)
        super().__init__(f"unknown {kind} {name!r}{did_you_mean(name, self.valid)}; valid: {', '.join(self.valid)}")


class Registry:
    """Maps a name to "module:attribute"; the module is imported only when the factory is asked for."""

    def __init__(self, kind: str, entries: dict[str, str]):
        self.kind = kind
        self._entries = dict(entries)

    def names(self) -> list[str]:
        return list(self._entries)

    def check(self, name: str) -> None:
        if name not in self._entries:
            raise UnknownNameError(self.kind, name, self._entries)

    def get(self, name: str) -> Callable[..., Any]:
        self.check(name)
        module, _, attr = self._entries[name].partition(":")
        return getattr(importlib.import_module(module), attr)
