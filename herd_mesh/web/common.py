"""Helpers every route family shares: JSON bodies, query parameters, and stopping work when the client hangs up."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable
from typing import Any, TypeVar

from starlette.requests import Request

from ..core.image_request import parse_json_object
from ..errors import ClientGone, RequestError

T = TypeVar("T")


def client_host(request: Request) -> str | None:
    """The address the call comes from (what a peer's claims are checked against)."""
    return request.client.host if request.client is not None else None


async def json_body(request: Request) -> dict[str, Any]:
    return parse_json_object(await request.body())


def int_param(request: Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    if not (raw.isascii() and raw.isdigit()) or not low <= int(raw) <= high:  # "²".isdigit() is true
        raise RequestError(f"{name} must be an integer from {low} to {high}, got {raw!r}")
    return int(raw)


def choice_param(request: Request, name: str, allowed: tuple[str, ...], default: str | None) -> str | None:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    if raw not in allowed:
        raise RequestError(f"{name} must be one of {', '.join(allowed)}, got {raw!r}")
    return raw


def float_param(request: Request, name: str, default: float) -> float:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise RequestError(f"{name} must be a number (seconds since the epoch), got {raw!r}") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise RequestError(f"{name} must be a finite number, got {raw!r}")
    return value


async def until_disconnect(request: Request, work: Awaitable[T]) -> T:
    """Run `work`; if the client disconnects first, cancel it (killing mflux, closing forwarded calls)."""
    task = asyncio.ensure_future(work)

    async def watch() -> None:
        while True:
            message = await request.receive()
            if message["type"] == "http.disconnect":
                return

    watcher = asyncio.ensure_future(watch())
    try:
        done, _ = await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        task.cancel()
        watcher.cancel()
        raise
    if task in done:
        watcher.cancel()
        return task.result()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task
    raise ClientGone
