#!/usr/bin/env python3
"""How herd-mesh scales with the number of peers: the routing decision, liveness and mDNS traffic, CPU per
peer, and memory, at 5, 50 and 200 peers.

    python benchmarks/scale.py [--iterations 2000] [--sim-seconds 10] [--write docs/benchmarks.md]

1. Decision time, in process, on the real code: a `MeshSnapshot` of N peers whose capability documents are
   shaped like a peer's `/mesh/state` (image section with 7 models, a queue of 0-3 jobs, measured speeds; an
   llm section with 3-8 models, 1-2 loaded, 0-2 in flight; stt; system), up or (1 in 10) suspect. Timed per
   iteration, a new snapshot each time (its views are cached per snapshot, as per request in production):
   - image: `MeshSnapshot(...)` + `snapshot.image_views` + `ranking.rank(...)` (with 3 sent jobs in the ledger);
   - LLM: `snapshot.model_facts("llm")` + `model_scoring.rank_peers(...)`;
   - LLM as `ModelDispatch.open` does it today: `check` (`holders` + `model_facts`), then the attempt loop's own
     snapshot, `model_facts` + `rank_peers`, and `sent_for` (`model_facts` again).
   Production also rereads the peer's own document (`StateDocument.fresh`, per snapshot); that cost is in the
   profile of benchmarks/overhead.py, not here.
2. Wire bytes of one liveness probe: two real peers on loopback, tcpdump (Debian) on lo for --sim-seconds;
   every TCP segment between them (the peers keep their connections open), divided by the probes counted in
   the payloads (`GET /mesh/ping`).
3. CPU per probe answered: wrk (1 connection, keep-alive) sends GET /mesh/ping to one real peer; the peer's
   CPU time (psutil) over the run / probes answered.
4. A simulated mesh around one real peer: N-1 simulated peers (one helper process, one address each on
   127.x, answering /mesh/ping, /mesh/state and /mesh/steal-image like a peer and probing the real peer from
   their own address as often as bounded probing makes a peer do: every 0.5 s x (N-1) / MAX_PROBES_PER_ROUND,
   over a kept connection that is replaced, as httpx does, when the peer has closed it); the real peer knows
   them as static peers (--no-mdns) and probes them as liveness.py does. Measured on the real peer: CPU (% of
   one core), RSS, probes sent and answered, connections opened each way, steal asks; its idle CPU with no
   peers is the baseline.
5. mDNS: --mdns-peers real peers with multicast mDNS on lo, idle; tcpdump counts UDP 5353 for --sim-seconds.
   Multicast reaches every peer, so what one peer receives is N x what one peer sends (measured share).
6. Memory per idle peer: RSS and USS (psutil) of the real peers of part 5 after they settle, and of the real
   peer of part 4 with 49 and 199 peers known.

Then per-peer and mesh-wide probes/s, packets/s, bytes/s and % of a core at 5, 50 and 200 peers, and the
verdict against issue 15's threshold (at 50 peers: > 1 % of a core or > 100 KB/s per peer).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    command_line,
    fmt,
    log,
    machine,
    on_exit,
    p50,
    p99,
    stop,
    table,
    today,
    track,
    write_section,
)

SIZES = (5, 50, 200)
PROBE_INTERVAL_S = 0.5  # herd_mesh/mesh/liveness.py
PORT = 11435
IMAGE_MODELS = ("fibo", "flux-dev", "flux-krea-dev", "flux-schnell", "qwen-image", "z-image", "z-image-turbo")
PRIOR = {"fibo": 250000.0, "flux-dev": 120000.0, "flux-krea-dev": 120000.0, "flux-schnell": 120000.0,
         "qwen-image": 300000.0, "z-image": 430000.0, "z-image-turbo": 215000.0}  # fmt: skip
LLM_MODELS = ("llama3.2:3b", "nomic-embed-text:latest", "qwen3:8b", "gpt-oss:20b", "gemma3:27b", "mistral:7b",
              "phi4:14b", "deepseek-r1:8b")  # fmt: skip


# -- realistic capability documents -------------------------------------------------------------------------------
def document(i: int, mesh: str, url: str, rng: random.Random, now: float) -> dict[str, Any]:
    """A capability document shaped like a peer's GET /mesh/state (read from a running peer)."""
    node = f"mac{i:03d}"
    running = [{"job_id": f"{node}-r{j}", "model": "z-image-turbo", "started_at": now - rng.uniform(0, 5),
                "estimate_s": rng.uniform(2, 20)} for j in range(rng.randint(0, 1))]  # fmt: skip
    waiting = [{"job_id": f"{node}-w{j}", "model": rng.choice(IMAGE_MODELS[5:]), "estimate_s": rng.uniform(2, 20)}
               for j in range(rng.randint(0, 2))]  # fmt: skip
    llm = sorted(rng.sample(LLM_MODELS, rng.randint(3, 8)))
    loaded = sorted(rng.sample(llm, rng.randint(1, 2)))
    return {
        "proto": 1, "version": "0.1.0", "node_id": node, "mesh": mesh, "url": url, "boot_id": f"b{i:011d}",
        "started_at": now - 3600, "state_version": 1, "generated_at": now - rng.uniform(0, 1),
        "system": {"chip": "Apple M3 Ultra", "cores": 32, "memory_total_gb": 192.0,
                   "memory_available_gb": round(rng.uniform(20, 150), 1), "memory_pressure": "normal",
                   "cpu_percent": round(rng.uniform(0, 60), 1)},
        "image": {
            "enabled": True, "engine": "mflux-cli",
            "models": {m: {"installed": True, "cached": rng.random() < 0.6, "loaded": m == "z-image-turbo"}
                       for m in IMAGE_MODELS},
            "queue": {"slots": 1, "running": running, "waiting": waiting},
            "speed": {"ms_per_mp_step": {"z-image-turbo": rng.uniform(150000, 600000),
                                         "flux-schnell": rng.uniform(80000, 400000)},
                      "prior_ms_per_mp_step": PRIOR, "load_s": {m: rng.uniform(5, 40) for m in IMAGE_MODELS},
                      "factor": 1.0},
        },
        "llm": {
            "enabled": {"llm": True, "embeddings": True}, "ollama": {"reachable": True, "version": "0.12.0"},
            "models": llm, "loaded": loaded, "sizes": {m: rng.randint(274_000_000, 17_000_000_000) for m in llm},
            "active": [{"job_id": f"{node}-l{j}", "kind": "llm", "model": loaded[0]}
                       for j in range(rng.randint(0, 2))],
        },
        "stt": {"enabled": True, "engine": "mlx-whisper", "models": ["tiny.en"], "default": "tiny.en", "loaded": [],
                "sizes": {"tiny.en": 75537502}, "active": []},
    }  # fmt: skip


