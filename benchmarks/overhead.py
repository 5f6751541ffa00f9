#!/usr/bin/env python3
"""What a peer in the path costs: small requests and a PNG, direct and through one and two peers, interleaved;
requests per second through a peer against a bare uvicorn app; optionally a py-spy profile of the relay.

    python benchmarks/overhead.py [--n 300] [--png-n 40] [--rps-seconds 5] [--profile] [--write docs/benchmarks.md]

Setup, all real processes on loopback (127.0.0.x, port 11435): the Ollama stand-in (tests/standins, it sets
TCP_NODELAY on accepted sockets as Go does), peer B whose Ollama it is and which has the mflux stand-in (fast:
0.5 ms per megapixel-step, PNGs padded to the 1.6 MB of a real 1024x1024 PNG), and peer A with neither (its
--ollama-url points at a closed port), which knows B as a static peer (--no-mdns on both). So a request to A
is forwarded to B, which runs it on its Ollama or its GPU.

Latency: one sequential client (http.client, keep-alive, TCP_NODELAY, request line, headers and body in one
send) per target. Every round sends each workload once to each variant, in a random order per round, so drift
hits every variant alike; "added" is the median of the per-round paired differences against the variant
before it (direct -> own peer -> second peer). Workloads: /api/embed, /v1/embeddings, a short non-streamed
/api/chat, and the time to the first body byte of a streamed /api/chat.

Throughput: wrk (Debian's `wrk`, a Lua script for the POST body) for --rps-seconds at 1, 8 and 32 connections,
/api/embed against: a bare uvicorn echo app (same uvicorn, h11 and asyncio as a peer: the ceiling), the Ollama
stand-in directly, peer B, and peer A. wrk runs on the same 2 cores as everything else.

Profile (--profile): py-spy (PyPI) samples peers A and B (main thread, --idle) while wrk sends /api/embed
through A at 8 connections; writes docs/benchmarks-profile-{a,b}.svg (flame graphs) and the top frames to
docs/benchmarks-profile.md.
"""

from __future__ import annotations

import argparse
import collections
import json
import random
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    PNG_BYTES_1024,
    ROOT,
    Client,
    command_line,
    fmt,
    free_port,
    install_standin,
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

from tests.harness import Mesh, OllamaStandin, Peer, wait_until  # noqa: E402

EMBED = {"model": "nomic-embed-text", "input": "why is the sky blue?"}
CHAT = {"model": "llama3.2:3b", "messages": [{"role": "user", "content": "Hello"}]}
WORKLOADS = {  # name -> (path, body, streamed)
    "embed /api/embed": ("/api/embed", EMBED, False),
    "embed /v1/embeddings": ("/v1/embeddings", EMBED, False),
    "chat, not streamed": ("/api/chat", {**CHAT, "stream": False}, False),
    "chat stream, first byte": ("/api/chat", {**CHAT, "stream": True}, True),
}
PNG_BODY = {"model": "z-image-turbo", "prompt": "benchmark", "width": 1024, "height": 1024, "steps": 4}
VARIANTS = ("direct", "own peer", "second peer")
CONCURRENCY = (1, 8, 32)


# -- the bare echo app (the ceiling) ----------------------------------------------------------------------------
async def echo_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    body = b""
    more = True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def serve_echo(host: str, port: int) -> None:
    import uvicorn

    uvicorn.run(echo_app, host=host, port=port, http="h11", loop="asyncio", log_level="warning", access_log=False)


