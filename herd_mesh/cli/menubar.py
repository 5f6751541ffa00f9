"""`herd menubar`: the mesh at a glance in the menu bar (rumps on macOS, a pystray tray icon elsewhere).

`MenubarController` holds all the logic and no GUI code: what the menu shows (`Glance`) and what its items do
(start/stop the local peer or its service, open the dashboard, switch image generation for the whole mesh, launch
at login). The GUIs in `tray.py` only draw it; `herd menubar --once` prints it.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import webbrowser
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import httpx

from .. import config as config_mod
from ..client._common import peers as read_peers
from ..errors import ConfigError
from . import serve
from ._common import error
from .service import ServiceManager, captured_env, peer_argv

Spawn = Callable[[list[str], IO[bytes]], "subprocess.Popen[bytes]"]


@dataclass(frozen=True)
class Glance:
    """What the menu shows."""

    running: bool  # this machine's peer answers
    node_id: str | None = None
    mesh: str | None = None
    peers_up: int = 0
    peers_total: int = 0
    jobs_here: int = 0  # running on this machine: images, LLM calls, transcriptions
    jobs_mesh: int = 0  # running anywhere in the mesh
    queue_here: int = 0  # image jobs waiting on this machine
    queue_mesh: int = 0
    image_generation: bool | None = None  # the mesh-wide setting
    launch_at_login: bool = False
    problem: str | None = None  # why the numbers are missing

    @property
    def title(self) -> str:
        """The menu-bar text: short."""
        if not self.running:
            return "herd: off"
        busy = f" · {self.jobs_mesh} busy" if self.jobs_mesh else ""
        return f"herd {self.peers_up}/{self.peers_total}{busy}"

    def lines(self) -> list[str]:
        """The menu's read-only lines."""
        if not self.running:
            return [self.problem or "no peer runs on this machine"]
        image = {True: "on", False: "off", None: "?"}[self.image_generation]
        return [
            f"{self.node_id} in mesh {self.mesh!r}",
            f"peers up: {self.peers_up} of {self.peers_total}",
            f"jobs running: {self.jobs_here} here, {self.jobs_mesh} in the mesh",
            f"queued here: {self.queue_here} (mesh: {self.queue_mesh})",
            f"image generation: {image}",
        ]


