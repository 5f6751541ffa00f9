"""Safe by default: with no key set, no web page the owner visits and no stranger on the LAN can steer a peer,
steal prompts or wear it down. Each test replays one attack from the review, against live peers."""

from __future__ import annotations

import asyncio
import json
import os
import selectors
import socket
import stat
import subprocess
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fakepeer import FakePeer, json_answer, state_document
from tests.harness import PORT, Mesh, OllamaStandin, Peer, next_address, wait_until
from tests.inprocess import InProcessMesh, until

SETTINGS = "/dashboard/api/settings"
IMAGE = {"model": "z-image-turbo", "prompt": "a lighthouse", "width": 64, "height": 64, "steps": 1}
EVIL_ORIGIN = "http://evil.example"


@pytest.fixture
def peer(mesh: Mesh) -> Peer:
    return mesh.add("alpha")


# -- CSRF ------------------------------------------------------------------------------------------------------
def test_a_text_plain_or_form_settings_change_gets_415_and_changes_nothing(peer: Peer) -> None:
    before = peer.get(SETTINGS).json()
    body = b'{"image_generation": false, "store_prompts": true, "stats_retention_days": 1}'
    for content_type in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"):
        response = peer.post(SETTINGS, content=body, headers={"Content-Type": content_type})
        assert response.status_code == 415, (content_type, response.text)
        assert "application/json" in response.json()["error"]
    job = peer.post("/api/generate-image", content=json.dumps(IMAGE).encode(), headers={"Content-Type": "text/plain"})
    assert job.status_code == 415
    assert peer.get(SETTINGS).json() == before


def test_a_json_change_from_another_site_gets_403_and_changes_nothing(peer: Peer) -> None:
    before = peer.get(SETTINGS).json()
    for headers in ({"Origin": EVIL_ORIGIN}, {"Origin": "null"}, {"Sec-Fetch-Site": "cross-site"},
                    {"Sec-Fetch-Site": "same-site", "Origin": "http://other.localhost:11435"}):  # fmt: skip
        response = peer.post(SETTINGS, json={"image_generation": False}, headers=headers)
        assert response.status_code == 403 and "--cors-origin" in response.json()["error"], headers
        chat = peer.post("/api/chat", json={"model": "m", "messages": []}, headers=headers)  # Ollama's routes too
        assert chat.status_code == 403
    assert peer.get(SETTINGS).json() == before
    # the peer's own dashboard (same origin) may change them
    own = {"Origin": peer.url, "Sec-Fetch-Site": "same-origin"}
    assert peer.post(SETTINGS, json={"store_prompts": True}, headers=own).status_code == 200


def test_a_form_posted_from_another_site_in_a_real_browser_changes_nothing(peer: Peer, browser: Any) -> None:
    """The attack that got past Chromium's Local Network Access checks: a form that navigates the whole tab."""
    field = '{"image_generation": false, "store_prompts": true, "x": "'
    page_html = (f'<form method="POST" action="{peer.url}{SETTINGS}" enctype="text/plain">'
                 f"<input name='{field}' value='\"}}'></form>"
                 "<script>document.forms[0].submit()</script>").encode()  # fmt: skip
    with AttackerSite(next_address(), page_html) as site:
        page = browser.new_page()
        try:
            page.goto(site.url)
            page.wait_for_url(f"{peer.url}{SETTINGS}", timeout=10_000)
            answer = json.loads(page.inner_text("body"))
        finally:
            page.close()
    assert "error" in answer
    settings = peer.get(SETTINGS).json()
    assert settings["image_generation"] is True and settings["store_prompts"] is False


