"""`herd service`: the launchd agent and systemd unit it writes, into a temporary HOME, with the service manager's
commands recorded instead of run (nothing is ever enabled or started here)."""

from __future__ import annotations

import os
import plistlib
import subprocess
import sys
from pathlib import Path

import pytest

from herd_mesh.cli import service
from herd_mesh.cli.service import ServiceManager, captured_env, peer_argv, systemd_quote
from herd_mesh.errors import ConfigError
from tests.client_fakes import Recorder

ENV = {"PATH": "/opt/homebrew/bin:/usr/bin", "HERD_MESH": "studio", "HERD_URL": "http://x:1", "OLLAMA_HOST": "o:1",
       "SECRET_TOKEN": "never copied"}  # fmt: skip


def test_the_systemd_unit_starts_the_peer_with_the_given_options(tmp_path: Path) -> None:
    run = Recorder()
    manager = ServiceManager(home=tmp_path, platform="linux", run=run)
    argv = peer_argv({"mesh": "studio", "peers": ("http://10.0.0.2:11435",), "no_mdns": True, "port": None,
                      "data_dir": "rel/data", "advertise": ()})  # fmt: skip
    assert argv[:4] == ["--mesh", "studio", "--peer", "http://10.0.0.2:11435"] and "--no-mdns" in argv
    assert Path(argv[argv.index("--data-dir") + 1]).is_absolute()
    unit = manager.render(argv, data_dir=tmp_path / "data", env=captured_env(ENV), python="/opt/herd/bin/python")
    assert unit.path == tmp_path / ".config" / "systemd" / "user" / "herd-mesh.service"
    lines = unit.text.splitlines()
    exec_start = next(line for line in lines if line.startswith("ExecStart="))
    assert exec_start.startswith("ExecStart=/opt/herd/bin/python -m herd_mesh serve --mesh studio --peer ")
    assert "Restart=on-failure" in lines and "WantedBy=default.target" in lines
    assert f"StandardOutput=append:{tmp_path / 'data' / 'herd.log'}" in lines
    assert "Environment=HERD_MESH=studio" in lines and "Environment=OLLAMA_HOST=o:1" in lines
    assert "HERD_URL" not in unit.text and "SECRET_TOKEN" not in unit.text

    assert manager.install(unit)[-1].returncode == 0
    assert unit.path.read_text() == unit.text and manager.installed
    assert run.calls == [["systemctl", "--user", "daemon-reload"],
                         ["systemctl", "--user", "enable", "--now", "herd-mesh.service"]]  # fmt: skip
    run.answers["systemctl --user is-active herd-mesh.service"] = (0, "active\n")
    state = manager.status()
    assert state.installed and state.running and state.detail == "active"
    manager.uninstall()
    assert not unit.path.exists() and ["systemctl", "--user", "disable", "--now", "herd-mesh.service"] in run.calls
    assert manager.status().detail == "not installed"


def test_the_launchd_agent_runs_at_load_keeps_alive_and_logs_to_the_data_dir(tmp_path: Path) -> None:
    run = Recorder({f"launchctl print gui/501/{service.LABEL}": (0, "state = running\n")})
    manager = ServiceManager(home=tmp_path, platform="darwin", run=run, uid=501)
    agent = manager.render(["--mesh", "studio"], data_dir=tmp_path / "d", env={"PATH": "/usr/bin"}, python="/py")
    assert agent.path == tmp_path / "Library" / "LaunchAgents" / "com.herd-mesh.peer.plist"
    plist = plistlib.loads(agent.text.encode())
    assert plist["Label"] == "com.herd-mesh.peer" and plist["RunAtLoad"] is True
    assert plist["KeepAlive"] == {"SuccessfulExit": False}
    assert plist["ProgramArguments"] == ["/py", "-m", "herd_mesh", "serve", "--mesh", "studio"]
    assert plist["StandardOutPath"] == plist["StandardErrorPath"] == str(tmp_path / "d" / "herd.log")
    assert plist["EnvironmentVariables"] == {"PATH": "/usr/bin"}
    manager.install(agent)
    assert run.calls[-1] == ["launchctl", "bootstrap", "gui/501", str(agent.path)]
    assert manager.status().running is True
    before = len(run.calls)
    assert manager.install(agent, start=False) == [] and len(run.calls) == before  # launchd loads it at login
    manager.uninstall()
    assert run.calls[-1] == ["launchctl", "bootout", f"gui/501/{service.LABEL}"] and not agent.path.exists()


def test_systemd_words_are_quoted() -> None:
    assert systemd_quote("/usr/bin/python3") == "/usr/bin/python3"
    assert systemd_quote("a b") == '"a b"' and systemd_quote('say "hi"') == '"say \\"hi\\""'
    assert systemd_quote("50%") == '"50%%"' and systemd_quote("$HOME") == '"$$HOME"'


def test_other_platforms_are_told_plainly() -> None:
    with pytest.raises(ConfigError, match="launchd"):
        ServiceManager(platform="win32")


def test_dry_run_prints_the_unit_and_writes_nothing(tmp_path: Path) -> None:
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("HERD_")}, "HOME": str(tmp_path)}
    out = subprocess.run([sys.executable, "-m", "herd_mesh", "service", "install", "--dry-run", "--mesh", "studio"],
                         capture_output=True, text=True, timeout=60, env=env)  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "ExecStart=" in out.stdout and " -m herd_mesh serve --mesh studio" in out.stdout
    assert "herd-mesh.service" in out.stderr
    assert not (tmp_path / ".config").exists() and not (tmp_path / ".herd-mesh").exists()
    status = subprocess.run([sys.executable, "-m", "herd_mesh", "service", "status"], capture_output=True, text=True,
                            timeout=60, env=env)  # fmt: skip
    assert status.returncode == 1 and "not installed" in status.stdout


def test_install_and_uninstall_report_what_happened(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = Recorder({"systemctl --user enable --now herd-mesh.service": (1, "Failed to connect to bus")})
    manager = ServiceManager(home=tmp_path, platform="linux", run=run)
    env = {"HOME": str(tmp_path), "PATH": "/usr/bin"}
    code = service.main(["install", "--node-id", "studio", "--data-dir", str(tmp_path / "data")], manager=manager,
                        env=env)  # fmt: skip
    assert code == 1 and manager.installed
    err = capsys.readouterr().err
    assert "Failed to connect to bus" in err and "loginctl enable-linger" in err
    assert "--node-id studio" in manager.path.read_text()
    run.answers.clear()
    assert service.main(["install", "--no-start"], manager=manager, env=env) == 0
    assert run.calls[-1] == ["systemctl", "--user", "enable", "herd-mesh.service"]
    assert "at every login" in capsys.readouterr().out
    assert service.main(["uninstall", "--dry-run"], manager=manager, env=env) == 0 and manager.installed
    assert service.main(["uninstall"], manager=manager, env=env) == 0 and not manager.installed
