"""LLM chat, embeddings, model details and speech-to-text: run by the one attempt loop, here or on the best peer.

The entry peer ranks every capable peer (`core.model_scoring`), forwards to the best one with one hop only
(`X-Herd-Forwarded`), and on a connection error, a 5xx, a capacity refusal (429/503) or a model the peer turned
out not to have, tries the next best, as long as no byte of the answer has reached the client: a try ends
once the first line or event of a stream is whole (`relay.Reader.head`). The peer that runs it proxies to its
own Ollama, or calls its own Whisper, and never routes it again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from ..core import model_scoring
from ..core.attempts import Attempts, switched_off
from ..core.extras import install_hint
from ..core.model_request import AudioRequest
from ..core.model_scoring import ANY_MODEL, LLM_COSTS, STT_COSTS, Costs
from ..core.protocol import H_FORWARDED, H_JOB
from ..core.rng import Rng
from ..core.views import LIVE, MeshSnapshot
from ..core.work import Choice, Sent, Work
from ..engines.whisper import OPENAI_ALIASES, Transcript
from ..errors import EngineError, PeerRefused, PeerUnreachable, Reason, RequestError
from ..mesh.clients import MAX_ERROR_BYTES, PeerClients, read_capped
from ..services.ollama_service import OllamaService
from ..services.whisper_service import WhisperService
from .dispatcher import Dispatcher
from .relay import Opened, Reader, framing, nothing, relayable, while_alive

logger = logging.getLogger(__name__)

READ_TIMEOUT_S = 900.0  # a forwarded request may wait this long for its next chunk (cold loads take minutes)
SETTING_FOR = {"llm": "llm", "embeddings": "embeddings", "transcription": "transcription"}
# the APIs an older Ollama answers with its router's plain-text 404, and the version that serves each
NEWER_APIS = {"/v1/messages": "0.14", "/v1/responses": "0.13.3"}
WHAT = {"llm": "LLM chat", "embeddings": "embeddings", "transcription": "transcription", "meta": "model details"}


@dataclass(frozen=True)
class Call:
    """One client request, as routing sees it; the body goes to the chosen peer unchanged."""

    kind: str  # llm | embeddings | transcription | meta (model details: routed, never recorded)
    api: str  # ollama | openai | herd: the shape of errors and of a stream's error event
    path: str
    body: bytes | Callable[[], AsyncIterator[bytes]]  # a large upload is read again from disk for each try
    content_type: str = "application/json"
    model: str = ""  # as the client named it; "" lets a transcription use the peer's default
    tags: tuple[str, ...] = ()
    prompt: str = ""
    audio: AudioRequest | None = None  # transcriptions, parsed once at the entry and again where they run

    @property
    def costs(self) -> Costs:
        return STT_COSTS if self.kind == "transcription" else LLM_COSTS

    @property
    def key(self) -> str:
        """The model as peers advertise it: Ollama's normalised name, or any Whisper model for none."""
        if self.kind == "transcription":
            return ANY_MODEL if not self.model or self.model in OPENAI_ALIASES else self.model
        return model_scoring.normalize_model(self.model)


