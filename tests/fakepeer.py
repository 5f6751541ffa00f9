"""A fake peer: an HTTP server at `host:11435` that answers like a peer of a mesh, with whatever a test wants it
to say. Attack and robustness tests use it to play a hostile or broken Mac."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx

from tests.harness import PORT, Peer

Answer = tuple[int, str, bytes]  # status, content type, body
Answers = dict[str, Callable[[], Answer]]  # path -> answer


def json_answer(doc: Any, status: int = 200) -> Callable[[], Answer]:
    return lambda: (status, "application/json", json.dumps(doc).encode())


class FakePeer:
    """Answers `/mesh/ping` as `node_id` of `mesh` (unless `answers` says otherwise), and `answers[path]`
    for the rest; counts every request by path in `hits`."""

    def __init__(self, host: str, *, mesh: str, node_id: str = "fake", answers: Answers | None = None) -> None:
        self.host = host
        self.url = f"http://{host}:{PORT}"
        self.node_id = node_id
        self.hits: Counter[str] = Counter()
        ping = {"proto": 1, "node_id": node_id, "mesh": mesh, "boot_id": "b00t", "url": self.url,
                "state_version": 1, "system": {"cpu_percent": 1.0, "memory_available_gb": 8.0},
                "leaving": False, "settings": "0"}  # fmt: skip
        self.answers: Answers = {"/mesh/ping": json_answer(ping), **(answers or {})}
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _answer(self) -> None:
                path = self.path.split("?", 1)[0]
                fake.hits[path] += 1
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                answer = fake.answers.get(path)
                status, content_type, body = answer() if answer else (404, "application/json", b'{"error": "no"}')
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _answer  # noqa: N815 - http.server's names

        self._server = ThreadingHTTPServer((host, PORT), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def pings(self) -> int:
        return self.hits["/mesh/ping"]

    def call(self, peer: Peer, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """A request to `peer` from this fake's own address."""
        with httpx.Client(transport=httpx.HTTPTransport(local_address=self.host), timeout=10) as client:
            return client.request(method, peer.url + path, **kwargs)

    def __enter__(self) -> FakePeer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def state_document(fake: FakePeer, mesh: str, **sections: Any) -> dict[str, Any]:
    """A capability document in the shape peers send, with the given sections."""
    return {"proto": 1, "version": "0.1.0", "node_id": fake.node_id, "mesh": mesh, "url": fake.url,
            "boot_id": "b00t", "started_at": time.time(), "state_version": 1, "generated_at": time.time(),
            "system": {"chip": "Apple M4", "memory_available_gb": 8.0, "cpu_percent": 1.0}, **sections}  # fmt: skip
