"""What `Client` and `AsyncClient` share: where to look for a peer, the request bodies, and reading answers.

Nothing here does I/O; the two clients differ only in how they send.
"""

from __future__ import annotations

import json
import os
from collections.abc import Generator, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

import httpx

from ..core.signing import fingerprint
from ..errors import Reason
from ._errors import Attempt, JobNotFound, RequestFailed
from ._models import ChatResult, Embeddings, ImageResult, Job, JobState, ModelInfo, PeerInfo, Segment, Transcript

DEFAULT_PORT = 11435
DEFAULT_MESH = "default"
DEFAULT_MODEL = "z-image-turbo"
LOCAL_URL = f"http://127.0.0.1:{DEFAULT_PORT}"
PROBE_TIMEOUT_S = 1.0  # a peer that does not answer a ping within this is not worth choosing
CONNECT_TIMEOUT_S = 5.0
SHORT_TIMEOUT_S = 30.0  # reads: peers, health, settings, jobs
DEFAULT_TIMEOUT_S = 900.0  # the longest image (a cold flux-dev at 2048 px) stays under this
JOB_STATES: tuple[JobState, ...] = ("queued", "running", "done", "failed")


class Retry(Enum):
    """When a request may be sent again to another peer after a transport error."""

    READ = "read"  # idempotent: retry on any transport error
    UNSENT = "unsent"  # only when the first try never connected (nothing reached a peer)


@dataclass(frozen=True)
class Target:
    """The peer a client talks to."""

    url: str
    node_id: str | None
    how: str  # how it was found, for messages: "url=", "HERD_URL", "local peer", "mDNS"


def normalise_url(text: str) -> str:
    """`host`, `host:port` or `http(s)://host[:port]` -> a base URL; the port defaults to herd-mesh's."""
    text = text.strip().rstrip("/")
    if "://" not in text:
        text = "http://" + text
    parts = httpx.URL(text)
    if parts.scheme not in ("http", "https") or not parts.host:
        raise ValueError(f"a peer URL looks like http://studio.local:11435, got {text!r}")
    port = parts.port or DEFAULT_PORT
    host = f"[{parts.host}]" if ":" in parts.host else parts.host
    return f"{parts.scheme}://{host}:{port}"


def explicit_target(url: str | None, env: Mapping[str, str] | None = None) -> Target | None:
    env = os.environ if env is None else env
    if url:
        return Target(normalise_url(url), None, "url=")
    if env.get("HERD_URL"):
        return Target(normalise_url(env["HERD_URL"]), None, "HERD_URL")
    return None


def loopback(host: str) -> bool:
    """This Mac itself (127.0.0.0/8, ::1, localhost): the only place the data dir's mesh key is sent."""
    return host in ("localhost", "::1", "[::1]") or host.startswith("127.")


KEY_FILE = "mesh.key"  # where `herd key generate` keeps the mesh key, in the peer's data dir


class KeyAuth(httpx.Auth):
    """Sends a key as `Authorization: Bearer`: an API key (`api_key=`, `HERD_API_KEY`) to any peer; the mesh key
    found in this Mac's data dir only to this Mac's own peer, since plain HTTP would show it to the network."""

    def __init__(self, api_key: str | None, local_key: str | None) -> None:
        self._api_key = api_key
        self._local_key = local_key

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        key = self._api_key or (self._local_key if loopback(request.url.host) else None)
        if key and "authorization" not in request.headers:
            request.headers["Authorization"] = f"Bearer {key}"
        yield request


def local_mesh_key(env: Mapping[str, str] | None = None) -> str | None:
    """This Mac's mesh key, when it is a member of a keyed mesh: `HERD_MESH_KEY`, else the data dir's file."""
    env = os.environ if env is None else env
    if env.get("HERD_MESH_KEY"):
        return env["HERD_MESH_KEY"].strip() or None
    data_dir = Path(env.get("HERD_DATA_DIR") or "~/.herd-mesh").expanduser()
    try:
        return (data_dir / KEY_FILE).read_text().strip() or None
    except OSError:
        return None


def local_key_fingerprint(env: Mapping[str, str] | None = None) -> str | None:
    key = local_mesh_key(env)
    return fingerprint(key) if key else None