class ModelDispatch:
    """Routes Ollama and Whisper requests over the mesh; one per peer."""

    def __init__(
        self,
        *,
        dispatcher: Dispatcher,
        clients: PeerClients,
        llm: OllamaService | None,
        stt: WhisperService | None,
    ) -> None:
        self._dispatcher = dispatcher
        self._clients = clients
        self.llm = llm
        self.stt = stt

    @property
    def me(self) -> str:
        return self._dispatcher.me

    def check(self, call: Call, snapshot: MeshSnapshot) -> None:
        """400/404/503 before any work: no model named, a model nobody has, or the capability switched off."""
        available = snapshot.holders(call.kind)
        what = WHAT[call.kind]
        if call.kind != "transcription" and not call.model:
            raise RequestError(
                f"'model' is required; models in the mesh: {', '.join(sorted(available)) or 'none'}",
                400, available=sorted(available),
            )  # fmt: skip
        key = call.key
        facts = [f for f in snapshot.model_facts(call.kind) if f.status in LIVE]
        holders = [f for f in facts if key in f.installed or (key == ANY_MODEL and f.installed)]
        if not holders:
            if not available:
                hint = (
                    f"no peer has a Whisper model: install the stt extra on a peer ({install_hint('stt')})"
                    if call.kind == "transcription"
                    else "no peer's Ollama has any model: start Ollama (`ollama serve`) and pull one "
                    "(`ollama pull llama3.2`) on a peer"
                )
                raise RequestError(f"{what} is not available: {hint}", 503 if call.kind == "transcription" else 404,
                                   available=[])  # fmt: skip
            names = ", ".join(sorted(available))
            raise RequestError(f"model {call.model!r} is not installed on any peer of the mesh; models: {names}",
                               404, available=sorted(available))  # fmt: skip
        if not any(f.accepting for f in holders) and call.kind in SETTING_FOR:
            raise switched_off(f"{what} on every peer that has {call.model or 'a model'}", SETTING_FOR[call.kind])

    # -- entry side -----------------------------------------------------------------------------------------------
    async def open(self, call: Call, job_id: str) -> Opened:
        """Try the best peers in turn until one has started answering; RequestError when none could."""
        self.check(call, self._dispatcher.snapshot())
        tried = await self._dispatcher.run(_Entry(self, call, job_id))
        opened = tried.result
        opened.attempts = tried.attempts.attempts
        return opened

    async def open_remote(self, call: Call, node_id: str, job_id: str, release: Callable[[], None]) -> Opened:
        client = self._clients.for_node(node_id)
        if client is None:
            raise PeerUnreachable(node_id, "left the mesh")
        stack = contextlib.AsyncExitStack()
        stack.callback(release)
        headers = {"Content-Type": call.content_type, H_FORWARDED: "1", H_JOB: job_id}

        def fail(reason: str) -> Exception:
            return PeerUnreachable(node_id, reason)

        def alive() -> bool:
            return self._dispatcher.alive(node_id)

        try:
            opening = stack.enter_async_context(
                client.stream(
                    "POST", call.path, content=_content(call.body), headers=headers, timeout_s=READ_TIMEOUT_S
                )
            )
            response = await while_alive(opening, alive=alive, fail=fail)
            content_type = _checked(node_id, response.headers.get("content-type", "application/json"))
            reader = Reader(response.aiter_bytes(), framing(content_type), fail=fail, alive=alive)
            head = await reader.head()
        except BaseException:
            await stack.aclose()
            raise
        return Opened(node=response.headers.get("X-Fleet-Node", node_id),
                      model=response.headers.get("X-Fleet-Model", call.model), content_type=content_type, head=head,
                      reader=reader, close=stack.aclose)  # fmt: skip

    # -- where it runs -------------------------------------------------------------------------------------------
    async def open_here(self, call: Call, job_id: str) -> Opened:
        """Run on this peer (the entry's own choice, or a forwarded request): never routed further."""
        if call.kind == "transcription":
            return await self._transcribe_here(call, job_id)
        return await self._ollama_here(call, job_id)

    def _refuse(self, status: int, message: str, reason: Reason, **fields: Any) -> PeerRefused:
        return PeerRefused.of(self.me, status, message, reason, **fields)

    async def _ollama_here(self, call: Call, job_id: str) -> Opened:
        service = self.llm
        me = self.me
        if service is None:
            raise self._refuse(503, f"{me} has no Ollama service", Reason.NO_ENGINE)
        if call.kind in SETTING_FOR and not service.settings.get(SETTING_FOR[call.kind]):
            raise self._refuse(503, f"{WHAT[call.kind]} is switched off on {me}", Reason.DISABLED)
        installed = {model_scoring.normalize_model(m) for m in service.models()}
        if service.reachable and call.key not in installed:
            raise self._refuse(404, f"model {call.model!r} is not installed on {me}", Reason.NOT_INSTALLED,
                               available=service.models())  # fmt: skip
        stack = contextlib.AsyncExitStack()
        if call.kind != "meta":
            stack.enter_context(service.track(job_id, call.kind, call.model))

        def fail(reason: str) -> Exception:
            return EngineError(f"Ollama on {me}: {reason}")

        try:
            try:
                response = await stack.enter_async_context(
                    service.client.stream(call.path, content=_content(call.body), content_type=call.content_type)
                )
            except EngineError:
                service.poke()
                raise
            if response.status_code != 200:  # Ollama's own answer, passed on or retried elsewhere as it says
                body = await read_capped(response, MAX_ERROR_BYTES, me, truncate=True)
                content_type = response.headers.get("content-type", "")
                if response.status_code == 404 and call.path in NEWER_APIS and "json" not in content_type:
                    ollama = " ".join(filter(None, ("Ollama", service.version)))
                    raise self._refuse(501, f"{ollama} on {me} does not serve {call.path}: it needs Ollama "
                                       f"{NEWER_APIS[call.path]} or later", Reason.NO_ENGINE)  # fmt: skip
                raise PeerRefused(me, response.status_code, body, content_type)
            content_type = _checked(me, response.headers.get("content-type", "application/json"))
            reader = Reader(response.aiter_bytes(), framing(content_type), fail=fail,
                            on_frames=lambda n: service.active.add_tokens(job_id, n))  # fmt: skip
            head = await reader.head()
        except BaseException:
            await stack.aclose()
            raise
        return Opened(node=me, model=call.model, content_type=content_type, head=head, reader=reader,
                      close=stack.aclose)  # fmt: skip

    async def _transcribe_here(self, call: Call, job_id: str) -> Opened:
        service = self.stt
        me = self.me
        audio = call.audio
        assert audio is not None
        if service is None or not service.models():
            raise self._refuse(503, f"{me} cannot transcribe: no Whisper engine or model", Reason.NO_ENGINE)
        if not service.enabled:
            raise self._refuse(503, f"transcription is switched off on {me}", Reason.DISABLED)
        try:
            service.resolve(audio.model)
        except RequestError as exc:
            raise self._refuse(exc.status, exc.message, Reason.NOT_INSTALLED,
                               available=sorted(service.models())) from exc  # fmt: skip
        transcript = await service.transcribe(audio.audio, model=audio.model, language=audio.language, job_id=job_id)
        body, content_type = transcript_body(transcript, audio.response_format)
        return Opened(node=me, model=transcript.model, content_type=content_type, head=body, reader=None,
                      close=nothing)  # fmt: skip

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
        snapshot = self._dispatcher.snapshot()
        peers = [p for p in snapshot.peers if not p.is_self and p.status in LIVE
                 and isinstance(p.document.get("llm"), dict) and p.document["llm"].get("models")]  # fmt: skip

        async def remote(node_id: str, section: dict[str, Any]) -> tuple[str, list[dict[str, Any]]]:
            fallback_key = "loaded" if path == "/api/ps" else "models"
            names = section.get(fallback_key)
            fallback = (
                [{"name": n, "model": n} for n in names if isinstance(n, str)] if isinstance(names, list) else []
            )
            client = self._clients.for_node(node_id)
            if client is None:
                return node_id, fallback
            try:
                doc = await client.get_json(path, LIST_TIMEOUT_S, headers={H_FORWARDED: "1"})
            except (PeerRefused, PeerUnreachable) as exc:
                logger.debug("model list from %s failed: %s", node_id, exc)
                return node_id, fallback
            models = doc.get("models")
            return node_id, [m for m in models if isinstance(m, dict)] if isinstance(models, list) else fallback

        results = await asyncio.gather(self.local_list(path), *(remote(p.node_id, p.document["llm"]) for p in peers))
        return [(self.me, results[0]), *results[1:]]

    def ollama_version(self) -> str | None:
        """This peer's Ollama version, else the first one another peer advertises."""
        if self.llm is not None and self.llm.reachable and self.llm.version:
            return self.llm.version
        for peer in self._dispatcher.snapshot().peers:
            llm = peer.document.get("llm")
            ollama = llm.get("ollama") if isinstance(llm, dict) else None
            version = ollama.get("version") if isinstance(ollama, dict) else None
            if peer.status == "up" and isinstance(version, str) and version:
                return version
        return None


