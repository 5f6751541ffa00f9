"""`herd menubar`: its controller (no GUI code) against live peers: what it shows, the mesh-wide image switch,
the dashboard, starting and stopping this machine's peer, launch at login through the service installer."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import httpx

from herd_mesh.cli import tray
from herd_mesh.cli.menubar import Glance, MenubarController
from herd_mesh.cli.service import ServiceManager
from tests.client_fakes import Recorder
from tests.harness import Mesh, next_address, wait_until


def test_it_shows_the_mesh_and_switches_image_generation_everywhere(mesh: Mesh, tmp_path: Path) -> None:
    a = mesh.add("alpha", ms_per_mp_step=600.0)  # 1024x1024 at 4 steps: ~2.5 s, long enough to be seen running
    b = mesh.add("bravo", ms_per_mp_step=600.0)
    mesh.wait_all_see_each_other()
    opened: list[str] = []
    service = ServiceManager(home=tmp_path, platform="linux", run=Recorder())
    controller = MenubarController(url=a.url, open_url=opened.append, service=service)
    try:
        glance = controller.refresh()
        assert glance.running and glance.node_id == "alpha" and glance.mesh == mesh.name
        assert (glance.peers_up, glance.peers_total, glance.jobs_mesh, glance.queue_here) == (2, 2, 0, 0)
        assert glance.image_generation is True and glance.launch_at_login is False
        assert glance.title == "herd 2/2" and "peers up: 2 of 2" in glance.lines()

        worker = threading.Thread(target=lambda: a.post("/api/generate-image", json={"model": "z-image-turbo",
                                                                                    "prompt": "busy"}))  # fmt: skip
        worker.start()
        busy = wait_until(lambda: (g := controller.refresh()).jobs_mesh and g, 10, what="a job to show")
        assert busy.title.endswith("1 busy") and "in the mesh" in busy.lines()[2]
        worker.join(30)

        assert controller.toggle_image_generation() is False
        wait_until(lambda: b.get("/dashboard/api/settings").json()["image_generation"] is False, 5,
                   what="bravo to switch image generation off")  # fmt: skip
        assert controller.refresh().image_generation is False
        assert controller.toggle_image_generation() is True

        assert controller.open_dashboard() == f"{a.url}/dashboard" and opened == [f"{a.url}/dashboard"]
        assert httpx.get(opened[0]).status_code == 200
    finally:
        controller.close()


def test_it_starts_and_stops_this_machines_peer_and_launches_at_login(mesh: Mesh, tmp_path: Path) -> None:
    host = next_address()
    data = tmp_path / "menubar-peer"
    args = ["--host", host, "--node-id", "menubar", "--mesh", mesh.name, "--data-dir", str(data)]
    run = Recorder()
    service = ServiceManager(home=tmp_path / "home", platform="linux", run=run)
    env = mesh.env(data, mflux=False, ms_per_mp_step=50.0, extra=None)

    def spawn(argv: list[str], log: object) -> subprocess.Popen[bytes]:
        return subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)  # type: ignore[arg-type]

    controller = MenubarController(url=f"http://{host}:11435", peer_args=args, service=service,
                                   log_path=data / "herd.log", spawn=spawn, env={"PATH": "/usr/bin"})  # fmt: skip
    try:
        off = controller.refresh()
        assert not off.running and off.title == "herd: off" and "not running" in off.lines()[0]
        assert controller.stop_peer().startswith("this peer was not started from here")

        assert "started a peer" in controller.start_peer()
        on = wait_until(lambda: (g := controller.refresh()).running and g, 15, what="the menubar's peer to answer")
        assert on.node_id == "menubar" and on.peers_total == 1
        assert controller.child is not None and controller.child.args[:4] == [sys.executable, "-m", "herd_mesh",
                                                                              "serve"]  # fmt: skip

        assert controller.set_launch_at_login(True) == "the peer starts at every login"  # running: not started twice
        assert service.installed and run.calls[-1] == ["systemctl", "--user", "enable", "herd-mesh.service"]
        assert "--node-id menubar" in service.path.read_text() and controller.refresh().launch_at_login

        assert controller.stop_peer() == "stopped the peer" and not controller.refresh().running
        assert controller.start_peer() == "started the herd service"  # the service is installed now: it starts it
        assert run.calls[-1] == ["systemctl", "--user", "start", "herd-mesh.service"]
        assert controller.set_launch_at_login(False) == "the peer no longer starts at login" and not service.installed
    finally:
        controller.close()


def test_without_a_desktop_it_says_why() -> None:
    reason = tray.unavailable(platform="linux", env={})
    assert reason is not None and ("DISPLAY" in reason or "'.[menubar]'" in reason)
    assert "rumps" in (tray.unavailable(platform="darwin", env={}) or "rumps")
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "HERD_PORT")}
    out = subprocess.run([sys.executable, "-m", "herd_mesh", "menubar", "--port", "1"], capture_output=True,
                         text=True, timeout=60, env=env)  # fmt: skip
    assert out.returncode == 1 and out.stderr.startswith("herd: herd menubar needs")
    once = subprocess.run([sys.executable, "-m", "herd_mesh", "menubar", "--once", "--port", "1"],
                          capture_output=True, text=True, timeout=60, env=env)  # fmt: skip
    assert once.returncode == 0 and once.stdout.startswith("herd: off")


def test_glance_words() -> None:
    busy = Glance(True, "studio", "home", 3, 4, 1, 2, 0, 5, False)
    assert busy.title == "herd 3/4 · 2 busy"
    assert busy.lines() == ["studio in mesh 'home'", "peers up: 3 of 4", "jobs running: 1 here, 2 in the mesh",
                            "queued here: 0 (mesh: 5)", "image generation: off"]  # fmt: skip
