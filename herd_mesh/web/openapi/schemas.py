"""What every part of the contract shares: the validators' patterns, the reusable `components`, and the small
builders each family of paths is written with, so an error, a body or a header reads the same on every route."""

from __future__ import annotations

from typing import Any

from ...core.image_request import MAX_SIDE, MAX_TAG_CHARS, MAX_TAGS, MIN_SIDE
from ...core.model_request import MAX_MODEL_CHARS
from ...core.settings import SCHEMA as SETTINGS
from ...core.stats import KINDS
from ...dispatch.jobs import REQUEST_ID_RE
from ..middleware.body_limit import MAX_BODY_BYTES

Schema = dict[str, Any]


# Text the validators accept: something besides whitespace, and no NUL (`_text` in core/image_request.py).
PROMPT_PATTERN = r"^[^\u0000]*[^\s\u0000][^\u0000]*$"
NOT_BLANK = r"\S"


def _digits_between(low: str, high: str) -> str:
    """A regex for the numbers from `low` to `high`, written with the same number of digits."""
    if not low:
        return ""
    if low[0] == high[0]:
        return low[0] + _digits_between(low[1:], high[1:])
    rest = len(low) - 1
    parts = [low[0] + _digits_between(low[1:], "9" * rest), high[0] + _digits_between("0" * rest, high[1:])]
    if int(high[0]) - int(low[0]) > 1:
        parts.insert(1, f"[{int(low[0]) + 1}-{int(high[0]) - 1}]" + "[0-9]" * rest)
    return "(?:" + "|".join(parts) + ")"


def number_pattern(low: int, high: int, digits: int) -> str:
    """A regex for the integers from `low` to `high` (0 <= low <= high) written with at most `digits` digits,
    leading zeros included, as `int()` reads them."""
    spans = [(max(low, 10 ** (d - 1) if d > 1 else 0), min(high, 10**d - 1), d) for d in range(1, digits + 1)]
    return (
        "(?:" + "|".join(f"0{{0,{digits - d}}}{_digits_between(str(a), str(b))}" for a, b, d in spans if a <= b) + ")"
    )


# OpenAI's `size`: WIDTHxHEIGHT, each side MIN_SIDE..MAX_SIDE in at most 4 digits (`parse_openai_request`)
SIDE_PATTERN = number_pattern(MIN_SIDE, MAX_SIDE, 4)
SIZE_PATTERN = f"^{SIDE_PATTERN}x{SIDE_PATTERN}$"
# `X-Herd-Tags: a, b`: comma-separated tags, each stripped and empty ones dropped (`header_tags`); at most
# MAX_TAGS tags of 1-MAX_TAG_CHARS characters
_TAG = rf"\s*[^,\s](?:[^,]{{0,{MAX_TAG_CHARS - 2}}}[^,\s])?\s*"
TAGS_HEADER_PATTERN = rf"^(?:\s*,)*\s*(?:{_TAG}(?:,(?:\s*,)*{_TAG}){{0,{MAX_TAGS - 1}}})?(?:,\s*)*$"
EXAMPLE_LLM, EXAMPLE_EMBED = "llama3.2", "nomic-embed-text"  # the README's models (and the contract test's)

