#!/usr/bin/env python3
"""herd-mesh and ollama-herd 0.11.4 side by side, in one run, on the same stand-ins in network namespaces.

    python benchmarks/vs_ollama_herd.py [--rounds 40] [--png-rounds 20] [--bursts 3] [--write docs/benchmarks.md]

Needs root (or passwordless sudo) for the namespace lab (tests/netns.py). ollama-herd is installed from PyPI
into its own venv (~/.cache/herd-bench/ollama-herd-0.11.4, made on first use; never the project's venv) and run
as a user would: `herd` (its router) and `herd-node` (one per machine, each next to an Ollama, which it
requires: the Ollama stand-in of tests/standins, on the machine's address, port 11434). What its source says
and this script relies on: the router listens on 11435 and takes heartbeats from nodes every 5 s; a node
finds the router over mDNS unless `--router-url` is given (given here: its own mDNS advertisement picks the
address of a default route, which a lab host does not have); a node whose PATH has `mflux-generate-z-image-
turbo` starts an image server on 0.0.0.0:11436 and the router proxies /api/generate-image there (one new
httpx client per image); embeddings go to the node's Ollama (`nomic-embed-text` is diverted to a fastembed
server we do not have, so the embedding model here is `mxbai-embed-large`, which both send to Ollama);
telemetry is switched off (FLEET_NODE_TELEMETRY=false; the lab has no route out anyway).

Every machine is a namespace of one lab bridge with the same mflux stand-in (PNGs padded to a real PNG's
1.6 MB) and its own GPU lock. Part 1, hop overhead, one lab of 7 hosts, both fleets up at once, every variant
once per round in a random order:
  ours:   P1 (mflux + Ollama with the model), P2 and P3 (Ollama without it, no mflux): client -> P2 -> P1
          against client -> P1, and P1 against its Ollama;
  theirs: router R, N1 (mflux + Ollama with the model), N2 and N3 (Ollama without it, no mflux):
          client -> R -> N1 against client -> N1 (its Ollama for the embedding, its image server for the PNG).
Part 2, the mixed-speed burst, --bursts fresh meshes of each (alternating which goes first): 3 machines at
0.5 / 1 / 2 s per 512x512 4-step image; a sequential warm-up (ours: 2 rounds of one image sent to each
peer in turn, which serves it or sends it on, as in a running mesh; theirs: 3 images through the router),
then 14 requests at once (ours: spread over the 3 peers; theirs: all to the router). Each machine's real time
per image is measured in the same mesh (the stand-in command run in its namespace, twice), and the optimum is
the best whole-image split for those times.
"""

from __future__ import annotations

import argparse
import collections
import random
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    PNG_BYTES_1024,
    Client,
    command_line,
    fmt,
    install_standin,
    log,
    machine,
    ms_per_mp_step,
    on_exit,
    p50,
    p99,
    table,
    today,
    wait_http,
    write_section,
)

from tests import netns  # noqa: E402
from tests.harness import OLLAMA_STANDIN, Mesh  # noqa: E402
from tests.netns import Host, Lab, LabPeer  # noqa: E402

OLLAMA_HERD = "ollama-herd==0.11.4"
VENV = Path.home() / ".cache" / "herd-bench" / "ollama-herd-0.11.4"
EMBED_MODEL = "mxbai-embed-large"
EMBED = {"model": EMBED_MODEL, "input": "why is the sky blue?"}
PNG = {"model": "z-image-turbo", "prompt": "benchmark", "width": 1024, "height": 1024, "steps": 4}
BURST = {"model": "z-image-turbo", "prompt": "burst", "width": 512, "height": 512, "steps": 4}
SPEEDS_S = (0.5, 1.0, 2.0)  # seconds per 512x512 4-step image on the three machines
JOBS = 14
FAST = 0.5  # ms per megapixel-step for part 1: generation is not what is measured there


