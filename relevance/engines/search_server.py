"""What the Elasticsearch and OpenSearch adapters share: the query DSL, versions and aliases.

The two servers speak the same JSON for everything here except the kNN clause and
the vector mapping, and both official clients accept ``body=`` on the same APIs,
so the adapters only provide a client, their bulk helper, their error types and
the kNN clause. This module imports neither client.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from indexer.product import STORED, Product
from relevance.engines.base import EngineHit, IndexedProduct, IndexVersion, NativeFusion
from relevance.errors import EngineError, EngineFeatureUnavailable, IndexNotReadyError, RelevanceError
from relevance.filters import SearchFilters, brand_key, category_prefix_keys

log = logging.getLogger(__name__)
MAPPINGS_DIR = Path(__file__).resolve().parents[2] / "mappings"
INTERNAL_FIELDS = ("vector", "brand_key", "category_prefix")
MAX_IDS_PER_SEARCH = 10_000  # both engines' default index.max_result_window
# streaming_bulk options both adapters use: the helpers retry 429s with exponential
# backoff; 5xx answers are retried by ``SearchServerEngine._bulk`` (opensearch-py's
# helper retries only 429), and other per-document failures come back to the job.
# The clients' own retry of 429s is off: a disk past the flood-stage watermark answers 429
# too, and only ``_bulk``, which reads each item's error type, can tell it from overload.
BULK_OPTIONS = {"chunk_size": 500, "max_retries": 0, "raise_on_error": False, "raise_on_exception": True}
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})  # overload and server errors: sent again
WRITE_BLOCK = "cluster_block_exception"  # a write or disk block: no retry, and no document is to blame
FINAL_BLOCK_STATUSES = frozenset({403, 429})  # a 503 block (no master yet, state not recovered) passes: retried


def filter_clauses(filters: SearchFilters, exclude_ids: Sequence[str] = ()) -> dict[str, Any]:
    """Translate the shared filter format into a bool query (filter context: no scoring)."""
    must: list[dict[str, Any]] = []
    if filters.category:
        must.append({"terms": {"category_prefix": filters.category_filter_keys}})
    if filters.brand:
        must.append({"terms": {"brand_key": filters.brand_keys}})
    if filters.price_min is not None or filters.price_max is not None:
        bounds = {"gte": filters.price_min, "lte": filters.price_max}
        must.append({"range": {"price": {k: v for k, v in bounds.items() if v is not None}}})
    if filters.in_stock is not None:
        must.append({"term": {"in_stock": filters.in_stock}})
    if filters.product_ids is not None:
        must.append({"terms": {"product_id": list(filters.product_ids)}})
    clause: dict[str, Any] = {"filter": must}
    if exclude_ids:
        clause["must_not"] = [{"terms": {"product_id": list(exclude_ids)}}]
    return {"bool": clause}


def _status(error: BaseException) -> Any:
    # elasticsearch's ApiError and opensearch-py's TransportError both carry status_code
    # ("N/A" or absent for connection errors, which are not retried).
    return getattr(error, "status_code", None)


def _server_reason(error: BaseException) -> str:
    """What a server's error answer says: its root cause's type and reason where the body has one."""
    body = getattr(error, "body", None) or getattr(error, "info", None)  # elasticsearch / opensearch-py
    failure = body.get("error") if isinstance(body, dict) else None
    if isinstance(failure, dict):
        causes = failure.get("root_cause")
        return _error_text(
            causes[0] if isinstance(causes, list) and causes and isinstance(causes[0], dict) else failure
        )
    return str(getattr(error, "error", None) or getattr(error, "message", None) or error)


def _error_text(error: Any) -> str:
    """A server's error object (an answer's root cause, a bulk item's error) as "type: reason"."""
    if not isinstance(error, dict):
        return str(error or "")
    return ": ".join(str(error[key]) for key in ("type", "reason") if error.get(key))


def _final_block(status: Any, reason: str) -> bool:
    """A write or disk block: no retry helps, and no document is to blame."""
    return status in FINAL_BLOCK_STATUSES and reason.startswith(WRITE_BLOCK)


def to_document(product: Product, vector: np.ndarray) -> dict[str, Any]:
    return {
        **product.model_dump(exclude_none=True),
        "brand_key": brand_key(product.brand) if product.brand else None,
        "category_prefix": category_prefix_keys(product.category),
        "vector": [float(x) for x in vector],
    }


def from_document(source: dict[str, Any]) -> Product:
    return Product.model_validate({k: v for k, v in source.items() if k not in INTERNAL_FIELDS}, context=STORED)


