"""The index job: catalog -> validated products -> vectors -> new index version -> alias swap.

A failed or interrupted job drops the half-built version and leaves the alias on
the version it served before.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from indexer.catalog import CatalogSummary, load_catalog
from indexer.embedding_cache import EmbeddingCache, EmbeddingStats, embed_with_cache
from indexer.history import SwapHistory
from indexer.product import Product
from indexer.product_text import product_text
from relevance.embedder import PROBE_TEXT, Embedder
from relevance.engines.base import IndexedProduct, SearchEngine
from relevance.errors import CatalogError, EngineError, ReindexRefused, RelevanceError
from reranker.catalog_stats import remove_version_stats, write_version_stats

log = logging.getLogger(__name__)
UPSERT_BATCH = 1000


@dataclass
class IndexReport:
    summary: dict[str, Any]
    version: str
    previous_version: str | None
    dead_letter_path: Path
    embedding: EmbeddingStats
    seconds: float
    pruned: list[str]
    checks: dict[str, Any]
    warnings: list[str] = field(default_factory=list)  # bookkeeping after the swap that failed

    def as_dict(self) -> dict[str, Any]:
        return {
            **self.summary,
            "version": self.version,
            "previous_version": self.previous_version,
            "dead_letter": str(self.dead_letter_path),
            "unique_texts": self.embedding.unique_texts,
            "embedded": self.embedding.embedded,
            "embedding_cache_hits": self.embedding.cache_hits,
            "seconds": round(self.seconds, 2),
            "products_per_second": round(self.summary["indexed"] / self.seconds, 1) if self.seconds else None,
            "pruned_versions": self.pruned,
            "checks": self.checks,
            "warnings": self.warnings,
        }


ProgressCallback = Callable[[str, int, int], None]  # (stage, done, total)
VersionCheck = Callable[[str, list[Product]], dict[str, Any]]  # raises ReindexRefused to stop the swap


def run_index_job(
    catalog_path: Path,
    *,
    engine: SearchEngine,
    embedder: Embedder,
    cache: EmbeddingCache,
    alias: str,
    embedding_fields: list[str],
    dead_letter_dir: Path,
    keep_versions: int,
    progress: ProgressCallback | None = None,
    check: VersionCheck | None = None,
    catalog_stats_dir: Path | None = None,
    history: SwapHistory | None = None,
    max_rejected_share: float = 1.0,
) -> IndexReport:
    """Build a new version of ``alias`` from ``catalog_path``, check it, and swap the alias onto it.

    ``history`` records the swap, for ``reindex --rollback``.
    """
    started = time.perf_counter()
    # Microseconds and the pid, opened exclusively: two jobs started together never share one file.
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
    dead_letter_path = dead_letter_dir / f"{alias}-{stamp}-{os.getpid()}.jsonl"
    catalog = load_catalog(catalog_path, dead_letter_path, exclusive=True)
    if not catalog.products:
        raise CatalogError(
            f"no valid product in {catalog_path} ({catalog.summary.rejected} rejected, see {dead_letter_path});"
            " the live index is unchanged",
            field="catalog",
        )
    _refuse_a_mostly_rejected_catalog(catalog_path, catalog.summary, max_rejected_share, dead_letter_path)
    products = catalog.products
    total = len(products)

    def report(stage: str, done: int) -> None:
        if progress:
            progress(stage, done, total)

    texts = [product_text(product, embedding_fields) for product in products]
    embedded_so_far = 0

    def on_embedded(count: int) -> None:
        nonlocal embedded_so_far
        embedded_so_far += count
        report("embed", embedded_so_far)

    vectors, embedding_stats = embed_with_cache(
        texts, embedder.model_id, embedder.encode, cache, on_progress=on_embedded
    )

    # through the cache like the products: a re-index of a cached catalog loads no model
    probe, _ = embed_with_cache([PROBE_TEXT], embedder.model_id, embedder.encode, cache)
    metadata = {
        "catalog": str(catalog_path),
        "embedding_model": embedder.model_id,
        "embedding_dims": int(vectors.shape[1]),
        "embedding_probe": [round(float(x), 6) for x in probe[0]],
        "embedding_fields": embedding_fields,
        "summary": catalog.summary.as_dict(),
    }
    version = engine.create_version(alias, int(vectors.shape[1]), metadata)
    try:
        refused: list[tuple[str, str]] = []
        for start in range(0, total, UPSERT_BATCH):
            batch = [
                IndexedProduct(product, vector)
                for product, vector in zip(
                    products[start : start + UPSERT_BATCH], vectors[start : start + UPSERT_BATCH], strict=True
                )
            ]
            refused.extend(engine.bulk_upsert(version, batch))
            report("index", min(start + UPSERT_BATCH, total))
        engine.commit(version)
        _dead_letter_refused(dead_letter_path, refused, products)
        summary = catalog.summary
        summary.rejected += len(refused)
        summary.indexed -= len(refused)
        distinct = summary.read - summary.duplicates  # a duplicate row is no product the engine could refuse
        if refused and summary.rejected / distinct > max_rejected_share:  # the engine's refusals count too
            raise ReindexRefused(
                f"the engine refused {len(refused)} of the {total} products (see {dead_letter_path}); with the"
                f" catalog's bad rows {summary.rejected} of {distinct} distinct rows are out, more than"
                f" max_rejected_share ({max_rejected_share:.0%}): nothing went live and the live index is unchanged",
                field="catalog",
            )
        count = engine.count(version)
        if count != summary.indexed:
            raise EngineError(f"new version {version} holds {count} products, expected {summary.indexed}")
        if catalog_stats_dir is not None:  # the reranker's catalog statistics belong to the version
            write_version_stats(catalog_stats_dir, version, products, keep_cached=keep_versions)
        checks = check(version, products) if check else {}
        previous = engine.swap_alias(alias, version)
    except BaseException:  # interrupts too: never leave a half-built version behind
        log.warning("index job failed; dropping half-built version %s", version)
        try:
            engine.drop_version(version)
            if catalog_stats_dir is not None:
                remove_version_stats(catalog_stats_dir, version)
        except (OSError, RelevanceError) as exc:  # the engine that failed the job may fail this too: say the cause
            log.warning("half-built version %s was not dropped (the next job drops it): %s", version, _said(exc))
        raise
    # The new version is live from here: what fails after this is reported, not raised,
    # so the job does not say it failed when the catalog is being served.
    warnings: list[str] = []
    pruned: list[str] = []
    try:
        if history is not None:
            history.record(version, previous, {v.name for v in engine.list_versions(alias)})
    except (OSError, RelevanceError) as exc:
        warnings.append(f"the swap was not recorded, so a rollback goes to the newest older version: {_said(exc)}")
    try:
        pruned = prune_versions(engine, alias, keep_versions, rollback_target=previous)
        if catalog_stats_dir is not None:
            for name in pruned:
                remove_version_stats(catalog_stats_dir, name)
    except (OSError, RelevanceError) as exc:
        warnings.append(f"old versions were not all pruned (the next job prunes them): {_said(exc)}")
    for warning in warnings:
        log.warning("version %s is live, but %s", version, warning)
    elapsed = time.perf_counter() - started
    return IndexReport(
        summary.as_dict(), version, previous, dead_letter_path, embedding_stats, elapsed, pruned, checks, warnings
    )


def _refuse_a_mostly_rejected_catalog(path: Path, summary: CatalogSummary, share: float, dead_letters: Path) -> None:
    """A file whose rows are mostly bad is a wrong file or a broken export, not a catalog
    that shrank: building it would put a fraction of the products live."""
    if summary.read and summary.rejected / summary.read > share:
        raise ReindexRefused(
            f"{summary.rejected} of the {summary.read} rows of {path} are bad, more than max_rejected_share"
            f" ({share:.0%}; see {dead_letters}); nothing was built and the live index is unchanged",
            field="catalog",
        )


def _said(exc: Exception) -> str:
    return exc.detail if isinstance(exc, RelevanceError) else f"{type(exc).__name__}: {exc}"


def _dead_letter_refused(path: Path, refused: list[tuple[str, str]], products: list) -> None:
    if not refused:
        return
    by_id = {product.product_id: product for product in products}
    with path.open("a", encoding="utf-8") as handle:
        for product_id, reason in refused:
            row = by_id[product_id].model_dump(exclude_none=True)
            handle.write(json.dumps({"line": None, "reason": f"engine refused: {reason}", "row": row}) + "\n")


def prune_versions(engine: SearchEngine, alias: str, keep: int, rollback_target: str | None = None) -> list[str]:
    """Drop the oldest versions beyond ``keep``; the live one is never dropped, and the
    version a rollback would return to (not always the newest) goes last.

    The caller holds the alias's job lock (indexer.job_lock), so a version that was never
    committed is no other job's build in progress: a job killed outright (SIGKILL, a power
    cut) left it, and it goes first, without taking the place of a version kept for rollback.
    """
    dropped = []
    versions = []
    for version in sorted(engine.list_versions(alias), key=lambda v: v.name):
        if version.complete or version.is_live:
            versions.append(version)
        else:
            engine.drop_version(version.name)
            dropped.append(version.name)
    # Versions that answer no search (servers: red, closed) go first, the rollback target last
    # unless it is one of them (a rollback to it is refused), the rest oldest first.
    removable = sorted(
        (v for v in versions if not v.is_live),
        key=lambda v: (v.unavailable is None, v.name == rollback_target, v.name),
    )
    excess = len(versions) - keep
    for version in removable[: max(excess, 0)]:
        engine.drop_version(version.name)
        dropped.append(version.name)
    return dropped
