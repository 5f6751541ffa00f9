"""Ollama 0.14's translation layers, ported to Python for the stand-in (stdlib only, no I/O).

Real Ollama serves its compatibility APIs by converting the request into a native ``/api/chat`` or
``/api/generate`` request, running the native handler, and converting each native answer object back
(``anthropic/anthropic.go``, ``openai/responses.go``, ``openai/openai.go`` and ``middleware/*.go`` at
v0.14.3). This module does the same conversions on plain dicts, keeping Go's quirks where a client can see
them: fields dropped by ``omitempty`` (no ``stop_sequence`` and no ``ping`` event in Anthropic answers),
one ``input_json_delta`` per tool call, ``call_...`` tool ids, ``resp_<n>``/``msg_<n>``/``cmpl-<n>`` ids,
and usage objects full of zeros in every streamed completion chunk when usage was asked for.

A native chat answer here is ``{"model", "created_at", "message": {"role", "content", "tool_calls"?},
"done", "done_reason"?, "prompt_eval_count"?, "eval_count"?, ...}``; a native tool call is
``{"id": "call_...", "function": {"index", "name", "arguments": {...}}}``.
"""

from __future__ import annotations

import json
import random
import secrets
import time
from typing import Any

Event = tuple[str, dict[str, Any]]


class BindError(ValueError):
    """A request the compatibility middleware rejects with 400 before the native handler runs."""


def compact(value: Any) -> str:
    """Go's ``json.Marshal``: no spaces."""
    return json.dumps(value, separators=(",", ":"))


def _json_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _matches(value: Any, go_type: str) -> bool:
    if go_type == "string":
        return isinstance(value, str)
    if go_type == "bool":
        return isinstance(value, bool)
    if isinstance(value, bool):
        return False
    if go_type == "int":
        return isinstance(value, int) or (isinstance(value, float) and value.is_integer())
    if go_type == "float64":
        return isinstance(value, (int, float))
    return isinstance(value, list) if go_type.startswith("[]") else isinstance(value, dict)


def check_field(body: dict[str, Any], struct: str, name: str, go_type: str) -> None:
    """Raise encoding/json's type error when a field has the wrong JSON type (null is always accepted)."""
    value = body.get(name)
    if value is None or _matches(value, go_type):
        return
    kind = _json_kind(value)
    if kind == "number" and go_type == "int":
        kind = f"number {value}"
    raise BindError(f"json: cannot unmarshal {kind} into Go struct field {struct}.{name} of type {go_type}")


# ---------------------------------------------------------------------------------------
# Anthropic Messages API (anthropic/anthropic.go, middleware/anthropic.go)
# ---------------------------------------------------------------------------------------

ANTHROPIC_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    429: "rate_limit_error",
    503: "overloaded_error",
    529: "overloaded_error",
}


def anthropic_error(status: int, message: str) -> dict[str, Any]:
    """``anthropic.NewError``: the type follows the HTTP status; every error gets a fresh request id."""
    return {
        "type": "error",
        "error": {"type": ANTHROPIC_ERROR_TYPES.get(status, "api_error"), "message": message},
        "request_id": "req_" + secrets.token_hex(12),
    }


def anthropic_message_id() -> str:
    """``GenerateMessageID``: ``msg_`` and 24 hex digits."""
    return "msg_" + secrets.token_hex(12)


def validate_messages_request(body: dict[str, Any]) -> None:
    """What ``AnthropicMessagesMiddleware`` checks before converting (400 on failure)."""
    struct = "MessagesRequest"
    for name, go_type in (
        ("model", "string"),
        ("max_tokens", "int"),
        ("messages", "[]anthropic.MessageParam"),
        ("stream", "bool"),
        ("temperature", "float64"),
        ("top_p", "float64"),
        ("top_k", "int"),
        ("stop_sequences", "[]string"),
        ("tools", "[]anthropic.Tool"),
        ("tool_choice", "anthropic.ToolChoice"),
    ):
        check_field(body, struct, name, go_type)
    for msg in body.get("messages") or []:
        if not isinstance(msg, dict):
            kind = _json_kind(msg)
            raise BindError(
                f"json: cannot unmarshal {kind} into Go struct field {struct}.messages of type anthropic.MessageParam"
            )
    if not body.get("model"):
        raise BindError("model is required")
    if int(body.get("max_tokens") or 0) <= 0:
        raise BindError("max_tokens is required and must be positive")
    if not body.get("messages"):
        raise BindError("messages is required")


