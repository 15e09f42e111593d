"""Persistent embedding cache keyed by (model id, text hash), in SQLite.

Re-indexing an unchanged catalog finds every vector here and embeds nothing.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np

from relevance.embedder import text_hash
from relevance.errors import RelevanceError

log = logging.getLogger(__name__)
T = TypeVar("T")

# A rowid table: vectors are ~1.5 KB blobs, which WITHOUT ROWID tables store poorly.
_SCHEMA = """
CREATE TABLE IF NOT EXISTS vectors (
    model_id TEXT NOT NULL,
    text_hash TEXT NOT NULL,
    vector BLOB NOT NULL,
    UNIQUE (model_id, text_hash)
)
"""
_LOOKUP_CHUNK = 500  # stays below SQLite's bound-parameter limit


class EmbeddingCache:
    """Vectors by (model id, text hash). It holds nothing that cannot be embedded again, so a
    file SQLite cannot read is set aside (``<name>.corrupt-<time>``) and a new one started,
    and a stored vector of the wrong size counts as a miss."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._connection: sqlite3.Connection | None = None

    def _db(self) -> sqlite3.Connection:
        if self._connection is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._connection = sqlite3.connect(self.path)
            self._connection.execute("PRAGMA journal_mode=WAL")
            self._connection.execute(_SCHEMA)
        return self._connection

    def _run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        try:
            try:
                return work(self._db())
            except sqlite3.DatabaseError as exc:
                # Only the base class means an unreadable file ("file is not a database",
                # "database disk image is malformed"); its subclasses are locks, a full disk...
                if type(exc) is not sqlite3.DatabaseError:
                    raise
                self._set_aside(exc)
                return work(self._db())
        except sqlite3.Error as exc:
            raise RelevanceError(f"the embedding cache {self.path} failed: {exc}", field="embedding_cache") from exc

    def _set_aside(self, exc: sqlite3.Error) -> None:
        self.close()
        aside = self.path.with_name(f"{self.path.name}.corrupt-{time.strftime('%Y%m%dT%H%M%S')}")
        for suffix in ("-wal", "-shm"):
            self.path.with_name(self.path.name + suffix).unlink(missing_ok=True)
        self.path.replace(aside)
        log.warning("the embedding cache %s is unreadable (%s); moved to %s, starting a new one", self.path, exc, aside)

    def lookup(self, model_id: str, hashes: Sequence[str]) -> dict[str, np.ndarray]:
        unique = list(dict.fromkeys(hashes))

        def read(db: sqlite3.Connection) -> dict[str, bytes]:
            blobs: dict[str, bytes] = {}
            for start in range(0, len(unique), _LOOKUP_CHUNK):
                chunk = unique[start : start + _LOOKUP_CHUNK]
                placeholders = ",".join("?" * len(chunk))
                rows = db.execute(
                    f"SELECT text_hash, vector FROM vectors WHERE model_id = ? AND text_hash IN ({placeholders})",
                    [model_id, *chunk],
                )
                blobs.update(rows)
            return blobs

        blobs = self._run(read)
        # Every vector of one model has one size: a stored one of another size (a damaged
        # row) is embedded again rather than stopping the job at np.vstack.
        size = Counter(len(blob) for blob in blobs.values()).most_common(1)[0][0] if blobs else 0
        usable = size > 0 and size % 4 == 0  # whole float32s
        found = {k: np.frombuffer(blob, dtype=np.float32) for k, blob in blobs.items() if usable and len(blob) == size}
        if len(found) < len(blobs):
            log.warning(
                "%d cached vectors of %s have the wrong size; embedding them again", len(blobs) - len(found), model_id
            )
        return found

    def store(self, model_id: str, items: dict[str, np.ndarray]) -> None:
        rows = [(model_id, key, np.asarray(vector, dtype=np.float32).tobytes()) for key, vector in items.items()]

        def write(db: sqlite3.Connection) -> None:
            with db:
                db.executemany("INSERT OR REPLACE INTO vectors (model_id, text_hash, vector) VALUES (?, ?, ?)", rows)

        self._run(write)

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


@dataclass(frozen=True)
class EmbeddingStats:
    texts: int
    unique_texts: int
    cache_hits: int  # unique texts found in the cache
    embedded: int  # unique texts the model embedded


def embed_with_cache(
    texts: Sequence[str],
    model_id: str,
    encode: Callable[[list[str]], np.ndarray],
    cache: EmbeddingCache,
    *,
    chunk_size: int = 2048,
    on_progress: Callable[[int], None] | None = None,
) -> tuple[np.ndarray, EmbeddingStats]:
    """Vectors for ``texts`` in order, embedding only unique texts the cache lacks.

    New vectors are stored chunk by chunk, so an interrupted job keeps the work it finished.
    ``on_progress`` receives how many more of ``texts`` have their vector.
    """
    hashes = [text_hash(text) for text in texts]
    unique = dict(zip(hashes, texts, strict=True))
    vectors = cache.lookup(model_id, list(unique))
    missing = [h for h in unique if h not in vectors]
    copies = Counter(hashes)
    if on_progress:
        on_progress(len(texts) - sum(copies[h] for h in missing))
    for start in range(0, len(missing), chunk_size):
        chunk = missing[start : start + chunk_size]
        fresh = dict(zip(chunk, encode([unique[h] for h in chunk]), strict=True))
        cache.store(model_id, fresh)
        vectors.update(fresh)
        if on_progress:
            on_progress(sum(copies[h] for h in chunk))
    stats = EmbeddingStats(len(texts), len(unique), len(unique) - len(missing), len(missing))
    if not texts:
        return np.zeros((0, 0), dtype=np.float32), stats
    return np.vstack([vectors[h] for h in hashes]), stats
