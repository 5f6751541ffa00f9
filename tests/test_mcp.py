"""`herd mcp`, as an agent meets it: the official MCP SDK's own client calls the tools (in-process, and over stdio
with the real `herd mcp` command) against a live mesh, and gets saved PNGs with the Mac that made them, the
models, the mesh, a transcript, and clear tool errors."""

from __future__ import annotations

import asyncio
import os
import struct
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mcp import Client, StdioServerParameters

from herd_mesh.cli.mcp_tools import build_server
from herd_mesh.client import AsyncClient
from tests.harness import Mesh, Peer, wait_until
from tests.test_transcribe import NO_STT, WAV, wait_stt

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory, multicast: None) -> Iterator[tuple[Peer, Peer]]:
    """alpha: no image engine and no Whisper; bravo: mflux (the stand-in) and Whisper tiny.en."""
    mesh = Mesh(tmp_path_factory.mktemp("mcp"))
    try:
        a = mesh.add("alpha", mflux=False, env=NO_STT, ms_per_mp_step=5)
        b = mesh.add("bravo", ms_per_mp_step=5)
        mesh.wait_all_see_each_other()
        wait_stt(a, "bravo")
        yield a, b
    except BaseException:
        print(mesh.logs())
        raise
    finally:
        mesh.close()


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data.startswith(PNG_SIGNATURE), data[:16]
    width, height = struct.unpack(">II", data[16:24])
    return width, height


async def call(url: str, tool: str, arguments: dict[str, Any] | None = None) -> Any:
    """One tool call through the SDK's in-process client; the result as the agent gets it."""
    async with AsyncClient(url) as herd, Client(build_server(herd)) as agent:
        return await agent.call_tool(tool, arguments or {})


def test_generate_image_saves_a_png_and_names_the_mac(pair: tuple[Peer, Peer], tmp_path: Path) -> None:
    a, _ = pair
    target = tmp_path / "art" / "lighthouse.png"
    result = asyncio.run(call(a.url, "generate_image", {"prompt": "a lighthouse", "path": str(target),
                                                        "width": 256, "height": 128, "seed": 7}))  # fmt: skip
    assert not result.is_error, result.content
    saved = result.structured_content
    assert saved["path"] == str(target) and png_size(target) == (256, 128)
    assert saved["node"] == "bravo" and saved["seed"] == 7 and saved["model"] == "z-image-turbo"
    assert saved["generation_ms"] > 0 and saved["seconds"] > 0
    anywhere = asyncio.run(call(a.url, "generate_image", {"prompt": "a fox", "width": 128, "height": 128}))
    loose = Path(anywhere.structured_content["path"])
    try:
        assert loose.is_file() and png_size(loose) == (128, 128) and isinstance(anywhere.structured_content["seed"],
                                                                                  int)  # fmt: skip
    finally:
        loose.unlink(missing_ok=True)
    into_folder = asyncio.run(call(a.url, "generate_image", {"prompt": "x", "path": str(tmp_path), "width": 64,
                                                             "height": 64}))  # fmt: skip
    assert Path(into_folder.structured_content["path"]).parent == tmp_path


def test_mistakes_come_back_as_tool_errors_with_the_mesh_words(pair: tuple[Peer, Peer], tmp_path: Path) -> None:
    a, _ = pair
    unknown = asyncio.run(call(a.url, "generate_image", {"prompt": "x", "model": "dall-e-9"}))
    assert unknown.is_error and "dall-e-9" in unknown.content[0].text and "z-image-turbo" in unknown.content[0].text
    too_big = asyncio.run(call(a.url, "generate_image", {"prompt": "x", "width": 99999}))
    assert too_big.is_error and "width" in too_big.content[0].text
    missing = asyncio.run(call(a.url, "transcribe", {"path": str(tmp_path / "nothing.wav")}))
    assert missing.is_error and "no audio file" in missing.content[0].text
    nobody = asyncio.run(call("http://127.0.0.1:9", "mesh_status"))
    assert nobody.is_error and "127.0.0.1:9" in nobody.content[0].text


def test_models_mesh_and_transcripts(pair: tuple[Peer, Peer]) -> None:
    a, _ = pair
    listed = asyncio.run(call(a.url, "list_image_models"))
    assert not listed.is_error, listed.content
    models = listed.structured_content["models"]
    turbo = next(m for m in models if m["name"] == "z-image-turbo")
    assert turbo["nodes"] == ["bravo"] and turbo["available"] is True
    status = asyncio.run(call(a.url, "mesh_status")).structured_content
    assert status["answered_by"] == "alpha" and {p["node"] for p in status["peers"]} == {"alpha", "bravo"}
    assert all(p["status"] == "up" and p["memory_total_gb"] for p in status["peers"])
    heard = asyncio.run(call(a.url, "transcribe", {"path": str(WAV), "language": "en"}))
    assert not heard.is_error, heard.content
    assert "quick brown fox" in heard.structured_content["text"].lower()
    assert heard.structured_content["node"] == "bravo"


def test_herd_mcp_over_stdio(pair: tuple[Peer, Peer], tmp_path: Path) -> None:
    """The command an agent's config runs: tools listed and called over stdin/stdout, logs kept off stdout."""
    a, _ = pair
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HERD_", "OLLAMA_"))}
    params = StdioServerParameters(command=sys.executable, args=["-m", "herd_mesh", "mcp", "--url", a.url,
                                                                 "--log-level", "info"], env=env)  # fmt: skip
    target = tmp_path / "stdio.png"

    async def session() -> tuple[set[str], Any, Any]:
        async with Client(params) as agent:
            tools = {t.name for t in (await agent.list_tools()).tools}
            status = await agent.call_tool("mesh_status", {})
            image = await agent.call_tool("generate_image", {"prompt": "a", "path": str(target), "width": 64,
                                                             "height": 64})  # fmt: skip
            return tools, status, image

    tools, status, image = asyncio.run(session())
    assert tools == {"generate_image", "list_image_models", "mesh_status", "transcribe"}
    assert status.structured_content["answered_by"] == "alpha"
    assert image.structured_content["node"] == "bravo" and png_size(target) == (64, 64)
    wait_until(lambda: target.exists(), 1, what="the PNG on disk")
