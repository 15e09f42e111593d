"""One job at a time may move an alias: an index job, a reindex or a rollback.

Two jobs building versions of one alias at once would prune each other's half-built
version (a job prunes every old version beyond ``keep_versions``) and race on the swap
history. The lock is a file in the data directory (the ``filelock`` library), so it
holds apart the jobs that share that directory, on any engine; jobs on other machines
that share only an Elasticsearch or OpenSearch cluster are not held apart by it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, Timeout

from relevance.errors import ReindexRefused


@contextmanager
def alias_job(lock_path: Path, alias: str) -> Iterator[None]:
    """Held for the whole job; a second job for the alias is refused at once, not queued
    behind a build that may take many minutes."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(lock_path, timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise ReindexRefused(
            f"another index job or rollback of {alias!r} is running (it holds {lock_path});"
            " the live index is unchanged: run this one when it has ended",
            field="alias",
        ) from None
    try:
        yield
    finally:
        lock.release()