def test_an_allowed_origin_gets_cors_and_others_do_not(mesh: Mesh) -> None:
    app = "http://localhost:5173"
    p = mesh.add("alpha", args=["--cors-origin", app])
    preflight = {"Origin": app, "Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "content-type"}  # fmt: skip
    answer = httpx.options(p.url + "/api/generate-image", headers=preflight)
    assert answer.status_code == 204 and answer.headers["Access-Control-Allow-Origin"] == app
    assert "POST" in answer.headers["Access-Control-Allow-Methods"]
    job = p.post("/api/generate-image", json=IMAGE, headers={"Origin": app, "Sec-Fetch-Site": "cross-site"})
    assert job.status_code == 200 and job.headers["Access-Control-Allow-Origin"] == app
    assert "X-Fleet-Node" in job.headers["Access-Control-Expose-Headers"]
    other = httpx.options(p.url + "/api/generate-image", headers={**preflight, "Origin": EVIL_ORIGIN})
    assert other.status_code == 403 and "Access-Control-Allow-Origin" not in other.headers


# -- DNS rebinding ----------------------------------------------------------------------------------------------
def test_a_host_that_is_not_the_peers_gets_421(mesh: Mesh) -> None:
    p = mesh.add("alpha", args=["--allow-host", "studio.lan"])
    rebound = {"Host": "rebind.attacker.example:11435"}
    assert p.get("/mesh/records?since=0", headers=rebound).status_code == 421
    assert p.get("/dashboard", headers=rebound).status_code == 421
    stamped = {"entries": {"image_generation": {"value": False, "ts": time.time() + 3600, "by": "bravo"}}}
    pushed = p.post("/mesh/settings", json=stamped, headers={**rebound, "X-Herd-Mesh": mesh.name})
    assert pushed.status_code == 421 and "--allow-host" in pushed.json()["error"]
    assert p.get(SETTINGS).json()["image_generation"] is True
    for host in ("studio.lan", "STUDIO.LAN:11435", "localhost:11435", "127.0.0.1", p.host, f"{p.host}:11435"):
        assert p.get("/mesh/ping", headers={"Host": host}).status_code == 200, host


# -- relayed content ---------------------------------------------------------------------------------------------
def test_a_peer_answering_html_gets_a_json_error_relayed_not_its_page(mesh: Mesh) -> None:
    script = b"<html><script>fetch('/dashboard/api/settings',{method:'POST'})</script></html>"
    with FakePeer(next_address(), mesh=mesh.name, node_id="mallory") as fake:
        llm = {"enabled": {"llm": True, "embeddings": True}, "models": ["evil:1b"], "loaded": ["evil:1b"],
               "active": []}  # fmt: skip
        fake.answers["/mesh/state"] = json_answer(state_document(fake, mesh.name, llm=llm))
        fake.answers["/api/chat"] = lambda: (200, "text/html", script)
        fake.answers["/v1/chat/completions"] = lambda: (400, "text/html", script)
        a = mesh.add("alpha", args=["--no-mdns", "--peer", fake.url], ollama_url="http://127.0.0.1:9")
        wait_until(lambda: a.get("/api/tags").json()["models"], 10, what="alpha to learn mallory's model")
        chat = a.post("/api/chat", json={"model": "evil:1b", "messages": [], "stream": False})
        assert chat.headers["content-type"].startswith("application/json") and "<script" not in chat.text
        assert chat.status_code >= 500 and "text/html" in chat.json()["error"]
        refused = a.post("/v1/chat/completions", json={"model": "evil:1b", "messages": []})
        assert refused.status_code == 400 and refused.headers["content-type"].startswith("application/json")
        assert fake.hits["/api/chat"] >= 1


# -- headers ------------------------------------------------------------------------------------------------------
def test_every_answer_says_nosniff_and_the_dashboard_cannot_be_framed(peer: Peer, browser: Any) -> None:
    too_big = peer.post(SETTINGS, content=b"x" * (2 << 20), headers={"Content-Type": "application/json"})
    answers = [peer.get("/mesh/ping"), peer.get("/nope"), peer.get("/dashboard/static/dashboard.js"),
               peer.get("/mesh/ping", headers={"Host": "evil.example"}), too_big]  # fmt: skip
    for response in answers:
        assert response.headers["X-Content-Type-Options"] == "nosniff", response.request.url
        assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
    assert peer.get("/mesh/ping").headers["Content-Security-Policy"].startswith("default-src 'none'")
    page = peer.get("/dashboard")
    assert (
        page.headers["X-Frame-Options"] == "DENY" and "script-src 'self'" in page.headers["Content-Security-Policy"]
    )
    framing = f'<iframe id="f" src="{peer.url}/dashboard" width="800" height="600"></iframe>'.encode()
    with AttackerSite(next_address(), framing) as site:
        tab = browser.new_page()
        try:
            tab.goto(site.url)
            wait_until(lambda: len(tab.frames) == 2, 10, what="the frame to load or be refused")
            frame = tab.frames[1]
            frame.wait_for_load_state()
            assert not frame.url.startswith(peer.url) or frame.query_selector("#peers") is None
        finally:
            tab.close()


# -- wear-down --------------------------------------------------------------------------------------------------
@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
async def test_a_full_queue_refuses_more_with_retry_after(tmp_path: Path) -> None:
    from herd_mesh.services.image_service import MAX_WAITING_JOBS

    mesh = InProcessMesh(tmp_path, ["a"])
    async with mesh.running():
        engine = mesh.engines["a"]
        engine.hold = True
        async with mesh.client("a") as client:
            calls = [asyncio.ensure_future(client.post("/api/generate-image", json=IMAGE)) for _ in range(40)]
            await until(lambda: sum(c.done() for c in calls) == 40 - MAX_WAITING_JOBS - 1, 10, "the overflow")
            refused = [c.result() for c in calls if c.done()]
            assert all(r.status_code == 503 and r.headers["Retry-After"] for r in refused)
            assert all("full" in r.json()["error"] for r in refused)  # the mesh's queues, then a's own
            assert (await client.get("/mesh/ping")).status_code == 200
            engine.release()
            done = await asyncio.gather(*calls)
        assert sum(r.status_code == 200 for r in done) == MAX_WAITING_JOBS + 1


def test_300_half_sent_requests_do_not_stop_the_peer_answering(mesh: Mesh) -> None:
    a, b = mesh.add("alpha"), mesh.add("bravo")
    mesh.wait_all_see_each_other()
    sockets = []
    try:
        for _ in range(300):  # slowloris: a request line and some headers, never the blank line that ends them
            s = socket.create_connection((a.host, PORT), timeout=5)
            s.sendall(f"POST /api/generate-image HTTP/1.1\r\nHost: {a.host}\r\nContent-Length: 5\r\n".encode())
            sockets.append(s)
        other = next_address()
        with httpx.Client(transport=httpx.HTTPTransport(local_address=other), timeout=5) as client:
            assert client.get(a.url + "/mesh/ping").status_code == 200
        for _ in range(6):  # bravo's probes keep reaching alpha throughout
            assert b.statuses()["alpha"] == "up"
            time.sleep(0.25)
        # and alpha closes them all once the header deadline has passed
        assert wait_until(lambda: all_closed(sockets), 20, what="alpha to close the half-sent requests")
    finally:
        for s in sockets:
            s.close()


def all_closed(sockets: list[socket.socket]) -> bool:
    with selectors.DefaultSelector() as selector:
        for s in sockets:
            selector.register(s, selectors.EVENT_READ)
        ready = {key.fileobj for key, _ in selector.select(timeout=0.5)}
    return len(ready) == len(sockets) and all(s.recv(1, socket.MSG_PEEK) == b"" for s in sockets)


def test_a_flood_of_state_from_a_peer_is_refused_and_a_down_peers_card_is_emptied(mesh: Mesh) -> None:
    with FakePeer(next_address(), mesh=mesh.name, node_id="flood") as fake:
        huge = state_document(fake, mesh.name, image={"models": {f"m{i}": {"installed": True} for i in range(60000)}})
        fake.answers["/mesh/state"] = json_answer(huge)
        a = mesh.add("alpha", args=["--no-mdns", "--peer", fake.url])
        wait_until(lambda: fake.hits["/mesh/state"] >= 2, 10, what="alpha to try the huge state document")
        doc = a.get("/mesh/peers")
        flood = next(p for p in doc.json()["peers"] if p["node_id"] == "flood")
        assert flood["status"] == "up" and flood["capabilities"] == {} and len(doc.content) < 100_000
        fake.answers["/mesh/state"] = json_answer(state_document(fake, mesh.name, image={"queue": {"waiting": [
            {"job_id": "w", "estimate_s": 9}]}}))  # fmt: skip
        wait_until(lambda: peer_caps(a, "flood").get("image"), 10, what="alpha to take the normal document")
    # the fake is gone: once it is down, its old queue is no longer shown
    wait_until(lambda: peer_caps(a, "flood") == {}, 10, what="the down peer's card to be emptied")


def peer_caps(peer: Peer, node_id: str) -> dict[str, Any]:
    doc = peer.get("/mesh/peers").json()
    return next(p["capabilities"] for p in doc["peers"] if p["node_id"] == node_id)


def test_only_a_few_uploads_at_once(peer: Peer) -> None:
    from herd_mesh.web.routes.audio import MAX_UPLOADS_AT_ONCE

    boundary = "b0undary"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"audio\"; filename=\"a.wav\"\r\n"
            "Content-Type: audio/wav\r\n\r\n").encode()  # fmt: skip
    total = len(head) + 50 * 1024 * 1024
    slow = []
    try:
        for _ in range(MAX_UPLOADS_AT_ONCE):  # each has sent its headers and 1 MB of a 50 MB recording
            s = socket.create_connection((peer.host, PORT), timeout=5)
            s.sendall(
                (
                    f"POST /api/transcribe HTTP/1.1\r\nHost: {peer.host}\r\nContent-Length: {total}\r\n"
                    f"Content-Type: multipart/form-data; boundary={boundary}\r\n\r\n"
                ).encode()
                + head
            )
            s.sendall(b"\0" * (1024 * 1024))
            slow.append(s)

        def refused() -> httpx.Response | None:
            response = peer.post("/api/transcribe", files={"audio": ("b.wav", b"RIFF" * 10, "audio/wav")})
            return response if response.status_code == 429 else None

        answer = wait_until(refused, 10, what="the next upload to be refused")
        assert answer.headers["Retry-After"] and "retry" in answer.json()["error"]
    finally:
        for s in slow:
            s.close()
    wait_until(lambda: peer.post("/api/transcribe", files={"audio": ("b.wav", b"RIFF", "audio/wav")}).status_code
               != 429, 10, what="uploads to be taken again")  # fmt: skip


