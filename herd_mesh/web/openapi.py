"""The public API's contract, served as `GET /openapi.json` (OpenAPI 3.1).

One dict, built here from the validators' own constants (`core/image_request.py`, `core/model_request.py`,
`core/settings.py`, the dashboard's query limits), so a limit changed there changes the contract too.
`tests/test_openapi.py` fails when a public route is added without being described here, and
`tests/test_api_contract.py` runs schemathesis against a live peer with it. `/mesh/*` is peer-to-peer and left
out on purpose: it is no API for clients.
"""

from __future__ import annotations

import copy
from typing import Any

from .._version import __version__
from ..core import catalogue
from ..core.image_request import (
    DEFAULTS,
    MAX_GUIDANCE,
    MAX_IMAGES,
    MAX_PROMPT_CHARS,
    MAX_SEED,
    MAX_SIDE,
    MAX_STEPS,
    MAX_TAG_CHARS,
    MAX_TAGS,
    MIN_GUIDANCE,
    MIN_SIDE,
    MIN_STEPS,
    QUANTIZE_LEVELS,
    SIDE_MULTIPLE,
)
from ..core.manage_request import MAX_NAME_CHARS as MAX_MANAGE_NAME_CHARS
from ..core.model_request import MAX_MODEL_CHARS, OPENAI_TRANSCRIBE_FIELDS, RESPONSE_FORMATS, TRANSCRIBE_FIELDS
from ..core.settings import SCHEMA as SETTINGS
from ..core.stats import KINDS
from ..dispatch.jobs import REQUEST_ID_RE
from .middleware.body_limit import MAX_BODY_BYTES, MAX_CONVERSATION_BYTES, MAX_UPLOAD_BYTES
from .routes.dashboard import MAX_HOURS, MAX_RECENT, MAX_TZ_MINUTES, STATIC_FILES

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


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _size(limit: int) -> str:
    """A body limit as the 413 states it."""
    return f"{limit // 2**20} MB" if limit >= 2**20 else f"{limit // 1024} KB"


ERROR_SHAPES = {"herd": "Error", "ollama": "Error", "openai": "OpenAIError", "anthropic": "AnthropicError"}


def _error(description: str, api: str = "herd") -> Schema:
    return {"description": description, "content": {"application/json": {"schema": _ref(ERROR_SHAPES[api])}}}


ERRORS = {
    400: "the request is malformed: a wrong field, type or value, named in `error`",
    401: "the peer has API keys (--api-key) and the request carries none",
    403: "a cross-site browser request that would change something (allow the web app with --cors-origin), or an "
    "API key the peer does not know",
    404: "no such model, job or file (for a model: `available` lists those there are)",
    409: "the request was forwarded to the wrong peer",
    413: f"the body is larger than {_size(MAX_BODY_BYTES)}",
    415: "the body is not `Content-Type: application/json`",
    421: "the Host header is not one of this peer's names",
    429: "too many requests from this client at once (`Retry-After`)",
    502: "every peer that could run it failed (`attempts` says how)",
    503: "switched off in the settings, every queue full, or the backend is not running (`Retry-After`)",
    507: "the job does not fit in any peer's memory",
}
ALWAYS = (401, 403, 421, 429)  # what the middleware may answer on any route


def _errors(*codes: int, api: str = "herd") -> dict[str, Schema]:
    return {str(code): _error(ERRORS[code], api) for code in sorted({*ALWAYS, *codes})}


def _json(schema: Schema, description: str = "OK") -> Schema:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _body(schema: Schema, example: Any = None, *, required: bool = True) -> Schema:
    media: Schema = {"schema": schema}
    if example is not None:
        media["example"] = example
    return {"required": required, "content": {"application/json": media}}


def _query(name: str, schema: Schema, description: str) -> Schema:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


def _op(summary: str, tag: str, responses: dict[str, Schema], **more: Any) -> Schema:
    return {"summary": summary, "tags": [tag], "responses": responses, **more}


