"""Shared by the issue-15 benchmarks (overhead.py, vs_ollama_herd.py, scale.py): statistics, the machine line,
writing a section of docs/benchmarks.md, the mflux stand-in with real-size PNGs, and process cleanup.

Not a benchmark itself. Every process a benchmark starts is registered here and killed on exit, on Ctrl-C and
on SIGTERM, so a failed run leaves nothing behind.
"""

from __future__ import annotations

import atexit
import contextlib
import datetime as dt
import http.client
import json
import math
import os
import platform
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
ORIG_CWD = Path.cwd()  # relative output paths are taken from here, even after --rev changes the folder


def _code_root() -> Path:
    """`--rev REV` on any benchmark's command line: run herd_mesh/ and tests/ as committed at REV (a `git archive`
    in a temporary folder), not the working tree, e.g. while someone is editing the package. The peers find it
    through PYTHONPATH and the working directory (`python -m herd_mesh` looks in the current folder first)."""
    if "--rev" not in sys.argv:
        return ROOT
    rev = sys.argv[sys.argv.index("--rev") + 1]
    dest = Path(tempfile.mkdtemp(prefix=f"herd-bench-{rev[:12]}-"))
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "herd_mesh", "tests", "pyproject.toml"],
                             capture_output=True, check=True).stdout  # fmt: skip
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    atexit.register(shutil.rmtree, dest, True)
    os.environ["PYTHONPATH"] = str(dest) + (
        os.pathsep + os.environ["PYTHONPATH"] if "PYTHONPATH" in os.environ else ""
    )
    os.chdir(dest)
    return dest


CODE = _code_root()  # where herd_mesh/ and tests/ come from
if str(CODE) not in sys.path:
    sys.path.insert(0, str(CODE))

from tests.standins.install import MFLUX_COMMANDS, MFLUX_STANDIN, install_mflux_standin  # noqa: E402

PNG_BYTES_1024 = 1_600_000  # a real 1024x1024 PNG from mflux (issue 15: 1.6 MB)


# -- statistics -------------------------------------------------------------------------------------------------
def quantile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated quantile (numpy's default); NaN for no values."""
    if not values:
        return math.nan
    s = sorted(values)
    pos = (len(s) - 1) * q
    lo, hi = math.floor(pos), math.ceil(pos)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def p50(values: Sequence[float]) -> float:
    return quantile(values, 0.5)


def p99(values: Sequence[float]) -> float:
    return quantile(values, 0.99)


def fmt(value: float, digits: int = 2) -> str:
    return "—" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


# -- the machine ---------------------------------------------------------------------------------------------------
def machine() -> str:
    """One line: CPU model and cores (lscpu), memory, kernel, Python, and the load when the run started."""
    model = platform.processor() or "?"
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        fields = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
        model = fields.get("Model name", model).strip()
        hyper = fields.get("Hypervisor vendor", "").strip()
        if hyper:
            model += f" ({hyper} VM)"
    mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    load = os.getloadavg()[0]
    return (
        f"{model}, {os.cpu_count()} cores, {mem_gb:.1f} GiB, Linux {platform.release()}, "
        f"Python {platform.python_version()}; load average {load:.2f} at the start (a shared box)"
    )


def today() -> str:
    return dt.datetime.now().strftime("%Y-%m-%d %H:%M")


def command_line() -> str:
    args = [a for a in sys.argv[1:]]
    return "python benchmarks/" + Path(sys.argv[0]).name + ("" if not args else " " + shlex.join(args))


# -- docs/benchmarks.md ----------------------------------------------------------------------------------------
def write_section(path: Path, name: str, text: str) -> None:
    """Replace the block between `<!-- bench:NAME -->` and `<!-- /bench:NAME -->` in `path`, or append it."""
    path = ORIG_CWD / path
    start, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    block = f"{start}\n{text.rstrip()}\n{end}"
    doc = path.read_text() if path.exists() else "# Benchmarks\n"
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.S)
    if pattern.search(doc):
        doc = pattern.sub(lambda _: block, doc)
    else:
        doc = doc.rstrip() + "\n\n" + block + "\n"
    path.write_text(doc)
    print(f"wrote section {name!r} of {path}", file=sys.stderr)


def table(header: Sequence[str], rows: Iterable[Sequence[Any]], align: str = "") -> str:
    """A Markdown table; `align` is one letter per column, l or r (default: first l, the rest r)."""
    header = list(header)
    align = align or "l" + "r" * (len(header) - 1)
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" if a == "l" else "--:" for a in align) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


