"""Stand-in for an Ollama 0.12 server (native ``/api/*`` and OpenAI-compatible ``/v1/*``).

Ollama cannot run on the Linux CI box, so peers are tested against this Starlette app.
Its JSON is shaped like real Ollama so the official ``ollama`` and ``openai`` PyPI clients
parse it. Replies are deterministic and name the node that produced them
(``"[NODE] echo: <last user message>"``) so routing tests can see who answered.

Run it as a process::

    python tests/standins/ollama_standin.py --host 127.0.0.1 --port 0 \\
        --models llama3.2:3b,nomic-embed-text --loaded llama3.2:3b --node mac-a

``--port 0`` binds a free port; the first stdout line is then
``OLLAMA_STANDIN_LISTENING http://HOST:PORT`` (flushed), which tests can read.
Or in-process: ``build_app(models, loaded, node, chunk_delay, fail_status)``; the
returned app's ``app.state.standin`` (a :class:`StandinState`) can be changed at runtime
(e.g. ``fail_status``) and records every request in ``requests``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import json
import math
import random
import re
import socket
import struct
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

OLLAMA_VERSION = "0.12.0"
DEFAULT_KEEP_ALIVE_S = 300.0
EMBED_DIMS = 8
FOREVER = float("inf")

# ---------------------------------------------------------------------------------------
# Model catalogue
# ---------------------------------------------------------------------------------------


def normalize_model(name: str) -> str:
    """Ollama's name rule: a model without a tag means ``:latest``."""
    name = name.strip()
    last = name.rsplit("/", 1)[-1]
    return name if ":" in last else f"{name}:latest"


@dataclass
class ModelInfo:
    """What /api/tags and /api/ps say about one model; derived deterministically from its name."""

    name: str
    size: int
    digest: str
    family: str
    parameter_size: str
    quantization_level: str
    embedding_only: bool
    modified_at: str
    modified_ts: int

    @classmethod
    def from_name(cls, name: str) -> ModelInfo:
        """Guess plausible metadata (family, size, quantization) from the model name."""
        name = normalize_model(name)
        base = name.rsplit("/", 1)[-1].split(":", 1)[0].lower()
        embedding_only = "embed" in base or base.startswith(("bge", "all-minilm", "mxbai"))
        match = re.search(r"(\d+(?:\.\d+)?)([bm])", name.split(":", 1)[1].lower())
        if match:
            value, unit = float(match.group(1)), match.group(2)
            params = value * (1e9 if unit == "b" else 1e6)
            parameter_size = f"{match.group(1)}{unit.upper()}"
        else:
            params = 137e6 if embedding_only else 3.2e9
            parameter_size = "137M" if embedding_only else "3.2B"
        if embedding_only:
            family, quant, size = "nomic-bert" if "nomic" in base else "bert", "F16", int(params * 2)
        else:
            family_match = re.match(r"[a-z]+\d?", base)
            family = family_match.group(0) if family_match else "llama"
            family = re.sub(r"\d$", "", family) if family.startswith("llama") else family
            quant, size = "Q4_K_M", int(params * 0.62)
        digest = hashlib.sha256(name.encode()).hexdigest()
        ts = 1_757_000_000 + int(digest[:6], 16) % 1_000_000  # fixed per name, September 2025
        return cls(name, size, digest, family, parameter_size, quant, embedding_only, rfc3339(ts * 10**9), ts)

    def details(self) -> dict[str, Any]:
        """The ``details`` object Ollama attaches to tags/ps/show entries."""
        return {
            "parent_model": "",
            "format": "gguf",
            "family": self.family,
            "families": [self.family],
            "parameter_size": self.parameter_size,
            "quantization_level": self.quantization_level,
        }


def rfc3339(ts_ns: int) -> str:
    """Go's RFC3339Nano in local time, as Ollama prints timestamps (9-digit fraction, offset)."""
    secs, nanos = divmod(ts_ns, 10**9)
    local = datetime.fromtimestamp(secs, UTC).astimezone()
    offset = local.strftime("%z")
    offset = "Z" if offset in ("+0000", "") else f"{offset[:3]}:{offset[3:]}"
    frac = f".{nanos:09d}".rstrip("0").rstrip(".")
    return local.strftime("%Y-%m-%dT%H:%M:%S") + frac + offset