def start_echo() -> tuple[str, subprocess.Popen[bytes]]:
    port = free_port()
    argv = [sys.executable, __file__, "--echo-server", "127.0.0.1", str(port)]
    proc = track(subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                break
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("the echo app did not start") from None
            time.sleep(0.05)
    return url, proc


# -- the mesh ------------------------------------------------------------------------------------------------------
def closed_port_url() -> str:
    return f"http://127.0.0.1:{free_port()}"  # nothing listens there: peer A has no Ollama


def start_mesh(tmp: Path, png_bytes: int) -> tuple[Mesh, OllamaStandin, Peer, Peer]:
    mesh = Mesh(tmp)
    on_exit(mesh.close)
    install_standin(mesh.bin_dir)
    standin = OllamaStandin("ollama-b", "nomic-embed-text,llama3.2:3b", "nomic-embed-text,llama3.2:3b", chunk_delay=0)
    on_exit(standin.stop)
    env = {"HERD_BENCH_PNG_BYTES": str(png_bytes)}
    b = mesh.add("b", ollama_url=standin.url, ms_per_mp_step=0.5, args=["--no-mdns"], env=env, wait=False)
    a = mesh.add("a", mflux=False, ollama_url=closed_port_url(), args=["--no-mdns", "--peer", b.url], wait=False)
    b.wait_ready(30)
    a.wait_ready(30)

    def routed() -> bool:
        got = {}
        for peer in (a, b):
            r = peer.post("/api/embed", json=EMBED, timeout=10)
            got[peer.node_id] = r.status_code == 200 and r.headers.get("X-Fleet-Node") == "b"
        r = a.post("/api/generate-image", json={**PNG_BODY, "width": 256, "height": 256}, timeout=60)
        return all(got.values()) and r.status_code == 200 and r.headers.get("X-Fleet-Node") == "b"

    wait_until(routed, 30, interval=0.5, what="A to route embeddings and images to B")
    return mesh, standin, a, b


# -- latency -------------------------------------------------------------------------------------------------------
def measure_latency(urls: dict[str, str], rounds: int, warmup: int) -> dict[str, dict[str, list[float]]]:
    clients = {v: Client(u) for v, u in urls.items()}
    out: dict[str, dict[str, list[float]]] = {w: {v: [] for v in VARIANTS} for w in WORKLOADS}
    rng = random.Random(15)
    try:
        for i in range(warmup + rounds):
            for name, (path, body, streamed) in WORKLOADS.items():
                order = list(VARIANTS)
                rng.shuffle(order)
                for variant in order:
                    ms, _, _ = clients[variant].post(path, body, first_byte=streamed)
                    if i >= warmup:
                        out[name][variant].append(ms)
            if i % 50 == 49:
                log(f"  latency: round {i + 1 - warmup}/{rounds}")
    finally:
        for c in clients.values():
            c.close()
    return out


def measure_png(a: Peer, b: Peer, rounds: int) -> tuple[dict[str, list[float]], int]:
    clients = {"direct to B": Client(b.url), "via A": Client(a.url)}
    out: dict[str, list[float]] = {k: [] for k in clients}
    size = 0
    rng = random.Random(16)
    try:
        for i in range(rounds + 2):
            order = list(clients)
            rng.shuffle(order)
            for variant in order:
                ms, data, headers = clients[variant].post("/api/generate-image", {**PNG_BODY, "seed": 1000 + i})
                assert headers.get("X-Fleet-Node") == "b", headers
                size = len(data)
                if i == 0 and size < 0.9 * PNG_BYTES_1024:
                    log(f"  warning: the PNG is {size} bytes; the stand-in's padding did not apply")
                if i >= 2:
                    out[variant].append(ms)
    finally:
        for c in clients.values():
            c.close()
    return out, size


def paired(xs: list[float], ys: list[float]) -> float:
    return p50([y - x for x, y in zip(xs, ys, strict=True)])


# -- throughput ----------------------------------------------------------------------------------------------------
LUA = """wrk.method = "POST"
wrk.body = '{body}'
wrk.headers["Content-Type"] = "application/json"
"""


def wrk(url: str, path: str, connections: int, seconds: float, script: Path) -> dict[str, float]:
    duration = f"-d{max(1, round(seconds))}s"
    argv = [
        "wrk",
        "-t1",
        f"-c{connections}",
        duration,
        "--latency",
        "--timeout",
        "10s",
        "-s",
        str(script),
        url + path,
    ]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60)
    out = done.stdout
    found = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if not found:
        raise RuntimeError(f"{' '.join(argv)}: {done.stderr or out}")
    rps = float(found.group(1))
    errors = sum(int(n) for n in re.findall(r"Non-2xx or 3xx responses: (\d+)", out))
    errors += sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))

    def ms(label: str) -> float:
        m = re.search(rf"^\s+{label}\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        if not m:
            return float("nan")
        return float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]

    return {"rps": rps, "p50": ms("50%"), "p99": ms("99%"), "errors": errors}


