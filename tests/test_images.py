"""Image generation through real peers and the mflux stand-in: routing, failover, cancellation, validation."""

from __future__ import annotations

import base64
import os
import struct
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.harness import Mesh, Peer, wait_until

SEED_BODY = {
    "model": "z-image-turbo",
    "prompt": "a neon-lit Tokyo alley at midnight, cyberpunk aesthetic",
    "width": 1024,
    "height": 1024,
    "steps": 4,
    "quantize": 8,
}
SMALL = {"model": "z-image-turbo", "prompt": "a red fox", "width": 512, "height": 512, "steps": 4}


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n", data[:80]
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def generate(peer: Peer, body: dict, **kwargs) -> httpx.Response:
    return peer.post("/api/generate-image", json=body, timeout=kwargs.pop("timeout", 60), **kwargs)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie still answers kill(0); it is dead for our purposes
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except OSError:
        return False


def test_single_peer_returns_the_png_with_fleet_headers(mesh: Mesh) -> None:
    a = mesh.add("alpha")
    response = generate(a, SEED_BODY)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    assert png_size(response.content) == (1024, 1024)
    assert response.headers["X-Fleet-Node"] == "alpha"
    assert response.headers["X-Fleet-Model"] == "z-image-turbo"
    assert int(response.headers["X-Generation-Time"]) > 0
    assert int(response.headers["X-Queue-Time"]) >= 0
    seed = int(response.headers["X-Fleet-Seed"])
    again = generate(a, {**SEED_BODY, "seed": seed})
    assert again.content == response.content  # the reported seed reproduces the image
    started = [e for e in mesh.standin_events() if e["event"] == "start"]
    argv = started[-1]["argv"]
    assert argv[argv.index("--seed") + 1] == str(seed) and argv[argv.index("--quantize") + 1] == "8"


def test_burst_to_one_peer_uses_every_machine(mesh: Mesh) -> None:
    peers = [mesh.add(n, ms_per_mp_step=1500) for n in ("alpha", "bravo", "charlie")]
    mesh.wait_all_see_each_other()
    with ThreadPoolExecutor(6) as pool:
        responses = list(pool.map(lambda i: generate(peers[0], {**SMALL, "seed": i}), range(6)))
    assert all(r.status_code == 200 for r in responses), [r.text for r in responses if r.status_code != 200]
    nodes = [r.headers["X-Fleet-Node"] for r in responses]
    assert set(nodes) == {"alpha", "bravo", "charlie"}, nodes
    stats = peers[0].get("/dashboard/api/image-stats").json()
    assert stats["succeeded"] == 6 and set(stats["by_node"]) == {"alpha", "bravo", "charlie"}


def test_a_forwarded_request_is_never_forwarded_again(mesh: Mesh) -> None:
    a = mesh.add("alpha", ms_per_mp_step=1500)
    b = mesh.add("bravo", mflux=False)
    mesh.wait_all_see_each_other()
    forwarded = {"X-Herd-Forwarded": "1", "X-Herd-Node": "alpha", "X-Herd-Mesh": mesh.name}
    # bravo cannot run it: it says so instead of passing it on to alpha
    refused = b.call_from(a, "POST", "/api/generate-image", json=SMALL, headers=forwarded)
    assert refused.status_code == 404 and "not installed on bravo" in refused.json()["error"]
    # alpha runs a forwarded job itself even while busy and idle peers exist (no redirect was allowed)
    c = mesh.add("charlie", ms_per_mp_step=50)
    mesh.wait_all_see_each_other()
    from_b = {**forwarded, "X-Herd-Node": "bravo"}
    with ThreadPoolExecutor(3) as pool:
        jobs = [pool.submit(a.call_from, b, "POST", "/api/generate-image", json={**SMALL, "seed": i},
                            headers=from_b) for i in range(3)]  # fmt: skip
        results = [j.result() for j in jobs]
    assert [r.headers.get("X-Fleet-Node") for r in results] == ["alpha"] * 3
    assert c.alive


def test_a_forwarded_header_from_a_stranger_is_an_ordinary_request(mesh: Mesh) -> None:
    """Anyone can send X-Herd-Forwarded; from an address that is no peer's it is routed and recorded as usual."""
    a = mesh.add("alpha", mflux=False)
    mesh.add("bravo")
    mesh.wait_all_see_each_other()
    forged = {"X-Herd-Forwarded": "1", "X-Herd-Node": "bravo", "X-Herd-Mesh": mesh.name, "X-Herd-Job": "forged"}
    response = a.post("/api/generate-image", json=SMALL, headers=forged)  # from 127.0.0.1: not bravo's address
    assert response.status_code == 200 and response.headers["X-Fleet-Node"] == "bravo"  # routed, not refused
    records = a.get("/dashboard/api/image-stats?scope=local").json()
    assert records["total"] == 1 and records["recent"][0]["job_id"] != "forged"


