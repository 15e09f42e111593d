"""The embedded in-process engine: tantivy for BM25, numpy (or hnswlib) for kNN.

Layout under ``root``::

    aliases/<alias>.json              {"version": ...}, replaced atomically on swap
    versions/<version>/manifest.json  generation, counts, metadata; replaced atomically on commit
    versions/<version>/tantivy/       the BM25 index (one stored ``row`` fast field per doc)
    versions/<version>/vectors-<gen>.npy, products-<gen>.jsonl, hnsw-<gen>.bin

Rows are append-only inside a version: an upsert adds a row and tombstones the old
one, so tantivy's ``row`` fast field always points at the right vector and product.
Readers in other processes (gunicorn workers) notice a swap or a commit by a cheap
``stat`` of the alias and manifest files and load the new snapshot; the old one
keeps serving until then, which is what makes swaps zero-downtime.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import threading
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import tantivy

from indexer.product import STORED, Product
from relevance.engines.base import EngineHit, IndexedProduct, IndexVersion, NativeFusion
from relevance.errors import EmbeddingMismatchError, EngineError, EngineFeatureUnavailable, IndexNotReadyError
from relevance.filters import (
    SearchFilters,
    brand_key,
    category_key,
    category_prefix_keys,
    lowered_brand_key,
    lowered_category_key,
)

log = logging.getLogger(__name__)

MAPPING_PATH = Path(__file__).resolve().parents[2] / "mappings" / "embedded.json"
TEXT_FIELDS = ("title", "brand", "category", "description")
NO_ROWS = np.zeros(0, dtype=np.int64)
HNSW_CACHE_KEEP = 4  # graphs kept for reuse: the live and recent vector sets
_HNSW_SEED = 100  # hnswlib's default, named: the graph's levels are drawn from it
# Builds run on one thread so the same catalog always gives the same index: with more,
# documents land in tantivy segments by thread timing (BM25 ties, ordered by segment,
# come out differently) and the HNSW graph follows the insertion order of its threads.
_BUILD_THREADS = 1


def _load_mapping() -> dict[str, Any]:
    return json.loads(MAPPING_PATH.read_text(encoding="utf-8"))


def build_analyzer(spec: dict[str, Any]) -> tantivy.TextAnalyzer:
    """Turn the mapping's analyzer definition into a tantivy TextAnalyzer."""
    builder = tantivy.TextAnalyzerBuilder(getattr(tantivy.Tokenizer, spec["tokenizer"])())
    for item in spec["filters"]:
        kind = item["type"]
        args = [value for key, value in item.items() if key != "type"]
        builder = builder.filter(getattr(tantivy.Filter, kind)(*args))
    return builder.build()


def build_schema(mapping: dict[str, Any]) -> tantivy.Schema:
    builder = tantivy.SchemaBuilder()
    analyzer = mapping["analyzer"]["name"]
    for name in mapping["text_fields"]:
        builder.add_text_field(name, tokenizer_name=analyzer)
    for name in mapping["keyword_fields"]:
        builder.add_text_field(name, tokenizer_name="raw")
    adders = {
        "unsigned": builder.add_unsigned_field,
        "float": builder.add_float_field,
        "boolean": builder.add_boolean_field,
    }
    for name, kind in mapping["numeric_fields"].items():
        adders[kind](name, indexed=True, fast=True)
    return builder.build()


def tantivy_filter_clauses(schema: tantivy.Schema, filters: SearchFilters) -> list[tantivy.Query]:
    """Translate the shared filter format into tantivy queries (all must match, none scores)."""
    clauses: list[tantivy.Query] = []
    if filters.category:
        clauses.append(tantivy.Query.term_set_query(schema, "category_prefix", filters.category_filter_keys))
    if filters.brand:
        clauses.append(tantivy.Query.term_set_query(schema, "brand_key", filters.brand_keys))
    if filters.price_min is not None or filters.price_max is not None:
        clauses.append(
            tantivy.Query.range_query(schema, "price", tantivy.FieldType.Float, filters.price_min, filters.price_max)
        )
    if filters.in_stock is not None:
        clauses.append(tantivy.Query.term_query(schema, "in_stock", filters.in_stock))
    if filters.product_ids is not None:
        clauses.append(tantivy.Query.term_set_query(schema, "product_id", list(filters.product_ids)))
    return [tantivy.Query.const_score_query(clause, 0.0) for clause in clauses]


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


