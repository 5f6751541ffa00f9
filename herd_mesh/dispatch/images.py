"""Image jobs: run by the one attempt loop, here or on the peer that finishes first.

The entry peer (the one the client called) owns the request until the client has its PNG: it forwards to the
best peer with one hop only, counts what it sent until the target advertises it, and on refusal, 5xx, an
unreachable peer or one that dies mid-job tries the next best. The receiving peer re-checks on arrival and may
answer "busy, try X" once; a job still queued may be stolen by an idle peer, and then goes there.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from ..core import catalogue
from ..core.attempts import Attempts, switched_off
from ..core.image_request import MAX_SEED, ImageJob, ImageRequest
from ..core.memory import fits, no_room_error
from ..core.protocol import H_FORWARDED, H_JOB, H_REDIRECTABLE
from ..core.ranking import can_serve, rank, redirect_target, sent_record, why_not
from ..core.rng import Rng
from ..core.views import LIVE, MeshSnapshot
from ..core.work import Choice, PeerView, Sent, Work
from ..errors import EngineError, JobMoved, PeerRefused, PeerUnreachable, Reason, RequestError
from ..mesh.clients import PeerClients, read_capped
from ..services.image_service import MAX_WAITING_JOBS, ImageService
from .dispatcher import Dispatcher
from .jobs import JobRecord, Jobs
from .recorder import Recorder, outcome
from .relay import while_alive

logger = logging.getLogger(__name__)

DEADLINE_S = 1800.0  # one overall deadline for a request, retries included
MAX_PNG_BYTES = 64 * 1024 * 1024  # a peer's image answer larger than this is refused
H_VISITED = "X-Herd-Visited"  # peers a forwarded job left: it never goes back to one of them
MESH_FULL_RETRY_S = 10  # Retry-After when every queue that could take the job is full
IGNORABLE = frozenset({"guidance", "negative_prompt"})  # what a peer may report as ignored


@dataclass(frozen=True)
class ImageResult:
    png: bytes
    node: str
    model: str
    seed: int
    generation_ms: int
    queue_ms: int  # the whole wait, from arrival at the entry peer to the start of generation
    attempts: int  # tries that failed, plus one
    width: int
    height: int
    moves: int = 0  # redirects and steals on the way
    reason: str = ""  # why it ran there
    request_id: str = ""
    steps: int = 0  # the steps it ran (the model's default when the request left them out)
    ignored: tuple[str, ...] = ()  # request fields the model does not use (negative_prompt on FLUX.1, ...)

    def headers(self) -> dict[str, str]:
        headers = {
            "X-Fleet-Node": self.node,
            "X-Fleet-Model": self.model,
            "X-Generation-Time": str(self.generation_ms),
            "X-Queue-Time": str(self.queue_ms),
            "X-Fleet-Seed": str(self.seed),
            "X-Fleet-Attempts": str(self.attempts),
            "X-Fleet-Moves": str(self.moves),
            "X-Image-Size": f"{self.width}x{self.height}",
            "X-Request-Id": self.request_id,
        }
        if self.steps:
            headers["X-Fleet-Steps"] = str(self.steps)
        if self.ignored:
            headers["X-Fleet-Ignored"] = ", ".join(self.ignored)
        if self.reason:
            headers["X-Fleet-Reason"] = self.reason.encode("ascii", "replace").decode()[:400]
        return headers

    @classmethod
    def from_response(cls, png: bytes, headers: Any, fallback_node: str, attempts: int) -> ImageResult:
        def number(name: str) -> int:
            value = str(headers.get(name, "0"))
            return int(value) if value.isascii() and value.isdigit() else 0

        size = str(headers.get("X-Image-Size", "0x0")).split("x")
        return cls(
            png=png,
            node=headers.get("X-Fleet-Node", fallback_node),
            model=headers.get("X-Fleet-Model", ""),
            seed=number("X-Fleet-Seed"),
            generation_ms=number("X-Generation-Time"),
            queue_ms=number("X-Queue-Time"),
            attempts=attempts,
            width=int(size[0]) if size[0].isdigit() else 0,
            height=int(size[-1]) if size[-1].isdigit() else 0,
            steps=number("X-Fleet-Steps"),
            ignored=tuple(
                sorted(IGNORABLE & {f.strip() for f in str(headers.get("X-Fleet-Ignored", "")).split(",")})
            ),
        )


class ImageDispatch:
    """The entry side (`generate`) and the receiving side (`serve_forwarded`) of image jobs on this peer."""

    def __init__(
        self,
        *,
        dispatcher: Dispatcher,
        service: ImageService,
        clients: PeerClients,
        recorder: Recorder,
        jobs: Jobs,
        rng: Rng,
    ) -> None:
        self._dispatcher = dispatcher
        self.service = service
        self._clients = clients
        self._recorder = recorder
        self.jobs = jobs
        self._rng = rng

    @property
    def me(self) -> str:
        return self._dispatcher.me

    # -- the entry side ----------------------------------------------------------------------------------------
    def check_model(self, model: str, snapshot: MeshSnapshot) -> None:
        """404s before any work: an unknown name, or a known model no peer has installed."""
        available = snapshot.holders("image")
        if model in available:
            return
        if catalogue.get(model) is None:
            raise RequestError(f"unknown image model {model!r}", 404,
                               available=sorted(available) or sorted(catalogue.MODELS))  # fmt: skip
        raise RequestError(f"no peer in the mesh has {model} installed: {catalogue.INSTALL_HINT}", 404,
                           available=sorted(available), install=catalogue.INSTALL_COMMAND)  # fmt: skip

    def check_room(self, model: str, snapshot: MeshSnapshot) -> None:
        """503 at once when every peer that could run it has a full queue: the mesh sheds load openly instead
        of letting the request wait out its deadline."""
        able = [v for v in snapshot.image_views if v.status in LIVE and v.accepting and model in v.installed]
        if not able:
            return
        capacity = sum(v.slots + MAX_WAITING_JOBS for v in able)
        load = sum(len(v.job_ids) for v in able) + len(self._dispatcher.ledger.pending(snapshot.now))
        if load >= capacity:
            raise RequestError(f"the mesh is full: {load} image jobs are running or waiting on the "
                               f"{len(able)} peer{'s' if len(able) > 1 else ''} with {model}; retry in a moment",
                               503, reason=Reason.OVERLOADED, retry_after=MESH_FULL_RETRY_S)  # fmt: skip

    async def rejected(self, body: Any, error: RequestError, *, job_id: str | None = None) -> None:
        """A client's request refused as malformed before routing: recorded apart from the mesh's failures."""
        self._recorder.rejected(kind="image", body=body, job_id=job_id or new_job_id(), error=error.message)
        await self._recorder.settle()

    async def generate(
        self, req: ImageRequest, *, tags: tuple[str, ...] = (), job_id: str | None = None
    ) -> ImageResult:
        """A client's request: pick, forward or run, fail over, and record the outcome."""
        job_id = job_id or new_job_id()
        started = time.monotonic()
        record = self.jobs.start(job_id, "image", req.model)
        try:
            if not self.service.enabled:
                raise switched_off("image generation", "image_generation")
            snapshot = self._dispatcher.snapshot()
            self.check_model(req.model, snapshot)
            self.check_room(req.model, snapshot)
            seed = req.seed if req.seed is not None else self._rng.randint(0, MAX_SEED)  # the same image anywhere
            entry = _Entry(self, req.job(job_id, seed), started + DEADLINE_S, record)
            tried = await self._dispatcher.run(entry)
        except BaseException as exc:
            cancelled = not isinstance(exc, Exception)
            error = "client disconnected" if cancelled else getattr(exc, "message", str(exc))
            self.jobs.finish(job_id, ok=False, error=error)
            status = outcome(exc, attempted=record.node is not None)
            self._recorder.image(req, job_id, tags, status=status, error=error, job=record, exc=exc)
            if status != "cancelled":
                await self._recorder.settle()
            raise
        waited = int((time.monotonic() - started) * 1000) - tried.result.generation_ms
        result = replace(tried.result, queue_ms=max(tried.result.queue_ms, waited), moves=tried.attempts.moves,
                         reason=record.reason, request_id=job_id)  # fmt: skip
        self.jobs.finish(job_id, ok=True)
        self._recorder.image(req, job_id, tags, status="ok", result=result, tried=tried.attempts.report())
        await self._recorder.settle()  # the answer leaves once its record is on the other peers too
        logger.info(
            "image %s %dx%d on %s in %d ms (queued %d ms, %d attempt%s, %.1f s total)",
            req.model, req.width, req.height, result.node, result.generation_ms, result.queue_ms,
            result.attempts, "" if result.attempts == 1 else "s", time.monotonic() - started,
        )  # fmt: skip
        return result

    async def run_local(
        self, job: ImageJob, snapshot: MeshSnapshot, *, entry_node: str, movable: bool, visited: frozenset[str],
        attempts: int,
    ) -> ImageResult:  # fmt: skip
        system = snapshot.peers[0].document.get("system")  # this peer's own metrics, read with the snapshot
        done = await self.service.run(job, entry_node=entry_node, movable=movable, visited=visited,
                                      system=system if isinstance(system, dict) else None)  # fmt: skip
        output = done.output
        return ImageResult(output.png, self.me, job.model, job.seed, output.generation_ms + output.load_ms,
                           done.queue_ms, attempts, job.width, job.height, steps=done.job.steps or 0,
                           ignored=done.ignored)  # fmt: skip

    # -- the receiving side of a forwarded job -----------------------------------------------------------------
    async def serve_forwarded(
        self, req: ImageRequest, *, job_id: str, entry_node: str, redirectable: bool, visited: frozenset[str]
    ) -> ImageResult:
        """A peer sent us this job: run it here, or refuse with a reason it can act on.

        `redirectable` jobs (first hop) may be answered "busy, try X" on arrival, or later, while still queued,
        be handed to an idle peer that asks for work; either way the entry peer sends them on once more.
        """
        me = self.me
        if not self.service.enabled:
            raise RequestError(f"image generation is switched off on {me}", 503, reason=Reason.DISABLED)
        if req.model not in self.service.installed():
            raise RequestError(f"{req.model} is not installed on {me}", 404, reason=Reason.NOT_INSTALLED)
        job = req.job(job_id, req.seed or 0)
        snapshot = self._dispatcher.snapshot()
        if redirectable:
            self._redirect_if_better(job.work(), snapshot, visited)
        try:
            return await self.run_local(job, snapshot, entry_node=entry_node, movable=redirectable, visited=visited,
                                        attempts=1)  # fmt: skip
        except JobMoved as exc:
            raise RequestError(f"{me} handed the queued job to idle {exc.to}", 503, reason=Reason.MOVED,
                               redirect_to=exc.to) from exc  # fmt: skip
        except EngineError as exc:
            raise RequestError(f"{me}: {exc}", 502, reason=Reason.ENGINE_FAILED) from exc

    def _redirect_if_better(self, work: Work, snapshot: MeshSnapshot, visited: frozenset[str]) -> None:
        """Answer "busy, try X" when X clearly finishes sooner; never X a peer the job has left."""
        now = snapshot.now
        views = snapshot.image_views
        here = next(v for v in views if v.is_self)
        others = [v for v in views if not v.is_self and v.node_id not in visited]
        ledger = self._dispatcher.ledger
        better = redirect_target(here, others, work, rng=self._rng, sent=ledger.pending(now))
        if better is None:
            return
        target = next(v for v in others if v.node_id == better.node_id)
        ledger.hint(sent_record(target, work, now=now))
        raise RequestError(f"{self.me} is busy; {better.node_id} would finish sooner ({better.reason})", 503,
                           reason=Reason.BUSY, redirect_to=better.node_id,
                           queue_depth=self.service.queue.depth)  # fmt: skip

    # -- forwarding ------------------------------------------------------------------------------------------------
    async def forward(
        self, node: str, job: ImageJob, *, redirectable: bool, visited: frozenset[str], attempts: int,
        deadline: float,
    ) -> ImageResult:  # fmt: skip
        client = self._clients.for_node(node)
        if client is None:
            raise PeerUnreachable(node, "left the mesh")
        headers = {"Content-Type": "application/json", H_FORWARDED: "1", H_JOB: job.job_id}
        if redirectable:
            headers[H_REDIRECTABLE] = "1"
        if visited:
            headers[H_VISITED] = ",".join(sorted(visited))
        body = json.dumps(job.to_json()).encode()

        async def post() -> tuple[bytes, Any]:
            async with client.stream("POST", "/api/generate-image", content=body, headers=headers,
                                     timeout_s=max(1.0, deadline - time.monotonic())) as response:  # fmt: skip
                return await read_capped(response, MAX_PNG_BYTES, node), response.headers

        png, response_headers = await while_alive(post(), alive=lambda: self._dispatcher.alive(node),
                                                  fail=lambda reason: PeerUnreachable(node, reason))  # fmt: skip
        if not str(response_headers.get("content-type", "")).startswith("image/png"):
            raise PeerRefused(node, 502, b'{"error": "answered 200 without a PNG"}')
        return ImageResult.from_response(png, response_headers, node, attempts)