# -- ollama-herd's venv ----------------------------------------------------------------------------------------------
def ensure_venv() -> Path:
    herd = VENV / "bin" / "herd"
    if not herd.exists():
        log(f"installing {OLLAMA_HERD} into {VENV} (its own venv)")
        VENV.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(VENV)], check=True)
        subprocess.run([str(VENV / "bin" / "pip"), "install", "-q", OLLAMA_HERD], check=True)
    return VENV


# -- machines --------------------------------------------------------------------------------------------------------
class Fleet:
    """What runs in one lab: Ollama stand-ins, our peers or ollama-herd's router and nodes."""

    def __init__(self, lab: Lab, base: Path, bin_dir: Path) -> None:
        self.lab, self.base, self.bin_dir = lab, base, bin_dir

    def standin_env(self, name: str, mflux: bool, ms: float) -> dict[str, str]:
        d = self.base / name
        d.mkdir(parents=True, exist_ok=True)
        return {
            "PATH": (f"{self.bin_dir}:" if mflux else "") + "/usr/bin:/bin",
            "HOME": str(d), "HERD_STANDIN_LOCK": str(d / "gpu.lock"), "HERD_STANDIN_LOG": str(d / "standin.log"),
            "HERD_STANDIN_MS_PER_MP_STEP": str(ms), "HERD_BENCH_PNG_BYTES": str(PNG_BYTES_1024),
            "PYTHONUNBUFFERED": "1", "LANG": "C.UTF-8",
        }  # fmt: skip

    def ollama(self, host: Host, name: str, models: str) -> str:
        argv = [sys.executable, str(OLLAMA_STANDIN), "--host", host.address, "--port", "11434", "--node", name,
                "--models", models, "--loaded", models, "--chunk-delay", "0"]  # fmt: skip
        self.lab.start(host, argv, {"PATH": "/usr/bin:/bin"}, self.base / f"ollama-{name}.log")
        return f"http://{host.address}:11434"

    def calibrate(self, host: Host, env: dict[str, str], runs: int = 2) -> float:
        """Seconds one 512x512 4-step image takes on this machine: the stand-in command itself, in its namespace."""
        times = []
        for i in range(runs):
            out = self.base / f"calib-{host.index}-{i}-{time.monotonic_ns()}.png"
            argv = ["ip", "netns", "exec", host.netns, str(self.bin_dir / "mflux-generate-z-image-turbo"), "--prompt",
                    "x", "--width", "512", "--height", "512", "--steps", "4", "--output", str(out)]  # fmt: skip
            t0 = time.monotonic()
            subprocess.run(argv, env=env, capture_output=True, check=True, timeout=60)
            times.append(time.monotonic() - t0)
        return sum(times) / len(times)


def our_peer(fleet: Fleet, mesh: Mesh, host: Host, name: str, *, mflux: bool, ms: float, ollama_url: str) -> LabPeer:
    env = mesh.env(fleet.base / name, mflux=mflux, ms_per_mp_step=ms, extra=None)
    env["PATH"] = (f"{fleet.bin_dir}:" if mflux else "") + "/usr/bin:/bin"
    env["HERD_BENCH_PNG_BYTES"] = str(PNG_BYTES_1024)
    peer = LabPeer(node_id=name, host=host.address, mesh=mesh.name, data_dir=fleet.base / name,
                   args=["--ollama-url", ollama_url], env=env, lab=fleet.lab, lab_host=host)  # fmt: skip
    mesh.peers[name] = peer
    return peer.start(wait=False)


def their_router(fleet: Fleet, host: Host, venv: Path) -> str:
    home = fleet.base / "router"
    home.mkdir(parents=True, exist_ok=True)
    env = {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "HOME": str(home), "FLEET_NODE_TELEMETRY": "false",
           "FLEET_TELEMETRY": "false", "PYTHONUNBUFFERED": "1", "LANG": "C.UTF-8"}  # fmt: skip
    argv = [str(venv / "bin" / "herd"), "--host", host.address, "--port", "11435", "--log-level", "WARNING"]
    fleet.lab.start(host, argv, env, fleet.base / "router.log")
    return f"http://{host.address}:11435"