# -- the mflux stand-in, with PNGs of a real PNG's size ----------------------------------------------------------
_PAD_WRAPPER = '''\
"""The mflux stand-in, whose PNGs carry a private ancillary chunk of random bytes so that they are as large as a
real 1024x1024 PNG (the stand-in's own gradient compresses to ~50 KB). Written by benchmarks/_common.py."""
import importlib.util, os, sys

spec = importlib.util.spec_from_file_location("mflux_standin", {standin!r})
mod = importlib.util.module_from_spec(spec)
sys.modules["mflux_standin"] = mod  # its dataclasses look the module up
spec.loader.exec_module(mod)
target = int(os.environ.get("HERD_BENCH_PNG_BYTES", "0"))


def padding(make):
    def padded(*args, **kwargs):
        png = make(*args, **kwargs)
        if target > len(png) + 12:  # once: a padded PNG is already as large as the target
            chunk = mod._png_chunk(b"bnCh", os.urandom(target - len(png) - 12))
            png = png[:-12] + chunk + png[-12:]  # before IEND
        return png

    return padded


for name in ("encode_png", "render_png"):  # whichever writes the file in this version of the stand-in
    if hasattr(mod, name):
        setattr(mod, name, padding(getattr(mod, name)))
sys.exit(mod.main())
'''


def install_standin(bin_dir: Path) -> Path:
    """mflux's command names in `bin_dir`, running the stand-in (env HERD_BENCH_PNG_BYTES pads its PNGs)."""
    install_mflux_standin(bin_dir)
    wrapper = bin_dir / "_padded_standin.py"
    wrapper.write_text(_PAD_WRAPPER.format(standin=str(MFLUX_STANDIN)))
    python = shlex.quote(sys.executable)
    for name in MFLUX_COMMANDS:
        (bin_dir / name).write_text(
            f"#!/bin/sh\nHERD_STANDIN_COMMAND={shlex.quote(name)}\nexport HERD_STANDIN_COMMAND\n"
            f'exec {python} {shlex.quote(str(wrapper))} "$@"\n'
        )
    return bin_dir


def ms_per_mp_step(seconds_per_image: float, width: int = 512, height: int = 512, steps: int = 4) -> float:
    """HERD_STANDIN_MS_PER_MP_STEP for a machine that makes one `width`x`height` image in `seconds_per_image`."""
    return seconds_per_image * 1000.0 / (width * height / 1e6 * steps)


# -- a sequential HTTP client (latency samples, not load) ------------------------------------------------------------
class Client:
    """One keep-alive connection; `post` returns (ms to the last byte or to the first body byte, body, headers)."""

    def __init__(self, url: str) -> None:
        host, port = url.removeprefix("http://").rstrip("/").split(":")
        self.host, self.port = host, int(port)
        self.conn = self._connect()

    def _connect(self) -> http.client.HTTPConnection:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=60)
        conn.connect()  # http.client sets TCP_NODELAY
        return conn

    def post(
        self, path: str, body: dict[str, Any], *, first_byte: bool = False, headers: dict[str, str] | None = None
    ) -> tuple[float, bytes, Any]:
        payload = json.dumps(body).encode()
        headers = {"Content-Type": "application/json", **(headers or {})}
        for attempt in (1, 2):
            try:
                t0 = time.perf_counter()
                self.conn.request("POST", path, payload, headers)
                resp = self.conn.getresponse()
                if first_byte:
                    head = resp.read1(65536)
                    elapsed = time.perf_counter() - t0
                    data = head + resp.read()
                else:
                    data = resp.read()
                    elapsed = time.perf_counter() - t0
                if resp.status != 200:
                    raise RuntimeError(f"{self.host}:{self.port}{path}: {resp.status} {data[:300]!r}")
                return elapsed * 1000.0, data, resp.headers
            except (http.client.HTTPException, ConnectionError):
                if attempt == 2:
                    raise
                self.conn.close()
                self.conn = self._connect()
        raise AssertionError("unreachable")

    def close(self) -> None:
        self.conn.close()


# -- processes -----------------------------------------------------------------------------------------------------
_procs: list[subprocess.Popen[bytes]] = []
_closers: list[Any] = []


def track(proc: subprocess.Popen[bytes]) -> subprocess.Popen[bytes]:
    """Kill `proc` (and its process group when it leads one) at exit."""
    _procs.append(proc)
    return proc


def on_exit(closer: Any) -> Any:
    """Call `closer()` at exit (newest first), even after an error; returns it."""
    _closers.append(closer)
    return closer


def stop(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


@atexit.register
def cleanup() -> None:
    while _closers:
        closer = _closers.pop()
        with contextlib.suppress(Exception):
            closer()
    for proc in _procs:
        with contextlib.suppress(Exception):
            stop(proc, 5)


def _on_signal(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)  # runs `finally` blocks and atexit


signal.signal(signal.SIGTERM, _on_signal)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def wait_http(url: str, timeout: float = 20.0, proc: subprocess.Popen[bytes] | None = None) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while True:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{url}: the process exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=1, trust_env=False).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url} did not answer within {timeout} s")
        time.sleep(0.05)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
