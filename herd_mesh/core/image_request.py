"""Image requests: pure functions from a decoded JSON body to an `ImageRequest`, or a RequestError
that names the field and what is allowed. Limits are documented in README.md ("Parameters").
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, replace
from typing import Any

from ..errors import RequestError
from . import catalogue
from .work import Work

MIN_SIDE, MAX_SIDE, SIDE_MULTIPLE = 64, 2048, 16  # pixels; sizes are rounded to the nearest multiple of 16
MIN_STEPS, MAX_STEPS = 1, 100
QUANTIZE_LEVELS = (3, 4, 5, 6, 8)
MAX_SEED = 2**32 - 1
MAX_PROMPT_CHARS = 4000
MAX_TAGS, MAX_TAG_CHARS = 20, 64
MAX_IMAGES = 4  # OpenAI's `n`

DEFAULTS: dict[str, Any] = {"width": 1024, "height": 1024, "quantize": 8, "negative_prompt": ""}
FIELDS = (
    "model",
    "prompt",
    "width",
    "height",
    "steps",
    "quantize",
    "seed",
    "guidance",
    "negative_prompt",
    "metadata",
)
MIN_GUIDANCE, MAX_GUIDANCE = 0.0, 30.0
ESTIMATE_STEPS = 4  # what a job of a model this peer does not know is priced at, before the peer running it decides


@dataclass(frozen=True)
class ImageRequest:
    model: str
    prompt: str
    width: int = 1024
    height: int = 1024
    steps: int | None = None  # None: the model's own default, decided where it runs
    quantize: int = 8
    seed: int | None = None  # None: the running peer picks one and reports it
    negative_prompt: str = ""
    tags: tuple[str, ...] = ()
    guidance: float | None = None  # None: the model's own default

    def job(self, job_id: str, seed: int) -> ImageJob:
        """The job an engine runs: this request with its id and a concrete seed (the same image wherever it
        runs); steps and guidance stay unset until the peer that runs it applies its model's defaults."""
        return ImageJob(job_id, self.model, self.prompt, self.width, self.height, self.steps, self.quantize, seed,
                        self.negative_prompt, self.guidance)  # fmt: skip


@dataclass(frozen=True)
class ImageJob:
    """A validated image request as an engine receives it: the seed is always concrete here."""

    job_id: str
    model: str
    prompt: str
    width: int = 1024
    height: int = 1024
    steps: int | None = None  # None until the running peer applies the model's default
    quantize: int = 8
    seed: int = 0
    negative_prompt: str = ""
    guidance: float | None = None

    def work(self) -> Work:
        """What the scheduler prices: unset steps count as the catalogue model's default (a local model's
        default is only known where it is declared)."""
        model = catalogue.get(self.model)
        steps = self.steps if self.steps is not None else model.default_steps if model else ESTIMATE_STEPS
        return Work.image(self.model, self.width, self.height, steps, self.job_id, self.quantize)

    def to_json(self) -> dict[str, Any]:
        """The body a forwarded job travels in (what `parse_image_request` reads back)."""
        body = {"model": self.model, "prompt": self.prompt, "width": self.width, "height": self.height,
                "quantize": self.quantize, "seed": self.seed, "negative_prompt": self.negative_prompt}  # fmt: skip
        if self.steps is not None:
            body["steps"] = self.steps
        if self.guidance is not None:
            body["guidance"] = self.guidance
        return body


def settle(job: ImageJob, model: catalogue.ImageModel) -> tuple[ImageJob, tuple[str, ...]]:
    """The job as the peer running it passes it to mflux, whichever engine: the model's default steps and
    guidance where the request left them out, and what the model would ignore taken out and named, so both
    engines make the same call and the client hears (`X-Fleet-Ignored`) what had no effect."""
    ignored: list[str] = []
    guidance = job.guidance
    if guidance is not None and not model.takes_guidance:
        ignored.append("guidance")
        guidance = None
    elif guidance is None:
        guidance = model.default_guidance
    negative_prompt = job.negative_prompt
    if negative_prompt and not model.negative_prompt_used(guidance):
        ignored.append("negative_prompt")
        negative_prompt = ""
    steps = job.steps if job.steps is not None else model.default_steps
    return replace(job, steps=steps, guidance=guidance, negative_prompt=negative_prompt), tuple(ignored)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite(text: str) -> float | None:
    number = float(text)
    return number if math.isfinite(number) else None