def key_auth(api_key: str | None, env: Mapping[str, str] | None = None) -> KeyAuth:
    env = os.environ if env is None else env
    return KeyAuth(api_key or env.get("HERD_API_KEY") or None, local_mesh_key(env))


def mesh_name(mesh: str | None, env: Mapping[str, str] | None = None) -> str:
    env = os.environ if env is None else env
    return mesh or env.get("HERD_MESH") or DEFAULT_MESH


PROBE_PATH = "/mesh/peers"  # the one `/mesh/` call a peer answers without the mesh key


def ping_node(response: httpx.Response, mesh: str, key: str | None = None) -> str | None:
    """The node id in a `/mesh/peers` answer, when it is a herd peer of `mesh` (and, with `key`, a member with
    that mesh key's fingerprint)."""
    doc = identity(response)
    if doc is None or doc.get("mesh") != mesh:
        return None
    if key is not None:
        capabilities = doc.get("capabilities")
        security = capabilities.get("security") if isinstance(capabilities, dict) else None
        if not isinstance(security, dict) or security.get("key") != key:
            return None
    return str(doc["node_id"])


def identity_of(doc: Mapping[str, Any]) -> dict[str, Any]:
    """`/mesh/peers`, already read -> the answering peer's own entry (see `identity`)."""
    peers = doc.get("peers")
    own = next((p for p in peers if isinstance(p, dict) and p.get("self")), {}) if isinstance(peers, list) else {}
    return {**own, "node_id": doc.get("self"), "mesh": doc.get("mesh"), "now": own.get("last_seen")}


def identity(response: httpx.Response) -> dict[str, Any] | None:
    """The answering peer as `/mesh/peers` describes itself: node id, mesh, url, its clock (`now`) and state."""
    if response.status_code != 200:
        return None
    try:
        doc = response.json()
    except ValueError:
        return None
    if not isinstance(doc, dict) or not isinstance(doc.get("self"), str) or not isinstance(doc.get("peers"), list):
        return None
    return identity_of(doc)


def transport_failure(exc: httpx.TransportError) -> tuple[bool, str]:
    """(never connected?, words for it)."""
    if isinstance(exc, httpx.ConnectTimeout):
        return True, "no answer to the connection attempt"
    if isinstance(exc, httpx.ConnectError):
        return True, "connection refused or no route"
    if isinstance(exc, httpx.TimeoutException):
        return False, "no answer in time"
    return False, f"the connection broke ({type(exc).__name__})"


# -- errors ----------------------------------------------------------------------------------------------------
def error_from(status: int, headers: httpx.Headers, body: bytes) -> RequestFailed:
    """The server's error answer -> RequestFailed carrying its message, reason, attempts and extra fields.

    herd-mesh answers `{"error": "...", "reason"?, "attempts"?}`; OpenAI routes `{"error": {"message", ...}}`."""
    try:
        doc = json.loads(body) if body else None
    except ValueError:
        doc = None
    fields: dict[str, Any] = dict(doc) if isinstance(doc, dict) else {}
    error = fields.pop("error", None)
    if isinstance(error, dict):
        error = error.get("message")
    message = error if isinstance(error, str) and error else body.decode("utf-8", "replace").strip()[:300]
    message = message or f"HTTP {status}"
    reason = Reason.parse(fields.pop("reason", None))
    attempts = tuple(_attempt(a) for a in fields.pop("attempts", None) or () if isinstance(a, dict))
    retry_after = headers.get("Retry-After")
    return RequestFailed(
        message,
        status,
        reason=reason,
        attempts=attempts,
        node=headers.get("X-Fleet-Node"),
        retry_after=int(retry_after) if retry_after and retry_after.isdigit() else None,
        **fields,
    )


def job_not_found(status: int, headers: httpx.Headers, body: bytes) -> RequestFailed:
    error = error_from(status, headers, body)
    if status != 404:
        return error
    return JobNotFound(error.message, 404, reason=error.reason, node=error.node, **error.fields)


def _attempt(raw: Mapping[str, Any]) -> Attempt:
    status = raw.get("status")
    return Attempt(
        str(raw.get("node") or "?"), str(raw.get("reason") or ""), status if isinstance(status, int) else None
    )


