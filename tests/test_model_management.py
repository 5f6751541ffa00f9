"""Pulling, deleting, copying and creating Ollama models through the mesh, as a user does it (the official
`ollama` client, curl-like calls, `herd models pull|rm`): each runs on the peer named, or for a pull with none
on the peer the mesh picks, with Ollama's progress streamed through, and nothing is deleted unconfirmed."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping
from typing import Any, TypeVar

import httpx
import ollama
import pytest

from herd_mesh.client import AsyncClient, Client, RequestFailed
from herd_mesh.core.manage_request import parse_manage_request
from herd_mesh.core.model_placement import PullCandidate, pull_order
from herd_mesh.errors import RequestError
from tests.harness import Mesh, OllamaStandin, Peer, wait_until
from tests.test_llm import wait_until_routable

T = TypeVar("T")
HERD = [sys.executable, "-m", "herd_mesh"]


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory, multicast: None) -> Iterator[tuple[Peer, Peer, OllamaStandin]]:
    """alpha: llama3.2:3b, loaded (it holds memory); bravo: qwen3:8b, nothing loaded (the most free memory)."""
    mesh = Mesh(tmp_path_factory.mktemp("manage"))
    sa = OllamaStandin("ollama-alpha", "llama3.2:3b", "llama3.2:3b")
    sb = OllamaStandin("ollama-bravo", "qwen3:8b", args=("--pull-seconds", "0.3"))
    try:
        a = mesh.add("alpha", mflux=False, ollama_url=sa.url)
        b = mesh.add("bravo", mflux=False, ollama_url=sb.url)
        mesh.wait_all_see_each_other()
        wait_until_routable(a, "qwen3:8b", "bravo")
        wait_until(lambda: memory(a, "alpha") < memory(a, "bravo"), 10, what="alpha's loaded model to count")
        yield a, b, sb
    except BaseException:
        print(mesh.logs())
        raise
    finally:
        sa.stop()
        sb.stop()
        mesh.close()


def memory(peer: Peer, node: str) -> float:
    doc = peer.get("/mesh/peers").json()
    entry = next(p for p in doc["peers"] if p["node_id"] == node)
    return float(entry["capabilities"]["system"]["memory_available_gb"])


def on_disk(standin: OllamaStandin) -> set[str]:
    return {m["name"] for m in httpx.get(standin.url + "/api/tags", timeout=5).json()["models"]}


def progress(peer: Peer, body: dict[str, Any]) -> tuple[list[dict[str, Any]], httpx.Headers]:
    with httpx.stream("POST", peer.url + "/api/pull", json=body, timeout=30) as response:
        assert response.status_code == 200, response.read()
        return [json.loads(line) for line in response.iter_lines() if line.strip()], response.headers


def herd(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HERD_", "OLLAMA_"))}
    return subprocess.run(
        [*HERD, *args], capture_output=True, text=True, timeout=60, env=env, stdin=subprocess.DEVNULL
    )


def test_pull_on_a_named_peer_streams_ollamas_progress(pair: tuple[Peer, Peer, OllamaStandin]) -> None:
    a, _, sb = pair
    lines, headers = progress(a, {"model": "gemma3:1b", "node": "bravo"})
    assert headers["X-Fleet-Node"] == "bravo" and headers["content-type"].startswith("application/x-ndjson")
    statuses = [line["status"] for line in lines]
    assert statuses[0] == "pulling manifest" and statuses[-1] == "success"
    downloads = [line for line in lines if line.get("total") and line["status"] == statuses[1]]
    assert len(downloads) >= 4 and downloads[-1]["completed"] == downloads[-1]["total"]  # the layer, bit by bit
    assert "gemma3:1b" in on_disk(sb)
    wait_until(lambda: "bravo" in {m["name"]: m["nodes"] for m in a.get("/api/tags").json()["models"]}
               .get("gemma3:1b", []), 10, what="the mesh to list gemma3:1b on bravo")  # fmt: skip


def test_pull_without_a_peer_goes_where_the_mesh_has_room(
    pair: tuple[Peer, Peer, OllamaStandin], closing: Callable[[T], T]
) -> None:
    a, b, sb = pair
    client = closing(ollama.Client(host=a.url))  # Ollama's own client, unchanged: no "node" in its body
    assert client.pull("phi4-mini").status == "success"
    assert "phi4-mini:latest" in on_disk(sb)  # bravo has the most free memory (alpha has a model loaded)
    lines, headers = progress(b, {"name": "smollm2:135m"})
    assert headers["X-Fleet-Node"] == "bravo" and lines[-1] == {"status": "success"}


def test_a_failed_pull_says_so_in_ollamas_words(pair: tuple[Peer, Peer, OllamaStandin]) -> None:
    a, _, _ = pair
    lines, _ = progress(a, {"model": "doesnotexist:1b", "node": "bravo"})
    assert lines[0]["status"] == "pulling manifest" and lines[-1] == {
        "error": "pull model manifest: file does not exist"
    }
    whole = a.post("/api/pull", json={"model": "doesnotexist:1b", "node": "bravo", "stream": False})
    assert whole.status_code == 502  # Ollama's own 500, passed on as a bad gateway: the peer did not fail
    assert whole.json() == {"error": "pull model manifest: file does not exist"}
    assert whole.headers["X-Fleet-Node"] == "bravo"


def test_bad_requests_get_clear_errors(pair: tuple[Peer, Peer, OllamaStandin]) -> None:
    a, _, _ = pair
    cases = [
        ("/api/pull", b"{oops", 400, "JSON"),
        ("/api/pull", b"[]", 400, "object"),
        ("/api/pull", b"{}", 400, "name the model"),
        ("/api/pull", b'{"model": 3}', 400, "'model'"),
        ("/api/pull", b'{"model": "x", "stream": "yes"}', 400, "stream"),
        ("/api/pull", b'{"model": "x", "node": 5}', 400, "'node'"),
        ("/api/pull", b'{"model": "x", "node": "zulu"}', 404, "zulu"),
        ("/api/copy", b'{"source": "llama3.2:3b", "destination": "mine"}', 400, "node"),
        ("/api/copy", b'{"source": "llama3.2:3b", "node": "alpha"}', 400, "destination"),
        ("/api/create", b'{"model": "pirate", "from": "llama3.2:3b"}', 400, "node"),
    ]
    for path, raw, status, needle in cases:
        response = a.post(path, content=raw, headers={"Content-Type": "application/json"})
        assert response.status_code == status, (path, raw, response.text)
        assert needle in response.json()["error"], response.text
    assert "alpha" in a.post("/api/pull", json={"model": "x", "node": "zulu"}).json()["peers"]


def test_delete_needs_the_peer_and_confirmation(
    pair: tuple[Peer, Peer, OllamaStandin], closing: Callable[[T], T]
) -> None:
    a, b, sb = pair
    progress(a, {"model": "tinyllama", "node": "bravo"})
    for body in ({"model": "tinyllama", "node": "bravo"}, {"model": "tinyllama", "node": "bravo", "confirm": "yes"}):
        refused = a.post("/api/delete", json=body)
        assert refused.status_code == 400 and '"confirm": true' in refused.json()["error"], refused.text
    assert "node" in a.post("/api/delete", json={"model": "tinyllama", "confirm": True}).json()["error"]
    with pytest.raises(ollama.ResponseError) as unconfirmed:
        closing(ollama.Client(host=a.url)).delete("tinyllama")  # Ollama's client sends DELETE, no confirm
    assert unconfirmed.value.status_code == 400
    forwarded = b.call_from(a, "POST", "/api/delete", json={"model": "tinyllama"}, headers={"X-Herd-Forwarded": "1"})
    assert forwarded.status_code == 400  # a peer cannot skip the confirmation either
    assert "tinyllama:latest" in on_disk(sb)
    deleted = a.post("/api/delete", json={"model": "tinyllama", "node": "bravo", "confirm": True})
    assert deleted.status_code == 200 and deleted.json() == {"status": "success", "model": "tinyllama",
                                                              "node": "bravo"}  # fmt: skip
    assert "tinyllama:latest" not in on_disk(sb)
    gone = a.post("/api/delete", json={"model": "tinyllama", "node": "bravo", "confirm": True})
    assert gone.status_code == 404 and gone.json() == {"error": "model 'tinyllama' not found"}  # Ollama's words


def test_copy_and_create_run_on_the_named_peer(pair: tuple[Peer, Peer, OllamaStandin]) -> None:
    a, b, sb = pair
    copied = a.post("/api/copy", json={"source": "qwen3:8b", "destination": "my-qwen", "node": "bravo"})
    assert copied.status_code == 200 and copied.headers["X-Fleet-Node"] == "bravo"
    assert "my-qwen:latest" in on_disk(sb)
    body = {"model": "pirate", "from": "qwen3:8b", "system": "Arr.", "node": "bravo"}
    with httpx.stream("POST", b.url + "/api/create", json=body, timeout=30) as created:
        assert created.status_code == 200 and created.headers["X-Fleet-Node"] == "bravo"
        statuses = [json.loads(line)["status"] for line in created.iter_lines() if line.strip()]
    assert statuses[-1] == "success" and "pirate:latest" in on_disk(sb)
    missing = a.post("/api/copy", json={"source": "nope", "destination": "x", "node": "bravo"})
    assert missing.status_code == 404 and missing.json() == {"error": 'model "nope" not found'}


def test_herd_models_pull_shows_progress_and_rm_asks_first(pair: tuple[Peer, Peer, OllamaStandin]) -> None:
    a, _, sb = pair
    pulled = herd("models", "pull", "granite3:2b", "--node", "bravo", "--url", a.url)
    assert pulled.returncode == 0, pulled.stderr
    assert "pulling manifest" in pulled.stderr and "100% of" in pulled.stderr and "success" in pulled.stderr
    assert pulled.stdout.strip() == "granite3:2b: success on bravo"
    assert "granite3:2b" in on_disk(sb)
    unconfirmed = herd("models", "rm", "granite3:2b", "--node", "bravo", "--url", a.url)
    assert unconfirmed.returncode == 1 and "not deleted" in unconfirmed.stderr and "--yes" in unconfirmed.stderr
    assert "granite3:2b" in on_disk(sb)
    removed = herd("models", "rm", "granite3:2b", "--node", "bravo", "--yes", "--url", a.url)
    assert removed.returncode == 0 and removed.stdout.strip() == "granite3:2b: deleted from bravo", removed.stderr
    assert "granite3:2b" not in on_disk(sb)
    failed = herd("models", "pull", "doesnotexist:1b", "--node", "bravo", "--url", a.url)
    assert failed.returncode == 1 and "file does not exist" in failed.stderr and "bravo" in failed.stderr
    assert herd("models", "rm", "x", "--url", a.url).returncode == 2  # --node is required


def test_the_python_client_pulls_with_progress_and_deletes_only_confirmed(
    pair: tuple[Peer, Peer, OllamaStandin],
) -> None:
    a, _, sb = pair
    seen: list[Mapping[str, Any]] = []

    async def pull() -> dict[str, Any]:
        async with AsyncClient(a.url) as herd:
            return await herd.pull_model("qwen3:0.6b", node="bravo", on_progress=seen.append)

    assert asyncio.run(pull()) == {"status": "success", "node": "bravo"}
    assert seen[0] == {"status": "pulling manifest"} and any(p.get("completed") for p in seen)
    with Client(a.url) as herd:
        with pytest.raises(RequestFailed) as refused:
            herd.delete_model("qwen3:0.6b", node="bravo")
        assert refused.value.status == 400 and "confirm" in refused.value.message
        assert "qwen3:0.6b" in on_disk(sb)  # not deleted
        assert herd.delete_model("qwen3:0.6b", node="bravo", confirm=True)["node"] == "bravo"
        assert "qwen3:0.6b" not in on_disk(sb)
        with pytest.raises(RequestFailed) as failed:
            herd.pull_model("doesnotexist:1b", node="bravo")
        assert "file does not exist" in failed.value.message and failed.value.node == "bravo"


def test_the_pull_goes_to_the_most_free_memory_then_disk() -> None:
    def peer(node: str, memory: float, disk: float | None, has: bool = False) -> PullCandidate:
        return PullCandidate(node, node == "a", memory, disk, has)

    assert [c.node_id for c in pull_order([peer("a", 10, 50), peer("b", 30, 20), peer("c", 30, 90)], "m", None)] \
        == ["c", "b", "a"]  # fmt: skip
    assert pull_order([peer("a", 10, 50), peer("b", 60, 50, has=True)], "m", None)[0].node_id == "a"
    assert pull_order([peer("a", 10, 50), peer("b", 60, 3)], "m", 5.0)[0].node_id == "a"  # b has no room
    with pytest.raises(RequestError) as full:
        pull_order([peer("a", 10, 2), peer("b", 60, 3)], "m", 5.0)
    assert full.value.status == 507 and "a: 2.0 GB" in full.value.message
    with pytest.raises(RequestError) as none:
        pull_order([], "m", None)
    assert none.value.status == 503 and "ollama serve" in none.value.message


def test_guardrails_in_the_request_rules() -> None:
    assert parse_manage_request("pull", b'{"name": "llama3.2"}').node is None
    delete = parse_manage_request("delete", b'{"model": "x", "node": "b", "confirm": true, "keep": 1}')
    assert json.loads(delete.ollama_body) == {"model": "x", "keep": 1}  # herd-mesh's fields stay here
    for op, raw in (("delete", b'{"model": "x", "node": "b"}'), ("delete", b'{"model": "x", "confirm": true}'),
                    ("copy", b'{"source": "x", "destination": "y"}'), ("create", b'{"model": "x"}')):  # fmt: skip
        with pytest.raises(RequestError):
            parse_manage_request(op, raw)