# -- images -------------------------------------------------------------------------------------------------------
def _image_properties() -> Schema:
    """The body `parse_image_request` accepts, field by field."""
    nullable_int = ["integer", "null"]
    return {
        "model": {
            "type": "string",
            "pattern": NOT_BLANK,
            "description": f"{', '.join(catalogue.MODELS)}, or a local model (GET /api/image-models)",
            "examples": ["z-image-turbo"],
        },
        "prompt": {"type": "string", "minLength": 1, "maxLength": MAX_PROMPT_CHARS, "pattern": PROMPT_PATTERN},
        "width": {
            "type": "integer",
            "minimum": MIN_SIDE,
            "maximum": MAX_SIDE,
            "default": DEFAULTS["width"],
            "description": f"rounded to the nearest multiple of {SIDE_MULTIPLE}",
        },
        "height": {
            "type": "integer",
            "minimum": MIN_SIDE,
            "maximum": MAX_SIDE,
            "default": DEFAULTS["height"],
            "description": f"rounded to the nearest multiple of {SIDE_MULTIPLE}",
        },
        "steps": {
            "type": nullable_int,
            "minimum": MIN_STEPS,
            "maximum": MAX_STEPS,
            "description": "the model's default when left out",
        },
        "quantize": {"type": "integer", "enum": list(QUANTIZE_LEVELS), "default": DEFAULTS["quantize"]},
        "seed": {"type": nullable_int, "minimum": 0, "maximum": MAX_SEED, "description": "random when left out"},
        "guidance": {
            "type": ["number", "null"],
            "minimum": MIN_GUIDANCE,
            "maximum": MAX_GUIDANCE,
            "description": "the model's default when left out; ignored (X-Fleet-Ignored) by "
            "guidance-distilled models",
        },
        "negative_prompt": {
            "type": ["string", "null"],
            "maxLength": MAX_PROMPT_CHARS,
            "pattern": r"^[^\u0000]*$",
            "description": "used only where the model has a negative pass",
        },
        "metadata": _ref("Metadata"),
    }


IMAGE_REQUEST: Schema = {
    "type": "object",
    "required": ["model", "prompt"],
    "additionalProperties": False,
    "properties": _image_properties(),
}
IMAGE_EXAMPLE = {
    "model": "z-image-turbo",
    "prompt": "a neon-lit Tokyo alley at midnight",
    "width": 1024,
    "height": 1024,
    "steps": 4,
    "quantize": 8,
}


def _openai_image_request() -> Schema:
    """The body `parse_openai_request` accepts: OpenAI's fields plus herd-mesh's own."""
    native = _image_properties()
    props: Schema = {
        "model": {"type": ["string", "null"], "pattern": r"^$|\S", "default": "z-image-turbo"},
        "prompt": native["prompt"],
        "n": {
            "type": "integer",
            "minimum": 1,
            "maximum": MAX_IMAGES,
            "default": 1,
            "description": "images, made in parallel over the mesh",
        },
        "size": {
            "type": "string",
            "pattern": SIZE_PATTERN,
            "default": "1024x1024",
            "description": f"WIDTHxHEIGHT, each side {MIN_SIDE}-{MAX_SIDE}",
        },
        "response_format": {
            "type": "string",
            "enum": ["b64_json"],
            "default": "b64_json",
            "description": "herd-mesh hosts no image URLs",
        },
        "quality": {"description": "accepted and ignored"},
        "style": {"description": "accepted and ignored"},
        "user": {"description": "accepted and ignored"},
        **{key: native[key] for key in ("seed", "steps", "guidance", "negative_prompt", "metadata")},
    }
    return {"type": "object", "required": ["prompt"], "additionalProperties": False, "properties": props}


