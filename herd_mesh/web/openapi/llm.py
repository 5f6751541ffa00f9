"""The LLM routes (Ollama's, OpenAI's and Anthropic's chat, completions, embeddings, model lists) and model
management: herd-mesh checks only what it routes on, so these bodies stay open and the rest goes to Ollama."""

from __future__ import annotations

from ...core.manage_request import MAX_NAME_CHARS as MAX_MANAGE_NAME_CHARS
from ..middleware.body_limit import MAX_CONVERSATION_BYTES
from .schemas import (
    EXAMPLE_EMBED,
    EXAMPLE_LLM,
    NOT_BLANK,
    TAGS_HEADER,
    Schema,
    body,
    error,
    errors,
    json_answer,
    op,
    ref,
    size,
)


def _llm_request(*required: str, **props: Schema) -> Schema:
    """An Ollama or OpenAI body: herd-mesh checks `model`, `stream`, `messages` and `metadata`; every other field
    goes to Ollama as sent."""
    return {
        "type": "object",
        "required": list(required),
        "additionalProperties": True,
        "properties": {
            "model": ref("ModelName"),
            "stream": ref("Stream"),
            "metadata": ref("LlmMetadata"),
            **props,
        },
    }


MESSAGES = {"type": "array", "items": ref("Message")}
TEXTS = {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]}
OLLAMA_STREAM = {
    "200": {
        "description": "the answer; streamed as NDJSON unless `stream` is false",
        "headers": {"X-Fleet-Node": {"description": "the Mac that answered", "schema": {"type": "string"}}},
        "content": {"application/json": {"schema": ref("Passthrough")}, "application/x-ndjson": {}},
    },
}
SSE_STREAM = {
    "200": {
        "description": "the answer; streamed as server-sent events when `stream` is true",
        "headers": {"X-Fleet-Node": {"description": "the Mac that answered", "schema": {"type": "string"}}},
        "content": {"application/json": {"schema": ref("Passthrough")}, "text/event-stream": {}},
    },
}
MODEL_ERRORS = (400, 404, 413, 502, 503)


def llm_paths() -> Schema:
    chat = {"role": "user", "content": "Why is the sky blue?"}
    ollama_list = json_answer(
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

    def post(
        summary: str, tag: str, request: Schema, example: Schema, api: str = "ollama", chat: bool = True
    ) -> Schema:
        """`chat`: a conversation route, whose bodies may be larger (an agent sends the whole of it each turn)."""
        ok = OLLAMA_STREAM if api == "ollama" else SSE_STREAM
        failures = errors(*MODEL_ERRORS, api=api)
        if chat:
            failures["413"] = error(f"the body is larger than {size(MAX_CONVERSATION_BYTES)} (a whole "
                                    "conversation is sent each turn)", api)  # fmt: skip
        return {
            "post": op(
                summary,
                tag,
                {**ok, **failures},
                parameters=[TAGS_HEADER],
                requestBody=body(request, example),
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
            {**_llm_request(name=ref("ModelName")), "anyOf": [{"required": ["model"]}, {"required": ["name"]}]},
            {"model": EXAMPLE_LLM},
            chat=False,
        ),
        "/api/tags": {
            "get": op(
                "The mesh's Ollama models, each with the `nodes` that have it",
                "llm",
                {"200": ollama_list, **errors()},
            )
        },
        "/api/ps": {
            "get": op(
                "Models loaded anywhere in the mesh, each with its `node`", "llm", {"200": ollama_list, **errors()}
            )
        },
        "/api/version": {
            "get": op(
                "The Ollama version of the mesh",
                "llm",
                {
                    "200": json_answer(
                        {"type": "object", "required": ["version"], "properties": {"version": {"type": "string"}}}
                    ),
                    **errors(503),
                },
            )
        },
        "/v1/models": {
            "get": op(
                "OpenAI's model list: the mesh's union",
                "llm",
                {
                    "200": json_answer(
                        {
                            "type": "object",
                            "required": ["object", "data"],
                            "properties": {
                                "object": {"const": "list"},
                                "data": {"type": "array", "items": openai_model},
                            },
                        }
                    ),
                    **errors(api="openai"),
                },
            )
        },
        "/v1/models/{model}": {
            "get": op(
                "One model of OpenAI's list (with `anthropic-version`: Anthropic's fields and error shape)",
                "llm",
                {"200": json_answer(openai_model), **errors(404, api="openai")},
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
def manage_paths() -> Schema:
    """Pull, delete, copy, create (`core/manage_request.py`): herd-mesh checks `node`, `confirm`, the names and
    `stream`; the rest goes to that peer's Ollama as sent."""
    name = {"type": "string", "maxLength": MAX_MANAGE_NAME_CHARS, "pattern": NOT_BLANK, "examples": [EXAMPLE_LLM]}
    node = {"type": ["string", "null"], "pattern": NOT_BLANK, "description": "the peer's node id, e.g. mac-b"}
    named = {"anyOf": [{"required": ["model"]}, {"required": ["name"]}]}

    def fields(*required: str, **props: Schema) -> Schema:
        return {
            "type": "object",
            "required": list(required),
            "additionalProperties": True,
            "properties": {"node": node, "stream": ref("Stream"), **props},
        }

    def operation(summary: str, request: Schema, example: Schema, ok: Schema) -> Schema:
        return op(
            summary,
            "models",
            {"200": ok, **errors(400, 404, 409, 413, 502, 503)},
            requestBody=body(request, example),
        )

    progress = OLLAMA_STREAM["200"]
    done = {"description": "done", "headers": progress["headers"]}
    delete = operation(
        "Delete a model from one peer's Ollama: name the peer, and confirm",
        {**fields("node", "confirm", model=name, name=name, confirm={"const": True}), **named},
        {"model": EXAMPLE_LLM, "node": "mac-b", "confirm": True},
        done,
    )
    return {
        "/api/pull": {
            "post": operation(
                "Pull a model onto one peer (`node`), or onto the peer with the most free disk",
                {**fields(model=name, name=name, insecure={"type": "boolean"}), **named},
                {"model": EXAMPLE_LLM, "node": "mac-b"},
                progress,
            )
        },
        "/api/delete": {"post": delete, "delete": delete},
        "/api/copy": {
            "post": operation(
                "Copy a model on one peer",
                fields("node", "source", "destination", source=name, destination=name),
                {"source": EXAMPLE_LLM, "destination": "my-llama", "node": "mac-b"},
                done,
            )
        },
        "/api/create": {
            "post": operation(
                "Create a model on one peer (from a model it has)",
                {**fields("node", model=name, name=name, **{"from": {"type": "string"}}), **named},
                {"model": "my-llama", "from": EXAMPLE_LLM, "node": "mac-b"},
                progress,
            )
        },
    }
