"""`herd service install|uninstall|status`: keep a peer running, as a launchd user agent (macOS) or a systemd user
unit (Linux), started at login with the options given to `install`, restarted if it dies, logging to the data dir.

`ServiceManager` does the work; the commands it runs (`launchctl`, `systemctl --user`) go through an injectable
`run`, so tests write into a temporary HOME and never enable or start anything.
"""

from __future__ import annotations

import argparse
import os
import plistlib
import re
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from .. import config as config_mod
from ..errors import ConfigError
from . import serve
from ._common import error

LABEL = "com.herd-mesh.peer"  # launchd
UNIT = "herd-mesh.service"  # systemd
LOG_NAME = "herd.log"
CAPTURED_ENV = ("OLLAMA_HOST",)  # besides HERD_* (HERD_URL is the client's, not the peer's)
Kind = Literal["launchd", "systemd"]
Runner = Callable[[Sequence[str]], "subprocess.CompletedProcess[str]"]
_SYSTEMD_PLAIN = re.compile(r"^[A-Za-z0-9_@+=:,./-]+$")
# flag name in `serve.peer_flags` -> the option that sets it, where it is not `--` + the name with dashes
_OPTION = {"peers": "--peer", "no_mdns": "--no-mdns", "allow_hosts": "--allow-host", "cors_origins": "--cors-origin",
           "api_keys": "--api-key"}  # fmt: skip
_KEPT_OUT = ("mesh_key",)  # never on a command line (`ps` shows it to every user): kept in <data-dir>/mesh.key


def run_command(argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=60, check=False)


@dataclass(frozen=True)
class ServiceFile:
    kind: Kind
    path: Path
    text: str
    log: Path


@dataclass(frozen=True)
class ServiceStatus:
    kind: Kind
    path: Path
    installed: bool  # the file is there
    running: bool | None  # None: the service manager could not be asked
    detail: str


def peer_argv(flags: Mapping[str, Any]) -> list[str]:
    """`serve.peer_flags` -> the options that give them (`--data-dir` made absolute: a service has no cwd)."""
    argv: list[str] = []
    for name, value in flags.items():
        option = _OPTION.get(name, "--" + name.replace("_", "-"))
        if value is None or value == () or value is False or name in _KEPT_OUT:
            continue
        if value is True:
            argv.append(option)
        elif isinstance(value, tuple | list):
            for item in value:
                argv += [option, str(item)]
        else:
            if name == "data_dir":
                value = Path(value).expanduser().resolve()
            argv += [option, str(value)]
    return argv


def captured_env(env: Mapping[str, str]) -> dict[str, str]:
    """What the service keeps of this shell's environment: the peer's variables, and PATH (mflux, ollama)."""
    keep = {k: v for k, v in env.items() if (k.startswith("HERD_") and k != "HERD_URL") or k in CAPTURED_ENV}
    if env.get("PATH"):
        keep["PATH"] = env["PATH"]
    return dict(sorted(keep.items()))


def systemd_quote(word: str) -> str:
    """One word of an ExecStart= or Environment= line (systemd.syntax: quotes, `%` specifiers, `$` expansion)."""
    word = word.replace("%", "%%").replace("$", "$$")
    if _SYSTEMD_PLAIN.match(word):
        return word
    return '"' + word.replace("\\", "\\\\").replace('"', '\\"') + '"'


