"""`Client`: the mesh from Python, blocking. See `AsyncClient` for asyncio."""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Literal, overload
from urllib.parse import quote

import httpx

from ..errors import HerdError, PeerUnreachable
from . import _common as common
from ._common import DEFAULT_MODEL, DEFAULT_TIMEOUT_S, LOCAL_URL, PROBE_TIMEOUT_S, SHORT_TIMEOUT_S, Retry, Target
from ._discovery import Found, browse
from ._errors import NoPeerFound, RequestFailed
from ._manage import Progress, delete_body, finished, progress_line, pull_body, pull_broke
from ._models import ChatResult, Embeddings, ImageResult, Job, ModelInfo, PeerInfo, Transcript
from ._streams import ChatStream

logger = logging.getLogger(__name__)

Audio = str | Path | bytes | IO[bytes]
ErrorFactory = Callable[[int, httpx.Headers, bytes], RequestFailed]


def new_request_id() -> str:
    return uuid.uuid4().hex


def audio_upload(audio: Audio) -> tuple[str, bytes]:
    if isinstance(audio, bytes):
        return "audio", audio
    if isinstance(audio, str | Path):
        path = Path(audio).expanduser()
        return path.name, path.read_bytes()
    audio.seek(0)
    return Path(str(getattr(audio, "name", "audio"))).name, audio.read()


def lost(target: Target, words: str, unsent: bool) -> PeerUnreachable:
    """The error for a peer that went away and was not replaced."""
    who = target.node_id or target.url
    if unsent:
        return PeerUnreachable(who, f"{words} at {target.url}, and no other peer could take the request")
    return PeerUnreachable(
        who,
        f"{words} at {target.url} while it had the request; it was not sent again, so it cannot run twice. "
        "Retry if it is safe to",
    )


