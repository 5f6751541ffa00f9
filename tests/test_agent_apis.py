"""Agents' own APIs through the mesh, seen through the official clients: Anthropic Messages (plain, streamed,
tool use, errors the client raises as its own exceptions), OpenAI Responses and legacy Completions, all routed
to the one peer that has the model, failing over before the first byte, and ending a broken stream with an error
event in the stream's own shape."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import anthropic
import openai
import pytest

from herd_mesh.core.api_errors import stream_error_event
from tests.harness import Mesh, OllamaStandin, Peer, wait_until
from tests.test_llm import wait_until_routable

T = TypeVar("T")
WEATHER = {
    "name": "get_weather",
    "description": "Weather for a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


@pytest.fixture(scope="module")
def trio(tmp_path_factory: pytest.TempPathFactory, multicast: None) -> Iterator[tuple[Peer, Peer, Peer]]:
    """alpha: only an embedding model; bravo: llama3.2:3b (nobody else has it) and qwen3:8b; charlie: qwen3:8b
    loaded (everyone's first choice for it) behind an Ollama that answers every request 503."""
    mesh = Mesh(tmp_path_factory.mktemp("agents"))
    standins = [
        OllamaStandin("ollama-alpha", "nomic-embed-text"),
        OllamaStandin("ollama-bravo", "llama3.2:3b,qwen3:8b"),
        OllamaStandin("ollama-charlie", "qwen3:8b", "qwen3:8b", fail_status=503),
    ]
    try:
        a, b, c = (mesh.add(n, mflux=False, ollama_url=s.url) for n, s in zip(("alpha", "bravo", "charlie"),
                                                                               standins, strict=True))  # fmt: skip
        mesh.wait_all_see_each_other()
        wait_until_routable(a, "llama3.2:3b", "bravo")
        wait_until_routable(a, "qwen3:8b", "charlie")
        yield a, b, c
    except BaseException:
        print(mesh.logs())
        raise
    finally:
        for standin in standins:
            standin.stop()
        mesh.close()


@pytest.fixture
def claude(trio: tuple[Peer, Peer, Peer], closing: Callable[[T], T]) -> anthropic.Anthropic:
    return closing(anthropic.Anthropic(base_url=trio[0].url, api_key="sk-ant-anything", max_retries=0))


@pytest.fixture
def oai(trio: tuple[Peer, Peer, Peer], closing: Callable[[T], T]) -> openai.OpenAI:
    return closing(openai.OpenAI(base_url=trio[0].url + "/v1", api_key="any", max_retries=0))


def test_anthropic_client_gets_a_message_from_the_peer_that_has_the_model(claude: anthropic.Anthropic) -> None:
    raw = claude.messages.with_raw_response.create(
        model="llama3.2:3b", max_tokens=64, system="Be brief.", messages=[{"role": "user", "content": "hello you"}]
    )
    assert raw.headers["X-Fleet-Node"] == "bravo" and raw.headers["X-Fleet-Model"] == "llama3.2:3b"
    message = raw.parse()
    assert message.type == "message" and message.role == "assistant" and message.stop_reason == "end_turn"
    assert [b.type for b in message.content] == ["text"]
    assert message.content[0].text == "[ollama-bravo] echo: hello you"  # alpha's Ollama has no chat model


def test_anthropic_client_streams_a_message_event_by_event(claude: anthropic.Anthropic) -> None:
    with claude.messages.stream(
        model="llama3.2:3b", max_tokens=64, messages=[{"role": "user", "content": "stream me please"}]
    ) as stream:
        pieces = list(stream.text_stream)
        final = stream.get_final_message()
    assert len(pieces) > 2 and "".join(pieces) == "[ollama-bravo] echo: stream me please" == final.content[0].text
    events = list(
        claude.messages.create(
            model="llama3.2:3b", max_tokens=64, stream=True, messages=[{"role": "user", "content": "a b"}]
        )
    )
    assert [e.type for e in events] == [
        "message_start",
        "content_block_start",
        *["content_block_delta"] * 4,
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]


def test_tool_use_passes_through(claude: anthropic.Anthropic) -> None:
    asked = "please use tool get_weather"
    message = claude.messages.create(
        model="llama3.2:3b", max_tokens=64, tools=[WEATHER], messages=[{"role": "user", "content": asked}]
    )
    (block,) = message.content
    assert block.type == "tool_use" and block.name == "get_weather" and message.stop_reason == "tool_use"
    with claude.messages.stream(
        model="llama3.2:3b",
        max_tokens=64,
        tools=[WEATHER],
        messages=[
            {"role": "user", "content": asked},
            {"role": "assistant", "content": [block.model_dump(include={"type", "id", "name", "input"})]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": block.id, "content": "18C"}]},
        ],
    ) as stream:
        answer = stream.get_final_message()
    assert answer.content[0].text == "[ollama-bravo] tool result: 18C"


def test_keys_and_version_headers_are_accepted(trio: tuple[Peer, Peer, Peer]) -> None:
    a = trio[0]
    body = {"model": "llama3.2:3b", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]}
    for headers in ({"x-api-key": "k", "anthropic-version": "2023-06-01"}, {"Authorization": "Bearer k"}):
        response = a.post("/v1/messages", json=body, headers=headers)
        assert response.status_code == 200 and response.json()["content"][0]["text"] == "[ollama-bravo] echo: hi"


def test_anthropic_errors_are_the_clients_own_exceptions(claude: anthropic.Anthropic, trio: tuple[Peer, ...]) -> None:
    with pytest.raises(anthropic.NotFoundError) as missing:
        claude.messages.create(model="claude-opus-9", max_tokens=8, messages=[{"role": "user", "content": "x"}])
    body: Any = missing.value.body
    assert body["type"] == "error" and body["error"]["type"] == "not_found_error"
    assert "claude-opus-9" in body["error"]["message"] and "llama3.2:3b" in body["error"]["message"]
    with (
        pytest.raises(anthropic.NotFoundError),
        claude.messages.stream(
            model="claude-opus-9", max_tokens=8, messages=[{"role": "user", "content": "x"}]
        ) as stream,
    ):
        stream.get_final_message()
    with pytest.raises(anthropic.BadRequestError) as no_max:  # Ollama's own check, passed on as it wrote it
        claude.messages.create(model="llama3.2:3b", max_tokens=0, messages=[{"role": "user", "content": "x"}])
    assert no_max.value.body["error"]["message"] == "max_tokens is required and must be positive"  # type: ignore[index]
    a = trio[0]
    for raw in (b"{oops", b"[1]", b'{"model": 7, "max_tokens": 1, "messages": []}', b'{"max_tokens": 1}'):
        response = a.post("/v1/messages", content=raw, headers={"Content-Type": "application/json"})
        assert response.status_code == 400, raw
        assert response.json()["type"] == "error" and response.json()["error"]["type"] == "invalid_request_error"


def test_anthropic_client_lists_the_mesh_models(claude: anthropic.Anthropic, oai: openai.OpenAI) -> None:
    listed = list(claude.models.list())
    assert {m.id for m in listed} == {"llama3.2:3b", "qwen3:8b", "nomic-embed-text:latest"}
    assert all(m.type == "model" and m.display_name == m.id and m.created_at.year >= 1970 for m in listed)
    assert claude.models.retrieve("qwen3:8b").id == "qwen3:8b"
    with pytest.raises(anthropic.NotFoundError):
        claude.models.retrieve("claude-opus-9")
    assert {m.id for m in oai.models.list()} == {"llama3.2:3b", "qwen3:8b", "nomic-embed-text:latest"}


def test_openai_responses_and_completions(oai: openai.OpenAI) -> None:
    raw = oai.responses.with_raw_response.create(model="llama3.2:3b", input="hi there", instructions="Be brief.")
    assert raw.headers["X-Fleet-Node"] == "bravo"
    assert raw.parse().output_text == "[ollama-bravo] echo: hi there"
    events = list(oai.responses.create(model="llama3.2:3b", input=[{"role": "user", "content": "a b c"}],
                                       stream=True))  # fmt: skip
    assert events[0].type == "response.created" and events[-1].type == "response.completed"
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    assert len(deltas) > 1 and "".join(deltas) == "[ollama-bravo] echo: a b c" == events[-1].response.output_text
    done = oai.completions.create(model="llama3.2:3b", prompt="complete me")
    assert done.choices[0].text == "[ollama-bravo] echo: complete me"
    chunks = list(oai.completions.create(model="llama3.2:3b", prompt="a b", stream=True))
    assert "".join(c.choices[0].text for c in chunks if c.choices) == "[ollama-bravo] echo: a b"
    with pytest.raises(openai.NotFoundError) as missing:
        oai.responses.create(model="gpt-9", input="x")
    assert "gpt-9" in missing.value.message and missing.value.type == "not_found_error"


def test_failover_before_the_first_byte(
    trio: tuple[Peer, Peer, Peer], claude: anthropic.Anthropic, oai: openai.OpenAI
) -> None:
    """charlie has qwen3:8b loaded, so it is tried first, and its Ollama refuses: bravo answers instead."""
    with claude.messages.with_streaming_response.create(
        model="qwen3:8b", max_tokens=64, stream=True, messages=[{"role": "user", "content": "over to you"}]
    ) as response:
        assert response.headers["X-Fleet-Node"] == "bravo" and response.headers["X-Fleet-Attempts"] == "2"
        text = "".join(
            json.loads(line[6:])["delta"].get("text", "")
            for line in response.iter_lines()
            if line.startswith("data: ") and '"content_block_delta"' in line
        )
    assert text == "[ollama-bravo] echo: over to you"
    raw = oai.responses.with_raw_response.create(model="qwen3:8b", input="x")
    assert raw.headers["X-Fleet-Node"] == "bravo" and raw.headers["X-Fleet-Attempts"] == "2"


def test_a_broken_stream_ends_in_the_clients_own_error_shape(mesh: Mesh, closing: Callable[[T], T]) -> None:
    """bravo's Ollama dies mid-stream: bravo ends the stream with Anthropic's error event, which alpha relays and
    the anthropic client raises."""
    entry_ollama = OllamaStandin("ollama-alpha", "nomic-embed-text")
    worker_ollama = OllamaStandin("ollama-bravo", "qwen3:8b", "qwen3:8b", chunk_delay=0.3)
    try:
        a = mesh.add("alpha", mflux=False, ollama_url=entry_ollama.url)
        mesh.add("bravo", mflux=False, ollama_url=worker_ollama.url)
        mesh.wait_all_see_each_other()
        wait_until_routable(a, "qwen3:8b", "bravo")
        claude = closing(anthropic.Anthropic(base_url=a.url, api_key="x", max_retries=0))
        words = " ".join(f"w{i}" for i in range(30))
        with (
            pytest.raises(anthropic.APIStatusError) as broken,
            claude.messages.stream(
                model="qwen3:8b", max_tokens=256, messages=[{"role": "user", "content": words}]
            ) as stream,
        ):
            for text in stream.text_stream:
                if text:
                    worker_ollama.stop()
    finally:
        entry_ollama.stop()
        worker_ollama.stop()
    body: Any = broken.value.body
    assert body["type"] == "error" and body["error"]["type"] == "api_error"
    assert "broke off" in body["error"]["message"] and "bravo" in body["error"]["message"], body


def test_with_api_keys_on_the_anthropic_key_is_checked(mesh: Mesh, closing: Callable[[T], T]) -> None:
    """Peers started with --api-key: the anthropic client's key (it sends it as x-api-key) lets it in, and the
    request still goes to the peer that has the model; a wrong key is the client's PermissionDeniedError."""
    key = "herd-test-key-0123456789"
    standins = [OllamaStandin("ollama-alpha", "nomic-embed-text"), OllamaStandin("ollama-bravo", "llama3.2:3b")]
    try:
        a = mesh.add("alpha", mflux=False, ollama_url=standins[0].url, args=["--api-key", key])
        mesh.add("bravo", mflux=False, ollama_url=standins[1].url, args=["--api-key", key])
        mesh.wait_all_see_each_other()  # /mesh/peers stays readable without a key

        def routable() -> bool:
            tags = a.get("/api/tags", headers={"Authorization": f"Bearer {key}"}).json()["models"]
            return any(m["name"] == "llama3.2:3b" for m in tags)

        wait_until(routable, 15, what="alpha to see bravo's model")
        body: Any = {"model": "llama3.2:3b", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]}
        claude = closing(anthropic.Anthropic(base_url=a.url, api_key=key, max_retries=0))
        assert claude.messages.create(**body).content[0].text == "[ollama-bravo] echo: hi"
        stranger = closing(anthropic.Anthropic(base_url=a.url, api_key="wrong-key-0123456789", max_retries=0))
        with pytest.raises(anthropic.PermissionDeniedError):
            stranger.messages.create(**body)
        assert a.post("/v1/messages", json=body).status_code == 401  # no key at all
    finally:
        for standin in standins:
            standin.stop()


