"""`herd doctor`: each check in plain words (with what it looks at stood in for), then the whole command against a
live mesh: the running peer, the other peer, clocks, multicast on the peer's own interface."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import httpx

from herd_mesh.cli import doctor
from herd_mesh.cli.doctor import Check, Seen
from herd_mesh.config import Config
from herd_mesh.core import catalogue
from tests.harness import PORT, Mesh, OllamaStandin, next_address


def config(**kwargs: object) -> Config:
    return Config(node_id="doc", data_dir=Path("/nonexistent"), **kwargs)  # type: ignore[arg-type]


def test_every_line_says_what_and_what_to_do() -> None:
    assert Check("warn", "no Ollama", "start it").line() == "warn: no Ollama — start it"
    assert Check("ok", "fine").line() == "ok: fine"
    assert doctor.check_python((3, 9, 6)).level == "fail" and "uv tool install" in doctor.check_python((3, 9, 6)).todo
    assert doctor.check_python((3, 11, 7)).level == "ok"


def test_mflux_and_its_weights() -> None:
    none, models = doctor.check_mflux(find=lambda command: None, apple=False)
    assert none.level == "warn" and "Apple Silicon" in none.todo and models == []
    on_mac, _ = doctor.check_mflux(find=lambda command: None, apple=True)
    assert "uv tool install mflux" in on_mac.todo
    some, models = doctor.check_mflux(find=lambda c: "/bin/" + c if c.endswith("turbo") else None, apple=True)
    assert some.level == "ok" and models == ["z-image-turbo"] and "z-image-turbo" in some.what
    assert doctor.check_weights([]) == []
    ready = doctor.check_weights(["z-image-turbo"], cached=lambda model: True)
    assert [c.level for c in ready] == ["ok"]
    missing = doctor.check_weights(["z-image-turbo"], cached=lambda model: False)
    assert missing[0].level == "warn" and "mflux-generate-z-image-turbo --prompt test" in missing[0].todo


def test_ollama_and_whisper() -> None:
    standin = OllamaStandin("doc", "llama3:8b")
    try:
        assert doctor.check_ollama(standin.url).what.startswith("Ollama 0.")
    finally:
        standin.stop()
    down = doctor.check_ollama(f"http://{next_address()}:11434")
    assert down.level == "warn" and "ollama serve" in down.todo
    assert "'.[stt]'" in doctor.check_whisper(None, choose=lambda configured: None).todo

    class Engine:
        name = "faster-whisper"

        def models(self) -> dict[str, int]:
            return {"tiny.en": 1}

    assert doctor.check_whisper(None, choose=lambda configured: Engine()).what == "Whisper engine faster-whisper " \
                                                                                  "with tiny.en"  # fmt: skip


def test_multicast_port_peers_and_clocks_explained() -> None:
    assert doctor.check_multicast(config(mdns=False, peers=("http://10.0.0.2:11435",))).level == "ok"
    assert doctor.check_multicast(config(mdns=False)).level == "warn"
    broken = doctor.check_multicast(config(), works=lambda host: False)
    assert broken.level == "fail" and "--peer" in broken.todo
    assert doctor.check_multicast(config(peers=("http://10.0.0.2:11435",)), works=lambda host: False).level == "warn"
    assert doctor.check_multicast(config(), works=lambda host: True).level == "ok"

    host = next_address()
    free, url = doctor.check_port(config(host=host))
    assert free.level == "ok" and "free" in free.what and url is None
    with socket.socket() as other:  # another program holds the port
        other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        other.bind((host, PORT))
        other.listen()
        taken, _ = doctor.check_port(config(host=host))
    assert taken.level == "fail" and "--port" in taken.todo

    seen = [Seen("a", "http://a", "up"), Seen("b", "http://b", "up"), Seen("c", "http://c", "down")]
    offsets = {"http://a": 0.4, "http://b": -42.0}
    skewed = doctor.check_clocks(seen, offset=offsets.get)
    assert skewed is not None and skewed.level == "warn" and "b -42 s" in skewed.what and "Date & Time" in skewed.todo
    agree = doctor.check_clocks(seen[:1], offset=offsets.get)
    assert agree is not None and agree.level == "ok"
    assert doctor.check_clocks([], offset=offsets.get) is None

    date = httpx.Response(200, json={}, headers={"Date": "Sun, 01 Jan 2023 00:00:00 GMT"})
    offset = doctor.clock_offset("http://x", get=lambda url: date)
    assert offset is not None and offset < -1e6  # that Date is years ago
    precise = doctor.clock_offset("http://x", get=lambda url: httpx.Response(200, json={"now": 0.0}))
    assert precise is not None and precise < -1e9


def test_doctor_on_a_machine_running_a_peer(mesh: Mesh) -> None:
    standin = OllamaStandin("alpha", "llama3:8b")
    try:
        alpha = mesh.add("alpha", ollama_url=standin.url)
        mesh.add("beta")
        mesh.wait_all_see_each_other()
        env = {**alpha.env, "PATH": alpha.env["PATH"] + os.pathsep + os.path.dirname(sys.executable)}
        out = subprocess.run([sys.executable, "-m", "herd_mesh", "doctor", "--host", alpha.host, "--mesh", mesh.name,
                              "--data-dir", str(alpha.data_dir), "--ollama-url", standin.url],
                             capture_output=True, text=True, timeout=60, env=env)  # fmt: skip
    finally:
        standin.stop()
    lines = out.stdout.splitlines()
    assert out.returncode == 0, out.stdout + out.stderr
    assert all(line.split(":", 1)[0] in ("ok", "warn") for line in lines), lines
    assert lines[0].startswith("ok: Python 3.")
    assert any(line.startswith("ok: mflux commands found for") for line in lines)
    assert any(line.startswith("ok: Ollama 0.") for line in lines)
    assert any(line.startswith("ok: multicast works") for line in lines)
    assert f"ok: port 11435 is in use by this machine's herd peer 'alpha' (mesh {mesh.name!r})" in out.stdout
    assert "1 other peer(s): beta (up)" in out.stdout
    assert any(line.startswith("ok: clocks agree with 1 peer") for line in lines)


def test_the_image_engine_and_local_models_are_reported(tmp_path: Path) -> None:
    resident = doctor.check_image_engine("/opt/mflux/bin/python", ["z-image-turbo"])
    assert resident is not None and resident.level == "ok" and "/opt/mflux/bin/python" in resident.what
    saved = tmp_path / "my-anima"
    saved.mkdir()
    models = {
        "my-anima": catalogue.local_model("my-anima", path=str(saved), base="anima-turbo"),
        "gone": catalogue.local_model("gone", path=str(tmp_path / "gone"), base="flux-dev"),
    }
    gone, present = doctor.check_local_models(models)
    assert (present.level, gone.level) == ("ok", "warn")
    assert "is not a folder" in gone.what and gone.todo