def test_a_30_mb_body_gets_a_413_that_urllib_httpx_and_curl_see(peer: Peer) -> None:
    body = b"x" * (30 * 1024 * 1024)
    url = peer.url + "/api/generate-image"
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"}, method="POST")
    with pytest.raises(urllib.error.HTTPError) as seen:
        urllib.request.urlopen(request, timeout=30)
    assert seen.value.code == 413 and "larger than" in json.loads(seen.value.read())["error"]
    assert (
        peer.post("/api/generate-image", content=body, headers={"Content-Type": "application/json"}).status_code
        == 413
    )
    argv = ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-H", "Content-Type: application/json",
            "--data-binary", "@-", url]  # fmt: skip
    curl = subprocess.run(argv, input=body, capture_output=True, timeout=60)
    assert curl.stdout == b"413"


# -- exposure -----------------------------------------------------------------------------------------------------
def test_the_data_dir_and_its_files_are_private(mesh: Mesh, tmp_path: Path) -> None:
    data = mesh.base_dir / "alpha"
    data.mkdir(mode=0o755)
    (data / "settings.json").write_text('{"entries": {}}')
    (data / "settings.json").chmod(0o644)  # left readable by an older version
    a = mesh.add("alpha")
    assert a.post(SETTINGS, json={"store_prompts": True}).status_code == 200
    assert a.post("/api/generate-image", json=IMAGE).status_code == 200

    def mode(path: Path) -> int:
        return stat.S_IMODE(path.stat().st_mode)

    wait_until(lambda: (data / "herd.db").exists(), 10, what="the records")
    assert mode(data) == 0o700
    for name in ("settings.json", "herd.db", "speed.json"):
        assert mode(data / name) == 0o600, name