# -- shared schemas -----------------------------------------------------------------------------------------------
COMPONENTS: Schema = {
    "schemas": {
        "Error": {
            "type": "object",
            "description": "herd-mesh's (and Ollama's) error: a sentence that names the field and what is allowed. "
            "`reason` is a machine-readable code (busy, disabled, not-installed, engine-failed, bad-audio, "
            "overloaded, no-room, ...); `available` lists the models there are; `attempts` each peer tried.",
            "required": ["error"],
            "properties": {
                "error": {"type": "string"},
                "reason": {"type": "string"},
                "available": {"type": "array"},
                "attempts": {"type": "array", "items": {"type": "object"}},
            },
        },
        "OpenAIError": {
            "type": "object",
            "description": "OpenAI's error shape on the /v1 model routes (what the official client raises from); "
            "errors the peer answers before a route runs (413, 429, ...) have herd-mesh's shape.",
            "required": ["error"],
            "properties": {
                "error": {
                    "anyOf": [
                        {"type": "string"},
                        {
                            "type": "object",
                            "required": ["message", "type"],
                            "properties": {
                                "message": {"type": "string"},
                                "type": {"type": "string"},
                                "param": {"type": ["string", "null"]},
                                "code": {"type": ["string", "null"]},
                            },
                        },
                    ]
                }
            },
        },
        "AnthropicError": {
            "type": "object",
            "description": "Anthropic's error shape on /v1/messages; errors the peer answers before a route runs "
            "(413, 429, ...) have herd-mesh's shape.",
            "required": ["error"],
            "properties": {
                "type": {"const": "error"},
                "error": {
                    "anyOf": [
                        {"type": "string"},
                        {
                            "type": "object",
                            "required": ["type", "message"],
                            "properties": {"type": {"type": "string"}, "message": {"type": "string"}},
                        },
                    ]
                },
            },
        },
        "Tags": {
            "type": "array",
            "description": "labels for the statistics",
            "maxItems": MAX_TAGS,
            "items": {"type": "string", "minLength": 1, "maxLength": MAX_TAG_CHARS},
        },
        "Metadata": {
            "type": ["object", "null"],
            "properties": {"tags": {"$ref": "#/components/schemas/Tags"}},
        },
        "LlmMetadata": {
            "type": ["object", "null"],
            "description": "OpenAI-style metadata; herd-mesh reads `tags` (a list, or one comma-separated string) "
            "and passes the rest on",
            "properties": {
                "tags": {
                    "anyOf": [
                        {"$ref": "#/components/schemas/Tags"},
                        {"type": "string", "pattern": TAGS_HEADER_PATTERN},
                    ]
                }
            },
        },
        "ModelName": {
            "type": "string",
            "maxLength": MAX_MODEL_CHARS,
            "pattern": NOT_BLANK,
            "description": "an Ollama model some peer of the mesh has (see GET /api/tags)",
            "examples": [EXAMPLE_LLM],
        },
        "Message": {
            "type": "object",
            "required": ["role", "content"],
            "properties": {
                "role": {"type": "string", "enum": ["system", "user", "assistant", "tool"]},
                "content": {"type": "string"},
                "images": {"type": "array", "items": {"type": "string"}},
            },
        },
        "Stream": {"type": ["boolean", "null"], "description": "stream the answer (NDJSON or server-sent events)"},
        "Passthrough": {
            "type": "object",
            "description": "the model's answer as Ollama wrote it (streamed line by line when `stream` is on)",
        },
        "Job": {
            "type": "object",
            "required": ["id", "kind"],
            "properties": {
                "id": {"type": "string"},
                "kind": {"type": "string"},
                "model": {"type": "string"},
                "state": {"type": "string", "description": "queued, running, done or failed"},
                "node": {"type": ["string", "null"]},
                "queue_position": {"type": ["integer", "null"]},
                "step": {"type": ["integer", "null"]},
                "steps": {"type": ["integer", "null"]},
                "eta_s": {"type": ["number", "null"]},
            },
        },
        "Settings": {
            "type": "object",
            "required": list(SETTINGS),
            "properties": {
                key: {"type": "boolean"} if s.type is bool else {"type": "integer"} for key, s in SETTINGS.items()
            },
        },
        "Stats": {
            "type": "object",
            "required": ["kind", "window_s", "since", "generated_at", "nodes_answered", "nodes_missing"],
            "properties": {
                "kind": {"type": "string", "enum": [*KINDS, "all"]},
                "window_s": {"type": "number"},
                "nodes_answered": {"type": "array", "items": {"type": "string"}},
                "nodes_missing": {"type": "array", "items": {"type": "object"}},
            },
        },
    },
}


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def size(limit: int) -> str:
    """A body limit as the 413 states it."""
    return f"{limit // 2**20} MB" if limit >= 2**20 else f"{limit // 1024} KB"


ERROR_SHAPES = {"herd": "Error", "ollama": "Error", "openai": "OpenAIError", "anthropic": "AnthropicError"}


def error(description: str, api: str = "herd") -> Schema:
    return {"description": description, "content": {"application/json": {"schema": ref(ERROR_SHAPES[api])}}}


ERRORS = {
    400: "the request is malformed: a wrong field, type or value, named in `error`",
    401: "the peer has API keys (--api-key) and the request carries none",
    403: "a cross-site browser request that would change something (allow the web app with --cors-origin), or an "
    "API key the peer does not know",
    404: "no such model, job or file (for a model: `available` lists those there are)",
    409: "the request was forwarded to the wrong peer",
    413: f"the body is larger than {size(MAX_BODY_BYTES)}",
    415: "the body is not `Content-Type: application/json`",
    421: "the Host header is not one of this peer's names",
    429: "too many requests from this client at once (`Retry-After`)",
    502: "every peer that could run it failed (`attempts` says how)",
    503: "switched off in the settings, every queue full, or the backend is not running (`Retry-After`)",
    507: "the job does not fit in any peer's memory",
}
ALWAYS = (401, 403, 421, 429)  # what the middleware may answer on any route


def errors(*codes: int, api: str = "herd") -> dict[str, Schema]:
    return {str(code): error(ERRORS[code], api) for code in sorted({*ALWAYS, *codes})}


def json_answer(schema: Schema, description: str = "OK") -> Schema:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def body(schema: Schema, example: Any = None, *, required: bool = True) -> Schema:
    media: Schema = {"schema": schema}
    if example is not None:
        media["example"] = example
    return {"required": required, "content": {"application/json": media}}


def query(name: str, schema: Schema, description: str) -> Schema:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


def op(summary: str, tag: str, responses: dict[str, Schema], **more: Any) -> Schema:
    return {"summary": summary, "tags": [tag], "responses": responses, **more}


TAGS_HEADER = {
    "name": "X-Herd-Tags",
    "in": "header",
    "required": False,
    "schema": {"type": "string", "pattern": TAGS_HEADER_PATTERN},
    "description": "comma-separated tags, for clients that cannot send `metadata.tags`",
}
REQUEST_ID_HEADER = {
    "name": "X-Request-Id",
    "in": "header",
    "required": False,
    "schema": {"type": "string", "pattern": f"^$|{REQUEST_ID_RE.pattern}"},
    "description": "your own id for the job (left out or empty: one is made); GET /api/jobs/{id} follows it",
}