# -- 1. decision time ----------------------------------------------------------------------------------------------
def decision_times(iterations: int) -> dict[int, dict[str, list[float]]]:
    from herd_mesh.core import model_scoring, ranking
    from herd_mesh.core.views import LIVE, MeshSnapshot, PeerState, ViewCache
    from herd_mesh.core.work import Sent, Work

    out: dict[int, dict[str, list[float]]] = {}
    for n in SIZES:
        rng = random.Random(n)
        base_now = now = time.time()
        peers = []
        for i in range(n):
            doc = document(i, "bench", f"http://10.0.{i // 250}.{i % 250 + 1}:11435", rng, now)
            status = "up" if i == 0 or rng.random() > 0.1 else "suspect"
            peers.append(PeerState(doc["node_id"], status, doc, is_self=i == 0, url=doc["url"]))
        peers_t = tuple(peers)
        me = peers[0].node_id
        image = Work.image("z-image-turbo", 1024, 1024, 4, "job-x")
        sent = [Sent(f"s{j}", peers[j % n].node_id, 10.0, now, "z-image-turbo") for j in range(3)]
        llm = Work.request("llm", "llama3.2:3b", "job-y")
        costs = model_scoring.LLM_COSTS
        times: dict[str, list[float]] = {k: [] for k in ("image", "views", "rank", "llm", "llm_full")}
        pick = random.Random(1)
        cache = ViewCache()  # as `mesh/snapshot.py` MeshView keeps one
        churn = random.Random(2)
        for i in range(iterations):
            # between two decisions a tenth of the peers have sent a new document (a busy mesh): those are read
            # again, the rest come from the cache, and the clock moves on
            for j in churn.sample(range(n), max(1, n // 10)):
                peers[j] = PeerState(peers[j].node_id, peers[j].status, dict(peers[j].document),
                                     is_self=peers[j].is_self, url=peers[j].url)  # fmt: skip
            peers_t = tuple(peers)
            now = base_now + i * 0.01
            t0 = time.perf_counter()
            snap = MeshSnapshot(now, me, peers_t, cache)
            views = snap.image_views
            t1 = time.perf_counter()
            ranked = ranking.rank(views, image, sent=sent, rng=pick)
            t2 = time.perf_counter()
            assert ranked
            times["image"].append((t2 - t0) * 1e3)
            times["views"].append((t1 - t0) * 1e3)
            times["rank"].append((t2 - t1) * 1e3)

            t0 = time.perf_counter()
            snap = MeshSnapshot(now, me, peers_t, cache)
            choices = model_scoring.rank_peers(snap.model_facts("llm"), llm, costs, sent=(), rng=pick)
            t1 = time.perf_counter()
            times["llm"].append((t1 - t0) * 1e3)
            assert choices

            t0 = time.perf_counter()  # ModelDispatch.open: check, then the attempt loop's rank and sent
            snap = MeshSnapshot(now, me, peers_t, cache)
            snap.holders("llm")
            assert [f for f in snap.model_facts("llm") if f.status in LIVE]
            snap = MeshSnapshot(now, me, peers_t, cache)
            choices = model_scoring.rank_peers(snap.model_facts("llm"), llm, costs, sent=(), rng=pick)
            target = next(f for f in snap.model_facts("llm") if f.node_id == choices[0].node_id)
            model_scoring.sent_for(target, llm, costs, sent=(), now=now)
            times["llm_full"].append((time.perf_counter() - t0) * 1e3)
        out[n] = times
        log(f"  decision n={n}: image p50 {p50(times['image']):.3f} ms, llm p50 {p50(times['llm']):.3f} ms")
    return out


# -- pcap ------------------------------------------------------------------------------------------------------------
def read_pcap(path: Path) -> list[tuple[float, bytes]]:
    """(timestamp, IPv4 packet) for every frame of a tcpdump -w file on lo (Ethernet framing)."""
    data = path.read_bytes()
    if len(data) < 24:
        return []
    magic = struct.unpack("<I", data[:4])[0]
    endian = "<" if magic in (0xA1B2C3D4, 0xA1B23C4D) else ">"
    nano = magic in (0xA1B23C4D, 0x4D3CB2A1)
    linktype = struct.unpack(endian + "I", data[20:24])[0]
    skip = {1: 14, 113: 16, 276: 20, 0: 4}.get(linktype, 14)
    out, off = [], 24
    while off + 16 <= len(data):
        sec, frac, incl, _orig = struct.unpack(endian + "IIII", data[off : off + 16])
        frame = data[off + 16 : off + 16 + incl]
        off += 16 + incl
        out.append((sec + frac / (1e9 if nano else 1e6), frame[skip:]))
    return out


def tcp_payload(ip: bytes) -> tuple[int, bytes]:
    """(IP total length, TCP or UDP payload) of an IPv4 packet."""
    ihl = (ip[0] & 0x0F) * 4
    total = struct.unpack(">H", ip[2:4])[0]
    proto = ip[9]
    body = ip[ihl:total]
    if proto == 6:
        return total, body[(body[12] >> 4) * 4 :]
    if proto == 17:
        return total, body[8:]
    return total, b""


def capture(filter_: str, seconds: float, path: Path) -> list[tuple[float, bytes]]:
    proc = track(subprocess.Popen(["tcpdump", "-i", "lo", "-U", "-s", "2000", "-w", str(path), filter_],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))  # fmt: skip
    time.sleep(1.0)  # tcpdump needs a moment before it captures
    time.sleep(seconds)
    proc.send_signal(signal.SIGINT)
    proc.wait(10)
    return read_pcap(path)


# -- peers -----------------------------------------------------------------------------------------------------------
def start_peers(tmp: Path, n: int, *, mdns: bool, env: dict[str, str] | None = None) -> Any:
    from tests.harness import Mesh

    mesh = Mesh(tmp / f"mesh{n}{'m' if mdns else ''}")
    on_exit(mesh.close)
    peers = []
    for i in range(n):
        args = [] if mdns else ["--no-mdns", *(["--peer", peers[0].url] if peers else [])]
        peers.append(mesh.add(f"p{i}", args=args, wait=False, env=env, ollama_url=f"http://127.0.0.1:{_closed()}"))
    for p in peers:
        p.wait_ready(60)
    return mesh, peers


def _closed() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_up(peer: Any, count: int, timeout: float) -> None:
    from tests.harness import wait_until

    def ready() -> bool:
        doc = peer.get("/mesh/peers", timeout=10).json()
        up = [p for p in doc["peers"] if p["status"] == "up" and not p.get("self") and p["capabilities"]]
        return len(up) >= count

    wait_until(ready, timeout, interval=0.5, what=f"{peer.node_id} to list {count} peers up")


def cpu_seconds(pid: int) -> float:
    import psutil

    t = psutil.Process(pid).cpu_times()
    return t.user + t.system


def memory(pid: int) -> tuple[float, float]:
    import psutil

    info = psutil.Process(pid).memory_full_info()
    return info.rss / 2**20, info.uss / 2**20


# -- 2. wire bytes per probe -----------------------------------------------------------------------------------------
def wire_bytes(tmp: Path, seconds: float) -> dict[str, float]:
    mesh, (a, b) = start_peers(tmp, 2, mdns=False)
    try:
        wait_up(a, 1, 20)
        wait_up(b, 1, 20)
        time.sleep(2)
        packets = capture(f"tcp port {PORT} and host {a.host} and host {b.host}", seconds, tmp / "ping.pcap")
    finally:
        mesh.close()
    total = sum(tcp_payload(p)[0] for _, p in packets)
    payloads = [tcp_payload(p)[1] for _, p in packets]
    pings = sum(1 for pl in payloads if pl.startswith(b"GET /mesh/ping "))
    others = sum(1 for pl in payloads if re.match(rb"(GET|POST) /", pl) and not pl.startswith(b"GET /mesh/ping "))
    answers = [pl for pl in payloads if pl.startswith(b"HTTP/1.1 200")]
    requests = [pl for pl in payloads if pl.startswith(b"GET /mesh/ping ")]
    return {
        "pings": pings, "other_requests": others, "packets": len(packets), "ip_bytes": total,
        "packets_per_ping": len(packets) / max(pings, 1), "bytes_per_ping": total / max(pings, 1),
        "request_bytes": p50([len(r) for r in requests]), "answer_bytes": p50([len(r) for r in answers]),
        "seconds": seconds,
    }  # fmt: skip


# -- 3. CPU per probe answered ---------------------------------------------------------------------------------------
def server_cpu_per_ping(tmp: Path, seconds: float) -> dict[str, float]:
    mesh, (a,) = start_peers(tmp, 1, mdns=False)
    try:
        time.sleep(2)
        idle0 = cpu_seconds(a.proc.pid)
        time.sleep(seconds)
        idle = (cpu_seconds(a.proc.pid) - idle0) / seconds
        c0 = cpu_seconds(a.proc.pid)
        t0 = time.monotonic()
        out = subprocess.run(["wrk", "-t1", "-c1", f"-d{max(1, round(seconds))}s", a.url + "/mesh/ping"],
                             capture_output=True, text=True, timeout=seconds + 60).stdout  # fmt: skip
        wall = time.monotonic() - t0
        cpu = cpu_seconds(a.proc.pid) - c0 - idle * wall
    finally:
        mesh.close()
    m = re.search(r"(\d+) requests in", out)
    count = int(m.group(1)) if m else 0
    return {"pings": count, "cpu_ms_per_ping": cpu / max(count, 1) * 1e3, "max_per_s": count / wall, "idle": idle}


# -- 4. the simulated mesh -------------------------------------------------------------------------------------------
def fake_addresses(n: int) -> list[str]:
    """n addresses on 127.77.x.y with port 11435 free."""
    out = []
    k = 0
    while len(out) < n:
        host = f"127.77.{k // 250}.{k % 250 + 2}"
        k += 1
        with socket.socket() as s:
            try:
                s.bind((host, PORT))
            except OSError:
                continue
        out.append(host)
    return out


def simulate(tmp: Path, n: int, seconds: float, mesh_name: str) -> dict[str, float]:
    """One real peer among n-1 simulated ones; its CPU, RSS and probe counts."""
    from tests.harness import Mesh

    hosts = fake_addresses(n - 1)
    mesh = Mesh(tmp / f"sim{n}", name=mesh_name)
    on_exit(mesh.close)
    peer = mesh.add("real", args=["--no-mdns"], wait=False, ollama_url=f"http://127.0.0.1:{_closed()}",
                    env={"HERD_PEERS": ",".join(f"http://{h}:{PORT}" for h in hosts)})  # fmt: skip
    peer.wait_ready(60)
    config = tmp / f"sim{n}.json"
    stats = tmp / f"sim{n}-stats.json"
    config.write_text(json.dumps({"hosts": hosts, "mesh": mesh_name, "target": peer.url, "stats": str(stats)}))
    fake = None
    try:
        if hosts:
            fake = track(subprocess.Popen([sys.executable, __file__, "--fake-mesh", str(config)]))
            wait_up(peer, n - 1, 120)
        time.sleep(3)  # settle: every state fetched, every connection open
        c0, t0 = cpu_seconds(peer.proc.pid), time.monotonic()
        if fake is not None:
            fake.send_signal(signal.SIGUSR1)  # reset its counters
        time.sleep(seconds)
        if fake is not None:
            fake.send_signal(signal.SIGUSR2)  # write its counters
        cpu = (cpu_seconds(peer.proc.pid) - c0) / (time.monotonic() - t0)
        rss, uss = memory(peer.proc.pid)
        time.sleep(0.5)
        counts = json.loads(stats.read_text()) if fake is not None else {"answered": 0, "sent": 0, "seconds": 1}
        up = sum(1 for p in peer.get("/mesh/peers").json()["peers"] if p["status"] == "up" and not p.get("self"))
    finally:
        if fake is not None:
            stop(fake)
        mesh.close()
    return {"n": n, "cpu": cpu, "rss": rss, "uss": uss, "up": up,
            "probes_out": counts["answered"] / counts["seconds"], "probes_in": counts["sent"] / counts["seconds"],
            "probes_in_failed": counts.get("failed", 0),
            "connects_in": counts.get("connects", 0) / counts["seconds"],
            "connects_out": counts.get("accepted", 0) / counts["seconds"],
            "steals_out": counts.get("steals", 0) / counts["seconds"]}  # fmt: skip


def max_probes() -> int:
    """Peers one liveness round probes at most (`herd_mesh/core/probing.py`, of the revision measured)."""
    from herd_mesh.core.probing import MAX_PROBES_PER_ROUND

    return MAX_PROBES_PER_ROUND


def fake_mesh(config_path: str) -> None:
    """The helper process: one simulated peer per address, answering and sending probes as a peer does."""
    config = json.loads(Path(config_path).read_text())
    mesh, target = config["mesh"], config["target"]
    rng = random.Random(7)
    now = time.time()
    pings, states = {}, {}
    for i, host in enumerate(config["hosts"]):
        url = f"http://{host}:{PORT}"
        doc = document(i + 1, mesh, url, rng, now)
        node = doc["node_id"]
        states[host] = json.dumps(doc).encode()
        system = {"cpu_percent": 3.0, "memory_available_gb": 90.0, "memory_pressure": "normal"}
        pings[host] = json.dumps(
            {
                "proto": 1,
                "node_id": node,
                "mesh": mesh,
                "boot_id": doc["boot_id"],
                "url": url,
                "state_version": 1,
                "system": system,
                "leaving": False,
                "settings": "0",
            }
        ).encode()
    counters: dict[str, float] = {"answered": 0, "sent": 0, "failed": 0, "connects": 0, "accepted": 0, "steals": 0,
                                  "since": time.monotonic(), "seconds": 1.0}  # fmt: skip

    def reset(*_: Any) -> None:
        counters.update(answered=0, sent=0, failed=0, connects=0, accepted=0, steals=0, since=time.monotonic())

    def dump(*_: Any) -> None:
        counters["seconds"] = time.monotonic() - counters["since"]
        Path(config["stats"]).write_text(json.dumps(counters))

    async def serve(host: str) -> asyncio.AbstractServer:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            counters["accepted"] += 1  # a connection the real peer opened
            try:
                while True:
                    head = await reader.readuntil(b"\r\n\r\n")
                    length = re.search(rb"(?i)\r\ncontent-length:\s*(\d+)", head)
                    if length:
                        await reader.readexactly(int(length.group(1)))
                    path = head.split(b" ", 2)[1].split(b"?")[0]
                    if path == b"/mesh/ping":
                        body, status = pings[host], b"200 OK"
                        counters["answered"] += 1
                    elif path == b"/mesh/state":
                        body, status = states[host], b"200 OK"
                    elif path == b"/mesh/steal-image":  # a victim with nothing it may give this thief
                        body, status = b'{"job_id": null}', b"200 OK"
                        counters["steals"] += 1
                    elif path == b"/mesh/settings":
                        body, status = b'{"entries": {}}', b"200 OK"
                    else:
                        body, status = b'{"error": "not here"}', b"404 Not Found"
                    writer.write(b"HTTP/1.1 " + status + b"\r\ncontent-type: application/json\r\ncontent-length: "
                                 + str(len(body)).encode() + b"\r\n\r\n" + body)  # fmt: skip
                    await writer.drain()
            except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError, asyncio.CancelledError):
                writer.close()

        return await asyncio.start_server(handle, host, PORT)

    async def probe(i: int, host: str) -> None:
        """GET /mesh/ping of the real peer every PROBE_INTERVAL_S from this address, keep-alive, as liveness.py."""
        doc = json.loads(pings[host])
        target_host = target.removeprefix("http://")
        request = (f"GET /mesh/ping HTTP/1.1\r\nHost: {target_host}\r\nAccept: */*\r\nAccept-Encoding: gzip, deflate"
                   f"\r\nConnection: keep-alive\r\nUser-Agent: python-httpx/0.28.1\r\nX-Herd-Node: {doc['node_id']}"
                   f"\r\nX-Herd-Mesh: {mesh}\r\nX-Herd-Url: {doc['url']}\r\nX-Herd-Boot: {doc['boot_id']}\r\n\r\n"
                   ).encode()  # fmt: skip
        # as the real peers do (`core/probing.py`): each probes a bounded number of the others per round, so the
        # real peer hears from a given simulated one every (n - 1) / budget rounds
        others = len(config["hosts"])
        every = PROBE_INTERVAL_S * others / min(max_probes(), others)
        await asyncio.sleep(random.random() * every)
        reader: asyncio.StreamReader | None = None
        writer: asyncio.StreamWriter | None = None
        while True:
            started = time.monotonic()
            for _attempt in (1, 2):  # like httpx: a kept connection the peer has closed meanwhile is replaced
                reused = writer is not None
                try:
                    if writer is None:
                        th, tp = target_host.split(":")
                        reader, writer = await asyncio.open_connection(th, int(tp), local_addr=(host, 0))
                        writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                        counters["connects"] += 1
                    assert reader is not None
                    writer.write(request)
                    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 2)
                    length = re.search(rb"(?i)\r\ncontent-length:\s*(\d+)", head)
                    await reader.readexactly(int(length.group(1)) if length else 0)
                    counters["sent"] += 1
                    break
                except (OSError, asyncio.IncompleteReadError, TimeoutError, asyncio.LimitOverrunError) as exc:
                    if writer is not None:
                        writer.close()
                    reader = writer = None
                    if not (reused and isinstance(exc, (asyncio.IncompleteReadError, ConnectionError))):
                        counters["failed"] += 1
                        break
            await asyncio.sleep(max(0.0, every - (time.monotonic() - started)))

    async def main() -> None:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGUSR1, reset)
        loop.add_signal_handler(signal.SIGUSR2, dump)
        servers = [await serve(h) for h in config["hosts"]]
        tasks = [asyncio.ensure_future(probe(i, h)) for i, h in enumerate(config["hosts"])]
        try:
            await asyncio.Event().wait()
        finally:
            for t in tasks:
                t.cancel()
            for s in servers:
                s.close()

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    asyncio.run(main())