LIST_TIMEOUT_S = 2.0  # one peer's share of /api/tags, /api/ps, /v1/models


class _Entry:
    """One client request as the attempt loop drives it."""

    movable = False  # an LLM request is never redirected or stolen: the best peer is picked on arrival

    def __init__(self, dispatch: ModelDispatch, call: Call, job_id: str) -> None:
        self._dispatch = dispatch
        self.call = call
        self.job_id = job_id
        self.work = Work.request(call.kind, call.key, job_id)

    def rank(self, snapshot: MeshSnapshot, pending: list[Sent], rng: Rng) -> list[Choice]:
        facts = snapshot.model_facts(self.call.kind)
        return model_scoring.rank_peers(facts, self.work, self.call.costs, sent=pending, rng=rng)

    def sent(self, snapshot: MeshSnapshot, node_id: str, pending: list[Sent], now: float) -> Sent:
        target = next(f for f in snapshot.model_facts(self.call.kind) if f.node_id == node_id)
        return model_scoring.sent_for(target, self.work, self.call.costs, sent=pending, now=now)

    async def here(self, attempts: Attempts, snapshot: MeshSnapshot) -> Opened:
        return await self._dispatch.open_here(self.call, self.job_id)

    async def there(self, node_id: str, attempts: Attempts, release: Callable[[], None]) -> Opened:
        return await self._dispatch.open_remote(self.call, node_id, self.job_id, release)

    def give_up(self, attempts: Attempts, snapshot: MeshSnapshot) -> RequestError:
        setting = SETTING_FOR.get(self.call.kind)
        available = sorted(snapshot.holders(self.call.kind))
        return attempts.give_up(
            what=WHAT[self.call.kind], model=self.call.model, setting=setting, available=available
        )


def _content(body: bytes | Callable[[], AsyncIterator[bytes]]) -> bytes | AsyncIterator[bytes]:
    return body if isinstance(body, bytes) else body()


def _checked(node_id: str, content_type: str) -> str:
    if not relayable(content_type):
        raise PeerRefused.of(node_id, 502, f"{node_id} answered with {content_type or 'no content type'}, which is "
                             "not passed on", Reason.ENGINE_FAILED)  # fmt: skip
    return content_type


def transcript_body(transcript: Transcript, response_format: str) -> tuple[bytes, str]:
    """The transcription answer: JSON `{text, language, duration, segments}` (also for OpenAI's json and
    verbose_json), or the bare text."""
    if response_format == "text":
        return (transcript.text + "\n").encode(), "text/plain; charset=utf-8"
    return json.dumps(transcript.to_json()).encode(), "application/json"