IMAGE_HEADERS: dict[str, Schema] = {
    name: {"description": text, "required": True, "schema": {"type": "string"}}
    for name, text in {
        "X-Fleet-Node": "the Mac that generated it",
        "X-Fleet-Model": "the model used",
        "X-Fleet-Seed": "the seed used (send it back as `seed` for the same image)",
        "X-Generation-Time": "milliseconds the generation took there",
        "X-Queue-Time": "milliseconds from arrival to the start of generation",
        "X-Fleet-Attempts": "failed tries plus one",
        "X-Fleet-Moves": "redirections on the way",
        "X-Image-Size": "WIDTHxHEIGHT generated",
        "X-Request-Id": "the job's id (GET /api/jobs/{id})",
    }.items()
}
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


def _image_paths() -> Schema:
    models_entry = {
        "type": "object",
        "required": ["name", "available", "peers"],
        "properties": {
            "name": {"type": "string"},
            "description": {"type": "string"},
            "available": {"type": "boolean"},
            "peers": {"type": "array", "items": {"type": "object"}},
            "defaults": {"type": "object"},
            "base": {"type": "string"},
        },
    }
    return {
        "/api/generate-image": {
            "post": _op(
                "Generate one image on the peer that will finish it first",
                "images",
                {
                    "200": {
                        "description": "the PNG",
                        "headers": IMAGE_HEADERS,
                        "content": {"image/png": {"schema": {"type": "string", "format": "binary"}}},
                    },
                    **_errors(400, 404, 413, 415, 502, 503, 507),
                },
                parameters=[TAGS_HEADER, REQUEST_ID_HEADER],
                requestBody=_body(IMAGE_REQUEST, IMAGE_EXAMPLE),
            )
        },
        "/v1/images/generations": {
            "post": _op(
                "OpenAI's images API: `n` images as base64 PNGs",
                "images",
                {
                    "200": _json(
                        {
                            "type": "object",
                            "required": ["created", "data"],
                            "properties": {
                                "created": {"type": "integer"},
                                "data": {
                                    "type": "array",
                                    "items": {
                                        "type": "object",
                                        "required": ["b64_json"],
                                        "properties": {
                                            "b64_json": {"type": "string"},
                                            "revised_prompt": {"type": "string"},
                                        },
                                    },
                                },
                            },
                        }
                    ),
                    **_errors(400, 404, 413, 415, 502, 503, 507),
                },
                parameters=[TAGS_HEADER],
                requestBody=_body(_openai_image_request(), {"prompt": "a lighthouse at dawn", "size": "256x256"}),
            )
        },
        "/api/image-models": {
            "get": _op(
                "Image models: the catalogue and local models, with the peers that have each",
                "images",
                {
                    "200": _json(
                        {
                            "type": "object",
                            "required": ["models"],
                            "properties": {
                                "models": {"type": "array", "items": models_entry},
                                "install": {"type": "string"},
                            },
                        }
                    ),
                    **_errors(),
                },
            )
        },
    }


# -- LLM, embeddings and model lists ------------------------------------------------------------------------------
def _llm_request(*required: str, **props: Schema) -> Schema:
    """An Ollama or OpenAI body: herd-mesh checks `model`, `stream`, `messages` and `metadata`; every other field
    goes to Ollama as sent."""
    return {
        "type": "object",
        "required": list(required),
        "additionalProperties": True,
        "properties": {
            "model": _ref("ModelName"),
            "stream": _ref("Stream"),
            "metadata": _ref("LlmMetadata"),
            **props,
        },
    }


MESSAGES = {"type": "array", "items": _ref("Message")}
TEXTS = {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]}
OLLAMA_STREAM = {
    "200": {
        "description": "the answer; streamed as NDJSON unless `stream` is false",
        "headers": {"X-Fleet-Node": {"description": "the Mac that answered", "schema": {"type": "string"}}},
        "content": {"application/json": {"schema": _ref("Passthrough")}, "application/x-ndjson": {}},
    },
}
SSE_STREAM = {
    "200": {
        "description": "the answer; streamed as server-sent events when `stream` is true",
        "headers": {"X-Fleet-Node": {"description": "the Mac that answered", "schema": {"type": "string"}}},
        "content": {"application/json": {"schema": _ref("Passthrough")}, "text/event-stream": {}},
    },
}
MODEL_ERRORS = (400, 404, 413, 502, 503)