def loads_finite(raw: bytes | str) -> Any:
    """JSON from another peer: NaN, Infinity and overflowing numbers (1e400) become null, so nothing we
    serve from it can fail to serialise."""
    return json.loads(raw, parse_float=_finite, parse_constant=lambda _: None)


def parse_json(raw: bytes | str, what: str = "request body") -> Any:
    """Strict JSON: no NaN or Infinity; an oversized integer or deep nesting is a RequestError, not a crash."""
    try:
        return json.loads(raw, parse_constant=_no_constant)
    except RecursionError as exc:
        raise RequestError(f"{what} is not valid JSON: nested too deeply") from exc
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, int digit limit, NaN/Infinity
        raise RequestError(f"{what} is not valid JSON: {exc}") from exc


def parse_json_object(raw: bytes) -> dict[str, Any]:
    if not raw.strip():
        raise RequestError('request body is empty: send a JSON object such as {"model": ..., "prompt": ...}')
    body = parse_json(raw)
    if not isinstance(body, dict):
        raise RequestError(
            f"request body must be a JSON object, got {type(body).__name__ if body is not None else 'null'}"
        )
    return body


def _int(body: dict[str, Any], name: str, low: int, high: int) -> int:
    value = body.get(name, DEFAULTS.get(name))
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or (isinstance(value, float) and not value.is_integer())
    ):
        raise RequestError(f"'{name}' must be an integer from {low} to {high}, got {json.dumps(value)}")
    value = int(value)
    if not low <= value <= high:
        raise RequestError(f"'{name}' must be from {low} to {high}, got {value}")
    return value


