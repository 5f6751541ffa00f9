"""The relay, in process: frames cut only at boundaries, the held-back head, error events both clients parse."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest

from herd_mesh.core.api_errors import stream_error_event
from herd_mesh.dispatch.relay import Reader, framing, while_alive
from herd_mesh.errors import PeerUnreachable


async def chunks(*parts: bytes, fail_after: bool = False) -> AsyncIterator[bytes]:
    for part in parts:
        await asyncio.sleep(0)
        yield part
    if fail_after:
        raise PeerUnreachable("bravo", "connection reset")


def fail(reason: str) -> Exception:
    return PeerUnreachable("bravo", reason)


async def read_all(reader: Reader) -> tuple[bytes, list[bytes]]:
    head = await reader.head()
    return head, [frame async for frame in reader.frames()]


def test_ndjson_is_cut_at_line_ends_only() -> None:
    reader = Reader(chunks(b'{"a": 1}\n{"b"', b': 2}\n{"c": 3}', b"\n"), b"\n", fail=fail)
    head, frames = asyncio.run(read_all(reader))
    assert head == b'{"a": 1}\n' and frames == [b'{"b": 2}\n', b'{"c": 3}\n'] and reader.done


def test_sse_head_waits_for_a_whole_event() -> None:
    reader = Reader(chunks(b"data: {", b'"x": 1}\n', b"\n", b"data: [DONE]\n\n"), b"\n\n", fail=fail)
    head, frames = asyncio.run(read_all(reader))
    assert head == b'data: {"x": 1}\n\n' and frames == [b"data: [DONE]\n\n"]


def test_a_whole_json_answer_is_held_back_until_complete() -> None:
    reader = Reader(chunks(b'{"embedding": [0.1,', b" 0.2]}"), framing("application/json"), fail=fail)
    head, frames = asyncio.run(read_all(reader))
    assert head == b'{"embedding": [0.1, 0.2]}' and frames == [] and reader.done


def test_a_partial_line_at_a_failure_is_dropped() -> None:
    async def run() -> list[bytes]:
        reader = Reader(chunks(b"one\n", b"two\nthr", fail_after=True), b"\n", fail=fail)
        out = [await reader.head()]
        with pytest.raises(PeerUnreachable):
            async for frame in reader.frames():
                out.append(frame)
        return out

    assert asyncio.run(run()) == [b"one\n", b"two\n"]


def test_error_events_in_each_streams_own_format() -> None:
    line = stream_error_event(b"\n", "the answer from bravo broke off")
    assert json.loads(line) == {"error": "the answer from bravo broke off"} and line.endswith(b"\n")
    event = stream_error_event(b"\n\n", "broke off")
    assert event.startswith(b"data: ") and event.endswith(b"\n\n")
    assert json.loads(event[6:])["error"]["message"] == "broke off"
    assert framing("text/event-stream; charset=utf-8") == b"\n\n" and framing("application/x-ndjson") == b"\n"


def test_waiting_stops_when_the_peer_goes_down() -> None:
    async def run() -> None:
        alive = [True]

        async def flip() -> None:
            await asyncio.sleep(0.05)
            alive[0] = False

        asyncio.ensure_future(flip())
        await while_alive(asyncio.sleep(30), alive=lambda: alive[0], fail=fail)

    with pytest.raises(PeerUnreachable, match="went down"):
        asyncio.run(asyncio.wait_for(run(), 5))
