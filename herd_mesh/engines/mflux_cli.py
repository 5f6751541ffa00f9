"""mflux's command line: one `mflux-generate-*` process per image, in a fresh temp directory.

Its quirks, handled here: it never overwrites (writes image_1.png beside an existing image.png), it can exit 0
without an image when interrupted, and its progress bar goes to stderr. On timeout or cancellation the whole
process group is killed, so no mflux process outlives the request.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import re
import shutil
import signal
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

from ..core.catalogue import INSTALL_COMMAND, MODELS, ImageModel
from ..errors import EngineError
from .base import Download, ImageJob, ImageOutput, Progress
from .messages import tidy

logger = logging.getLogger(__name__)

SEARCH_DIRS = ("~/.local/bin", "/opt/homebrew/bin", "/usr/local/bin")  # uv tool, Homebrew, pip --user
RESCAN_INTERVAL_S = 30.0  # notice a fresh `uv tool install mflux` without a restart
DEFAULT_TIMEOUT_S = 900.0  # a cold flux-dev load plus 50 steps at 2048px on a small Mac stays under this
KILL_GRACE_S = 3.0
STDERR_TAIL_LINES = 12
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PROGRESS_RE = re.compile(r"(\d+)/(\d+)")
_STEP_BAR_RE = re.compile(r"^\d{1,3}%$")
_PEAK_RE = re.compile(r"Peak MLX memory:\s*([0-9.]+)\s*GB")


def search_path(env_path: str | None = None) -> str:
    parts = (env_path if env_path is not None else os.environ.get("PATH", "")).split(os.pathsep)
    parts += [os.path.expanduser(d) for d in SEARCH_DIRS]
    seen: list[str] = []
    for part in parts:
        if part and part not in seen:
            seen.append(part)
    return os.pathsep.join(seen)


def find_command(command: str, path: str | None = None) -> str | None:
    return shutil.which(command, path=path if path is not None else search_path())


def build_argv(executable: str, model: ImageModel, job: ImageJob, output: Path) -> list[str]:
    """The command for one job, settled (`image_request.settle`): steps always, guidance when the model takes
    it, the negative prompt when the model uses it, and no mflux metadata (herd-mesh writes its own)."""
    steps = job.steps if job.steps is not None else model.default_steps
    argv = [
        executable,
        *model.extra_args,  # `--model dev`, or `--model PATH --base-model NAME` for a local model
        f"--prompt={job.prompt}",  # one token: a prompt starting with "-" is not read as an option
        "--width", str(job.width),
        "--height", str(job.height),
        "--steps", str(steps),
        "--quantize", str(job.quantize),
        "--seed", str(job.seed),
        "--output", str(output),
        "--no-exif",
    ]  # fmt: skip
    if job.guidance is not None:
        argv += ["--guidance", repr(float(job.guidance))]
    if job.negative_prompt:
        argv.append(f"--negative-prompt={job.negative_prompt}")
    return argv


class MfluxCliEngine:
    name = "mflux-cli"
    resident = False  # a process per image: the load is part of every run, measured with it

    def __init__(
        self,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        path: str | None = None,
        pid_dir: Path | None = None,
        models: Mapping[str, ImageModel] | None = None,
    ) -> None:
        self.timeout_s = timeout_s
        self._models = dict(models) if models is not None else dict(MODELS)  # the catalogue + local models
        self._path = path
        self._pid_dir = pid_dir  # one file per running job, so a restarted peer can reap what a crash left
        if pid_dir is not None:
            reap_orphans(pid_dir)
        self._found: dict[str, str] = {}
        self._scanned_at = -RESCAN_INTERVAL_S

    def _scan(self) -> dict[str, str]:
        now = time.monotonic()
        if now - self._scanned_at >= RESCAN_INTERVAL_S:
            path = self._path if self._path is not None else search_path()
            found = {}
            for model in self._models.values():
                exe = find_command(model.command, path)
                if exe and (model.path is None or Path(model.path).is_dir()):
                    found[model.name] = exe
            if found != self._found:
                logger.info("mflux commands found for: %s", ", ".join(sorted(found)) or "none")
            self._found = found
            self._scanned_at = now
        return self._found

    def installed_models(self) -> set[str]:
        return set(self._scan())

    def loaded_models(self) -> set[str]:
        return set()  # a process per image: nothing stays loaded

    def set_keep_alive(self, seconds: float) -> None:
        """Nothing stays loaded between images here, so there is nothing to keep alive."""

    async def generate(
        self, job: ImageJob, progress: Progress | None = None, downloading: Download | None = None
    ) -> ImageOutput:
        model = self._models.get(job.model)
        executable = self._scan().get(job.model)
        if model is None or executable is None:
            raise EngineError(f"mflux command for {job.model!r} is not installed here ({INSTALL_COMMAND})")
        workdir = Path(tempfile.mkdtemp(prefix="herd-mflux-"))
        output = workdir / "image.png"
        argv = build_argv(executable, model, job, output)
        tail: collections.deque[str] = collections.deque(maxlen=STDERR_TAIL_LINES)
        started = time.monotonic()
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                cwd=workdir,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                start_new_session=True,  # its own process group: we kill mflux and anything it spawned
            )
        except OSError as exc:
            shutil.rmtree(workdir, ignore_errors=True)
            raise EngineError(f"cannot start {argv[0]}: {exc}") from exc
        logger.debug("started %s (pid %d) for job %s", Path(executable).name, proc.pid, job.job_id)
        pid_file = self._record_pid(proc.pid)
        stdout = _Stdout(downloading)
        try:
            readers = asyncio.gather(
                self._read_stderr(proc, tail, progress, downloading), stdout.read(proc.stdout, tail)
            )
            try:
                await asyncio.wait_for(asyncio.shield(readers), self.timeout_s)
                returncode = await asyncio.wait_for(proc.wait(), KILL_GRACE_S)
            except TimeoutError:
                await _kill_group(proc)
                readers.cancel()
                raise EngineError(
                    f"mflux took longer than {self.timeout_s:.0f} s and was stopped; last output: {_join(tail)}"
                ) from None
            except asyncio.CancelledError:
                await _kill_group(proc)
                readers.cancel()
                raise
            if returncode != 0:
                raise EngineError(f"mflux exited with code {returncode}: {_join(tail)}")
            image = _find_image(workdir, output)
            if image is None:
                raise EngineError(f"mflux finished without writing an image: {_join(tail)}")
            png = image.read_bytes()
            if not png.startswith(PNG_SIGNATURE):
                raise EngineError(f"mflux wrote {image.name}, but it is not a PNG")
            return ImageOutput(
                png=png, generation_ms=int((time.monotonic() - started) * 1000), peak_gb=stdout.peak_gb
            )
        finally:
            if proc.returncode is None:
                await _kill_group(proc)
            shutil.rmtree(workdir, ignore_errors=True)
            if pid_file is not None:
                pid_file.unlink(missing_ok=True)

    def _record_pid(self, pid: int) -> Path | None:
        if self._pid_dir is None:
            return None
        try:
            self._pid_dir.mkdir(parents=True, exist_ok=True)
            path = self._pid_dir / f"{pid}.pid"
            path.write_text(str(pid))
            return path
        except OSError as exc:
            logger.warning("cannot record mflux pid in %s: %s", self._pid_dir, exc)
            return None

    async def _read_stderr(
        self,
        proc: asyncio.subprocess.Process,
        tail: collections.deque[str],
        progress: Progress | None,
        downloading: Download | None,
    ) -> None:
        """tqdm redraws with carriage returns: split on both, keep the last lines and report the step count."""
        assert proc.stderr is not None
        buffer = ""
        while chunk := await proc.stderr.read(4096):
            buffer += chunk.decode("utf-8", "replace")
            *lines, buffer = re.split(r"[\r\n]", buffer)
            for line in lines:
                _note(line, tail, progress, downloading)
        _note(buffer, tail, progress, downloading)

    async def aclose(self) -> None:
        return None


def reap_orphans(pid_dir: Path) -> int:
    """Kill mflux process groups that a previous run of this peer left behind (it was SIGKILLed mid-job).

    A pid is only killed when its command line still names mflux, so a recycled pid is never touched.
    """
    import psutil

    killed = 0
    for path in pid_dir.glob("*.pid") if pid_dir.is_dir() else ():
        try:
            pid = int(path.read_text().strip())
            if any("mflux" in part for part in psutil.Process(pid).cmdline()):
                os.killpg(pid, signal.SIGKILL)
                killed += 1
                logger.warning("killed mflux process group %d left over from a previous run", pid)
        except (ValueError, OSError, psutil.Error):
            pass
        path.unlink(missing_ok=True)
    return killed


class _Stdout:
    """mflux's stdout: download notices, interruptions, and `Peak MLX memory: X GB` at the end."""

    def __init__(self, downloading: Download | None) -> None:
        self.peak_gb: float | None = None
        self._downloading = downloading

    async def read(self, stream: asyncio.StreamReader | None, tail: collections.deque[str]) -> None:
        if stream is None:
            return
        while line := await stream.readline():
            text = line.decode("utf-8", "replace").strip()
            if match := _PEAK_RE.search(text):
                self.peak_gb = float(match.group(1))
            elif text.startswith("Downloading model from") and self._downloading is not None:
                self._downloading(0, 0)
            elif text and not text.startswith("Peak"):
                tail.append(text)  # "Downloading model from HuggingFace: ...", "Stopping image generation ..."


