"""Guards at the connection level, below HTTP: a client that never finishes its request headers (slowloris), or
one address opening hundreds of connections, must not use up the peer's sockets and file descriptors.

`GuardedH11Protocol` is uvicorn's h11 protocol with three additions:
- a connection whose request headers are not complete within `HEADER_TIMEOUT_S` is closed (uvicorn itself
  waits forever for the first request's headers);
- one client address may hold at most `MAX_CONNECTIONS_PER_CLIENT` connections; more are closed at once.
  Other peers of the mesh are exempt;
- what it writes in one turn of the event loop goes out in one `send`: uvicorn writes a response's headers and
  its body separately, which with TCP_NODELAY is two segments for every small answer.

uvicorn builds the protocol objects itself, so `guarded_protocol(exempt)` makes the class, with its own
counters, for one server.
"""

from __future__ import annotations

import asyncio
import logging
import resource
from collections import Counter
from collections.abc import Callable
from typing import Any, ClassVar

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from ..mesh.clients import KEEP_ALIVE_S as KEEP_ALIVE_S_PEERS

logger = logging.getLogger(__name__)

HEADER_TIMEOUT_S = 10.0  # a request's line and headers must arrive within this (seconds)
MAX_CONNECTIONS_PER_CLIENT = 128  # connections one address may hold open
MAX_CONNECTIONS = 4096  # uvicorn answers 503 beyond this many connections or tasks
# An idle inbound connection is closed after this; longer than peers keep theirs (`mesh.clients.KEEP_ALIVE_S`),
# so a peer calling every few seconds reuses its connection and always closes it first itself.
KEEP_ALIVE_S = KEEP_ALIVE_S_PEERS + 5


def guarded_protocol(exempt: Callable[[str], bool]) -> type[H11Protocol]:
    """The protocol class for one server; `exempt(host)` is true for the addresses of other peers."""

    class Guarded(GuardedH11Protocol):
        per_client: ClassVar[Counter[str]] = Counter()
        _complained: ClassVar[set[str]] = set()

        @staticmethod
        def exempt(host: str) -> bool:
            return exempt(host)

    return Guarded


class GuardedH11Protocol(H11Protocol):
    per_client: ClassVar[Counter[str]] = Counter()
    _complained: ClassVar[set[str]] = set()

    @staticmethod
    def exempt(host: str) -> bool:
        return False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_timer: asyncio.TimerHandle | None = None
        self._counted: str | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.transport = _Coalescing(transport, self.loop)  # type: ignore[assignment]
        host = self.client[0] if self.client else ""
        if host and not self.exempt(host):
            if self.per_client[host] >= MAX_CONNECTIONS_PER_CLIENT:
                if host not in self._complained:
                    self._complained.add(host)
                    logger.warning("%s holds %d connections: closing its new ones", host, MAX_CONNECTIONS_PER_CLIENT)
                transport.close()
                return
            self.per_client[host] += 1
            self._counted = host
        self._arm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_timer()
        if self._counted is not None:
            self.per_client[self._counted] -= 1
            if self.per_client[self._counted] <= 0:
                del self.per_client[self._counted]
                self._complained.discard(self._counted)
            self._counted = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self._arm_header_timer()  # still waiting for (the rest of) a request's headers
        else:
            self._cancel_header_timer()

    def on_response_complete(self) -> None:
        # an idle keep-alive connection is uvicorn's to close (`timeout_keep_alive`, KEEP_ALIVE_S); the next
        # request's headers get HEADER_TIMEOUT_S from their first byte (`data_received`)
        super().on_response_complete()
        self._cancel_header_timer()

    def _arm_header_timer(self) -> None:
        if self._header_timer is None:
            self._header_timer = self.loop.call_later(HEADER_TIMEOUT_S, self._headers_too_slow)

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.transport.close()


class _Coalescing:
    """A transport whose writes in one loop turn are joined into one; everything else goes to the real one."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._buffer: list[bytes] = []

    def write(self, data: bytes) -> None:
        if not self._buffer:
            self._loop.call_soon(self._flush)
        self._buffer.append(bytes(data))

    def _flush(self) -> None:
        if self._buffer:
            data = b"".join(self._buffer)
            self._buffer.clear()
            if not self._transport.is_closing():
                self._transport.write(data)

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def write_eof(self) -> None:
        self._flush()
        self._transport.write_eof()

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + sum(len(b) for b in self._buffer)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


def raise_open_files_limit() -> tuple[int, int]:
    """Raise the soft limit on open files to the hard limit (macOS starts at 256); returns (soft, hard)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 65536)
    if soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as exc:
            logger.debug("cannot raise the open files limit: %s", exc)
    return soft, hard
