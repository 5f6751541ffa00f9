"""`AsyncClient`: the same as `Client`, for asyncio."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping, Sequence
from types import TracebackType
from typing import Any, Literal, overload
from urllib.parse import quote

import httpx

from ..errors import HerdError
from . import _common as common
from ._client import Audio, ErrorFactory, audio_upload, lost, new_request_id
from ._common import DEFAULT_MODEL, DEFAULT_TIMEOUT_S, LOCAL_URL, PROBE_TIMEOUT_S, SHORT_TIMEOUT_S, Retry, Target
from ._discovery import Found, browse
from ._errors import NoPeerFound
from ._manage import Progress, delete_body, finished, progress_line, pull_body, pull_broke
from ._models import ChatResult, Embeddings, ImageResult, Job, ModelInfo, PeerInfo, Transcript
from ._streams import AsyncChatStream

logger = logging.getLogger(__name__)


class AsyncClient:
    """`Client` for asyncio: the same methods, awaited; the same peer finding and failover.

        async with herd_mesh.AsyncClient() as herd:
            images = await asyncio.gather(*(herd.generate_image(p) for p in prompts))
            async for text in await herd.chat("llama3", "Hello", stream=True):
                print(text, end="")

    Calls may run concurrently: the mesh spreads concurrent image requests over its Macs."""

    def __init__(
        self,
        url: str | None = None,
        *,
        mesh: str | None = None,
        timeout: float | None = DEFAULT_TIMEOUT_S,
        discovery_timeout: float = 2.0,
        failover: bool = True,
        api_key: str | None = None,
    ) -> None:
        """See `Client`."""
        self.mesh = common.mesh_name(mesh)
        self._explicit = common.explicit_target(url)
        self._discovery_timeout = discovery_timeout
        self._key = common.local_key_fingerprint()  # a member Mac's client only uses members of its mesh
        self._failover = failover
        self._http = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout, connect=common.CONNECT_TIMEOUT_S),
            trust_env=False,
            auth=common.key_auth(api_key),
        )
        self._lock: asyncio.Lock | None = None
        self._target: Target | None = None
        self._alternates: list[Found] = []

    # -- lifecycle -------------------------------------------------------------------------------------------------
    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    # -- which peer ------------------------------------------------------------------------------------------------
    async def url(self) -> str:
        """The peer this client talks to (found on first use)."""
        return (await self._current(set(), [])).url

    async def node(self) -> str | None:
        """That peer's node id, when known."""
        return (await self._current(set(), [])).node_id

    async def _probe(self, url: str) -> str | None:
        try:
            response = await self._http.get(url + common.PROBE_PATH, timeout=PROBE_TIMEOUT_S)
        except httpx.HTTPError:
            return None
        return common.ping_node(response, self.mesh, self._key)

    async def _current(self, exclude: set[str], failures: list[str]) -> Target:
        if self._lock is None:
            self._lock = asyncio.Lock()  # made here: it belongs to the loop that runs the calls
        async with self._lock:
            if self._target is None or self._target.url in exclude:
                self._target = await self._find(exclude, failures)
            return self._target

    async def _find(self, exclude: set[str], failures: list[str]) -> Target:
        explicit = self._explicit
        if explicit is not None and explicit.url not in exclude:
            return explicit
        tried = list(failures)
        if explicit is not None and not self._failover:
            raise NoPeerFound(self.mesh, tried)
        for found in self._alternates:
            if found.url not in exclude and (node := await self._probe(found.url)):
                return Target(found.url, node, "mDNS")
        if LOCAL_URL not in exclude:
            node = await self._probe(LOCAL_URL)
            if node:
                return Target(LOCAL_URL, node, "local peer")
            tried.append(f"this machine's peer at {LOCAL_URL}: none of mesh {self.mesh!r}")
        found_list = await asyncio.to_thread(
            browse, self.mesh, self._discovery_timeout, exclude=frozenset(exclude), key=self._key
        )
        tried.append(f"mDNS for {self._discovery_timeout:g} s: {len(found_list)} peer(s) of mesh {self.mesh!r}")
        for i, found in enumerate(found_list):
            node = await self._probe(found.url)
            if node:
                self._alternates = found_list[i + 1 :]
                return Target(found.url, node, "mDNS")
            tried.append(f"{found.node_id} at {found.url}: did not answer")
        raise NoPeerFound(self.mesh, tried)

    def _forget(self, target: Target) -> None:
        if self._target == target:
            self._target = None

    async def _send(
        self,
        method: str,
        path: str,
        retry: Retry,
        *,
        stream: bool = False,
        errors: ErrorFactory = common.error_from,
        **kwargs: Any,
    ) -> httpx.Response:
        exclude: set[str] = set()
        failures: list[str] = []
        while True:
            target = await self._current(exclude, failures)
            request = self._http.build_request(method, target.url + path, **kwargs)
            try:
                response = await self._http.send(request, stream=stream)
            except httpx.TransportError as exc:
                unsent, words = common.transport_failure(exc)
                failures.append(f"{target.node_id or target.url} ({target.how}): {words}")
                self._forget(target)
                if exclude or not self._failover or not (unsent or retry is Retry.READ):
                    raise lost(target, words, unsent) from exc
                exclude.add(target.url)
                continue
            if response.status_code >= 400:
                body = await response.aread()
                await response.aclose()
                raise errors(response.status_code, response.headers, body)
            return response

    async def _get(self, path: str, **params: Any) -> dict[str, Any]:
        response = await self._send("GET", path, Retry.READ, params=params or None, timeout=SHORT_TIMEOUT_S)
        return common.json_object(response)

    # -- images ----------------------------------------------------------------------------------------------------
    async def generate_image(
        self,
        prompt: str,
        *,
        model: str = DEFAULT_MODEL,
        width: int = 1024,
        height: int = 1024,
        steps: int | None = None,
        quantize: int = 8,
        seed: int | None = None,
        guidance: float | None = None,
        negative_prompt: str | None = None,
        tags: Sequence[str] = (),
        request_id: str | None = None,
        on_progress: Callable[[Job], None] | None = None,
        progress_interval: float = 0.5,
    ) -> ImageResult:
        """See `Client.generate_image`; `on_progress` is called in the event loop."""
        rid = request_id or new_request_id()
        body = common.image_body(
            prompt,
            model=model,
            width=width,
            height=height,
            steps=steps,
            quantize=quantize,
            seed=seed,
            guidance=guidance,
            negative_prompt=negative_prompt,
            tags=tags,
        )
        poller = None
        if on_progress is not None:
            poller = asyncio.create_task(self._poll(rid, on_progress, progress_interval))
        try:
            response = await self._send(
                "POST", "/api/generate-image", Retry.UNSENT, json=body, headers={"X-Request-Id": rid}
            )
        finally:
            if poller is not None:
                poller.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await poller
        return common.image_result(response, rid, model)

    async def _poll(self, request_id: str, on_progress: Callable[[Job], None], interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            target = self._target
            if target is None:
                continue
            try:
                response = await self._http.get(
                    f"{target.url}/api/jobs/{quote(request_id, safe='')}", timeout=interval * 4
                )
                if response.status_code != 200:
                    continue
                progress = common.job(common.json_object(response), request_id)
            except (httpx.HTTPError, HerdError):
                continue
            try:
                on_progress(progress)
            except Exception:
                logger.exception("on_progress raised; progress reports continue")

    async def job(self, request_id: str) -> Job:
        """See `Client.job`."""
        response = await self._send(
            "GET",
            f"/api/jobs/{quote(request_id, safe='')}",
            Retry.READ,
            errors=common.job_not_found,
            timeout=SHORT_TIMEOUT_S,
        )
        return common.job(common.json_object(response), request_id)

    # -- LLMs, embeddings, speech-to-text ----------------------------------------------------------------------------
    @overload
    async def chat(
        self, model: str, messages: common.Messages, *, stream: Literal[False] = False, **options: Any
    ) -> ChatResult: ...

    @overload
    async def chat(
        self, model: str, messages: common.Messages, *, stream: Literal[True], **options: Any
    ) -> AsyncChatStream: ...

    async def chat(
        self, model: str, messages: common.Messages, *, stream: bool = False, **options: Any
    ) -> ChatResult | AsyncChatStream:
        """See `Client.chat`: `async for text in await herd.chat(model, messages, stream=True)`."""
        body = common.chat_body(model, messages, stream=stream, options=options)
        response = await self._send("POST", "/api/chat", Retry.UNSENT, json=body, stream=stream)
        if stream:
            return AsyncChatStream(response, model)
        return common.chat_result(response, model)

    async def embed(self, model: str, input: str | Sequence[str]) -> Embeddings:
        """See `Client.embed`."""
        body = {"model": model, "input": input if isinstance(input, str) else list(input)}
        return common.embeddings(await self._send("POST", "/api/embed", Retry.READ, json=body), model)

    async def transcribe(self, audio: Audio, *, model: str | None = None, language: str | None = None) -> Transcript:
        """See `Client.transcribe`."""
        name, data = await asyncio.to_thread(audio_upload, audio)
        fields = {k: v for k, v in (("model", model), ("language", language)) if v}
        response = await self._send(
            "POST", "/api/transcribe", Retry.UNSENT, files={"audio": (name, data)}, data=fields
        )
        return common.transcript(response)

    # -- Ollama models: pull and delete, where asked ----------------------------------------------------------------
    async def pull_model(
        self, model: str, *, node: str | None = None, on_progress: Progress | None = None
    ) -> dict[str, Any]:
        """See `Client.pull_model`."""
        response = await self._send("POST", "/api/pull", Retry.UNSENT, json=pull_body(model, node), stream=True)
        where = response.headers.get("X-Fleet-Node")
        last = None
        try:
            async for line in response.aiter_lines():
                progress = progress_line(line, where)
                if progress is not None:
                    last = progress
                    if on_progress is not None:
                        on_progress(progress)
        except httpx.TransportError as exc:
            raise pull_broke(where, exc) from exc
        finally:
            await response.aclose()
        return finished(last, where)

    async def delete_model(self, model: str, *, node: str, confirm: bool = False) -> dict[str, Any]:
        """See `Client.delete_model`."""
        response = await self._send("POST", "/api/delete", Retry.UNSENT, json=delete_body(model, node, confirm))
        return common.json_object(response)

    # -- the mesh ----------------------------------------------------------------------------------------------------
    async def peers(self) -> list[PeerInfo]:
        """See `Client.peers`."""
        return common.peers(await self._get("/mesh/peers"))

    async def models(self) -> list[ModelInfo]:
        """See `Client.models`."""
        image, tags, ps = await asyncio.gather(
            self._get("/api/image-models"), self._get("/api/tags"), self._get("/api/ps")
        )
        return common.models(image, tags, ps)

    async def health(self) -> dict[str, Any]:
        """See `Client.health`."""
        return await self._get("/dashboard/api/health")

    async def stats(self, *, hours: int = 24, kind: str | None = None) -> dict[str, Any]:
        """See `Client.stats`."""
        params: dict[str, Any] = {"hours": hours}
        if kind:
            params["kind"] = kind
        return await self._get("/dashboard/api/stats", **params)

    async def settings(self) -> dict[str, Any]:
        """See `Client.settings`."""
        return await self._get("/dashboard/api/settings")

    async def set_settings(self, **changes: Any) -> dict[str, Any]:
        """See `Client.set_settings`."""
        response = await self._send(
            "POST", "/dashboard/api/settings", Retry.UNSENT, json=changes, timeout=SHORT_TIMEOUT_S
        )
        return common.json_object(response)

    async def ping(self) -> Mapping[str, Any]:
        """See `Client.ping`."""
        return common.identity_of(await self._get(common.PROBE_PATH))