def _side(body: dict[str, Any], name: str) -> int:
    value = _int(body, name, MIN_SIDE, MAX_SIDE)
    nearest = (value + SIDE_MULTIPLE // 2) // SIDE_MULTIPLE * SIDE_MULTIPLE  # halfway rounds up, always
    return max(MIN_SIDE, min(MAX_SIDE, nearest))


def _text(body: dict[str, Any], name: str, *, required: bool, limit: int) -> str:
    value = body.get(name, DEFAULTS.get(name))
    if value is None and not required:
        return ""
    if not isinstance(value, str):
        raise RequestError(f"'{name}' must be a string{' (required)' if required else ''}, got {json.dumps(value)}")
    if required and not value.strip():
        raise RequestError(f"'{name}' must not be empty")
    if len(value) > limit:
        raise RequestError(f"'{name}' is {len(value)} characters; at most {limit} are allowed")
    if "\x00" in value:
        raise RequestError(f"'{name}' must not contain NUL characters (\\u0000)")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise RequestError(f"'{name}' must be valid Unicode text: unpaired surrogate {value[exc.start]!r}") from exc
    return value


def parse_tags(metadata: Any) -> tuple[str, ...]:
    if metadata is None:
        return ()
    if not isinstance(metadata, dict):
        raise RequestError('\'metadata\' must be an object such as {"tags": ["project-x"]}')
    tags = metadata.get("tags", [])
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise RequestError("'metadata.tags' must be a list of strings")
    if len(tags) > MAX_TAGS:
        raise RequestError(f"'metadata.tags' has {len(tags)} tags; at most {MAX_TAGS} are allowed")
    for tag in tags:
        if not 1 <= len(tag) <= MAX_TAG_CHARS:
            raise RequestError(f"'metadata.tags': each tag must be 1-{MAX_TAG_CHARS} characters, got {tag[:80]!r}")
    return tuple(tags)


def header_tags(value: str | None) -> tuple[str, ...]:
    """`X-Herd-Tags: a, b` for clients that cannot put metadata in the body."""
    if not value:
        return ()
    return parse_tags({"tags": [t.strip() for t in re.split(r"[,]", value) if t.strip()]})


def parse_image_request(body: dict[str, Any]) -> ImageRequest:
    unknown = sorted(set(body) - set(FIELDS))
    if unknown:
        raise RequestError(
            f"unknown field{'s' if len(unknown) > 1 else ''} {', '.join(repr(u) for u in unknown)}; "
            f"allowed: {', '.join(FIELDS)}"
        )
    model = body.get("model")
    if model is None or (isinstance(model, str) and not model.strip()):
        raise RequestError("'model' is required: a string such as \"z-image-turbo\"")
    if not isinstance(model, str):
        raise RequestError(f"'model' must be a string such as \"z-image-turbo\", got {json.dumps(model)}")
    quantize = body.get("quantize", DEFAULTS["quantize"])
    if isinstance(quantize, bool) or quantize not in QUANTIZE_LEVELS:
        raise RequestError(
            f"'quantize' must be one of {', '.join(map(str, QUANTIZE_LEVELS))}, got {json.dumps(quantize)}"
        )
    seed = body.get("seed")
    if seed is not None:
        seed = _int(body, "seed", 0, MAX_SEED)
    steps = None if body.get("steps") is None else _int(body, "steps", MIN_STEPS, MAX_STEPS)
    return ImageRequest(
        model=model.strip(),
        prompt=_text(body, "prompt", required=True, limit=MAX_PROMPT_CHARS),
        width=_side(body, "width"),
        height=_side(body, "height"),
        steps=steps,
        quantize=int(quantize),
        seed=seed,
        negative_prompt=_text(body, "negative_prompt", required=False, limit=MAX_PROMPT_CHARS),
        tags=parse_tags(body.get("metadata")),
        guidance=_guidance(body.get("guidance")),
    )


def _guidance(value: Any) -> float | None:
    if value is None:
        return None
    number = value if isinstance(value, int | float) and not isinstance(value, bool) else None
    if number is None or not MIN_GUIDANCE <= number <= MAX_GUIDANCE:
        raise RequestError(f"'guidance' must be a number from {MIN_GUIDANCE:g} to {MAX_GUIDANCE:g} (flux-dev's "
                           f"default is 3.5), got {json.dumps(value)}")  # fmt: skip
    return float(number)


OPENAI_FIELDS = (
    "model",
    "prompt",
    "n",
    "size",
    "response_format",
    "quality",
    "style",
    "user",
    "seed",
    "steps",
    "guidance",
    "negative_prompt",
    "metadata",
)


def parse_openai_request(body: dict[str, Any], default_model: str) -> tuple[ImageRequest, int]:
    """OpenAI's images API -> (ImageRequest, n). Only `b64_json` responses: peers serve no image URLs."""
    unknown = sorted(set(body) - set(OPENAI_FIELDS))
    if unknown:
        raise RequestError(f"unknown field(s) {', '.join(map(repr, unknown))}; allowed: {', '.join(OPENAI_FIELDS)}")
    fmt = body.get("response_format", "b64_json")
    if fmt != "b64_json":
        raise RequestError("'response_format' must be \"b64_json\" (herd-mesh does not host image URLs)")
    n = _int({"n": body.get("n", 1)}, "n", 1, MAX_IMAGES)
    size = body.get("size", "1024x1024")
    match = re.fullmatch(r"(\d{2,4})x(\d{2,4})", size) if isinstance(size, str) else None
    if match is None:
        raise RequestError(f"'size' must look like \"1024x1024\" (WIDTHxHEIGHT), got {json.dumps(size)}")
    native = {
        "model": default_model if body.get("model") in (None, "") else body["model"],
        "prompt": body.get("prompt"),
        "width": int(match.group(1)),
        "height": int(match.group(2)),
    }
    for key in ("seed", "steps", "guidance", "negative_prompt", "metadata"):
        if key in body:
            native[key] = body[key]
    return parse_image_request(native), n