def _go_type_name(value: Any) -> str:
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "float64"
    return "map[string]interface {}"


def from_messages_request(body: dict[str, Any]) -> list[dict[str, Any]]:
    """``FromMessagesRequest``: the native chat messages (system first, tool results as ``tool`` messages)."""
    messages: list[dict[str, Any]] = []
    system = body.get("system")
    if isinstance(system, str) and system:
        messages.append({"role": "system", "content": system})
    elif isinstance(system, list):
        text = "".join(
            b["text"]
            for b in system
            if isinstance(b, dict) and b.get("type") == "text" and isinstance(b.get("text"), str)
        )
        if text:
            messages.append({"role": "system", "content": text})
    for msg in body["messages"]:
        role = str(msg.get("role") or "").lower()
        content = msg.get("content")
        if isinstance(content, str):
            messages.append({"role": role, "content": content})
            continue
        if not isinstance(content, list):
            raise BindError(f"invalid message content type: {_go_type_name(content)}")
        text, images, tool_calls, results = "", [], [], []
        for block in content:
            if not isinstance(block, dict):
                raise BindError("invalid content block format")
            kind = block.get("type")
            if kind == "text" and isinstance(block.get("text"), str):
                text += block["text"]
            elif kind == "image":
                source = block.get("source")
                if not isinstance(source, dict):
                    raise BindError("invalid image source")
                if source.get("type") != "base64":
                    raise BindError(
                        f"invalid image source type: {source.get('type') or ''}. Only base64 images are supported."
                    )
                images.append(source.get("data") or "")
            elif kind == "tool_use":
                if not isinstance(block.get("id"), str):
                    raise BindError("tool_use block missing required 'id' field")
                if not isinstance(block.get("name"), str):
                    raise BindError("tool_use block missing required 'name' field")
                args = block.get("input") if isinstance(block.get("input"), dict) else {}
                tool_calls.append(
                    {
                        "id": block["id"],
                        "function": {"index": len(tool_calls), "name": block["name"], "arguments": args},
                    }
                )
            elif kind == "tool_result":
                result = block.get("content")
                if isinstance(result, list):
                    result = "".join(
                        c.get("text", "") for c in result if isinstance(c, dict) and c.get("type") == "text"
                    )
                results.append(
                    {
                        "role": "tool",
                        "content": result if isinstance(result, str) else "",
                        "tool_call_id": block.get("tool_use_id") or "",
                    }
                )
        if text or images or tool_calls:
            native: dict[str, Any] = {"role": role, "content": text}
            if images:
                native["images"] = images
            if tool_calls:
                native["tool_calls"] = tool_calls
            messages.append(native)
        messages.extend(results)
    return messages


def _stop_reason(done_reason: str, has_tool_calls: bool) -> str:
    """``mapStopReason``."""
    if has_tool_calls:
        return "tool_use"
    if done_reason == "stop":
        return "end_turn"
    if done_reason == "length":
        return "max_tokens"
    return "stop_sequence" if done_reason else ""


def to_messages_response(msg_id: str, final: dict[str, Any]) -> dict[str, Any]:
    """``ToMessagesResponse`` of the aggregated native answer (empty stop fields are left out, as Go does)."""
    message = final.get("message") or {}
    content: list[dict[str, Any]] | None = None
    if message.get("content"):
        content = [{"type": "text", "text": message["content"]}]
    for call in message.get("tool_calls") or []:
        fn = call["function"]
        content = (content or []) + [
            {"type": "tool_use", "id": call["id"], "name": fn["name"], "input": fn["arguments"]}
        ]
    response: dict[str, Any] = {
        "id": msg_id,
        "type": "message",
        "role": "assistant",
        "model": final.get("model"),
        "content": content,
    }
    stop = _stop_reason(final.get("done_reason") or "", bool(message.get("tool_calls")))
    if stop:
        response["stop_reason"] = stop
    response["usage"] = {
        "input_tokens": final.get("prompt_eval_count", 0),
        "output_tokens": final.get("eval_count", 0),
    }
    return response


