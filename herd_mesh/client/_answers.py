"""A peer's successful answers -> the typed results (`ImageResult`, `ChatResult`, `PeerInfo`, `Job`, ...).

Both clients read answers here, so a field read in one reads the same in the other; a missing or odd field
becomes None or empty (see `_readers`), a body that is not JSON a RequestFailed.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import httpx

from ._errors import RequestFailed
from ._models import ChatResult, Embeddings, ImageResult, Job, JobState, ModelInfo, PeerInfo, Segment, Transcript
from ._readers import as_dict, as_float, as_int, as_list, as_str, json_object

JOB_STATES: tuple[JobState, ...] = ("queued", "running", "done", "failed")


# -- images ----------------------------------------------------------------------------------------------------
def image_result(response: httpx.Response, request_id: str, model: str) -> ImageResult:
    """The PNG and what the `X-Fleet-*` headers say about how it was made."""
    h = response.headers
    width = height = None
    size = h.get("X-Image-Size", "")
    if "x" in size:
        w, _, hgt = size.partition("x")
        width, height = as_int(w), as_int(hgt)
    return ImageResult(
        png=response.content,
        node=h.get("X-Fleet-Node", "unknown"),
        model=h.get("X-Fleet-Model", model),
        seed=as_int(h.get("X-Fleet-Seed")),
        generation_ms=as_int(h.get("X-Generation-Time")),
        queue_ms=as_int(h.get("X-Queue-Time")),
        attempts=as_int(h.get("X-Fleet-Attempts")) or 1,
        request_id=h.get("X-Request-Id") or request_id,
        width=width,
        height=height,
    )


# -- LLMs, embeddings, speech-to-text ---------------------------------------------------------------------------
def chat_result(response: httpx.Response, model: str) -> ChatResult:
    """A whole (not streamed) chat answer."""
    doc = json_object(response)
    message = as_dict(doc.get("message"))
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
    """The vectors; an answer without them is the peer's fault (502)."""
    doc = json_object(response)
    vectors = doc.get("embeddings")
    if not isinstance(vectors, list):
        raise RequestFailed("the embeddings answer has no 'embeddings' list", 502)
    return Embeddings(vectors, str(doc.get("model") or model), response.headers.get("X-Fleet-Node"))


def transcript(response: httpx.Response) -> Transcript:
    """The text and its timed segments."""
    doc = json_object(response)
    segments = tuple(
        Segment(float(s.get("start") or 0.0), float(s.get("end") or 0.0), str(s.get("text") or ""))
        for s in as_list(doc.get("segments"))
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
    """`/mesh/peers` -> one PeerInfo per peer, its capabilities flattened to what a caller asks about."""
    out = []
    for raw in as_list(doc.get("peers")):
        if not isinstance(raw, dict):
            continue
        caps = as_dict(raw.get("capabilities"))
        system = as_dict(caps.get("system"))
        image = as_dict(caps.get("image"))
        models = as_dict(image.get("models"))
        queue = as_dict(image.get("queue"))
        llm = as_dict(caps.get("llm"))
        stt = as_dict(caps.get("stt"))
        node_id = raw.get("node_id")
        out.append(
            PeerInfo(
                node_id=node_id if isinstance(node_id, str) else "?",
                url=str(raw.get("url") or ""),
                status=str(raw.get("status") or "unknown"),
                is_self=raw.get("self") is True,
                chip=system.get("chip") if isinstance(system.get("chip"), str) else None,
                memory_total_gb=as_float(system.get("memory_total_gb")),
                memory_available_gb=as_float(system.get("memory_available_gb")),
                cpu_percent=as_float(system.get("cpu_percent")),
                image_models=tuple(sorted(n for n, m in models.items() if as_dict(m).get("installed"))),
                image_loaded=tuple(sorted(n for n, m in models.items() if as_dict(m).get("loaded"))),
                llm_models=tuple(str(m) for m in as_list(llm.get("models"))),
                stt_models=tuple(str(m) for m in as_list(stt.get("models"))),
                jobs_running=len(as_list(queue.get("running")))
                + len(as_list(llm.get("active")))
                + len(as_list(stt.get("active"))),
                queue=len(as_list(queue.get("waiting"))),
                raw=raw,
            )
        )
    return out


def models(image_doc: Mapping[str, Any], tags_doc: Mapping[str, Any], ps_doc: Mapping[str, Any]) -> list[ModelInfo]:
    """Image models (those some peer holds) then LLMs, with where each is installed and loaded."""
    out = []
    for raw in as_list(image_doc.get("models")):
        entry = as_dict(raw)
        holders = [as_dict(p) for p in as_list(entry.get("peers"))]
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
    for raw in as_list(ps_doc.get("models")):
        entry = as_dict(raw)
        nodes = as_list(entry.get("nodes")) or ([entry["node"]] if entry.get("node") else [])
        loaded.setdefault(str(entry.get("name")), []).extend(str(n) for n in nodes)
    for raw in as_list(tags_doc.get("models")):
        entry = as_dict(raw)
        name = str(entry.get("name"))
        nodes = as_list(entry.get("nodes")) or ([entry["node"]] if entry.get("node") else [])
        out.append(ModelInfo(name, "llm", tuple(str(n) for n in nodes), tuple(loaded.get(name, ())), bool(nodes)))
    return out


def job(doc: Mapping[str, Any], request_id: str) -> Job:
    """`GET /api/jobs/{id}` -> Job; the id falls back to the one asked for."""
    return Job(
        id=str(doc.get("id") or request_id),
        kind=str(doc.get("kind") or "image"),
        model=as_str(doc.get("model")),
        state=job_state(doc.get("state")),
        node=as_str(doc.get("node")),
        queue_position=as_int(doc.get("queue_position")),
        step=as_int(doc.get("step")),
        steps=as_int(doc.get("steps")),
        elapsed_s=as_float(doc.get("elapsed_s")),
        eta_s=as_float(doc.get("eta_s")),
        reason=as_str(doc.get("reason")),
        error=as_str(doc.get("error")),
        raw=doc,
    )


def job_state(value: Any) -> JobState:
    """A known state; anything else (missing, or newer than this client) reads as "queued"."""
    for state in JOB_STATES:
        if value == state:
            return state
    return "queued"