def test_peer_killed_mid_job_the_request_still_succeeds(mesh: Mesh) -> None:
    entry = mesh.add("entry", mflux=False)
    workers = {n: mesh.add(n, ms_per_mp_step=5000) for n in ("bravo", "charlie")}  # ~5 s per image
    mesh.wait_all_see_each_other()
    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(generate, entry, SMALL)

        def running_on() -> str | None:
            for name, peer in workers.items():
                if peer.get("/mesh/state").json()["image"]["queue"]["running"]:
                    return name
            return None

        victim = wait_until(running_on, 10, what="a worker to start the job")
        time.sleep(0.5)
        orphan = [e for e in mesh.standin_events() if e["event"] == "start"][0]["pid"]
        workers[victim].kill()
        # its mflux outlives it (nothing catches SIGKILL); restarted, the peer reaps it long before it would end
        assert pid_alive(orphan)
        workers[victim].start()
        wait_until(lambda: not pid_alive(orphan), 3, what=f"orphaned mflux {orphan} to be reaped")
        response = future.result(timeout=60)
    assert response.status_code == 200, response.text
    survivor = ({"bravo", "charlie"} - {victim}).pop()
    assert response.headers["X-Fleet-Node"] == survivor
    assert response.headers["X-Fleet-Attempts"] == "2"


def test_mflux_failing_gives_a_clear_error(mesh: Mesh) -> None:
    a = mesh.add("alpha", env={"HERD_STANDIN_FAIL": "error"})
    response = generate(a, SMALL)
    assert response.status_code == 502
    body = response.json()
    assert "Insufficient Memory" in body["error"] and "alpha" in body["error"]
    assert body["attempts"][0]["node"] == "alpha"
    b = mesh.add("bravo", env={"HERD_STANDIN_FAIL": "no-image"})
    mesh.wait_all_see_each_other()
    both = generate(b, SMALL).json()
    assert {a["node"] for a in both["attempts"]} == {"alpha", "bravo"}
    assert "without writing an image" in both["error"]


def test_client_disconnect_kills_the_job_wherever_it_runs(mesh: Mesh) -> None:
    entry = mesh.add("entry", mflux=False)
    worker = mesh.add("worker", ms_per_mp_step=20000)  # ~20 s per image
    mesh.wait_all_see_each_other()
    with pytest.raises(httpx.TimeoutException):
        generate(entry, SMALL, timeout=2.5)
    starts = wait_until(lambda: [e for e in mesh.standin_events() if e["event"] == "start"], 5, what="a start")
    pid = starts[-1]["pid"]
    wait_until(lambda: not pid_alive(pid), 10, what=f"mflux stand-in {pid} to be killed")
    wait_until(lambda: not worker.get("/mesh/state").json()["image"]["queue"]["running"], 5, what="queue empty")
    stats = entry.get("/dashboard/api/image-stats").json()
    assert stats["cancelled"] == 1


BAD_BODIES = [
    ({"prompt": "x"}, "model"),
    ({"model": "z-image-turbo"}, "prompt"),
    ({"model": "z-image-turbo", "prompt": "   "}, "prompt"),
    ({"model": "z-image-turbo", "prompt": "x" * 5000}, "prompt"),
    ({"model": "z-image-turbo", "prompt": 42}, "prompt"),
    ({**SMALL, "width": 4096}, "width"),
    ({**SMALL, "height": 10}, "height"),
    ({**SMALL, "width": "512"}, "width"),
    ({**SMALL, "steps": 0}, "steps"),
    ({**SMALL, "steps": 1000}, "steps"),
    ({**SMALL, "quantize": 7}, "quantize"),
    ({**SMALL, "seed": -1}, "seed"),
    ({**SMALL, "seed": 2**32}, "seed"),
    ({**SMALL, "negative_prompt": ["no"]}, "negative_prompt"),
    ({**SMALL, "metadata": {"tags": "one"}}, "tags"),
    ({**SMALL, "metadata": {"tags": ["x" * 100]}}, "tag"),
    ({**SMALL, "widht": 512}, "widht"),
]


def test_every_validation_case_gets_a_400_naming_the_field(mesh: Mesh) -> None:
    a = mesh.add("alpha")
    for body, field in BAD_BODIES:
        response = generate(a, body)
        assert response.status_code == 400, (body, response.text)
        assert field in response.json()["error"], (body, response.json())
    for raw, needle in ((b"", "empty"), (b"{not json", "JSON"), (b"[1, 2]", "object"), (b"null", "object")):
        response = a.post("/api/generate-image", content=raw, headers={"Content-Type": "application/json"})
        assert response.status_code == 400 and needle in response.json()["error"], response.text
    big = b'{"prompt": "' + b"x" * (1024 * 1024 + 10) + b'"}'
    huge = a.post("/api/generate-image", content=big, headers={"Content-Type": "application/json"})
    assert huge.status_code == 413 and "error" in huge.json()
    unlabelled = a.post("/api/generate-image", content=b'{"model": "z-image-turbo", "prompt": "x"}')
    assert unlabelled.status_code == 415 and "application/json" in unlabelled.json()["error"]
    unknown = generate(a, {**SMALL, "model": "dall-e-9"})
    assert unknown.status_code == 404
    assert "z-image-turbo" in unknown.json()["available"]
    rounded = generate(a, {**SMALL, "width": 520, "height": 250, "steps": 1})
    assert rounded.status_code == 200 and png_size(rounded.content) == (528, 256)