def measure_rps(targets: dict[str, str], seconds: float, tmp: Path) -> dict[str, dict[int, dict[str, float]]]:
    script = tmp / "post.lua"
    script.write_text(LUA.format(body=json.dumps(EMBED)))
    results: dict[str, dict[int, dict[str, float]]] = {t: {} for t in targets}
    for c in CONCURRENCY:  # interleaved: every target at one concurrency, then the next
        for name, url in targets.items():
            wrk(url, "/api/embed", c, 1, script)  # warm the connections and the code paths
            results[name][c] = r = wrk(url, "/api/embed", c, seconds, script)
            log(
                f"  rps {name} c={c}: {r['rps']:.0f}/s p50 {r['p50']:.2f} ms p99 {r['p99']:.2f} ms, "
                f"{r['errors']} errors"
            )
    return results


# -- profile -------------------------------------------------------------------------------------------------------
def is_idle(leaf: str) -> bool:
    """A thread waiting (epoll, a lock, a queue), not working."""
    func = leaf.split(" (", 1)[0].rsplit(".", 1)[-1]
    return func in ("select", "poll", "wait", "get", "acquire", "_wait_for_tstate_lock", "sleep", "_worker")


# Where a busy main-thread sample goes: the first rule that matches its stack (frames joined by ";") wins.
CATEGORIES = (
    ("records: `Writer.submit` (queue.put waking the writer thread, GIL hand-off)", r"Writer\.submit"),
    (
        "Ollama poll after each request (`OllamaService.refresh`: GET /api/tags + /api/ps)",
        r"OllamaService\.refresh|OllamaClient\.get_json",
    ),
    ("state document rebuild (`StateDocument.rebuild`/`fresh`, JSON key)", r"StateDocument\.(rebuild|fresh)"),
    ("routing decision (`MeshView.snapshot`, views, `rank`)", r"MeshView\.snapshot|herd_mesh/core/"),
    (
        "socket send syscalls (loopback: the receiver's TCP work included)",
        r"(_SelectorSocketTransport\.write|socket\.send|sock_sendall)[^;]*$",
    ),
    ("socket receive/accept/close", r"(_read_ready|recv|_real_close|_accept_connection|close)[^;]*$"),
    ("logging", r"\(logging/"),
    ("JSON encode/decode", r"\((json/|herd_mesh/core/image_request\.py)[^;]*$"),
    ("outgoing HTTP client (httpx, httpcore, anyio)", r"\((httpx|httpcore|anyio)/"),
    ("middleware (herd_mesh/web/middleware)", r"herd_mesh/web/middleware/[^;]*$"),
    ("herd_mesh request handling (routes, dispatch, relay)", r"herd_mesh/(web|dispatch)/[^;]*$"),
    ("ASGI framework (starlette)", r"\(starlette/[^;]*$"),
    ("incoming HTTP (uvicorn, h11)", r"\((uvicorn|h11)/[^;]*$"),
    ("event loop and tasks (asyncio, contextlib)", r"\((asyncio|contextlib)/[^;]*$"),
)


