"""Persistent embedding cache keyed by (model id, text hash), in SQLite.

Re-indexing an unchanged catalog finds every vector here and embeds nothing.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from relevance.embedder import text_hash

_SCHEMA = """
CREATE TABLE IF NOT EXISTS embeddings (
    model_id TEXT NOT NULL,
    text_hash TEXT NOT NULL,
    vector BLOB NOT NULL,
    PRIMARY KEY (model_id, text_hash)
) WITHOUT ROWID
"""
_LOOKUP_CHUNK = 500  # stays below SQLite's bound-parameter limit


class EmbeddingCache:
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

    def lookup(self, model_id: str, hashes: Sequence[str]) -> dict[str, np.ndarray]:
        found: dict[str, np.ndarray] = {}
        db = self._db()
        unique = list(dict.fromkeys(hashes))
        for start in range(0, len(unique), _LOOKUP_CHUNK):
            chunk = unique[start : start + _LOOKUP_CHUNK]
            placeholders = ",".join("?" * len(chunk))
            rows = db.execute(
                f"SELECT text_hash, vector FROM embeddings WHERE model_id = ? AND text_hash IN ({placeholders})",
                [model_id, *chunk],
            )
            for key, blob in rows:
                found[key] = np.frombuffer(blob, dtype=np.float32)
        return found

    def store(self, model_id: str, items: dict[str, np.ndarray]) -> None:
        db = self._db()
        with db:
            db.executemany(
                "INSERT OR REPLACE INTO embeddings (model_id, text_hash, vector) VALUES (?, ?, ?)",
                [(model_id, key, np.asarray(vector, dtype=np.float32).tobytes()) for key, vector in items.items()],
            )

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


def embed_with_cache(
    texts: Sequence[str],
    model_id: str,
    encode: Callable[[list[str]], np.ndarray],
    cache: EmbeddingCache,
    *,
    chunk_size: int = 2048,
    on_progress: Callable[[int], None] | None = None,
) -> tuple[np.ndarray, int]:
    """Vectors for ``texts`` in order, embedding only texts the cache lacks.

    Returns the vectors and how many texts were newly embedded. New vectors are
    stored chunk by chunk, so an interrupted job keeps the work it finished.
    """
    hashes = [text_hash(text) for text in texts]
    cached = cache.lookup(model_id, hashes)
    missing = list(dict.fromkeys(h for h in hashes if h not in cached))
    text_of = dict(zip(hashes, texts, strict=True))
    if on_progress:
        on_progress(len(texts) - sum(1 for h in hashes if h not in cached))
    for start in range(0, len(missing), chunk_size):
        chunk = missing[start : start + chunk_size]
        vectors = encode([text_of[h] for h in chunk])
        fresh = dict(zip(chunk, vectors, strict=True))
        cache.store(model_id, fresh)
        cached.update(fresh)
        if on_progress:
            on_progress(sum(1 for h in hashes if h in fresh))
    if not texts:
        return np.zeros((0, 0), dtype=np.float32), 0
    return np.vstack([cached[h] for h in hashes]), len(missing)