# -- images ----------------------------------------------------------------------------------------------------
def image_body(
    prompt: str,
    *,
    model: str,
    width: int,
    height: int,
    steps: int | None,
    quantize: int,
    seed: int | None,
    guidance: float | None,
    negative_prompt: str | None,
    tags: Sequence[str],
) -> dict[str, Any]:
    body: dict[str, Any] = {"model": model, "prompt": prompt, "width": width, "height": height, "quantize": quantize}
    if steps is not None:
        body["steps"] = steps
    if seed is not None:
        body["seed"] = seed
    if guidance is not None:
        body["guidance"] = guidance
    if negative_prompt:
        body["negative_prompt"] = negative_prompt
    if isinstance(tags, str):
        tags = [tags]
    if tags:
        body["metadata"] = {"tags": list(tags)}
    return body


def image_result(response: httpx.Response, request_id: str, model: str) -> ImageResult:
    h = response.headers
    width = height = None
    size = h.get("X-Image-Size", "")
    if "x" in size:
        w, _, hgt = size.partition("x")
        width, height = _int(w), _int(hgt)
    return ImageResult(
        png=response.content,
        node=h.get("X-Fleet-Node", "unknown"),
        model=h.get("X-Fleet-Model", model),
        seed=_int(h.get("X-Fleet-Seed")),
        generation_ms=_int(h.get("X-Generation-Time")),
        queue_ms=_int(h.get("X-Queue-Time")),
        attempts=_int(h.get("X-Fleet-Attempts")) or 1,
        request_id=h.get("X-Request-Id") or request_id,
        width=width,
        height=height,
    )


# -- LLMs, embeddings, speech-to-text ---------------------------------------------------------------------------
Messages = str | Sequence[Mapping[str, Any]]