class MenubarController:
    """The menu's logic, against this machine's peer at `url` (no GUI code: tested against a live peer)."""

    def __init__(
        self,
        *,
        url: str,
        peer_args: Sequence[str] = (),
        service: ServiceManager | None = None,
        log_path: Path | None = None,
        open_url: Callable[[str], Any] = webbrowser.open,
        spawn: Spawn | None = None,
        env: dict[str, str] | None = None,
        timeout: float = 2.0,
    ) -> None:
        self.url = url.rstrip("/")
        self.peer_args = list(peer_args)
        self.service = service
        self.log_path = log_path
        self._open_url = open_url
        self._spawn = spawn or (lambda argv, log: subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT))
        self._env = dict(os.environ) if env is None else env
        self._http = httpx.Client(timeout=timeout, trust_env=False)
        self.child: subprocess.Popen[bytes] | None = None  # a peer this controller started

    def close(self) -> None:
        """Stop the peer this controller started (a service's peer keeps running), and let go of connections."""
        if self.child is not None and self.child.poll() is None:
            self.child.terminate()
            try:
                self.child.wait(30)
            except subprocess.TimeoutExpired:
                self.child.kill()
                self.child.wait(10)
        self.child = None
        self._http.close()

    # -- what it shows ---------------------------------------------------------------------------------------------
    @property
    def launch_at_login(self) -> bool:
        return self.service is not None and self.service.installed

    def refresh(self) -> Glance:
        try:
            doc = self._http.get(self.url + "/mesh/peers").json()
            settings = self._http.get(self.url + "/dashboard/api/settings").json()
        except (httpx.HTTPError, ValueError) as exc:
            how = "starting" if self.child is not None and self.child.poll() is None else "not running"
            return Glance(False, launch_at_login=self.launch_at_login,
                          problem=f"this machine's peer is {how} ({self.url}: {type(exc).__name__})")  # fmt: skip
        peers = read_peers(doc) if isinstance(doc, dict) else []
        me = next((p for p in peers if p.is_self), None)
        up = [p for p in peers if p.status == "up"]
        image = settings.get("image_generation") if isinstance(settings, dict) else None
        return Glance(
            running=True,
            node_id=me.node_id if me else None,
            mesh=doc.get("mesh") if isinstance(doc, dict) else None,
            peers_up=len(up),
            peers_total=len(peers),
            jobs_here=me.jobs_running if me else 0,
            jobs_mesh=sum(p.jobs_running for p in up),
            queue_here=me.queue if me else 0,
            queue_mesh=sum(p.queue for p in up),
            image_generation=image if isinstance(image, bool) else None,
            launch_at_login=self.launch_at_login,
        )

    # -- what it does ----------------------------------------------------------------------------------------------
    def start_peer(self) -> str:
        """Start this machine's peer: through its service when installed, else as a child of the menu bar."""
        if self.service is not None and self.service.installed:
            result = self.service.start()
            if result.returncode != 0:
                return f"could not start the service: {(result.stderr or result.stdout).strip()}"
            return "started the herd service"
        if self.child is not None and self.child.poll() is None:
            return "the peer is already starting"
        argv = [sys.executable, "-m", "herd_mesh", "serve", *self.peer_args]
        log_path = self.log_path or Path(os.devnull)
        log_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        with log_path.open("ab") as log:
            self.child = self._spawn(argv, log)
        return f"started a peer (log: {log_path})"

    def stop_peer(self) -> str:
        if self.child is not None and self.child.poll() is None:
            self.child.terminate()
            try:
                self.child.wait(70)
            except subprocess.TimeoutExpired:
                self.child.kill()
            self.child = None
            return "stopped the peer"
        if self.service is not None and self.service.installed:
            result = self.service.stop()
            if result.returncode != 0:
                return f"could not stop the service: {(result.stderr or result.stdout).strip()}"
            return "stopped the herd service (it starts again at login)"
        return "this peer was not started from here: stop it where it runs (Ctrl-C in its terminal)"

    def dashboard_url(self) -> str:
        return self.url + "/dashboard"

    def open_dashboard(self) -> str:
        url = self.dashboard_url()
        self._open_url(url)
        return url

    def toggle_image_generation(self) -> bool:
        """Switch image generation for the whole mesh; returns the new value."""
        current = self._http.get(self.url + "/dashboard/api/settings").json().get("image_generation")
        response = self._http.post(self.url + "/dashboard/api/settings", json={"image_generation": not current})
        response.raise_for_status()
        return bool(response.json().get("image_generation"))

    def set_launch_at_login(self, enabled: bool) -> str:
        if self.service is None:
            return "launch at login needs macOS (launchd) or Linux (systemd)"
        if not enabled:
            if self.service.installed:
                self.service.uninstall()
            return "the peer no longer starts at login"
        data_dir = self.log_path.parent if self.log_path else Path("~/.herd-mesh").expanduser()
        service = self.service.render(self.peer_args, data_dir=data_dir, env=captured_env(self._env))
        running = self.refresh().running
        results = self.service.install(service, start=not running)  # a running peer holds the port: next login
        failed = [r for r in results if r.returncode != 0]
        if failed:
            return f"wrote {service.path}, but: {(failed[0].stderr or failed[0].stdout).strip()}"
        return "the peer starts at every login" + ("" if running else ", and now")


# -- the command ----------------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="herd menubar",
        description="A menu-bar item (macOS, rumps) or tray icon (elsewhere, pystray) showing the mesh at a glance, "
        "with start/stop, the dashboard, the image-generation switch and launch at login. Needs the [menubar] "
        "extra. Peer options given here are the ones its Start item and launch-at-login use.",
    )
    serve.add_peer_options(p)
    p.add_argument("--once", action="store_true", help="print what the menu would show, and exit")
    p.add_argument("--exit-after", type=float, help=argparse.SUPPRESS)  # smoke tests: show it, then quit
    return p


def controller_from(args: argparse.Namespace, env: dict[str, str]) -> MenubarController:
    flags = serve.peer_flags(args)
    cfg = config_mod.resolve(flags, env)
    host = "127.0.0.1" if cfg.host in ("0.0.0.0", "", "::") else cfg.host
    try:
        service: ServiceManager | None = ServiceManager()
    except ConfigError:
        service = None
    return MenubarController(url=f"http://{host}:{cfg.port}", peer_args=peer_argv(flags), service=service,
                             log_path=cfg.data_dir / "herd.log", env=env)  # fmt: skip


def main(argv: Sequence[str]) -> int:
    args = build_parser().parse_args(argv)
    try:
        controller = controller_from(args, dict(os.environ))
    except ConfigError as exc:
        error(str(exc))
        return 2
    try:
        if args.once:
            glance = controller.refresh()
            print(glance.title)
            for line in glance.lines():
                print(f"  {line}")
            return 0
        from . import tray

        reason = tray.unavailable()
        if reason is not None:
            error(reason)
            return 1
        return tray.run(controller, exit_after=args.exit_after)
    finally:
        controller.close()
