"""Which version was live before each one went live: what `reindex --rollback` returns to.

Version names only tell the order versions were built in, not the order they served
in (after a rollback and a new reindex the two differ), so each index job's swap is
recorded. The record is a small JSON file in the data directory, beside the versions'
catalog statistics, so it works the same for every engine.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from relevance.engines.base import SearchEngine
from relevance.errors import EngineError, NotFoundError


class SwapHistory:
    """``{"previous": {version: the version live before it went live, or null}}`` of one alias."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def recorded(self) -> dict[str, str | None]:
        """Each recorded version: the version live before it went live (None: none was)."""
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise EngineError(f"the swap history {self.path} is unreadable: {exc}", field="rollback") from exc
        previous = data.get("previous") if isinstance(data, dict) else None
        if not isinstance(previous, dict):
            raise EngineError(f"the swap history {self.path} does not hold a 'previous' map", field="rollback")
        return previous

    def record(self, version: str, previous: str | None, kept: set[str]) -> None:
        """``version`` went live, replacing ``previous``; versions no longer kept are forgotten."""
        try:
            known = self.recorded()
        except EngineError:  # a damaged record is replaced; only older rollbacks lose their target
            known = {}
        known = {name: before for name, before in known.items() if name in kept}
        known[version] = previous
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        temporary.write_text(json.dumps({"previous": known}, indent=1), encoding="utf-8")
        temporary.replace(self.path)


def rollback(engine: SearchEngine, alias: str, history: SwapHistory) -> tuple[str, str]:
    """Point ``alias`` back at the version that was live before the live one went live.

    Returns (the version now live, the one it replaced). Repeated rollbacks walk further
    back. A live version with no record (swapped in before swaps were recorded) returns
    to the newest version built before it. Raises NotFoundError when there is no such
    version or it is no longer kept.
    """
    live = engine.alias_target(alias)
    if live is None:
        raise NotFoundError(f"no version of {alias!r} is live; nothing to roll back", field="rollback")
    recorded = history.recorded()
    if live in recorded:
        previous = recorded[live]
    else:  # swapped in before swaps were recorded: the newest version built before it (names sort by build time)
        older = sorted(v.name for v in engine.list_versions(alias) if v.name < live and v.complete)
        previous = older[-1] if older else None
    if previous is None:
        raise NotFoundError(
            f"no earlier version of {alias!r} to roll back to: none is recorded as live before {live}",
            field="rollback",
        )
    if previous not in {version.name for version in engine.list_versions(alias) if version.complete}:
        raise NotFoundError(
            f"{previous}, the version live before {live}, is no longer kept (keep_versions); nothing to roll back to",
            field="rollback",
        )
    engine.swap_alias(alias, previous)
    return previous, live