class AnthropicStreamConverter:
    """``StreamConverter``: native chunks in, ``(event, data)`` pairs out (no ``ping``: Ollama sends none)."""

    def __init__(self, msg_id: str, model: str) -> None:
        self.id, self.model = msg_id, model
        self.first = True
        self.index = 0
        self.text_started = False
        self.tool_ids: set[str] = set()

    def process(self, chunk: dict[str, Any]) -> list[Event]:
        events: list[Event] = []
        message = chunk.get("message") or {}
        if self.first:
            self.first = False
            start = {
                "id": self.id,
                "type": "message",
                "role": "assistant",
                "model": self.model,
                "content": [],
                "usage": {"input_tokens": chunk.get("prompt_eval_count", 0), "output_tokens": 0},
            }
            events.append(("message_start", {"type": "message_start", "message": start}))
        if message.get("content"):
            if not self.text_started:
                self.text_started = True
                events.append(
                    (
                        "content_block_start",
                        {
                            "type": "content_block_start",
                            "index": self.index,
                            "content_block": {"type": "text", "text": ""},
                        },
                    )
                )
            delta = {"type": "text_delta", "text": message["content"]}
            events.append(
                ("content_block_delta", {"type": "content_block_delta", "index": self.index, "delta": delta})
            )
        for call in message.get("tool_calls") or []:
            if call["id"] in self.tool_ids:
                continue
            if self.text_started:
                events.append(("content_block_stop", {"type": "content_block_stop", "index": self.index}))
                self.index += 1
                self.text_started = False
            fn = call["function"]
            block = {"type": "tool_use", "id": call["id"], "name": fn["name"], "input": {}}
            events.append(
                ("content_block_start", {"type": "content_block_start", "index": self.index, "content_block": block})
            )
            delta = {"type": "input_json_delta", "partial_json": compact(fn["arguments"])}
            events.append(
                ("content_block_delta", {"type": "content_block_delta", "index": self.index, "delta": delta})
            )
            events.append(("content_block_stop", {"type": "content_block_stop", "index": self.index}))
            self.tool_ids.add(call["id"])
            self.index += 1
        if chunk.get("done"):
            if self.text_started:
                events.append(("content_block_stop", {"type": "content_block_stop", "index": self.index}))
            stop = _stop_reason(chunk.get("done_reason") or "", bool(self.tool_ids))
            events.append(
                (
                    "message_delta",
                    {
                        "type": "message_delta",
                        "delta": {"stop_reason": stop} if stop else {},
                        "usage": {"output_tokens": chunk.get("eval_count", 0)},
                    },
                )
            )
            events.append(("message_stop", {"type": "message_stop"}))
        return events


# ---------------------------------------------------------------------------------------
# OpenAI Responses API (openai/responses.go, middleware/openai.go)
# ---------------------------------------------------------------------------------------


def openai_error(status: int, message: str) -> dict[str, Any]:
    """``openai.NewError``: Ollama's handlers reach it with 500, so only middleware errors get other types."""
    etype = {400: "invalid_request_error", 404: "not_found_error"}.get(status, "api_error")
    return {"error": {"message": message, "type": etype, "param": None, "code": None}}


def responses_ids() -> tuple[str, str]:
    """``resp_<n>`` and ``msg_<n>`` with n < 999999, as the middleware draws them."""
    return f"resp_{random.randrange(999999)}", f"msg_{random.randrange(999999)}"