def now_rfc3339() -> str:
    """Current time as Ollama's ``created_at``."""
    return rfc3339(time.time_ns())


def parse_keep_alive(value: Any) -> float | None:
    """Seconds to keep a model loaded: None = default, inf = forever (negative), 0 = unload."""
    if value is None or value == "":
        return None
    if isinstance(value, (int, float)):
        secs = float(value)
    else:
        match = re.fullmatch(r"\s*(-?\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*", str(value))
        if not match:
            return None
        secs = float(match.group(1)) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600, None: 1}[match.group(2)]
    return FOREVER if secs < 0 else secs


@dataclass
class StandinState:
    """Mutable server state shared by the handlers; tests may poke at it in-process."""

    node: str
    models: dict[str, ModelInfo]
    loaded: dict[str, float] = field(default_factory=dict)  # name -> expiry (epoch seconds, inf = forever)
    chunk_delay: float = 0.05
    fail_status: int | None = None
    load_delay: float = 0.0
    requests: list[dict[str, Any]] = field(default_factory=list)

    def find(self, name: str | None) -> ModelInfo | None:
        """Look a requested model up by Ollama's name rules."""
        return self.models.get(normalize_model(name)) if name else None

    def expire(self) -> None:
        """Drop models whose keep-alive ran out, like Ollama's scheduler."""
        now = time.time()
        for name in [n for n, exp in self.loaded.items() if exp <= now]:
            del self.loaded[name]

    async def touch(self, info: ModelInfo, keep_alive: Any) -> bool:
        """Mark a model used (loading it if needed); return True if it was cold."""
        self.expire()
        cold = info.name not in self.loaded
        if cold and self.load_delay > 0:
            await asyncio.sleep(self.load_delay)
        secs = parse_keep_alive(keep_alive)
        secs = DEFAULT_KEEP_ALIVE_S if secs is None else secs
        if secs == 0:
            self.loaded.pop(info.name, None)
        else:
            self.loaded[info.name] = time.time() + secs if secs != FOREVER else FOREVER
        return cold


# ---------------------------------------------------------------------------------------
# Deterministic "inference"
# ---------------------------------------------------------------------------------------


def message_text(content: Any) -> str:
    """Text of a message whose content is a string or OpenAI-style list of parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict) and p.get("type") == "text")
    return "" if content is None else str(content)


def last_user_text(messages: Iterable[dict[str, Any]]) -> str:
    """The last user message (what the echo reply repeats)."""
    text = ""
    for msg in messages:
        if isinstance(msg, dict) and msg.get("role") == "user":
            text = message_text(msg.get("content"))
    return text


def reply_text(node: str, prompt: str, json_mode: bool) -> str:
    """The deterministic answer: ``[NODE] echo: <prompt>`` (a JSON object when format is JSON)."""
    if json_mode:
        return json.dumps({"node": node, "echo": prompt})
    return f"[{node}] echo: {prompt}"


def split_chunks(text: str) -> list[str]:
    """Split a reply into token-like stream pieces (words with their trailing space)."""
    pieces = re.findall(r"\S+\s*|\s+", text)
    return pieces or [""]


def count_tokens(text: str) -> int:
    """A stable, plausible token count."""
    return max(1, len(re.findall(r"\w+|[^\w\s]", text)))


def embed_vector(model: str, text: str, dims: int = EMBED_DIMS, normalize: bool = True) -> list[float]:
    """Deterministic embedding from sha256(model, text); L2-normalized like /api/embed."""
    raw = b""
    counter = 0
    while len(raw) < dims:
        raw += hashlib.sha256(f"{model}\x00{text}\x00{counter}".encode()).digest()
        counter += 1
    vec = [b / 127.5 - 1.0 for b in raw[:dims]]
    if normalize:
        norm = math.sqrt(sum(v * v for v in vec)) or 1.0
        vec = [v / norm for v in vec]
    return vec


def durations(state: StandinState, cold: bool, prompt_tokens: int, eval_tokens: int) -> dict[str, int]:
    """Ollama's final-chunk counters (nanoseconds)."""
    load = int((state.load_delay or 0.8) * 1e9) if cold else 12_000_000
    eval_ns = int(max(state.chunk_delay, 0.01) * 1e9) * eval_tokens
    prompt_ns = 2_000_000 * prompt_tokens
    return {
        "total_duration": load + prompt_ns + eval_ns,
        "load_duration": load,
        "prompt_eval_count": prompt_tokens,
        "prompt_eval_duration": prompt_ns,
        "eval_count": eval_tokens,
        "eval_duration": eval_ns,
    }


