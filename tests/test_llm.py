"""LLM chat and embeddings through real peers, each with its own Ollama stand-in process: the official `openai`
and `ollama` clients, models only another peer has, streams passed through in pieces, failover before the
first byte and a clear error event after it, the union model lists, and the records."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

import httpx
import ollama
import openai
import pytest

from tests.harness import Mesh, OllamaStandin, Peer, wait_until

T = TypeVar("T")


class Fleet:
    def __init__(self, mesh: Mesh) -> None:
        self.mesh = mesh
        self.standins: list[OllamaStandin] = []

    def standin(self, *args: object, **kwargs: object) -> OllamaStandin:
        standin = OllamaStandin(*args, **kwargs)  # type: ignore[arg-type]
        self.standins.append(standin)
        return standin

    def close(self) -> None:
        for standin in self.standins:
            standin.stop()


@pytest.fixture
def fleet(mesh: Mesh) -> Iterator[Fleet]:
    f = Fleet(mesh)
    try:
        yield f
    finally:
        f.close()


def wait_for_models(peer: Peer, models: set[str], timeout: float = 10) -> None:
    def seen() -> bool:
        return models <= {m["name"] for m in peer.get("/api/tags").json()["models"]}

    wait_until(seen, timeout, what=f"{peer.node_id} to list {sorted(models)}")


def wait_until_routable(peer: Peer, model: str, node: str, timeout: float = 10) -> None:
    """The peer's view of `node` advertises `model` (the state document reached it)."""

    def advertised() -> bool:
        doc = peer.get("/mesh/peers").json()
        for p in doc["peers"]:
            llm = (p.get("capabilities") or {}).get("llm") or {}
            if p["node_id"] == node and p["status"] == "up" and model in llm.get("models", []):
                return True
        return False

    wait_until(advertised, timeout, what=f"{peer.node_id} to see {model} on {node}")


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory, multicast: None) -> Iterator[tuple[Peer, Peer, Fleet]]:
    """alpha: llama3.2:3b (loaded) and nomic-embed-text; bravo: llama3.2:3b and qwen3:8b (loaded, slow stream)."""
    mesh = Mesh(tmp_path_factory.mktemp("llm"))
    fleet = Fleet(mesh)
    try:
        sa = fleet.standin("ollama-alpha", "llama3.2:3b,nomic-embed-text", "llama3.2:3b")
        sb = fleet.standin("ollama-bravo", "llama3.2:3b,qwen3:8b", "qwen3:8b", chunk_delay=0.25)
        a = mesh.add("alpha", mflux=False, ollama_url=sa.url)
        b = mesh.add("bravo", mflux=False, ollama_url=sb.url)
        mesh.wait_all_see_each_other()
        wait_until_routable(a, "qwen3:8b", "bravo")
        wait_until_routable(b, "nomic-embed-text:latest", "alpha")
        yield a, b, fleet
    except BaseException:
        print(mesh.logs())
        raise
    finally:
        fleet.close()
        mesh.close()


def test_openai_client_against_a_peer(pair: tuple[Peer, Peer, Fleet], closing: Callable[[T], T]) -> None:
    a, _, _ = pair
    client = closing(openai.OpenAI(base_url=a.url + "/v1", api_key="any"))
    raw = client.chat.completions.with_raw_response.create(
        model="qwen3:8b", messages=[{"role": "user", "content": "Hello"}]
    )
    assert raw.headers["X-Fleet-Node"] == "bravo" and raw.headers["X-Fleet-Model"] == "qwen3:8b"
    assert raw.parse().choices[0].message.content == "[ollama-bravo] echo: Hello"  # only bravo has qwen3:8b
    stream = client.chat.completions.create(
        model="llama3.2:3b", messages=[{"role": "user", "content": "count one two three"}], stream=True
    )
    pieces = [c.choices[0].delta.content or "" for c in stream if c.choices]
    assert len(pieces) > 3 and "".join(pieces) == "[ollama-alpha] echo: count one two three"
    assert {m.id for m in client.models.list()} == {"llama3.2:3b", "nomic-embed-text:latest", "qwen3:8b"}
    assert client.models.retrieve("qwen3:8b").id == "qwen3:8b"
    embeddings = client.embeddings.create(model="nomic-embed-text", input=["search query", "another"])
    assert len(embeddings.data) == 2 and len(embeddings.data[0].embedding) == 8
    with pytest.raises(openai.NotFoundError) as missing:
        client.chat.completions.create(model="gpt-9", messages=[{"role": "user", "content": "x"}])
    assert "gpt-9" in missing.value.message and "qwen3:8b" in missing.value.message
    assert missing.value.type == "not_found_error"