class OldOllama(http.server.BaseHTTPRequestHandler):
    """Ollama 0.12: it lists a model, and answers the APIs it does not know with its router's plain-text 404."""

    def do_GET(self) -> None:
        docs = {"/api/tags": {"models": [{"name": "llama3.2:3b", "model": "llama3.2:3b", "size": 2 * 10**9}]},
                "/api/ps": {"models": []}, "/api/version": {"version": "0.12.0"}}  # fmt: skip
        self._answer(200, json.dumps(docs[self.path]).encode(), "application/json")

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self._answer(404, b"404 page not found", "text/plain")

    def _answer(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_an_older_ollama_is_named_not_mistaken_for_a_missing_model(
    static_mesh: Mesh, closing: Callable[[T], T]
) -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), OldOllama)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        solo = static_mesh.add("solo", mflux=False, args=["--no-mdns"],
                               ollama_url=f"http://127.0.0.1:{server.server_address[1]}")  # fmt: skip
        wait_until(lambda: solo.get("/mesh/state").json()["llm"]["models"], 10, what="solo to list the model")
        claude = closing(anthropic.Anthropic(base_url=solo.url, api_key="x", max_retries=0))
        with pytest.raises(anthropic.APIStatusError) as old:
            claude.messages.create(model="llama3.2:3b", max_tokens=8, messages=[{"role": "user", "content": "x"}])
        message = old.value.body["error"]["message"]  # type: ignore[index]
        assert "Ollama 0.12.0 on solo does not serve /v1/messages: it needs Ollama 0.14 or later" in message
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_each_stream_ends_in_its_own_error_shape() -> None:
    anthropic_event = stream_error_event(b"\n\n", "broke off", api="anthropic")
    assert anthropic_event.startswith(b"event: error\ndata: ") and anthropic_event.endswith(b"\n\n")
    assert json.loads(anthropic_event.split(b"data: ", 1)[1]) == {
        "type": "error",
        "error": {"type": "api_error", "message": "broke off"},
    }
    responses_event = stream_error_event(b"\n\n", "broke off", api="openai", named=True)
    data = json.loads(responses_event.split(b"data: ", 1)[1])
    assert responses_event.startswith(b"event: error\n") and data["type"] == "error"
    assert data["message"] == "broke off" and data["error"]["message"] == "broke off"  # the client raises on it