# What reading a version needs from its manifest (a hand-edited one may lack them).
_MANIFEST_KEYS = ("generation", "dims", "count", "created_at")
FILTER_KEYS = "folded"  # how a new version's brand and category keys are written; older ones lack it: "lowered"


def _filter_key_functions(style: str) -> tuple[Callable[[str], str], Callable[[str], str]]:
    """The brand and category key functions of a version's key style (relevance.filters)."""
    return (brand_key, category_key) if style == "folded" else (lowered_brand_key, lowered_category_key)


@dataclass
class _Snapshot:
    """An immutable, loaded view of one committed generation of a version."""

    version: str
    generation: int
    index: tantivy.Index
    searcher: tantivy.Searcher
    schema: tantivy.Schema
    products: list[Product | None]
    row_of: dict[str, int]
    vectors: np.ndarray
    alive: np.ndarray
    price: np.ndarray
    in_stock: np.ndarray  # -1 unknown, 0 no, 1 yes
    brand_rows: dict[str, np.ndarray]
    category_rows: dict[str, np.ndarray]
    hnsw: Any | None
    live_count: int
    filter_keys: str  # the key style its documents were written with

    def mask(self, filters: SearchFilters) -> np.ndarray:
        """Boolean mask of rows that pass ``filters`` (the numpy twin of tantivy_filter_clauses)."""
        mask = self.alive.copy()
        if filters.category:
            rows = [self.category_rows.get(key, NO_ROWS) for key in filters.category_filter_keys]
            mask &= self._rows_mask(np.concatenate(rows))
        if filters.brand:
            rows = [self.brand_rows.get(key, NO_ROWS) for key in filters.brand_keys]
            mask &= self._rows_mask(np.concatenate(rows))
        if filters.price_min is not None:
            mask &= self.price >= filters.price_min  # NaN (no price) compares False
        if filters.price_max is not None:
            mask &= self.price <= filters.price_max
        if filters.in_stock is not None:
            mask &= self.in_stock == int(filters.in_stock)
        if filters.product_ids is not None:
            rows = [self.row_of[pid] for pid in filters.product_ids if pid in self.row_of]
            mask &= self._rows_mask(np.asarray(rows, dtype=np.int64))
        return mask

    def _rows_mask(self, rows: np.ndarray) -> np.ndarray:
        mask = np.zeros(len(self.alive), dtype=bool)
        mask[rows] = True
        return mask


@dataclass
class _PendingVersion:
    """Uncommitted writes to one version, held by the writing process."""

    writer: tantivy.IndexWriter
    products: list[Product | None]
    vectors: list[np.ndarray]
    row_of: dict[str, int]
    dims: int
    filter_keys: str  # the version's key style: its new documents are written the same way
    deleted_since_commit: set[str] = field(default_factory=set)


