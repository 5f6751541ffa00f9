"""The `stt` service: this peer's Whisper engine, its models, what is loaded, and what runs now."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from ..core.extras import install_hint
from ..engines.whisper import FAILED_RETRY_S, OPENAI_ALIASES, Transcript, WhisperEngine
from ..errors import EngineError, Reason, RequestError
from ..storage.settings_store import SettingsStore
from .active import ActiveRequests

logger = logging.getLogger(__name__)


@dataclass
class WhisperService:
    """The `stt` section of the state document: engine, models, what is loaded, and what runs now."""

    node_id: str
    engine: WhisperEngine | None
    settings: SettingsStore
    on_change: Callable[[], None] = lambda: None
    name: str = "stt"
    active: ActiveRequests = field(init=False)
    _failed: dict[str, float] = field(default_factory=dict)  # model -> monotonic time its load failed
    _turn: asyncio.Lock | None = None

    def __post_init__(self) -> None:
        self.active = ActiveRequests(lambda: self.on_change())

    def models(self) -> dict[str, int]:
        if self.engine is None:
            return {}
        now = time.monotonic()
        return {m: s for m, s in self.engine.models().items() if now - self._failed.get(m, -1e9) >= FAILED_RETRY_S}

    @property
    def enabled(self) -> bool:
        return bool(self.settings.get("transcription"))

    def state(self) -> dict[str, Any]:
        models = self.models()
        loaded = sorted(self.engine.loaded() & set(models)) if self.engine else []
        return {
            "enabled": self.enabled,
            "engine": self.engine.name if self.engine else None,
            "models": sorted(models),
            "default": self.engine.default_model() if self.engine and models else None,
            "loaded": loaded,
            "sizes": {m: s for m, s in models.items() if s > 0},
            "active": self.active.listing(),
        }

    def summary(self) -> dict[str, Any]:
        return {"stt": bool(self.models()) and self.enabled}

    def resolve(self, model: str) -> str:
        """The model this peer runs for `model` ("" or "whisper-1": its default)."""
        models = self.models()
        if self.engine is not None and models and (not model or model in OPENAI_ALIASES):
            default = self.engine.default_model()
            return default if default in models else sorted(models)[0]
        if model in models:
            return model
        raise RequestError(
            f"Whisper model {model!r} is not available on {self.node_id}", 404, reason=Reason.NOT_INSTALLED,
            available=sorted(models),
        )  # fmt: skip

    async def transcribe(
        self, audio: bytes | BinaryIO, *, model: str, language: str | None, job_id: str
    ) -> Transcript:
        """Wait for this peer's turn, then transcribe in a worker thread (a cancelled caller's run completes
        in the thread, and its result is dropped)."""
        if self.engine is None:
            raise EngineError(f"{self.node_id} has no Whisper engine ({install_hint('stt')})")
        name = self.resolve(model)
        if self._turn is None:
            self._turn = asyncio.Lock()
        with self.active.track(job_id, "stt", name):
            async with self._turn:
                try:
                    return await asyncio.to_thread(self.engine.transcribe, audio, model=name, language=language)
                except EngineError:
                    if name not in self.engine.loaded():
                        self._failed[name] = time.monotonic()  # stop advertising it for a while
                        self.on_change()
                    raise

    async def start(self) -> None:
        if self.engine is not None:
            logger.info("speech-to-text: %s with %s", self.engine.name, ", ".join(self.models()) or "no model")

    async def aclose(self) -> None:
        return None