class ServiceManager:
    """The peer as a per-user service: render, install, uninstall, start, stop, status."""

    def __init__(
        self,
        *,
        home: Path | None = None,
        platform: str = sys.platform,
        run: Runner = run_command,
        uid: int | None = None,
    ) -> None:
        self.home = home if home is not None else Path.home()
        if platform == "darwin":
            self.kind: Kind = "launchd"
        elif platform.startswith("linux"):
            self.kind = "systemd"
        else:
            raise ConfigError(f"`herd service` knows macOS (launchd) and Linux (systemd), not {platform!r}")
        self._run = run
        self._uid = uid if uid is not None else os.getuid()

    @property
    def path(self) -> Path:
        if self.kind == "launchd":
            return self.home / "Library" / "LaunchAgents" / f"{LABEL}.plist"
        return self.home / ".config" / "systemd" / "user" / UNIT

    @property
    def installed(self) -> bool:
        return self.path.is_file()

    def render(
        self, peer_args: Sequence[str], *, data_dir: Path, env: Mapping[str, str], python: str = sys.executable
    ) -> ServiceFile:
        argv = [python, "-m", "herd_mesh", "serve", *peer_args]
        log = data_dir.expanduser().resolve() / LOG_NAME
        if self.kind == "launchd":
            plist = {
                "Label": LABEL,
                "ProgramArguments": argv,
                "RunAtLoad": True,
                "KeepAlive": {"SuccessfulExit": False},  # restart when it dies, not when it is stopped
                "ThrottleInterval": 10,
                "EnvironmentVariables": dict(env),
                "StandardOutPath": str(log),
                "StandardErrorPath": str(log),
            }
            return ServiceFile(self.kind, self.path, plistlib.dumps(plist).decode(), log)
        lines = [
            "[Unit]",
            "Description=herd-mesh peer: this machine's share of the AI fleet",
            "",
            "[Service]",
            "Type=simple",
            "ExecStart=" + " ".join(systemd_quote(a) for a in argv),
            *(f"Environment={systemd_quote(f'{k}={v}')}" for k, v in env.items()),
            "Restart=on-failure",
            "RestartSec=5",
            "TimeoutStopSec=70",  # the peer drains in-flight jobs for up to 60 s
            f"StandardOutput=append:{log}",
            f"StandardError=append:{log}",
            "",
            "[Install]",
            "WantedBy=default.target",
            "",
        ]
        return ServiceFile(self.kind, self.path, "\n".join(lines), log)

    # -- actions -------------------------------------------------------------------------------------------------
    def _call(self, *argv: str) -> subprocess.CompletedProcess[str]:
        try:
            return self._run(argv)
        except FileNotFoundError:
            return subprocess.CompletedProcess(list(argv), 127, "", f"{argv[0]} not found")

    def _target(self) -> str:
        return f"gui/{self._uid}/{LABEL}"

    def install(self, service: ServiceFile, *, start: bool = True) -> list[subprocess.CompletedProcess[str]]:
        """Write the file so the peer starts at every login; with `start`, also start it now. Returns what ran."""
        service.path.parent.mkdir(parents=True, exist_ok=True)
        service.log.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        service.path.write_text(service.text)
        if self.kind == "launchd":  # launchd loads every agent in ~/Library/LaunchAgents at login
            if not start:
                return []
            self._call("launchctl", "bootout", self._target())  # an older copy, if loaded; fails harmlessly if not
            return [self._call("launchctl", "bootstrap", f"gui/{self._uid}", str(service.path))]
        enable = ["systemctl", "--user", "enable", *(["--now"] if start else []), UNIT]
        return [self._call("systemctl", "--user", "daemon-reload"), self._call(*enable)]

    def uninstall(self) -> list[subprocess.CompletedProcess[str]]:
        """Stop it, stop it starting at login, and remove the file."""
        done = []
        if self.kind == "launchd":
            done.append(self._call("launchctl", "bootout", self._target()))
        else:
            done.append(self._call("systemctl", "--user", "disable", "--now", UNIT))
        self.path.unlink(missing_ok=True)
        if self.kind == "systemd":
            done.append(self._call("systemctl", "--user", "daemon-reload"))
        return done

    def start(self) -> subprocess.CompletedProcess[str]:
        if self.kind == "launchd":
            if self._call("launchctl", "print", self._target()).returncode != 0:
                return self._call("launchctl", "bootstrap", f"gui/{self._uid}", str(self.path))
            return self._call("launchctl", "kickstart", self._target())
        return self._call("systemctl", "--user", "start", UNIT)

    def stop(self) -> subprocess.CompletedProcess[str]:
        if self.kind == "launchd":
            return self._call("launchctl", "bootout", self._target())  # until the next start or login
        return self._call("systemctl", "--user", "stop", UNIT)

    def status(self) -> ServiceStatus:
        if not self.installed:
            return ServiceStatus(self.kind, self.path, False, False, "not installed")
        if self.kind == "launchd":
            answer = self._call("launchctl", "print", self._target())
            if answer.returncode != 0:
                return ServiceStatus(self.kind, self.path, True, False, "installed, not loaded (starts at login)")
            running = "state = running" in answer.stdout
            return ServiceStatus(self.kind, self.path, True, running, "running" if running else "loaded, not running")
        answer = self._call("systemctl", "--user", "is-active", UNIT)
        state = answer.stdout.strip() or answer.stderr.strip()
        if answer.returncode == 127:
            return ServiceStatus(self.kind, self.path, True, None, state)
        return ServiceStatus(self.kind, self.path, True, state == "active", state or "unknown")