def profile(peers: dict[str, Peer], target: Peer, seconds: float, tmp: Path, docs: Path) -> dict[str, Any]:
    """py-spy on every peer while wrk loads `target`; raw stacks first (for the numbers), then the SVGs."""
    pyspy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    script = tmp / "post.lua"
    script.write_text(LUA.format(body=json.dumps(EMBED)))
    stats: dict[str, Any] = {}
    raw_dir = Path(tempfile.gettempdir()) / "herd-overhead-profile"  # kept for a closer look
    raw_dir.mkdir(exist_ok=True)
    for fmt_ in ("raw", "flamegraph"):
        spies = {}
        for name, peer in peers.items():
            out = raw_dir / f"profile-relay-{name}.raw" if fmt_ == "raw" else docs / f"benchmarks-profile-{name}.svg"
            argv = [pyspy, "record", "-p", str(peer.proc.pid), "-d", str(int(seconds)), "-r", "200", "-f", fmt_,
                    "-o", str(out), "--nonblocking"]  # fmt: skip
            if fmt_ == "raw":
                argv += ["--threads", "--idle"]
            spies[name] = (track(subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)), out)
        time.sleep(0.5)
        load = wrk(target.url, "/api/embed", 8, seconds - 1, script)
        for name, (proc, out) in spies.items():
            try:
                proc.wait(seconds + 30)
            except subprocess.TimeoutExpired:
                stop(proc)
            if fmt_ == "raw":
                stats[name] = analyse(out.read_text())
            stats[f"load_{fmt_}"] = load
    return stats


def _frame_name(frame: str) -> str:
    """'func (path/to/file.py:123)' -> 'func (file path relative to site-packages or the repo)'."""
    m = re.match(r"(.*) \((.*?)(?::\d+)?\)$", frame)
    if not m:
        return re.sub(r"[^\x20-\x7e]", "?", frame)
    func, path = m.groups()
    func = re.sub(r"[^\x20-\x7e]", "?", func)
    path = re.sub(r".*/site-packages/", "", path)
    path = re.sub(r".*/(herd_mesh/)", r"\1", path)
    path = re.sub(r".*/lib/python3\.\d+/", "", path)
    return f"{func} ({path})"


def analyse(raw: str) -> dict[str, Any]:
    """Main-thread samples: the busy share; per frame the inclusive and self share of the busy samples; and per
    herd_mesh function the samples where it is the deepest herd_mesh frame (library time below it counts)."""
    total = busy = 0
    inclusive: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    ours: collections.Counter[str] = collections.Counter()
    categories: collections.Counter[str] = collections.Counter()
    threads: collections.Counter[str] = collections.Counter()
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        frames = [_frame_name(f) for f in stack.split(";")[1:]]
        thread = re.sub(r"^thread \(\w+\):?\s*", "", stack.split(";", 1)[0]) or "?"
        if frames and not is_idle(frames[-1]):
            threads[thread] += count
        if "MainThread" not in stack.split(";", 1)[0]:
            continue
        total += count
        if not frames or is_idle(frames[-1]):
            continue
        busy += count
        for frame in set(frames):
            inclusive[frame] += count
        own[frames[-1]] += count
        joined = ";".join(frames)
        categories[next((c for c, rule in CATEGORIES if re.search(rule, joined)), "other")] += count
        mine = [f for f in frames if "(herd_mesh/" in f and "herd_mesh/cli.py" not in f and "__main__" not in f]
        if mine:
            ours[mine[-1]] += count
        else:
            lib = re.search(r"\(([^/)]+)", frames[-1])
            ours[f"(no herd_mesh frame: {lib.group(1).removesuffix('.py') if lib else '?'} ...)"] += count
    return {"total": total, "busy": busy, "inclusive": inclusive, "self": own, "ours": ours,
            "categories": categories, "threads": threads}  # fmt: skip