def their_node(fleet: Fleet, host: Host, name: str, venv: Path, router: str, ollama_url: str, *, mflux: bool,
               ms: float) -> None:  # fmt: skip
    env = fleet.standin_env(name, mflux, ms)
    env["PATH"] = (f"{fleet.bin_dir}:" if mflux else "") + f"{venv / 'bin'}:/usr/bin:/bin"
    env["FLEET_NODE_TELEMETRY"] = "false"
    argv = [str(venv / "bin" / "herd-node"), "--node-id", name, "--ollama-host", ollama_url, "--router-url", router,
            "--log-level", "WARNING"]  # fmt: skip
    fleet.lab.start(host, argv, env, fleet.base / f"{name}.log")


def wait_router(router: str, images: int, embed_on: str | None, timeout: float = 60) -> None:
    """ollama-herd's router lists the nodes: `images` of them with the image model, and `embed_on` with it."""
    import httpx

    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            models = httpx.get(router + "/api/image-models", timeout=5).json()["models"]
            have = {n for m in models if m["name"] == "z-image-turbo" for n in m["fleet_nodes"]}
            tags = httpx.get(router + "/api/tags", timeout=5).json()
            embed_ok = embed_on is None or any(EMBED_MODEL in str(m.get("name")) for m in tags.get("models", []))
            last = (have, embed_ok)
            if len(have) >= images and embed_ok:
                return
        except (httpx.HTTPError, ValueError, KeyError) as exc:
            last = exc
        time.sleep(0.5)
    raise RuntimeError(f"ollama-herd's router did not list its nodes within {timeout} s: {last}")


def _has_image_model(caps: dict[str, Any]) -> bool:
    image = caps.get("image") or {}
    return bool(image.get("enabled") and ((image.get("models") or {}).get("z-image-turbo") or {}).get("installed"))


def wait_ours(peers: list[LabPeer], *, image_on: int, embed_holder: str | None, timeout: float = 60) -> None:
    from tests.harness import wait_until

    ids = {p.node_id for p in peers}

    def ready() -> bool:
        for peer in peers:
            doc = peer.get("/mesh/peers", timeout=5).json()
            up = {p["node_id"]: p for p in doc["peers"] if p["status"] == "up"}
            if set(up) < ids:
                return False
            images = [n for n, p in up.items() if _has_image_model(p["capabilities"])]
            if len(images) < image_on:
                return False
            if embed_holder and f"{EMBED_MODEL}:latest" not in ((up.get(embed_holder) or {}).get("capabilities", {})
                                                                 .get("llm", {}).get("models") or []):  # fmt: skip
                return False
        return True

    wait_until(ready, timeout, interval=0.5, what="our peers to see each other")


