"""The objects both front doors (API and CLI) use, built once from settings."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from indexer.checks import JudgmentGate, VersionChecks
from indexer.embedding_cache import EmbeddingCache
from indexer.history import SwapHistory
from indexer.job import IndexReport, ProgressCallback, run_index_job
from indexer.job_lock import alias_job
from relevance.config import Settings
from relevance.embedder import Embedder
from relevance.engines import SearchEngine, create_engine
from relevance.pipeline import SearchPipeline
from reranker.compiled import TreeCompiler
from reranker.feature_log import FeatureLog
from reranker.registry import ModelRegistry
from reranker.serving import Reranker


@dataclass
class Services:
    settings: Settings
    engine: SearchEngine
    embedder: Embedder
    pipeline: SearchPipeline
    feature_log: FeatureLog

    @classmethod
    def from_settings(cls, settings: Settings) -> Services:
        engine = create_engine(settings)
        embedder = Embedder(
            settings.embedding_model,
            batch_size=settings.embedding_batch_size,
            max_seq_length=settings.embedding_max_seq_length,
            torch_threads=settings.torch_threads,
            batch_precision=settings.embedding_batch_precision,
            query_backend=settings.embedding_query_backend,
            query_precision=settings.embedding_query_precision,
            query_prompt=settings.embedding_query_prompt,
            document_prompt=settings.embedding_document_prompt,
            cache_dir=settings.data_dir / "models",
        )
        compiler = TreeCompiler(settings.data_dir / "compiled_models", settings.rerank_compiler)
        reranker = Reranker(
            ModelRegistry(settings.model_root, settings.default_model),
            compiler,
            check_catalog_fit=not settings.rerank_unfit_catalogs,
        )
        pipeline = SearchPipeline(engine, embedder, settings, reranker)
        return cls(
            settings,
            engine,
            embedder,
            pipeline,
            FeatureLog(settings.feature_log_dir, settings.feature_log_sample, keep_days=settings.feature_log_keep_days),
        )

    def index_catalog(
        self,
        catalog: Path,
        progress: ProgressCallback | None = None,
        *,
        smoke_queries: list[str] | None = None,
        gate: JudgmentGate | None = None,
    ) -> IndexReport:
        """Run the index job; the new version must pass the smoke queries (and the gate) to go live."""
        check = VersionChecks(self.pipeline, smoke_queries, gate)
        with alias_job(self.settings.index_job_lock_path, self.settings.index_alias):
            return self._run_index_job(catalog, progress, check)

    def _run_index_job(self, catalog: Path, progress: ProgressCallback | None, check: VersionChecks) -> IndexReport:
        cache = EmbeddingCache(self.settings.embedding_cache_path)
        try:
            return run_index_job(
                catalog,
                engine=self.engine,
                embedder=self.embedder,
                cache=cache,
                alias=self.settings.index_alias,
                embedding_fields=self.settings.embedding_fields,
                dead_letter_dir=self.settings.dead_letter_dir,
                keep_versions=self.settings.keep_versions,
                progress=progress,
                check=check,
                catalog_stats_dir=self.settings.catalog_stats_dir,
                history=SwapHistory(self.settings.swap_history_path),
                max_rejected_share=self.settings.max_rejected_share,
            )
        finally:
            cache.close()
