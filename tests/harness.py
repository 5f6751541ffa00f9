"""Real peer processes on 127.0.0.x addresses (each on port 11435), for tests and benchmarks.

Every process a `Mesh` starts is stopped by `Mesh.close()`, which fixtures call even when a test fails.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx

from herd_mesh.core.catalogue import MODELS, PINS
from tests.standins.install import install_mflux_standin

T = TypeVar("T")
PORT = 11435
# A fresh 127.0.0.x address per peer keeps tests apart; the start is spread by pid so that two test or benchmark
# runs on one machine rarely meet, and an address whose port is taken is skipped.
_addresses = itertools.count(os.getpid() % 200)


def _port_free(host: str) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, PORT))
        except OSError:
            return False
    return True


def next_address() -> str:
    while True:
        host = f"127.0.0.{next(_addresses) % 240 + 10}"
        if _port_free(host):
            return host


def wait_until(predicate: Callable[[], T], timeout: float, interval: float = 0.05, what: str = "condition") -> T:
    """Poll until `predicate()` is truthy; AssertionError naming `what` and the last value otherwise."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            last = predicate()
        except (httpx.HTTPError, OSError, ValueError, KeyError) as exc:
            last = exc
        else:
            if last:
                return last
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}; last value: {last!r}")
        time.sleep(interval)


@dataclass
class Peer:
    node_id: str
    host: str
    mesh: str
    data_dir: Path
    args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{PORT}"

    @property
    def log_path(self) -> Path:
        return self.data_dir / "peer.log"

    def start(self, wait: bool = True) -> Peer:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        argv = [sys.executable, "-m", "herd_mesh", "--host", self.host, "--node-id", self.node_id,
                "--mesh", self.mesh, "--data-dir", str(self.data_dir), *self.args]  # fmt: skip
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(argv, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 15.0) -> None:
        def ready() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"peer {self.node_id} exited with {self.proc.returncode}:\n{self.log_tail()}")
            return httpx.get(self.url + "/mesh/peers", timeout=1).status_code == 200

        wait_until(ready, timeout, what=f"peer {self.node_id} to answer")

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def terminate(self, timeout: float = 20.0) -> int | None:
        return self._signal(signal.SIGTERM, timeout)

    def kill(self) -> int | None:
        return self._signal(signal.SIGKILL, 10.0)

    def _signal(self, sig: int, timeout: float) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(10)

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return httpx.get(self.url + path, timeout=kwargs.pop("timeout", 10), **kwargs)

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return httpx.post(self.url + path, timeout=kwargs.pop("timeout", 60), **kwargs)

    def call_from(self, source: Peer, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """A request to this peer sent from `source`'s address, as that peer's own calls are."""
        transport = httpx.HTTPTransport(local_address=source.host)
        with httpx.Client(transport=transport, timeout=kwargs.pop("timeout", 60)) as client:
            return client.request(method, self.url + path, **kwargs)

    def statuses(self) -> dict[str, str]:
        """node id -> status in this peer's /mesh/peers (itself included)."""
        doc = self.get("/mesh/peers", timeout=2).json()
        return {p["node_id"] or p["url"]: p["status"] for p in doc["peers"]}

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


class Mesh:
    """A set of peers sharing a mesh name unique to this run, with the mflux stand-in on their PATH."""

    def __init__(self, base_dir: Path, name: str | None = None, *, weights: str = "complete") -> None:
        """`weights`: "complete" (downloaded, as mflux wants), "none" (no cache folder at all)."""
        self.base_dir = base_dir
        self.name = name or f"test-{uuid.uuid4().hex[:8]}"
        self.peers: dict[str, Peer] = {}
        self.bin_dir = install_mflux_standin(base_dir / "bin")
        self.standin_log = base_dir / "standin.log"
        self.hf_home = base_dir / "hf"
        if weights == "complete":  # what mflux leaves after a whole download: the pinned snapshot, every folder
            for model_name in ("z-image-turbo", "flux-schnell", "flux-dev"):
                model = MODELS[model_name]
                for repo in model.repos:
                    snapshot = self.hf_home / "hub" / f"models--{repo.replace('/', '--')}" / "snapshots" / PINS[repo]
                    for subdir in model.subdirs:
                        (snapshot / subdir).mkdir(parents=True, exist_ok=True)
                        (snapshot / subdir / "model.safetensors").write_bytes(b"weights")
        elif weights == "none":  # no Hugging Face cache folder at all: nothing to tell from
            self.hf_home = base_dir / "no-hf-cache-here"

    def env(
        self, data_dir: Path, *, mflux: bool, ms_per_mp_step: float, extra: dict[str, str] | None
    ) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("HERD_", "OLLAMA_"))}
        env["PATH"] = (f"{self.bin_dir}{os.pathsep}" if mflux else "") + "/usr/bin:/bin"
        env["HOME"] = str(data_dir)  # never find a developer's ~/.local/bin/mflux-* or ~/.herd-mesh
        env["HF_HOME"] = str(self.hf_home)
        env["HERD_STANDIN_LOCK"] = str(data_dir / "gpu.lock")  # one job at a time per "machine"
        env["HERD_STANDIN_LOG"] = str(self.standin_log)
        env["HERD_STANDIN_MS_PER_MP_STEP"] = str(ms_per_mp_step)
        env["HERD_STANDIN_CONTENTION"] = str(data_dir / "contention.jsonl")  # one GPU per "machine"
        env["HERD_SIMULATE_MEMORY_GB"] = "64"  # each peer is a 64 GB Mac, whatever this computer has
        env["PYTHONUNBUFFERED"] = "1"
        env.update(extra or {})
        return env

    def add(
        self,
        node_id: str,
        *,
        host: str | None = None,
        args: list[str] | None = None,
        mflux: bool = True,
        ms_per_mp_step: float = 50.0,
        env: dict[str, str] | None = None,
        start: bool = True,
        wait: bool = True,
        ollama_url: str | None = None,
    ) -> Peer:
        """Start a peer; `ollama_url` points it at an Ollama (or the stand-in) instead of the default."""
        data_dir = self.base_dir / node_id
        args = [*(args or []), *(["--ollama-url", ollama_url] if ollama_url else [])]
        peer = Peer(
            node_id=node_id,
            host=host or next_address(),
            mesh=self.name,
            data_dir=data_dir,
            args=list(args or []),
            env=self.env(data_dir, mflux=mflux, ms_per_mp_step=ms_per_mp_step, extra=env),
        )
        self.peers[node_id] = peer
        if start:
            peer.start(wait=wait)
        return peer

    def wait_all_see_each_other(self, timeout: float = 10.0) -> None:
        live = [p for p in self.peers.values() if p.alive]
        ids = {p.node_id for p in live}

        def converged() -> bool:
            """Every peer lists the others up and has fetched their state (what routing needs)."""
            for peer in live:
                doc = peer.get("/mesh/peers", timeout=2).json()
                ready = {p["node_id"] for p in doc["peers"] if p["status"] == "up" and p["capabilities"].get("image")}
                if not ready >= ids:
                    return False
            return True

        wait_until(converged, timeout, what=f"peers {sorted(ids)} to list each other up")

    def standin_events(self) -> list[dict[str, Any]]:
        if not self.standin_log.exists():
            return []
        return [json.loads(line) for line in self.standin_log.read_text().splitlines() if line.strip()]

    def close(self) -> None:
        for peer in self.peers.values():
            if peer.alive:
                peer.terminate(timeout=10)

    def logs(self) -> str:
        return "\n".join(f"----- {p.node_id} ({p.host}) -----\n{p.log_tail(60)}" for p in self.peers.values())


