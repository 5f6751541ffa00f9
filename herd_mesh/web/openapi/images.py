"""The image routes (herd-mesh's own and OpenAI's), described from `core/image_request.py`'s limits so the
contract says exactly what `parse_image_request` and `parse_openai_request` accept."""

from __future__ import annotations

from ...core import catalogue
from ...core.image_request import (
    DEFAULTS,
    MAX_GUIDANCE,
    MAX_IMAGES,
    MAX_PROMPT_CHARS,
    MAX_SEED,
    MAX_SIDE,
    MAX_STEPS,
    MIN_GUIDANCE,
    MIN_SIDE,
    MIN_STEPS,
    QUANTIZE_LEVELS,
    SIDE_MULTIPLE,
)
from .schemas import (
    NOT_BLANK,
    PROMPT_PATTERN,
    REQUEST_ID_HEADER,
    SIZE_PATTERN,
    TAGS_HEADER,
    Schema,
    body,
    errors,
    json_answer,
    op,
    ref,
)


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
        "metadata": ref("Metadata"),
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


def image_paths() -> Schema:
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
            "post": op(
                "Generate one image on the peer that will finish it first",
                "images",
                {
                    "200": {
                        "description": "the PNG",
                        "headers": IMAGE_HEADERS,
                        "content": {"image/png": {"schema": {"type": "string", "format": "binary"}}},
                    },
                    **errors(400, 404, 413, 415, 502, 503, 507),
                },
                parameters=[TAGS_HEADER, REQUEST_ID_HEADER],
                requestBody=body(IMAGE_REQUEST, IMAGE_EXAMPLE),
            )
        },
        "/v1/images/generations": {
            "post": op(
                "OpenAI's images API: `n` images as base64 PNGs",
                "images",
                {
                    "200": json_answer(
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
                    **errors(400, 404, 413, 415, 502, 503, 507),
                },
                parameters=[TAGS_HEADER],
                requestBody=body(_openai_image_request(), {"prompt": "a lighthouse at dawn", "size": "256x256"}),
            )
        },
        "/api/image-models": {
            "get": op(
                "Image models: the catalogue and local models, with the peers that have each",
                "images",
                {
                    "200": json_answer(
                        {
                            "type": "object",
                            "required": ["models"],
                            "properties": {
                                "models": {"type": "array", "items": models_entry},
                                "install": {"type": "string"},
                            },
                        }
                    ),
                    **errors(),
                },
            )
        },
    }