# ---------------------------------------------------------------------------------------
# Helpers for errors and request bodies
# ---------------------------------------------------------------------------------------


class HTTPFail(Exception):
    """An error answer; ``openai`` selects the ``{"error": {...}}`` shape of Ollama's /v1 routes."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


OPENAI_ERROR_TYPES = {400: "invalid_request_error", 404: "not_found_error"}


def error_response(status: int, message: str, openai: bool) -> JSONResponse:
    """Ollama's error bodies: a string natively, an OpenAI error object under /v1."""
    if openai:
        body: dict[str, Any] = {
            "error": {
                "message": message,
                "type": OPENAI_ERROR_TYPES.get(status, "api_error"),
                "param": None,
                "code": None,
            }
        }
    else:
        body = {"error": message}
    return JSONResponse(body, status_code=status)


FAIL_MESSAGES = {
    503: "server busy, please try again.  maximum pending requests exceeded",
    500: "llama runner process has terminated: exit status 2",
    429: "too many requests",
}


async def read_body(request: Request) -> dict[str, Any]:
    """Parse a JSON object body, answering 400 like Ollama for anything else."""
    raw = await request.body()
    try:
        body = json.loads(raw or b"{}")
    except json.JSONDecodeError as exc:
        raise HTTPFail(400, f"invalid character in request body: {exc.msg}") from None
    if not isinstance(body, dict):
        raise HTTPFail(400, "json: cannot unmarshal request body into a JSON object")
    return body


def lookup(state: StandinState, name: Any) -> ModelInfo:
    """Resolve the request's model or raise Ollama's 400/404."""
    if not name or not isinstance(name, str):
        raise HTTPFail(400, "model is required")
    info = state.find(name)
    if info is None:
        raise HTTPFail(404, f'model "{name}" not found, try pulling it first')
    return info


Handler = Callable[[Request, "StandinState", dict[str, Any]], Awaitable[Response]]
Endpoint = Callable[[Request], Awaitable[Response]]


def endpoint(openai: bool = False) -> Callable[[Handler], Endpoint]:
    """Decorate a handler with fail injection, request logging and error mapping."""

    def wrap(func: Handler) -> Endpoint:
        async def handler(request: Request) -> Response:
            state: StandinState = request.app.state.standin
            entry: dict[str, Any] = {"method": request.method, "path": request.url.path, "time": time.time()}
            state.requests.append(entry)
            if request.method == "POST" and state.fail_status:
                message = FAIL_MESSAGES.get(state.fail_status, f"stand-in {state.node} failing on purpose")
                entry["status"] = state.fail_status
                return error_response(state.fail_status, message, openai)
            try:
                response: Response = await func(request, state, entry)
            except HTTPFail as fail:
                entry["status"] = fail.status
                return error_response(fail.status, fail.message, openai)
            entry["status"] = response.status_code
            return response

        return handler

    return wrap


def ndjson_stream(lines: AsyncIterator[dict[str, Any]]) -> StreamingResponse:
    """Ollama's streaming content type and framing: one JSON object per line."""

    async def body() -> AsyncIterator[bytes]:
        async for obj in lines:
            yield (json.dumps(obj) + "\n").encode()

    return StreamingResponse(body(), media_type="application/x-ndjson")


def sse_stream(events: AsyncIterator[dict[str, Any]]) -> StreamingResponse:
    """OpenAI-style server-sent events ending with ``data: [DONE]``."""

    async def body() -> AsyncIterator[bytes]:
        async for obj in events:
            yield f"data: {json.dumps(obj)}\n\n".encode()
        yield b"data: [DONE]\n\n"

    return StreamingResponse(body(), media_type="text/event-stream")


