"""The Ollama stand-in's newer surfaces, seen the way a user of the official clients sees them.

Anthropic ``/v1/messages`` (Ollama >= 0.14), OpenAI ``/v1/responses`` and ``/v1/completions``, model management
(pull, delete, copy, create), and the scheduler's inconveniences the herd-mesh scheduler will meet: a memory
budget with Ollama's eviction order, slow and failing model loads, and GPU contention shared through a file.
Sync clients talk to a stand-in process; async clients and scheduler checks run the app in-process.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import ollama
import openai
import pytest

from tests.standins import contention
from tests.standins.install import OLLAMA_STANDIN
from tests.standins.ollama_standin import build_app

MODELS = "llama3.2:3b,nomic-embed-text"
WEATHER = {
    "name": "get_weather",
    "description": "Weather for a city",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
        "required": ["city"],
    },
}
CLOCK = {"name": "get_time", "description": "Time now", "input_schema": {"type": "object", "properties": {}}}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@contextmanager
def standin_process(*args: str, env: dict[str, str] | None = None) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """The stand-in CLI on a free port of 127.0.0.1: yields the process and its base URL."""
    cmd = [sys.executable, str(OLLAMA_STANDIN), "--port", "0", "--node", "mac-cli", *args]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    assert proc.stdout is not None
    try:
        timer = threading.Timer(15, proc.kill)  # never hang the suite on a broken start
        timer.start()
        try:
            line = proc.stdout.readline()
        finally:
            timer.cancel()
        assert line.startswith("OLLAMA_STANDIN_LISTENING "), line
        url = line.split()[1]
        deadline = time.monotonic() + 10
        while True:
            try:
                httpx.get(url + "/api/version", timeout=1)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)
        yield proc, url
    finally:
        if proc.poll() is None:
            proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        proc.stdout.close()


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    """One stand-in process for the official sync clients."""
    with standin_process("--models", MODELS, "--chunk-delay", "0.005", "--pull-seconds", "0.25") as (_, base):
        yield base


@pytest.fixture
def claude(url: str) -> Iterator[Any]:
    anthropic = pytest.importorskip("anthropic")
    client = anthropic.Anthropic(base_url=url, api_key="sk-ant-anything", max_retries=0)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def oai(url: str) -> Iterator[openai.OpenAI]:
    client = openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def ollama_client(url: str) -> Iterator[ollama.Client]:
    client = ollama.Client(host=url)
    try:
        yield client
    finally:
        client.close()


def sse(text: str) -> list[tuple[str, dict[str, Any]]]:
    """``(event, data)`` pairs of a named-event SSE body."""
    pairs = []
    for frame in text.strip().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in frame.splitlines())
        pairs.append((fields["event"], json.loads(fields["data"])))
    return pairs


# ---------------------------------------------------------------------------------------
# Anthropic Messages API
# ---------------------------------------------------------------------------------------


def test_anthropic_message_plain(claude: Any) -> None:
    msg = claude.messages.create(
        model="llama3.2:3b",
        max_tokens=64,
        system=[{"type": "text", "text": "Be brief."}],
        messages=[{"role": "user", "content": [{"type": "text", "text": "hello "}, {"type": "text", "text": "you"}]}],
    )
    assert msg.id.startswith("msg_") and msg.type == "message" and msg.role == "assistant"
    assert msg.model == "llama3.2:3b"
    assert [b.type for b in msg.content] == ["text"]
    assert msg.content[0].text == "[mac-cli] echo: hello you"  # text blocks are joined without a space
    assert msg.stop_reason == "end_turn" and msg.stop_sequence is None  # Ollama leaves the key out
    assert msg.usage.input_tokens == 5 and msg.usage.output_tokens == 4  # system included
    short = claude.messages.create(
        model="llama3.2:3b", max_tokens=2, system="s", messages=[{"role": "user", "content": "a b c d"}]
    )
    assert short.content[0].text == "[mac-cli] echo: " and short.stop_reason == "max_tokens"


def test_anthropic_message_streams(claude: Any, url: str) -> None:
    with claude.messages.stream(
        model="llama3.2:3b", max_tokens=64, messages=[{"role": "user", "content": "stream me"}]
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "[mac-cli] echo: stream me" == final.content[0].text
    assert final.stop_reason == "end_turn" and final.usage.output_tokens == 4
    events = list(
        claude.messages.create(
            model="llama3.2:3b", max_tokens=64, stream=True, messages=[{"role": "user", "content": "a b"}]
        )
    )
    kinds = [e.type for e in events]
    # Ollama sends no "ping", and its message_start counts no input tokens yet
    assert kinds == [
        "message_start",
        "content_block_start",
        *["content_block_delta"] * 4,
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert events[0].message.usage.input_tokens == 0
    assert events[-2].delta.stop_reason == "end_turn" and events[-2].usage.output_tokens == 4
    raw = httpx.post(
        url + "/v1/messages",
        headers={"x-api-key": "k", "anthropic-version": "2023-06-01"},
        json={
            "model": "llama3.2:3b",
            "max_tokens": 8,
            "stream": True,
            "messages": [{"role": "user", "content": "x"}],
        },
    )
    assert raw.headers["content-type"].startswith("text/event-stream")
    assert raw.text.startswith("event: message_start\ndata: {") and raw.text.endswith('"message_stop"}\n\n')


def test_anthropic_tool_use(claude: Any, url: str) -> None:
    asked = "please use tool get_weather"
    msg = claude.messages.create(
        model="llama3.2:3b", max_tokens=64, tools=[CLOCK, WEATHER], messages=[{"role": "user", "content": asked}]
    )
    (block,) = msg.content
    assert block.type == "tool_use" and block.name == "get_weather" and block.id.startswith("call_")
    assert block.input == {"city": asked}  # strings get the user's text; only required properties
    assert msg.stop_reason == "tool_use"
    with claude.messages.stream(
        model="llama3.2:3b",
        max_tokens=64,
        tools=[WEATHER, CLOCK],
        tool_choice={"type": "tool", "name": "get_time"},
        messages=[{"role": "user", "content": "what time is it"}],
    ) as stream:
        final = stream.get_final_message()
    assert [(b.type, b.name, b.input) for b in final.content] == [("tool_use", "get_time", {})]
    body = {
        "model": "llama3.2:3b",
        "max_tokens": 64,
        "stream": True,
        "tools": [WEATHER],
        "tool_choice": {"type": "any"},
        "messages": [{"role": "user", "content": "Oslo"}],
    }
    events = sse(httpx.post(url + "/v1/messages", json=body).text)
    assert [kind for kind, _ in events] == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert events[1][1]["content_block"] == {
        "type": "tool_use",
        "id": events[1][1]["content_block"]["id"],
        "name": "get_weather",
        "input": {},
    }
    assert events[2][1]["delta"] == {"type": "input_json_delta", "partial_json": '{"city":"Oslo"}'}
    assert events[4][1]["delta"] == {"stop_reason": "tool_use"}
    answer = claude.messages.create(
        model="llama3.2:3b",
        max_tokens=64,
        tools=[WEATHER],
        messages=[
            {"role": "user", "content": asked},
            {"role": "assistant", "content": [block.model_dump(include={"type", "id", "name", "input"})]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": block.id, "content": "18C"}]},
        ],
    )
    assert answer.content[0].text == "[mac-cli] tool result: 18C" and answer.stop_reason == "end_turn"


def test_anthropic_errors(claude: Any, url: str) -> None:
    anthropic = pytest.importorskip("anthropic")
    with pytest.raises(anthropic.NotFoundError) as missing:
        claude.messages.create(model="nope", max_tokens=8, messages=[{"role": "user", "content": "x"}])
    assert missing.value.status_code == 404
    assert missing.value.body["type"] == "error"
    assert missing.value.body["error"] == {"type": "not_found_error", "message": "model 'nope' not found"}
    stream = claude.messages.stream(model="nope", max_tokens=8, messages=[{"role": "user", "content": "x"}])
    with pytest.raises(anthropic.NotFoundError), stream as s:
        s.get_final_message()
    with pytest.raises(anthropic.BadRequestError) as embed_only:
        claude.messages.create(model="nomic-embed-text", max_tokens=8, messages=[{"role": "user", "content": "x"}])
    assert embed_only.value.body["error"]["message"] == '"nomic-embed-text" does not support chat'
    for body, message in [
        (
            {"model": "llama3.2:3b", "messages": [{"role": "user", "content": "x"}]},
            "max_tokens is required and must be positive",
        ),
        ({"model": "llama3.2:3b", "max_tokens": 5, "messages": []}, "messages is required"),
        ({"max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}, "model is required"),
        (
            {"model": "llama3.2:3b", "max_tokens": "5", "messages": []},
            "json: cannot unmarshal string into Go struct field MessagesRequest.max_tokens of type int",
        ),
        (
            {"model": "llama3.2:3b", "max_tokens": 5, "messages": [{"role": "user", "content": 7}]},
            "invalid message content type: float64",
        ),
    ]:
        res = httpx.post(url + "/v1/messages", json=body)
        assert res.status_code == 400, body
        assert res.json()["error"] == {"type": "invalid_request_error", "message": message}
        assert res.json()["request_id"].startswith("req_")


# ---------------------------------------------------------------------------------------
# OpenAI Responses and legacy completions
# ---------------------------------------------------------------------------------------


def test_openai_responses(oai: openai.OpenAI) -> None:
    plain = oai.responses.create(model="llama3.2:3b", input="hi there", instructions="Be brief.")
    assert plain.output_text == "[mac-cli] echo: hi there"
    assert plain.id.startswith("resp_") and plain.object == "response" and plain.status == "completed"
    assert plain.instructions == "Be brief." and plain.store is False
    (item,) = plain.output
    assert item.type == "message" and item.id.startswith("msg_") and item.status == "completed"
    assert item.content[0].type == "output_text" and item.content[0].annotations == []
    assert plain.usage is not None and plain.usage.total_tokens == plain.usage.input_tokens + 4
    convo = [
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "ok"},
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "second"}]},
    ]
    events = list(oai.responses.create(model="llama3.2:3b", input=convo, stream=True))
    kinds = [e.type for e in events]
    assert kinds == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        *["response.output_text.delta"] * 3,
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert deltas == "[mac-cli] echo: second" == events[-1].response.output_text
    tool = {
        "type": "function",
        "name": "lookup",
        "parameters": {"type": "object", "properties": {"q": {"type": "string"}}},
    }
    called = oai.responses.create(model="llama3.2:3b", input="use tool lookup", tools=[tool])
    (call,) = called.output
    assert call.type == "function_call" and call.name == "lookup" and call.call_id.startswith("call_")
    assert json.loads(call.arguments) == {"q": "use tool lookup"} and called.output_text == ""
    with pytest.raises(openai.NotFoundError) as missing:
        oai.responses.create(model="nope", input="x")
    assert missing.value.body == {
        "message": "model 'nope' not found",
        "type": "api_error",
        "param": None,
        "code": None,
    }


def test_openai_completions(oai: openai.OpenAI) -> None:
    done = oai.completions.create(model="llama3.2:3b", prompt="complete me")
    assert done.id.startswith("cmpl-") and done.object == "text_completion"
    assert done.choices[0].text == "[mac-cli] echo: complete me" and done.choices[0].finish_reason == "stop"
    assert done.usage is not None and done.usage.completion_tokens == 4
    chunks = list(
        oai.completions.create(
            model="llama3.2:3b", prompt="a b", stream=True, stream_options={"include_usage": True}, max_tokens=3
        )
    )
    assert "".join(c.choices[0].text for c in chunks if c.choices) == "[mac-cli] echo: a "
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
    assert chunks[0].usage is not None and chunks[0].usage.total_tokens == 0  # Ollama: zeros in every chunk
    assert chunks[-1].choices == [] and chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 3
    with pytest.raises(openai.NotFoundError):
        oai.completions.create(model="nope", prompt="x")
    with pytest.raises(openai.BadRequestError) as embed_only:
        oai.completions.create(model="nomic-embed-text", prompt="x")
    assert embed_only.value.body["message"] == '"nomic-embed-text" does not support generate'


# ---------------------------------------------------------------------------------------
# Model management through the official ollama client
# ---------------------------------------------------------------------------------------


def test_pull_streams_progress_and_lists_the_model(ollama_client: ollama.Client, url: str) -> None:
    client = ollama_client
    lines = list(client.pull("qwen3:0.6b", stream=True))
    statuses = [p.status for p in lines]
    assert statuses[0] == "pulling manifest" and statuses[-3:] == [
        "verifying sha256 digest",
        "writing manifest",
        "success",
    ]
    layers = [p for p in lines if (p.status or "").startswith("pulling ") and p.digest]
    weights = [p for p in layers if p.digest == layers[0].digest]
    assert len(weights) >= 4 and len({p.digest for p in layers}) == 5  # weights, template, license, params, config
    assert all(p.status == f"pulling {p.digest[7:19]}" and p.digest.startswith("sha256:") for p in layers)
    assert weights[0].completed is None  # nothing downloaded at the first tick, and Go omits the zero
    done = [p.completed for p in weights[1:]]
    assert done == sorted(done) and done[-1] == weights[0].total
    listed = client.list().models
    entry = next(m for m in listed if m.model == "qwen3:0.6b")
    assert entry.modified_at == max(m.modified_at for m in listed)  # listed newest first, like Ollama
    assert entry.size == sum({p.digest: p.total for p in layers}.values())
    assert client.pull("qwen3:0.6b").status == "success"  # already there: fast, one line per blob
    again = list(client.pull("qwen3:0.6b", stream=True))
    assert len(again) == 1 + 5 + 3 and all(p.completed == p.total for p in again[1:6])
    with pytest.raises(ollama.ResponseError) as in_stream:
        list(client.pull("doesnotexist:1b", stream=True))
    assert in_stream.value.error == "pull model manifest: file does not exist"
    assert in_stream.value.status_code == -1  # the 200 stream had started with "pulling manifest"
    with pytest.raises(ollama.ResponseError) as whole:
        client.pull("library/doesnotexist")
    assert whole.value.status_code == 500 and whole.value.error == "pull model manifest: file does not exist"
    raw = httpx.post(url + "/api/pull", json={"name": "bad name!"})
    assert raw.status_code == 400 and raw.json() == {"error": "invalid model name"}


def test_delete_copy_create(ollama_client: ollama.Client) -> None:
    client = ollama_client
    assert client.copy("llama3.2:3b", "mine").status == "success"
    assert client.show("mine").details.family == "llama"
    mine = next(m for m in client.list().models if m.model == "mine:latest")
    original = next(m for m in client.list().models if m.model == "llama3.2:3b")
    assert (mine.digest, mine.size) == (original.digest, original.size)
    assert client.delete("mine").status == "success"
    assert "mine:latest" not in [m.model for m in client.list().models]
    with pytest.raises(ollama.ResponseError) as gone:
        client.delete("mine")
    assert gone.value.status_code == 404 and gone.value.error == "model 'mine' not found"
    with pytest.raises(ollama.ResponseError) as no_source:
        client.copy("nope", "other")
    assert no_source.value.status_code == 404 and no_source.value.error == 'model "nope" not found'
    created = list(client.create(model="pirate", from_="llama3.2:3b", system="Talk like a pirate.", stream=True))
    statuses = [p.status or "" for p in created]
    assert [s.split(" sha256:")[0] for s in statuses] == ["using existing layer"] * 4 + [
        "creating new layer",
        "writing manifest",
        "success",
    ]
    pirate = client.chat(model="pirate", messages=[{"role": "user", "content": "ahoy"}])
    assert pirate.message.content == "[mac-cli] echo: ahoy"
    assert client.create(model="pulled-too", from_="smollm2:135m").status == "success"  # pulls its base first
    assert {"smollm2:135m", "pulled-too:latest"} <= {m.model for m in client.list().models}
    with pytest.raises(ollama.ResponseError) as no_from:
        client.create(model="x")
    assert no_from.value.status_code == 400 and no_from.value.error == "neither 'from' or 'files' was specified"
    assert client.delete("pirate").status == "success" and client.delete("pulled-too").status == "success"


# ---------------------------------------------------------------------------------------
# Scheduler: memory, eviction order, slow and failing loads (in-process)
# ---------------------------------------------------------------------------------------


def asgi(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://standin")


def ask(model: str, text: str = "hi", **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": text}], "stream": False, **extra}


@pytest.mark.anyio
async def test_memory_budget_evicts_by_keep_alive_then_fails() -> None:
    app = build_app("llama3.2:1b,llama3.2:3b,qwen3:8b,qwen3:32b", "", "mac-a", 0.0, None, memory_gb=7)
    client = ollama.AsyncClient(host="http://standin", transport=httpx.ASGITransport(app=app))
    try:
        await client.chat(model="llama3.2:1b", messages=[{"role": "user", "content": "x"}], keep_alive="1h")
        await client.chat(model="llama3.2:3b", messages=[{"role": "user", "content": "x"}])  # used last, 5m
        ps = (await client.ps()).models
        assert [m.model for m in ps] == ["llama3.2:1b", "llama3.2:3b"]  # longest time left first
        assert all(m.size == m.size_vram for m in ps)
        # qwen3:8b does not fit beside both: Ollama unloads the idle model with the shortest keep-alive (not LRU)
        await client.chat(model="qwen3:8b", messages=[{"role": "user", "content": "x"}])
        assert sorted(m.model for m in (await client.ps()).models) == ["llama3.2:1b", "qwen3:8b"]
        assert app.state.standin.evictions == ["llama3.2:3b"]
        with pytest.raises(ollama.ResponseError) as too_big:
            await client.chat(model="qwen3:32b", messages=[{"role": "user", "content": "x"}])
        assert too_big.value.status_code == 500
        assert too_big.value.error == "model requires more system memory (18.8 GiB) than is available (7.0 GiB)"
        assert (await client.ps()).models == []  # everything was unloaded trying to make room
    finally:
        await client.close()


@pytest.mark.anyio
async def test_load_errors_reach_the_async_anthropic_client_in_process() -> None:
    anthropic = pytest.importorskip("anthropic")
    httpx2 = pytest.importorskip("httpx2")  # what anthropic (and openai) build on since their 2.x/3.x
    app = build_app("qwen3:8b,qwen3:32b", "", "mac-a", 0.0, None, memory_gb=7)
    async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app)) as http:
        claude = anthropic.AsyncAnthropic(base_url="http://standin", api_key="x", http_client=http, max_retries=0)
        with pytest.raises(anthropic.InternalServerError) as via_claude:
            await claude.messages.create(model="qwen3:32b", max_tokens=8, messages=[{"role": "user", "content": "x"}])
        assert via_claude.value.body["error"]["type"] == "api_error"
        say = [{"role": "user", "content": "y"}]
        reply = await claude.messages.create(model="qwen3:8b", max_tokens=8, messages=say)
        assert reply.content[0].text == "[mac-a] echo: y"
        assert app.state.standin.evictions == []  # nothing was loaded when qwen3:32b failed


@pytest.mark.anyio
async def test_a_busy_model_is_waited_for_and_max_loaded() -> None:
    app = build_app("llama3.2:3b,qwen3:8b", "", "mac-a", 0.04, None, memory_gb=6)
    async with asgi(app) as http:
        long_text = " ".join(["word"] * 10)  # about 12 pieces, 0.5 s
        first = asyncio.create_task(http.post("/api/chat", json=ask("llama3.2:3b", long_text)))
        await asyncio.sleep(0.1)
        started = time.monotonic()
        second = await http.post("/api/chat", json=ask("qwen3:8b"))
        waited = time.monotonic() - started
        assert (await first).status_code == 200 and second.status_code == 200
        assert first.done() and waited >= 0.25  # qwen3:8b had to wait for the busy llama3.2:3b to finish
        assert second.json()["load_duration"] >= 0.25e9
        assert app.state.standin.evictions == ["llama3.2:3b"]
    four = build_app("a:1b,b:1b,c:1b,d:1b", "", "mac-b", 0.0, None)  # Ollama's default: 3 models per GPU
    async with asgi(four) as http:
        for name in ("a:1b", "b:1b", "c:1b", "d:1b"):
            assert (await http.post("/api/chat", json=ask(name))).status_code == 200
        loaded = [m["name"] for m in (await http.get("/api/ps")).json()["models"]]
        assert len(loaded) == 3 and "d:1b" in loaded and len(four.state.standin.evictions) == 1


@pytest.mark.anyio
async def test_cold_loads_are_slow_visible_and_can_fail() -> None:
    app = build_app(MODELS, "", "mac-a", 0.0, None, load_delay=0.3, fail_loads=1)
    async with asgi(app) as http:
        started = time.monotonic()
        failed = await http.post("/api/chat", json=ask("llama3.2:3b"))
        assert failed.status_code == 500
        assert failed.json() == {"error": "llama runner process has terminated: exit status 2"}
        assert time.monotonic() - started >= 0.3 and (await http.get("/api/ps")).json()["models"] == []
        loading = asyncio.create_task(http.post("/api/chat", json=ask("llama3.2:3b")))
        await asyncio.sleep(0.1)
        assert [m["name"] for m in (await http.get("/api/ps")).json()["models"]] == ["llama3.2:3b"]  # while loading
        assert (await http.get("/_standin/state")).json()["loading"] == ["llama3.2:3b"]
        cold = (await loading).json()
        assert 0.3e9 <= cold["load_duration"] < 1e9 and cold["message"]["content"] == "[mac-a] echo: hi"
        warm = (await http.post("/api/chat", json=ask("llama3.2:3b"))).json()
        assert warm["load_duration"] < 0.1e9
        body = {"model": "nomic-embed-text", "input": "x"}
        assert (await http.post("/api/embed", json=body)).json()["load_duration"] >= 0.3e9  # cold too
        unload = await http.post("/api/generate", json={"model": "llama3.2:3b", "keep_alive": 0})
        assert unload.json()["done_reason"] == "unload"
        assert [m["name"] for m in (await http.get("/api/ps")).json()["models"]] == ["nomic-embed-text:latest"]
    failing = build_app(MODELS, "", "mac-b", 0.0, None, fail_loads=5)
    async with asgi(failing) as http:
        body = {"model": "llama3.2:3b", "max_tokens": 8, "messages": [{"role": "user", "content": "x"}]}
        res = await http.post("/v1/messages", json=body)
        assert res.status_code == 500 and res.json()["error"]["type"] == "api_error"
        res = await http.post("/v1/responses", json={"model": "llama3.2:3b", "input": "x"})
        assert res.status_code == 500 and res.json()["error"]["message"].startswith("llama runner process")


def test_scheduler_options_on_the_command_line() -> None:
    args = ("--models", "llama3.2:3b,qwen3:0.6b", "--chunk-delay", "0", "--memory-gb", "1", "--cold-load-seconds",
            "0.2", "--fail-loads", "1", "--max-loaded", "1")  # fmt: skip
    with standin_process(*args) as (_, base), httpx.Client(base_url=base) as http:
        first = http.post("/api/chat", json=ask("qwen3:0.6b"))
        assert first.status_code == 500 and first.json()["error"].startswith("llama runner process has terminated")
        assert http.post("/api/chat", json=ask("qwen3:0.6b")).json()["load_duration"] >= 0.2e9
        too_big = http.post("/api/generate", json={"model": "llama3.2:3b", "prompt": "x", "stream": False})
        assert too_big.status_code == 500
        assert too_big.json() == {"error": "model requires more system memory (2.0 GiB) than is available (1.0 GiB)"}
        assert http.get("/api/ps").json()["models"] == []


# ---------------------------------------------------------------------------------------
# Contention between stand-ins
# ---------------------------------------------------------------------------------------


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", ""])
    proc.wait()
    return proc.pid


def test_contention_registry_format(tmp_path: Path) -> None:
    path = tmp_path / "gpu.jobs"
    image = contention.register(path, "image", what="mflux-generate")
    stale = {"pid": dead_pid(), "kind": "image", "job": "crashed-1", "since": 1.0}
    with open(path, "a") as f:
        f.write(json.dumps(stale) + "\n" + "not json\n" + '{"pid": "x"}\n')
    jobs = contention.read_jobs(path)
    assert [(j["pid"], j["kind"], j["what"]) for j in jobs] == [(os.getpid(), "image", "mflux-generate")]
    assert contention.count_others(path, "llm") == 1 and contention.count_others(path, "image") == 0
    assert contention.slowdown(path, "llm", 1.5) == 2.5 and contention.slowdown(None, "llm") == 1.0
    with contention.job(path, "llm", model="m") as llm:
        assert llm is not None and contention.count_others(path, "image") == 1
    contention.unregister(path, image)
    assert path.read_text() == ""  # the stale and malformed lines went with the last rewrite


@pytest.mark.anyio
async def test_contention_slows_the_token_pace(tmp_path: Path) -> None:
    path = tmp_path / "gpu.jobs"
    app = build_app(MODELS, "llama3.2:3b", "mac-a", 0.02, None, contention_file=path, contention_factor=1.0)
    text = " ".join(["w"] * 12)

    async def timed(http: httpx.AsyncClient) -> float:
        started = time.monotonic()
        res = await http.post("/api/chat", json=ask("llama3.2:3b", text))
        assert res.status_code == 200
        return time.monotonic() - started

    async with asgi(app) as http:
        alone = await timed(http)
        with contention.job(path, "image"), contention.job(path, "image"):
            crowded = await timed(http)  # 1 + 1.0 * 2 = three times slower
        app.state.standin.contention_factor = 0.5
        with contention.job(path, "image"):
            eased = await timed(http)
        seen: list[list[dict[str, Any]]] = []
        task = asyncio.create_task(http.post("/api/chat", json=ask("llama3.2:3b", text)))
        await asyncio.sleep(0.1)
        seen.append(contention.read_jobs(path))
        await task
    floor = 14 * 0.02  # 14 paced steps (13 between pieces, 1 before the last chunk) at the plain pace
    assert floor <= alone < 2 * floor
    assert crowded >= 3 * floor and crowded > 2 * alone
    assert 1.5 * floor <= eased < crowded
    (job,) = seen[0]
    assert (job["pid"], job["kind"], job["what"], job["model"]) == (os.getpid(), "llm", "/api/chat", "llama3.2:3b")
    assert contention.read_jobs(path) == []


def test_contention_from_the_environment_survives_a_crash(tmp_path: Path) -> None:
    path = tmp_path / "gpu.jobs"
    env = {**os.environ, contention.ENV_VAR: str(path)}
    with standin_process("--models", MODELS, "--chunk-delay", "0.05", env=env) as (proc, base):
        body = {"model": "llama3.2:3b", "messages": [{"role": "user", "content": "one two three four five"}]}
        with httpx.stream("POST", base + "/api/chat", json=body) as res:
            lines = res.iter_lines()
            next(lines)
            (job,) = contention.read_jobs(path)
            assert (job["pid"], job["kind"], job["node"]) == (proc.pid, "llm", "mac-cli")
            os.kill(proc.pid, signal.SIGKILL)  # dies mid-answer: its line stays in the file...
            with pytest.raises(httpx.HTTPError):
                for _ in lines:
                    pass
        assert json.loads(path.read_text())["pid"] == proc.pid
        deadline = time.monotonic() + 5  # the socket closes a moment before the process is a zombie
        while contention.read_jobs(path) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert contention.read_jobs(path) == []  # ...but nobody counts it: a zombie is dead (not reaped yet)
        assert proc.poll() is not None
    assert contention.read_jobs(path) == [] and contention.slowdown(path, "image") == 1.0