def _input_message(item: dict[str, Any], where: str) -> dict[str, Any]:
    content = item.get("content")
    text = ""
    if isinstance(content, str):
        text = content
    elif isinstance(content, list):
        for i, part in enumerate(content):
            kind = part.get("type") if isinstance(part, dict) else None
            if kind in ("input_text", "output_text"):
                text += str(part.get("text") or "")
            elif kind != "input_image":
                raise BindError(f"{where}: content[{i}]: unknown content type: {kind or ''}")
    elif content is not None:
        raise BindError(f"{where}: content must be a string or array")
    return {"role": item.get("role") or "", "content": text}


def from_responses_request(body: dict[str, Any]) -> list[dict[str, Any]]:
    """``FromResponsesRequest``: instructions as a system message, then the input items."""
    check_field(body, "ResponsesRequest", "model", "string")
    check_field(body, "ResponsesRequest", "stream", "bool")
    check_field(body, "ResponsesRequest", "tools", "[]openai.ResponsesTool")
    check_field(body, "ResponsesRequest", "instructions", "string")
    messages: list[dict[str, Any]] = []
    if body.get("instructions"):
        messages.append({"role": "system", "content": body["instructions"]})
    value = body.get("input")
    if isinstance(value, str):
        if value:
            messages.append({"role": "user", "content": value})
        return messages
    if value is None:
        return messages
    if not isinstance(value, list):
        raise BindError("input must be a string or array")
    for i, item in enumerate(value):
        if not isinstance(item, dict):
            raise BindError(f"input[{i}]: json: cannot unmarshal {_json_kind(item)} into Go value of type struct")
        kind = item.get("type") or ("message" if item.get("role") else "")
        if kind == "message":
            messages.append(_input_message(item, f"input[{i}]"))
        elif kind == "function_call":
            try:
                args = json.loads(item.get("arguments") or "{}")
            except ValueError as exc:
                raise BindError(f"failed to parse function call arguments: {exc}") from None
            call = {
                "id": item.get("call_id") or "",
                "function": {"index": 0, "name": item.get("name") or "", "arguments": args},
            }
            if messages and messages[-1]["role"] == "assistant":
                messages[-1].setdefault("tool_calls", []).append(call)
            else:
                messages.append({"role": "assistant", "content": "", "tool_calls": [call]})
        elif kind == "function_call_output":
            messages.append(
                {"role": "tool", "content": str(item.get("output") or ""), "tool_call_id": item.get("call_id") or ""}
            )
        elif kind != "reasoning":
            raise BindError(f"input[{i}]: unknown input item type: {item.get('type') or ''}")
    return messages


def go_float(value: Any, default: float) -> float:
    """A float64 as Go's encoder writes it: ``1``, not ``1.0``."""
    number = float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else float(default)
    return int(number) if number.is_integer() else number


def _responses_envelope(
    request: dict[str, Any],
    resp_id: str,
    model: str,
    status: str,
    output: list[Any],
    usage: dict[str, Any] | None,
    created_at: int,
) -> dict[str, Any]:
    """The response object as ``ToResponse`` and ``buildResponseObject`` fill it."""
    tools = [
        {
            "type": t.get("type"),
            "name": t.get("name"),
            "description": t.get("description"),
            "strict": t.get("strict"),
            "parameters": t.get("parameters"),
        }
        for t in request.get("tools") or []
        if isinstance(t, dict)
    ]
    fmt = ((request.get("text") or {}).get("format")) or {"type": "text"}
    reasoning = request.get("reasoning") or {}
    effort, summary = reasoning.get("effort"), reasoning.get("summary")
    return {
        "id": resp_id,
        "object": "response",
        "created_at": created_at,
        "completed_at": None,
        "status": status,
        "incomplete_details": None,
        "model": model,
        "previous_response_id": None,
        "instructions": request.get("instructions") or None,
        "output": output,
        "error": None,
        "tools": tools,
        "tool_choice": "auto",
        "truncation": request.get("truncation") or "disabled",
        "parallel_tool_calls": True,
        "text": {"format": fmt},
        "top_p": go_float(request.get("top_p"), 1),
        "presence_penalty": 0,
        "frequency_penalty": 0,
        "top_logprobs": 0,
        "temperature": go_float(request.get("temperature"), 1),
        "reasoning": {"effort": effort, "summary": summary} if effort or summary else None,
        "usage": usage,
        "max_output_tokens": request.get("max_output_tokens"),
        "max_tool_calls": None,
        "store": False,
        "background": bool(request.get("background")),
        "service_tier": "default",
        "metadata": {},
        "safety_identifier": None,
        "prompt_cache_key": None,
    }