def _llm_paths() -> Schema:
    chat = {"role": "user", "content": "Why is the sky blue?"}
    ollama_list = _json(
        {
            "type": "object",
            "required": ["models"],
            "properties": {"models": {"type": "array", "items": {"type": "object"}}},
        }
    )
    openai_model = {
        "type": "object",
        "required": ["id", "object"],
        "properties": {
            "id": {"type": "string"},
            "object": {"const": "model"},
            "nodes": {"type": "array", "items": {"type": "string"}},
        },
    }

    def post(summary: str, tag: str, body: Schema, example: Schema, api: str = "ollama", chat: bool = True) -> Schema:
        """`chat`: a conversation route, whose bodies may be larger (an agent sends the whole of it each turn)."""
        ok = OLLAMA_STREAM if api == "ollama" else SSE_STREAM
        errors = _errors(*MODEL_ERRORS, api=api)
        if chat:
            errors["413"] = _error(f"the body is larger than {_size(MAX_CONVERSATION_BYTES)} (a whole "
                                   "conversation is sent each turn)", api)  # fmt: skip
        return {
            "post": _op(
                summary,
                tag,
                {**ok, **errors},
                parameters=[TAGS_HEADER],
                requestBody=_body(body, example),
            )
        }

    return {
        "/api/chat": post(
            "Ollama chat, on the peer with the model and the least to do",
            "llm",
            _llm_request("model", messages=MESSAGES),
            {"model": EXAMPLE_LLM, "messages": [chat]},
        ),
        "/api/generate": post(
            "Ollama completion",
            "llm",
            _llm_request("model", prompt={"type": "string"}),
            {"model": EXAMPLE_LLM, "prompt": "Why is the sky blue?", "stream": False},
        ),
        "/v1/chat/completions": post(
            "OpenAI chat completions",
            "llm",
            _llm_request("model", "messages", messages=MESSAGES),
            {"model": EXAMPLE_LLM, "messages": [chat]},
            api="openai",
        ),
        "/v1/completions": post(
            "OpenAI's legacy completions",
            "llm",
            _llm_request("model", "prompt", prompt=TEXTS),
            {"model": EXAMPLE_LLM, "prompt": "Why is the sky blue?"},
            api="openai",
        ),
        "/v1/responses": post(
            "OpenAI's Responses API, stateless (as Ollama serves it)",
            "llm",
            _llm_request(
                "model",
                "input",
                input={"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "object"}}]},
                instructions={"type": "string"},
            ),
            {"model": EXAMPLE_LLM, "input": "Why is the sky blue?"},
            api="openai",
        ),
        "/v1/messages": post(
            "Anthropic's Messages API (Claude Code, the anthropic SDK)",
            "llm",
            _llm_request(
                "model",
                "messages",
                "max_tokens",
                messages={
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["role", "content"],
                        "properties": {
                            "role": {"type": "string", "enum": ["user", "assistant"]},
                            "content": {
                                "anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "object"}}]
                            },
                        },
                    },
                },
                max_tokens={"type": "integer", "minimum": 1},
                system={"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "object"}}]},
            ),
            {"model": EXAMPLE_LLM, "max_tokens": 256, "messages": [chat]},
            api="anthropic",
        ),
        "/api/embed": post(
            "Ollama embeddings (one or many inputs)",
            "embeddings",
            _llm_request("model", input=TEXTS),
            {"model": EXAMPLE_EMBED, "input": ["a", "b"]},
            chat=False,
        ),
        "/api/embeddings": post(
            "Ollama's older embeddings API (one prompt)",
            "embeddings",
            _llm_request("model", prompt={"type": "string"}),
            {"model": EXAMPLE_EMBED, "prompt": "search query"},
            chat=False,
        ),
        "/v1/embeddings": post(
            "OpenAI embeddings",
            "embeddings",
            _llm_request("model", "input", input=TEXTS),
            {"model": EXAMPLE_EMBED, "input": "search query"},
            api="openai",
            chat=False,
        ),
        "/api/show": post(
            "Ollama model details, from a peer that has it",
            "llm",
            {**_llm_request(name=_ref("ModelName")), "anyOf": [{"required": ["model"]}, {"required": ["name"]}]},
            {"model": EXAMPLE_LLM},
            chat=False,
        ),
        "/api/tags": {
            "get": _op(
                "The mesh's Ollama models, each with the `nodes` that have it",
                "llm",
                {"200": ollama_list, **_errors()},
            )
        },
        "/api/ps": {
            "get": _op(
                "Models loaded anywhere in the mesh, each with its `node`", "llm", {"200": ollama_list, **_errors()}
            )
        },
        "/api/version": {
            "get": _op(
                "The Ollama version of the mesh",
                "llm",
                {
                    "200": _json(
                        {"type": "object", "required": ["version"], "properties": {"version": {"type": "string"}}}
                    ),
                    **_errors(503),
                },
            )
        },
        "/v1/models": {
            "get": _op(
                "OpenAI's model list: the mesh's union",
                "llm",
                {
                    "200": _json(
                        {
                            "type": "object",
                            "required": ["object", "data"],
                            "properties": {
                                "object": {"const": "list"},
                                "data": {"type": "array", "items": openai_model},
                            },
                        }
                    ),
                    **_errors(api="openai"),
                },
            )
        },
        "/v1/models/{model}": {
            "get": _op(
                "One model of OpenAI's list (with `anthropic-version`: Anthropic's fields and error shape)",
                "llm",
                {"200": _json(openai_model), **_errors(404, api="openai")},
                parameters=[
                    {
                        "name": "model",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string"},
                        "example": EXAMPLE_LLM,
                    }
                ],
            )
        },
    }


# -- model management ---------------------------------------------------------------------------------------------
def _manage_paths() -> Schema:
    """Pull, delete, copy, create (`core/manage_request.py`): herd-mesh checks `node`, `confirm`, the names and
    `stream`; the rest goes to that peer's Ollama as sent."""
    name = {"type": "string", "maxLength": MAX_MANAGE_NAME_CHARS, "pattern": NOT_BLANK, "examples": [EXAMPLE_LLM]}
    node = {"type": ["string", "null"], "pattern": NOT_BLANK, "description": "the peer's node id, e.g. mac-b"}
    named = {"anyOf": [{"required": ["model"]}, {"required": ["name"]}]}

    def body(*required: str, **props: Schema) -> Schema:
        return {
            "type": "object",
            "required": list(required),
            "additionalProperties": True,
            "properties": {"node": node, "stream": _ref("Stream"), **props},
        }

    def op(summary: str, request: Schema, example: Schema, ok: Schema) -> Schema:
        return _op(
            summary,
            "models",
            {"200": ok, **_errors(400, 404, 409, 413, 502, 503)},
            requestBody=_body(request, example),
        )

    progress = OLLAMA_STREAM["200"]
    done = {"description": "done", "headers": progress["headers"]}
    delete = op(
        "Delete a model from one peer's Ollama: name the peer, and confirm",
        {**body("node", "confirm", model=name, name=name, confirm={"const": True}), **named},
        {"model": EXAMPLE_LLM, "node": "mac-b", "confirm": True},
        done,
    )
    return {
        "/api/pull": {
            "post": op(
                "Pull a model onto one peer (`node`), or onto the peer with the most free disk",
                {**body(model=name, name=name, insecure={"type": "boolean"}), **named},
                {"model": EXAMPLE_LLM, "node": "mac-b"},
                progress,
            )
        },
        "/api/delete": {"post": delete, "delete": delete},
        "/api/copy": {
            "post": op(
                "Copy a model on one peer",
                body("node", "source", "destination", source=name, destination=name),
                {"source": EXAMPLE_LLM, "destination": "my-llama", "node": "mac-b"},
                done,
            )
        },
        "/api/create": {
            "post": op(
                "Create a model on one peer (from a model it has)",
                {**body("node", model=name, name=name, **{"from": {"type": "string"}}), **named},
                {"model": "my-llama", "from": EXAMPLE_LLM, "node": "mac-b"},
                progress,
            )
        },
    }


# -- speech-to-text -----------------------------------------------------------------------------------------------
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


def _audio_paths() -> Schema:
    def post(summary: str, file_field: str, fields: tuple[str, ...], openai: bool) -> Schema:
        ok = {
            "description": "the transcript (bare text with response_format=text)",
            "content": {"application/json": {"schema": TRANSCRIPT}, "text/plain": {"schema": {"type": "string"}}},
        }
        api = "openai" if openai else "herd"
        errors = _errors(400, 404, 503, api=api)
        errors["413"] = _error(f"the upload is larger than {_size(MAX_UPLOAD_BYTES)}", api)
        errors["415"] = _error("the body is not multipart/form-data", api)
        form = {"multipart/form-data": {"schema": _audio_form(file_field, fields)}}
        return {
            "post": _op(
                summary,
                "audio",
                {"200": ok, **errors},
                parameters=[TAGS_HEADER],
                requestBody={"required": True, "content": form},
            )
        }

    return {
        "/api/transcribe": post("Speech to text on the best peer's Whisper", "audio", TRANSCRIBE_FIELDS, False),
        "/v1/audio/transcriptions": post("OpenAI's transcriptions API", "file", OPENAI_TRANSCRIBE_FIELDS, True),
    }


# -- dashboard and jobs -------------------------------------------------------------------------------------------
def _dashboard_paths() -> Schema:
    detail = _query(
        "detail",
        {"type": "string", "enum": ["1", "true", "0", "false"]},
        "1: add the schema, who changed what, and which peers agree",
    )
    settings_change = {
        "type": "object",
        "minProperties": 1,
        "additionalProperties": False,
        "properties": {
            key: {"type": "boolean"}
            if s.type is bool
            else {"type": "integer", "minimum": s.minimum, "maximum": s.maximum}
            for key, s in SETTINGS.items()
        },
    }
    settings_answer = _json({"anyOf": [_ref("Settings"), {"type": "object", "required": ["settings", "schema"]}]})
    stats_params = [
        _query("hours", {"type": "integer", "minimum": 1, "maximum": MAX_HOURS, "default": 24}, "the window"),
        _query(
            "recent",
            {"type": "integer", "minimum": 0, "maximum": MAX_RECENT, "default": 20},
            "how many recent events to list",
        ),
        _query(
            "scope",
            {"type": "string", "enum": ["mesh", "local"], "default": "mesh"},
            "local: this peer's records only",
        ),
        _query(
            "tz",
            {"type": "integer", "minimum": -MAX_TZ_MINUTES, "maximum": MAX_TZ_MINUTES, "default": 0},
            "the reader's offset from UTC in minutes (east positive): the timeline's buckets start on its hours",
        ),
    ]
    health = {
        "type": "object",
        "required": ["self", "mesh", "settings", "last_24h"],
        "properties": {"settings": _ref("Settings"), "self": {"type": "string"}},
    }
    return {
        "/dashboard": {
            "get": _op(
                "The dashboard page",
                "dashboard",
                {
                    "200": {"description": "HTML", "content": {"text/html": {"schema": {"type": "string"}}}},
                    **_errors(),
                },
            )
        },
        "/dashboard/static/{name}": {
            "get": _op(
                "The dashboard's script and style sheet",
                "dashboard",
                {
                    "200": {
                        "description": "the file",
                        "content": {
                            media.split(";")[0]: {"schema": {"type": "string"}} for media in STATIC_FILES.values()
                        },
                    },
                    **_errors(404),
                },
                parameters=[
                    {
                        "name": "name",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string", "enum": list(STATIC_FILES)},
                    }
                ],
            )
        },
        "/dashboard/api/settings": {
            "get": _op(
                "The settings in force (the same on every peer)",
                "dashboard",
                {"200": settings_answer, **_errors(400)},
                parameters=[detail],
            ),
            "post": _op(
                "Change settings on every peer of the mesh",
                "dashboard",
                {"200": settings_answer, **_errors(400, 413, 415)},
                parameters=[detail],
                requestBody=_body(settings_change, {"image_generation": True}),
            ),
        },
        "/dashboard/api/image-stats": {
            "get": _op(
                "Image statistics over the mesh",
                "dashboard",
                {"200": _json(_ref("Stats")), **_errors(400)},
                parameters=stats_params,
            )
        },
        "/dashboard/api/stats": {
            "get": _op(
                "Statistics of one kind, or of every kind",
                "dashboard",
                {"200": _json(_ref("Stats")), **_errors(400)},
                parameters=[
                    *stats_params,
                    _query("kind", {"type": "string", "enum": list(KINDS)}, "every kind when left out"),
                ],
            )
        },
        "/dashboard/api/health": {
            "get": _op("Peers, the last day's activity, and advice", "dashboard", {"200": _json(health), **_errors()})
        },
        "/dashboard/api/events": {
            "get": _op(
                "Server-sent events, each when it changes: `peers`, `settings`, `records`; the stream stays open",
                "dashboard",
                {
                    "200": {"description": "an endless event stream", "content": {"text/event-stream": {}}},
                    **_errors(503),
                },
                **{"x-endless": True},
            )
        },
        "/dashboard/api/routing": {
            "get": _op(
                "Why a request went where it went, with each peer's try",
                "dashboard",
                {"200": _json({"type": "object", "required": ["same_id"]}), **_errors(400, 404)},
                parameters=[
                    {
                        "name": "job",
                        "in": "query",
                        "required": True,
                        "description": "the X-Request-Id of the answer",
                        "schema": {"type": "string", "pattern": REQUEST_ID_RE.pattern},
                    }
                ],
            )
        },
    }


def _other_paths() -> Schema:
    return {
        "/": {"get": _op("Redirects to the dashboard", "dashboard", {"307": {"description": "to /dashboard"}})},
        "/openapi.json": {"get": _op("This contract", "meta", {"200": _json({"type": "object"}), **_errors()})},
        "/api/jobs/{job_id}": {
            "get": _op(
                "Where a job is: queued where, step i of n, ETA",
                "jobs",
                {"200": _json(_ref("Job")), **_errors(400, 404)},
                parameters=[
                    {
                        "name": "job_id",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string", "pattern": REQUEST_ID_RE.pattern},
                        "description": "the X-Request-Id of the request",
                    },
                    _query("local", {"type": "string"}, "1: ask this peer only (any other value: the mesh)"),
                ],
            )
        },
    }


def build_spec() -> Schema:
    """The whole document, freshly built (callers may change their copy)."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "herd-mesh",
            "version": __version__,
            "description": "Every peer of the mesh serves this API on port 11435 and routes each request to the "
            'best Mac. Errors are JSON: `{"error": "..."}` (OpenAI\'s shape on the /v1 model routes) with a 4xx '
            "status for a bad request. The peer-to-peer endpoints under /mesh/ are internal and not described.",
        },
        "tags": [
            {"name": name} for name in ("images", "llm", "embeddings", "models", "audio", "dashboard", "jobs", "meta")
        ],
        "paths": {
            **_image_paths(),
            **_llm_paths(),
            **_manage_paths(),
            **_audio_paths(),
            **_dashboard_paths(),
            **_other_paths(),
        },
        "components": {
            **copy.deepcopy(COMPONENTS),
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "description": "an API key, or the mesh key"},
                "x-api-key": {"type": "apiKey", "in": "header", "name": "x-api-key", "description": "Anthropic's"},
            },
        },
        # Keys are optional: needed only on a peer started with --api-key (and, with a mesh key, for changes)
        "security": [{}, {"bearer": []}, {"x-api-key": []}],
    }


SPEC = build_spec()
