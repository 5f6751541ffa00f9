"""`/dashboard/api/events` read as a client would: every source at once, then each change as it happens; and the
routing and window parameters' errors."""

from __future__ import annotations

import json
import queue
import threading
from typing import Any

import httpx

from tests.harness import Mesh, Peer

SMALL = {"model": "z-image-turbo", "prompt": "a red fox", "width": 256, "height": 256, "steps": 2}


class Stream:
    """The peer's event stream, read on a thread: `next(name)` is the next event of that name."""

    def __init__(self, peer: Peer) -> None:
        self.events: queue.Queue[tuple[str, Any]] = queue.Queue()
        self._client = httpx.Client(timeout=httpx.Timeout(30, connect=5))
        self._context = self._client.stream("GET", peer.url + "/dashboard/api/events")
        self.response = self._context.__enter__()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        name = ""
        try:
            for line in self.response.iter_lines():
                if line.startswith("event: "):
                    name = line[7:]
                elif line.startswith("data: "):
                    self.events.put((name, json.loads(line[6:])))
        except httpx.HTTPError:
            pass

    def next(self, name: str, timeout: float = 5.0) -> Any:
        """The next `name` event; the others before it are passed over."""
        while True:
            got, data = self.events.get(timeout=timeout)
            if got == name:
                return data

    def __enter__(self) -> Stream:
        return self

    def __exit__(self, *_: object) -> None:
        self._client.close()


def test_the_stream_sends_everything_then_each_change(mesh: Mesh) -> None:
    alpha, bravo = mesh.add("alpha"), mesh.add("bravo")
    mesh.wait_all_see_each_other()
    with Stream(alpha) as stream:
        assert stream.response.headers["content-type"].startswith("text/event-stream")
        peers = stream.next("peers")
        assert {p["node_id"] for p in peers["peers"]} == {"alpha", "bravo"}
        assert stream.next("settings")["settings"]["store_prompts"] is False
        before = stream.next("records")["seq"]

        assert bravo.post("/dashboard/api/settings", json={"store_prompts": True}).status_code == 200
        while not stream.next("settings")["settings"]["store_prompts"]:
            pass  # a setting changed on another peer arrives pushed
        assert bravo.post("/api/generate-image", json=SMALL).status_code == 200
        assert stream.next("records")["seq"] > before  # bravo's record, copied here

        bravo.kill()
        down: dict[str, Any] = {}
        while down.get("status") != "down":
            down = next(p for p in stream.next("peers")["peers"] if p["node_id"] == "bravo")
        assert down["capabilities"] == {}  # no stale queue: what it advertised is forgotten


def test_routing_and_window_parameters_get_clear_errors(mesh: Mesh) -> None:
    alpha = mesh.add("alpha")
    response = alpha.post("/api/generate-image", json=SMALL, headers={"X-Request-Id": "explain-me"})
    assert response.status_code == 200
    route = alpha.get("/dashboard/api/routing?job=explain-me").json()
    assert route["node"] == "alpha" and route["explanation"][0] == "entered the mesh at alpha"
    assert route["explanation"][-1] == "it ran on alpha" and route["options"][0]["chosen"]
    bad = [
        ("routing", 400, "job"),
        ("routing?job=a%20b", 400, "job"),
        ("routing?job=nobody-ran", 404, "no record"),
        ("stats?tz=abc", 400, "tz"),
        ("stats?tz=-900", 400, "tz"),
        ("stats?tz=--60", 400, "tz"),
    ]
    for path, status, word in bad:
        answer = alpha.get("/dashboard/api/" + path)
        assert answer.status_code == status and word in answer.json()["error"], (path, answer.text)
    shifted = alpha.get("/dashboard/api/image-stats?hours=24&tz=330").json()  # a viewer in India (UTC+5:30)
    assert (shifted["timeline"][1]["start"] + 330 * 60) % 3600 == 0 and shifted["total"] == 1