def _responses_usage(final: dict[str, Any]) -> dict[str, Any]:
    prompt, evals = final.get("prompt_eval_count", 0), final.get("eval_count", 0)
    return {
        "input_tokens": prompt,
        "output_tokens": evals,
        "total_tokens": prompt + evals,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens_details": {"reasoning_tokens": 0},
    }


def _output_text(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def to_response(request: dict[str, Any], resp_id: str, item_id: str, final: dict[str, Any]) -> dict[str, Any]:
    """``ToResponse`` plus the ``completed_at`` the middleware stamps on a non-streamed answer."""
    message = final.get("message") or {}
    output: list[Any] = []
    if message.get("tool_calls"):
        for i, call in enumerate(message["tool_calls"]):
            fn = call["function"]
            output.append(
                {
                    "id": f"fc_{resp_id}_{i}",
                    "type": "function_call",
                    "status": "completed",
                    "call_id": call["id"],
                    "name": fn["name"],
                    "arguments": compact(fn["arguments"]),
                }
            )
    else:
        output.append(
            {
                "id": item_id,
                "type": "message",
                "status": "completed",
                "role": "assistant",
                "content": [_output_text(message.get("content") or "")],
            }
        )
    response = _responses_envelope(
        request, resp_id, request.get("model") or "", "completed", output, _responses_usage(final), int(time.time())
    )
    response["completed_at"] = int(time.time())
    return response


class ResponsesStreamConverter:
    """``ResponsesStreamConverter``: native chunks in, ``(event, data)`` pairs with sequence numbers out."""

    def __init__(self, request: dict[str, Any], resp_id: str, item_id: str) -> None:
        self.request, self.resp_id, self.item_id = request, resp_id, item_id
        self.model = request.get("model") or ""
        self.first = True
        self.seq = 0
        self.content_started = False
        self.tool_items: list[dict[str, Any]] = []
        self.text = ""

    def _event(self, kind: str, data: dict[str, Any]) -> Event:
        data["type"] = kind
        data["sequence_number"] = self.seq
        self.seq += 1
        return kind, data

    def _envelope(self, status: str, output: list[Any], usage: dict[str, Any] | None) -> dict[str, Any]:
        return _responses_envelope(self.request, self.resp_id, self.model, status, output, usage, int(time.time()))

    def _message_item(self, status: str) -> dict[str, Any]:
        content = [_output_text(self.text)] if status == "completed" else []
        return {"id": self.item_id, "type": "message", "status": status, "role": "assistant", "content": content}

    def process(self, chunk: dict[str, Any]) -> list[Event]:
        events: list[Event] = []
        message = chunk.get("message") or {}
        if self.first:
            self.first = False
            events.append(self._event("response.created", {"response": self._envelope("in_progress", [], None)}))
            events.append(self._event("response.in_progress", {"response": self._envelope("in_progress", [], None)}))
        calls = message.get("tool_calls") or []
        for i, call in enumerate(calls):
            fn = call["function"]
            args = compact(fn["arguments"])
            item_id = f"fc_{random.randrange(999999)}_{i}"
            item = {
                "id": item_id,
                "type": "function_call",
                "status": "completed",
                "call_id": call["id"],
                "name": fn["name"],
                "arguments": args,
            }
            self.tool_items.append(item)
            index = i  # Ollama: outputIndex (0 without reasoning) + i
            events.append(
                self._event(
                    "response.output_item.added",
                    {"output_index": index, "item": {**item, "status": "in_progress", "arguments": ""}},
                )
            )
            if args:
                events.append(
                    self._event(
                        "response.function_call_arguments.delta",
                        {"item_id": item_id, "output_index": index, "delta": args},
                    )
                )
            events.append(
                self._event(
                    "response.function_call_arguments.done",
                    {"item_id": item_id, "output_index": index, "arguments": args},
                )
            )
            events.append(self._event("response.output_item.done", {"output_index": index, "item": item}))
        if not calls and not self.tool_items and message.get("content"):
            if not self.content_started:
                self.content_started = True
                events.append(
                    self._event(
                        "response.output_item.added", {"output_index": 0, "item": self._message_item("in_progress")}
                    )
                )
                events.append(
                    self._event(
                        "response.content_part.added",
                        {"item_id": self.item_id, "output_index": 0, "content_index": 0, "part": _output_text("")},
                    )
                )
            self.text += message["content"]
            events.append(
                self._event(
                    "response.output_text.delta",
                    {
                        "item_id": self.item_id,
                        "output_index": 0,
                        "content_index": 0,
                        "delta": message["content"],
                        "logprobs": [],
                    },
                )
            )
        if chunk.get("done"):
            if not self.tool_items and self.content_started:
                events.append(
                    self._event(
                        "response.output_text.done",
                        {
                            "item_id": self.item_id,
                            "output_index": 0,
                            "content_index": 0,
                            "text": self.text,
                            "logprobs": [],
                        },
                    )
                )
                events.append(
                    self._event(
                        "response.content_part.done",
                        {
                            "item_id": self.item_id,
                            "output_index": 0,
                            "content_index": 0,
                            "part": _output_text(self.text),
                        },
                    )
                )
                events.append(
                    self._event(
                        "response.output_item.done", {"output_index": 0, "item": self._message_item("completed")}
                    )
                )
            if self.tool_items:
                output: list[Any] = list(self.tool_items)
            elif self.content_started:
                output = [self._message_item("completed")]
            else:
                output = []
            response = self._envelope("completed", output, _responses_usage(chunk))
            response["completed_at"] = int(time.time())
            events.append(self._event("response.completed", {"response": response}))
        return events


# ---------------------------------------------------------------------------------------
# OpenAI legacy completions (openai/openai.go: ToCompletion, ToCompleteChunk)
# ---------------------------------------------------------------------------------------


def completion_id() -> str:
    """``cmpl-<n>`` with n < 999, as ``CompletionsMiddleware`` draws it."""
    return f"cmpl-{random.randrange(999)}"


def _usage(final: dict[str, Any]) -> dict[str, int]:
    prompt, evals = final.get("prompt_eval_count", 0), final.get("eval_count", 0)
    return {"prompt_tokens": prompt, "completion_tokens": evals, "total_tokens": prompt + evals}


def to_completion(cmpl_id: str, final: dict[str, Any]) -> dict[str, Any]:
    """``ToCompletion`` of the aggregated native generate answer."""
    choice = {"text": final.get("response", ""), "index": 0, "finish_reason": final.get("done_reason") or None}
    return {
        "id": cmpl_id,
        "object": "text_completion",
        "created": int(time.time()),
        "model": final.get("model"),
        "system_fingerprint": "fp_ollama",
        "choices": [choice],
        "usage": _usage(final),
    }


def complete_chunks(cmpl_id: str, chunk: dict[str, Any], include_usage: bool) -> list[dict[str, Any]]:
    """``CompleteWriter``: one chunk per native chunk; with usage asked for, every chunk carries zeros and the
    last native chunk adds a usage-only chunk (the caller ends the stream with ``[DONE]``)."""
    choice = {"text": chunk.get("response", ""), "index": 0, "finish_reason": chunk.get("done_reason") or None}
    out: dict[str, Any] = {
        "id": cmpl_id,
        "object": "text_completion",
        "created": int(time.time()),
        "choices": [choice],
        "model": chunk.get("model"),
        "system_fingerprint": "fp_ollama",
    }
    if include_usage:
        out["usage"] = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
    chunks = [out]
    if chunk.get("done") and include_usage:
        chunks.append({**out, "choices": [], "usage": _usage(chunk)})
    return chunks