def test_ollama_client_against_the_other_peer(pair: tuple[Peer, Peer, Fleet], closing: Callable[[T], T]) -> None:
    _, b, _ = pair
    client = closing(ollama.Client(host=b.url))
    assert client.chat(model="llama3.2:3b", messages=[{"role": "user", "content": "hi"}]).message.content
    parts = list(client.chat(model="qwen3:8b", messages=[{"role": "user", "content": "a b c"}], stream=True))
    assert "".join(p.message.content or "" for p in parts) == "[ollama-bravo] echo: a b c" and parts[-1].done
    assert client.generate(model="llama3.2:3b", prompt="why", stream=False).response.endswith("echo: why")
    names = [m.model for m in client.list().models]
    assert sorted(names) == ["llama3.2:3b", "nomic-embed-text:latest", "qwen3:8b"]  # llama3.2:3b once
    assert len(client.embed(model="nomic-embed-text", input=["x", "y"]).embeddings) == 2  # alpha's model
    assert len(client.embeddings(model="nomic-embed-text", prompt="search query").embedding) == 8
    assert client.show("nomic-embed-text").details.family == "nomic-bert"
    with pytest.raises(ollama.ResponseError) as missing:
        client.chat(model="nope:1b", messages=[{"role": "user", "content": "x"}])
    assert missing.value.status_code == 404 and "qwen3:8b" in missing.value.error
    ps = b.get("/api/ps").json()["models"]
    assert {(m["name"], m["node"]) for m in ps} >= {("llama3.2:3b", "alpha"), ("qwen3:8b", "bravo")}
    tags = {m["name"]: m["nodes"] for m in b.get("/api/tags").json()["models"]}
    assert sorted(tags["llama3.2:3b"]) == ["alpha", "bravo"] and tags["qwen3:8b"] == ["bravo"]
    assert b.get("/api/version").json() == {"version": "0.12.0"}


def _timed_lines(peer: Peer, path: str, body: dict) -> tuple[list[tuple[float, bytes]], httpx.Headers]:
    started = time.monotonic()
    out: list[tuple[float, bytes]] = []
    with httpx.stream("POST", peer.url + path, json=body, timeout=30) as response:
        assert response.status_code == 200, response.read()
        for line in response.iter_lines():
            if line.strip():
                out.append((time.monotonic() - started, line.encode()))
        return out, response.headers


def test_streams_pass_through_in_pieces(pair: tuple[Peer, Peer, Fleet]) -> None:
    a, _, _ = pair
    words = "one two three four five six"
    body = {"model": "qwen3:8b", "messages": [{"role": "user", "content": words}]}
    lines, headers = _timed_lines(a, "/api/chat", body)  # alpha -> bravo -> bravo's Ollama, 0.25 s per chunk
    assert headers["X-Fleet-Node"] == "bravo" and headers["content-type"].startswith("application/x-ndjson")
    first, last = lines[0][0], lines[-1][0]
    print(f"first chunk after {first * 1000:.0f} ms, last after {last * 1000:.0f} ms, {len(lines)} chunks")
    assert len(lines) == 9 and json.loads(lines[-1][1])["done"] is True
    assert last - first > 1.5, lines  # 8 gaps of 0.25 s: the chunks were not held back and sent at once
    gaps = [b[0] - a_[0] for a_, b in zip(lines, lines[1:], strict=False)]
    assert sum(1 for g in gaps if g > 0.15) >= 6, gaps
    events, headers = _timed_lines(a, "/v1/chat/completions", {**body, "stream": True})
    assert headers["content-type"].startswith("text/event-stream")
    assert events[-1][1] == b"data: [DONE]" and events[-1][0] - events[0][0] > 1.5