# -- 5. and 6. mDNS and memory ---------------------------------------------------------------------------------------
def mdns_traffic(tmp: Path, n: int, seconds: float) -> dict[str, Any]:
    mesh, peers = start_peers(tmp, n, mdns=True)
    try:
        deadline = time.monotonic() + 30
        for p in peers:
            wait_up(p, n - 1, max(5.0, deadline - time.monotonic()))
        time.sleep(5)  # settle
        packets = capture("udp port 5353", seconds, tmp / "mdns.pcap")
        mem = [memory(p.proc.pid) for p in peers]
    finally:
        mesh.close()
    sizes = [tcp_payload(p)[0] for _, p in packets]
    answers = sum(1 for _, p in packets if len(tcp_payload(p)[1]) > 2 and tcp_payload(p)[1][2] & 0x80)
    return {"n": n, "packets": len(packets), "bytes": sum(sizes), "seconds": seconds, "answers": answers,
            "largest": max(sizes, default=0), "rss": [m[0] for m in mem], "uss": [m[1] for m in mem]}  # fmt: skip


def announce_size(tmp: Path) -> int:
    """IP bytes of one mDNS announcement of a peer (the largest packet it sends on start, its full record)."""
    tmp.mkdir(parents=True, exist_ok=True)
    proc_path = tmp / "announce.pcap"
    cap = track(subprocess.Popen(["tcpdump", "-i", "lo", "-U", "-s", "2000", "-w", str(proc_path), "udp port 5353"],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))  # fmt: skip
    time.sleep(1)
    mesh, _ = start_peers(tmp / "ann", 1, mdns=True)
    time.sleep(3)
    mesh.close()
    time.sleep(0.5)
    cap.send_signal(signal.SIGINT)
    cap.wait(10)
    return max((tcp_payload(p)[0] for _, p in read_pcap(proc_path)), default=0)