class EmbeddedEngine:
    """In-process engine; see the module docstring for the on-disk layout."""

    name = "embedded"
    concurrent_retrieval = False  # in-process: the lexical search would compete with the embedding for the cores

    def __init__(
        self,
        root: Path,
        *,
        field_boosts: dict[str, float] | None = None,
        exact_knn_max: int = 20_000,
        hnsw_m: int = 16,
        hnsw_ef_construction: int = 100,
        hnsw_ef_search: int = 400,
    ) -> None:
        # No I/O here: directories are created by the first write.
        self.root = Path(root)
        self.field_boosts = field_boosts or {"title": 3.0, "brand": 2.0, "category": 1.5, "description": 1.0}
        self.exact_knn_max = exact_knn_max
        self.hnsw_m = hnsw_m
        self.hnsw_ef_construction = hnsw_ef_construction
        self.hnsw_ef_search = hnsw_ef_search
        self._mapping: dict[str, Any] | None = None
        self._analyzer: tantivy.TextAnalyzer | None = None
        self._snapshots: dict[str, _Snapshot] = {}
        self._pending: dict[str, _PendingVersion] = {}
        self._json_cache: dict[Path, tuple[tuple[int, int, int], dict[str, Any]]] = {}
        self._lock = threading.RLock()

    # ----------------------------------------------------------------- paths
    def _alias_path(self, alias: str) -> Path:
        return self.root / "aliases" / f"{alias}.json"

    def _version_dir(self, version: str) -> Path:
        return self.root / "versions" / version

    def _read_json(self, path: Path) -> dict[str, Any]:
        """Parse a small JSON file, re-reading only when a stat says it was replaced.

        Every search resolves the alias and the manifest; this keeps that to two stats.
        Writers replace these files atomically, so a new inode means new content.
        Raises ValueError when the file is not a JSON object.
        """
        stat = path.stat()
        key = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
        cached = self._json_cache.get(path)
        if cached is None or cached[0] != key:
            content = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(content, dict):
                raise ValueError(f"expected a JSON object, found {type(content).__name__}")
            cached = (key, content)
            self._json_cache[path] = cached
        return dict(cached[1])

    def _manifest(self, version: str) -> dict[str, Any]:
        path = self._version_dir(version) / "manifest.json"
        try:
            manifest = self._read_json(path)
            lacking = [key for key in _MANIFEST_KEYS if key not in manifest]
            if lacking:
                raise ValueError(f"it lacks {', '.join(map(repr, lacking))}")
            return manifest
        except FileNotFoundError as exc:
            raise IndexNotReadyError(f"index version {version!r} does not exist") from exc
        except ValueError as exc:
            raise IndexNotReadyError(f"index version {version!r} has an unreadable manifest {path}: {exc}") from exc

    @property
    def mapping(self) -> dict[str, Any]:
        if self._mapping is None:
            self._mapping = _load_mapping()
        return self._mapping

    @property
    def analyzer(self) -> tantivy.TextAnalyzer:
        if self._analyzer is None:
            self._analyzer = build_analyzer(self.mapping["analyzer"])
        return self._analyzer

    def _open_tantivy(self, version: str, *, create: bool = False) -> tantivy.Index:
        path = self._version_dir(version) / "tantivy"
        if create:
            path.mkdir(parents=True, exist_ok=True)
        elif not (path / "meta.json").is_file():  # tantivy would create an empty index in its place
            raise OSError(f"{path / 'meta.json'} is missing")
        index = tantivy.Index(build_schema(self.mapping), path=str(path), reuse=not create)
        index.register_tokenizer(self.mapping["analyzer"]["name"], self.analyzer)
        return index

    # ------------------------------------------------------ versions, aliases
    def create_version(self, alias: str, dims: int, metadata: dict[str, Any]) -> str:
        created = datetime.now(UTC)
        version = f"{alias}-{created.strftime('%Y%m%d%H%M%S%f')}"
        directory = self._version_dir(version)
        directory.mkdir(parents=True, exist_ok=False)
        try:
            return self._start_version(version, directory, alias, dims, metadata, created)
        except BaseException:  # a full disk or an interrupt halfway: no half-made directory stays behind
            shutil.rmtree(directory, ignore_errors=True)
            raise

    def _start_version(
        self, version: str, directory: Path, alias: str, dims: int, metadata: dict[str, Any], created: datetime
    ) -> str:
        manifest = {
            "version": version,
            "alias": alias,
            "generation": 0,
            "dims": dims,
            "rows": 0,
            "count": 0,
            "created_at": created.isoformat(),
            "committed": False,
            "metadata": metadata,
            "filter_keys": FILTER_KEYS,
        }
        _atomic_write_text(directory / "manifest.json", json.dumps(manifest, indent=2))
        index = self._open_tantivy(version, create=True)
        with self._lock:
            self._pending[version] = _PendingVersion(
                index.writer(heap_size=128_000_000, num_threads=_BUILD_THREADS), [], [], {}, dims, FILTER_KEYS
            )
        return version

    def _pending_for(self, version: str) -> _PendingVersion:
        """Writes to a committed version (upsert/delete on a live index) start from its snapshot."""
        with self._lock:
            if version in self._pending:
                return self._pending[version]
            snapshot = self._snapshot_of_version(version)
            index = self._open_tantivy(version)
            pending = _PendingVersion(
                index.writer(heap_size=64_000_000, num_threads=_BUILD_THREADS),
                list(snapshot.products),
                [np.asarray(row) for row in snapshot.vectors],
                dict(snapshot.row_of),
                snapshot.vectors.shape[1],
                snapshot.filter_keys,
            )
            self._pending[version] = pending
            return pending

    def bulk_upsert(self, version: str, items: Sequence[IndexedProduct]) -> list[tuple[str, str]]:
        pending = self._pending_for(self._resolve_name(version))
        refused: list[tuple[str, str]] = []
        for item in items:
            product, vector = item.product, np.asarray(item.vector, dtype=np.float32)
            if vector.shape != (pending.dims,) or not np.all(np.isfinite(vector)):
                refused.append((product.product_id, f"vector must be {pending.dims} finite floats"))
                continue
            old_row = pending.row_of.get(product.product_id)
            if old_row is not None:
                pending.products[old_row] = None
                pending.writer.delete_documents_by_term("product_id", product.product_id)
            row = len(pending.products)
            pending.products.append(product)
            pending.vectors.append(vector)
            pending.row_of[product.product_id] = row
            pending.writer.add_document(self._document(product, row, pending.filter_keys))
        return refused

    def _document(self, product: Product, row: int, filter_keys: str) -> tantivy.Document:
        doc = tantivy.Document()
        doc.add_text("product_id", product.product_id)
        for name, text in product.text_fields().items():
            if text:
                doc.add_text(name, text)
        key_of_brand, key_of_category = _filter_key_functions(filter_keys)
        if product.brand:
            doc.add_text("brand_key", key_of_brand(product.brand))
        for key in category_prefix_keys(product.category, key_of_category):
            doc.add_text("category_prefix", key)
        doc.add_unsigned("row", row)
        if product.price is not None:
            doc.add_float("price", product.price)
        if product.in_stock is not None:
            doc.add_boolean("in_stock", product.in_stock)
        return doc

    def delete(self, index: str, product_ids: Sequence[str]) -> int:
        pending = self._pending_for(self._resolve_name(index))
        deleted = 0
        for product_id in product_ids:
            row = pending.row_of.pop(product_id, None)
            if row is not None:
                pending.products[row] = None
                pending.writer.delete_documents_by_term("product_id", product_id)
                deleted += 1
        return deleted

    def commit(self, version: str) -> None:
        version = self._resolve_name(version)
        with self._lock:
            pending = self._pending.pop(version, None)
        if pending is None:
            return
        pending.writer.commit()
        pending.writer.wait_merging_threads()
        manifest = self._manifest(version)
        generation = manifest["generation"] + 1
        directory = self._version_dir(version)
        vectors = (
            np.vstack(pending.vectors).astype(np.float32)
            if pending.vectors
            else np.zeros((0, pending.dims), np.float32)
        )
        alive_rows = [row for row, product in enumerate(pending.products) if product is not None]
        for row, product in enumerate(pending.products):
            if product is None:
                vectors[row] = 0.0  # tombstones never score
        np.save(directory / f"vectors-{generation}.npy", vectors)
        with (directory / f"products-{generation}.jsonl").open("w", encoding="utf-8") as handle:
            for product in pending.products:
                handle.write((product.model_dump_json(exclude_none=True) if product else "null") + "\n")
        if len(alive_rows) > self.exact_knn_max:
            shutil.copyfile(self._hnsw_file(vectors, alive_rows), directory / f"hnsw-{generation}.bin")
        manifest.update(generation=generation, rows=len(pending.products), count=len(alive_rows), committed=True)
        _atomic_write_text(directory / "manifest.json", json.dumps(manifest, indent=2))
        for old in directory.glob("*-*.*"):
            stem_generation = old.stem.rsplit("-", 1)[-1]
            if stem_generation.isdigit() and int(stem_generation) < generation - 1:
                old.unlink(missing_ok=True)  # keep one previous generation for readers mid-reload

    def _hnsw_file(self, vectors: np.ndarray, rows: list[int]) -> Path:
        """The HNSW graph of these rows, built once per distinct vector set.

        Re-indexing an unchanged catalog yields the same rows and vectors, so the
        graph (seconds to build) comes from this content-addressed cache instead.
        """
        row_array = np.asarray(rows, dtype=np.int64)
        digest = hashlib.sha256()
        digest.update(
            f"M={self.hnsw_m},ef={self.hnsw_ef_construction},dims={vectors.shape[1]},seed={_HNSW_SEED},threads={_BUILD_THREADS}".encode()
        )
        digest.update(row_array.tobytes())
        digest.update(np.ascontiguousarray(vectors[row_array]).tobytes())
        cache = self.root / "hnsw-cache"
        path = cache / f"{digest.hexdigest()[:32]}.bin"
        if path.exists():
            os.utime(path)
            return path
        import hnswlib  # only large indexes need it

        index = hnswlib.Index(space="ip", dim=vectors.shape[1])
        index.init_index(
            max_elements=len(rows), ef_construction=self.hnsw_ef_construction, M=self.hnsw_m, random_seed=_HNSW_SEED
        )
        # 12.5 s on one thread instead of 5.2 s on two for 54,667 vectors: the price of a graph that repeats.
        index.add_items(vectors[row_array], row_array, num_threads=_BUILD_THREADS)
        cache.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        index.save_index(str(tmp))
        os.replace(tmp, path)
        for stale in sorted(cache.glob("*.bin"), key=lambda p: p.stat().st_mtime)[:-HNSW_CACHE_KEEP]:
            stale.unlink(missing_ok=True)
        return path

    def drop_version(self, version: str) -> None:
        with self._lock:
            pending = self._pending.pop(version, None)
            if pending is not None:
                pending.writer.rollback()
            self._snapshots.pop(version, None)
        shutil.rmtree(self._version_dir(version), ignore_errors=True)

    def swap_alias(self, alias: str, version: str) -> str | None:
        if not self._manifest(version).get("committed"):
            raise EngineError(f"version {version!r} has no committed data; commit it before swapping")
        try:
            previous = self.alias_target(alias)
        except IndexNotReadyError as exc:  # an unreadable alias file: this swap is its repair
            log.warning("replacing an unreadable alias: %s", exc.detail)
            previous = None
        path = self._alias_path(alias)
        path.parent.mkdir(parents=True, exist_ok=True)
        _atomic_write_text(path, json.dumps({"version": version, "swapped_at": datetime.now(UTC).isoformat()}))
        return previous

    def alias_target(self, alias: str) -> str | None:
        path = self._alias_path(alias)
        try:
            version = self._read_json(path).get("version")
            problem = None if isinstance(version, str) else "it names no version"
        except FileNotFoundError:
            return None
        except ValueError as exc:
            problem = str(exc)
        if problem is not None:
            raise IndexNotReadyError(
                f"the alias file {path} is unreadable ({problem}); `relevance reindex CATALOG` writes a new one",
                field="index",
            )
        return version

    def list_versions(self, alias: str) -> list[IndexVersion]:
        live = self.alias_target(alias)
        versions = []
        for directory in sorted((self.root / "versions").glob(f"{alias}-*")):
            try:
                manifest = self._manifest(directory.name)
            except IndexNotReadyError:
                continue
            if manifest.get("alias") == alias:
                versions.append(
                    IndexVersion(
                        directory.name,
                        manifest["created_at"],
                        manifest["count"],
                        directory.name == live,
                        complete=bool(manifest.get("committed", True)),
                    )
                )
        return versions

    def version_metadata(self, index: str) -> dict[str, Any]:
        return self._manifest(self._resolve_name(index))["metadata"]

    # --------------------------------------------------------------- reads
    def _resolve_name(self, index: str) -> str:
        """An alias resolves to its version; a version name is itself."""
        target = self.alias_target(index)
        return target or index

    def _snapshot(self, index: str) -> _Snapshot:
        version = self.alias_target(index)
        if version is None:
            if not (self._version_dir(index) / "manifest.json").exists():
                raise IndexNotReadyError(
                    f"no index is served under {index!r}: run `relevance index CATALOG` first", field="index"
                )
            version = index
        return self._snapshot_of_version(version)

    def _snapshot_of_version(self, version: str) -> _Snapshot:
        manifest = self._manifest(version)
        if not manifest.get("committed"):
            raise IndexNotReadyError(f"index version {version!r} is still being built")
        with self._lock:
            cached = self._snapshots.get(version)
            if cached is not None and cached.generation == manifest["generation"]:
                return cached
            snapshot = self._load_snapshot(version, manifest)
            self._snapshots = {version: snapshot} | {
                name: snap for name, snap in self._snapshots.items() if name != version
            }
            # Keep at most the two newest snapshots in memory (the live one and its predecessor).
            for name in list(self._snapshots)[2:]:
                del self._snapshots[name]
            return snapshot

    def _load_snapshot(self, version: str, manifest: dict[str, Any]) -> _Snapshot:
        directory = self._version_dir(version)
        generation = manifest["generation"]
        try:
            vectors = np.load(directory / f"vectors-{generation}.npy", mmap_mode="r")
            with (directory / f"products-{generation}.jsonl").open(encoding="utf-8") as handle:
                products = [
                    None if line.strip() == "null" else Product.model_validate_json(line, context=STORED)
                    for line in handle
                ]
            index = self._open_tantivy(version)
        except (OSError, ValueError) as exc:
            detail = " ".join(str(exc).split())  # pydantic's messages span lines
            raise EngineError(f"index version {version!r} is unreadable: {detail}") from exc
        index.config_reader(reload_policy="Manual")
        index.reload()
        alive = np.array([product is not None for product in products], dtype=bool)
        price = np.array([p.price if p and p.price is not None else np.nan for p in products], dtype=np.float64)
        in_stock = np.array(
            [-1 if p is None or p.in_stock is None else int(p.in_stock) for p in products], dtype=np.int8
        )
        # The same keys as the version's tantivy index holds, so both retrieval paths filter alike.
        filter_keys = manifest.get("filter_keys", "lowered")
        key_of_brand, key_of_category = _filter_key_functions(filter_keys)
        brand_rows: dict[str, list[int]] = defaultdict(list)
        category_rows: dict[str, list[int]] = defaultdict(list)
        row_of: dict[str, int] = {}
        for row, product in enumerate(products):
            if product is None:
                continue
            row_of[product.product_id] = row
            if product.brand:
                brand_rows[key_of_brand(product.brand)].append(row)
            for key in category_prefix_keys(product.category, key_of_category):
                category_rows[key].append(row)
        hnsw = None
        hnsw_path = directory / f"hnsw-{generation}.bin"
        if hnsw_path.exists():
            import hnswlib

            hnsw = hnswlib.Index(space="ip", dim=manifest["dims"])
            hnsw.load_index(str(hnsw_path))
            hnsw.set_ef(self.hnsw_ef_search)
        log.info("loaded index version %s generation %d (%d products)", version, generation, len(row_of))
        return _Snapshot(
            version=version,
            generation=generation,
            index=index,
            searcher=index.searcher(),
            schema=index.schema,
            products=products,
            row_of=row_of,
            vectors=vectors,
            alive=alive,
            price=price,
            in_stock=in_stock,
            brand_rows={k: np.asarray(v, dtype=np.int64) for k, v in brand_rows.items()},
            category_rows={k: np.asarray(v, dtype=np.int64) for k, v in category_rows.items()},
            hnsw=hnsw,
            live_count=len(row_of),
            filter_keys=filter_keys,
        )

    def count(self, index: str) -> int:
        return self._snapshot(index).live_count

    def get(self, index: str, product_ids: Sequence[str]) -> dict[str, Product]:
        snapshot = self._snapshot(index)
        found = {}
        for product_id in product_ids:
            row = snapshot.row_of.get(product_id)
            if row is not None and (product := snapshot.products[row]) is not None:
                found[product_id] = product
        return found

    def get_vectors(self, index: str, product_ids: Sequence[str]) -> dict[str, np.ndarray]:
        known, block = self._vector_block(self._snapshot(index), product_ids)
        return dict(zip(known, block, strict=True))

    def cosines(self, index: str, vector: np.ndarray, product_ids: Sequence[str]) -> dict[str, float]:
        snapshot = self._snapshot(index)
        vector = _checked_query(snapshot, index, vector)
        known, block = self._vector_block(snapshot, product_ids)
        return dict(zip(known, (block @ vector).tolist(), strict=True))

    @staticmethod
    def _vector_block(snapshot: _Snapshot, product_ids: Sequence[str]) -> tuple[list[str], np.ndarray]:
        """The known ids and their stored vectors as one matrix (one gather, not one per id)."""
        known = [pid for pid in product_ids if pid in snapshot.row_of]
        return known, np.asarray(snapshot.vectors[[snapshot.row_of[pid] for pid in known]])

    def analyze(self, text: str) -> list[str]:
        return self.analyzer.analyze(text)

    def lexical_search(self, index: str, text: str, filters: SearchFilters, k: int) -> list[EngineHit]:
        snapshot = self._snapshot(index)
        tokens = self.analyze(text)
        if not tokens:
            return []
        schema = snapshot.schema
        # Each analysed term is searched in every field with that field's boost;
        # tantivy sums the BM25 of the matching clauses ("most fields").
        term_clauses = [
            (
                tantivy.Occur.Should,
                tantivy.Query.boost_query(tantivy.Query.term_query(schema, field_name, token), boost),
            )
            for token in tokens
            for field_name, boost in self.field_boosts.items()
            if boost > 0
        ]
        query = tantivy.Query.boolean_query(term_clauses)
        filter_clauses = tantivy_filter_clauses(schema, filters)
        if filter_clauses:
            query = tantivy.Query.boolean_query(
                [(tantivy.Occur.Must, query)] + [(tantivy.Occur.Must, clause) for clause in filter_clauses]
            )
        try:
            result = snapshot.searcher.search(query, k, count=False)
            rows = snapshot.searcher.fast_field_values("row", [address for _, address in result.hits])
        except ValueError as exc:
            raise EngineError(f"lexical search failed: {exc}") from exc
        hits = []
        for (score, _), row in zip(result.hits, rows, strict=True):
            product = snapshot.products[row] if row is not None and row < len(snapshot.products) else None
            if product is not None:
                hits.append(EngineHit(product.product_id, float(score), len(hits) + 1))
        return hits

    def vector_search(
        self, index: str, vector: np.ndarray, filters: SearchFilters, k: int, exclude_ids: Sequence[str] = ()
    ) -> list[EngineHit]:
        snapshot = self._snapshot(index)
        query = _checked_query(snapshot, index, np.asarray(vector, dtype=np.float32))
        if not filters.is_empty or exclude_ids:
            mask = snapshot.mask(filters)
            for product_id in exclude_ids:
                if product_id in snapshot.row_of:
                    mask[snapshot.row_of[product_id]] = False
        else:
            mask = None
        allowed = snapshot.live_count if mask is None else int(mask.sum())
        if allowed == 0:
            return []
        if snapshot.hnsw is not None and allowed > self.exact_knn_max:
            rows, scores = self._hnsw_search(snapshot, query, mask, k)
        else:
            rows, scores = self._exact_search(snapshot, query, mask, k)
        return [
            EngineHit(snapshot.products[row].product_id, float(score), rank)  # type: ignore[union-attr]
            for rank, (row, score) in enumerate(zip(rows, scores, strict=True), start=1)
        ]

    @staticmethod
    def _exact_search(
        snapshot: _Snapshot, query: np.ndarray, mask: np.ndarray | None, k: int
    ) -> tuple[np.ndarray, np.ndarray]:
        if mask is None:
            candidates = np.flatnonzero(snapshot.alive) if snapshot.live_count < len(snapshot.alive) else None
        else:
            candidates = np.flatnonzero(mask)
        matrix = snapshot.vectors if candidates is None else snapshot.vectors[candidates]
        scores = matrix @ query
        k = min(k, len(scores))
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.lexsort((top, -scores[top]))]  # by score, ties by row: deterministic
        rows = top if candidates is None else candidates[top]
        return rows, scores[top]

    def _hnsw_search(
        self, snapshot: _Snapshot, query: np.ndarray, mask: np.ndarray | None, k: int
    ) -> tuple[np.ndarray, np.ndarray]:
        k = min(k, snapshot.live_count if mask is None else int(mask.sum()))
        ef = max(self.hnsw_ef_search, k)
        snapshot.hnsw.set_ef(ef)
        allowed = None if mask is None else (lambda label: bool(mask[label]))
        labels, distances = snapshot.hnsw.knn_query(query, k=k, filter=allowed)
        return labels[0].astype(np.int64), 1.0 - distances[0]

    def hybrid_search(
        self, index: str, text: str, vector: np.ndarray, filters: SearchFilters, k: int, fusion: NativeFusion
    ) -> list[EngineHit]:
        raise EngineFeatureUnavailable(
            "the embedded engine has no native hybrid search; use fusion_backend=layer (the layer's own fusion)",
            field="fusion_backend",
        )

    def ping(self) -> None:
        if self.root.exists() and not os.access(self.root, os.R_OK):
            raise EngineError(f"index directory {self.root} is not readable")


def _checked_query(snapshot: _Snapshot, index: str, vector: np.ndarray) -> np.ndarray:
    """The query vector, if it has the index's dimensions (else numpy fails mid-search).

    The pipeline checks the version's recorded dimensions first (``IndexEmbedding``); this
    catches versions that record none and searches in the seconds after a swap before the
    pipeline sees the new version, as the servers' own dimension checks do.
    """
    dims = snapshot.vectors.shape[1]
    if vector.shape != (dims,):
        raise EmbeddingMismatchError(
            f"index {index!r} holds {dims}-dimension vectors but the query vector has {vector.shape[-1]}: the index"
            " was embedded by another model than embedding_model; re-index with it, or set it back"
        )
    return vector