def profile_report(stats: dict[str, Any]) -> str:
    parts = []
    for name in ("a", "b"):
        s = stats[name]
        busy = max(s["busy"], 1)
        parts.append(
            f"### Peer {name.upper()} ({'entry: forwards to B' if name == 'a' else 'owner: proxies to its Ollama'})"
            f"\n\nMain thread busy in {s['busy']} of {s['total']} samples ({s['busy'] / max(s['total'], 1):.0%}); "
            "shares below are of the busy samples.\n"
        )
        rows = [(c, f"{n / busy:.1%}") for c, n in s["categories"].most_common()]
        parts.append("Where the time goes (each sample counted once, first matching rule):\n\n"
                     + table(["category", "share"], rows))  # fmt: skip
        rows = [(t, f"{n / max(s['total'], 1):.1%}") for t, n in s["threads"].most_common(8)]
        parts.append("Busy samples per thread, as a share of wall time:\n\n" + table(["thread", "busy"], rows))
        rows = [(f"`{f}`", f"{n / busy:.1%}") for f, n in s["ours"].most_common(30)]
        parts.append("By the deepest herd_mesh frame (its own time plus the library calls it made):\n\n"
                     + table(["herd_mesh frame", "share"], rows))  # fmt: skip
        rows = [(f"`{f}`", f"{n / busy:.1%}") for f, n in s["inclusive"].most_common(80) if n < 0.75 * busy][:40]
        parts.append("Inclusive (the frame or anything it called; the loop's own frames, above 75 %, left out):\n\n"
                     + table(["frame", "share"], rows))  # fmt: skip
        rows = [(f"`{f}`", f"{n / busy:.1%}") for f, n in s["self"].most_common(25)]
        parts.append("Self (the frame itself, at the top of the stack):\n\n" + table(["frame", "share"], rows))
    return "\n\n".join(parts)