# -- report ---------------------------------------------------------------------------------------------------------
def report(dec: dict[int, dict[str, list[float]]], wire: dict[str, float], server: dict[str, float],
           sims: dict[int, dict[str, float]], base: dict[str, float], mdns: dict[str, Any], announce: int,
           args: argparse.Namespace) -> str:  # fmt: skip
    rows = []
    labels = (
        ("image: snapshot + image_views + rank", "image"),
        ("  of which snapshot + image_views", "views"),
        ("  of which rank", "rank"),
        ("LLM: model_facts + rank_peers", "llm"),
        ("LLM as ModelDispatch.open does it (2 snapshots, 3x model_facts, holders)", "llm_full"),
    )
    for label, key in labels:
        rows.append((label, *(f"{fmt(p50(dec[n][key]), 3)} / {fmt(p99(dec[n][key]), 3)}" for n in SIZES)))
    text = (f"`{command_line()}` — {today()}; machine: {machine()}.\n\n"
            f"Decision time, in process, ms p50 / p99 over {args.iterations} iterations (a fresh snapshot each):\n\n"
            + table(["decision", *(f"{n} peers" for n in SIZES)], rows) + "\n")  # fmt: skip

    ping_b, ping_pk = wire["bytes_per_ping"], wire["packets_per_ping"]
    cpu_ping = server["cpu_ms_per_ping"]
    rows = []
    verdict = {}
    for n in SIZES:
        rate = min(n - 1, max_probes()) / PROBE_INTERVAL_S  # probes a peer sends a second (and answers)
        sim = sims.get(n)
        per_peer_bps = 2 * rate * ping_b  # its own probes and the probes it answers, both directions
        measured_cpu = sim["cpu"] - base["cpu"] if sim else float("nan")
        mdns_idle_peer = mdns["bytes"] / mdns["seconds"] / mdns["n"]  # what one idle peer sends per second
        verdict[n] = (measured_cpu if sim else float("nan"), per_peer_bps)
        rows.append((n, f"{rate:.0f} + {rate:.0f}", f"{2 * rate * ping_pk:.0f}", f"{per_peer_bps / 1e3:.1f}",
                     f"{n * rate:.0f}", f"{n * rate * ping_pk:.0f}", f"{n * rate * ping_b / 1e6:.2f}",
                     f"{2 * rate * cpu_ping / 10:.2f}" if cpu_ping else "—",
                     f"{measured_cpu * 100:.1f} (RSS {sim['rss']:.0f} MB)" if sim else "—",
                     f"{n * mdns_idle_peer / 1e3:.1f}"))  # fmt: skip
    traffic = table(["peers", "probes/s per peer (sent + answered)", "packets/s per peer", "KB/s per peer",
                     "probes/s mesh-wide", "packets/s mesh-wide", "MB/s mesh-wide",
                     "% core per peer (answering, from wrk)", "% core per peer, measured in the simulated mesh",
                     "mDNS KB/s per peer (received; N x one idle peer's measured share)"], rows)  # fmt: skip
    sim_rows = [(n, f"{s['up']}", f"{s['probes_out']:.0f}", f"{s['probes_in']:.0f}",
                 f"{s.get('connects_out', 0):.1f} / {s.get('connects_in', 0):.1f}", f"{s.get('steals_out', 0):.1f}",
                 f"{s['cpu'] * 100:.1f}", f"{s['rss']:.0f} / {s['uss']:.0f}")
                for n, s in sorted(sims.items())]  # fmt: skip
    sim_rows.insert(
        0, (1, "0", "0", "0", "0 / 0", "0", f"{base['cpu'] * 100:.1f}", f"{base['rss']:.0f} / {base['uss']:.0f}")
    )
    n50 = verdict.get(50, (float("nan"), float("nan")))
    over = (n50[0] > 0.01) or (n50[1] > 100e3)
    mdns_idle = mdns["bytes"] / mdns["seconds"]
    text += (
        f"\nOne probe on the wire (two real peers, tcpdump on lo, {wire['seconds']:g} s): {wire['pings']} probes, "
        f"{wire['other_requests']} other requests; **{ping_b:.0f} IP bytes and {ping_pk:.1f} packets per probe** "
        f"(request {wire['request_bytes']:.0f} B and answer {wire['answer_bytes']:.0f} B of TCP payload, plus "
        f"headers and ACKs; add 14-38 B of Ethernet framing per packet on a LAN). Answering one probe costs the "
        f"peer **{cpu_ping:.3f} ms of CPU** (wrk, 1 connection: {server['pings']} probes, at most "
        f"{server['max_per_s']:.0f}/s on one core).\n\n"
        f"Liveness per peer and mesh-wide (every 0.5 s each peer probes up to {max_probes()} others, "
        "`core/probing.py`; bytes and packets from the "
        "measurement above; the simulated-mesh column is the real peer's CPU minus its idle CPU with no peers):\n\n"
        + traffic
        + "\n\nThe simulated mesh (one real peer, N-1 simulated peers; CPU of the real peer in % of one core):\n\n"
        + table(
            [
                "peers",
                "listed up",
                "probes sent/s",
                "probes answered/s",
                "new connections/s (out / in)",
                "steal asks/s",
                "CPU %",
                "RSS / USS MB",
            ],
            sim_rows,
        )
        + "\n\nThe simulated peers advertise queues (0-2 waiting jobs each) that they never hand over, so the real "
        "peer, idle, keeps asking for work: at most once per victim per `REFUSED_QUIET_S` while its queue looks "
        "the same, and at most every `STEAL_INTERVAL_S` (`dispatch/stealing.py`); that is in its CPU too."
        + f"\n\nmDNS, {mdns['n']} real peers idle for {mdns['seconds']:g} s: {mdns['packets']} packets, "
        f"{mdns_idle:.0f} B/s on the whole link ({mdns['packets'] / mdns['seconds']:.2f} packets/s, "
        f"{mdns['answers']} of them answers or announcements, the rest queries); every peer receives all of it, "
        "and each peer adds its share, so idle mDNS per peer grows with N (column above: N x one peer's share); "
        f"one full announcement is {announce} IP bytes; one idle peer sends "
        f"{mdns['answers'] / mdns['seconds'] / mdns['n']:.1f} answers or announcements a second"
        + (
            ": more than the once-a-second re-announce limit (discovery.py) alone explains.\n\n"
            if mdns["answers"] / mdns["seconds"] / mdns["n"] > 1
            else ".\n\n"
        )
        + f"Memory per idle peer ({mdns['n']} real peers with mDNS, after settling): RSS "
        f"{p50(mdns['rss']):.0f} MB (max {max(mdns['rss']):.0f}), USS {p50(mdns['uss']):.0f} MB.\n\n"
        f"**Verdict at 50 peers** (issue 15: replace O(n²) probing if > 1 % of a core or > 100 KB/s per peer; "
        "bounded probing is that replacement, and this is what remains with it): "
        f"{n50[0] * 100:.1f} % of a core and {n50[1] / 1e3:.1f} KB/s per peer: "
        + ("**over the threshold**." if over else "under the threshold.")
        + "\n"
    )
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iterations", type=int, default=2000)
    parser.add_argument("--sim-seconds", type=float, default=10.0)
    parser.add_argument("--sim-sizes", default="5,50,200", help="mesh sizes to simulate around one real peer")
    parser.add_argument("--mdns-peers", type=int, default=5)
    parser.add_argument("--write", type=Path, help="put the tables into this Markdown file (docs/benchmarks.md)")
    parser.add_argument("--rev", help="run herd_mesh/ and tests/ as committed at this git revision (e.g. HEAD)")
    parser.add_argument("--fake-mesh", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.fake_mesh:
        fake_mesh(args.fake_mesh)
        return
    for tool in ("tcpdump", "wrk"):
        if not shutil.which(tool):
            sys.exit(f"{tool} is missing: apt-get install {tool}")
    log("1. decision time")
    dec = decision_times(args.iterations)
    with tempfile.TemporaryDirectory(prefix="herd-scale-") as tmp_name:
        tmp = Path(tmp_name)
        log("2. wire bytes per probe")
        wire = wire_bytes(tmp / "wire", args.sim_seconds)
        log(f"   {wire}")
        log("3. CPU per probe answered")
        server = server_cpu_per_ping(tmp / "cpu", args.sim_seconds / 2)
        log(f"   {server}")
        log("4. simulated meshes")
        base = simulate(tmp, 1, args.sim_seconds, "scale-bench")
        sims = {}
        for n in (int(s) for s in args.sim_sizes.split(",") if s):
            sims[n] = simulate(tmp, n, args.sim_seconds, f"scale-bench-{n}")
            log(f"   n={n}: {sims[n]}")
        log("5. mDNS")
        mdns = mdns_traffic(tmp / "mdns", args.mdns_peers, args.sim_seconds * 3)
        announce = announce_size(tmp / "announce")
        log(f"   {mdns} announce {announce}")
    text = report(dec, wire, server, sims, base, mdns, announce, args)
    print(text)
    if args.write:
        write_section(args.write, "scale", text)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