# -- the command ------------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="herd service",
        description="Keep a herd peer running on this machine: a launchd user agent on macOS "
        "(~/Library/LaunchAgents), a systemd user unit on Linux (~/.config/systemd/user). It starts at login "
        "with the peer options given to `install`, restarts if it dies, and logs to <data-dir>/herd.log.",
    )
    actions = p.add_subparsers(dest="action", required=True, metavar="install|uninstall|status")
    install = actions.add_parser(
        "install",
        help="write the service and start it (peer options after it, e.g. --mesh studio)",
        description="Write the service file and start it. Any peer option (`herd --help`) given here is what the "
        "service starts the peer with; HERD_* variables and PATH set now are kept too.",
    )
    install.add_argument("--dry-run", action="store_true", help="print the file instead of writing it")
    install.add_argument("--no-start", action="store_true", help="start it at the next login, not now")
    serve.add_peer_options(install)
    uninstall = actions.add_parser("uninstall", help="stop the service and remove its file")
    uninstall.add_argument("--dry-run", action="store_true", help="say what would be removed")
    actions.add_parser("status", help="is it installed, is it running")
    return p


def _report(results: Sequence[subprocess.CompletedProcess[str]]) -> bool:
    ok = True
    for result in results:
        if result.returncode != 0:
            ok = False
            command = " ".join(str(a) for a in result.args)
            error(f"`{command}` failed: {(result.stderr or result.stdout).strip() or result.returncode}")
    return ok


def main(argv: Sequence[str], *, manager: ServiceManager | None = None, env: Mapping[str, str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    env = os.environ if env is None else env
    try:
        manager = manager or ServiceManager()
    except ConfigError as exc:
        error(str(exc))
        return 2
    if args.action == "status":
        state = manager.status()
        print(f"{state.kind} service {state.path}: {state.detail}")
        return 0 if state.installed else 1
    if args.action == "uninstall":
        if args.dry_run:
            print(f"would stop the service and remove {manager.path}" if manager.installed else "not installed")
            return 0
        if not manager.installed:
            print(f"not installed ({manager.path} does not exist)")
            return 0
        _report(manager.uninstall())
        print(f"removed {manager.path}; the peer no longer starts at login")
        return 0
    flags = serve.peer_flags(args)
    try:
        cfg = config_mod.resolve(flags, env)
    except ConfigError as exc:
        error(str(exc))
        return 2
    service = manager.render(peer_argv(flags), data_dir=cfg.data_dir, env=captured_env(env))
    if flags.get("mesh_key") and not args.dry_run:
        from .key import save_key

        save_key(cfg.key_file, str(flags["mesh_key"]))
        print(f"saved the mesh key in {cfg.key_file}, where the service reads it")
    if args.dry_run:
        print(f"# {service.path}", file=sys.stderr)
        print(service.text, end="" if service.text.endswith("\n") else "\n")
        return 0
    results = manager.install(service, start=not args.no_start)
    print(f"wrote {service.path}")
    if not _report(results):
        hint = "" if manager.kind == "launchd" else " (no user session bus? `loginctl enable-linger $USER`)"
        error(f"the file is written but the service did not start{hint}; run `herd` by hand meanwhile")
        return 1
    when = "at every login" if args.no_start else "now and at every login"
    print(f"the peer runs {when}; its log is {service.log}")
    return 0
