"""Stand-ins for the client and CLI tests: a 3-peer fleet with an Ollama stand-in, a fake peer that serves the
jobs API (`GET /api/jobs/{id}`) while a slow image is made, and a peer that hangs up mid-request."""

from __future__ import annotations

import json
import socket
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from tests.harness import PORT, Mesh, OllamaStandin, next_address

PNG = b"\x89PNG\r\n\x1a\n" + b"fake image body"  # enough for anything that checks the signature
FLEET = ("alpha", "beta", "gamma")


@contextmanager
def fleet(base: Path, *, ms_per_mp_step: float = 50.0) -> Iterator[tuple[Mesh, OllamaStandin]]:
    """Three peers (alpha has the Ollama stand-in with llama3:8b and nomic-embed-text) that see each other."""
    ollama = OllamaStandin("alpha", "llama3:8b,nomic-embed-text", "llama3:8b")
    mesh = Mesh(base)
    try:
        mesh.add("alpha", ollama_url=ollama.url, ms_per_mp_step=ms_per_mp_step)
        for name in FLEET[1:]:
            mesh.add(name, ms_per_mp_step=ms_per_mp_step)
        mesh.wait_all_see_each_other()
        yield mesh, ollama
    finally:
        mesh.close()
        ollama.stop()


class JobsPeer:
    """A fake peer of `mesh` at host:11435: each image takes `seconds`; `GET /api/jobs/{id}` reports it queued on
    `fake-gpu` for the first 40% of that, then running step 1..4. Records the X-Request-Id of each request."""

    def __init__(self, mesh: str, seconds: float = 1.5) -> None:
        queued = seconds * 0.4
        self.host = next_address()
        self.url = f"http://{self.host}:{PORT}"
        self.request_ids: list[str] = []
        self.bodies: list[dict[str, Any]] = []
        started: dict[str, float] = {}
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _json(self, status: int, doc: Any, headers: dict[str, str] | None = None) -> None:
                self._send(status, "application/json", json.dumps(doc).encode(), headers)

            def _send(self, status: int, ctype: str, body: bytes, headers: dict[str, str] | None = None) -> None:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                if self.path == "/mesh/ping":
                    return self._json(200, {"node_id": "fake", "mesh": mesh, "proto": 1})
                if self.path.startswith("/api/jobs/"):
                    job_id = self.path.rsplit("/", 1)[1]
                    if job_id not in started:
                        return self._json(404, {"error": f"no job {job_id}"})
                    elapsed = time.monotonic() - started[job_id]
                    doc: dict[str, Any] = {"id": job_id, "kind": "image", "model": "z-image-turbo",
                                           "node": "fake-gpu", "steps": 4, "elapsed_s": elapsed}  # fmt: skip
                    if elapsed < queued:
                        doc.update(state="queued", queue_position=1, step=None)
                    else:
                        step = min(4, int((elapsed - queued) / ((seconds - queued) / 4)) + 1)
                        doc.update(state="running", step=step, eta_s=max(0.0, seconds - elapsed))
                    return self._json(200, doc)
                return self._json(404, {"error": f"no such endpoint: GET {self.path}"})

            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
                job_id = self.headers.get("X-Request-Id") or "server-made"
                fake.request_ids.append(job_id)
                fake.bodies.append(body)
                started[job_id] = time.monotonic()
                time.sleep(seconds)
                self._send(200, "image/png", PNG, {"X-Fleet-Node": "fake-gpu", "X-Fleet-Model": body["model"],
                           "X-Generation-Time": "1234", "X-Queue-Time": "5", "X-Fleet-Seed": "7",
                           "X-Fleet-Attempts": "1", "X-Image-Size": "64x64", "X-Request-Id": job_id})  # fmt: skip

        self._server = ThreadingHTTPServer((self.host, PORT), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


class HangUpPeer:
    """Accepts a connection, reads the request, and closes without answering (a Mac that died mid-job)."""

    def __init__(self) -> None:
        self.host = next_address()
        self.url = f"http://{self.host}:{PORT}"
        self.requests = 0
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((self.host, PORT))
        self._sock.listen(16)
        self._sock.settimeout(0.2)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                conn.settimeout(2)
                try:
                    conn.recv(65536)
                except OSError:
                    pass
                self.requests += 1

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._sock.close()


class Recorder:
    """Stands in for subprocess.run: records each command and answers as told."""

    def __init__(self, answers: dict[str, tuple[int, str]] | None = None) -> None:
        self.calls: list[list[str]] = []
        self.answers = answers or {}

    def __call__(self, argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
        self.calls.append(list(argv))
        code, out = self.answers.get(" ".join(argv), (0, ""))
        return subprocess.CompletedProcess(list(argv), code, out, "")