# ---------------------------------------------------------------------------------------
# Native API
# ---------------------------------------------------------------------------------------


async def root(request: Request) -> Response:
    """Ollama's liveness answer."""
    return PlainTextResponse("Ollama is running")


async def version(request: Request) -> Response:
    """GET /api/version."""
    return JSONResponse({"version": OLLAMA_VERSION})


async def tags(request: Request) -> Response:
    """GET /api/tags: models on disk."""
    state: StandinState = request.app.state.standin
    models = [
        {
            "name": m.name,
            "model": m.name,
            "modified_at": m.modified_at,
            "size": m.size,
            "digest": m.digest,
            "details": m.details(),
        }
        for m in state.models.values()
    ]
    return JSONResponse({"models": models})


async def ps(request: Request) -> Response:
    """GET /api/ps: models in memory, with expiry and VRAM use."""
    state: StandinState = request.app.state.standin
    state.expire()
    models = []
    for name, expiry in state.loaded.items():
        m = state.models[name]
        expires = rfc3339(int(expiry * 1e9)) if expiry != FOREVER else "2318-08-05T12:00:00.000000000Z"
        models.append(
            {
                "name": m.name,
                "model": m.name,
                "size": m.size + 300_000_000,
                "digest": m.digest,
                "details": m.details(),
                "expires_at": expires,
                "size_vram": m.size + 300_000_000,
                "context_length": 2048 if m.embedding_only else 4096,
            }
        )
    return JSONResponse({"models": models})


@endpoint()
async def show(request: Request, state: StandinState, entry: dict[str, Any]) -> Response:
    """POST /api/show: details and capabilities of one model."""
    body = await read_body(request)
    info = lookup(state, body.get("model") or body.get("name"))
    entry["model"] = info.name
    arch = info.family.replace("-", "_")
    return JSONResponse(
        {
            "license": "",
            "modelfile": f"FROM {info.name}\n",
            "parameters": "",
            "template": "{{ .Prompt }}",
            "details": info.details(),
            "model_info": {"general.architecture": arch, f"{arch}.context_length": 131072},
            "capabilities": ["embedding"] if info.embedding_only else ["completion"],
            "modified_at": info.modified_at,
        }
    )


@endpoint()
async def chat(request: Request, state: StandinState, entry: dict[str, Any]) -> Response:
    """POST /api/chat: echo the last user message, NDJSON-streamed unless stream=false."""
    body = await read_body(request)
    info = lookup(state, body.get("model"))
    entry["model"] = info.name
    model = body["model"]
    if info.embedding_only:
        raise HTTPFail(400, f'"{model}" does not support chat')
    messages = body.get("messages") or []
    if not isinstance(messages, list):
        raise HTTPFail(400, "messages must be a list")
    keep_alive = body.get("keep_alive")
    cold = await state.touch(info, keep_alive)
    if not messages:  # Ollama's load/unload request
        reason = "unload" if parse_keep_alive(keep_alive) == 0 else "load"
        return JSONResponse(
            {
                "model": model,
                "created_at": now_rfc3339(),
                "message": {"role": "assistant", "content": ""},
                "done_reason": reason,
                "done": True,
            }
        )
    prompt = last_user_text(messages)
    entry["prompt"] = prompt
    text = reply_text(state.node, prompt, body.get("format") not in (None, ""))
    pieces = split_chunks(text)
    prompt_tokens = sum(count_tokens(message_text(m.get("content"))) for m in messages if isinstance(m, dict))
    final = {"done_reason": "stop", "done": True, **durations(state, cold, prompt_tokens, len(pieces))}

    if body.get("stream", True) is False:
        await asyncio.sleep(state.chunk_delay * len(pieces))
        return JSONResponse(
            {
                "model": model,
                "created_at": now_rfc3339(),
                "message": {"role": "assistant", "content": text},
                **final,
            }
        )

    async def lines() -> AsyncIterator[dict[str, Any]]:
        for i, piece in enumerate(pieces):
            if i:
                await asyncio.sleep(state.chunk_delay)
            yield {
                "model": model,
                "created_at": now_rfc3339(),
                "message": {"role": "assistant", "content": piece},
                "done": False,
            }
        await asyncio.sleep(state.chunk_delay)
        yield {"model": model, "created_at": now_rfc3339(), "message": {"role": "assistant", "content": ""}, **final}

    return ndjson_stream(lines())


