"""Only the mesh may steer the mesh: peers sharing a mesh key sign every call to each other, and nobody else is
listed, sent work, believed, or allowed to change settings. API keys close the public API to clients without
one. Real peer processes on 127.0.0.x, real mDNS."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import ollama
import openai
import pytest

from herd_mesh.cli.key import generate_key
from herd_mesh.client import _common as common
from herd_mesh.core import signing, txt
from tests.harness import Mesh, OllamaStandin, Peer, wait_until

pytestmark = [pytest.mark.usefixtures("multicast"), pytest.mark.timeout(120)]

KEY = generate_key()
OTHER_KEY = generate_key()
BODY = {"model": "z-image-turbo", "prompt": "a lighthouse", "width": 256, "height": 256, "steps": 2}


@pytest.fixture
def mesh(tmp_path: Path) -> Iterator[Mesh]:
    m = Mesh(tmp_path)
    try:
        yield m
    finally:
        m.close()


def signed(key: str, method: str, path: str, body: bytes = b"", *, at: float | None = None) -> dict[str, str]:
    """The headers a member would send (what `mesh/clients.py` MeshAuth computes)."""
    stamp = int(time.time() if at is None else at)
    value = signing.auth_value(key, method, path, stamp, secrets.token_hex(16), signing.body_hash(body))
    return {signing.AUTH_HEADER: value}


def peer_ids(peer: Peer) -> set[str]:
    return {p["node_id"] for p in peer.get("/mesh/peers").json()["peers"] if not p["self"] and p["node_id"]}


def static_error(peer: Peer) -> str:
    rows = [p for p in peer.get("/mesh/peers").json()["peers"] if p["static"] and p.get("last_error")]
    return rows[0]["last_error"] if rows else ""


def test_only_peers_with_the_key_are_members_and_work_flows_between_them(mesh: Mesh) -> None:
    a = mesh.add("a", args=["--mesh-key", KEY], mflux=False)  # a makes no images: its jobs go to b
    b = mesh.add("b", args=["--mesh-key", KEY])
    mesh.wait_all_see_each_other()
    other = mesh.add("other", args=["--mesh-key", OTHER_KEY, "--peer", a.url])
    open_peer = mesh.add("open", args=["--peer", a.url])
    wait_until(lambda: static_error(other), 20, what="the peer with another key to be turned away by a")
    wait_until(lambda: static_error(open_peer), 20, what="the peer without a key to be turned away by a")
    assert "key" in static_error(other) and "key" in static_error(open_peer)
    assert peer_ids(a) == {"b"} and peer_ids(b) == {"a"}  # mDNS saw the others too: never listed
    assert peer_ids(other) == set() and peer_ids(open_peer) == set()
    state = a.get("/mesh/peers").json()["peers"][0]["capabilities"]
    assert state["security"] == {"mesh_key": True, "key": signing.fingerprint(KEY), "api_keys": False}
    assert KEY not in json.dumps(a.get("/mesh/peers").json())

    answer = a.post("/api/generate-image", json=BODY)  # signed forwarding between members works
    assert answer.status_code == 200, answer.text
    assert answer.headers["X-Fleet-Node"] == "b"
    alone = open_peer.post("/api/generate-image", json=BODY)  # the open peer has no members to send work to
    assert alone.status_code == 200 and alone.headers["X-Fleet-Node"] == "open"


def test_forged_mesh_calls_are_refused_and_change_nothing(mesh: Mesh) -> None:
    a = mesh.add("a", args=["--mesh-key", KEY])
    before = a.get("/dashboard/api/settings").json()
    entries = {"image_generation": {"value": False, "ts": time.time() + 60, "by": "attacker"}}
    body = json.dumps({"entries": entries}).encode()
    old = time.time() - 600

    def put(**headers: str) -> httpx.Response:
        return a.post("/mesh/settings", content=body, headers={"Content-Type": "application/json",
                                                               "X-Herd-Mesh": mesh.name, **headers})  # fmt: skip

    forged = [
        a.get("/mesh/state"),
        a.get("/mesh/ping"),
        a.get("/mesh/records"),
        a.get("/mesh/known"),
        put(),
        put(**signed(OTHER_KEY, "POST", "/mesh/settings", body)),
        put(**signed(KEY, "POST", "/mesh/settings", b"{}")),  # signed for another body
        put(**signed(KEY, "POST", "/mesh/settings", body, at=old)),  # outside the replay window
        a.post("/api/generate-image", json=BODY, headers={"X-Herd-Forwarded": "1"}),
    ]  # fmt: skip
    for answer in forged:
        assert answer.status_code == 401, (answer.request.url, answer.text)
        assert answer.json()["error"]
    assert a.get("/dashboard/api/settings").json() == before
    assert a.get("/mesh/peers").status_code == 200  # `herd peers` and the dashboard read it

    headers = signed(KEY, "POST", "/mesh/settings", body)
    first = put(**headers)
    assert first.status_code == 200  # a member's call...
    assert first.headers[signing.AUTH_HEADER]  # ...answered with a signature a member can check
    assert a.get("/dashboard/api/settings").json()["image_generation"] is False  # it took the member's entries
    replay = put(**headers)
    assert replay.status_code == 401 and "replay" in replay.json()["error"]


def test_settings_change_only_with_a_key_and_then_reach_every_peer(mesh: Mesh) -> None:
    a = mesh.add("a", args=["--mesh-key", KEY])
    b = mesh.add("b", args=["--mesh-key", KEY])
    mesh.wait_all_see_each_other()
    no_key = a.post("/dashboard/api/settings", json={"image_generation": False})
    assert no_key.status_code == 401 and "Bearer" in no_key.json()["error"]
    assert no_key.headers["WWW-Authenticate"].startswith("Bearer")
    wrong = a.post("/dashboard/api/settings", json={"image_generation": False},
                   headers={"Authorization": f"Bearer {OTHER_KEY}"})  # fmt: skip
    assert wrong.status_code == 403
    assert a.get("/dashboard/api/settings").json()["image_generation"] is True
    done = a.post("/dashboard/api/settings", json={"image_generation": False},
                  headers={"Authorization": f"Bearer {KEY}"})  # fmt: skip
    assert done.status_code == 200
    wait_until(lambda: b.get("/dashboard/api/settings").json()["image_generation"] is False, 10,
               what="the change to reach b")  # fmt: skip
    assert a.post("/api/generate-image", json=BODY).status_code == 503  # the mesh obeys it


def test_a_member_macs_own_tools_use_the_key_in_its_data_dir(mesh: Mesh, tmp_path: Path) -> None:
    a = mesh.add("a", args=["--mesh-key", KEY])
    data_dir = tmp_path / "member"
    data_dir.mkdir()
    env = {**mesh.env(data_dir, mflux=False, ms_per_mp_step=50, extra=None), "HERD_DATA_DIR": str(data_dir)}

    def herd(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "herd_mesh", *args], capture_output=True, text=True,
                              timeout=60, env=env)  # fmt: skip

    refused = herd("settings", "set", "stats_retention_days", "3", "--url", a.url)
    assert refused.returncode != 0 and "key" in refused.stderr  # says what it needs
    assert herd("key", "show").returncode == 1  # none yet, and it says how to make one
    assert herd("key", "set", KEY).returncode == 0
    assert (data_dir / "mesh.key").stat().st_mode & 0o077 == 0  # the user's alone
    shown = herd("key", "show")
    assert shown.stdout.strip() == KEY and signing.fingerprint(KEY) in shown.stderr
    changed = herd("settings", "set", "stats_retention_days", "3", "--url", a.url)  # its own peer: the key goes
    assert changed.returncode == 0, changed.stderr
    assert a.get("/dashboard/api/settings").json()["stats_retention_days"] == 3


def test_the_data_dirs_key_is_only_sent_to_this_macs_own_peer(tmp_path: Path) -> None:
    (tmp_path / "mesh.key").write_text(KEY)
    auth = common.key_auth(None, {"HERD_DATA_DIR": str(tmp_path)})
    sent = {url: next(auth.auth_flow(httpx.Request("GET", url))).headers.get("authorization")
            for url in ("http://127.0.0.1:11435/x", "http://127.0.0.7:11435/x", "http://192.168.1.20:11435/x",
                        "http://studio.local:11435/x")}  # fmt: skip
    assert sent == {"http://127.0.0.1:11435/x": f"Bearer {KEY}", "http://127.0.0.7:11435/x": f"Bearer {KEY}",
                    "http://192.168.1.20:11435/x": None, "http://studio.local:11435/x": None}  # fmt: skip
    explicit = common.key_auth("an-api-key-for-all-peers", {"HERD_DATA_DIR": str(tmp_path)})
    remote = next(explicit.auth_flow(httpx.Request("GET", "http://192.168.1.20:11435/x")))
    assert remote.headers["authorization"] == "Bearer an-api-key-for-all-peers"


def test_api_keys_close_the_public_api_and_the_official_clients_pass_theirs(mesh: Mesh) -> None:
    api_key = generate_key()
    standin = OllamaStandin("llm", models="llama3.2:3b")
    try:
        a = mesh.add("a", args=["--api-key", api_key], ollama_url=standin.url)
        for path in ("/api/tags", "/v1/models", "/dashboard/api/settings", "/api/image-models"):
            missing = a.get(path)
            assert missing.status_code == 401, path
            assert missing.headers["content-type"] == "application/json" and missing.json()["error"]
            assert a.get(path, headers={"Authorization": "Bearer wrong-key-wrong-key"}).status_code == 403
            assert a.get(path, headers={"Authorization": f"Bearer {api_key}"}).status_code == 200
        assert a.post("/api/generate-image", json=BODY).status_code == 401
        assert a.get("/dashboard").status_code == 200  # the page; it asks for the key itself
        assert a.get("/mesh/peers").status_code == 200

        hi = [{"role": "user", "content": "hi"}]
        with openai.OpenAI(base_url=f"{a.url}/v1", api_key=api_key) as client:
            answer = client.chat.completions.create(model="llama3.2:3b", messages=hi)  # type: ignore[arg-type]
            assert answer.choices[0].message.content
        wrong = openai.OpenAI(base_url=f"{a.url}/v1", api_key="not-the-key-at-all", max_retries=0)
        with wrong, pytest.raises(openai.PermissionDeniedError):
            wrong.models.list()
        with ollama.Client(host=a.url, headers={"Authorization": f"Bearer {api_key}"}) as client:
            assert client.chat(model="llama3.2:3b", messages=hi).message.content
        with ollama.Client(host=a.url) as client, pytest.raises(ollama.ResponseError) as info:
            client.chat(model="llama3.2:3b", messages=hi)
        assert info.value.status_code == 401
    finally:
        standin.stop()


def test_mdns_carries_the_keys_fingerprint_never_the_key() -> None:
    summary = txt.Summary(node_id="a", mesh="default", boot_id="b", state_version=1, key=signing.fingerprint(KEY))
    props = txt.encode(summary)
    assert props["kf"] == signing.fingerprint(KEY)
    assert KEY not in json.dumps(props)
    assert txt.decode(props).key == signing.fingerprint(KEY)
    assert "kf" not in txt.encode(txt.Summary(node_id="a", mesh="default", boot_id="b", state_version=1))
    assert signing.fingerprint(KEY) != signing.fingerprint(OTHER_KEY)


def test_the_dashboards_event_stream_takes_the_key_in_its_query(mesh: Mesh) -> None:
    """A browser's EventSource cannot send Authorization: with API keys on, the stream takes `?key=`."""
    api_key = generate_key()
    a = mesh.add("a", args=["--api-key", api_key])
    assert a.get("/dashboard/api/events").status_code == 401
    assert a.get("/api/tags", params={"key": api_key}).status_code == 401  # nowhere else
    with httpx.stream("GET", a.url + "/dashboard/api/events", params={"key": api_key}, timeout=10) as stream:
        assert stream.status_code == 200 and stream.headers["content-type"].startswith("text/event-stream")


def test_a_member_macs_client_never_picks_a_peer_without_the_key(
    mesh: Mesh, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Mac without the key calls itself part of the mesh (same name): a member's client never uses it, so a
    settings change cannot land there and report success."""
    import herd_mesh

    a = mesh.add("a", args=["--mesh-key", KEY])
    b = mesh.add("b", args=["--mesh-key", KEY])
    impostor = mesh.add("open")
    wait_until(lambda: peer_ids(a) == {"b"} and peer_ids(b) == {"a"}, 10, what="a and b to list each other")
    member = tmp_path / "member"
    member.mkdir()
    (member / "mesh.key").write_text(KEY)
    monkeypatch.setenv("HERD_DATA_DIR", str(member))
    monkeypatch.delenv("HERD_URL", raising=False)
    chosen = set()
    for _ in range(4):
        with herd_mesh.Client(mesh=mesh.name, discovery_timeout=1.5) as client:
            chosen.add(client.node)
    assert chosen and chosen <= {"a", "b"}
    assert impostor.get("/mesh/peers").status_code == 200
