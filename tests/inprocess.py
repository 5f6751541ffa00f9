"""Peers built in this process, talking to each other through an httpx transport instead of sockets.

The seam is `web.app.build(config, transport=..., image_engine=...)`: the same object graph as a real peer, with
peer-to-peer calls routed to the other apps by host, and a fake image engine whose jobs a test can hold open
or make fail. Failover rules are tested this way without processes; the real-process tests stay for the mesh.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
from starlette.types import ASGIApp

from herd_mesh.config import Config
from herd_mesh.engines.base import Download, ImageJob, ImageOutput, Progress
from herd_mesh.errors import EngineError
from herd_mesh.web.app import Peer, build
from tests.fake_mflux_model import png_bytes

PNG = png_bytes(1, 1, 0, "")  # a valid 1x1 PNG


class FakeEngine:
    """An image engine whose jobs finish when the test says (`release`), or fail (`fail_with`)."""

    name = "fake"
    resident = False

    def __init__(self, models: frozenset[str] = frozenset({"z-image-turbo"})) -> None:
        self.models = models
        self.jobs: list[ImageJob] = []
        self.hold = False  # when set, each job waits for `release`
        self.fail_with: str | None = None
        self._released = asyncio.Event()

    def installed_models(self) -> set[str]:
        return set(self.models)

    def loaded_models(self) -> set[str]:
        return set()

    def set_keep_alive(self, seconds: float) -> None:
        pass

    def release(self) -> None:
        self._released.set()

    async def generate(
        self, job: ImageJob, progress: Progress | None = None, downloading: Download | None = None
    ) -> ImageOutput:
        self.jobs.append(job)
        if self.hold:
            await self._released.wait()
        if self.fail_with is not None:
            raise EngineError(self.fail_with)
        if progress is not None and job.steps is not None:
            progress(job.steps, job.steps)
        return ImageOutput(png=PNG, generation_ms=5)

    async def aclose(self) -> None:
        pass


class Network(httpx.AsyncBaseTransport):
    """Routes each request to the app of the peer whose address is the URL's host; `cut` hosts are unreachable.

    A call a peer makes arrives from that peer's address (the host of its `X-Herd-Url`), as on a real LAN; any
    other call from 127.0.0.1, like curl on the same Mac.
    """

    def __init__(self) -> None:
        self.apps: dict[str, ASGIApp] = {}
        self.cut: set[str] = set()
        self.calls: list[tuple[str, str]] = []  # (host, path) of every call that got through

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        host = request.url.host
        if host in self.cut or host not in self.apps:
            raise httpx.ConnectError(f"{host} is unreachable", request=request)
        self.calls.append((host, request.url.path))
        caller = urlsplit(request.headers.get("X-Herd-Url", "")).hostname or "127.0.0.1"
        transport = httpx.ASGITransport(app=self.apps[host], client=(caller, 40000))
        return await transport.handle_async_request(request)


class InProcessMesh:
    """Peers 10.77.0.1, .2, ... each with a FakeEngine, static peers of each other, no mDNS."""

    def __init__(self, base: Path, names: list[str], models: dict[str, frozenset[str]] | None = None) -> None:
        """`models`: what each peer's engine has installed (default: z-image-turbo)."""
        self.network = Network()
        self.engines: dict[str, FakeEngine] = {}
        self.peers: dict[str, Peer] = {}
        self.hosts = {name: f"10.77.0.{i + 1}" for i, name in enumerate(names)}
        for name, host in self.hosts.items():
            others = tuple(f"http://{h}:11435" for n, h in self.hosts.items() if n != name)
            config = Config(node_id=name, data_dir=base / name, host=host, peers=others, mdns=False,
                            ollama_url="http://127.0.0.1:9")  # fmt: skip
            self.engines[name] = FakeEngine(*([models[name]] if models and name in models else []))
            self.peers[name] = build(config, transport=self.network, image_engine=self.engines[name])
            self.network.apps[host] = self.peers[name].app

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[InProcessMesh]:
        async with contextlib.AsyncExitStack() as stack:
            for peer in self.peers.values():
                await stack.enter_async_context(peer.app.router.lifespan_context(peer.app))
            yield self

    def client(self, name: str) -> httpx.AsyncClient:
        """A client of the peer `name`, as curl would be."""
        return httpx.AsyncClient(transport=self.network, base_url=f"http://{self.hosts[name]}:11435", timeout=30)

    async def converged(self, timeout: float = 10.0) -> None:
        """Every peer lists every other up, with its image capability fetched (what routing needs)."""
        await until(lambda: all(
            {p.node_id for p in peer.node.table.all() if p.status == "up" and p.capabilities.get("image")}
            == set(self.peers) - {name}
            for name, peer in self.peers.items()
        ), timeout, "the in-process peers to list each other up")  # fmt: skip


async def until(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll `predicate` on the event loop until it is truthy; AssertionError naming `what` otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.02)