def test_tags_and_outcomes_are_recorded(pair: tuple[Peer, Peer, Fleet], closing: Callable[[T], T]) -> None:
    a, b, _ = pair
    body = {"model": "qwen3:8b", "messages": [{"role": "user", "content": "tagged"}], "stream": False,
            "metadata": {"tags": ["project-x"]}}  # fmt: skip
    assert a.post("/api/chat", json=body, headers={"X-Herd-Tags": "nightly, batch"}).status_code == 200
    client = closing(openai.OpenAI(base_url=a.url + "/v1", api_key="any"))
    client.embeddings.create(model="nomic-embed-text", input="x", extra_headers={"X-Herd-Tags": "search"})
    a.post("/api/chat", json={"model": "nope:1b", "messages": []})

    def rows(peer: Peer, own: bool = True) -> list[dict]:
        """The peer's own records (`own`), or its copies of other peers' records too."""
        where = "kind != 'image'" + (" AND source IS NULL" if own else "")
        with sqlite3.connect(peer.data_dir / "herd.db") as db:
            db.row_factory = sqlite3.Row
            return [dict(r) for r in db.execute(f"SELECT * FROM requests WHERE {where} ORDER BY id")]

    def written() -> list[dict] | None:  # the last of the three is there: so are the others (written in order)
        found = rows(a)
        return found if any(r["model"] == "nope:1b" for r in found) else None

    recorded = wait_until(written, 5, what="the three records (written off the event loop)")
    chat = next(r for r in recorded if json.loads(r["tags"]) == ["project-x", "nightly", "batch"])
    assert chat["kind"] == "llm" and chat["node"] == "bravo" and chat["entry_node"] == "alpha"
    assert chat["status"] == "ok" and chat["model"] == "qwen3:8b" and chat["generation_ms"] > 0
    embed = next(r for r in recorded if json.loads(r["tags"]) == ["search"])
    assert embed["kind"] == "embeddings" and embed["node"] == "alpha"
    assert any(r["status"] == "rejected" and r["model"] == "nope:1b" for r in recorded)  # refused before routing
    assert all(r["source"] == "alpha" for r in rows(b, own=False) if r["entry_node"] == "alpha")  # recorded by alpha;
    # bravo keeps copies of alpha's records (docs/dashboard.md), never records of its own for them


def test_bad_requests_get_clear_json_errors(pair: tuple[Peer, Peer, Fleet]) -> None:
    a, _, _ = pair
    cases = [
        ("/api/chat", b"{not json", 400, "JSON"),
        ("/api/chat", b"[1]", 400, "object"),
        ("/api/chat", b'{"messages": []}', 400, "model"),
        ("/api/chat", b'{"model": "llama3.2:3b", "stream": "yes"}', 400, "stream"),
        ("/api/chat", b'{"model": "llama3.2:3b", "messages": "hi"}', 400, "messages"),
        ("/api/embed", b'{"model": 3}', 400, "model"),
        ("/api/generate", b'{"model": "llama3.2:3b", "prompt": "x", "metadata": {"tags": [1]}}', 400, "tags"),
    ]
    for path, raw, status, needle in cases:
        response = a.post(path, content=raw, headers={"Content-Type": "application/json"})
        assert response.status_code == status, (raw, response.text)
        assert isinstance(response.json()["error"], str) and needle in response.json()["error"], response.text
    missing = a.post("/api/chat", json={"model": "mistral"}).json()
    assert "mistral" in missing["error"] and "qwen3:8b" in missing["available"]
    shaped = a.post("/v1/chat/completions", content=b"{oops", headers={"Content-Type": "application/json"})
    assert shaped.status_code == 400 and "JSON" in shaped.json()["error"]["message"]
    # Ollama's own refusals reach the client as Ollama wrote them, with the node that refused
    refused = a.post("/api/chat", json={"model": "nomic-embed-text", "messages": [{"role": "user", "content": "x"}]})
    assert refused.status_code == 400 and "does not support chat" in refused.json()["error"]
    assert refused.headers["X-Fleet-Node"] == "alpha"


def test_failover_before_the_first_byte_and_a_peer_without_ollama(fleet: Fleet, closing: Callable[[T], T]) -> None:
    mesh = fleet.mesh
    good = fleet.standin("ollama-alpha", "llama3.2:3b")
    busy = fleet.standin("ollama-bravo", "llama3.2:3b", "llama3.2:3b", fail_status=503)  # loaded: preferred
    a = mesh.add("alpha", mflux=False, ollama_url=good.url)
    b = mesh.add("bravo", mflux=False, ollama_url=busy.url)
    c = mesh.add("charlie", mflux=False, ollama_url="http://127.0.0.1:9")  # no Ollama: a normal state
    mesh.wait_all_see_each_other()
    for peer in (a, c):
        wait_until_routable(peer, "llama3.2:3b", "bravo")
    # keep_alive 0: alpha's copy never stays loaded, so bravo (loaded) stays everyone's first choice
    body = {"model": "llama3.2:3b", "messages": [{"role": "user", "content": "hi"}], "keep_alive": 0}
    for entry in (a, b, c):  # bravo tried first everywhere (model loaded), refuses 503, alpha takes over
        before = len([r for r in busy.requests() if r["path"] == "/api/chat"])
        response = entry.post("/api/chat", json={**body, "stream": False})
        assert response.status_code == 200, response.text
        assert response.headers["X-Fleet-Node"] == "alpha" and response.headers["X-Fleet-Attempts"] == "2"
        assert response.json()["message"]["content"] == "[ollama-alpha] echo: hi"
        assert len([r for r in busy.requests() if r["path"] == "/api/chat"]) == before + 1
    stream = closing(openai.OpenAI(base_url=c.url + "/v1", api_key="any")).chat.completions.create(
        model="llama3.2:3b", messages=[{"role": "user", "content": "streamed"}], stream=True
    )
    assert (
        "".join(ch.choices[0].delta.content or "" for ch in stream if ch.choices) == "[ollama-alpha] echo: streamed"
    )
    state = c.get("/mesh/state").json()["llm"]
    assert state["ollama"]["reachable"] is False and state["models"] == []
    assert sorted(c.get("/api/tags").json()["models"][0]["nodes"]) == ["alpha", "bravo"]
    log = c.log_path.read_text()
    assert log.count("127.0.0.1:9") <= 2, log  # logged once, not once per poll
    good.stop()  # now every peer that has the model refuses or is unreachable: a clear 5xx naming each
    wait_until(lambda: a.get("/mesh/state").json()["llm"]["ollama"]["reachable"] is False, 10, what="alpha poll")
    wait_until_routable(c, "llama3.2:3b", "bravo")
    failed = c.post("/api/chat", json={**body, "stream": False})
    assert failed.status_code == 503 and "bravo" in failed.json()["error"], failed.text