OLLAMA_STANDIN = Path(__file__).parent / "standins" / "ollama_standin.py"


class OllamaStandin:
    """An Ollama stand-in process on a free port of 127.0.0.1."""

    def __init__(
        self,
        name: str,
        models: str,
        loaded: str = "",
        *,
        chunk_delay: float = 0.02,
        fail_status: int | None = None,
        machine: Peer | None = None,
        args: tuple[str, ...] = (),
    ) -> None:
        """`machine`: the peer whose Mac this Ollama runs on (they share its GPU: the contention file)."""
        argv = [sys.executable, str(OLLAMA_STANDIN), "--host", "127.0.0.1", "--port", "0", "--node", name,
                "--models", models, "--loaded", loaded, "--chunk-delay", str(chunk_delay), *args]  # fmt: skip
        if fail_status:
            argv += ["--fail-status", str(fail_status)]
        if machine is not None:
            argv += ["--contention-file", machine.env["HERD_STANDIN_CONTENTION"]]
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().decode()
        assert line.startswith("OLLAMA_STANDIN_LISTENING "), line
        self.url = line.split()[1]
        self.output: list[bytes] = []  # drained, so a chatty stand-in never blocks on a full pipe
        self._drain = threading.Thread(target=lambda: self.output.extend(self.proc.stdout or ()), daemon=True)
        self._drain.start()

    def requests(self) -> list[dict]:
        return httpx.get(self.url + "/_standin/state", timeout=5).json()["requests"]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._drain.join(10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
