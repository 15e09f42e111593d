from __future__ import annotations

import errno
import json
import os
import signal
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

import indexer.job
from indexer.job_lock import alias_job
from relevance.embedder import Embedder
from relevance.errors import CatalogError, EngineError, ReindexRefused
from relevance.filters import SearchFilters
from tests.conftest import BAD_CATALOG, CATALOG, make_services


def test_bad_rows_are_dead_lettered_and_good_ones_indexed(tmp_path: Path, embedder: Embedder) -> None:
    services = make_services(tmp_path, embedder, max_rejected_share=1.0)  # 15 of its 19 rows are bad
    report = services.index_catalog(BAD_CATALOG).as_dict()
    assert (report["read"], report["indexed"], report["rejected"], report["duplicates"]) == (19, 3, 15, 1)
    assert services.engine.count("products") == 3
    assert set(services.engine.get("products", ["ok1", "ok2", "ok3", "neg-price"])) == {"ok1", "ok2", "ok3"}
    letters = [json.loads(line) for line in Path(report["dead_letter"]).read_text().splitlines()]
    assert len(letters) == 15 and all(letter["reason"] and letter["line"] for letter in letters)


def test_reindexing_an_unchanged_catalog_embeds_nothing_and_swaps(tmp_path: Path, embedder: Embedder) -> None:
    services = make_services(tmp_path, embedder, keep_versions=2)
    first = services.index_catalog(CATALOG)
    assert first.embedding.embedded == 40 and first.previous_version is None
    second = services.index_catalog(CATALOG)
    assert second.embedding.embedded == 0 and second.embedding.cache_hits == 40
    assert second.previous_version == first.version
    assert services.engine.alias_target("products") == second.version
    third = services.index_catalog(CATALOG)
    assert third.pruned == [first.version]
    assert [v.name for v in services.engine.list_versions("products")] == [second.version, third.version]


def test_a_catalog_without_valid_rows_changes_nothing(tmp_path: Path, embedder: Embedder) -> None:
    services = make_services(tmp_path, embedder)
    live = services.index_catalog(CATALOG).version
    empty = tmp_path / "bad.jsonl"
    empty.write_text('{"title": "no id"}\n')
    with pytest.raises(CatalogError, match="no valid product"):
        services.index_catalog(empty)
    assert services.engine.alias_target("products") == live


def test_a_catalog_of_mostly_bad_rows_builds_nothing_and_the_share_is_a_setting(
    tmp_path: Path, embedder: Embedder
) -> None:
    services = make_services(tmp_path, embedder)
    live = services.index_catalog(CATALOG).version
    broken = tmp_path / "broken.jsonl"  # one good row of three: an export gone wrong, not a smaller catalog
    broken.write_text('{"product_id": "a", "title": "Drill"}\n{"title": "no id"}\n{"product_id": "b"}\n')
    with pytest.raises(ReindexRefused, match=r"2 of the 3 rows of .* are bad, more than max_rejected_share"):
        services.index_catalog(broken)
    assert services.engine.alias_target("products") == live
    assert [v.name for v in services.engine.list_versions("products")] == [live]
    tolerant = make_services(tmp_path, embedder, max_rejected_share=0.7)
    assert tolerant.index_catalog(broken).summary["indexed"] == 1


def test_a_second_job_for_the_alias_is_refused_while_one_runs(tmp_path: Path, embedder: Embedder) -> None:
    services = make_services(tmp_path, embedder)
    live = services.index_catalog(CATALOG).version
    services.index_catalog(CATALOG)
    with alias_job(services.settings.index_job_lock_path, "products"):  # a job of another process, say
        with pytest.raises(ReindexRefused, match="another index job or rollback of 'products' is running"):
            services.index_catalog(CATALOG)
        rollback = _cli(tmp_path, "reindex", "--rollback")
        assert rollback.exit_code == 1 and "another index job or rollback" in rollback.output
    assert len(services.engine.list_versions("products")) == 2, "nothing built, nothing pruned"
    assert _cli(tmp_path, "reindex", "--rollback").exit_code == 0, "the lock goes with the job"
    assert services.engine.alias_target("products") == live


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_a_job_stopped_by_sigterm_or_sighup_cleans_up_as_ctrl_c_does(
    tmp_path: Path, embedder: Embedder, signum: int
) -> None:
    from relevance.cli import _stopped_like_ctrl_c

    services = make_services(tmp_path, embedder)
    live = services.index_catalog(CATALOG).version
    real_engine = services.engine

    class Killed(_FailingCommit):
        def commit(self, version: str) -> None:
            os.kill(os.getpid(), signum)  # kill, timeout, systemd or a container stopping the job
            time.sleep(5)  # the handler interrupts this

    services.engine = Killed(real_engine)
    before = signal.getsignal(signum)
    with pytest.raises(SystemExit) as stopped, _stopped_like_ctrl_c():
        services.index_catalog(CATALOG)
    assert stopped.value.code == 128 + signum
    assert real_engine.alias_target("products") == live
    assert [v.name for v in real_engine.list_versions("products")] == [live]
    assert signal.getsignal(signum) == before, "the handler is the process's own again"