# -- part 1: hop overhead -------------------------------------------------------------------------------------------
def hop_overhead(tmp: Path, venv: Path, bin_dir: Path, rounds: int, png_rounds: int) -> dict[str, Any]:
    with Lab(7) as lab:
        on_exit(lab.close)
        fleet = Fleet(lab, tmp / "hop", bin_dir)
        h = lab.hosts
        # ours: h0 = P1 (serves), h1 = P2 (entry), h2 = P3
        mesh = Mesh(tmp / "hop-ours")
        on_exit(mesh.close)
        o1 = fleet.ollama(h[0], "o-p1", f"{EMBED_MODEL},llama3.2:3b")
        o2 = fleet.ollama(h[1], "o-p2", "llama3.2:3b,qwen3:8b")
        o3 = fleet.ollama(h[2], "o-p3", "llama3.2:3b,qwen3:8b")
        # theirs: h3 = router, h4 = N1 (serves), h5, h6
        t1 = fleet.ollama(h[4], "o-n1", f"{EMBED_MODEL},llama3.2:3b")
        t2 = fleet.ollama(h[5], "o-n2", "llama3.2:3b,qwen3:8b")
        t3 = fleet.ollama(h[6], "o-n3", "llama3.2:3b,qwen3:8b")
        for url in (o1, o2, o3, t1, t2, t3):
            wait_http(url + "/api/version", 30)
        p1 = our_peer(fleet, mesh, h[0], "p1", mflux=True, ms=FAST, ollama_url=o1)
        p2 = our_peer(fleet, mesh, h[1], "p2", mflux=False, ms=FAST, ollama_url=o2)
        p3 = our_peer(fleet, mesh, h[2], "p3", mflux=False, ms=FAST, ollama_url=o3)
        router = their_router(fleet, h[3], venv)
        wait_http(router + "/api/version", 60)
        their_node(fleet, h[4], "n1", venv, router, t1, mflux=True, ms=FAST)
        their_node(fleet, h[5], "n2", venv, router, t2, mflux=False, ms=FAST)
        their_node(fleet, h[6], "n3", venv, router, t3, mflux=False, ms=FAST)
        for p in (p1, p2, p3):
            p.wait_ready(60)
        wait_ours([p1, p2, p3], image_on=1, embed_holder="p1")
        wait_router(router, 1, "n1")
        n1_image = f"http://{h[4].address}:11436"
        wait_http(n1_image + "/docs", 30)
        log("  all up; measuring")
        embed_targets = {"Ollama direct (theirs, N1)": t1, "ollama-herd: router -> N1": router,
                         "Ollama direct (ours, P1)": o1, "herd-mesh: P1 (own peer)": p1.url,
                         "herd-mesh: P2 -> P1": p2.url}  # fmt: skip
        png_targets = {"N1's image server direct": n1_image, "ollama-herd: router -> N1": router,
                       "herd-mesh: P1 direct": p1.url, "herd-mesh: P2 -> P1": p2.url}  # fmt: skip
        embed = interleave(embed_targets, "/api/embed", EMBED, rounds, warmup=10)
        png = interleave(png_targets, "/api/generate-image", PNG, png_rounds, warmup=2)
        mesh.close()
    return {"embed": embed, "png": png}


def interleave(targets: dict[str, str], path: str, body: dict[str, Any], rounds: int, warmup: int
               ) -> dict[str, dict[str, Any]]:  # fmt: skip
    clients = {k: Client(u) for k, u in targets.items()}
    out: dict[str, dict[str, Any]] = {k: {"ms": [], "node": collections.Counter(), "bytes": 0} for k in targets}
    rng = random.Random(15)
    try:
        for i in range(warmup + rounds):
            order = list(clients)
            rng.shuffle(order)
            for k in order:
                ms, data, headers = clients[k].post(path, {**body, "seed": 5000 + i} if "prompt" in body else body)
                if i >= warmup:
                    out[k]["ms"].append(ms)
                    out[k]["node"][headers.get("X-Fleet-Node", "-")] += 1
                    out[k]["bytes"] = len(data)
    finally:
        for c in clients.values():
            c.close()
    return out


# -- part 2: the burst -----------------------------------------------------------------------------------------------
def optimum(times: list[float], jobs: int) -> tuple[float, list[int]]:
    """The smallest makespan of `jobs` equal images on machines taking `times` s each (greedy is exact here)."""
    counts = [0] * len(times)
    for _ in range(jobs):
        i = min(range(len(times)), key=lambda k: (counts[k] + 1) * times[k])
        counts[i] += 1
    return max(c * t for c, t in zip(counts, times, strict=True)), counts


