"""Every request is recorded once, by its entry peer, in this peer's SQLite records (off the event loop)."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from ..core.image_request import ImageRequest
from ..storage.records import Records, RequestRecord
from ..storage.settings_store import SettingsStore

if TYPE_CHECKING:
    from .images import ImageResult

logger = logging.getLogger(__name__)


class Recorder:
    def __init__(self, *, node_id: str, records: Records, settings: SettingsStore) -> None:
        self._node_id = node_id
        self._records = records
        self._settings = settings

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
    ) -> None:
        steps = result.steps if result is not None and result.steps else req.steps
        self._add(
            RequestRecord(
                kind="image", model=req.model, status=status, node=result.node if result else None,
                entry_node=self._node_id, width=req.width, height=req.height, steps=steps,
                queue_ms=result.queue_ms if result else None,
                generation_ms=result.generation_ms if result else None, error=error, tags=tags,
                prompt=self._prompt(req.prompt), job_id=job_id,
            )
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
    ) -> None:
        """An LLM, embeddings or transcription request; `started` is its `time.monotonic()` at arrival."""
        self._add(
            RequestRecord(
                kind=kind, model=model or "default", status=status, node=node, entry_node=self._node_id,
                generation_ms=int((time.monotonic() - started) * 1000), error=error, tags=tags,
                prompt=self._prompt(prompt), job_id=job_id,
            )
        )  # fmt: skip
