"""Stand-in for an Ollama 0.14 server: native ``/api/*``, OpenAI-compatible ``/v1/*``, Anthropic ``/v1/messages``.

Ollama cannot run on the Linux CI box, so peers are tested against this Starlette app.
Its JSON is shaped like real Ollama (read from the v0.14.3 sources) so the official ``ollama``,
``openai`` and ``anthropic`` PyPI clients parse it. Replies are deterministic and name the node
that produced them (``"[NODE] echo: <last user message>"``) so routing tests can see who answered.

Run it as a process::

    python tests/standins/ollama_standin.py --host 127.0.0.1 --port 0 \\
        --models llama3.2:3b,nomic-embed-text --loaded llama3.2:3b --node mac-a

``--port 0`` binds a free port; the first stdout line is then
``OLLAMA_STANDIN_LISTENING http://HOST:PORT`` (flushed), which tests can read.
Or in-process: ``build_app(models, loaded, node, chunk_delay, fail_status, **options)``; the
returned app's ``app.state.standin`` (a :class:`StandinState`) can be changed at runtime
(e.g. ``fail_status``, ``memory_bytes``) and records every request in ``requests``.

Endpoints: ``/``, ``/api/version``, ``/api/tags``, ``/api/ps``, ``/api/show``, ``/api/chat``,
``/api/generate``, ``/api/embed``, ``/api/embeddings``, ``/api/pull``, ``DELETE /api/delete``,
``/api/copy``, ``/api/create``, ``/v1/chat/completions``, ``/v1/completions``, ``/v1/embeddings``,
``/v1/models[/{model}]``, ``/v1/responses`` (stateless), ``/v1/messages`` (Anthropic), and
``/_standin/state`` (introspection, not Ollama's).

Where Ollama is inconvenient, so is the stand-in:

* Errors come in each API's own shape: ``{"error": "..."}`` natively; ``{"error": {"message", "type",
  ...}}`` under ``/v1`` (type ``api_error`` for anything the handler refused, even a 404, as Ollama's
  writer does); ``{"type": "error", "error": {"type", "message"}, "request_id"}`` for ``/v1/messages``.
* Anthropic answers have no ``stop_sequence`` key and no ``ping`` event, tool ids are ``call_...`` and a
  tool's arguments arrive in one ``input_json_delta`` (that is what Ollama 0.14 sends).
* Scheduling (``server/sched.go``): a model is loaded on first use (``--cold-load-seconds``, shown in
  ``/api/ps`` while it loads, reported as ``load_duration``); at most ``--max-loaded`` models (Ollama's
  default 3) and, with ``--memory-gb``, their ``size`` must fit the budget. To make room it unloads idle
  models first, in Ollama's order (shortest keep-alive first, then model blob path - not LRU), and else waits
  for a busy one to finish; one such decision at a time, so a cold load queues behind it. A model larger than
  the whole budget fails with ``model requires more system memory (X GiB) than is available (Y GiB)`` (500).
  ``--fail-loads N`` makes the first N loads fail with ``llama runner process has terminated: exit status 2``.
* ``/api/pull`` streams Ollama's NDJSON progress (``--pull-seconds`` for the big layer); a name containing
  ``doesnotexist`` fails with ``pull model manifest: file does not exist`` (in the stream after ``pulling
  manifest``, or 500 with ``stream: false``).
* Contention (``--contention-file``, env ``HERD_STANDIN_CONTENTION``): each running generation is listed in
  the shared file described in ``contention.py`` (kind ``--contention-kind``, default ``llm``) and its token
  pace is ``chunk_delay * (1 + k * jobs of other kinds)`` with k = ``--contention-factor``.

The deterministic "model": with ``tools`` in the request it calls a tool when the last user message
contains ``use tool`` (the tool named after it, else the first) or when ``tool_choice`` demands one
(Anthropic ``any``/``tool``, OpenAI ``required``/function); arguments are filled from the tool's JSON
schema (strings get the user's text). After a tool result it answers ``[NODE] tool result: <content>``.
A positive ``max_tokens``/``num_predict``/``max_output_tokens`` cuts the answer (``done_reason`` length).
Deliberate differences from Ollama: ``keep_alive: 0`` hides a model from ``/api/ps`` at once rather than
after the request; native 404s say ``model "x" not found, try pulling it first`` (Ollama 0.14 says
``model 'x' not found``, which the new endpoints use); ``/api/version`` answers ``--ollama-version``
(default 0.12.0); ``OLLAMA_NUM_PARALLEL`` (requests to one model queue in Ollama) is not modelled.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import dataclasses
import hashlib
import json
import math
import os
import random
import re
import socket
import string
import struct
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

# as `mflux_standin.py` does: its helpers are found next to it whether it runs as a script or is imported
sys.path.insert(0, str(Path(__file__).resolve().parent))
import contention  # noqa: E402
from ollama_compat import (  # noqa: E402
    AnthropicStreamConverter,
    BindError,
    ResponsesStreamConverter,
    anthropic_error,
    anthropic_message_id,
    check_field,
    complete_chunks,
    completion_id,
    from_messages_request,
    from_responses_request,
    openai_error,
    responses_ids,
    to_completion,
    to_messages_response,
    to_response,
    validate_messages_request,
)

OLLAMA_VERSION = "0.12.0"
DEFAULT_KEEP_ALIVE_S = 300.0
DEFAULT_MAX_LOADED = 3  # Ollama's defaultModelsPerGPU with one GPU
EMBED_DIMS = 8
FOREVER = float("inf")
POLL_S = 0.005  # how often a waiting request looks at the scheduler again
PULL_TICK_S = 0.06  # Ollama reports download progress every 60 ms
RUNTIME_OVERHEAD = 300_000_000  # bytes a loaded model takes beyond its weights (KV cache, graph)
GIB = 1 << 30
LOAD_FAIL_MESSAGE = "llama runner process has terminated: exit status 2"
TOOL_TRIGGER = "use tool"

# ---------------------------------------------------------------------------------------
# Model catalogue
# ---------------------------------------------------------------------------------------


def normalize_model(name: str) -> str:
    """Ollama's name rule: a model without a tag means ``:latest``."""
    name = name.strip()
    last = name.rsplit("/", 1)[-1]
    return name if ":" in last else f"{name}:latest"


_NAME_PART = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,79}"
_NAME_RE = re.compile(rf"(?:[A-Za-z0-9][A-Za-z0-9.-]*(?::\d+)?/)?(?:{_NAME_PART}/)?{_NAME_PART}(?::{_NAME_PART})?")


def valid_name(name: Any) -> bool:
    """``model.ParseName(name).IsValid()``, roughly: ``[host/][namespace/]model[:tag]``."""
    return isinstance(name, str) and bool(_NAME_RE.fullmatch(name.strip())) and bool(name.strip())


def go_quote(value: str) -> str:
    """Go's ``%q``."""
    return json.dumps(value)


class Layer(NamedTuple):
    """One blob of a model's manifest."""

    media_type: str
    digest: str
    size: int


