"""The JSON bodies a client sends: one builder per kind of request, so both clients send the same bytes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

Messages = str | Sequence[Mapping[str, Any]]


def image_body(
    prompt: str,
    *,
    model: str,
    width: int,
    height: int,
    steps: int | None,
    quantize: int,
    seed: int | None,
    guidance: float | None,
    negative_prompt: str | None,
    tags: Sequence[str],
) -> dict[str, Any]:
    """`POST /api/generate-image`: unset options are left out, so the peer's per-model defaults apply."""
    body: dict[str, Any] = {"model": model, "prompt": prompt, "width": width, "height": height, "quantize": quantize}
    if steps is not None:
        body["steps"] = steps
    if seed is not None:
        body["seed"] = seed
    if guidance is not None:
        body["guidance"] = guidance
    if negative_prompt:
        body["negative_prompt"] = negative_prompt
    if isinstance(tags, str):
        tags = [tags]
    if tags:
        body["metadata"] = {"tags": list(tags)}
    return body


def chat_body(model: str, messages: Messages, *, stream: bool, options: Mapping[str, Any]) -> dict[str, Any]:
    """`POST /api/chat`: a bare string is one user message, for the common one-question case."""
    if isinstance(messages, str):
        messages = [{"role": "user", "content": messages}]
    body: dict[str, Any] = {"model": model, "messages": [dict(m) for m in messages], "stream": stream}
    if options:
        body["options"] = dict(options)
    return body
