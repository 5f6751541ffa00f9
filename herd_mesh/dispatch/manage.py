"""Model management on one peer's Ollama: pull, delete, copy and create, where the request says.

These are not work to balance but changes a person asks for, so they are not run by the attempt loop: a delete,
copy or create runs on the peer the request names; a pull runs there too, or, with no peer named, on the one
`core.model_placement` picks (most free memory, then disk). Nothing is retried on another peer: a model lands
where the user was told it would, or the error names the peer that refused. Progress (Ollama's NDJSON lines)
is relayed as Ollama writes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..core import model_scoring
from ..core.manage_request import ManageRequest
from ..core.model_placement import PullCandidate, needed_gb, pull_order
from ..core.protocol import H_FORWARDED
from ..core.views import LIVE, MeshSnapshot, PeerState
from ..errors import EngineError, PeerRefused, PeerUnreachable, RequestError
from ..mesh.clients import MAX_ERROR_BYTES, PeerClients, read_capped
from ..services import model_disk
from ..services.ollama_service import OllamaService
from .dispatcher import Dispatcher
from .images import new_job_id
from .models import Call, ModelDispatch
from .relay import Opened, Reader, framing, nothing, relayable

logger = logging.getLogger(__name__)

DISK_TIMEOUT_S = 2.0  # one peer's answer to "how much disk is free"; silence counts as unknown
METHODS = {"delete": "DELETE"}  # Ollama's method for each operation; POST for the others


class ModelManager:
    """Runs pull, delete, copy and create on the named (or chosen) peer's Ollama; one per peer."""

    def __init__(
        self,
        *,
        dispatcher: Dispatcher,
        clients: PeerClients,
        models: ModelDispatch,
        llm: OllamaService | None,
        models_dir: Path,
    ) -> None:
        self._dispatcher = dispatcher
        self._clients = clients
        self._models = models
        self._llm = llm
        self._models_dir = models_dir

    @property
    def me(self) -> str:
        return self._dispatcher.me

    # -- entry side -----------------------------------------------------------------------------------------------
    async def open(self, req: ManageRequest, raw: bytes) -> Opened:
        """Start `req` where it belongs; the answer's first line is held until it is whole."""
        snapshot = self._dispatcher.snapshot()
        node = self._named(req.node, snapshot) if req.node else await self._placed(req.model, snapshot)
        logger.info("%s %s on %s (asked at %s)", req.op, req.model, node, self.me)
        if node == self.me:
            return await self.open_here(req)
        call = Call(kind="meta", api="ollama", path=f"/api/{req.op}", body=raw, model=req.model)
        return await self._models.open_remote(call, node, new_job_id(), release=lambda: None)

    def _named(self, node: str, snapshot: MeshSnapshot) -> str:
        peers = {p.node_id: p for p in snapshot.peers}
        peer = peers.get(node)
        if peer is None:
            raise RequestError(f"no peer named {node!r} in the mesh; peers: {', '.join(sorted(peers))}", 404,
                               peers=sorted(peers))  # fmt: skip
        if peer.status not in LIVE:
            raise RequestError(f"{node} is {peer.status}: it cannot be asked now", 503)
        return node

    async def _placed(self, model: str, snapshot: MeshSnapshot) -> str:
        """The peer a pull with no peer named goes to (`core.model_placement`)."""
        key = model_scoring.normalize_model(model)
        peers = [p for p in snapshot.peers if p.status in LIVE and _ollama_up(p)]
        disks = await asyncio.gather(*(self._disk_of(p) for p in peers))
        sizes: list[int] = []
        candidates = []
        for peer, disk in zip(peers, disks, strict=True):
            llm = _section(peer.document, "llm")
            installed = {model_scoring.normalize_model(m) for m in llm.get("models") or () if isinstance(m, str)}
            for name, size in _section(llm, "sizes").items():
                bytes_ = _number(size)
                if isinstance(name, str) and model_scoring.normalize_model(name) == key and bytes_ is not None:
                    sizes.append(int(bytes_))
            memory = _section(peer.document, "system").get("memory_available_gb")
            candidates.append(PullCandidate(
                node_id=peer.node_id, is_self=peer.is_self, disk_free_gb=disk, has_model=key in installed,
                memory_available_gb=_number(memory) or 0.0,
            ))  # fmt: skip
        return pull_order(candidates, model, needed_gb(sizes))[0].node_id

    async def _disk_of(self, peer: PeerState) -> float | None:
        if peer.is_self:
            return await asyncio.to_thread(model_disk.free_gb, self._models_dir)
        client = self._clients.for_node(peer.node_id)
        if client is None:
            return None
        try:
            doc = await client.get_json("/mesh/disk", DISK_TIMEOUT_S, headers={H_FORWARDED: "1"})
        except (PeerRefused, PeerUnreachable) as exc:
            logger.debug("free disk of %s unknown: %s", peer.node_id, exc)
            return None
        return _number(doc.get("ollama_models_free_gb"))

    def disk(self) -> dict[str, Any]:
        """This peer's answer to `GET /mesh/disk`."""
        return {"node": self.me, "ollama_models_free_gb": model_disk.free_gb(self._models_dir)}

    # -- where it runs -------------------------------------------------------------------------------------------
    async def open_here(self, req: ManageRequest) -> Opened:
        """Run `req` on this peer's Ollama (the entry's choice, or a peer's forwarded request)."""
        service = self._llm
        me = self.me
        if service is None:
            raise RequestError(f"{me} has no Ollama service", 503)
        stack = contextlib.AsyncExitStack()
        stack.callback(service.poke)  # what is installed changed: read /api/tags again now

        def fail(reason: str) -> Exception:
            return EngineError(f"Ollama on {me}: {reason}")

        try:
            try:
                response = await stack.enter_async_context(
                    service.client.stream(
                        f"/api/{req.op}",
                        content=req.ollama_body,
                        content_type="application/json",
                        method=METHODS.get(req.op, "POST"),
                    )  # fmt: skip
                )
            except EngineError as exc:
                raise RequestError(f"{req.op} of {req.model!r} on {me} failed: {exc}", 503) from exc
            content_type = response.headers.get("content-type", "")
            if response.status_code != 200:  # Ollama's own answer (an unknown model, a bad name), as it wrote it
                body = await read_capped(response, MAX_ERROR_BYTES, me, truncate=True)
                raise PeerRefused(me, response.status_code, body, content_type)
            reader = Reader(response.aiter_bytes(), framing(content_type), fail=fail)
            head = await reader.head()
            if reader.done and not head.strip():  # delete and copy answer 200 with no body
                await stack.aclose()
                done = {"status": "success", "model": req.model, "node": me}
                return Opened(node=me, model=req.model, content_type="application/json",
                              head=json.dumps(done).encode(), reader=None, close=nothing)  # fmt: skip
            if not relayable(content_type):
                raise RequestError(f"Ollama on {me} answered with {content_type or 'no content type'}", 502)
        except BaseException:
            await stack.aclose()
            raise
        return Opened(node=me, model=req.model, content_type=content_type, head=head, reader=reader,
                      close=stack.aclose)  # fmt: skip


def _ollama_up(peer: PeerState) -> bool:
    return _section(_section(peer.document, "llm"), "ollama").get("reachable") is True


def _section(doc: Any, key: str) -> Mapping[str, Any]:
    """A part of a peer's document, or {} when it is missing or of the wrong shape (documents are untrusted)."""
    value = doc.get(key) if isinstance(doc, Mapping) else None
    return value if isinstance(value, Mapping) else {}


def _number(value: Any) -> float | None:
    """A finite, non-negative number, else None (another peer's document is untrusted)."""
    ok = isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value < float("inf")
    return float(value) if ok else None