SMALL_LAYERS = (
    ("application/vnd.ollama.image.template", 1_300),
    ("application/vnd.ollama.image.license", 7_600),
    ("application/vnd.ollama.image.params", 90),
    ("application/vnd.docker.container.image.v1+json", 480),  # the manifest's config blob, always last
)


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
    origin: str = ""  # the model whose blobs this one shares (copies and creates); "" = its own

    @classmethod
    def from_name(cls, name: str) -> ModelInfo:
        """Guess plausible metadata (family, size, quantization) from the model name."""
        name = normalize_model(name)
        base = name.rsplit("/", 1)[-1].split(":", 1)[0].lower()
        embedding_only = "embed" in base or base.startswith(("bge", "all-minilm", "mxbai"))
        match = re.search(r"(\d+(?:\.\d+)?)([bm])", name.rsplit(":", 1)[1].lower())
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

    @property
    def memory(self) -> int:
        """Bytes it takes once loaded (``size`` in /api/ps)."""
        return self.size + RUNTIME_OVERHEAD

    def layers(self) -> list[Layer]:
        """The manifest's blobs: the weights first, the config last; they add up to ``size``."""
        base = self.origin or self.name
        small = []
        for media_type, size in SMALL_LAYERS:
            digest = "sha256:" + hashlib.sha256(f"{base}\x00{media_type}".encode()).hexdigest()
            small.append(Layer(media_type, digest, size + int(digest[-4:], 16) % 200))
        weights = hashlib.sha256(f"{base}\x00application/vnd.ollama.image.model".encode()).hexdigest()
        model = Layer(
            "application/vnd.ollama.image.model", "sha256:" + weights, self.size - sum(s for *_, s in small)
        )
        return [model, *small]

    def renamed(self, name: str, digest: str | None = None) -> ModelInfo:
        """This model under another name, written now (a copy, a create, a pull)."""
        now = time.time_ns()
        return dataclasses.replace(
            self,
            name=name,
            digest=digest or self.digest,
            modified_at=rfc3339(now),
            modified_ts=now // 10**9,
            origin=self.origin or self.name,
        )


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


