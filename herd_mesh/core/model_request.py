"""LLM, embedding and transcription request checks: pure functions from a body to the few facts routing needs.

Only what herd-mesh itself relies on is checked here (a JSON object, the model, `stream`, the tags); the rest of
the body goes to Ollama untouched, and Ollama's own 400s reach the client as Ollama wrote them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, BinaryIO

from ..errors import Reason, RequestError
from .image_request import header_tags, parse_json, parse_json_object, parse_tags

MAX_MODEL_CHARS = 200
MAX_RECORDED_PROMPT_CHARS = 4000  # what the records keep of a prompt when store_prompts is on
# `file` is OpenAI's name for the recording; `audio` is the seed's
TRANSCRIBE_FIELDS = ("audio", "file", "model", "language", "response_format", "tags", "metadata")
# OpenAI's SDK may send these too; herd-mesh accepts and ignores prompt, temperature and timestamp granularities
OPENAI_TRANSCRIBE_FIELDS = (*TRANSCRIBE_FIELDS, "prompt", "temperature", "timestamp_granularities[]")
RESPONSE_FORMATS = ("json", "verbose_json", "text")


@dataclass(frozen=True)
class LlmRequest:
    model: str  # "" when the body names none
    stream: bool
    tags: tuple[str, ...] = ()
    prompt: str = ""  # the text the client sent (last user message, prompt or input), for the records


def _model(body: dict[str, Any], *keys: str) -> str:
    for key in keys:
        if key in body and body[key] is not None:
            value = body[key]
            if not isinstance(value, str):
                raise RequestError(f"'{key}' must be a string such as \"llama3.2:3b\", got {json.dumps(value)}")
            if len(value) > MAX_MODEL_CHARS:
                raise RequestError(f"'{key}' is {len(value)} characters; at most {MAX_MODEL_CHARS} are allowed")
            return value.strip()
    return ""


def tags_from(metadata: Any, header: str | None) -> tuple[str, ...]:
    """`metadata.tags` (a list, or a comma-separated string as OpenAI's string-only metadata allows) plus the
    `X-Herd-Tags` header."""
    if isinstance(metadata, dict) and isinstance(metadata.get("tags"), str):
        metadata = {**metadata, "tags": [t.strip() for t in metadata["tags"].split(",") if t.strip()]}
    if isinstance(metadata, dict):
        metadata = {"tags": metadata.get("tags", [])}  # OpenAI metadata may carry other keys: not ours to judge
    return parse_tags(metadata) + header_tags(header)


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "\n".join(_text(v.get("text") if isinstance(v, dict) else v) for v in value)
    return ""


def _prompt(body: dict[str, Any]) -> str:
    """The last user message (chat, Anthropic's messages, a Responses `input` list), else the prompt or input."""
    for key in ("messages", "input"):
        items = body.get(key)
        if isinstance(items, list):
            users = [m for m in items if isinstance(m, dict) and m.get("role") == "user"]
            if users:
                return _text(users[-1].get("content"))[:MAX_RECORDED_PROMPT_CHARS]
    for key in ("prompt", "input"):
        if key in body:
            return _text(body[key])[:MAX_RECORDED_PROMPT_CHARS]
    return ""


def parse_llm_request(raw: bytes, *, default_stream: bool, tags_header: str | None = None) -> LlmRequest:
    """A chat, generate, embed, show, messages or responses body: it must be a JSON object; `model` a string,
    `stream` a boolean."""
    body = parse_json_object(raw)
    stream = body.get("stream", default_stream)
    if stream is None:
        stream = default_stream
    if not isinstance(stream, bool):
        raise RequestError(f"'stream' must be true or false, got {json.dumps(stream)}")
    for key in ("messages",):
        if key in body and not (isinstance(body[key], list) and all(isinstance(m, dict) for m in body[key])):
            raise RequestError(f'\'{key}\' must be a list of {{"role", "content"}} objects')
    return LlmRequest(
        model=_model(body, "model", "name"),
        stream=stream,
        tags=tags_from(body.get("metadata"), tags_header),
        prompt=_prompt(body),
    )


@dataclass(frozen=True)
class AudioRequest:
    audio: bytes | BinaryIO  # the recording, in memory or in a (spooled) file
    filename: str
    model: str = ""  # "" = the running peer's default
    language: str | None = None
    response_format: str = "json"
    tags: tuple[str, ...] = ()


def _size(content: bytes | BinaryIO) -> int:
    if isinstance(content, bytes):
        return len(content)
    content.seek(0, 2)
    size = content.tell()
    content.seek(0)
    return size


def parse_audio_form(
    fields: dict[str, list[tuple[str | None, Any]]], *, openai: bool, tags_header: str | None
) -> AudioRequest:
    """Multipart fields -> AudioRequest. `fields` maps each name to `(filename, bytes)` pairs for files and
    `(None, text)` pairs for text fields. OpenAI's route takes the recording as `file`, ours as `audio`."""
    allowed = OPENAI_TRANSCRIBE_FIELDS if openai else TRANSCRIBE_FIELDS
    unknown = sorted(set(fields) - set(allowed))
    if unknown:
        raise RequestError(f"unknown form field(s) {', '.join(map(repr, unknown))}; allowed: {', '.join(allowed)}")
    key = "file" if "file" in fields and "audio" not in fields else "audio"
    example = "-F file=@recording.wav -F model=whisper-1" if openai else "-F audio=@recording.wav"
    if key not in fields:
        named = "'file' (or 'audio')" if openai else "'audio'"
        raise RequestError(f"send the recording as a multipart file field named {named}, e.g. curl {example}")
    if "file" in fields and "audio" in fields:
        raise RequestError("send the recording once: as 'audio' or as 'file', not both")
    filename, content = fields[key][0]
    if filename is None or isinstance(content, str):
        raise RequestError(f"'{key}' must be a file upload (curl {example}), not a text field")
    if not _size(content):
        raise RequestError(f"the uploaded audio file {filename!r} is empty", reason=Reason.BAD_AUDIO)

    def text(name: str) -> str | None:
        values = fields.get(name)
        if not values:
            return None
        fname, value = values[0]
        if fname is not None or not isinstance(value, str):
            raise RequestError(f"'{name}' must be a text field, not a file")
        return value.strip()

    language = text("language") or None
    if language is not None and not (2 <= len(language) <= 8 and language.replace("-", "").isalpha()):
        raise RequestError(f"'language' must be a language code such as \"en\", got {language!r}")
    fmt = text("response_format") or "json"
    if fmt not in RESPONSE_FORMATS:
        raise RequestError(f"'response_format' must be one of {', '.join(RESPONSE_FORMATS)}, got {fmt!r}")
    metadata: Any = None
    raw_metadata = text("metadata")
    if raw_metadata:
        metadata = parse_json(raw_metadata, what='\'metadata\' (a JSON object such as {"tags": ["a"]})')
    raw_tags = text("tags")
    if raw_tags:
        metadata = {**(metadata if isinstance(metadata, dict) else {}), "tags": raw_tags}
    model = text("model") or ""
    if len(model) > MAX_MODEL_CHARS:
        raise RequestError(f"'model' is {len(model)} characters; at most {MAX_MODEL_CHARS} are allowed")
    return AudioRequest(
        audio=content,
        filename=filename,
        model=model,
        language=language.lower() if language else None,
        response_format=fmt,
        tags=tags_from(metadata, tags_header),
    )
