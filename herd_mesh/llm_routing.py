"""Where an LLM, embedding or transcription request runs, and the streaming proxy that carries its answer back.

The entry peer (the one the client called) ranks every capable peer (`llm_scoring`), forwards to the best one
with one hop only (`X-Herd-Forwarded`), and on a connection error, a 5xx, a capacity refusal (429/503) or a
model the peer turned out not to have, tries the next best, as long as no byte of the answer has reached the
client (`relay` holds the first line or event of a stream back until it is whole). The peer that runs it
proxies to its own Ollama, or calls its own Whisper, and never routes it again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
import uuid
from dataclasses import dataclass
from typing import Any

import httpx
from starlette.responses import Response

from . import llm_scoring
from .engines.ollama import OllamaService
from .engines.whisper import OPENAI_ALIASES, Transcript, WhisperService
from .errors import EngineError, HerdError, PeerUnreachable, RequestError
from .llm_requests import AudioRequest
from .llm_scoring import ANY_MODEL, LLM_COSTS, STT_COSTS, Costs, ModelFacts
from .node import Node
from .peer_client import H_FORWARDED, H_JOB
from .records import RequestRecord
from .relay import (
    Opened,
    Reader,
    Upstream,
    error_body,
    framing,
    nothing,
    read_capped,
    relay_response,
    while_alive,
)
from .scheduling import Sent

logger = logging.getLogger(__name__)

MAX_ATTEMPTS = 4  # peers tried for one request before giving up
READ_TIMEOUT_S = 900.0  # a forwarded request may wait this long for its next chunk (cold loads take minutes)
LIST_TIMEOUT_S = 2.0  # one peer's share of /api/tags, /api/ps, /v1/models
SETTING_FOR = {"llm": "llm", "embeddings": "embeddings", "transcription": "transcription"}
WHAT = {"llm": "LLM chat", "embeddings": "embeddings", "transcription": "transcription", "meta": "model details"}


@dataclass(frozen=True)
class Call:
    """One client request, as routing sees it; the body goes to the chosen peer unchanged."""

    kind: str  # llm | embeddings | transcription | meta (model details: routed, never recorded)
    api: str  # ollama | openai | herd: the shape of errors and of a stream's error event
    path: str
    body: bytes
    content_type: str = "application/json"
    model: str = ""  # as the client named it; "" lets a transcription use the peer's default
    tags: tuple[str, ...] = ()
    prompt: str = ""
    audio: AudioRequest | None = None  # transcriptions, parsed once at the entry and again where they run

    @property
    def service(self) -> str:
        return "stt" if self.kind == "transcription" else "llm"


# -- the router --------------------------------------------------------------------------------------------------
class ModelRouter:
    """Routes Ollama and Whisper requests over the mesh; one per peer."""

    def __init__(
        self,
        node: Node,
        *,
        llm: OllamaService | None,
        stt: WhisperService | None,
        rng: random.Random | None = None,
    ) -> None:
        self.node = node
        self.llm = llm
        self.stt = stt
        self.rng = rng or random.Random()
        self.sent: dict[str, Sent] = {}  # requests this peer forwarded and whose answer has not ended

    # -- views ------------------------------------------------------------------------------------------------
    def _costs(self, call: Call) -> Costs:
        return STT_COSTS if call.service == "stt" else LLM_COSTS

    def facts(self, kind: str) -> list[ModelFacts]:
        """Every peer (this one first, always fresh) as the scorer sees it for this kind of request."""
        section = "stt" if kind == "transcription" else "llm"
        service = self.stt if section == "stt" else self.llm
        out: list[ModelFacts] = []
        if service is not None:
            out.append(
                llm_scoring.facts_from_state(
                    self.node.node_id, "up", service.state(), kind=kind,
                    memory_available_gb=self.node.metrics.memory_available_gb, is_self=True,
                )
            )  # fmt: skip
        for peer in self.node.table.all():
            caps = peer.capabilities or {}
            if isinstance(caps.get(section), dict):
                memory = float((caps.get("system") or {}).get("memory_available_gb") or 0.0)
                out.append(
                    llm_scoring.facts_from_state(
                        peer.node_id, peer.status, caps[section], kind=kind, memory_available_gb=memory,
                        is_self=False,
                    )
                )  # fmt: skip
        return out

    def mesh_models(self, kind: str) -> dict[str, list[str]]:
        """Model -> the peers (up or suspect) that advertise it, as each named it."""
        section = "stt" if kind == "transcription" else "llm"
        named: dict[str, list[str]] = {}
        sections: list[tuple[str, dict[str, Any]]] = []
        service = self.stt if section == "stt" else self.llm
        if service is not None:
            sections.append((self.node.node_id, service.state()))
        for peer in self.node.table.all():
            if peer.status in ("up", "suspect") and isinstance((peer.capabilities or {}).get(section), dict):
                sections.append((peer.node_id, peer.capabilities[section]))
        for node_id, doc in sections:
            for model in doc.get("models") or []:
                named.setdefault(str(model), []).append(node_id)
        return named

    def _key(self, call: Call) -> str:
        if call.service == "stt":
            return ANY_MODEL if not call.model or call.model in OPENAI_ALIASES else call.model
        return llm_scoring.normalize_model(call.model)

    def check(self, call: Call) -> None:
        """400/404/503 before any work: no model named, a model nobody has, or the capability switched off."""
        available = self.mesh_models(call.kind)
        what = WHAT[call.kind]
        if call.service == "llm" and not call.model:
            raise RequestError(
                f"'model' is required; models in the mesh: {', '.join(sorted(available)) or 'none'}",
                400, available=sorted(available),
            )  # fmt: skip
        key = self._key(call)
        facts = [f for f in self.facts(call.kind) if f.status in ("up", "suspect")]
        holders = [f for f in facts if key in f.installed or (key == ANY_MODEL and f.installed)]
        if not holders:
            if not available:
                hint = (
                    "no peer has a Whisper model: install the stt extra (pip install 'herd-mesh[stt]') on a peer"
                    if call.service == "stt"
                    else "no peer's Ollama has any model: start Ollama (`ollama serve`) and pull one "
                    "(`ollama pull llama3.2`) on a peer"
                )
                raise RequestError(f"{what} is not available: {hint}", 503 if call.service == "stt" else 404,
                                   available=[])  # fmt: skip
            names = ", ".join(sorted(available))
            raise RequestError(
                f"model {call.model!r} is not installed on any peer of the mesh; models: {names}",
                404, available=sorted(available),
            )  # fmt: skip
        if not any(f.accepting for f in holders) and call.kind in SETTING_FOR:
            setting = SETTING_FOR[call.kind]
            raise RequestError(
                f"{what} is switched off on every peer that has {call.model or 'a model'}; turn it on with: "
                f"curl -X POST http://localhost:11435/dashboard/api/settings -H 'Content-Type: application/json' "
                f"-d '{{\"{setting}\": true}}'",
                503, reason="disabled",
            )  # fmt: skip

    # -- entry side -----------------------------------------------------------------------------------------------
    async def open(self, call: Call, job_id: str) -> Opened:
        """Try the best peers in turn until one has started answering; RequestError when none could."""
        self.check(call)
        costs = self._costs(call)
        key = self._key(call)
        failures: list[dict[str, str]] = []
        excluded: set[str] = set()
        attempts = 0
        while attempts < MAX_ATTEMPTS:
            facts = [f for f in self.facts(call.kind) if f.node_id not in excluded]
            ranked = llm_scoring.rank_peers(facts, key, costs, sent=self.sent.values(), rng=self.rng)
            if not ranked:
                break
            choice = ranked[0]
            attempts += 1
            logger.debug("%s %s -> %s: %s", call.kind, job_id, choice.node_id, choice.reason)
            try:
                if choice.node_id == self.node.node_id:
                    opened = await self.open_here(call, job_id)
                else:
                    target = next(f for f in facts if f.node_id == choice.node_id)
                    opened = await self._open_remote(call, target, key, costs, job_id)
            except Upstream as exc:
                if not exc.retryable:
                    raise
                failures.append({"node": exc.node, "reason": exc.reason(), "status": str(exc.status)})
                excluded.add(exc.node)
            except PeerUnreachable as exc:
                failures.append({"node": exc.node_id, "reason": f"unreachable: {exc.reason}"})
                excluded.add(exc.node_id)
                self.node.table.contact_failed(exc.node_id, now=time.time(), reason=exc.reason)
            except EngineError as exc:
                failures.append({"node": self.node.node_id, "reason": str(exc)})
                excluded.add(self.node.node_id)
            else:
                opened.attempts = attempts
                opened.failures = failures
                if failures:
                    logger.info("%s %s served by %s after %s", call.kind, job_id, opened.node,
                                "; ".join(f"{f['node']}: {f['reason']}" for f in failures))  # fmt: skip
                return opened
        raise self._all_failed(call, failures)

    def _all_failed(self, call: Call, failures: list[dict[str, str]]) -> RequestError:
        what = WHAT[call.kind]
        if not failures:
            return RequestError(f"no peer that is up can serve {what} for {call.model or 'this request'} right now",
                                503, attempts=[])  # fmt: skip
        summary = "; ".join(f"{f['node']}: {f['reason']}" for f in failures)
        statuses = {f.get("status") for f in failures}
        if statuses <= {"404"}:
            available = sorted(self.mesh_models(call.kind))
            return RequestError(
                f"model {call.model!r} was not found on the peers that advertised it ({summary}); "
                f"models: {', '.join(available)}", 404, available=available, attempts=failures,
            )  # fmt: skip
        if statuses <= {"429", "503", "404"}:
            return RequestError(f"every peer that can serve {call.model or what} is busy or off ({summary}); "
                                "retry in a moment", 503, attempts=failures)  # fmt: skip
        return RequestError(f"{what} failed on every peer tried ({summary})", 502, attempts=failures)

    async def _open_remote(self, call: Call, target: ModelFacts, key: str, costs: Costs, job_id: str) -> Opened:
        node_id = target.node_id
        client = self.node.client_for(node_id)
        if client is None:
            raise PeerUnreachable(node_id, "left the mesh")
        self.sent[job_id] = llm_scoring.sent_for(target, key, costs, job_id, sent=self.sent.values(), now=time.time())
        stack = contextlib.AsyncExitStack()
        headers = {"Content-Type": call.content_type, H_FORWARDED: "1", H_JOB: job_id}

        def fail(reason: str) -> Exception:
            return PeerUnreachable(node_id, reason)

        def alive() -> bool:
            peer = self.node.table.get(node_id)
            return peer is not None and peer.status != "down"

        try:
            opening = stack.enter_async_context(
                client.stream("POST", call.path, content=call.body, headers=headers, timeout=READ_TIMEOUT_S)
            )
            response = await while_alive(opening, alive=alive, fail=fail)
            if response.status_code != 200:
                raise Upstream(node_id, response.status_code, await read_capped(response),
                               response.headers.get("content-type", ""))  # fmt: skip
            content_type = response.headers.get("content-type", "application/json")
            reader = Reader(response.aiter_bytes(), framing(content_type), fail=fail, alive=alive)
            head = await reader.head()
        except BaseException:
            self.sent.pop(job_id, None)
            await stack.aclose()
            raise

        async def close() -> None:
            self.sent.pop(job_id, None)
            await stack.aclose()

        return Opened(
            node=response.headers.get("X-Fleet-Node", node_id),
            model=response.headers.get("X-Fleet-Model", call.model),
            content_type=content_type,
            head=head,
            reader=reader,
            close=close,
        )

    # -- where it runs -------------------------------------------------------------------------------------------
    async def open_here(self, call: Call, job_id: str) -> Opened:
        """Run on this peer (the entry's own choice, or a forwarded request): never routed further."""
        if call.service == "stt":
            return await self._transcribe_here(call, job_id)
        return await self._ollama_here(call, job_id)

    def _refuse(self, status: int, message: str, reason: str, **extra: Any) -> Upstream:
        body = json.dumps(error_body("herd", status, message, reason=reason, **extra)).encode()
        return Upstream(self.node.node_id, status, body, "application/json")

    async def _ollama_here(self, call: Call, job_id: str) -> Opened:
        service = self.llm
        me = self.node.node_id
        if service is None:
            raise self._refuse(503, f"{me} has no Ollama service", "no-engine")
        if call.kind in SETTING_FOR and not service.settings.get(SETTING_FOR[call.kind]):
            raise self._refuse(503, f"{WHAT[call.kind]} is switched off on {me}", "disabled")
        key = self._key(call)
        installed = {llm_scoring.normalize_model(m) for m in service.models()}
        if service.reachable and key not in installed:
            raise self._refuse(404, f"model {call.model!r} is not installed on {me}", "not-installed",
                               available=service.models())  # fmt: skip
        stack = contextlib.AsyncExitStack()
        if call.kind != "meta":
            stack.enter_context(service.track(job_id, call.kind, call.model))

        def fail(reason: str) -> Exception:
            return EngineError(f"Ollama on {me}: {reason}")

        try:
            try:
                response = await stack.enter_async_context(
                    service.client.stream(call.path, content=call.body, content_type=call.content_type)
                )
            except EngineError:
                service.poke()
                raise
            if response.status_code != 200:
                raise Upstream(me, response.status_code, await read_capped(response),
                               response.headers.get("content-type", ""))  # fmt: skip
            content_type = response.headers.get("content-type", "application/json")
            reader = Reader(response.aiter_bytes(), framing(content_type), fail=fail)
            head = await reader.head()
        except BaseException:
            await stack.aclose()
            raise
        return Opened(node=me, model=call.model, content_type=content_type, head=head, reader=reader,
                      close=stack.aclose)  # fmt: skip

    async def _transcribe_here(self, call: Call, job_id: str) -> Opened:
        service = self.stt
        me = self.node.node_id
        audio = call.audio
        assert audio is not None
        if service is None or not service.models():
            raise self._refuse(503, f"{me} cannot transcribe: no Whisper engine or model", "no-engine")
        if not service.enabled:
            raise self._refuse(503, f"transcription is switched off on {me}", "disabled")
        try:
            service.resolve(audio.model)
        except RequestError as exc:
            raise self._refuse(exc.status, exc.message, "not-installed", available=sorted(service.models())) from exc
        transcript = await service.transcribe(audio.audio, model=audio.model, language=audio.language, job_id=job_id)
        body, content_type = transcript_body(transcript, audio.response_format)
        return Opened(node=me, model=transcript.model, content_type=content_type, head=body, reader=None,
                      close=nothing)  # fmt: skip

    # -- answering --------------------------------------------------------------------------------------------------
    async def respond(self, call: Call, opened: Opened, *, job_id: str, started: float, record: bool) -> Response:
        """The client's response: the whole answer when it is complete, else a relay of the stream."""
        headers = {"X-Fleet-Node": opened.node, "X-Fleet-Model": opened.model or call.model,
                   "X-Fleet-Attempts": str(opened.attempts)}  # fmt: skip

        def on_end(status: str, error: str | None) -> None:
            if record:
                self.record(call, job_id, status=status, node=opened.node, model=opened.model, started=started,
                            error=error)  # fmt: skip

        if opened.complete:
            await opened.close()
            on_end("ok", None)
            return Response(opened.head, media_type=opened.content_type, headers=headers)
        return relay_response(opened, headers=headers, on_end=on_end)

    def record(
        self, call: Call, job_id: str, *, status: str, node: str | None, model: str, started: float,
        error: str | None = None,
    ) -> None:  # fmt: skip
        records = getattr(self.node, "records", None)
        if records is None or call.kind == "meta":
            return
        store_prompt = bool(self.node.settings.get("store_prompts"))
        try:
            records.add(
                RequestRecord(
                    kind=call.kind, model=model or call.model or "default", status=status, node=node,
                    entry_node=self.node.node_id, generation_ms=int((time.monotonic() - started) * 1000),
                    error=error, tags=call.tags, prompt=(call.prompt or None) if store_prompt else None,
                    job_id=job_id,
                )
            )  # fmt: skip
        except Exception:
            logger.exception("could not record %s request %s", call.kind, job_id)

    # -- the mesh's model lists --------------------------------------------------------------------------------------
    async def local_list(self, path: str) -> list[dict[str, Any]]:
        """This peer's Ollama's `/api/tags` or `/api/ps` entries, read now (the last poll's if it fails)."""
        if self.llm is None:
            return []
        try:
            doc = await self.llm.client.get_json(path, timeout=LIST_TIMEOUT_S)
        except EngineError:
            return list(self.llm.ps if path == "/api/ps" else self.llm.tags)
        models = doc.get("models")
        return [m for m in models if isinstance(m, dict)] if isinstance(models, list) else []

    async def mesh_lists(self, path: str) -> list[tuple[str, list[dict[str, Any]]]]:
        """(node, entries) for this peer and every peer up whose Ollama answers; a peer that does not answer in
        time contributes the names its state document advertises."""
        peers = [
            p
            for p in self.node.table.all()
            if p.status in ("up", "suspect") and ((p.capabilities or {}).get("llm") or {}).get("models")
        ]

        async def remote(node_id: str, section: dict[str, Any]) -> tuple[str, list[dict[str, Any]]]:
            client = self.node.client_for(node_id)
            fallback_key = "loaded" if path == "/api/ps" else "models"
            fallback = [{"name": n, "model": n} for n in section.get(fallback_key) or []]
            if client is None:
                return node_id, fallback
            try:
                async with client.stream("GET", path, content=b"", headers={H_FORWARDED: "1"},
                                         timeout=LIST_TIMEOUT_S) as response:  # fmt: skip
                    if response.status_code != 200:
                        return node_id, fallback
                    doc = json.loads(await response.aread())
            except (HerdError, httpx.HTTPError, ValueError) as exc:
                logger.debug("model list from %s failed: %s", node_id, exc)
                return node_id, fallback
            models = doc.get("models") if isinstance(doc, dict) else None
            return node_id, [m for m in models if isinstance(m, dict)] if isinstance(models, list) else fallback

        results = await asyncio.gather(
            self.local_list(path), *(remote(p.node_id, p.capabilities["llm"]) for p in peers)
        )
        return [(self.node.node_id, results[0]), *results[1:]]

    def ollama_version(self) -> str | None:
        """This peer's Ollama version, else the first one another peer advertises."""
        if self.llm is not None and self.llm.reachable and self.llm.version:
            return self.llm.version
        for peer in self.node.table.all():
            version = (((peer.capabilities or {}).get("llm") or {}).get("ollama") or {}).get("version")
            if peer.status == "up" and version:
                return str(version)
        return None


def transcript_body(transcript: Transcript, response_format: str) -> tuple[bytes, str]:
    """The transcription answer: JSON `{text, language, duration, segments}` (also for OpenAI's json and
    verbose_json), or the bare text."""
    if response_format == "text":
        return (transcript.text + "\n").encode(), "text/plain; charset=utf-8"
    return json.dumps(transcript.to_json()).encode(), "application/json"


def new_job_id() -> str:
    return uuid.uuid4().hex[:16]