@endpoint()
async def generate(request: Request, state: StandinState, entry: dict[str, Any]) -> Response:
    """POST /api/generate: like chat but with ``prompt`` in and ``response`` out."""
    body = await read_body(request)
    info = lookup(state, body.get("model"))
    entry["model"] = info.name
    model = body["model"]
    if info.embedding_only:
        raise HTTPFail(400, f'"{model}" does not support generate')
    keep_alive = body.get("keep_alive")
    cold = await state.touch(info, keep_alive)
    prompt = body.get("prompt") or ""
    if not prompt:  # Ollama's load/unload request
        reason = "unload" if parse_keep_alive(keep_alive) == 0 else "load"
        return JSONResponse(
            {"model": model, "created_at": now_rfc3339(), "response": "", "done": True, "done_reason": reason}
        )
    entry["prompt"] = prompt
    text = reply_text(state.node, prompt, body.get("format") not in (None, ""))
    pieces = split_chunks(text)
    context = [b for b in hashlib.sha256(text.encode()).digest()[:8]]
    final = {
        "done": True,
        "done_reason": "stop",
        "context": context,
        **durations(state, cold, count_tokens(prompt), len(pieces)),
    }

    if body.get("stream", True) is False:
        await asyncio.sleep(state.chunk_delay * len(pieces))
        return JSONResponse({"model": model, "created_at": now_rfc3339(), "response": text, **final})

    async def lines() -> AsyncIterator[dict[str, Any]]:
        for i, piece in enumerate(pieces):
            if i:
                await asyncio.sleep(state.chunk_delay)
            yield {"model": model, "created_at": now_rfc3339(), "response": piece, "done": False}
        await asyncio.sleep(state.chunk_delay)
        yield {"model": model, "created_at": now_rfc3339(), "response": "", **final}

    return ndjson_stream(lines())


def embed_inputs(value: Any) -> list[str]:
    """Normalise ``input`` (str, list of str, or token lists) to a list of strings."""
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        if value and all(isinstance(v, int) for v in value):
            return [" ".join(map(str, value))]
        return [v if isinstance(v, str) else json.dumps(v) for v in value]
    raise HTTPFail(400, "invalid input type")


@endpoint()
async def embed(request: Request, state: StandinState, entry: dict[str, Any]) -> Response:
    """POST /api/embed: one L2-normalized vector per input."""
    body = await read_body(request)
    info = lookup(state, body.get("model"))
    entry["model"] = info.name
    inputs = embed_inputs(body.get("input"))
    dims = int(body.get("dimensions") or EMBED_DIMS)
    cold = await state.touch(info, body.get("keep_alive"))
    counters = durations(state, cold, sum(count_tokens(t) for t in inputs), 0)
    return JSONResponse(
        {
            "model": body["model"],
            "embeddings": [embed_vector(info.name, t, dims) for t in inputs],
            "total_duration": counters["total_duration"],
            "load_duration": counters["load_duration"],
            "prompt_eval_count": counters["prompt_eval_count"],
        }
    )


@endpoint()
async def embeddings_legacy(request: Request, state: StandinState, entry: dict[str, Any]) -> Response:
    """POST /api/embeddings (deprecated): ``{model, prompt}`` -> ``{embedding}``, not normalized."""
    body = await read_body(request)
    info = lookup(state, body.get("model"))
    entry["model"] = info.name
    await state.touch(info, body.get("keep_alive"))
    prompt = body.get("prompt") or ""
    return JSONResponse({"embedding": embed_vector(info.name, prompt, EMBED_DIMS, normalize=False) if prompt else []})


# ---------------------------------------------------------------------------------------
# OpenAI-compatible API
# ---------------------------------------------------------------------------------------