def _note(line: str, tail: collections.deque[str], progress: Progress | None, downloading: Download | None) -> None:
    """One line of stderr: mflux's own step bar (`  50%|####| 2/4 [...]`, no description) is progress; a
    download bar (`Fetching 12 files: 50%|...| 6/12`) is the weights arriving."""
    line = line.strip()
    if not line:
        return
    head, bar, rest = line.partition("|")
    match = _PROGRESS_RE.search(rest) if bar else None
    if match is not None and _STEP_BAR_RE.match(head.strip()):
        if progress is not None:
            progress(int(match.group(1)), int(match.group(2)))
    elif match is not None and "fetching" in head.lower() and downloading is not None:
        downloading(int(match.group(1)), int(match.group(2)))
    if not tail or tail[-1] != line:
        tail.append(line)


def _find_image(workdir: Path, expected: Path) -> Path | None:
    if expected.is_file():
        return expected
    candidates = sorted(workdir.glob("*.png"), key=lambda p: p.stat().st_mtime)  # image_1.png, *_seed_N.png
    return candidates[-1] if candidates else None


def _join(tail: collections.deque[str]) -> str:
    return tidy(tail)


async def _kill_group(proc: asyncio.subprocess.Process) -> None:
    """SIGTERM the process group, then SIGKILL what is left after a grace period."""
    for sig, wait in ((signal.SIGTERM, KILL_GRACE_S), (signal.SIGKILL, KILL_GRACE_S)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            await asyncio.wait_for(proc.wait(), wait)
            break
        except TimeoutError:
            continue
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # stragglers in the group that ignored SIGTERM
    except ProcessLookupError:
        pass
