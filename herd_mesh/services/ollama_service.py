"""The `llm` service: what this machine's Ollama has (a poller keeps it current) and what runs on it now.

The poller reads `/api/tags` (installed) and `/api/ps` (loaded) every `POLL_S`, and soon after a request this
peer served for a model that was not loaded (that one changed what is loaded; a request for a loaded model did
not), at most once per `MIN_REFRESH_GAP_S`: two extra calls to Ollama per relayed request cost 12 % of a peer's
time in the relay profile (docs/benchmarks-profile.md).

An Ollama that is not running is a normal state: the peer advertises no LLM models, logs the change once, and
looks again with a growing pause (up to `MAX_BACKOFF_S`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterator
from typing import Any

from ..core.units import GIB
from ..engines.ollama_client import OllamaClient
from ..errors import BackendUnavailable
from ..storage.settings_store import SettingsStore
from .active import ActiveRequests

logger = logging.getLogger(__name__)

POLL_S = 2.0  # seconds between reads of /api/tags and /api/ps while Ollama answers
MAX_BACKOFF_S = 15.0  # the longest pause between tries while Ollama does not answer (seconds)
MIN_REFRESH_GAP_S = 1.0  # pokes closer together than this are folded into one refresh


class OllamaService:
    """The `llm` section of the state document: Ollama's models, what is loaded, and what runs now."""

    name = "llm"

    def __init__(
        self,
        *,
        node_id: str,
        client: OllamaClient,
        settings: SettingsStore,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        self.node_id = node_id
        self.client = client
        self.settings = settings
        self._on_change = on_change or (lambda: None)
        self.reachable = False
        self.version: str | None = None
        self.tags: list[dict[str, Any]] = []  # /api/tags entries, as Ollama gave them
        self.ps: list[dict[str, Any]] = []  # /api/ps entries
        self.active = ActiveRequests(self._on_change)
        self._poke = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._polled_once = False

    # -- what the mesh sees -----------------------------------------------------------------------------------
    def models(self) -> list[str]:
        return sorted({str(m.get("name") or m.get("model")) for m in self.tags if m.get("name") or m.get("model")})

    def loaded(self) -> list[str]:
        return sorted({str(m.get("name") or m.get("model")) for m in self.ps if m.get("name") or m.get("model")})

    def vram_gb(self) -> float:
        """Memory Ollama's loaded models hold (`/api/ps` size_vram), which image jobs cannot have."""
        sizes = (m.get("size_vram", m.get("size")) for m in self.ps)
        return sum(float(s) for s in sizes if isinstance(s, int | float) and not isinstance(s, bool)) / GIB

    def state(self) -> dict[str, Any]:
        sizes = {str(m.get("name") or m.get("model")): int(m.get("size") or 0) for m in self.tags}
        return {
            "enabled": {"llm": bool(self.settings.get("llm")), "embeddings": bool(self.settings.get("embeddings"))},
            "ollama": {"reachable": self.reachable, "version": self.version},
            "models": self.models(),
            "loaded": self.loaded(),
            "sizes": {k: v for k, v in sizes.items() if v > 0},
            "active": self.active.listing(),
            "vram_gb": round(self.vram_gb(), 2),
        }

    def summary(self) -> dict[str, Any]:
        return {"llm_models": len(self.models()), "llm_loaded": len(self.loaded())}

    # -- requests running here --------------------------------------------------------------------------------
    @contextlib.contextmanager
    def track(self, job_id: str, kind: str, model: str) -> Iterator[None]:
        """Advertise a request as in flight here while it runs; look at /api/ps again once it is done if it had
        to load its model (or failed: Ollama may be gone)."""
        cold = model not in self.loaded()
        ok = False
        try:
            with self.active.track(job_id, kind, model):
                yield
            ok = True
        finally:
            if cold or not ok:
                self.poke()

    def poke(self) -> None:
        """Poll now (a request just ended or failed to connect): loaded models change with requests."""
        self._poke.set()

    # -- polling ----------------------------------------------------------------------------------------------
    async def refresh(self) -> bool:
        """Read tags and ps once; True when Ollama answered. Changes are logged once, not every poll."""
        try:
            tags, ps = await asyncio.gather(self.client.get_json("/api/tags"), self.client.get_json("/api/ps"))
            if self.version is None:
                self.version = str((await self.client.get_json("/api/version")).get("version") or "") or None
        except BackendUnavailable as exc:
            if self.reachable or not self._polled_once:
                logger.info("%s; LLM requests go to other peers until it answers", exc)
            self._polled_once = True
            self._set(reachable=False, tags=[], ps=[])
            return False
        if not self.reachable:
            logger.info(
                "Ollama %s at %s: %d models installed, %d loaded",
                self.version or "?", self.client.url, len(tags.get("models") or []), len(ps.get("models") or []),
            )  # fmt: skip
        self._polled_once = True
        self._set(reachable=True, tags=_entries(tags), ps=_entries(ps))
        return True

    def _set(self, *, reachable: bool, tags: list[dict[str, Any]], ps: list[dict[str, Any]]) -> None:
        before = (self.reachable, self.models(), self.loaded())
        self.reachable, self.tags, self.ps = reachable, tags, ps
        if not reachable:
            self.version = None
        if (self.reachable, self.models(), self.loaded()) != before:
            self._on_change()

    async def _poll_forever(self) -> None:
        backoff = POLL_S
        loop = asyncio.get_running_loop()
        while True:
            self._poke.clear()  # before the poll: a poke that arrives during it polls again at once
            refreshed_at = loop.time()
            try:
                ok = await self.refresh()
            except Exception:  # noqa: BLE001 - the poller must outlive any surprise; it is logged
                logger.exception("polling Ollama failed")
                ok = False
            backoff = POLL_S if ok else min(backoff * 2, MAX_BACKOFF_S)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._poke.wait(), POLL_S if ok else backoff)
            gap = MIN_REFRESH_GAP_S - (loop.time() - refreshed_at)
            if gap > 0:  # a burst of requests ending: one refresh for all of them
                await asyncio.sleep(gap)

    async def start(self) -> None:
        self._task = asyncio.ensure_future(self._poll_forever())

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.client.aclose()


def _entries(doc: dict[str, Any]) -> list[dict[str, Any]]:
    models = doc.get("models")
    return [m for m in models if isinstance(m, dict)] if isinstance(models, list) else []