@endpoint(openai=True)
async def openai_chat(request: Request, state: StandinState, entry: dict[str, Any]) -> Response:
    """POST /v1/chat/completions: chat.completion or SSE chat.completion.chunk events."""
    body = await read_body(request)
    info = lookup(state, body.get("model"))
    entry["model"] = info.name
    model = body["model"]
    if info.embedding_only:
        raise HTTPFail(400, f'"{model}" does not support chat')
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise HTTPFail(400, "[] is too short - 'messages'")
    await state.touch(info, None)
    prompt = last_user_text(messages)
    entry["prompt"] = prompt
    fmt = body.get("response_format") or {}
    json_mode = isinstance(fmt, dict) and fmt.get("type") in ("json_object", "json_schema")
    text = reply_text(state.node, prompt, json_mode)
    pieces = split_chunks(text)
    prompt_tokens = sum(count_tokens(message_text(m.get("content"))) for m in messages if isinstance(m, dict))
    usage = {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": len(pieces),
        "total_tokens": prompt_tokens + len(pieces),
    }
    completion_id = f"chatcmpl-{random.randint(100, 999)}"
    created = int(time.time())
    common = {"id": completion_id, "created": created, "model": model, "system_fingerprint": "fp_ollama"}

    if not body.get("stream", False):
        await asyncio.sleep(state.chunk_delay * len(pieces))
        return JSONResponse(
            {
                **common,
                "object": "chat.completion",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
                "usage": usage,
            }
        )

    include_usage = bool((body.get("stream_options") or {}).get("include_usage"))

    async def events() -> AsyncIterator[dict[str, Any]]:
        for i, piece in enumerate(pieces):
            if i:
                await asyncio.sleep(state.chunk_delay)
            yield {
                **common,
                "object": "chat.completion.chunk",
                "choices": [{"index": 0, "delta": {"role": "assistant", "content": piece}, "finish_reason": None}],
            }
        await asyncio.sleep(state.chunk_delay)
        yield {
            **common,
            "object": "chat.completion.chunk",
            "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": "stop"}],
        }
        if include_usage:
            yield {**common, "object": "chat.completion.chunk", "choices": [], "usage": usage}

    return sse_stream(events())


async def openai_models(request: Request) -> Response:
    """GET /v1/models: the on-disk models as an OpenAI model list."""
    state: StandinState = request.app.state.standin
    data = [
        {"id": m.name, "object": "model", "created": m.modified_ts, "owned_by": "library"}
        for m in state.models.values()
    ]
    return JSONResponse({"object": "list", "data": data})


async def openai_model(request: Request) -> Response:
    """GET /v1/models/{model}: one model, or an OpenAI-shaped 404."""
    state: StandinState = request.app.state.standin
    name = request.path_params["model"]
    info = state.find(name)
    if info is None:
        return error_response(404, f'model "{name}" not found', openai=True)
    return JSONResponse({"id": info.name, "object": "model", "created": info.modified_ts, "owned_by": "library"})