def fire(urls: list[str]) -> tuple[float, list[tuple[str, float, int]]]:
    """JOBS requests at once, request i to urls[i % len(urls)]; (makespan, [(node, seconds, status)])."""
    import httpx

    barrier = threading.Barrier(JOBS + 1)
    started = [0.0]

    def one(i: int) -> tuple[str, float, int]:
        with httpx.Client(timeout=600, trust_env=False) as client:
            barrier.wait()
            r = client.post(urls[i % len(urls)] + "/api/generate-image", json={**BURST, "seed": 9000 + i})
            return r.headers.get("X-Fleet-Node", "?"), time.monotonic() - started[0], r.status_code

    with ThreadPoolExecutor(JOBS) as pool:
        futures = [pool.submit(one, i) for i in range(JOBS)]
        time.sleep(0.5)  # every client connected-ready at the barrier
        started[0] = time.monotonic()
        barrier.wait()
        results = [f.result() for f in futures]
    return max(t for _, t, _ in results), results


def burst_ours(tmp: Path, bin_dir: Path, k: int) -> dict[str, Any]:
    with Lab(3) as lab:
        on_exit(lab.close)
        fleet = Fleet(lab, tmp / f"burst-ours-{k}", bin_dir)
        mesh = Mesh(tmp / f"burst-ours-mesh-{k}")
        on_exit(mesh.close)
        names = [f"mac{i + 1}" for i in range(3)]
        urls = [fleet.ollama(h, f"o-{n}", "llama3.2:3b") for h, n in zip(lab.hosts, names, strict=True)]
        for u in urls:
            wait_http(u + "/api/version", 30)
        peers = [our_peer(fleet, mesh, h, n, mflux=True, ms=ms_per_mp_step(s), ollama_url=u)
                 for h, n, s, u in zip(lab.hosts, names, SPEEDS_S, urls, strict=True)]  # fmt: skip
        for p in peers:
            p.wait_ready(60)
        wait_ours(peers, image_on=3, embed_holder=None)
        times = [fleet.calibrate(h, peers[i].env) for i, h in enumerate(lab.hosts)]
        warm = []
        for _ in range(2):  # each peer, idle, serves what is sent to it: it measures its own speed
            for p in peers:
                r = p.post("/api/generate-image", json={**BURST, "seed": 1}, timeout=120)
                warm.append(r.headers.get("X-Fleet-Node"))
        time.sleep(1.5)  # the new speeds reach every peer
        makespan, results = fire([p.url for p in peers])
        mesh.close()
    return {"makespan": makespan, "results": results, "times": times, "names": names, "warm": warm}


def burst_theirs(tmp: Path, venv: Path, bin_dir: Path, k: int) -> dict[str, Any]:
    with Lab(4) as lab:
        on_exit(lab.close)
        fleet = Fleet(lab, tmp / f"burst-theirs-{k}", bin_dir)
        router_host, *hosts = lab.hosts
        names = [f"mac{i + 1}" for i in range(3)]
        urls = [fleet.ollama(h, f"o-{n}", "llama3.2:3b") for h, n in zip(hosts, names, strict=True)]
        for u in urls:
            wait_http(u + "/api/version", 30)
        router = their_router(fleet, router_host, venv)
        wait_http(router + "/api/version", 60)
        envs = []
        for h, n, s, u in zip(hosts, names, SPEEDS_S, urls, strict=True):
            their_node(fleet, h, n, venv, router, u, mflux=True, ms=ms_per_mp_step(s))
            envs.append(fleet.standin_env(n, True, ms_per_mp_step(s)))
        wait_router(router, 3, None)
        times = [fleet.calibrate(h, env) for h, env in zip(hosts, envs, strict=True)]
        import httpx

        warm = []
        for _ in range(3):
            r = httpx.post(router + "/api/generate-image", json={**BURST, "seed": 1}, timeout=120)
            warm.append(r.headers.get("X-Fleet-Node"))
        time.sleep(1.5)
        makespan, results = fire([router])
    return {"makespan": makespan, "results": results, "times": times, "names": names, "warm": warm}