class SearchServerEngine:
    """Base of the server adapters. Subclasses set ``name`` and the hooks below."""

    name = "server"
    concurrent_retrieval = True
    mapping_file = ""
    not_found_errors: tuple[type[BaseException], ...] = ()
    engine_errors: tuple[type[BaseException], ...] = ()
    timeout_errors: tuple[type[BaseException], ...] = ()  # checked before connection_errors
    connection_errors: tuple[type[BaseException], ...] = ()
    shard_wait = "30s"  # how long creating a version waits for its shard to be placed

    def __init__(
        self,
        url: str,
        *,
        field_boosts: dict[str, float] | None = None,
        timeout: float = 2.0,
        num_candidates_factor: int = 4,
        bulk_retries: int = 5,
        bulk_backoff: float = 0.5,
    ) -> None:
        # No connection here: the client is built on first use.
        self.url = url
        self.field_boosts = field_boosts or {"title": 3.0, "brand": 2.0, "category": 1.5, "description": 1.0}
        self.timeout = timeout
        self.num_candidates_factor = num_candidates_factor
        self.bulk_retries = bulk_retries
        self.bulk_backoff = bulk_backoff
        self._client: Any = None

    @property
    def bulk_timeout(self) -> float:
        return max(self.timeout, 60.0)  # a bulk request of thousands of documents takes longer than a search

    @property
    def create_timeout(self) -> float:
        # The server may queue a create for its master_timeout (30 s), then wait shard_wait (30 s):
        # a client that gave up first would drop an index still being made, which then stays.
        return self.bulk_timeout + 30.0

    def _failed(self, what: str, error: BaseException, timeout: float | None = None) -> EngineError:
        """The failure in the layer's words (the clients' own texts nest urllib3 reprs); logged once by the API."""
        if isinstance(error, self.timeout_errors):
            why = f"no answer within {timeout or self.timeout:g} s"
        elif isinstance(error, self.connection_errors):
            why = "could not connect"
        elif isinstance(_status(error), int):
            why = f"answered HTTP {_status(error)}: {_server_reason(error)}"
        else:
            why = str(error)
        if len(why) > 300:
            why = why[:300] + "…"
        return EngineError(f"{self.name} at {self.url} failed to {what}: {why}")

    # ---------------------------------------------------------------- hooks
    def _make_client(self) -> Any:
        raise NotImplementedError

    def _create_index(self, index: str, body: dict[str, Any]) -> dict[str, Any]:
        """Create ``index`` waiting up to ``shard_wait`` for its primary shard (the request
        itself with ``create_timeout``: longer than a search may take)."""
        raise NotImplementedError

    def _streaming_bulk(self, actions: Iterator[dict[str, Any]]) -> Iterator[tuple[bool, dict[str, Any]]]:
        raise NotImplementedError

    def _knn_body(self, vector: list[float], bool_filter: dict[str, Any], k: int) -> dict[str, Any]:
        raise NotImplementedError

    def _native_hybrid(
        self,
        index: str,
        lexical_query: dict[str, Any],
        vector: list[float],
        filters: SearchFilters,
        k: int,
        fusion: NativeFusion,
    ) -> dict[str, Any]:
        """Send the engine's own hybrid request; returns the raw search response."""
        raise NotImplementedError

    def _missing_native_feature(self, error: BaseException) -> str | None:
        """What the server lacks, when ``error`` says native fusion is not installed."""
        raise NotImplementedError

    # --------------------------------------------------------------- helpers
    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = self._make_client()
        return self._client

    def _call(self, what: str, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except self.not_found_errors as exc:
            raise IndexNotReadyError(f"{self.name}: {what}: no such index or alias", field="index") from exc
        except self.engine_errors as exc:
            raise self._failed(what, exc) from exc

    def _mapping(self, dims: int, meta: dict[str, Any]) -> dict[str, Any]:
        text = (MAPPINGS_DIR / self.mapping_file).read_text(encoding="utf-8").replace('"__DIMS__"', str(dims))
        body = json.loads(text)
        body["mappings"]["_meta"] = meta
        return body

    # ------------------------------------------------------ versions, aliases
    def create_version(self, alias: str, dims: int, metadata: dict[str, Any]) -> str:
        created = datetime.now(UTC)
        version = f"{alias}-{created.strftime('%Y%m%d%H%M%S%f')}"
        meta = {"alias": alias, "created_at": created.isoformat(), "committed": False, "metadata": metadata}
        body = self._mapping(dims, meta)
        try:
            try:
                created_index = self._create_index(version, body)
            except self.engine_errors as exc:
                raise self._failed("create an index", exc, self.create_timeout) from exc
            if not created_index.get("shards_acknowledged", True):
                raise EngineError(
                    f"{self.name} at {self.url} created {version} but its shards were not placed within"
                    f" {self.shard_wait}: no node takes new shards (a disk past the high watermark?);"
                    " GET _cluster/allocation/explain says why. Nothing was built and the live index is unchanged"
                )
        except BaseException as exc:  # even a timeout may have created it: a red index left behind
            if "resource_already_exists" not in str(exc):  # then it is someone else's: leave it
                with contextlib.suppress(RelevanceError):
                    self.drop_version(version)
            raise
        return version

    def _bulk(self, what: str, actions: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
        """Send ``actions``; returns (id, item result) of every document the engine refused.

        Documents (or whole requests) answered with a 429 (overload) or a 5xx are sent again
        with exponential backoff, ``bulk_retries`` times; if some still fail that way the
        engine is not healthy, so this raises EngineError rather than blaming the documents.
        A write or disk block (``_final_block``) raises at once.
        """
        pending = {action["_id"]: action for action in actions}
        refused: list[tuple[str, dict[str, Any]]] = []
        for attempt in range(self.bulk_retries + 1):
            if attempt:
                time.sleep(self.bulk_backoff * 2 ** (attempt - 1))
            try:
                results = list(self._streaming_bulk(iter(list(pending.values()))))
            except self.engine_errors as exc:
                if _status(exc) not in RETRY_STATUSES or _final_block(_status(exc), _server_reason(exc)):
                    raise self._failed(what, exc, self.bulk_timeout) from exc
                log.warning("%s: %s answered %s; retrying %d documents", self.name, what, _status(exc), len(pending))
                continue
            retry: dict[str, dict[str, Any]] = {}
            for ok, result in results:
                item = next(iter(result.values()))
                doc_id = str(item.get("_id"))
                if ok:
                    pending.pop(doc_id, None)
                elif _final_block(item.get("status"), _error_text(item.get("error"))):
                    raise EngineError(
                        f"{self.name} at {self.url} refuses writes ({_error_text(item.get('error'))}): free disk space below"
                        " the flood-stage watermark, or lift the write block; the live index is unchanged"
                    )
                elif item.get("status") in RETRY_STATUSES:
                    retry[doc_id] = pending[doc_id]
                else:
                    refused.append((doc_id, item))
                    pending.pop(doc_id, None)
            pending = retry
            if not pending:
                return refused
            log.warning("%s: %d documents answered 429 or 5xx; retrying", self.name, len(pending))
        raise EngineError(
            f"{self.name} at {self.url} failed to {what}: {len(pending)} documents still answered 429 or 5xx"
            f" after {self.bulk_retries} retries"
        )

    def bulk_upsert(self, version: str, items: Sequence[IndexedProduct]) -> list[tuple[str, str]]:
        actions = [
            {
                "_op_type": "index",
                "_index": version,
                "_id": item.product.product_id,
                "_source": to_document(item.product, item.vector),
            }
            for item in items
        ]
        return [(doc_id, json.dumps(item.get("error"))) for doc_id, item in self._bulk("bulk index", actions)]

    def delete(self, index: str, product_ids: Sequence[str]) -> int:
        actions = [{"_op_type": "delete", "_index": index, "_id": pid} for pid in product_ids]
        # An absent id comes back refused (404), so whatever was not refused was deleted.
        return len(set(product_ids)) - len(self._bulk("delete", actions))

    def commit(self, version: str) -> None:
        self._call("refresh", self.client.indices.refresh, index=version)
        meta = self._meta(version)
        if not meta.get("committed"):
            meta["committed"] = True
            self._call("mark committed", self.client.indices.put_mapping, index=version, body={"_meta": meta})

    def _meta(self, index: str) -> dict[str, Any]:
        mapping = self._call("read the mapping", self.client.indices.get_mapping, index=index)
        return next(iter(mapping.values()))["mappings"].get("_meta", {})

    def drop_version(self, version: str) -> None:
        with contextlib.suppress(IndexNotReadyError):
            self._call("delete an index", self.client.indices.delete, index=version)

    def swap_alias(self, alias: str, version: str) -> str | None:
        if not self._meta(version).get("committed"):
            raise EngineError(f"version {version!r} has no committed data; commit it before swapping")
        unavailable = self._unavailable(version).get(version)
        if unavailable:  # the servers put an alias on a closed or red index, which then answers nothing
            raise EngineError(f"version {version!r} is {unavailable}: it would answer no search")
        current = self._alias_indices(alias)
        actions = [{"remove": {"index": name, "alias": alias}} for name in current]
        actions.append({"add": {"index": version, "alias": alias}})
        self._call("swap an alias", self.client.indices.update_aliases, body={"actions": actions})
        # Several only after an out-of-band change: the newest (names sort by build time) is
        # taken as the one that served, so rollback and pruning keep it rather than an older one.
        return current[-1] if current else None

    def _alias_indices(self, alias: str) -> list[str]:
        try:
            return sorted(self._call("read an alias", self.client.indices.get_alias, name=alias))
        except IndexNotReadyError:
            return []

    def alias_target(self, alias: str) -> str | None:
        current = self._alias_indices(alias)
        if len(current) > 1:
            # Only an out-of-band alias change does this (swap_alias moves it whole). Searches
            # would mix two versions and reads by id fail; say so, and how it heals.
            raise EngineError(
                f"{self.name}: alias {alias!r} points at {len(current)} indexes ({', '.join(current)}), not one"
                " version: the next index job (relevance index, or reindex without --gate, which has no one live"
                " version to compare with) points it at its new version alone"
            )
        return current[0] if current else None

    def list_versions(self, alias: str) -> list[IndexVersion]:
        live = set(self._alias_indices(alias))  # more than one only after an out-of-band change: all marked
        pattern = f"{alias}-*"
        try:  # closed ones too: they hold disk, so they are listed and pruned
            mappings = self._call(
                "list indices", self.client.indices.get_mapping, index=pattern, expand_wildcards="all"
            )
        except IndexNotReadyError:
            return []
        unavailable = self._unavailable(pattern)
        versions = []
        for name in sorted(mappings):
            meta = mappings[name]["mappings"].get("_meta", {})
            if meta.get("alias") == alias:
                versions.append(
                    IndexVersion(
                        name,
                        meta.get("created_at", ""),
                        None if name in unavailable else self.count(name),
                        name in live,
                        complete=bool(meta.get("committed", True)),  # a version marks itself committed last
                        unavailable=unavailable.get(name),
                    )
                )
        return versions

    def _unavailable(self, indexes: str) -> dict[str, str]:
        """Those of ``indexes`` (a name or pattern) that answer no search, and why: closed by an
        operator, or red (a primary shard not placed: a full disk, a lost node)."""
        rows = self._call(
            "read index states",
            self.client.cat.indices,
            index=indexes,
            format="json",
            h="index,status,health",
            expand_wildcards="all",
        )
        reasons = {}
        for row in rows:
            if row.get("status") == "close":
                reasons[row["index"]] = f"closed (open it first: POST /{row['index']}/_open)"
            elif row.get("health") == "red":
                reasons[row["index"]] = "red (a primary shard is not assigned: GET _cluster/allocation/explain)"
        return reasons

    def version_metadata(self, index: str) -> dict[str, Any]:
        return self._meta(index).get("metadata", {})

    # ---------------------------------------------------------------- reads
    def count(self, index: str) -> int:
        answer = self._call("count", self.client.count, index=index)
        shards = answer.get("_shards") or {}
        # A count of the shards that answered is not the index's. (OpenSearch counts an
        # unassigned shard as neither successful nor failed.)
        if shards.get("successful", 0) < shards.get("total", 0):
            raise EngineError(
                f"{self.name} at {self.url}: {index} answered from {shards.get('successful')} of"
                f" {shards.get('total')} shards (one is not assigned: GET _cluster/allocation/explain)"
            )
        return int(answer["count"])

    def get(self, index: str, product_ids: Sequence[str]) -> dict[str, Product]:
        """The products found, by id, as searches see them (refreshed documents).

        An ``ids`` search, not ``mget``: for the 200 products of a rerank window it took
        13.7 ms against 16.1 on Elasticsearch and 47 against 81 on OpenSearch (bench/README).
        """
        found: dict[str, Product] = {}
        ids = list(dict.fromkeys(product_ids))
        for start in range(0, len(ids), MAX_IDS_PER_SEARCH):
            chunk = ids[start : start + MAX_IDS_PER_SEARCH]
            body = {
                "size": len(chunk),
                "query": {"ids": {"values": chunk}},
                "_source": {"excludes": list(INTERNAL_FIELDS)},
                "track_total_hits": False,
            }
            response = self._call("get products", self.client.search, index=index, body=body)
            found.update((hit["_id"], from_document(hit["_source"])) for hit in response["hits"]["hits"])
        return found

    def get_vectors(self, index: str, product_ids: Sequence[str]) -> dict[str, np.ndarray]:
        """Elasticsearch returns vectors it keeps out of ``_source`` when they are asked for by name;
        OpenSearch overrides this."""
        if not product_ids:
            return {}
        response = self._call(
            "get vectors", self.client.mget, index=index, body={"ids": list(product_ids)}, source_includes=["vector"]
        )
        # mget answers a missing index with 200 and an error per document, not a 404
        failed = next((doc["error"] for doc in response["docs"] if "error" in doc), None)
        if failed is not None:
            if failed.get("type") == "index_not_found_exception":
                raise IndexNotReadyError(f"{self.name}: get vectors: no such index or alias", field="index")
            raise EngineError(f"{self.name} at {self.url} failed to get vectors: {_error_text(failed)}")
        return {
            doc["_id"]: np.asarray(doc["_source"]["vector"], dtype=np.float32)
            for doc in response["docs"]
            if doc.get("found") and "vector" in doc.get("_source", {})
        }

    def cosines(self, index: str, vector: np.ndarray, product_ids: Sequence[str]) -> dict[str, float]:
        """One kNN request filtered to exactly these products, so the server sends scores, not
        vectors: fetching 60 stored vectors (384 floats each, as JSON) took ~14 ms on
        Elasticsearch. With k = the number of products, the filtered search is exhaustive."""
        if not product_ids:
            return {}
        only = {"bool": {"filter": [{"ids": {"values": list(product_ids)}}]}}
        body = self._knn_body([float(x) for x in vector], only, len(product_ids))
        response = self._call("score stored vectors", self.client.search, index=index, body=body)
        return {hit.product_id: hit.score for hit in self._hits(response, cosine=True)}

    def _lexical_query(self, text: str, filters: SearchFilters) -> dict[str, Any]:
        fields = [f"{name}^{boost}" for name, boost in self.field_boosts.items() if boost > 0]
        bool_query = filter_clauses(filters)
        # most_fields sums the BM25 of every field that matches, like the embedded engine.
        bool_query["bool"]["must"] = [{"multi_match": {"query": text, "fields": fields, "type": "most_fields"}}]
        return bool_query

    def lexical_search(self, index: str, text: str, filters: SearchFilters, k: int) -> list[EngineHit]:
        body = {"size": k, "query": self._lexical_query(text, filters), "_source": False, "track_total_hits": False}
        return self._hits(self._call("search", self.client.search, index=index, body=body), cosine=False)

    def hybrid_search(
        self, index: str, text: str, vector: np.ndarray, filters: SearchFilters, k: int, fusion: NativeFusion
    ) -> list[EngineHit]:
        as_list = [float(x) for x in vector]
        try:
            response = self._native_hybrid(index, self._lexical_query(text, filters), as_list, filters, k, fusion)
        except self.not_found_errors as exc:
            raise IndexNotReadyError(f"{self.name}: hybrid search: no such index or alias", field="index") from exc
        except self.engine_errors as exc:
            missing = self._missing_native_feature(exc)
            if missing:
                raise EngineFeatureUnavailable(
                    f"{self.name} at {self.url} cannot fuse natively: {missing}. Use fusion_backend=layer.",
                    field="fusion_backend",
                ) from exc
            raise self._failed("run a hybrid search", exc) from exc
        return self._hits(response, cosine=False)

    def vector_search(
        self, index: str, vector: np.ndarray, filters: SearchFilters, k: int, exclude_ids: Sequence[str] = ()
    ) -> list[EngineHit]:
        body = self._knn_body([float(x) for x in vector], filter_clauses(filters, exclude_ids), k)
        return self._hits(self._call("kNN search", self.client.search, index=index, body=body), cosine=True)[:k]

    @staticmethod
    def _hits(response: dict[str, Any], *, cosine: bool) -> list[EngineHit]:
        # Both servers score cosine kNN as (1 + cos) / 2; report the cosine itself,
        # as the embedded engine does, so linear fusion sees the same scale everywhere.
        return [
            EngineHit(hit["_id"], 2.0 * hit["_score"] - 1.0 if cosine else float(hit["_score"]), rank, hit["_index"])
            for rank, hit in enumerate(response["hits"]["hits"], start=1)
        ]

    def ping(self) -> None:
        # Whether the server answers; not the cluster's colour, which is not the served index's:
        # a red index elsewhere (one a failed job left) must not take every worker out of the
        # load balancer. /readyz then counts the served alias, which fails if it is red.
        self._call("report health", self.client.cluster.health)