@endpoint(openai=True)
async def openai_embeddings(request: Request, state: StandinState, entry: dict[str, Any]) -> Response:
    """POST /v1/embeddings: OpenAI list of embeddings (floats, or base64 float32 if asked)."""
    body = await read_body(request)
    info = lookup(state, body.get("model"))
    entry["model"] = info.name
    inputs = embed_inputs(body.get("input"))
    if not inputs:
        raise HTTPFail(400, "invalid input")
    dims = int(body.get("dimensions") or EMBED_DIMS)
    await state.touch(info, None)
    as_base64 = body.get("encoding_format") == "base64"
    data = []
    for i, text in enumerate(inputs):
        vec = embed_vector(info.name, text, dims)
        value: Any = base64.b64encode(struct.pack(f"<{len(vec)}f", *vec)).decode() if as_base64 else vec
        data.append({"object": "embedding", "embedding": value, "index": i})
    tokens = sum(count_tokens(t) for t in inputs)
    return JSONResponse(
        {
            "object": "list",
            "data": data,
            "model": body["model"],
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
    )


async def standin_state(request: Request) -> Response:
    """GET /_standin/state: node, loaded models and the request log (test introspection)."""
    state: StandinState = request.app.state.standin
    return JSONResponse(
        {
            "node": state.node,
            "loaded": sorted(state.loaded),
            "fail_status": state.fail_status,
            "requests": state.requests,
        }
    )


# ---------------------------------------------------------------------------------------
# App factory and CLI
# ---------------------------------------------------------------------------------------


def _names(value: str | Iterable[str] | None) -> list[str]:
    """Accept a comma-separated string or an iterable of names."""
    if value is None:
        return []
    items = value.split(",") if isinstance(value, str) else list(value)
    return [normalize_model(v) for v in items if v and v.strip()]


def build_app(
    models: str | Iterable[str] = ("llama3.2:3b", "nomic-embed-text"),
    loaded: str | Iterable[str] = (),
    node: str = "ollama-standin",
    chunk_delay: float = 0.05,
    fail_status: int | None = None,
    *,
    load_delay: float = 0.0,
) -> Starlette:
    """Build the stand-in ASGI app; ``app.state.standin`` holds the mutable :class:`StandinState`."""
    catalogue = {name: ModelInfo.from_name(name) for name in _names(models)}
    state = StandinState(node=node, models=catalogue, chunk_delay=chunk_delay, fail_status=fail_status or None)
    state.load_delay = load_delay
    for name in _names(loaded):
        if name not in catalogue:
            raise ValueError(f"loaded model {name!r} is not in models {sorted(catalogue)}")
        state.loaded[name] = time.time() + DEFAULT_KEEP_ALIVE_S
    routes = [
        Route("/", root, methods=["GET", "HEAD"]),
        Route("/api/version", version, methods=["GET", "HEAD"]),
        Route("/api/tags", tags, methods=["GET", "HEAD"]),
        Route("/api/ps", ps, methods=["GET", "HEAD"]),
        Route("/api/show", show, methods=["POST"]),
        Route("/api/chat", chat, methods=["POST"]),
        Route("/api/generate", generate, methods=["POST"]),
        Route("/api/embed", embed, methods=["POST"]),
        Route("/api/embeddings", embeddings_legacy, methods=["POST"]),
        Route("/v1/chat/completions", openai_chat, methods=["POST"]),
        Route("/v1/models", openai_models, methods=["GET"]),
        Route("/v1/models/{model:path}", openai_model, methods=["GET"]),
        Route("/v1/embeddings", openai_embeddings, methods=["POST"]),
        Route("/_standin/state", standin_state, methods=["GET"]),
    ]
    app = Starlette(routes=routes)
    app.state.standin = state
    return app


def main(argv: list[str] | None = None) -> int:
    """Serve the stand-in with uvicorn; ``--port 0`` picks a free port and prints it."""
    import uvicorn

    parser = argparse.ArgumentParser(description="Ollama 0.12 stand-in for herd-mesh tests.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=11434)
    parser.add_argument("--models", default="llama3.2:3b,nomic-embed-text", help="comma-separated models on disk")
    parser.add_argument("--loaded", default="", help="comma-separated models loaded at start")
    parser.add_argument("--node", default=socket.gethostname(), help="name put into every reply")
    parser.add_argument("--fail-status", type=int, default=None, help="answer every POST with this status")
    parser.add_argument("--chunk-delay", type=float, default=0.05, help="seconds between stream chunks")
    parser.add_argument("--load-delay", type=float, default=0.0, help="seconds to 'load' a cold model")
    parser.add_argument("--log-level", default="warning")
    args = parser.parse_args(argv)

    app = build_app(
        args.models, args.loaded, args.node, args.chunk_delay, args.fail_status, load_delay=args.load_delay
    )
    family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((args.host, args.port))
    sock.listen(128)
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if family == socket.AF_INET6 else host
    print(f"OLLAMA_STANDIN_LISTENING http://{shown}:{port}", flush=True)
    config = uvicorn.Config(app, log_level=args.log_level, access_log=False)
    server = uvicorn.Server(config)
    server.run(sockets=[sock])
    return 0


if __name__ == "__main__":
    sys.exit(main())
