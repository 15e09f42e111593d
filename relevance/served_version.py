"""Which index version an alias serves, looked up at most every few seconds.

What belongs to one version (its catalog statistics, the model its vectors were
embedded by) never changes once the version is committed, so readers cache it per
version and only the alias lookup needs a time limit.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Generic, TypeVar

from relevance.engines.base import SearchEngine

T = TypeVar("T")

VERSION_TTL_SECONDS = 5.0


class ServedVersion:
    def __init__(self, engine: SearchEngine | None, alias: str, ttl_seconds: float = VERSION_TTL_SECONDS) -> None:
        """Without an engine, ``alias`` names the one version served (checks before a swap)."""
        self.engine = engine
        self.alias = alias
        self.ttl_seconds = ttl_seconds
        self._checked_at = float("-inf")
        self._version: str | None = None if engine else alias

    @classmethod
    def pinned(cls, version: str) -> ServedVersion:
        return cls(None, version)

    def current(self) -> str | None:
        """The version, None while the alias points nowhere."""
        if self.engine is None:
            return self._version
        now = time.monotonic()
        # While nothing is served, look every time: a search fails then anyway, and the
        # first one after an index appears must not read the empty catalog's statistics.
        if self._version is None or now - self._checked_at >= self.ttl_seconds:
            self._version = self.engine.alias_target(self.alias)
            self._checked_at = now
        return self._version


class PerVersion(Generic[T]):
    """What ``read`` gives for the last ``keep`` versions asked for (two: the one a worker
    serves and the alias's new one, which ``/readyz`` asks about during a swap; with one,
    each would evict the other, and rereading an old version a job just pruned fails)."""

    def __init__(self, read: Callable[[str | None], T], keep: int = 2) -> None:
        self._read = read
        self._keep = keep
        self._recent: tuple[tuple[str | None, T], ...] = ()  # swapped whole: threads never mix versions

    def get(self, version: str | None) -> T:
        recent = self._recent
        for known, value in recent:
            if known == version:
                return value
        value = self._read(version)
        self._recent = ((version, value), *recent[: self._keep - 1])
        return value
