"""The menu-bar GUIs, kept thin: rumps on macOS, pystray (with a Pillow-drawn icon) elsewhere. Every decision is
`MenubarController`'s; this module only draws its `Glance` and wires the items to its methods."""

from __future__ import annotations

import importlib.util
import os
import sys
import threading
import time
from typing import Any

from ..core.extras import install_hint
from .menubar import Glance, MenubarController

REFRESH_S = 2.0
EXTRA = install_hint("menubar")


def unavailable(platform: str = sys.platform, env: dict[str, str] | None = None) -> str | None:
    """Why no menu-bar item can be shown here, in words; None when it can."""
    env = dict(os.environ) if env is None else env
    if platform == "darwin":
        if importlib.util.find_spec("rumps") is None:
            return f"herd menubar needs rumps: {EXTRA}"
        return None
    if importlib.util.find_spec("pystray") is None or importlib.util.find_spec("PIL") is None:
        return f"herd menubar needs pystray and Pillow here: {EXTRA}"
    if not env.get("DISPLAY") and not env.get("WAYLAND_DISPLAY"):
        return (
            "herd menubar needs a desktop session for its tray icon, and this one has none (DISPLAY is not set). "
            "In a terminal, `herd menubar --once` or `herd status` show the same"
        )
    try:
        import pystray  # picks its backend (AppIndicator, GTK or X11) on import
    except Exception as exc:  # noqa: BLE001 - any backend failure is the reason to report
        return f"pystray cannot start a tray icon here: {type(exc).__name__}: {exc}"
    if pystray.Icon.__module__.endswith("_xorg") and not _x11_tray_present():
        return (
            f"the desktop on DISPLAY={env.get('DISPLAY')} has no system tray for the icon to dock in (no window "
            "owns _NET_SYSTEM_TRAY): start a panel with a tray (GNOME needs the AppIndicator extension; trayer "
            "or tint2 on a bare X server). In a terminal, `herd menubar --once` shows the same"
        )
    return None


def _x11_tray_present() -> bool:
    """Does an X11 system tray (the freedesktop.org tray protocol) run on this display?"""
    try:
        from Xlib import X, display

        screen = display.Display()
        try:
            atom = screen.intern_atom(f"_NET_SYSTEM_TRAY_S{screen.get_default_screen()}")
            return bool(screen.get_selection_owner(atom) != X.NONE)
        finally:
            screen.close()
    except Exception:  # noqa: BLE001 - no Xlib, or no display: pystray's own run will say what is wrong
        return True


def run(controller: MenubarController, *, exit_after: float | None = None) -> int:
    if sys.platform == "darwin":
        return _run_rumps(controller, exit_after)
    return _run_pystray(controller, exit_after)


def _icon(glance: Glance) -> Any:
    from PIL import Image, ImageDraw

    image = Image.new("RGBA", (64, 64), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    colour = (52, 168, 83, 255) if glance.running else (150, 150, 150, 255)
    draw.ellipse((6, 6, 58, 58), fill=colour)
    if glance.jobs_mesh:
        draw.ellipse((24, 24, 40, 40), fill=(255, 255, 255, 255))
    return image


def _run_pystray(controller: MenubarController, exit_after: float | None) -> int:
    import pystray

    state = {"glance": controller.refresh(), "note": ""}
    stop = threading.Event()

    def glance() -> Glance:
        return state["glance"]  # type: ignore[return-value]

    def line(i: int) -> Any:
        return lambda item: (glance().lines() + [""] * 6)[i]

    def act(method: Any) -> Any:
        def call(icon: Any, item: Any) -> None:
            state["note"] = str(method())
            state["glance"] = controller.refresh()
            icon.update_menu()

        return call

    menu = pystray.Menu(
        *(pystray.MenuItem(line(i), None, enabled=False, visible=lambda item, i=i: bool(line(i)(item)))
          for i in range(5)),
        pystray.Menu.SEPARATOR,
        pystray.MenuItem("Start peer", act(controller.start_peer), visible=lambda item: not glance().running),
        pystray.MenuItem("Stop peer", act(controller.stop_peer), visible=lambda item: glance().running),
        pystray.MenuItem("Open dashboard", act(controller.open_dashboard), default=True),
        pystray.MenuItem("Image generation (whole mesh)", act(controller.toggle_image_generation),
                         checked=lambda item: bool(glance().image_generation),
                         enabled=lambda item: glance().running),
        pystray.MenuItem("Launch at login", act(lambda: controller.set_launch_at_login(not glance().launch_at_login)),
                         checked=lambda item: glance().launch_at_login),
        pystray.Menu.SEPARATOR,
        pystray.MenuItem("Quit", lambda icon, item: icon.stop()),
    )  # fmt: skip
    icon = pystray.Icon("herd-mesh", _icon(glance()), glance().title, menu)

    def refresher(icon: Any) -> None:
        icon.visible = True
        started = time.monotonic()
        while not stop.wait(REFRESH_S if exit_after is None else min(REFRESH_S, exit_after)):
            state["glance"] = controller.refresh()
            icon.title = glance().title
            icon.icon = _icon(glance())
            icon.update_menu()
            if exit_after is not None and time.monotonic() - started >= exit_after:
                icon.stop()
                return

    try:
        icon.run(setup=refresher)
    finally:
        stop.set()
    return 0


def _run_rumps(controller: MenubarController, exit_after: float | None) -> int:  # pragma: no cover - macOS only
    import rumps

    lines = [rumps.MenuItem(f"line{i}") for i in range(5)]
    start = rumps.MenuItem("Start peer", callback=lambda _: _do(controller.start_peer))
    stop = rumps.MenuItem("Stop peer", callback=lambda _: _do(controller.stop_peer))
    dashboard = rumps.MenuItem("Open dashboard", callback=lambda _: controller.open_dashboard())
    image = rumps.MenuItem(
        "Image generation (whole mesh)", callback=lambda _: _do(controller.toggle_image_generation)
    )
    login = rumps.MenuItem(
        "Launch at login", callback=lambda item: _do(lambda: controller.set_launch_at_login(not item.state))
    )
    app = rumps.App("herd-mesh", title="herd", menu=[*lines, None, start, stop, dashboard, image, login])
    started = time.monotonic()

    def _do(action: Any) -> None:
        rumps.notification("herd-mesh", "", str(action()))
        update(None)

    def update(_: Any) -> None:
        glance = controller.refresh()
        app.title = glance.title
        texts = glance.lines() + [""] * 5
        for item, text in zip(lines, texts, strict=False):
            item.title = text
        image.state = bool(glance.image_generation)
        login.state = glance.launch_at_login
        if exit_after is not None and time.monotonic() - started >= exit_after:
            rumps.quit_application()

    rumps.Timer(update, REFRESH_S).start()
    app.run()
    return 0
