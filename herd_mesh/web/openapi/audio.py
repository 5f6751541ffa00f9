"""The speech-to-text routes: the multipart forms `parse_audio_form` accepts, herd-mesh's and OpenAI's."""

from __future__ import annotations

from ...core.model_request import MAX_MODEL_CHARS, OPENAI_TRANSCRIBE_FIELDS, RESPONSE_FORMATS, TRANSCRIBE_FIELDS
from ..middleware.body_limit import MAX_UPLOAD_BYTES
from .schemas import TAGS_HEADER, TAGS_HEADER_PATTERN, Schema, error, errors, op, size


def _audio_form(file_field: str, fields: tuple[str, ...]) -> Schema:
    """The multipart form `parse_audio_form` accepts."""
    known: Schema = {
        "audio": {"type": "string", "format": "binary", "description": "the recording"},
        "file": {"type": "string", "format": "binary", "description": "the recording (OpenAI's name)"},
        "model": {
            "type": "string",
            "maxLength": MAX_MODEL_CHARS,
            "description": "a Whisper model; the running peer's default when left out",
        },
        "language": {"type": "string", "pattern": r"^\s*[A-Za-z][A-Za-z-]{1,7}\s*$", "description": "e.g. en"},
        "response_format": {"type": "string", "enum": list(RESPONSE_FORMATS), "default": "json"},
        "tags": {"type": "string", "pattern": TAGS_HEADER_PATTERN, "description": "comma-separated tags"},
        "metadata": {"type": "string", "description": 'JSON such as {"tags": ["a"]}'},
        "prompt": {"type": "string", "description": "accepted and ignored"},
        "temperature": {"type": "string", "description": "accepted and ignored"},
        "timestamp_granularities[]": {"type": "string", "description": "accepted and ignored"},
    }
    props = {name: known[name] for name in fields if name != ("audio" if file_field == "file" else "file")}
    return {"type": "object", "required": [file_field], "additionalProperties": False, "properties": props}


TRANSCRIPT = {
    "type": "object",
    "required": ["text", "segments"],
    "properties": {
        "text": {"type": "string"},
        "language": {"type": ["string", "null"]},
        "duration": {"type": ["number", "null"]},
        "segments": {"type": "array", "items": {"type": "object", "required": ["start", "end", "text"]}},
    },
}


def audio_paths() -> Schema:
    def post(summary: str, file_field: str, fields: tuple[str, ...], openai: bool) -> Schema:
        ok = {
            "description": "the transcript (bare text with response_format=text)",
            "content": {"application/json": {"schema": TRANSCRIPT}, "text/plain": {"schema": {"type": "string"}}},
        }
        api = "openai" if openai else "herd"
        failures = errors(400, 404, 503, api=api)
        failures["413"] = error(f"the upload is larger than {size(MAX_UPLOAD_BYTES)}", api)
        failures["415"] = error("the body is not multipart/form-data", api)
        form = {"multipart/form-data": {"schema": _audio_form(file_field, fields)}}
        return {
            "post": op(
                summary,
                "audio",
                {"200": ok, **failures},
                parameters=[TAGS_HEADER],
                requestBody={"required": True, "content": form},
            )
        }

    return {
        "/api/transcribe": post("Speech to text on the best peer's Whisper", "audio", TRANSCRIBE_FIELDS, False),
        "/v1/audio/transcriptions": post("OpenAI's transcriptions API", "file", OPENAI_TRANSCRIBE_FIELDS, True),
    }