def test_model_no_peer_has_installed_says_how_to_install(mesh: Mesh) -> None:
    a = mesh.add("alpha", mflux=False)
    response = generate(a, SMALL)
    assert response.status_code == 404
    assert "uv tool install mflux" in response.json()["error"]
    listing = a.get("/api/image-models").json()
    turbo = next(m for m in listing["models"] if m["name"] == "z-image-turbo")
    assert turbo["available"] is False and turbo["peers"] == []


def test_image_generation_setting_turns_it_off_and_persists(mesh: Mesh) -> None:
    a = mesh.add("alpha")
    assert a.get("/dashboard/api/settings").json()["image_generation"] is True
    off = a.post("/dashboard/api/settings", json={"image_generation": False})
    assert off.status_code == 200 and off.json()["image_generation"] is False
    refused = generate(a, SMALL)
    assert refused.status_code == 503
    assert '{"image_generation": true}' in refused.json()["error"]
    for bad in ({"image_generation": "yes"}, {"no_such_setting": True}, [1]):
        response = a.post("/dashboard/api/settings", json=bad)
        assert response.status_code == 400 and "error" in response.json(), response.text
    a.terminate()
    a.start()
    assert a.get("/dashboard/api/settings").json()["image_generation"] is False
    a.post("/dashboard/api/settings", json={"image_generation": True})
    assert generate(a, SMALL).status_code == 200


def test_openai_images_endpoint_and_model_listing(mesh: Mesh) -> None:
    a, b = mesh.add("alpha"), mesh.add("bravo")
    mesh.wait_all_see_each_other()
    response = a.post("/v1/images/generations", json={"model": "flux-schnell", "prompt": "a cat", "size": "256x320",
                                                     "n": 2, "response_format": "b64_json"})  # fmt: skip
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert len(data) == 2 and all(png_size(base64.b64decode(d["b64_json"])) == (256, 320) for d in data)
    assert a.post("/v1/images/generations", json={"prompt": "x", "response_format": "url"}).status_code == 400
    assert a.post("/v1/images/generations", json={"prompt": "x", "size": "big"}).status_code == 400
    listing = b.get("/api/image-models").json()["models"]
    schnell = next(m for m in listing if m["name"] == "flux-schnell")
    assert {p["node_id"] for p in schnell["peers"]} == {"alpha", "bravo"} and schnell["available"]
    started = [e for e in mesh.standin_events() if e["event"] == "start"]
    assert any(e["command"] == "mflux-generate" and "schnell" in e["argv"] for e in started)


def test_records_with_tags_and_health(mesh: Mesh, tmp_path: Path) -> None:
    a = mesh.add("alpha")
    body = {**SMALL, "metadata": {"tags": ["mflux-project", "mflux-content-gen"]}}
    assert generate(a, body).status_code == 200
    assert generate(a, {**SMALL, "quantize": 4}, headers={"X-Herd-Tags": "from-header"}).status_code == 200
    stats = a.get("/dashboard/api/image-stats").json()
    assert stats["total"] == 2 and stats["by_tag"]["mflux-project"]["total"] == 1
    assert stats["by_tag"]["from-header"]["total"] == 1
    event = stats["recent"][0]
    assert event["node"] == "alpha" and event["entry_node"] == "alpha" and event["width"] == 512
    assert "prompt" not in event
    a.terminate()
    a.start()
    assert a.get("/dashboard/api/image-stats").json()["total"] == 2  # SQLite: survives restarts
    health = a.get("/dashboard/api/health").json()
    assert health["peers"]["up"] == 1 and health["nodes"][0]["node_id"] == "alpha"
    assert isinstance(health["recommendations"], list)


def test_killing_a_machine_mid_burst_loses_no_request(mesh: Mesh) -> None:
    peers = [mesh.add(n, ms_per_mp_step=1500) for n in ("alpha", "bravo", "charlie")]
    mesh.wait_all_see_each_other()
    with ThreadPoolExecutor(9) as pool:
        futures = [pool.submit(generate, peers[i % 2], {**SMALL, "seed": i}) for i in range(9)]  # entries: a, b
        wait_until(lambda: peers[2].get("/mesh/state").json()["image"]["queue"]["running"], 10, what="charlie busy")
        peers[2].kill()
        responses = [f.result(timeout=120) for f in futures]
    assert [r.status_code for r in responses] == [200] * 9, [r.text for r in responses if r.status_code != 200]
    assert all(png_size(r.content) == (512, 512) for r in responses)
    nodes = {r.headers["X-Fleet-Node"] for r in responses}
    assert nodes <= {"alpha", "bravo"} and any(int(r.headers["X-Fleet-Attempts"]) > 1 for r in responses)