# -- report --------------------------------------------------------------------------------------------------------
def report(lat: dict[str, dict[str, list[float]]], png: dict[str, list[float]], png_size: int,
           rps: dict[str, dict[int, dict[str, float]]] | None, args: argparse.Namespace) -> str:  # fmt: skip
    rows = []
    for name, by in lat.items():
        prev = None
        for variant in VARIANTS:
            xs = by[variant]
            added = fmt(paired(by[prev], xs)) if prev else ""
            rows.append((name if variant == "direct" else "", variant, len(xs), fmt(p50(xs)), fmt(p99(xs)), added))
            prev = variant
    small = table(["workload", "path", "n", "p50 ms", "p99 ms", "added p50 ms (paired)"], rows, "llrrrr")
    d, v = png["direct to B"], png["via A"]
    nan = float("nan")
    png_table = table(
        ["1024x1024 PNG", "n", "p50 ms", "p99 ms", "max ms", "added p50 ms (paired)"],
        [("direct to B (B generates it)", len(d), fmt(p50(d)), fmt(p99(d)), fmt(max(d, default=nan)), ""),
         ("via A (A forwards to B)", len(v), fmt(p50(v)), fmt(p99(v)), fmt(max(v, default=nan)), fmt(paired(d, v)))],
    )  # fmt: skip
    text = (
        f"`{command_line()}` — {today()}; machine: {machine()}.\n\n"
        "Setup: the Ollama stand-in; peer B (its Ollama, the mflux stand-in at 0.5 ms per megapixel-step); peer A "
        "(no Ollama, no mflux; B as a static peer). *direct* = the Ollama stand-in itself, *own peer* = B, "
        "*second peer* = A (A -> B -> Ollama). One keep-alive client with TCP_NODELAY per target, every variant "
        "once per round in a random order; *added* = median of the per-round differences to the row above.\n\n"
        f"{small}\n\n"
        f"PNG of {png_size / 1e6:.2f} MB (the stand-in's image padded to a real PNG's size), generated by B "
        f"either way, {len(d)} rounds:\n\n{png_table}\n"
    )
    if rps:
        rows = []
        for name, by_c in rps.items():
            rows.append((name, *(f"{by_c[c]['rps']:.0f} ({fmt(by_c[c]['p50'])} / {fmt(by_c[c]['p99'])})"
                                  + (f", {int(by_c[c]['errors'])} errors" if by_c[c]["errors"] else "")
                                  for c in CONCURRENCY)))  # fmt: skip
        text += (
            f"\nRequests per second, `/api/embed` with wrk for {args.rps_seconds:g} s per cell on the same 2 cores "
            "(cells: req/s (p50 / p99 ms)):\n\n"
            + table(["target", *(f"{c} connection{'s' if c > 1 else ''}" for c in CONCURRENCY)], rows)
            + "\n"
        )
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=300, help="rounds of small requests (each variant, each workload)")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--png-n", type=int, default=40, help="rounds of the PNG")
    parser.add_argument("--png-bytes", type=int, default=PNG_BYTES_1024)
    parser.add_argument("--rps-seconds", type=float, default=5.0, help="0 skips the throughput part")
    parser.add_argument("--profile", action="store_true", help="py-spy the peers under load (writes docs/)")
    parser.add_argument("--profile-seconds", type=float, default=12.0)
    parser.add_argument("--write", type=Path, help="put the tables into this Markdown file (docs/benchmarks.md)")
    parser.add_argument("--rev", help="run herd_mesh/ and tests/ as committed at this git revision (e.g. HEAD)")
    parser.add_argument("--echo-server", nargs=2, metavar=("HOST", "PORT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.echo_server:
        serve_echo(args.echo_server[0], int(args.echo_server[1]))
        return
    if args.rps_seconds and not shutil.which("wrk"):
        sys.exit("wrk is missing: apt-get install wrk (or --rps-seconds 0)")

    with tempfile.TemporaryDirectory(prefix="herd-overhead-") as tmp_name:
        tmp = Path(tmp_name)
        log("starting the Ollama stand-in, peer B and peer A")
        mesh, standin, a, b = start_mesh(tmp, args.png_bytes)
        try:
            log(f"latency: {args.n} rounds x {len(WORKLOADS)} workloads x {len(VARIANTS)} variants")
            lat = measure_latency({"direct": standin.url, "own peer": b.url, "second peer": a.url}, args.n,
                                  args.warmup)  # fmt: skip
            log(f"png: {args.png_n} rounds")
            png, png_size = measure_png(a, b, args.png_n)
            rps = None
            if args.rps_seconds:
                echo_url, echo = start_echo()
                rps = measure_rps({"bare uvicorn echo app (ceiling)": echo_url, "Ollama stand-in direct": standin.url,
                                   "through peer B (own peer)": b.url, "through A -> B (two peers)": a.url},
                                  args.rps_seconds, tmp)  # fmt: skip
                stop(echo)
            prof = None
            if args.profile:
                log(f"profile: py-spy on A and B for {args.profile_seconds:g} s, twice")
                prof = profile({"a": a, "b": b}, a, args.profile_seconds, tmp, ROOT / "docs")
            for peer in (a, b):
                log(f"peer {peer.node_id} log tail:\n{peer.log_tail(5)}")
        except BaseException:
            log(mesh.logs())
            raise
        finally:
            mesh.close()
            standin.stop()
    text = report(lat, png, png_size, rps, args)
    print(text)
    if prof:
        detail = (
            "# Profile of a relayed small request\n\n"
            f"Written by `{command_line()}` ({today()}; {machine()}). py-spy 200 Hz, `--idle --threads`, main thread "
            f"only, while wrk sent `/api/embed` to peer A at 8 connections for {args.profile_seconds:g} s "
            f"({prof['load_raw']['rps']:.0f} req/s during sampling); A forwards to B, B proxies to its Ollama. "
            "Flame graphs (a second window, same load): [A](benchmarks-profile-a.svg), "
            "[B](benchmarks-profile-b.svg).\n\n" + profile_report(prof) + "\n"
        )
        (ROOT / "docs" / "benchmarks-profile.md").write_text(detail)
        log("wrote docs/benchmarks-profile.md and docs/benchmarks-profile-{a,b}.svg")
    if args.write:
        write_section(args.write, "overhead", text)


if __name__ == "__main__":
    main()
