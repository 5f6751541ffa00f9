"""Where an image request runs: scored over every capable peer (this one included), then tried best first.

The entry peer (the one the client called) owns the request until the client has its PNG: it forwards to the
best peer with one hop only, counts what it sent until the target advertises it, and on refusal, 5xx, an
unreachable peer or one that dies mid-job, marks that peer suspect and tries the next best. Only when every
candidate failed does the client get 502/503, with each peer's reason.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
import uuid
from dataclasses import dataclass
from typing import Any

from . import image_models
from .engines.base import ImageJob
from .errors import EngineError, PeerRefused, PeerUnreachable, RequestError
from .gpu_queue import Withdrawn
from .image_service import ImageService, view_from_state
from .node import Node
from .peer_client import H_FORWARDED, H_JOB, H_REDIRECTABLE, refusal
from .records import RequestRecord
from .scheduling import ImageWork, PeerView, Sent, rank, redirect_target, sent_record, steal_target
from .validation import MAX_SEED, ImageRequest

logger = logging.getLogger(__name__)

MAX_ATTEMPTS = 4  # peers tried for one request before giving up (moves to an idle peer do not count)
REDIRECT_MEMORY_S = 3.0  # seconds a "try X" answer counts as work on its way to X
STEAL_INTERVAL_S = 0.25  # how often an idle peer looks for queued work elsewhere
DEADLINE_S = 1800.0  # one overall deadline for a request, retries included
INSTALL_HINT = (
    "install mflux on a Mac of the mesh with `uv tool install mflux` (the peer notices within 30 s), then retry"
)


@dataclass(frozen=True)
class ImageResult:
    png: bytes
    node: str
    model: str
    seed: int
    generation_ms: int
    queue_ms: int
    attempts: int
    width: int
    height: int

    def headers(self) -> dict[str, str]:
        return {
            "X-Fleet-Node": self.node,
            "X-Fleet-Model": self.model,
            "X-Generation-Time": str(self.generation_ms),
            "X-Queue-Time": str(self.queue_ms),
            "X-Fleet-Seed": str(self.seed),
            "X-Fleet-Attempts": str(self.attempts),
            "X-Image-Size": f"{self.width}x{self.height}",
        }

    @classmethod
    def from_response(cls, png: bytes, headers: Any, fallback_node: str, attempts: int) -> ImageResult:
        size = str(headers.get("X-Image-Size", "0x0")).split("x")
        return cls(
            png=png,
            node=headers.get("X-Fleet-Node", fallback_node),
            model=headers.get("X-Fleet-Model", ""),
            seed=int(headers.get("X-Fleet-Seed", 0)),
            generation_ms=int(headers.get("X-Generation-Time", 0)),
            queue_ms=int(headers.get("X-Queue-Time", 0)),
            attempts=attempts,
            width=int(size[0]) if size[0].isdigit() else 0,
            height=int(size[-1]) if size[-1].isdigit() else 0,
        )


class ImageRouter:
    def __init__(self, node: Node, service: ImageService, *, rng: random.Random | None = None) -> None:
        self.node = node
        self.service = service
        self.rng = rng or random.Random()
        self.sent: dict[str, Sent] = {}  # jobs this peer forwarded and has no answer for yet
        self._redirected: dict[str, tuple[Sent, float]] = {}  # jobs we answered "try X" for, and when

    # -- views ------------------------------------------------------------------------------------------------
    def views(self) -> list[PeerView]:
        now = time.time()
        views = [self.service.view()]
        for peer in self.node.table.all():
            if peer.capabilities:
                views.append(view_from_state(peer.node_id, peer.status, peer.capabilities, is_self=False, now=now))
        return views

    def mesh_models(self) -> dict[str, list[str]]:
        """Model -> the peers (up or suspect) that have it installed."""
        out: dict[str, list[str]] = {}
        for view in self.views():
            if view.status in ("up", "suspect"):
                for model in view.installed:
                    out.setdefault(model, []).append(view.node_id)
        return out

    # -- the receiving side of a forwarded job -----------------------------------------------------------------
    async def run_here(self, req: ImageRequest, *, job_id: str, entry_node: str, redirectable: bool) -> ImageResult:
        """A peer sent us this job: run it here, or refuse with a reason it can act on.

        `redirectable` jobs (first hop) may be answered "busy, try X" on arrival, or later, while still queued,
        be handed to an idle peer that asks for work; either way the entry peer sends them on once more.
        """
        if not self.service.enabled:
            raise RequestError(f"image generation is switched off on {self.node.node_id}", 503, reason="disabled")
        if req.model not in self.service.installed():
            raise RequestError(f"{req.model} is not installed on {self.node.node_id}", 404, reason="not-installed")
        work = ImageWork(req.model, req.width, req.height, req.steps, job_id)
        if redirectable:
            here = self.service.view()
            others = [v for v in self.views() if not v.is_self]
            better = redirect_target(here, others, work, rng=self.rng, sent=self._pending())
            if better is not None:
                target = next(v for v in others if v.node_id == better.node_id)
                self._redirected[job_id] = (sent_record(target, work, now=time.time()), time.monotonic())
                raise RequestError(
                    f"{self.node.node_id} is busy; {better.node_id} would finish sooner ({better.reason})",
                    503,
                    reason="busy",
                    redirect_to=better.node_id,
                    queue_depth=self.service.queue.depth,
                )
        try:
            return await self._local(
                req, job_id=job_id, entry_node=entry_node, seed=req.seed or 0, attempts=1, movable=redirectable
            )
        except Withdrawn as exc:
            raise RequestError(
                f"{self.node.node_id} handed the queued job to idle {exc.to}", 503, reason="busy", redirect_to=exc.to
            ) from exc
        except EngineError as exc:
            raise RequestError(f"{self.node.node_id}: {exc}", 502, reason="engine-failed") from exc

    def _pending(self) -> list[Sent]:
        """Jobs sent on (forwarded, or redirected a moment ago) that their target may not advertise yet."""
        cutoff = time.monotonic() - REDIRECT_MEMORY_S
        for job_id, (_, at) in list(self._redirected.items()):
            if at < cutoff:
                del self._redirected[job_id]
        return [*self.sent.values(), *(sent for sent, _ in self._redirected.values())]

    async def _local(
        self, req: ImageRequest, *, job_id: str, entry_node: str, seed: int, attempts: int, movable: bool = True
    ) -> ImageResult:
        job = ImageJob(
            job_id, req.model, req.prompt, req.width, req.height, req.steps, req.quantize, seed, req.negative_prompt
        )
        output, queue_ms = await self.service.run(job, entry_node=entry_node, movable=movable)
        return ImageResult(
            output.png,
            self.node.node_id,
            req.model,
            seed,
            output.generation_ms + output.load_ms,
            queue_ms,
            attempts,
            req.width,
            req.height,
        )

    # -- the entry side ----------------------------------------------------------------------------------------
    def check_model(self, model: str) -> None:
        """404s before any work: an unknown name, or a known model no peer has installed."""
        available = self.mesh_models()
        if model in available:
            return
        if image_models.get(model) is None:
            raise RequestError(
                f"unknown image model {model!r}",
                404,
                available=sorted(available) or sorted(image_models.MODELS),
            )
        raise RequestError(
            f"no peer in the mesh has {model} installed: {INSTALL_HINT}",
            404,
            available=sorted(available),
            install="uv tool install mflux",
        )

    async def generate(self, req: ImageRequest, *, tags: tuple[str, ...] = ()) -> ImageResult:
        """Entry point for a client's request: pick, forward or run, fail over, and record the outcome."""
        job_id = uuid.uuid4().hex[:16]
        started = time.monotonic()
        try:
            if not self.service.enabled:
                raise _disabled_error()
            self.check_model(req.model)
            result = await self._dispatch(req, job_id)
        except asyncio.CancelledError:
            self._record(req, job_id, tags, status="cancelled", error="client disconnected")
            raise
        except RequestError as exc:
            self._record(req, job_id, tags, status="failed", error=exc.message)
            raise
        self._record(req, job_id, tags, status="ok", result=result)
        logger.info(
            "image %s %dx%d on %s in %d ms (queued %d ms, %d attempt%s, %.1f s total)",
            req.model, req.width, req.height, result.node, result.generation_ms, result.queue_ms,
            result.attempts, "" if result.attempts == 1 else "s", time.monotonic() - started,
        )  # fmt: skip
        return result

    async def _dispatch(self, req: ImageRequest, job_id: str) -> ImageResult:
        seed = req.seed if req.seed is not None else self.rng.randint(0, MAX_SEED)  # same image wherever it runs
        req = ImageRequest(**{**req.__dict__, "seed": seed})
        work = ImageWork(req.model, req.width, req.height, req.steps, job_id)
        deadline = time.monotonic() + DEADLINE_S
        failures: list[dict[str, str]] = []
        excluded: set[str] = set()
        prefer: str | None = None  # a "busy, try X" answer names X
        redirects_allowed = True
        attempts = 0
        while attempts < MAX_ATTEMPTS and time.monotonic() < deadline:
            views = [v for v in self.views() if v.node_id not in excluded]
            ranked = rank(views, work, sent=self._pending(), rng=self.rng)
            if not ranked:
                break
            choice = next((c for c in ranked if c.node_id == prefer), ranked[0])
            prefer = None
            attempts += 1
            logger.debug("job %s -> %s: %s", job_id, choice.node_id, choice.reason)
            if choice.node_id == self.node.node_id:
                try:
                    return await self._local(
                        req,
                        job_id=job_id,
                        entry_node=self.node.node_id,
                        seed=seed,
                        attempts=attempts,
                        movable=redirects_allowed,
                    )
                except Withdrawn as exc:
                    excluded.add(self.node.node_id)
                    prefer, redirects_allowed = exc.to, False
                    attempts -= 1  # moving to an idle peer is not a failure
                    continue
                except EngineError as exc:
                    failures.append({"node": self.node.node_id, "reason": str(exc)})
                    excluded.add(self.node.node_id)
                    continue
            view = next(v for v in views if v.node_id == choice.node_id)
            try:
                return await self._forward(
                    req, view, job_id, redirectable=redirects_allowed, attempts=attempts, deadline=deadline
                )
            except PeerRefused as exc:
                failures.append({"node": exc.node_id, "reason": exc.reason, "status": str(exc.status)})
                excluded.add(exc.node_id)
                if exc.body.get("reason") == "busy" and exc.body.get("redirect_to"):
                    prefer = str(exc.body["redirect_to"])
                    redirects_allowed = False
                elif exc.status >= 500 and exc.body.get("reason") != "disabled":
                    self.node.table.contact_failed(exc.node_id, now=time.time(), reason=exc.reason)
                elif exc.status < 500 and exc.body.get("reason") not in ("not-installed",):
                    extra = {k: v for k, v in exc.body.items() if k != "error"}
                    raise RequestError(exc.reason, exc.status, **extra) from exc
            except PeerUnreachable as exc:
                failures.append({"node": exc.node_id, "reason": f"unreachable: {exc.reason}"})
                excluded.add(exc.node_id)
                self.node.table.contact_failed(exc.node_id, now=time.time(), reason=exc.reason)
        raise self._all_failed(req, failures)

    async def _forward(
        self, req: ImageRequest, view: PeerView, job_id: str, *, redirectable: bool, attempts: int, deadline: float
    ) -> ImageResult:
        client = self.node.client_for(view.node_id)
        if client is None:
            raise PeerUnreachable(view.node_id, "left the mesh")
        work = ImageWork(req.model, req.width, req.height, req.steps, job_id)
        self.sent[job_id] = sent_record(view, work, sent=self._pending(), now=time.time())
        headers = {"Content-Type": "application/json", H_FORWARDED: "1", H_JOB: job_id}
        if redirectable:
            headers[H_REDIRECTABLE] = "1"
        try:
            response = await client.post(
                "/api/generate-image",
                content=json.dumps(req.to_json()).encode(),
                headers=headers,
                timeout=max(1.0, deadline - time.monotonic()),
            )
        finally:
            self.sent.pop(job_id, None)
        if response.status_code == 200 and response.headers.get("content-type", "").startswith("image/png"):
            return ImageResult.from_response(response.content, response.headers, view.node_id, attempts)
        raise refusal(view.node_id, response)

    # -- work stealing -------------------------------------------------------------------------------------------
    async def steal_loop(self) -> None:
        """When this peer runs dry, ask the most loaded peer for a queued job (late binding).

        The victim decides (`ImageService.give_away`) and answers its waiting request "busy, try <us>", so the
        entry peer, which still owns the client's connection, sends the job here.
        """
        while True:
            await asyncio.sleep(STEAL_INTERVAL_S)
            if self.node.leaving or not self.service.enabled or self.service.queue.depth:
                continue
            me = self.service.view()
            victim = steal_target(me, [v for v in self.views() if not v.is_self], rng=self.rng)
            client = self.node.client_for(victim) if victim else None
            if client is None:
                continue
            try:
                response = await client.post(
                    "/mesh/steal-image",
                    content=json.dumps({"image": self.service.state()}).encode(),
                    headers={"Content-Type": "application/json"},
                    timeout=2.0,
                )
            except PeerUnreachable as exc:
                self.node.table.contact_failed(exc.node_id, now=time.time(), reason=exc.reason)
                continue
            if response.status_code == 200 and response.json().get("job_id"):
                logger.info("took job %s from %s", response.json()["job_id"], victim)
                await asyncio.sleep(1.0)  # let the job arrive before asking again

    def _all_failed(self, req: ImageRequest, failures: list[dict[str, str]]) -> RequestError:
        if not failures:
            if not self.service.enabled and not any(v.accepting for v in self.views()):
                return _disabled_error()
            return RequestError(f"no peer that is up can run {req.model} right now", 503, attempts=[])
        if all("switched off" in f["reason"] for f in failures):
            return _disabled_error(attempts=failures)
        summary = "; ".join(f"{f['node']}: {f['reason']}" for f in failures)
        return RequestError(f"image generation failed on every peer tried ({summary})", 502, attempts=failures)

    def _record(
        self, req: ImageRequest, job_id: str, tags: tuple[str, ...], *, status: str,
        result: ImageResult | None = None, error: str | None = None,
    ) -> None:  # fmt: skip
        records = getattr(self.node, "records", None)
        if records is None:
            return
        store_prompt = bool(self.service.settings.get("store_prompts"))
        try:
            records.add(
                RequestRecord(
                    kind="image", model=req.model, status=status, node=result.node if result else None,
                    entry_node=self.node.node_id, width=req.width, height=req.height, steps=req.steps,
                    queue_ms=result.queue_ms if result else None,
                    generation_ms=result.generation_ms if result else None, error=error, tags=tags,
                    prompt=req.prompt if store_prompt else None, job_id=job_id,
                )
            )  # fmt: skip
        except Exception:
            logger.exception("could not record image request %s", job_id)


def _disabled_error(attempts: list[dict[str, str]] | None = None) -> RequestError:
    return RequestError(
        "image generation is switched off; turn it on with: "
        "curl -X POST http://localhost:11435/dashboard/api/settings "
        "-H 'Content-Type: application/json' -d '{\"image_generation\": true}'",
        503,
        attempts=attempts or [],
    )