class Client:
    """A blocking client for a herd-mesh: image generation, chat, embeddings, speech-to-text and the mesh's state.

    With no `url` (and no `HERD_URL`), the first call finds a peer over mDNS: this machine's own peer when it
    runs one, else the least loaded of mesh `mesh` (`HERD_MESH`, default "default"). If that peer goes away, the
    client finds another by itself; a request is sent again only when that cannot make it run twice (a read, or
    a request that never reached the peer), otherwise `PeerUnreachable` says so.

    Use it in a `with` block, or call `close()`:

        with herd_mesh.Client() as herd:
            herd.generate_image("a lighthouse at dawn").save("lighthouse.png")
    """

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
        """`url`: a peer (`http://studio.local:11435`, `studio.local`); `timeout`: seconds to wait for an answer
        (None: forever); `discovery_timeout`: how long to listen for mDNS announcements; `failover`: move to
        another peer when this one goes away; `api_key`: for a mesh whose peers need one (`HERD_API_KEY`; on a
        member Mac, the mesh key in its data dir is sent to its own peer)."""
        self.mesh = common.mesh_name(mesh)
        self._explicit = common.explicit_target(url)
        self._discovery_timeout = discovery_timeout
        self._key = common.local_key_fingerprint()  # a member Mac's client only uses members of its mesh
        self._failover = failover
        self._http = httpx.Client(
            timeout=httpx.Timeout(timeout, connect=common.CONNECT_TIMEOUT_S),
            trust_env=False,
            auth=common.key_auth(api_key),
        )
        self._lock = threading.Lock()
        self._target: Target | None = None
        self._alternates: list[Found] = []

    # -- lifecycle -------------------------------------------------------------------------------------------------
    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- which peer ------------------------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        """The peer this client talks to (found on first use)."""
        return self._current(set(), []).url

    @property
    def node(self) -> str | None:
        """That peer's node id, when known (a peer given by URL is not asked)."""
        return self._current(set(), []).node_id

    def _probe(self, url: str) -> str | None:
        try:
            return common.ping_node(
                self._http.get(url + common.PROBE_PATH, timeout=PROBE_TIMEOUT_S), self.mesh, self._key
            )
        except httpx.HTTPError:
            return None

    def _current(self, exclude: set[str], failures: list[str]) -> Target:
        with self._lock:
            if self._target is None or self._target.url in exclude:
                self._target = self._find(exclude, failures)
            return self._target

    def _find(self, exclude: set[str], failures: list[str]) -> Target:
        explicit = self._explicit
        if explicit is not None and explicit.url not in exclude:
            return explicit
        tried = list(failures)
        if explicit is not None and not self._failover:
            raise NoPeerFound(self.mesh, tried)
        for found in self._alternates:
            if found.url not in exclude and (node := self._probe(found.url)):
                return Target(found.url, node, "mDNS")
        if LOCAL_URL not in exclude:
            node = self._probe(LOCAL_URL)
            if node:
                return Target(LOCAL_URL, node, "local peer")
            tried.append(f"this machine's peer at {LOCAL_URL}: none of mesh {self.mesh!r}")
        found_list = browse(self.mesh, self._discovery_timeout, exclude=frozenset(exclude), key=self._key)
        tried.append(f"mDNS for {self._discovery_timeout:g} s: {len(found_list)} peer(s) of mesh {self.mesh!r}")
        for i, found in enumerate(found_list):
            node = self._probe(found.url)
            if node:
                self._alternates = found_list[i + 1 :]
                return Target(found.url, node, "mDNS")
            tried.append(f"{found.node_id} at {found.url}: did not answer")
        raise NoPeerFound(self.mesh, tried)

    def _forget(self, target: Target) -> None:
        with self._lock:
            if self._target == target:
                self._target = None

    def _send(
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
            target = self._current(exclude, failures)
            request = self._http.build_request(method, target.url + path, **kwargs)
            try:
                response = self._http.send(request, stream=stream)
            except httpx.TransportError as exc:
                unsent, words = common.transport_failure(exc)
                failures.append(f"{target.node_id or target.url} ({target.how}): {words}")
                self._forget(target)
                if exclude or not self._failover or not (unsent or retry is Retry.READ):
                    raise lost(target, words, unsent) from exc
                exclude.add(target.url)
                continue
            if response.status_code >= 400:
                body = response.read()
                response.close()
                raise errors(response.status_code, response.headers, body)
            return response

    def _get(self, path: str, **params: Any) -> dict[str, Any]:
        response = self._send("GET", path, Retry.READ, params=params or None, timeout=SHORT_TIMEOUT_S)
        return common.json_object(response)

    # -- images ----------------------------------------------------------------------------------------------------
    def generate_image(
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
        """Generate one image on the best Mac of the mesh and return it with where and how it was made.

        `steps` None: the model's default. `tags` show up in the statistics. `request_id` (default: a fresh one)
        is sent as `X-Request-Id`; `on_progress`, if given, is called with the job's `Job` every
        `progress_interval` seconds while it waits (from another thread). Raises `RequestFailed` with the
        server's message (and `attempts`), `NoPeerFound`, or `PeerUnreachable`."""
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
        stop = threading.Event()
        poller = None
        if on_progress is not None:
            poller = threading.Thread(
                target=self._poll, args=(rid, on_progress, progress_interval, stop), daemon=True
            )
            poller.start()
        try:
            response = self._send(
                "POST", "/api/generate-image", Retry.UNSENT, json=body, headers={"X-Request-Id": rid}
            )
        finally:
            stop.set()
            if poller is not None:
                poller.join()
        return common.image_result(response, rid, model)

    def _poll(
        self, request_id: str, on_progress: Callable[[Job], None], interval: float, stop: threading.Event
    ) -> None:
        while not stop.wait(interval):
            target = self._target
            if target is None:
                continue
            try:
                response = self._http.get(f"{target.url}/api/jobs/{quote(request_id, safe='')}", timeout=interval * 4)
                if response.status_code != 200:
                    continue
                progress = common.job(common.json_object(response), request_id)
            except (httpx.HTTPError, HerdError):
                continue
            if stop.is_set():
                return
            try:
                on_progress(progress)
            except Exception:
                logger.exception("on_progress raised; progress reports continue")

    def job(self, request_id: str) -> Job:
        """A job's progress (queued where, running on which Mac, step i of n), asked of any peer.
        `JobNotFound` when no peer knows the id."""
        response = self._send(
            "GET",
            f"/api/jobs/{quote(request_id, safe='')}",
            Retry.READ,
            errors=common.job_not_found,
            timeout=SHORT_TIMEOUT_S,
        )
        return common.job(common.json_object(response), request_id)

    # -- LLMs, embeddings, speech-to-text ----------------------------------------------------------------------------
    @overload
    def chat(
        self, model: str, messages: common.Messages, *, stream: Literal[False] = False, **options: Any
    ) -> ChatResult: ...

    @overload
    def chat(self, model: str, messages: common.Messages, *, stream: Literal[True], **options: Any) -> ChatStream: ...

    def chat(
        self, model: str, messages: common.Messages, *, stream: bool = False, **options: Any
    ) -> ChatResult | ChatStream:
        """Chat with an Ollama model on the Mac that has it loaded and the least to do.

        `messages`: Ollama/OpenAI-style `[{"role": "user", "content": "..."}]`, or just a string. `options` are
        Ollama's model options (`temperature=0.2`, `num_ctx=8192`, ...). With `stream=True`, returns a
        `ChatStream` that yields the text as it is written."""
        body = common.chat_body(model, messages, stream=stream, options=options)
        response = self._send("POST", "/api/chat", Retry.UNSENT, json=body, stream=stream)
        if stream:
            return ChatStream(response, model)
        return common.chat_result(response, model)

    def embed(self, model: str, input: str | Sequence[str]) -> Embeddings:
        """Embedding vectors for one text or several (`.embeddings`, one list of floats per text)."""
        body = {"model": model, "input": input if isinstance(input, str) else list(input)}
        return common.embeddings(self._send("POST", "/api/embed", Retry.READ, json=body), model)

    def transcribe(self, audio: Audio, *, model: str | None = None, language: str | None = None) -> Transcript:
        """Speech to text: `audio` is a path, bytes or a binary file (WAV, MP3, M4A, FLAC, OGG, WebM)."""
        name, data = audio_upload(audio)
        fields = {k: v for k, v in (("model", model), ("language", language)) if v}
        response = self._send("POST", "/api/transcribe", Retry.UNSENT, files={"audio": (name, data)}, data=fields)
        return common.transcript(response)

    # -- Ollama models: pull and delete, where asked ----------------------------------------------------------------
    def pull_model(
        self, model: str, *, node: str | None = None, on_progress: Progress | None = None
    ) -> dict[str, Any]:
        """Download an Ollama model onto the peer `node`, or, with none, onto the one the mesh picks (most free
        memory, then disk). `on_progress` gets each of Ollama's progress lines (`status`, `digest`, `total`,
        `completed`) as it arrives. Returns the last line (`{"status": "success"}`) and `node`, where it is now."""
        response = self._send("POST", "/api/pull", Retry.UNSENT, json=pull_body(model, node), stream=True)
        where = response.headers.get("X-Fleet-Node")
        last = None
        try:
            for line in response.iter_lines():
                progress = progress_line(line, where)
                if progress is not None:
                    last = progress
                    if on_progress is not None:
                        on_progress(progress)
        except httpx.TransportError as exc:
            raise pull_broke(where, exc) from exc
        finally:
            response.close()
        return finished(last, where)

    def delete_model(self, model: str, *, node: str, confirm: bool = False) -> dict[str, Any]:
        """Delete an Ollama model from the peer `node`. Models are never deleted without the user's confirmation:
        pass `confirm=True` once they gave it (without it, the mesh refuses with `RequestFailed`, 400)."""
        response = self._send("POST", "/api/delete", Retry.UNSENT, json=delete_body(model, node, confirm))
        return common.json_object(response)

    # -- the mesh ----------------------------------------------------------------------------------------------------
    def peers(self) -> list[PeerInfo]:
        """Every peer of the mesh as the answering peer sees it, itself included."""
        return common.peers(self._get("/mesh/peers"))

    def models(self) -> list[ModelInfo]:
        """Image models installed on some peer, and every LLM of the mesh's Ollamas."""
        return common.models(self._get("/api/image-models"), self._get("/api/tags"), self._get("/api/ps"))

    def health(self) -> dict[str, Any]:
        """The mesh's health (`/dashboard/api/health`): peers up/suspect/down, last day's activity, advice."""
        return self._get("/dashboard/api/health")

    def stats(self, *, hours: int = 24, kind: str | None = None) -> dict[str, Any]:
        """Statistics of the last `hours` across the mesh; `kind`: image, llm, embeddings or transcription."""
        params: dict[str, Any] = {"hours": hours}
        if kind:
            params["kind"] = kind
        return self._get("/dashboard/api/stats", **params)

    def settings(self) -> dict[str, Any]:
        """The settings in force on every peer."""
        return self._get("/dashboard/api/settings")

    def set_settings(self, **changes: Any) -> dict[str, Any]:
        """Change settings on every peer (`image_generation=False`); returns the settings now in force."""
        response = self._send("POST", "/dashboard/api/settings", Retry.UNSENT, json=changes, timeout=SHORT_TIMEOUT_S)
        return common.json_object(response)

    def ping(self) -> Mapping[str, Any]:
        """The answering peer's identity and state: node id, mesh, url, `now` (its clock) and `capabilities`."""
        return common.identity_of(self._get(common.PROBE_PATH))