def chat_body(model: str, messages: Messages, *, stream: bool, options: Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(messages, str):
        messages = [{"role": "user", "content": messages}]
    body: dict[str, Any] = {"model": model, "messages": [dict(m) for m in messages], "stream": stream}
    if options:
        body["options"] = dict(options)
    return body


def chat_result(response: httpx.Response, model: str) -> ChatResult:
    doc = _json_object(response)
    message = _dict(doc.get("message"))
    content = message.get("content")
    return ChatResult(
        content=content if isinstance(content, str) else "",
        model=str(doc.get("model") or model),
        node=response.headers.get("X-Fleet-Node"),
        done_reason=doc.get("done_reason") if isinstance(doc.get("done_reason"), str) else None,
        message=message,
        raw=doc,
    )


def chat_chunk(line: str) -> tuple[str, bool, str | None]:
    """One NDJSON line of a streamed chat -> (text, done, done_reason); an error line raises RequestFailed."""
    if not line.strip():
        return "", False, None
    try:
        doc = json.loads(line)
    except ValueError as exc:
        raise RequestFailed(f"the chat stream sent a line that is not JSON: {line[:120]!r}", 502) from exc
    if not isinstance(doc, dict):
        return "", False, None
    if doc.get("error"):
        error = doc["error"]
        if isinstance(error, dict):
            error = error.get("message")
        raise RequestFailed(str(error), 502)
    message = doc.get("message")
    text = message.get("content") if isinstance(message, dict) else doc.get("response")
    done = bool(doc.get("done"))
    reason = doc.get("done_reason")
    return (text if isinstance(text, str) else ""), done, (reason if isinstance(reason, str) else None)


def embeddings(response: httpx.Response, model: str) -> Embeddings:
    doc = _json_object(response)
    vectors = doc.get("embeddings")
    if not isinstance(vectors, list):
        raise RequestFailed("the embeddings answer has no 'embeddings' list", 502)
    return Embeddings(vectors, str(doc.get("model") or model), response.headers.get("X-Fleet-Node"))


def transcript(response: httpx.Response) -> Transcript:
    doc = _json_object(response)
    segments = tuple(
        Segment(float(s.get("start") or 0.0), float(s.get("end") or 0.0), str(s.get("text") or ""))
        for s in _list(doc.get("segments"))
        if isinstance(s, dict)
    )
    duration = doc.get("duration")
    language = doc.get("language")
    return Transcript(
        text=str(doc.get("text") or ""),
        language=language if isinstance(language, str) else None,
        duration=float(duration) if isinstance(duration, int | float) else None,
        segments=segments,
        node=response.headers.get("X-Fleet-Node"),
    )


# -- the mesh ----------------------------------------------------------------------------------------------------
def peers(doc: Mapping[str, Any]) -> list[PeerInfo]:
    out = []
    for raw in _list(doc.get("peers")):
        if not isinstance(raw, dict):
            continue
        caps = _dict(raw.get("capabilities"))
        system = _dict(caps.get("system"))
        image = _dict(caps.get("image"))
        models = _dict(image.get("models"))
        queue = _dict(image.get("queue"))
        llm = _dict(caps.get("llm"))
        stt = _dict(caps.get("stt"))
        node_id = raw.get("node_id")
        out.append(
            PeerInfo(
                node_id=node_id if isinstance(node_id, str) else "?",
                url=str(raw.get("url") or ""),
                status=str(raw.get("status") or "unknown"),
                is_self=raw.get("self") is True,
                chip=system.get("chip") if isinstance(system.get("chip"), str) else None,
                memory_total_gb=_float(system.get("memory_total_gb")),
                memory_available_gb=_float(system.get("memory_available_gb")),
                cpu_percent=_float(system.get("cpu_percent")),
                image_models=tuple(sorted(n for n, m in models.items() if _dict(m).get("installed"))),
                image_loaded=tuple(sorted(n for n, m in models.items() if _dict(m).get("loaded"))),
                llm_models=tuple(str(m) for m in _list(llm.get("models"))),
                stt_models=tuple(str(m) for m in _list(stt.get("models"))),
                jobs_running=len(_list(queue.get("running")))
                + len(_list(llm.get("active")))
                + len(_list(stt.get("active"))),
                queue=len(_list(queue.get("waiting"))),
                raw=raw,
            )
        )
    return out


def models(image_doc: Mapping[str, Any], tags_doc: Mapping[str, Any], ps_doc: Mapping[str, Any]) -> list[ModelInfo]:
    out = []
    for raw in _list(image_doc.get("models")):
        entry = _dict(raw)
        holders = [_dict(p) for p in _list(entry.get("peers"))]
        if not holders:
            continue
        out.append(
            ModelInfo(
                name=str(entry.get("name")),
                kind="image",
                nodes=tuple(str(p.get("node_id")) for p in holders),
                loaded_on=tuple(str(p.get("node_id")) for p in holders if p.get("loaded")),
                available=bool(entry.get("available")),
            )
        )
    loaded: dict[str, list[str]] = {}
    for raw in _list(ps_doc.get("models")):
        entry = _dict(raw)
        nodes = _list(entry.get("nodes")) or ([entry["node"]] if entry.get("node") else [])
        loaded.setdefault(str(entry.get("name")), []).extend(str(n) for n in nodes)
    for raw in _list(tags_doc.get("models")):
        entry = _dict(raw)
        name = str(entry.get("name"))
        nodes = _list(entry.get("nodes")) or ([entry["node"]] if entry.get("node") else [])
        out.append(ModelInfo(name, "llm", tuple(str(n) for n in nodes), tuple(loaded.get(name, ())), bool(nodes)))
    return out


def job(doc: Mapping[str, Any], request_id: str) -> Job:
    return Job(
        id=str(doc.get("id") or request_id),
        kind=str(doc.get("kind") or "image"),
        model=_str(doc.get("model")),
        state=job_state(doc.get("state")),
        node=_str(doc.get("node")),
        queue_position=_int(doc.get("queue_position")),
        step=_int(doc.get("step")),
        steps=_int(doc.get("steps")),
        elapsed_s=_float(doc.get("elapsed_s")),
        eta_s=_float(doc.get("eta_s")),
        reason=_str(doc.get("reason")),
        error=_str(doc.get("error")),
        raw=doc,
    )


def job_state(value: Any) -> JobState:
    for state in JOB_STATES:
        if value == state:
            return state
    return "queued"


# -- small readers -----------------------------------------------------------------------------------------------
def json_object(response: httpx.Response) -> dict[str, Any]:
    return _json_object(response)


def _json_object(response: httpx.Response) -> dict[str, Any]:
    try:
        doc = response.json()
    except ValueError as exc:
        raise RequestFailed(f"the peer answered something that is not JSON: {response.text[:120]!r}", 502) from exc
    if not isinstance(doc, dict):
        raise RequestFailed("the peer answered JSON that is not an object", 502)
    return doc


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value.strip())
    return None


def _float(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)