def test_a_version_a_killed_job_left_unfinished_is_marked_and_dropped_by_the_next_job(
    tmp_path: Path, embedder: Embedder
) -> None:
    services = make_services(tmp_path, embedder, keep_versions=2)
    first = services.index_catalog(CATALOG).version
    orphan = services.engine.create_version("products", 384, {})  # SIGKILL before its commit: no cleanup ran
    listed = _cli(tmp_path, "versions")
    assert f"{orphan}         0 products" in listed.output and "unfinished" in listed.output
    report = services.index_catalog(CATALOG)
    assert orphan in report.pruned, "dropped first"
    assert [v.name for v in services.engine.list_versions("products")] == [first, report.version]
    assert _cli(tmp_path, "reindex", "--rollback").exit_code == 0
    assert services.engine.alias_target("products") == first


def test_a_version_that_fails_to_start_leaves_no_directory(
    tmp_path: Path, embedder: Embedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    from relevance.engines.embedded import EmbeddedEngine

    services = make_services(tmp_path, embedder)
    live = services.index_catalog(CATALOG).version

    def disk_full(*args: Any, **kwargs: Any) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(EmbeddedEngine, "_open_tantivy", disk_full)
    with pytest.raises(OSError):
        services.index_catalog(CATALOG)
    versions = sorted(p.name for p in (tmp_path / "indexes" / "versions").iterdir())
    assert versions == [live]


def test_cli_says_a_file_system_error_in_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from relevance.services import Services

    def disk_full(self: Services, *args: Any, **kwargs: Any) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "indexes" / "x"))

    monkeypatch.setattr(Services, "index_catalog", disk_full)
    result = _cli(tmp_path, "index", str(CATALOG))
    assert result.exit_code == 1
    assert result.output.strip().splitlines()[-1] == f"Error: {tmp_path / 'indexes' / 'x'}: No space left on device"
    assert "Traceback" not in result.output


def test_demo_indexing_a_bad_catalog_says_why_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from relevance.cli import _index_in_child
    from relevance.config import load_settings

    empty = tmp_path / "empty.jsonl"
    empty.write_text('{"title": "no id"}\n')
    with pytest.raises(SystemExit) as exited:
        _index_in_child(load_settings(data_dir=tmp_path).model_dump(mode="json"), str(empty))
    assert exited.value.code == 1
    said = capsys.readouterr().err.strip().splitlines()
    assert said[-1].startswith("Error: no valid product in") and "Traceback" not in "\n".join(said)


