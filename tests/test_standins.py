"""The test stand-ins for mflux and Ollama behave like the real tools where herd-mesh cares.

Everything else in the suite trusts these stand-ins, so their quirks (no-overwrite output names,
failure modes, one-job-per-GPU locking, Ollama's wire shapes) are pinned down here.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import struct
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from tests.standins.install import MFLUX_COMMANDS, OLLAMA_STANDIN, install_mflux_standin, path_with
from tests.standins.ollama_standin import build_app

# ---------------------------------------------------------------------------------------
# mflux stand-in
# ---------------------------------------------------------------------------------------

T = TypeVar("T")


@pytest.fixture(scope="module")
def mflux_bin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A bin dir holding the five mflux command names."""
    return install_mflux_standin(tmp_path_factory.mktemp("bin"))


def run_mflux(bin_dir: Path, cwd: Path, command: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run one stand-in command the way herd-mesh will: by name, found on PATH."""
    full_env = {**os.environ, "HERD_STANDIN_MS_PER_MP_STEP": "0", **env}
    full_env["PATH"] = path_with(bin_dir, full_env)
    # Bytes, decoded by hand: text=True would turn tqdm's "\r" refreshes into "\n".
    res = subprocess.run([command, *args], cwd=cwd, env=full_env, capture_output=True, timeout=20, check=False)
    return subprocess.CompletedProcess(res.args, res.returncode, res.stdout.decode(), res.stderr.decode())


def png_size(path: Path) -> tuple[int, int]:
    """Width and height from a PNG's IHDR, after checking signature and chunk CRC."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    length, kind = struct.unpack(">I4s", data[8:16])
    assert kind == b"IHDR" and length == 13
    ihdr = data[16:29]
    (crc,) = struct.unpack(">I", data[29:33])
    assert crc == zlib.crc32(b"IHDR" + ihdr) & 0xFFFFFFFF
    width, height, depth, colour = struct.unpack(">IIBB", ihdr[:10])
    assert (depth, colour) == (8, 2)  # 8-bit RGB
    return width, height


def png_pixels(path: Path) -> bytes:
    """Decompressed scanlines (filter byte + RGB per row) of a stand-in PNG."""
    data = path.read_bytes()
    pos, idat = 8, b""
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        if kind == b"IDAT":
            idat += data[pos + 8 : pos + 8 + length]
        pos += 12 + length
    return zlib.decompress(idat)


def test_all_command_names_installed(mflux_bin: Path) -> None:
    for name in MFLUX_COMMANDS:
        assert os.access(mflux_bin / name, os.X_OK)


def test_png_real_and_deterministic(mflux_bin: Path, tmp_path: Path) -> None:
    args = ("--prompt", "a red fox", "--seed", "42", "--width", "64", "--height", "48", "--steps", "2")
    first = run_mflux(mflux_bin, tmp_path, "mflux-generate-z-image-turbo", *args, "--output", "a.png")
    second = run_mflux(mflux_bin, tmp_path, "mflux-generate-z-image-turbo", *args, "--output", "b.png")
    other = run_mflux(
        mflux_bin, tmp_path, "mflux-generate-z-image-turbo", *args[:3], "43", *args[4:], "--output", "c.png"
    )
    assert first.returncode == second.returncode == other.returncode == 0, first.stderr
    assert png_size(tmp_path / "a.png") == (64, 48)
    assert len(png_pixels(tmp_path / "a.png")) == 48 * (1 + 64 * 3)
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()
    assert png_pixels(tmp_path / "a.png") != png_pixels(tmp_path / "c.png")
    # tqdm on a pipe: "\r" before each refresh (initial + one per step), one "\n" at the end.
    assert first.stderr.count("\r") == 3
    assert "100%|██████████| 2/2 [" in first.stderr
    assert "INFO: Image saved successfully at: a.png" in first.stderr
    assert "Peak MLX memory" in first.stdout


def test_no_overwrite_and_seed_names(mflux_bin: Path, tmp_path: Path) -> None:
    base = ("--prompt", "p", "--width", "32", "--height", "32", "--steps", "1")
    for _ in range(3):
        assert run_mflux(mflux_bin, tmp_path, "mflux-generate-qwen", *base, "--seed", "1").returncode == 0
    assert sorted(p.name for p in tmp_path.glob("*.png")) == ["image.png", "image_1.png", "image_2.png"]
    out = tmp_path / "multi"
    res = run_mflux(mflux_bin, tmp_path, "mflux-generate", "-m", "schnell", *base, "--seed", "7", "8", "--output",
                    str(out / "x.png"))  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert sorted(p.name for p in out.iterdir()) == ["x_seed_7.png", "x_seed_8.png"]


def test_dimensions_round_down_to_16(mflux_bin: Path, tmp_path: Path) -> None:
    res = run_mflux(mflux_bin, tmp_path, "mflux-generate-z-image", "--prompt", "p", "--width", "70", "--height", "40",
                    "--steps", "1")  # fmt: skip
    assert res.returncode == 0
    assert "multiples of 16" in res.stderr
    assert png_size(tmp_path / "image.png") == (64, 32)


@pytest.mark.parametrize(
    ("command", "args", "needle"),
    [
        ("mflux-generate", ("--prompt", "p"), "--model / -m must be provided"),
        ("mflux-generate-z-image-turbo", ("--prompt", "p", "--bogus"), "unrecognized arguments: --bogus"),
        ("mflux-generate-z-image-turbo", ("--prompt", "p", "-q", "7"), "invalid choice: 7"),
        ("mflux-generate-fibo", ("--prompt", "p", "--lora", "x.safetensors"), "unrecognized arguments"),
        ("mflux-generate-z-image-turbo", ("--prom", "p"), "unrecognized arguments"),  # allow_abbrev=False
    ],
)
def test_usage_errors(mflux_bin: Path, tmp_path: Path, command: str, args: tuple[str, ...], needle: str) -> None:
    res = run_mflux(mflux_bin, tmp_path, command, *args)
    assert res.returncode == 2
    assert res.stderr.startswith("usage: " + command)
    assert needle in res.stderr
    assert not list(tmp_path.iterdir())


def test_fail_error_and_no_image(mflux_bin: Path, tmp_path: Path) -> None:
    args = ("--prompt", "p", "--width", "32", "--height", "32", "--steps", "4")
    err = run_mflux(mflux_bin, tmp_path, "mflux-generate-z-image-turbo", *args, HERD_STANDIN_FAIL="error")
    assert err.returncode == 1
    assert err.stderr.strip().splitlines()[-1].startswith("RuntimeError: [METAL]")
    assert "Insufficient Memory" in err.stderr
    quiet = run_mflux(mflux_bin, tmp_path, "mflux-generate-z-image-turbo", *args, HERD_STANDIN_FAIL="no-image")
    assert quiet.returncode == 0  # mflux's quirk: interrupted runs exit 0 without an image
    assert "Stopping image generation at step 3/4" in quiet.stdout
    assert not list(tmp_path.glob("*.png"))


def read_log(path: Path) -> list[dict[str, Any]]:
    """Events the stand-in appended to HERD_STANDIN_LOG."""
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_fail_hang_dies_on_sigterm(mflux_bin: Path, tmp_path: Path) -> None:
    log = tmp_path / "log.jsonl"
    env = {**os.environ, "HERD_STANDIN_FAIL": "hang", "HERD_STANDIN_LOG": str(log)}
    env["PATH"] = path_with(mflux_bin, env)
    proc = subprocess.Popen(
        ["mflux-generate-z-image-turbo", "--prompt", "p", "--width", "32", "--height", "32"],
        cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 10
        while not read_log(log) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert proc.poll() is None
    finally:
        proc.terminate()
        assert proc.wait(timeout=5) == -signal.SIGTERM
    assert [e["event"] for e in read_log(log)] == ["start"]
    assert not list(tmp_path.glob("*.png"))


def test_lock_serialises_and_log(mflux_bin: Path, tmp_path: Path) -> None:
    log, lock = tmp_path / "log.jsonl", tmp_path / "gpu.lock"
    # 3 steps * 32*32/1e6 MP * 80000 ms = ~0.25 s per run
    env = {**os.environ, "HERD_STANDIN_LOG": str(log), "HERD_STANDIN_LOCK": str(lock),
           "HERD_STANDIN_MS_PER_MP_STEP": "80000"}  # fmt: skip
    env["PATH"] = path_with(mflux_bin, env)
    args = ["--prompt", "p", "--width", "32", "--height", "32", "--steps", "3", "--seed", "1"]
    started = time.monotonic()
    procs = [
        subprocess.Popen(
            ["mflux-generate-z-image-turbo", *args, "--output", f"{i}.png"],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        for i in range(2)
    ]
    assert [p.wait(timeout=20) for p in procs] == [0, 0]
    assert time.monotonic() - started >= 0.45
    events = read_log(log)
    assert [e["event"] for e in events] == ["start", "end", "start", "end"]
    assert events[0]["pid"] == events[1]["pid"] != events[2]["pid"] == events[3]["pid"]
    assert events[2]["time"] >= events[1]["time"]
    assert events[0]["command"] == "mflux-generate-z-image-turbo"
    assert events[0]["argv"][0] == "mflux-generate-z-image-turbo" and "--prompt" in events[0]["argv"]
    assert events[1]["status"] == "ok" and events[1]["outputs"][0].endswith(".png")


# ---------------------------------------------------------------------------------------
# Ollama stand-in, in-process over ASGI
# ---------------------------------------------------------------------------------------

MODELS = "llama3.2:3b,nomic-embed-text"


def asgi_call(app: Any, method: str, path: str, body: dict[str, Any] | None = None) -> httpx.Response:
    """One request against the ASGI app (whole body read)."""

    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://standin") as client:
            return await client.request(method, path, json=body)

    return asyncio.run(go())


@pytest.fixture
def app() -> Any:
    """A stand-in node with one model loaded and no streaming delay."""
    return build_app(MODELS, "llama3.2:3b", "mac-a", 0.0, None)


def test_ollama_listing_and_version(app: Any) -> None:
    assert asgi_call(app, "GET", "/api/version").json() == {"version": "0.12.0"}
    names = [m["name"] for m in asgi_call(app, "GET", "/api/tags").json()["models"]]
    assert names == ["llama3.2:3b", "nomic-embed-text:latest"]
    ps = asgi_call(app, "GET", "/api/ps").json()["models"]
    assert [m["name"] for m in ps] == ["llama3.2:3b"]
    assert {"expires_at", "size_vram", "size", "digest", "details", "context_length"} <= set(ps[0])
    models = asgi_call(app, "GET", "/v1/models").json()
    assert models["object"] == "list"
    assert set(models["data"][0]) == {"id", "object", "created", "owned_by"}


def test_ollama_chat_stream_ndjson(app: Any) -> None:
    res = asgi_call(
        app, "POST", "/api/chat", {"model": "llama3.2:3b", "messages": [{"role": "user", "content": "hi you"}]}
    )
    assert res.headers["content-type"].startswith("application/x-ndjson")
    lines = [json.loads(line) for line in res.text.splitlines()]
    assert len(lines) >= 4
    assert all(not line["done"] for line in lines[:-1]) and lines[-1]["done"] is True
    assert "".join(line["message"]["content"] for line in lines) == "[mac-a] echo: hi you"
    assert {"total_duration", "load_duration", "prompt_eval_count", "eval_count", "eval_duration"} <= set(lines[-1])
    gen = asgi_call(app, "POST", "/api/generate", {"model": "llama3.2:3b", "prompt": "yo", "stream": False}).json()
    assert gen["response"] == "[mac-a] echo: yo" and gen["done"] is True


def test_openai_chat_stream_sse(app: Any) -> None:
    body = {"model": "llama3.2:3b", "stream": True, "messages": [{"role": "user", "content": "hello"}]}
    res = asgi_call(app, "POST", "/v1/chat/completions", body)
    events = [line.removeprefix("data: ") for line in res.text.split("\n\n") if line]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert "".join(c["choices"][0]["delta"]["content"] for c in chunks) == "[mac-a] echo: hello"
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    plain = asgi_call(app, "POST", "/v1/chat/completions", {**body, "stream": False}).json()
    assert plain["object"] == "chat.completion" and plain["usage"]["total_tokens"] > 0


def test_embeddings_shapes_and_lazy_load(app: Any) -> None:
    res = asgi_call(app, "POST", "/api/embed", {"model": "nomic-embed-text", "input": ["a", "b", "c"]}).json()
    assert len(res["embeddings"]) == 3 and all(len(v) == 8 for v in res["embeddings"])
    single = asgi_call(app, "POST", "/api/embed", {"model": "nomic-embed-text", "input": "a"}).json()
    assert single["embeddings"] == res["embeddings"][:1]  # deterministic
    legacy = asgi_call(app, "POST", "/api/embeddings", {"model": "nomic-embed-text", "prompt": "a"}).json()
    assert len(legacy["embedding"]) == 8
    oai = asgi_call(app, "POST", "/v1/embeddings", {"model": "nomic-embed-text", "input": ["a", "b"]}).json()
    assert [d["index"] for d in oai["data"]] == [0, 1] and len(oai["data"][0]["embedding"]) == 8
    loaded = [m["name"] for m in asgi_call(app, "GET", "/api/ps").json()["models"]]
    assert sorted(loaded) == ["llama3.2:3b", "nomic-embed-text:latest"]


def test_unknown_model_and_fail_status(app: Any) -> None:
    res = asgi_call(app, "POST", "/api/chat", {"model": "x", "messages": [{"role": "user", "content": "hi"}]})
    assert res.status_code == 404
    assert res.json() == {"error": 'model "x" not found, try pulling it first'}
    oai = asgi_call(
        app, "POST", "/v1/chat/completions", {"model": "x", "messages": [{"role": "user", "content": "h"}]}
    )
    assert oai.status_code == 404 and "not found" in oai.json()["error"]["message"]
    failing = build_app(MODELS, "", "mac-b", 0.0, 503)
    down = asgi_call(failing, "POST", "/api/embed", {"model": "nomic-embed-text", "input": "a"})
    assert down.status_code == 503 and "error" in down.json()
    assert asgi_call(failing, "GET", "/api/tags").status_code == 200
    failing.state.standin.fail_status = None  # recoverable at runtime
    assert asgi_call(failing, "POST", "/api/embed", {"model": "nomic-embed-text", "input": "a"}).status_code == 200


# ---------------------------------------------------------------------------------------
# Ollama stand-in as a real process, driven by the official clients
# ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ollama_url() -> Iterator[str]:
    """Start the stand-in CLI on a free port and yield its base URL."""
    cmd = [sys.executable, str(OLLAMA_STANDIN), "--port", "0", "--models", MODELS, "--loaded", "llama3.2:3b",
           "--node", "mac-cli", "--chunk-delay", "0.01"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert proc.stdout is not None
    try:
        line = ""
        timer = threading.Timer(15, proc.kill)  # never hang the suite on a broken start
        timer.start()
        try:
            line = proc.stdout.readline()
        finally:
            timer.cancel()
        assert line.startswith("OLLAMA_STANDIN_LISTENING "), line
        url = line.split()[1]
        deadline = time.monotonic() + 10
        while True:
            try:
                if httpx.get(url + "/api/version", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        proc.stdout.close()


def test_official_ollama_client(ollama_url: str, closing: Callable[[T], T]) -> None:
    ollama = pytest.importorskip("ollama")
    client = closing(ollama.Client(host=ollama_url))
    assert [m.model for m in client.list().models] == ["llama3.2:3b", "nomic-embed-text:latest"]
    assert client.ps().models[0].expires_at is not None
    pieces = list(client.chat(model="llama3.2:3b", messages=[{"role": "user", "content": "hey"}], stream=True))
    assert len(pieces) >= 3 and pieces[-1].done
    assert "".join(p.message.content or "" for p in pieces) == "[mac-cli] echo: hey"
    assert len(client.embed(model="nomic-embed-text", input=["a", "b"]).embeddings) == 2
    with pytest.raises(ollama.ResponseError) as err:
        client.chat(model="nope", messages=[{"role": "user", "content": "x"}])
    assert err.value.status_code == 404


def test_official_openai_client(ollama_url: str) -> None:
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(base_url=ollama_url + "/v1", api_key="ollama", max_retries=0)
    try:
        assert {m.id for m in client.models.list()} == {"llama3.2:3b", "nomic-embed-text:latest"}
        stream = client.chat.completions.create(
            model="llama3.2:3b", messages=[{"role": "user", "content": "hey"}], stream=True
        )
        text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
        assert text == "[mac-cli] echo: hey"
        done = client.chat.completions.create(model="llama3.2:3b", messages=[{"role": "user", "content": "x"}])
        assert done.choices[0].message.content == "[mac-cli] echo: x" and done.usage is not None
        assert len(client.embeddings.create(model="nomic-embed-text", input="abc").data[0].embedding) == 8
        with pytest.raises(openai.NotFoundError):
            client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "x"}])
    finally:
        client.close()