class _Entry:
    """One client request as the attempt loop drives it."""

    movable = True

    def __init__(self, dispatch: ImageDispatch, job: ImageJob, deadline: float, record: JobRecord) -> None:
        self._dispatch = dispatch
        self.job = job
        self.work = job.work()
        self._deadline = deadline
        self._record = record

    def rank(self, snapshot: MeshSnapshot, pending: list[Sent], rng: Rng) -> list[Choice]:
        if time.monotonic() >= self._deadline:
            return []
        ranked = rank(snapshot.image_views, self.work, sent=pending, rng=rng)
        self._record.reason = reason_line(ranked, snapshot.image_views, self.work)
        return ranked

    def sent(self, snapshot: MeshSnapshot, node_id: str, pending: list[Sent], now: float) -> Sent:
        view = next(v for v in snapshot.image_views if v.node_id == node_id)
        return sent_record(view, self.work, sent=pending, now=now)

    async def here(self, attempts: Attempts, snapshot: MeshSnapshot) -> ImageResult:
        self._moved_to(self._dispatch.me, attempts)
        return await self._dispatch.run_local(self.job, snapshot, entry_node=self._dispatch.me,
                                              movable=attempts.movable, visited=attempts.avoid,
                                              attempts=attempts.attempts)  # fmt: skip

    async def there(self, node_id: str, attempts: Attempts, release: Callable[[], None]) -> ImageResult:
        self._moved_to(node_id, attempts)
        try:
            return await self._dispatch.forward(node_id, self.job, redirectable=attempts.movable,
                                                visited=attempts.avoid, attempts=attempts.attempts,
                                                deadline=self._deadline)  # fmt: skip
        finally:
            release()

    def _moved_to(self, node: str, attempts: Attempts) -> None:
        self._record.node, self._record.moves = node, attempts.moves

    def give_up(self, attempts: Attempts, snapshot: MeshSnapshot) -> RequestError:
        views = snapshot.image_views
        if not attempts.failures and not any(v.accepting for v in views):
            return switched_off("image generation", "image_generation")
        able = [v for v in views if can_serve(v, self.work.model) and v.node_id not in attempts.excluded]
        if not attempts.failures and able and not any(fits(v, self.work) for v in able):
            return no_room_error(self.work, able)
        return attempts.give_up(what="image generation", model=self.job.model, setting="image_generation")


def reason_line(ranked: list[Choice], views: list[PeerView], work: Work) -> str:
    """Why the first choice: its time, the others' times, and why the rest cannot run it."""
    if not ranked:
        return ""
    parts = [ranked[0].reason] + [f"{c.node_id} {c.completion_s:.1f}s" for c in ranked[1:4]]
    chosen = {c.node_id for c in ranked}
    parts += [f"{v.node_id} {why}" for v in views if v.node_id not in chosen and (why := why_not(v, work))]
    return "; ".join(parts)


def new_job_id() -> str:
    return uuid.uuid4().hex[:16]
