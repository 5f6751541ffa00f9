"""The client examples in examples/ (a tagged batch over the fleet, a streaming chat), run as a user would:
no URL given, the mesh found over mDNS."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.client_fakes import FLEET, fleet

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def test_client_examples_run_against_a_live_mesh(tmp_path: Path, multicast: None) -> None:
    with fleet(tmp_path / "fleet") as (mesh, _):
        env = {k: v for k, v in os.environ.items() if not k.startswith(("HERD_", "OLLAMA_"))}
        env["HERD_MESH"] = mesh.name
        batch = subprocess.run([sys.executable, str(EXAMPLES / "client_batch.py"), "out"], cwd=tmp_path, env=env,
                               capture_output=True, text=True, timeout=120)  # fmt: skip
        assert batch.returncode == 0, batch.stdout + batch.stderr
        lines = batch.stdout.splitlines()
        assert len(lines) == 4 and all(" made on " in line for line in lines)
        assert {line.split(" made on ")[1].split()[0] for line in lines} <= set(FLEET)
        assert all((tmp_path / "out" / f"image-{i}.png").read_bytes().startswith(b"\x89PNG") for i in range(1, 5))
        tags = mesh.peers["beta"].get("/dashboard/api/stats", params={"kind": "image", "hours": 1}).json()["by_tag"]
        assert tags["batch-example"]["total"] == 4 and tags["client"]["succeeded"] == 4

        chat = subprocess.run([sys.executable, str(EXAMPLES / "client_chat_stream.py"), "llama3:8b", "hello", "mesh"],
                              cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)  # fmt: skip
        assert chat.returncode == 0, chat.stderr
        assert chat.stdout == "[alpha] echo: hello mesh\n[answered by alpha: stop]\n"

        missing = subprocess.run([sys.executable, str(EXAMPLES / "client_chat_stream.py"), "no-such-model"],
                                 cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)  # fmt: skip
        assert missing.returncode == 1 and missing.stderr.startswith("chat failed: ")
