"""A forwarding proxy in front of a real engine that injects 5xx answers to ``_bulk``.

A real server cannot be told to answer 503 on demand, so the fault is injected here;
everything else is the real server's own answer.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import requests

HOP_HEADERS = {"connection", "keep-alive", "transfer-encoding", "content-length", "content-encoding"}


class BulkFaults:
    """How many ``_bulk`` requests still fail whole, how many get their first item turned into
    an ``item_status`` error of type ``item_error`` (a 503 by default; 429 for overload), and
    how many items in all are answered as documents the engine refuses (400)."""

    def __init__(
        self,
        whole_requests: int = 0,
        first_items: int = 0,
        item_status: int = 503,
        item_error: str = "unavailable_shards_exception",
        refused_items: int = 0,
    ) -> None:
        self.whole_requests = whole_requests
        self.first_items = first_items
        self.item_status = item_status
        self.item_error = item_error
        self.refused_items = refused_items
        self.bulk_requests = 0
        self.lock = threading.Lock()


def _handler(upstream: str, faults: BulkFaults) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *_: object) -> None:
            pass

        def _forward(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            is_bulk = "_bulk" in self.path
            with faults.lock:
                faults.bulk_requests += is_bulk
                fail_whole = is_bulk and faults.whole_requests > 0
                faults.whole_requests -= fail_whole
                fail_item = is_bulk and not fail_whole and faults.first_items > 0
                faults.first_items -= fail_item
            if fail_whole:
                error = {"error": {"type": "unavailable_shards_exception", "reason": "injected"}, "status": 503}
                return self._reply(503, {"Content-Type": "application/json"}, json.dumps(error).encode())
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_HEADERS | {"host"}}
            answer = requests.request(self.command, upstream + self.path, data=body, headers=headers, timeout=60)
            content = answer.content
            if fail_item:
                content = _fail_items(content, 1, faults.item_status, faults.item_error)
            if is_bulk and faults.refused_items > 0:
                with faults.lock:
                    refuse, faults.refused_items = faults.refused_items, 0
                content = _fail_items(content, refuse, 400, "mapper_parsing_exception")
            reply_headers = {k: v for k, v in answer.headers.items() if k.lower() not in HOP_HEADERS}
            self._reply(answer.status_code, reply_headers, content)

        def _reply(self, status: int, headers: dict[str, str], content: bytes) -> None:
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(content)))
            self.end_headers()
            self.wfile.write(content)

        do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _forward

    return Handler


def _fail_items(content: bytes, count: int, status: int, error: str) -> bytes:
    """Report the bulk response's first ``count`` items as failed (the server did index them;
    a resend is idempotent)."""
    response = json.loads(content)
    for position in range(min(count, len(response["items"]))):
        op_type, item = next(iter(response["items"][position].items()))
        response["items"][position] = {
            op_type: {
                "_index": item["_index"],
                "_id": item["_id"],
                "status": status,
                "error": {"type": error, "reason": "injected"},
            }
        }
    response["errors"] = True
    return json.dumps(response).encode()


@contextmanager
def fault_proxy(upstream: str, faults: BulkFaults) -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(upstream.rstrip("/"), faults))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