def test_engine_errors_carry_no_traceback_or_home_path(mesh: Mesh) -> None:
    a = mesh.add("alpha", env={"HERD_STANDIN_FAIL": "error"})
    response = a.post("/api/generate-image", json=IMAGE)
    assert response.status_code == 502
    error = response.json()["error"]
    assert "mflux exited with code 1" in error
    for leak in ("Traceback", 'File "', str(Path.home()) + "/", "/home/", "/Users/"):
        assert leak not in error, (leak, error)


def test_the_state_document_tells_no_os_build_or_ollama_address(peer: Peer) -> None:
    state = peer.get("/mesh/state").json()
    assert "os" not in state["system"] and "url" not in state["llm"]["ollama"]
    assert os.uname().release not in json.dumps(state)


def test_prompts_never_leave_the_mac_through_mesh_records(peer: Peer) -> None:
    assert peer.post(SETTINGS, json={"store_prompts": True}).status_code == 200
    assert peer.post("/api/generate-image", json=IMAGE).status_code == 200
    rows = wait_until(lambda: peer.get("/mesh/records?since=0").json()["rows"], 10, what="the record")
    assert "prompt" not in rows[0] and IMAGE["prompt"] not in json.dumps(rows)
    recent = peer.get("/dashboard/api/image-stats?scope=local").json()["recent"]
    assert recent[0]["prompt"] == IMAGE["prompt"]  # the Mac it was sent to still shows it


def test_a_forged_steal_request_is_refused(mesh: Mesh) -> None:
    a, _ = mesh.add("alpha"), mesh.add("bravo")
    mesh.wait_all_see_each_other()
    forged = a.post("/mesh/steal-image", json={"image": {}}, headers={"X-Herd-Node": "bravo",
                                                                      "X-Herd-Mesh": mesh.name})  # fmt: skip
    assert forged.status_code == 403 and "own address" in forged.json()["error"]


def test_the_seeds_embeddings_curl_still_works_with_no_content_type(mesh: Mesh) -> None:
    standin = OllamaStandin("mac-a", "nomic-embed-text")
    try:
        a = mesh.add("alpha", ollama_url=standin.url)
        wait_until(lambda: a.get("/api/tags").json()["models"], 10, what="alpha to see its Ollama")
        curl = subprocess.run(["curl", "-s", f"{a.url}/api/embeddings", "-d",
                               '{"model":"nomic-embed-text","prompt":"search query"}'],
                              capture_output=True, text=True, timeout=30)  # fmt: skip
        assert len(json.loads(curl.stdout)["embedding"]) == 8, curl.stdout
    finally:
        standin.stop()


# -- helpers ------------------------------------------------------------------------------------------------------
class AttackerSite:
    """Another origin on the LAN serving one page (what the owner's browser visits)."""

    def __init__(self, host: str, page: bytes) -> None:
        self.url = f"http://{host}:8123/"

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.end_headers()
                self.wfile.write(page)

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer((host, 8123), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> AttackerSite:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