def test_a_stream_that_breaks_after_the_first_byte_ends_with_an_error_event(
    fleet: Fleet, closing: Callable[[T], T]
) -> None:
    mesh = fleet.mesh
    entry = mesh.add("alpha", mflux=False, ollama_url=fleet.standin("ollama-alpha", "llama3.2:3b").url)
    standins = {
        n: fleet.standin(f"ollama-{n}", "qwen3:8b", "qwen3:8b", chunk_delay=0.3) for n in ("bravo", "charlie")
    }
    workers = {n: mesh.add(n, mflux=False, ollama_url=s.url) for n, s in standins.items()}
    mesh.wait_all_see_each_other()
    for name in workers:
        wait_until_routable(entry, "qwen3:8b", name)
    words = " ".join(f"w{i}" for i in range(20))
    body = {"model": "qwen3:8b", "messages": [{"role": "user", "content": words}]}
    # 1. the worker's Ollama dies mid-stream: the worker ends the NDJSON stream with an error line
    with httpx.stream("POST", entry.url + "/api/chat", json=body, timeout=30) as response:
        lines = response.iter_lines()
        first = json.loads(next(lines))
        assert first["done"] is False
        victim = response.headers["X-Fleet-Node"]
        standins[victim].stop()
        rest = [json.loads(line) for line in lines if line.strip()]
    assert "error" in rest[-1] and victim in rest[-1]["error"], rest
    # 2. the worker itself dies mid-stream: the entry ends the SSE stream with an error event the client raises
    survivor = ({"bravo", "charlie"} - {victim}).pop()
    client = closing(openai.OpenAI(base_url=entry.url + "/v1", api_key="any", max_retries=0))
    stream = client.chat.completions.create(model="qwen3:8b", messages=body["messages"], stream=True)
    chunks = iter(stream)
    assert next(chunks).choices[0].delta.content
    workers[survivor].kill()
    with pytest.raises(openai.APIError) as broken:
        for _ in chunks:
            pass
    assert "broke off" in broken.value.message and survivor in broken.value.message


def test_a_running_stream_shows_its_tokens_so_far(fleet: Fleet, mesh: Mesh) -> None:
    """The dashboard's LLM rows show model, tokens so far and elapsed time: the peer serving a stream counts
    what went by and advertises it while it runs."""
    standin = fleet.standin("solo", "qwen3:8b", "qwen3:8b", chunk_delay=0.3)
    a = mesh.add("alpha", ollama_url=standin.url)
    wait_for_models(a, {"qwen3:8b"})
    words = " ".join(f"w{i}" for i in range(20))  # the stand-in echoes it, a word a chunk, 0.3 s apart
    body = {"model": "qwen3:8b", "messages": [{"role": "user", "content": words}], "stream": True}
    with httpx.stream("POST", a.url + "/api/chat", json=body, timeout=30) as response:
        lines = response.iter_lines()
        next(lines)

        def tokens() -> int:
            active = a.get("/mesh/state").json()["llm"]["active"]
            return int(active[0].get("tokens", 0)) if active else 0

        assert wait_until(lambda: tokens() >= 2, 10, what="the running stream's token count to grow")
        assert sum(1 for _ in lines) >= 1
    wait_until(lambda: not a.get("/mesh/state").json()["llm"]["active"], 10, what="the finished stream to go")
