"""Every request is recorded by its entry peer in its SQLite records (off the event loop); `mesh/records_sync.py`
copies each record to the other peers, so the mesh's history survives any one Mac being off.

A request refused before it reached the router (an unknown model, bad input, a switched-off capability) is
recorded as `rejected`: counted apart from the mesh's failures and never under a node.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..core.image_request import ImageRequest
from ..errors import Reason, RequestError
from ..storage.records import Records, RequestRecord
from ..storage.settings_store import SettingsStore

if TYPE_CHECKING:
    from .images import ImageResult
    from .jobs import JobRecord

logger = logging.getLogger(__name__)

MAX_REJECTED_MODEL = 100  # a model name from a refused request is cut here (it is the client's text)


def outcome(exc: BaseException, *, attempted: bool) -> str:
    """How a request that did not succeed is counted: `cancelled` (the client left), `rejected` (refused before
    any peer was tried: unknown model, bad input, switched off) or `failed` (the mesh tried and could not)."""
    if not isinstance(exc, Exception):
        return "cancelled"
    refused = isinstance(exc, RequestError) and (exc.status < 500 or exc.reason is Reason.DISABLED)
    if refused and not attempted and not getattr(exc, "fields", {}).get("attempts"):
        return "rejected"
    return "failed"


def attempts_of(exc: BaseException | None) -> tuple[dict[str, str], ...]:
    """Each peer's failed try, as the error the client got lists them."""
    found = exc.fields.get("attempts") if isinstance(exc, RequestError) else None
    if not isinstance(found, list):
        return ()
    return tuple({k: str(v) for k, v in a.items()} for a in found if isinstance(a, Mapping))


class Recorder:
    def __init__(
        self,
        *,
        node_id: str,
        records: Records,
        settings: SettingsStore,
        settle: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._node_id = node_id
        self._records = records
        self._settings = settings
        self._settle = settle  # copies what was recorded to the other peers (records_sync.settle)

    async def settle(self) -> None:
        """Return once what was recorded here is stored on the other peers too (bounded by the copier)."""
        if self._settle is not None:
            try:
                await self._settle()
            except Exception:
                logger.exception("copying request records to the other peers failed")

    def _add(self, record: RequestRecord) -> None:
        try:
            self._records.add(record)
        except Exception:
            logger.exception("could not record %s request %s", record.kind, record.job_id)

    def _prompt(self, prompt: str) -> str | None:
        """Kept only when the `store_prompts` setting is on."""
        return (prompt or None) if self._settings.get("store_prompts") else None

    def image(
        self,
        req: ImageRequest,
        job_id: str,
        tags: tuple[str, ...],
        *,
        status: str,
        result: ImageResult | None = None,
        error: str | None = None,
        job: JobRecord | None = None,
        exc: BaseException | None = None,
        tried: Sequence[Mapping[str, Any]] = (),
    ) -> None:
        """One image request's outcome; `job` (its live record) carries the routing reason of a failed one, and
        `tried` the peers that failed it before one succeeded (so a peer that keeps failing shows in health)."""
        attempts = attempts_of(exc) or tuple({k: str(v) for k, v in a.items()} for a in tried)
        steps = result.steps if result is not None and result.steps else req.steps
        reason = (result.reason if result is not None else "") or (job.reason if job is not None else "")
        self._add(
            RequestRecord(
                kind="image", model=req.model, status=status, node=result.node if result else None,
                entry_node=self._node_id, width=req.width, height=req.height, steps=steps,
                queue_ms=result.queue_ms if result else None,
                generation_ms=result.generation_ms if result else None, error=error, tags=tags,
                prompt=self._prompt(req.prompt), job_id=job_id, reason=reason or None, attempts=attempts,
            )
        )  # fmt: skip

    def rejected(self, *, kind: str, body: Any, job_id: str, error: str, tags: tuple[str, ...] = ()) -> None:
        """A request refused as malformed before it could be parsed: counted apart, as `rejected`."""
        model = body.get("model") if isinstance(body, Mapping) else None
        self._add(
            RequestRecord(kind=kind, model=model[:MAX_REJECTED_MODEL] if isinstance(model, str) and model else "?",
                          status="rejected", entry_node=self._node_id, error=error, tags=tags, job_id=job_id)
        )  # fmt: skip

    def request(
        self,
        *,
        kind: str,
        model: str,
        job_id: str,
        status: str,
        node: str | None,
        started: float,
        tags: tuple[str, ...],
        prompt: str,
        error: str | None = None,
        exc: BaseException | None = None,
    ) -> None:
        """An LLM, embeddings or transcription request; `started` is its `time.monotonic()` at arrival."""
        self._add(
            RequestRecord(
                kind=kind, model=model or "default", status=status, node=node, entry_node=self._node_id,
                generation_ms=int((time.monotonic() - started) * 1000), error=error, tags=tags,
                prompt=self._prompt(prompt), job_id=job_id, attempts=attempts_of(exc),
            )
        )  # fmt: skip