# -- report ----------------------------------------------------------------------------------------------------------
def report(hop: dict[str, Any], bursts: list[dict[str, dict[str, Any]]], args: argparse.Namespace) -> str:
    def rows_for(data: dict[str, dict[str, Any]]) -> list[tuple[Any, ...]]:
        return [(k, len(v["ms"]), fmt(p50(v["ms"])), fmt(p99(v["ms"])), fmt(max(v["ms"], default=float("nan"))),
                 ", ".join(f"{n}" for n in v["node"]) or "-") for k, v in data.items()]  # fmt: skip

    def added(data: dict[str, dict[str, Any]], base: str, via: str) -> float:
        return p50([b - a for a, b in zip(data[base]["ms"], data[via]["ms"], strict=True)])

    e, g = hop["embed"], hop["png"]
    theirs_e = added(e, "Ollama direct (theirs, N1)", "ollama-herd: router -> N1")
    ours_e = added(e, "Ollama direct (ours, P1)", "herd-mesh: P2 -> P1")
    ours_e1 = added(e, "Ollama direct (ours, P1)", "herd-mesh: P1 (own peer)")
    ours_hop = added(e, "herd-mesh: P1 (own peer)", "herd-mesh: P2 -> P1")
    theirs_g = added(g, "N1's image server direct", "ollama-herd: router -> N1")
    ours_g = added(g, "herd-mesh: P1 direct", "herd-mesh: P2 -> P1")
    png_mb = next(iter(g.values()))["bytes"] / 1e6
    text = (
        f"`{command_line()}` — {today()}; machine: {machine()}. ollama-herd {OLLAMA_HERD.split('==')[1]} in its own "
        "venv; both fleets in one lab of network namespaces (one bridge), measured in the same run.\n\n"
        f"Hop overhead, embedding (`/api/embed`, {EMBED_MODEL}), {len(e['Ollama direct (ours, P1)']['ms'])} rounds, "
        "every variant once per round in a random order; ms:\n\n"
        + table(["path", "n", "p50", "p99", "max", "served by"], rows_for(e))
        + f"\n\nPNG ({png_mb:.2f} MB, 1024x1024, generated at 0.5 ms per megapixel-step), "
        f"{len(g['herd-mesh: P1 direct']['ms'])} rounds; ms:\n\n"
        + table(["path", "n", "p50", "p99", "max", "served by"], rows_for(g))
        + "\n\nAdded by the mesh, p50 of paired per-round differences (ms); lower is better:\n\n"
        + table(
            ["what", "herd-mesh", "ollama-herd", "ours / theirs"],
            [
                (
                    "embedding: entry -> machine with the model -> its Ollama, over Ollama direct",
                    fmt(ours_e),
                    fmt(theirs_e),
                    fmt(ours_e / theirs_e if theirs_e else float("nan")),
                ),
                ("  of which: the serving peer itself (P1 over its Ollama)", fmt(ours_e1), "—", ""),
                ("  of which: the second peer (P2 -> P1 over P1)", fmt(ours_hop), "—", ""),
                (
                    "PNG: through the entry over straight to the machine",
                    fmt(ours_g),
                    fmt(theirs_g),
                    fmt(ours_g / theirs_g if theirs_g else float("nan")),
                ),
            ],
        )  # fmt: skip
        + "\n"
    )
    rows = []
    ratios: dict[str, list[float]] = {"ours": [], "theirs": [], "ours_abs": [], "theirs_abs": [], "opt": []}
    for k, pair in enumerate(bursts):
        for who in ("ours", "theirs"):
            b = pair[who]
            opt, split = optimum(b["times"], JOBS)
            counts = collections.Counter(n for n, _, _ in b["results"])
            failed = sum(1 for _, _, s in b["results"] if s != 200)
            ratios[who].append(b["makespan"] / opt)
            ratios[f"{who}_abs"].append(b["makespan"])
            ratios["opt"].append(opt)
            made = " / ".join(str(counts.get(n, 0)) for n in b["names"]) + (f", {failed} failed" if failed else "")
            warm = collections.Counter(b["warm"])
            rows.append((k + 1, "herd-mesh" if who == "ours" else "ollama-herd",
                         " / ".join(f"{t:.2f}" for t in b["times"]),
                         " / ".join(str(warm.get(n, 0)) for n in b["names"]),
                         made, " / ".join(str(c) for c in split), f"{b['makespan']:.2f}", f"{opt:.2f}",
                         f"{b['makespan'] / opt:.2f}"))  # fmt: skip
    text += (
        f"\nMixed-speed burst: {JOBS} images (512x512, 4 steps) at once on 3 machines at "
        f"{' / '.join(f'{s:g}' for s in SPEEDS_S)} s per image; herd-mesh's requests spread over its 3 peers, "
        "ollama-herd's all to its router; a fresh mesh each time. Machine times are measured in that mesh (the "
        "stand-in command run in the machine's namespace, process start included); the optimum is the best "
        "whole-image split for them.\n\n"
        + table(
            [
                "run",
                "fleet",
                "s per image (mac1/2/3)",
                "warm-up made (mac1/2/3)",
                "burst made (mac1/2/3)",
                "optimal split",
                "makespan s",
                "optimum s",
                "x optimum",
            ],
            rows,
        )  # fmt: skip
        + "\n\n"
    )
    summary = []
    for label, key in (("makespan / optimum", ""), ("makespan, s", "_abs")):
        o, t = ratios[f"ours{key}"], ratios[f"theirs{key}"]
        summary.append((label, f"{min(o):.2f} / {p50(o):.2f} / {max(o):.2f}", f"{min(t):.2f} / {p50(t):.2f} / "
                        f"{max(t):.2f}", f"{p50(o) / p50(t):.2f}"))  # fmt: skip
    summary.append(("optimum, s", f"{min(ratios['opt']):.2f} / {p50(ratios['opt']):.2f} / {max(ratios['opt']):.2f}",
                    "(same machines)", ""))  # fmt: skip
    text += (
        f"Over {len(bursts)} fresh meshes each (min / median / max):\n\n"
        + table(["burst", "herd-mesh", "ollama-herd", "ours / theirs (medians)"], summary)
        + "\n"
    )
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=40, help="rounds of the embedding hop measurement")
    parser.add_argument("--png-rounds", type=int, default=20)
    parser.add_argument("--bursts", type=int, default=3, help="fresh meshes of each for the burst")
    parser.add_argument("--write", type=Path, help="put the tables into this Markdown file (docs/benchmarks.md)")
    parser.add_argument("--rev", help="run herd_mesh/ and tests/ as committed at this git revision (e.g. HEAD)")
    args = parser.parse_args()
    reason = netns.available()
    if reason:
        sys.exit(f"the namespace lab cannot run here: {reason}")
    venv = ensure_venv()
    with tempfile.TemporaryDirectory(prefix="herd-vs-") as tmp_name:
        tmp = Path(tmp_name)
        bin_dir = install_standin(tmp / "bin")
        log("part 1: hop overhead")
        hop = hop_overhead(tmp, venv, bin_dir, args.rounds, args.png_rounds)
        bursts = []
        for k in range(args.bursts):
            log(f"part 2: burst {k + 1}/{args.bursts}")
            pair: dict[str, dict[str, Any]] = {}
            for who in ("ours", "theirs") if k % 2 == 0 else ("theirs", "ours"):
                pair[who] = burst_ours(tmp, bin_dir, k) if who == "ours" else burst_theirs(tmp, venv, bin_dir, k)
                b = pair[who]
                log(f"  {who}: makespan {b['makespan']:.2f} s, times {b['times']}, "
                    f"nodes {collections.Counter(n for n, _, _ in b['results'])}, warm-up {b['warm']}")  # fmt: skip
            bursts.append(pair)
    text = report(hop, bursts, args)
    print(text)
    if args.write:
        write_section(args.write, "vs-ollama-herd", text)


if __name__ == "__main__":
    main()