def human_bytes(size: int) -> str:
    """Go's ``format.HumanBytes2``."""
    for unit, name in ((GIB, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")):
        if size >= unit:
            return f"{size / unit:.1f} {name}"
    return f"{size} B"


# ---------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------


class HTTPFail(Exception):
    """An error answer. ``middleware``: refused while binding the request (only those get a specific OpenAI
    error type; Ollama's /v1 writer turns every handler error into ``api_error``)."""

    def __init__(self, status: int, message: str, *, middleware: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.middleware = middleware


def error_response(status: int, message: str, shape: str = "ollama", middleware: bool = False) -> JSONResponse:
    """An error body in the API family's shape: ``ollama``, ``openai`` or ``anthropic``."""
    if shape == "openai":
        body = openai_error(status if middleware else 500, message)
    elif shape == "anthropic":
        body = anthropic_error(status, message)
    else:
        body = {"error": message}
    return JSONResponse(body, status_code=status)


FAIL_MESSAGES = {
    503: "server busy, please try again.  maximum pending requests exceeded",
    500: LOAD_FAIL_MESSAGE,
    429: "too many requests",
}

# ---------------------------------------------------------------------------------------
# State and scheduler
# ---------------------------------------------------------------------------------------


@dataclass
class StandinState:
    """Mutable server state shared by the handlers; tests may poke at it in-process."""

    node: str
    models: dict[str, ModelInfo]
    loaded: dict[str, float] = field(default_factory=dict)  # name -> expiry (epoch seconds, inf = forever)
    chunk_delay: float = 0.05
    fail_status: int | None = None
    load_delay: float = 0.0  # --cold-load-seconds
    requests: list[dict[str, Any]] = field(default_factory=list)
    version: str = OLLAMA_VERSION
    pull_seconds: float = 0.5
    memory_bytes: int | None = None  # None: no memory limit
    max_loaded: int = DEFAULT_MAX_LOADED  # 0: no limit
    fail_loads: int = 0
    load_attempts: int = 0
    contention_file: str | None = None
    contention_factor: float = 1.0
    contention_kind: str = "llm"
    active: dict[str, int] = field(default_factory=dict)  # name -> requests using it now
    sessions: dict[str, float] = field(default_factory=dict)  # name -> keep-alive seconds (eviction order)
    loading: set[str] = field(default_factory=set)
    scheduling: bool = False  # one scheduling decision at a time, like Ollama's processPending
    gone: dict[str, ModelInfo] = field(default_factory=dict)  # deleted from disk while still loaded
    evictions: list[str] = field(default_factory=list)  # names unloaded to make room, in order

    def find(self, name: str | None) -> ModelInfo | None:
        """Look a requested model up by Ollama's name rules."""
        return self.models.get(normalize_model(name)) if name else None

    def info_of(self, name: str) -> ModelInfo:
        """Metadata of a model on disk or still loaded after its deletion."""
        return self.models.get(name) or self.gone.get(name) or ModelInfo.from_name(name)

    def resident(self) -> set[str]:
        """Models in memory: listed in /api/ps, being loaded, or serving a request."""
        return set(self.loaded) | self.loading | {name for name, count in self.active.items() if count > 0}

    def memory_used(self, exclude: str = "") -> int:
        """Bytes taken by resident models."""
        return sum(self.info_of(name).memory for name in self.resident() if name != exclude)

    def expire(self) -> None:
        """Drop idle models whose keep-alive ran out, like Ollama's scheduler."""
        now = time.time()
        for name in [n for n, exp in self.loaded.items() if exp <= now]:
            if not self.active.get(name) and name not in self.loading:
                self.unload(name)

    def unload(self, name: str) -> None:
        """Take a model out of memory."""
        self.loaded.pop(name, None)
        self.sessions.pop(name, None)
        self.gone.pop(name, None)

    def _use(self, name: str, secs: float | None) -> None:
        """Count a request on a resident model and restart its keep-alive."""
        self.active[name] = self.active.get(name, 0) + 1
        if secs is not None or name not in self.sessions:
            self.sessions[name] = DEFAULT_KEEP_ALIVE_S if secs is None else secs
        session = self.sessions[name]
        if session == 0:
            self.loaded.pop(name, None)  # see the module docstring: hidden at once
        else:
            self.loaded[name] = time.time() + session if session != FOREVER else FOREVER

    def release(self, name: str) -> None:
        """A request on ``name`` ended: its keep-alive starts now (or it unloads, for keep_alive 0)."""
        count = self.active.get(name, 0) - 1
        if count > 0:
            self.active[name] = count
            return
        self.active.pop(name, None)
        session = self.sessions.get(name, DEFAULT_KEEP_ALIVE_S)
        if session == 0:
            self.unload(name)
        elif name in self.loaded:
            self.loaded[name] = time.time() + session if session != FOREVER else FOREVER

    def _victim(self, names: list[str]) -> str:
        """``findRunnerToUnload``: idle first, by keep-alive (forever last) then blob path; else the first."""

        def order(name: str) -> tuple[float, str]:
            return self.sessions.get(name, DEFAULT_KEEP_ALIVE_S), self.info_of(name).layers()[0].digest

        ranked = sorted(names, key=order)
        for name in ranked:
            if not self.active.get(name) and name not in self.loading:
                return name
        return ranked[0]

    async def _make_room(self, info: ModelInfo) -> None:
        """Unload models until ``info`` fits (count and memory), or fail when it never can."""
        while True:
            self.expire()
            others = sorted(self.resident() - {info.name})
            if not others:
                if self.memory_bytes is not None and info.memory > self.memory_bytes:
                    raise HTTPFail(
                        500,
                        f"model requires more system memory ({human_bytes(info.memory)}) "
                        f"than is available ({human_bytes(self.memory_bytes)})",
                    )
                return
            full = self.max_loaded > 0 and len(others) >= self.max_loaded
            short = self.memory_bytes is not None and self.memory_used(info.name) + info.memory > self.memory_bytes
            if not (full or short):
                return
            victim = self._victim(others)
            while self.active.get(victim) or victim in self.loading:  # busy: wait for it to finish
                await asyncio.sleep(POLL_S)
            self.unload(victim)
            self.evictions.append(victim)

    async def acquire(self, info: ModelInfo, keep_alive: Any) -> float | None:
        """Use a model, loading it first if needed. Return None if it was ready, else seconds waited for it.

        Raises :class:`HTTPFail` 500 when the load fails (memory, ``fail_loads``). Pair with :meth:`release`.
        """
        secs = parse_keep_alive(keep_alive)
        name = info.name
        started = time.monotonic()
        waited = False
        while True:
            self.expire()
            if name in self.loading or (self.scheduling and name not in self.resident()):
                waited = True  # someone is loading it, or deciding what to load: queue
                await asyncio.sleep(POLL_S)
                continue
            if name in self.resident():
                self._use(name, secs)
                return time.monotonic() - started if waited else None
            self.scheduling = True
            try:
                await self._make_room(info)
                self.loading.add(name)
                self._use(name, secs)
            finally:
                self.scheduling = False
            break
        try:
            if self.load_delay > 0:
                await asyncio.sleep(self.load_delay)
            self.load_attempts += 1
            if self.load_attempts <= self.fail_loads:
                raise HTTPFail(500, LOAD_FAIL_MESSAGE)
        except BaseException:
            self.loading.discard(name)
            self.active[name] -= 1
            if not self.active[name]:
                del self.active[name]
            self.unload(name)
            raise
        self.loading.discard(name)
        return time.monotonic() - started

    def slowdown(self) -> float:
        """The contention pace multiplier right now."""
        return contention.slowdown(self.contention_file, self.contention_kind, self.contention_factor)


class Job:
    """One request's use of a model: the scheduler lease, the contention entry and the token pace."""

    def __init__(self, state: StandinState, info: ModelInfo, entry: dict[str, Any]) -> None:
        self.state, self.info, self.entry = state, info, entry
        self.load_s: float | None = None
        self.acquired = False
        self.finished = False
        self.registration: str | None = None
        self.eval_start = 0.0

    async def start(self, keep_alive: Any) -> Job:
        """Get the model (loading it if needed)."""
        self.load_s = await self.state.acquire(self.info, keep_alive)
        self.acquired = True
        return self

    def generating(self) -> None:
        """Generation starts: list it in the contention file."""
        state = self.state
        self.eval_start = time.monotonic()
        if state.contention_file and self.registration is None:
            self.registration = contention.register(
                state.contention_file,
                state.contention_kind,
                what=self.entry.get("path"),
                model=self.info.name,
                node=state.node,
            )

    async def step(self) -> None:
        """Wait one token's time, slowed by contention."""
        delay = self.state.chunk_delay
        if delay > 0:
            await asyncio.sleep(delay * self.state.slowdown())

    def finish(self) -> None:
        """Release the model and the contention entry (idempotent)."""
        if self.finished:
            return
        self.finished = True
        if self.registration and self.state.contention_file:
            contention.unregister(self.state.contention_file, self.registration)
        if self.acquired:
            self.state.release(self.info.name)

    def counters(self, prompt_tokens: int, eval_tokens: int) -> dict[str, int]:
        """Ollama's final-chunk counters (nanoseconds); load and eval times are the ones spent."""
        state = self.state
        if self.load_s is None:
            load = 0.012
        elif state.load_delay <= 0 and self.load_s < 0.05:
            load = 0.8  # an instant load still looks like one
        else:
            load = self.load_s
        spent = time.monotonic() - self.eval_start if self.eval_start else 0.0
        eval_ns = int(max(spent, max(state.chunk_delay, 0.01) * eval_tokens) * 1e9)
        load_ns = int(load * 1e9)
        prompt_ns = 2_000_000 * prompt_tokens
        return {
            "total_duration": load_ns + prompt_ns + eval_ns,
            "load_duration": load_ns,
            "prompt_eval_count": prompt_tokens,
            "prompt_eval_duration": prompt_ns,
            "eval_count": eval_tokens,
            "eval_duration": eval_ns,
        }


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


def tool_specs(tools: Any) -> list[tuple[str, dict[str, Any]]]:
    """``(name, JSON schema)`` of each tool, from Ollama/OpenAI-chat, Responses or Anthropic definitions."""
    specs = []
    for tool in tools if isinstance(tools, list) else []:
        if not isinstance(tool, dict):
            continue
        fn = tool.get("function") if isinstance(tool.get("function"), dict) else tool
        schema = fn.get("parameters") or fn.get("input_schema") or {}
        if isinstance(fn.get("name"), str):
            specs.append((fn["name"], schema if isinstance(schema, dict) else {}))
    return specs


def forced_tool(choice: Any) -> str | None:
    """The tool a ``tool_choice`` demands: a name, ``""`` for any, None when the model may choose."""
    if isinstance(choice, str):
        return "" if choice in ("required", "any") else None
    if isinstance(choice, dict):
        if choice.get("type") in ("any", "required"):
            return ""
        name = choice.get("name") or (choice.get("function") or {}).get("name")
        if choice.get("type") in ("tool", "function") and isinstance(name, str):
            return name
    return None


def tool_arguments(schema: dict[str, Any], text: str) -> dict[str, Any]:
    """Arguments for a tool call, filled from the schema: strings get ``text``, numbers 1, booleans true."""
    props = schema.get("properties") if isinstance(schema.get("properties"), dict) else {}
    required = schema.get("required")
    names = required if isinstance(required, list) and required else list(props)
    args: dict[str, Any] = {}
    for name in names:
        prop = props.get(name) if isinstance(props.get(name), dict) else {}
        if isinstance(prop.get("enum"), list) and prop["enum"]:
            args[name] = prop["enum"][0]
            continue
        defaults = {"integer": 1, "number": 1, "boolean": True, "array": [], "object": {}}
        args[name] = defaults.get(prop.get("type"), text)
    return args


def tool_call_id() -> str:
    """``toolCallId``: ``call_`` and 8 lowercase letters or digits."""
    return "call_" + "".join(random.choices(string.ascii_lowercase + string.digits, k=8))


def plan_reply(
    node: str,
    messages: list[dict[str, Any]],
    tools: list[tuple[str, dict[str, Any]]],
    force: str | None,
    json_mode: bool,
) -> tuple[str, list[dict[str, Any]]]:
    """What the deterministic model answers: text, or tool calls (native shape)."""
    last = messages[-1] if messages else {}
    if last.get("role") == "tool":
        return f"[{node}] tool result: {message_text(last.get('content'))}", []
    prompt = last_user_text(messages)
    wants = TOOL_TRIGGER in prompt.lower()
    if tools and (force is not None or wants):
        names = [name for name, _ in tools]
        chosen = force if force in names else None
        if chosen is None:
            after = prompt.lower().split(TOOL_TRIGGER, 1)[-1] if wants else ""
            chosen = next((name for name in names if name.lower() in after), names[0])
        schema = dict(tools)[chosen]
        call = {
            "id": tool_call_id(),
            "function": {"index": 0, "name": chosen, "arguments": tool_arguments(schema, prompt)},
        }
        return "", [call]
    return reply_text(node, prompt, json_mode), []


def positive(value: Any) -> int | None:
    """A token limit when it is a positive number."""
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0 else None


async def chat_chunks(
    job: Job,
    model: str,
    text: str,
    tool_calls: list[dict[str, Any]],
    prompt_tokens: int,
    num_predict: int | None = None,
) -> AsyncIterator[dict[str, Any]]:
    """Native /api/chat stream objects for one answer; the job is finished when the stream ends."""
    try:
        job.generating()
        pieces = split_chunks(text) if text or not tool_calls else []
        reason = "stop"
        if num_predict is not None and len(pieces) > num_predict:
            pieces, reason = pieces[:num_predict], "length"
        items: list[dict[str, Any]] = [{"role": "assistant", "content": piece} for piece in pieces]
        if tool_calls:
            items.append({"role": "assistant", "content": "", "tool_calls": tool_calls})
        eval_tokens = len(pieces) + sum(count_tokens(json.dumps(c["function"]["arguments"])) for c in tool_calls)
        for i, message in enumerate(items):
            if i:
                await job.step()
            yield {"model": model, "created_at": now_rfc3339(), "message": message, "done": False}
        await job.step()
        final = {"done_reason": reason, "done": True, **job.counters(prompt_tokens, eval_tokens)}
        yield {"model": model, "created_at": now_rfc3339(), "message": {"role": "assistant", "content": ""}, **final}
    finally:
        job.finish()


async def collect_chat(chunks: AsyncIterator[dict[str, Any]]) -> dict[str, Any]:
    """The non-streamed answer: Ollama aggregates the stream into one object."""
    content, calls, final = "", [], {}
    async for chunk in chunks:
        content += chunk["message"].get("content", "")
        calls += chunk["message"].get("tool_calls", [])
        if chunk.get("done"):
            final = chunk
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if calls:
        message["tool_calls"] = calls
    return {**final, "message": message}


# ---------------------------------------------------------------------------------------
# Request plumbing
# ---------------------------------------------------------------------------------------


async def read_body(request: Request, *, empty: str | None = None, middleware: bool = False) -> dict[str, Any]:
    """Parse a JSON object body, answering 400 like Ollama for anything else (``empty``: error for no body)."""
    raw = await request.body()
    if not raw.strip() and empty is not None:
        raise HTTPFail(400, empty, middleware=middleware)
    try:
        body = json.loads(raw or b"{}")
    except json.JSONDecodeError as exc:
        raise HTTPFail(400, f"invalid character in request body: {exc.msg}", middleware=middleware) from None
    if not isinstance(body, dict):
        raise HTTPFail(400, "json: cannot unmarshal request body into a JSON object", middleware=middleware)
    return body


def lookup(state: StandinState, name: Any) -> ModelInfo:
    """Resolve the request's model or raise the stand-in's native 400/404."""
    if not name or not isinstance(name, str):
        raise HTTPFail(400, "model is required")
    info = state.find(name)
    if info is None:
        raise HTTPFail(404, f'model "{name}" not found, try pulling it first')
    return info


def lookup_chat(state: StandinState, name: Any) -> ModelInfo:
    """``ChatHandler``'s checks, as the compatibility endpoints meet them."""
    if not valid_name(name):
        raise HTTPFail(400, "model is required")
    info = state.find(name)
    if info is None:
        raise HTTPFail(404, f"model '{name}' not found")
    if info.embedding_only:
        raise HTTPFail(400, f"{go_quote(name)} does not support chat")
    return info


def lookup_generate(state: StandinState, name: Any) -> ModelInfo:
    """``GenerateHandler``'s checks (an empty model is a 404 there)."""
    info = state.find(name) if valid_name(name) else None
    if info is None:
        raise HTTPFail(404, f"model '{name or ''}' not found")
    if info.embedding_only:
        raise HTTPFail(400, f"{go_quote(name)} does not support generate")
    return info


Handler = Callable[[Request, "StandinState", dict[str, Any]], Awaitable[Response]]
Endpoint = Callable[[Request], Awaitable[Response]]


def endpoint(shape: str = "ollama") -> Callable[[Handler], Endpoint]:
    """Decorate a handler with fail injection, request logging and error mapping (``shape``: error format)."""

    def wrap(func: Handler) -> Endpoint:
        async def handler(request: Request) -> Response:
            state: StandinState = request.app.state.standin
            entry: dict[str, Any] = {"method": request.method, "path": request.url.path, "time": time.time()}
            state.requests.append(entry)
            if request.method == "POST" and state.fail_status:
                message = FAIL_MESSAGES.get(state.fail_status, f"stand-in {state.node} failing on purpose")
                entry["status"] = state.fail_status
                return error_response(state.fail_status, message, shape)
            try:
                response: Response = await func(request, state, entry)
            except HTTPFail as fail:
                entry["status"] = fail.status
                return error_response(fail.status, fail.message, shape, fail.middleware)
            except (AttributeError, TypeError) as exc:  # a field of the wrong type: Go's JSON binding answers 400
                entry["status"] = 400
                return error_response(400, f"json: cannot unmarshal request body: {exc}", shape, True)
            entry["status"] = response.status_code
            return response

        return handler

    return wrap


class JobStreamingResponse(StreamingResponse):
    """A streamed answer that finishes its job however the stream ends (even if it never started)."""

    def __init__(
        self,
        content: AsyncIterator[bytes],
        media_type: str,
        job: Job | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(content, media_type=media_type, headers=headers)
        self.job = job

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            if self.job is not None:
                self.job.finish()


def ndjson_stream(lines: AsyncIterator[dict[str, Any]], job: Job | None = None) -> StreamingResponse:
    """Ollama's streaming content type and framing: one JSON object per line."""

    async def body() -> AsyncIterator[bytes]:
        async for obj in lines:
            yield (json.dumps(obj) + "\n").encode()

    return JobStreamingResponse(body(), "application/x-ndjson", job)


def sse_stream(events: AsyncIterator[dict[str, Any]], job: Job | None = None) -> StreamingResponse:
    """OpenAI-style server-sent events ending with ``data: [DONE]``."""

    async def body() -> AsyncIterator[bytes]:
        async for obj in events:
            yield f"data: {json.dumps(obj)}\n\n".encode()
        yield b"data: [DONE]\n\n"

    return JobStreamingResponse(body(), "text/event-stream", job)


def named_sse_stream(
    events: AsyncIterator[tuple[str, dict[str, Any]]], job: Job, sort_keys: bool = False
) -> StreamingResponse:
    """``event: <type>\\ndata: <json>`` frames (Anthropic and Responses streams), no terminator.
    ``sort_keys``: the payload is a Go map, which encoding/json writes in key order."""

    async def body() -> AsyncIterator[bytes]:
        async for kind, data in events:
            payload = json.dumps(data, separators=(",", ":"), sort_keys=sort_keys)
            yield f"event: {kind}\ndata: {payload}\n\n".encode()

    return JobStreamingResponse(body(), "text/event-stream", job, headers={"Cache-Control": "no-cache"})


# ---------------------------------------------------------------------------------------
# Native API
# ---------------------------------------------------------------------------------------


async def root(request: Request) -> Response:
    """Ollama's liveness answer."""
    return PlainTextResponse("Ollama is running")


async def api_version(request: Request) -> Response:
    """GET /api/version."""
    state: StandinState = request.app.state.standin
    return JSONResponse({"version": state.version})


def on_disk(state: StandinState) -> list[ModelInfo]:
    """Models on disk, most recently modified first (as Ollama lists them)."""
    return sorted(state.models.values(), key=lambda m: -m.modified_ts)


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
        for m in on_disk(state)
    ]
    return JSONResponse({"models": models})


async def ps(request: Request) -> Response:
    """GET /api/ps: models in memory (loading ones too), longest time left first, with expiry and VRAM use."""
    state: StandinState = request.app.state.standin
    state.expire()
    models = []
    for name, expiry in sorted(state.loaded.items(), key=lambda item: -item[1]):
        m = state.info_of(name)
        expires = rfc3339(int(expiry * 1e9)) if expiry != FOREVER else "2318-08-05T12:00:00.000000000Z"
        models.append(
            {
                "name": m.name,
                "model": m.name,
                "size": m.memory,
                "digest": m.digest,
                "details": m.details(),
                "expires_at": expires,
                "size_vram": m.memory,
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
            "capabilities": ["embedding"] if info.embedding_only else ["completion", "tools"],
            "modified_at": info.modified_at,
        }
    )


async def load_or_unload(
    state: StandinState, info: ModelInfo, entry: dict[str, Any], keep_alive: Any, extra: dict[str, Any]
) -> Response:
    """A chat/generate request without input: load the model, or unload it with ``keep_alive: 0``."""
    if parse_keep_alive(keep_alive) == 0:  # expireRunner: now if idle, else when its requests end
        if info.name in state.resident():
            state.sessions[info.name] = 0
            if not state.active.get(info.name) and info.name not in state.loading:
                state.unload(info.name)
        reason = "unload"
    else:
        job = await Job(state, info, entry).start(keep_alive)
        job.finish()
        reason = "load"
    return JSONResponse(
        {"model": extra.pop("model"), "created_at": now_rfc3339(), **extra, "done_reason": reason, "done": True}
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
    if not messages:  # Ollama's load/unload request
        empty = {"model": model, "message": {"role": "assistant", "content": ""}}
        return await load_or_unload(state, info, entry, keep_alive, empty)
    entry["prompt"] = last_user_text(messages)
    json_mode = body.get("format") not in (None, "")
    text, calls = plan_reply(state.node, messages, tool_specs(body.get("tools")), None, json_mode)
    prompt_tokens = sum(count_tokens(message_text(m.get("content"))) for m in messages if isinstance(m, dict))
    num_predict = positive((body.get("options") or {}).get("num_predict"))
    job = await Job(state, info, entry).start(keep_alive)
    chunks = chat_chunks(job, model, text, calls, prompt_tokens, num_predict)
    if body.get("stream", True) is False:
        return JSONResponse(await collect_chat(chunks))
    return ndjson_stream(chunks, job)


async def generate_chunks(
    job: Job, model: str, text: str, prompt_tokens: int, num_predict: int | None = None
) -> AsyncIterator[dict[str, Any]]:
    """Native /api/generate stream objects for one answer; the job is finished when the stream ends."""
    try:
        job.generating()
        pieces = split_chunks(text)
        reason = "stop"
        if num_predict is not None and len(pieces) > num_predict:
            pieces, reason = pieces[:num_predict], "length"
        for i, piece in enumerate(pieces):
            if i:
                await job.step()
            yield {"model": model, "created_at": now_rfc3339(), "response": piece, "done": False}
        await job.step()
        context = list(hashlib.sha256(text.encode()).digest()[:8])
        final = {"done": True, "done_reason": reason, "context": context, **job.counters(prompt_tokens, len(pieces))}
        yield {"model": model, "created_at": now_rfc3339(), "response": "", **final}
    finally:
        job.finish()


async def collect_generate(chunks: AsyncIterator[dict[str, Any]]) -> dict[str, Any]:
    """The non-streamed generate answer."""
    text, final = "", {}
    async for chunk in chunks:
        text += chunk["response"]
        if chunk.get("done"):
            final = chunk
    return {**final, "response": text}


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
    prompt = body.get("prompt") or ""
    if not prompt:  # Ollama's load/unload request
        return await load_or_unload(state, info, entry, keep_alive, {"model": model, "response": ""})
    entry["prompt"] = prompt
    text = reply_text(state.node, prompt, body.get("format") not in (None, ""))
    num_predict = positive((body.get("options") or {}).get("num_predict"))
    job = await Job(state, info, entry).start(keep_alive)
    chunks = generate_chunks(job, model, text, count_tokens(prompt), num_predict)
    if body.get("stream", True) is False:
        return JSONResponse(await collect_generate(chunks))
    return ndjson_stream(chunks, job)


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


async def embedding_job(state: StandinState, info: ModelInfo, entry: dict[str, Any], keep_alive: Any) -> Job:
    """Get the model for an embedding request and list it as running (the caller finishes the job)."""
    job = await Job(state, info, entry).start(keep_alive)
    job.generating()
    return job


@endpoint()
async def embed(request: Request, state: StandinState, entry: dict[str, Any]) -> Response:
    """POST /api/embed: one L2-normalized vector per input."""
    body = await read_body(request)
    info = lookup(state, body.get("model"))
    entry["model"] = info.name
    inputs = embed_inputs(body.get("input"))
    dims = int(body.get("dimensions") or EMBED_DIMS)
    job = await embedding_job(state, info, entry, body.get("keep_alive"))
    try:
        counters = job.counters(sum(count_tokens(t) for t in inputs), 0)
        vectors = [embed_vector(info.name, t, dims) for t in inputs]
    finally:
        job.finish()
    return JSONResponse(
        {
            "model": body["model"],
            "embeddings": vectors,
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
    (await embedding_job(state, info, entry, body.get("keep_alive"))).finish()
    prompt = body.get("prompt") or ""
    return JSONResponse({"embedding": embed_vector(info.name, prompt, EMBED_DIMS, normalize=False) if prompt else []})


# ---------------------------------------------------------------------------------------
# Model management: pull, delete, copy, create
# ---------------------------------------------------------------------------------------

Progress = AsyncIterator[dict[str, Any]]


def cannot_exist(name: str) -> bool:
    """Names the registry has no manifest for."""
    return "doesnotexist" in name.lower()


async def pull_progress(state: StandinState, name: str) -> Progress:
    """``PullModel``'s progress objects; an error is yielded as ``{"error": ...}`` and ends it."""
    yield {"status": "pulling manifest"}
    await asyncio.sleep(state.pull_seconds * 0.1)
    if cannot_exist(name):
        yield {"error": "pull model manifest: file does not exist"}
        return
    existing = state.models.get(name)
    info = existing or ModelInfo.from_name(name)
    layers = info.layers()
    big, small = layers[0], layers[1:]
    if existing is not None:  # every blob is there already: one complete line each
        for layer in layers:
            yield {
                "status": f"pulling {layer.digest[7:19]}",
                "digest": layer.digest,
                "total": layer.size,
                "completed": layer.size,
            }
    else:
        ticks = max(3, round(state.pull_seconds * 0.9 / PULL_TICK_S))
        for i in range(ticks + 1):
            if i:
                await asyncio.sleep(state.pull_seconds * 0.9 / ticks)
            line: dict[str, Any] = {"status": f"pulling {big.digest[7:19]}", "digest": big.digest, "total": big.size}
            if i:  # Go's omitempty: the first tick has nothing downloaded, so no "completed" key
                line["completed"] = big.size * i // ticks
            yield line
        for layer in small:
            yield {
                "status": f"pulling {layer.digest[7:19]}",
                "digest": layer.digest,
                "total": layer.size,
                "completed": layer.size,
            }
    yield {"status": "verifying sha256 digest"}
    yield {"status": "writing manifest"}
    state.models[name] = existing.renamed(name) if existing else info.renamed(name, info.digest)
    state.gone.pop(name, None)
    yield {"status": "success"}


async def progress_response(progress: Progress, stream: bool) -> Response:
    """Ollama's ``streamResponse``/``waitForStream``: an error before any line is an HTTP error, after it a
    ``{"error"}`` line; without streaming, the last progress object (or the error with its status)."""
    if not stream:
        latest: dict[str, Any] = {}
        async for item in progress:
            if "error" in item:
                return JSONResponse({"error": item["error"]}, status_code=item.get("status", 500))
            latest = item
        return JSONResponse(latest)
    first = await anext(progress, None)
    if first is not None and "error" in first:
        return JSONResponse({"error": first["error"]}, status_code=first.get("status", 500))

    async def lines() -> Progress:
        if first is None:
            return
        yield first
        async for item in progress:
            if "error" in item:
                yield {"error": item["error"]}
                return
            yield item

    return ndjson_stream(lines())


@endpoint()
async def pull(request: Request, state: StandinState, entry: dict[str, Any]) -> Response:
    """POST /api/pull ``{model|name, stream?, insecure?}``: download a model (NDJSON progress by default)."""
    body = await read_body(request, empty="missing request body")
    raw = body.get("model") or body.get("name") or ""
    if not valid_name(raw):
        raise HTTPFail(400, "invalid model name")
    name = normalize_model(raw)
    entry["model"] = name
    return await progress_response(pull_progress(state, name), body.get("stream") is not False)


@endpoint()
async def delete(request: Request, state: StandinState, entry: dict[str, Any]) -> Response:
    """DELETE /api/delete ``{model}``: 200 with an empty body (a loaded copy stays loaded, as in Ollama)."""
    body = await read_body(request, empty="missing request body")
    raw = body.get("model") or body.get("name") or ""
    if not valid_name(raw):
        raise HTTPFail(400, f"name {go_quote(raw)} is invalid")
    name = normalize_model(raw)
    entry["model"] = name
    info = state.models.pop(name, None)
    if info is None:
        raise HTTPFail(404, f"model '{raw}' not found")
    if name in state.resident():
        state.gone[name] = info
    return Response(status_code=200)


@endpoint()
async def copy(request: Request, state: StandinState, entry: dict[str, Any]) -> Response:
    """POST /api/copy ``{source, destination}``: 200 with an empty body."""
    body = await read_body(request, empty="missing request body")
    source, destination = body.get("source") or "", body.get("destination") or ""
    if not valid_name(source):
        raise HTTPFail(400, f"source {go_quote(source)} is invalid")
    if not valid_name(destination):
        raise HTTPFail(400, f"destination {go_quote(destination)} is invalid")
    info = state.find(source)
    if info is None:
        raise HTTPFail(404, f"model {go_quote(source)} not found")
    name = normalize_model(destination)
    entry["model"] = name
    state.models[name] = info.renamed(name)
    return Response(status_code=200)


@endpoint()
async def create(request: Request, state: StandinState, entry: dict[str, Any]) -> Response:
    """POST /api/create ``{model, from, system?, template?, parameters?, license?, stream?}``."""
    body = await read_body(request, empty="missing request body")
    raw = body.get("model") or body.get("name") or ""
    if not valid_name(raw):
        raise HTTPFail(400, "invalid model name")
    name = normalize_model(raw)
    entry["model"] = name

    async def progress() -> Progress:
        origin = body.get("from")
        if not origin:
            message = "neither 'from' or 'files' was specified"
            if body.get("files"):
                message = "stand-in: creating a model from files is not supported"
            yield {"error": message, "status": 400}
            return
        if not valid_name(origin):
            yield {"error": "invalid model name", "status": 400}
            return
        source = state.find(origin)
        if source is None:  # parseFromModel pulls a missing base model, "success" line and all
            async for item in pull_progress(state, normalize_model(origin)):
                yield item
                if "error" in item:
                    return
            source = state.models[normalize_model(origin)]
        for layer in source.layers()[:-1]:
            yield {"status": f"using existing layer {layer.digest}"}
        extras = ""
        for key in ("template", "system", "license", "parameters", "messages"):
            if body.get(key):
                extras += json.dumps(body[key], sort_keys=True)
                digest = "sha256:" + hashlib.sha256(f"{key}\x00{json.dumps(body[key])}".encode()).hexdigest()
                yield {"status": f"creating new layer {digest}"}
        yield {"status": "writing manifest"}
        digest = hashlib.sha256(f"{source.digest}\x00{name}\x00{extras}".encode()).hexdigest()
        state.models[name] = source.renamed(name, digest)
        yield {"status": "success"}

    return await progress_response(progress(), body.get("stream") is not False)


# ---------------------------------------------------------------------------------------
# OpenAI-compatible API
# ---------------------------------------------------------------------------------------


@endpoint(shape="openai")
async def openai_chat(request: Request, state: StandinState, entry: dict[str, Any]) -> Response:
    """POST /v1/chat/completions: chat.completion or SSE chat.completion.chunk events."""
    body = await read_body(request, middleware=True)
    info = lookup(state, body.get("model"))
    entry["model"] = info.name
    model = body["model"]
    if info.embedding_only:
        raise HTTPFail(400, f'"{model}" does not support chat')
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise HTTPFail(400, "[] is too short - 'messages'", middleware=True)
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
    completion_id_ = f"chatcmpl-{random.randint(100, 999)}"
    created = int(time.time())
    common = {"id": completion_id_, "created": created, "model": model, "system_fingerprint": "fp_ollama"}
    job = await Job(state, info, entry).start(None)

    if not body.get("stream", False):
        try:
            job.generating()
            for _ in pieces:
                await job.step()
        finally:
            job.finish()
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
        try:
            job.generating()
            for i, piece in enumerate(pieces):
                if i:
                    await job.step()
                yield {
                    **common,
                    "object": "chat.completion.chunk",
                    "choices": [
                        {"index": 0, "delta": {"role": "assistant", "content": piece}, "finish_reason": None}
                    ],
                }
            await job.step()
            yield {
                **common,
                "object": "chat.completion.chunk",
                "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": "stop"}],
            }
            if include_usage:
                yield {**common, "object": "chat.completion.chunk", "choices": [], "usage": usage}
        finally:
            job.finish()

    return sse_stream(events(), job)


@endpoint(shape="openai")
async def openai_completions(request: Request, state: StandinState, entry: dict[str, Any]) -> Response:
    """POST /v1/completions (legacy text completions) through the native generate path."""
    body = await read_body(request, empty="EOF", middleware=True)
    try:
        for name, go_type in (
            ("model", "string"),
            ("prompt", "string"),
            ("stream", "bool"),
            ("max_tokens", "int"),
            ("suffix", "string"),
            ("stream_options", "openai.StreamOptions"),
        ):
            check_field(body, "CompletionRequest", name, go_type)
    except BindError as exc:
        raise HTTPFail(400, str(exc), middleware=True) from None
    model = body.get("model") or ""
    info = lookup_generate(state, model)
    entry["model"] = info.name
    prompt = body.get("prompt") or ""
    cmpl_id = completion_id()
    stream = bool(body.get("stream"))
    include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
    if not prompt:  # GenerateHandler's load request, converted like any answer
        (await Job(state, info, entry).start(None)).finish()
        final = {"model": model, "response": "", "done": True, "done_reason": "load"}
        if not stream:
            return JSONResponse(to_completion(cmpl_id, final))

        async def load_events() -> AsyncIterator[dict[str, Any]]:
            for chunk in complete_chunks(cmpl_id, final, include_usage):
                yield chunk

        return sse_stream(load_events())
    entry["prompt"] = prompt
    text = reply_text(state.node, prompt, False)
    job = await Job(state, info, entry).start(None)
    chunks = generate_chunks(job, model, text, count_tokens(prompt), positive(body.get("max_tokens")))
    if not stream:
        return JSONResponse(to_completion(cmpl_id, await collect_generate(chunks)))

    async def events() -> AsyncIterator[dict[str, Any]]:
        async for chunk in chunks:
            for out in complete_chunks(cmpl_id, chunk, include_usage):
                yield out

    return sse_stream(events(), job)


@endpoint(shape="openai")
async def openai_responses(request: Request, state: StandinState, entry: dict[str, Any]) -> Response:
    """POST /v1/responses (stateless, as Ollama >= 0.13.3): a response object or its SSE events."""
    body = await read_body(request, empty="EOF", middleware=True)
    try:
        messages = from_responses_request(body)
    except BindError as exc:
        raise HTTPFail(400, str(exc), middleware=True) from None
    info = lookup_chat(state, body.get("model"))
    entry["model"] = info.name
    model = body["model"]
    entry["prompt"] = last_user_text(messages)
    resp_id, item_id = responses_ids()
    fmt = (body.get("text") or {}).get("format") or {}
    json_mode = isinstance(fmt, dict) and fmt.get("type") == "json_schema" and fmt.get("schema") is not None
    job = await Job(state, info, entry).start(None)
    if messages:
        text, calls = plan_reply(
            state.node, messages, tool_specs(body.get("tools")), forced_tool(body.get("tool_choice")), json_mode
        )
        prompt_tokens = sum(count_tokens(message_text(m.get("content"))) for m in messages)
        chunks = chat_chunks(job, model, text, calls, prompt_tokens, positive(body.get("max_output_tokens")))
    else:  # ChatHandler's load request, converted like any answer
        job.finish()
        chunks = single_chunk(
            {"model": model, "message": {"role": "assistant", "content": ""}, "done": True, "done_reason": "load"}
        )
    if not body.get("stream"):
        return JSONResponse(to_response(body, resp_id, item_id, await collect_chat(chunks)))
    converter = ResponsesStreamConverter(body, resp_id, item_id)

    async def events() -> AsyncIterator[tuple[str, dict[str, Any]]]:
        async for chunk in chunks:
            for event in converter.process(chunk):
                yield event

    return named_sse_stream(events(), job, sort_keys=True)


async def single_chunk(chunk: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
    """A one-object native stream."""
    yield chunk


async def openai_models(request: Request) -> Response:
    """GET /v1/models: the on-disk models as an OpenAI model list."""
    state: StandinState = request.app.state.standin
    data = [
        {"id": m.name, "object": "model", "created": m.modified_ts, "owned_by": "library"} for m in on_disk(state)
    ]
    return JSONResponse({"object": "list", "data": data})


async def openai_model(request: Request) -> Response:
    """GET /v1/models/{model}: one model, or an OpenAI-shaped 404."""
    state: StandinState = request.app.state.standin
    name = request.path_params["model"]
    info = state.find(name)
    if info is None:
        return error_response(404, f'model "{name}" not found', shape="openai")
    return JSONResponse({"id": info.name, "object": "model", "created": info.modified_ts, "owned_by": "library"})


@endpoint(shape="openai")
async def openai_embeddings(request: Request, state: StandinState, entry: dict[str, Any]) -> Response:
    """POST /v1/embeddings: OpenAI list of embeddings (floats, or base64 float32 if asked)."""
    body = await read_body(request, middleware=True)
    info = lookup(state, body.get("model"))
    entry["model"] = info.name
    inputs = embed_inputs(body.get("input"))
    if not inputs:
        raise HTTPFail(400, "invalid input", middleware=True)
    dims = int(body.get("dimensions") or EMBED_DIMS)
    (await embedding_job(state, info, entry, None)).finish()
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


# ---------------------------------------------------------------------------------------
# Anthropic-compatible API
# ---------------------------------------------------------------------------------------


@endpoint(shape="anthropic")
async def anthropic_messages(request: Request, state: StandinState, entry: dict[str, Any]) -> Response:
    """POST /v1/messages (Ollama >= 0.14): a message object or its SSE events. Auth headers are ignored."""
    body = await read_body(request, empty="EOF", middleware=True)
    try:
        validate_messages_request(body)
        messages = from_messages_request(body)
    except BindError as exc:
        raise HTTPFail(400, str(exc), middleware=True) from None
    info = lookup_chat(state, body["model"])
    entry["model"] = info.name
    model = body["model"]
    entry["prompt"] = last_user_text(messages)
    tools = tool_specs(body.get("tools"))
    text, calls = plan_reply(state.node, messages, tools, forced_tool(body.get("tool_choice")), False)
    prompt_tokens = sum(count_tokens(message_text(m.get("content"))) for m in messages)
    job = await Job(state, info, entry).start(None)
    chunks = chat_chunks(job, model, text, calls, prompt_tokens, positive(body.get("max_tokens")))
    msg_id = anthropic_message_id()
    if not body.get("stream"):
        return JSONResponse(to_messages_response(msg_id, await collect_chat(chunks)))
    converter = AnthropicStreamConverter(msg_id, model)

    async def events() -> AsyncIterator[tuple[str, dict[str, Any]]]:
        async for chunk in chunks:
            for event in converter.process(chunk):
                yield event

    return named_sse_stream(events(), job)


# ---------------------------------------------------------------------------------------
# Introspection, app factory and CLI
# ---------------------------------------------------------------------------------------


async def standin_state(request: Request) -> Response:
    """GET /_standin/state: node, loaded models, scheduler counters and the request log (test introspection)."""
    state: StandinState = request.app.state.standin
    state.expire()
    return JSONResponse(
        {
            "node": state.node,
            "loaded": sorted(state.loaded),
            "loading": sorted(state.loading),
            "active": dict(sorted(state.active.items())),
            "evictions": state.evictions,
            "load_attempts": state.load_attempts,
            "memory_used": state.memory_used(),
            "memory_bytes": state.memory_bytes,
            "fail_status": state.fail_status,
            "requests": state.requests,
        }
    )


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
    pull_seconds: float = 0.5,
    memory_gb: float | None = None,
    max_loaded: int = DEFAULT_MAX_LOADED,
    fail_loads: int = 0,
    contention_file: str | os.PathLike[str] | None = None,
    contention_factor: float = 1.0,
    contention_kind: str = "llm",
    version: str = OLLAMA_VERSION,
) -> Starlette:
    """Build the stand-in ASGI app; ``app.state.standin`` holds the mutable :class:`StandinState`.

    ``load_delay`` is ``--cold-load-seconds``; ``contention_file`` None means ``$HERD_STANDIN_CONTENTION``
    (pass ``""`` for none).
    """
    catalogue = {name: ModelInfo.from_name(name) for name in _names(models)}
    if contention_file is None:
        contention_file = os.environ.get(contention.ENV_VAR) or None
    state = StandinState(
        node=node,
        models=catalogue,
        chunk_delay=chunk_delay,
        fail_status=fail_status or None,
        load_delay=load_delay,
        version=version,
        pull_seconds=pull_seconds,
        memory_bytes=None if memory_gb is None else int(memory_gb * GIB),
        max_loaded=max_loaded,
        fail_loads=fail_loads,
        contention_file=os.fspath(contention_file) if contention_file else None,
        contention_factor=contention_factor,
        contention_kind=contention_kind,
    )
    for name in _names(loaded):
        if name not in catalogue:
            raise ValueError(f"loaded model {name!r} is not in models {sorted(catalogue)}")
        state.loaded[name] = time.time() + DEFAULT_KEEP_ALIVE_S
        state.sessions[name] = DEFAULT_KEEP_ALIVE_S
    routes = [
        Route("/", root, methods=["GET", "HEAD"]),
        Route("/api/version", api_version, methods=["GET", "HEAD"]),
        Route("/api/tags", tags, methods=["GET", "HEAD"]),
        Route("/api/ps", ps, methods=["GET", "HEAD"]),
        Route("/api/show", show, methods=["POST"]),
        Route("/api/chat", chat, methods=["POST"]),
        Route("/api/generate", generate, methods=["POST"]),
        Route("/api/embed", embed, methods=["POST"]),
        Route("/api/embeddings", embeddings_legacy, methods=["POST"]),
        Route("/api/pull", pull, methods=["POST"]),
        Route("/api/delete", delete, methods=["DELETE"]),
        Route("/api/copy", copy, methods=["POST"]),
        Route("/api/create", create, methods=["POST"]),
        Route("/v1/chat/completions", openai_chat, methods=["POST"]),
        Route("/v1/completions", openai_completions, methods=["POST"]),
        Route("/v1/embeddings", openai_embeddings, methods=["POST"]),
        Route("/v1/models", openai_models, methods=["GET"]),
        Route("/v1/models/{model:path}", openai_model, methods=["GET"]),
        Route("/v1/responses", openai_responses, methods=["POST"]),
        Route("/v1/messages", anthropic_messages, methods=["POST"]),
        Route("/_standin/state", standin_state, methods=["GET"]),
    ]
    app = Starlette(routes=routes)
    app.state.standin = state
    return app


def main(argv: list[str] | None = None) -> int:
    """Serve the stand-in with uvicorn; ``--port 0`` picks a free port and prints it."""
    import uvicorn

    parser = argparse.ArgumentParser(description="Ollama 0.14 stand-in for herd-mesh tests.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=11434)
    parser.add_argument("--models", default="llama3.2:3b,nomic-embed-text", help="comma-separated models on disk")
    parser.add_argument("--loaded", default="", help="comma-separated models loaded at start")
    parser.add_argument("--node", default=socket.gethostname(), help="name put into every reply")
    parser.add_argument("--fail-status", type=int, default=None, help="answer every POST with this status")
    parser.add_argument("--chunk-delay", type=float, default=0.05, help="seconds between stream chunks")
    parser.add_argument(
        "--cold-load-seconds",
        "--load-delay",
        dest="load_delay",
        type=float,
        default=0.0,
        help="seconds to load a model that is not in memory",
    )
    parser.add_argument("--fail-loads", type=int, default=0, help="the first N model loads fail (500)")
    parser.add_argument("--memory-gb", type=float, default=None, help="memory budget in GiB for loaded models")
    parser.add_argument(
        "--max-loaded",
        type=int,
        default=DEFAULT_MAX_LOADED,
        help="most models loaded at once (Ollama's default 3; 0 = no limit)",
    )
    parser.add_argument("--pull-seconds", type=float, default=0.5, help="time /api/pull takes to download a model")
    parser.add_argument(
        "--contention-file",
        default=os.environ.get(contention.ENV_VAR) or None,
        help=f"shared registry of running jobs (default ${contention.ENV_VAR})",
    )
    parser.add_argument("--contention-factor", type=float, default=1.0, help="k in pace = 1 + k * other jobs")
    parser.add_argument("--contention-kind", default="llm", help="this stand-in's kind in the contention file")
    parser.add_argument("--ollama-version", default=OLLAMA_VERSION, help="what /api/version answers")
    parser.add_argument("--log-level", default="warning")
    args = parser.parse_args(argv)

    app = build_app(
        args.models,
        args.loaded,
        args.node,
        args.chunk_delay,
        args.fail_status,
        load_delay=args.load_delay,
        pull_seconds=args.pull_seconds,
        memory_gb=args.memory_gb,
        max_loaded=args.max_loaded,
        fail_loads=args.fail_loads,
        contention_file=args.contention_file or "",
        contention_factor=args.contention_factor,
        contention_kind=args.contention_kind,
        version=args.ollama_version,
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
