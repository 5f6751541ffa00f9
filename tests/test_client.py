"""herd_mesh.Client and AsyncClient: finding a peer, every method against a live 3-peer mesh, failover that never
drops or doubles a request, errors carrying the server's words, and progress from the jobs API."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import herd_mesh
from herd_mesh.client import _common as common
from herd_mesh.client._discovery import Found, is_local_url, rank
from tests.client_fakes import FLEET, HangUpPeer, JobsPeer, fleet
from tests.harness import Mesh, OllamaStandin, next_address, wait_until


@pytest.fixture(autouse=True)
def no_herd_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HERD_URL", "HERD_MESH"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory, multicast: None) -> Iterator[tuple[Mesh, OllamaStandin]]:
    with fleet(tmp_path_factory.mktemp("client-fleet")) as pair:
        yield pair


# -- pure parts ----------------------------------------------------------------------------------------------------
def test_a_url_names_a_peer_with_the_default_port() -> None:
    assert common.normalise_url("studio.local") == "http://studio.local:11435"
    assert common.normalise_url("http://10.0.0.2:9000/") == "http://10.0.0.2:9000"
    assert common.explicit_target(None, {"HERD_URL": "10.0.0.3"}) == common.Target("http://10.0.0.3:11435", None,
                                                                                   "HERD_URL")  # fmt: skip
    assert common.explicit_target("a.lan", {"HERD_URL": "b.lan"}).url == "http://a.lan:11435"  # type: ignore[union-attr]
    assert common.mesh_name(None, {}) == "default" and common.mesh_name(None, {"HERD_MESH": "studio"}) == "studio"
    with pytest.raises(ValueError):
        common.normalise_url("ftp://x")


def test_this_machines_peers_come_first_then_the_least_loaded() -> None:
    found = [Found("far-idle", "http://10.9.9.9:11435", False, 0, 1), Found("near-busy", "http://127.0.0.5:11435",
             True, 3, 90), Found("far-busy", "http://10.9.9.8:11435", False, 2, 5)]  # fmt: skip
    assert [f.node_id for f in rank(found)] == ["near-busy", "far-idle", "far-busy"]
    assert is_local_url("http://127.0.0.9:11435") and is_local_url("http://localhost:1")
    assert not is_local_url("http://203.0.113.7:11435", addresses=set())


def test_errors_keep_the_servers_message_reason_and_attempts() -> None:
    body = b'{"error": "image generation failed on every peer", "attempts": [{"node": "a", "reason": "oom", ' \
           b'"status": 500}, {"node": "b", "reason": "unreachable"}], "reason": "engine-failed"}'  # fmt: skip
    err = common.error_from(502, httpx.Headers({"X-Fleet-Node": "a"}), body)
    assert isinstance(err, herd_mesh.RequestFailed) and isinstance(err, herd_mesh.RequestError)
    assert (err.status, err.message, err.reason) == (502, "image generation failed on every peer", "engine-failed")
    assert err.attempts == (herd_mesh.Attempt("a", "oom", 500), herd_mesh.Attempt("b", "unreachable", None))
    assert "HTTP 502" in str(err)
    openai = common.error_from(400, httpx.Headers({"Retry-After": "3"}), b'{"error": {"message": "bad size"}}')
    assert (openai.message, openai.retry_after) == ("bad size", 3)
    assert common.error_from(500, httpx.Headers(), b"Internal Server Error").message == "Internal Server Error"
    assert isinstance(common.job_not_found(404, httpx.Headers(), b'{"error": "no"}'), herd_mesh.JobNotFound)


def test_a_stream_that_reports_an_error_raises_it() -> None:
    assert common.chat_chunk('{"message": {"content": "hi"}, "done": false}') == ("hi", False, None)
    last = '{"message": {"content": ""}, "done": true, "done_reason": "stop"}'
    assert common.chat_chunk(last) == ("", True, "stop")
    with pytest.raises(herd_mesh.RequestFailed, match="peer died"):
        common.chat_chunk('{"error": "peer died"}')


def test_no_peer_found_names_what_was_tried() -> None:
    with (
        herd_mesh.Client(mesh="nobody-here", discovery_timeout=0.3) as herd,
        pytest.raises(herd_mesh.NoPeerFound) as caught,
    ):
        herd.peers()
    assert caught.value.mesh == "nobody-here"
    assert any("127.0.0.1:11435" in t for t in caught.value.tried) and any("mDNS" in t for t in caught.value.tried)
    assert isinstance(caught.value, herd_mesh.HerdError)


# -- a live mesh ----------------------------------------------------------------------------------------------------
def test_with_no_url_it_finds_a_peer_and_uses_every_api(live: tuple[Mesh, OllamaStandin], tmp_path: Path) -> None:
    mesh, _ = live
    with herd_mesh.Client(mesh=mesh.name) as herd:
        assert herd.node in FLEET
        image = herd.generate_image("a cat", width=256, height=256, steps=2, seed=42, tags=["client-test"])
        assert image.node in FLEET and image.model == "z-image-turbo" and image.seed == 42
        assert image.png.startswith(b"\x89PNG") and (image.width, image.height) == (256, 256)
        assert image.generation_ms is not None and image.queue_ms is not None and image.attempts >= 1
        assert len(image.request_id) == 32
        assert image.save(tmp_path / "out" / "cat.png").read_bytes() == image.png

        peers = herd.peers()
        assert {p.node_id for p in peers} == set(FLEET) and all(p.status == "up" for p in peers)
        assert sum(p.is_self for p in peers) == 1 and all("z-image-turbo" in p.image_models for p in peers)
        alpha = next(p for p in peers if p.node_id == "alpha")
        assert "llama3:8b" in alpha.llm_models and alpha.memory_total_gb

        answer = herd.chat("llama3:8b", "hello there")
        assert answer.content == "[alpha] echo: hello there" and answer.node == "alpha" and answer.done_reason
        with herd.chat("llama3:8b", [{"role": "user", "content": "stream me"}], stream=True) as stream:
            chunks = list(stream)
        assert "".join(chunks) == "[alpha] echo: stream me" == stream.content and len(chunks) > 1
        assert stream.node == "alpha" and stream.done_reason == "stop"

        vectors = herd.embed("nomic-embed-text", ["one", "two"])
        assert len(vectors.embeddings) == 2 and vectors.node == "alpha"

        models = {(m.name, m.kind) for m in herd.models()}
        assert ("z-image-turbo", "image") in models and ("llama3:8b", "llm") in models
        assert herd.health()["peers"]["up"] == 3
        assert herd.stats(hours=1, kind="image")["total"] >= 1
        assert herd.ping()["mesh"] == mesh.name

        assert herd.settings()["image_keep_alive_s"] == 300
        assert herd.set_settings(image_keep_alive_s=120)["image_keep_alive_s"] == 120
        assert herd.set_settings(image_keep_alive_s=300)["image_keep_alive_s"] == 300


def test_errors_from_the_mesh_carry_its_message(live: tuple[Mesh, OllamaStandin]) -> None:
    mesh, _ = live
    with herd_mesh.Client(mesh.peers["beta"].url) as herd:
        with pytest.raises(herd_mesh.RequestFailed) as caught:
            herd.generate_image("a cat", model="no-such-model")
        assert caught.value.status == 404 and "no-such-model" in caught.value.message
        with pytest.raises(herd_mesh.RequestFailed, match="width"):
            herd.generate_image("a cat", width=5000)
        with pytest.raises(herd_mesh.RequestFailed) as setting:
            herd.set_settings(no_such_setting=True)
        assert setting.value.status == 400 and "unknown setting" in setting.value.message
        with pytest.raises(herd_mesh.JobNotFound):
            herd.job("never-sent")


def test_async_client_spreads_a_batch_and_streams(live: tuple[Mesh, OllamaStandin]) -> None:
    mesh, _ = live

    async def main() -> tuple[list[herd_mesh.ImageResult], list[str]]:
        async with herd_mesh.AsyncClient(mesh=mesh.name) as herd:
            assert await herd.node() in FLEET
            images = await asyncio.gather(*(herd.generate_image(f"p{i}", width=128, height=128) for i in range(4)))
            stream = await herd.chat("llama3:8b", "async hi", stream=True)
            async with stream:
                chunks = [text async for text in stream]
            assert (await herd.chat("llama3:8b", "whole")).content == "[alpha] echo: whole"
            assert len((await herd.embed("nomic-embed-text", "one")).embeddings) == 1
            assert len(await herd.peers()) == 3
            return list(images), chunks

    images, chunks = asyncio.run(main())
    assert all(i.node in FLEET and i.png.startswith(b"\x89PNG") for i in images)
    assert len({i.request_id for i in images}) == 4
    assert "".join(chunks) == "[alpha] echo: async hi"


def test_a_dead_url_fails_over_to_a_discovered_peer(live: tuple[Mesh, OllamaStandin]) -> None:
    """Nothing reached the dead address, so even an image request may go to another peer."""
    mesh, _ = live
    dead = f"http://{next_address()}:11435"
    with herd_mesh.Client(dead, mesh=mesh.name) as herd:
        image = herd.generate_image("a cat", width=128, height=128)
        assert image.node in FLEET and herd.url != dead and herd.node in FLEET
    with (
        herd_mesh.Client(dead, mesh=mesh.name, failover=False) as herd,
        pytest.raises(herd_mesh.PeerUnreachable, match="no other peer"),
    ):
        herd.peers()


def test_a_peer_that_dies_is_replaced_for_reads(tmp_path: Path, multicast: None) -> None:
    with fleet(tmp_path) as (mesh, _), herd_mesh.Client(mesh=mesh.name) as herd:
        first = herd.node
        assert first in FLEET and len(herd.peers()) == 3
        mesh.peers[str(first)].kill()
        listed = herd.peers()
        assert herd.node in FLEET and herd.node != first
        assert {p.node_id for p in listed} == set(FLEET)


def test_a_request_the_peer_took_is_never_sent_twice(live: tuple[Mesh, OllamaStandin]) -> None:
    """The peer hung up after reading the image request: it may have started it, so the client says so
    instead of sending it elsewhere; a read is retried on another peer, which here does not exist."""
    hang = HangUpPeer()
    try:
        with herd_mesh.Client(hang.url, mesh="nobody-here", discovery_timeout=0.3) as herd:
            with pytest.raises(herd_mesh.PeerUnreachable, match="not sent again"):
                herd.generate_image("a cat")
            assert hang.requests == 1
            with pytest.raises(herd_mesh.NoPeerFound) as caught:
                herd.peers()
            assert hang.requests == 2 and any(hang.url in t for t in caught.value.tried)
    finally:
        hang.close()


def test_progress_comes_from_the_jobs_api_with_our_request_id() -> None:
    fake = JobsPeer("jobs-mesh", seconds=1.5)
    seen: list[herd_mesh.Job] = []
    try:
        with herd_mesh.Client(fake.url, mesh="jobs-mesh") as herd:
            image = herd.generate_image("a cat", request_id="req-1", guidance=3.5, negative_prompt="dogs",
                                        on_progress=lambda job: seen.append(job), progress_interval=0.1)  # fmt: skip
            assert image.request_id == "req-1" and fake.request_ids == ["req-1"]
            assert fake.bodies[0]["guidance"] == 3.5 and fake.bodies[0]["negative_prompt"] == "dogs"
            job = herd.job("req-1")
            assert (job.id, job.kind, job.node, job.state, job.steps) == ("req-1", "image", "fake-gpu", "running", 4)
            with pytest.raises(herd_mesh.JobNotFound):
                herd.job("other")
    finally:
        fake.close()
    states = [(j.state, j.step) for j in seen]  # the poller thread has ended with the request
    assert ("queued", None) in states and ("running", 4) in states
    assert seen[0].queue_position == 1 and all(j.node == "fake-gpu" for j in seen)
    assert [j.fraction for j in seen if j.state == "running"][-1] == 1.0


def test_the_public_names_load_lazily() -> None:
    import subprocess
    import sys

    code = "import sys, herd_mesh; assert 'httpx' not in sys.modules; herd_mesh.Client; assert 'httpx' in sys.modules"
    assert subprocess.run([sys.executable, "-c", code], timeout=30).returncode == 0


def test_job_follows_a_real_image_on_any_peer(live: tuple[Mesh, OllamaStandin]) -> None:
    mesh, _ = live
    seen: list[herd_mesh.Job] = []
    with herd_mesh.Client(mesh.peers["alpha"].url) as herd:
        probe = httpx.get(mesh.peers["alpha"].url + "/api/jobs/nothing-here", timeout=5)
        if "no such endpoint" in probe.text:
            pytest.skip("this tree's peers do not serve GET /api/jobs/{id} yet")
        image = herd.generate_image("a slow cat", width=512, height=512, steps=8, on_progress=seen.append,
                                    progress_interval=0.05)  # fmt: skip
        done = herd.job(image.request_id)
    assert (done.id, done.state, done.kind, done.node) == (image.request_id, "done", "image", image.node)
    with herd_mesh.Client(mesh.peers["gamma"].url) as other:  # any peer answers for any job (from what the
        elsewhere = other.job(image.request_id)  # peers advertise, which may lag a moment behind)
        assert elsewhere.node == image.node
        wait_until(lambda: other.job(image.request_id).state == "done", 5, what="gamma to see the job done")
    assert all(j.id == image.request_id and j.state in ("queued", "running", "done") for j in seen)