def test_jobs_started_in_the_same_second_keep_their_own_dead_letters(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    class SameSecond(datetime):  # two jobs started 1 microsecond apart
        ticks = iter(range(1, 10))

        @classmethod
        def now(cls, tz: Any = None) -> datetime:
            return datetime(2026, 11, 29, 18, 0, 26, next(cls.ticks), tzinfo=UTC)

    monkeypatch.setattr(indexer.job, "datetime", SameSecond)
    paths = []
    for name, rows in (("mixed.jsonl", 3), ("badattr.jsonl", 1)):
        catalog = tmp_path / name
        catalog.write_text('{"title": "no id"}\n' * rows)
        with pytest.raises(CatalogError, match="no valid product") as caught:  # fails before the engine is used
            indexer.job.run_index_job(
                catalog,
                engine=None,  # type: ignore[arg-type]
                embedder=None,  # type: ignore[arg-type]
                cache=None,  # type: ignore[arg-type]
                alias="products",
                embedding_fields=["title"],
                dead_letter_dir=tmp_path / "dead_letter",
                keep_versions=2,
            )
        paths.append(Path(caught.value.detail.split("see ")[1].split(")")[0]))
    assert paths[0] != paths[1]
    for path, rows in zip(paths, (3, 1), strict=True):
        assert len(path.read_text().splitlines()) == rows, path


class _FailingCommit:
    """Fault injection: the engine dies while committing a new version."""

    def __init__(self, engine) -> None:
        self._engine = engine

    def __getattr__(self, name: str):
        return getattr(self._engine, name)

    def commit(self, version: str) -> None:
        raise EngineError("disk full")


@pytest.mark.parametrize("failure", [EngineError("disk full"), KeyboardInterrupt()])
def test_a_failed_job_keeps_the_live_alias_and_removes_the_half_built_version(
    tmp_path: Path, embedder: Embedder, failure: BaseException
) -> None:
    services = make_services(tmp_path, embedder)
    live = services.index_catalog(CATALOG).version
    real_engine = services.engine

    class Failing(_FailingCommit):
        def commit(self, version: str) -> None:
            raise failure

    services.engine = Failing(real_engine)
    with pytest.raises(type(failure)):
        services.index_catalog(CATALOG)
    assert real_engine.alias_target("products") == live
    assert [v.name for v in real_engine.list_versions("products")] == [live]
    assert real_engine.lexical_search("products", "drill", SearchFilters(), 3)
    services.engine = real_engine
    assert services.index_catalog(CATALOG).previous_version == live  # re-running works


def test_duplicate_texts_are_embedded_once(tmp_path: Path) -> None:
    import numpy as np

    from indexer.embedding_cache import EmbeddingCache, embed_with_cache

    calls: list[list[str]] = []

    def encode(texts: list[str]) -> np.ndarray:
        calls.append(texts)
        return np.eye(4, dtype=np.float32)[[len(t) % 4 for t in texts]]

    cache = EmbeddingCache(tmp_path / "cache.sqlite3")
    progress: list[int] = []
    vectors, stats = embed_with_cache(["ab", "abc", "ab"], "m", encode, cache, on_progress=progress.append)
    assert calls == [["ab", "abc"]] and sum(progress) == 3
    assert (stats.texts, stats.unique_texts, stats.embedded, stats.cache_hits) == (3, 2, 2, 0)
    assert np.array_equal(vectors[0], vectors[2])
    _, again = embed_with_cache(["abc", "abcd"], "m", encode, cache)
    assert (again.embedded, again.cache_hits) == (1, 1) and calls[-1] == ["abcd"]
    _, other_model = embed_with_cache(["abc"], "other", encode, cache)
    assert other_model.embedded == 1


def test_cli_rollback_points_the_alias_at_the_previous_version(tmp_path: Path, embedder: Embedder) -> None:
    from click.testing import CliRunner

    from relevance.cli import main

    services = make_services(tmp_path, embedder)
    first = services.index_catalog(CATALOG).version
    second = services.index_catalog(CATALOG).version
    runner = CliRunner()
    result = runner.invoke(main, ["--data-dir", str(tmp_path), "reindex", "--rollback"])
    assert result.exit_code == 0, result.output
    assert services.engine.alias_target("products") == first and second in result.output
    again = runner.invoke(main, ["--data-dir", str(tmp_path), "reindex", "--rollback"])
    assert again.exit_code != 0 and "no earlier version" in again.output


def _cli(data_dir: Path, *args: str):
    from click.testing import CliRunner

    from relevance.cli import main

    return CliRunner().invoke(main, ["--data-dir", str(data_dir), *args])


def test_cli_rollback_after_a_rollback_and_a_reindex_returns_to_the_version_live_before(
    tmp_path: Path, embedder: Embedder
) -> None:
    services = make_services(tmp_path, embedder)
    first = services.index_catalog(CATALOG).version
    services.index_catalog(CATALOG)
    assert _cli(tmp_path, "reindex", "--rollback").exit_code == 0
    third = services.index_catalog(CATALOG).version  # replaced `first`, not the newer `second`
    result = _cli(tmp_path, "reindex", "--rollback", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == {"alias": "products", "version": first, "previous_version": third}
    assert services.engine.alias_target("products") == first


def test_cli_rollback_refuses_options_it_would_ignore(tmp_path: Path, embedder: Embedder) -> None:
    services = make_services(tmp_path, embedder)
    services.index_catalog(CATALOG)
    live = services.index_catalog(CATALOG).version
    smoke = tmp_path / "smoke.csv"
    smoke.write_text("query_id,query\n1,drill\n")
    for options in (["--gate-margin", "5"], ["--smoke-queries", str(smoke)], [str(CATALOG)]):
        result = _cli(tmp_path, "reindex", "--rollback", *options)
        assert result.exit_code == 2 and "--rollback takes no catalog and no other option" in result.output
        assert options[0] in result.output
    assert services.engine.alias_target("products") == live


def test_cli_versions_says_when_no_version_is_kept(tmp_path: Path) -> None:
    result = _cli(tmp_path, "versions")
    assert result.exit_code == 0 and "no version of 'products' is kept" in result.output


@pytest.mark.parametrize(
    ("rows", "message"),
    [("", "holds no query"), ("1,cordless drill\n2,\n", ":3: query '2' has a blank text")],
)
def test_cli_smoke_queries_file_without_queries_or_with_a_blank_one_is_refused(
    tmp_path: Path, embedder: Embedder, rows: str, message: str
) -> None:
    services = make_services(tmp_path, embedder)
    live = services.index_catalog(CATALOG).version
    smoke = tmp_path / "smoke.csv"
    smoke.write_text("query_id,query\n" + rows)
    result = _cli(tmp_path, "reindex", str(CATALOG), "--smoke-queries", str(smoke))
    assert result.exit_code == 2 and message in result.output and str(smoke) in result.output
    assert [v.name for v in services.engine.list_versions("products")] == [live]


def test_cli_gate_without_query_texts_is_refused_before_anything_is_embedded(tmp_path: Path) -> None:
    judgments = tmp_path / "judgments.csv"
    judgments.write_text("query_id,product_id,grade\nq1,d1,2\n")
    result = _cli(tmp_path, "reindex", str(CATALOG), "--gate", str(judgments))
    assert result.exit_code == 2 and "pass --gate-queries FILE" in result.output
    assert not (tmp_path / "embedding_cache.sqlite3").exists(), "refused before embedding"
    queries = tmp_path / "queries.csv"
    queries.write_text("query_id,query\nq2,drill\n")
    result = _cli(tmp_path, "reindex", str(CATALOG), "--gate", str(judgments), "--gate-queries", str(queries))
    assert result.exit_code == 2 and f"no judged query of {judgments} has a text in {queries}" in result.output


def test_cli_gate_options_without_a_gate_are_refused(tmp_path: Path) -> None:
    result = _cli(tmp_path, "reindex", str(CATALOG), "--gate-margin", "0.5", "--grade-offset", "1")
    assert result.exit_code == 2 and "--gate-margin, --grade-offset without --gate" in result.output
    assert not (tmp_path / "embedding_cache.sqlite3").exists()


def test_an_unreadable_embedding_cache_is_set_aside_and_a_damaged_vector_embedded_again(tmp_path: Path) -> None:
    import sqlite3

    import numpy as np

    from indexer.embedding_cache import EmbeddingCache, embed_with_cache

    def encode(texts: list[str]) -> np.ndarray:
        return np.eye(4, dtype=np.float32)[[len(t) % 4 for t in texts]]

    path = tmp_path / "cache.sqlite3"
    path.write_bytes(b"\x8f" * 4096)  # not a database: the cache holds nothing that cannot be embedded again
    vectors, stats = embed_with_cache(["ab", "abc"], "m", encode, EmbeddingCache(path))
    assert stats.embedded == 2 and vectors.shape == (2, 4)
    (aside,) = tmp_path.glob("cache.sqlite3.corrupt-*")
    assert aside.read_bytes() == b"\x8f" * 4096, "the unreadable file is kept for a look, not deleted"
    with sqlite3.connect(path) as db:  # one stored vector cut short
        db.execute("UPDATE vectors SET vector = ? WHERE vector = ?", (b"\x00" * 6, encode(["ab"])[0].tobytes()))
    vectors, stats = embed_with_cache(["ab", "abc"], "m", encode, EmbeddingCache(path))
    assert (stats.cache_hits, stats.embedded) == (1, 1)
    assert np.array_equal(vectors, encode(["ab", "abc"]))
    _, stats = embed_with_cache(["ab", "abc"], "m", encode, EmbeddingCache(path))
    assert stats.cache_hits == 2, "the damaged vector was stored again"


def test_the_smoke_query_estimate_agrees_with_the_embedded_analyzer() -> None:
    import json

    from indexer.checks import lexically_searchable
    from relevance.engines.embedded import build_analyzer

    mapping = json.loads((Path(__file__).parents[1] / "mappings" / "embedded.json").read_text())
    analyzer = build_analyzer(mapping["analyzer"])
    titles = ["Drill", "the", "The Drill", "Thé", "ｔｈｅ", "Ｄｒｉｌｌ", "!!!", "不锈钢厨房水槽单槽加厚款大号", "水槽"]
    titles += ["é" * 19, "é" * 20, "a" * 39, "a" * 40, "x" * 39 + "é", "in. ft. ''", "AND or Not"]
    assert [lexically_searchable(t) for t in titles] == [bool(analyzer.analyze(t)) for t in titles]


def test_catalog_statistics_kept_by_content_are_pruned_to_the_last_catalogs(tmp_path: Path) -> None:
    import os

    from indexer.product import Product
    from reranker.catalog_stats import STATS_VERSION, write_version_stats

    by_content = tmp_path / "by-content"
    by_content.mkdir()
    (by_content / "v1-old.json").write_text("{}")  # an older format's: never read again
    catalogs = [[Product(product_id="1", title=f"Drill {n}")] for n in range(5)]
    for n, products in enumerate(catalogs):
        write_version_stats(tmp_path, f"v{n}", products, keep_cached=2)
    kept = sorted(by_content.glob("*.json"))
    assert len(kept) == 2 and all(path.name.startswith(f"v{STATS_VERSION}-") for path in kept)
    assert len(list(by_content.glob("*.texts.npz"))) == 2, "each with its text table"
    os.utime(kept[0], (0, 0))
    os.utime(kept[1], (0, 0))
    write_version_stats(tmp_path, "again", catalogs[0], keep_cached=2)  # an older catalog again: computed anew
    write_version_stats(tmp_path, "last", catalogs[4], keep_cached=2)  # reused, and now the newest
    assert len(list(by_content.glob("*.json"))) == 2
    assert (tmp_path / "last.json").read_text() == (tmp_path / "v4.json").read_text()


def test_bookkeeping_that_fails_after_the_swap_is_a_warning_not_a_failed_job(
    tmp_path: Path, embedder: Embedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    from relevance.errors import EngineError

    services = make_services(tmp_path, embedder)
    first = services.index_catalog(CATALOG).version
    history = services.settings.swap_history_path
    history.unlink()
    history.mkdir()  # the record cannot be written (as on a full disk or a read-only mount)

    def engine_down(*args: object, **kwargs: object) -> list[str]:
        raise EngineError("elasticsearch at http://127.0.0.1:9 failed to list versions: could not connect")

    monkeypatch.setattr("indexer.job.prune_versions", engine_down)  # the server went away right after the swap
    report = services.index_catalog(CATALOG)
    assert services.engine.alias_target(services.settings.index_alias) == report.version != first
    assert report.warnings[0].startswith("the swap was not recorded, so a rollback goes to the newest older version")
    assert report.warnings[1] == (
        "old versions were not all pruned (the next job prunes them):"
        " elasticsearch at http://127.0.0.1:9 failed to list versions: could not connect"
    )
    assert report.as_dict()["warnings"] == report.warnings


def test_pruning_drops_versions_that_answer_no_search_first_even_the_rollback_target() -> None:
    """A red or closed version (servers) keeps no rollback place over one that works: rolling
    back to it is refused anyway. A stand-in engine: a server cannot be made red on demand."""
    from indexer.job import prune_versions
    from relevance.engines.base import IndexVersion

    class Versions:
        def __init__(self) -> None:
            self.kept = [
                IndexVersion("p-1", "", 40, False),
                IndexVersion("p-2", "", None, False, unavailable="red (a primary shard is not assigned)"),
                IndexVersion("p-3", "", 40, True),
            ]

        def list_versions(self, alias: str) -> list[IndexVersion]:
            return list(self.kept)

        def drop_version(self, name: str) -> None:
            self.kept = [v for v in self.kept if v.name != name]

    engine = Versions()
    assert prune_versions(engine, "p", keep=2, rollback_target="p-2") == ["p-2"]
    assert [v.name for v in engine.kept] == ["p-1", "p-3"]
