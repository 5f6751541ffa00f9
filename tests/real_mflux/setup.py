"""Install the real mflux (CPU-only MLX, no torch) and build a random-weight Anima model, for tests.

Stdlib only at import time. Everything lands under :func:`cache_root` and is reused across runs:

- ``<root>/venv-<MFLUX_VERSION>/``: a dedicated venv with ``mlx[cpu]``, ``mflux --no-deps`` and exactly
  mflux's other runtime requirements (:data:`MFLUX_REQUIREMENTS`), never torch, nvidia-* or ``mlx[cuda]``.
- ``<root>/anima-turbo-random-<MFLUX_VERSION>-seed<ANIMA_SEED>/``: Anima weights in mflux's saved layout
  (what ``mflux-save`` writes), random but deterministic, with small stand-in tokenizers. Load it with
  ``mflux-generate-anima --model DIR --base-model anima-turbo ...`` or
  ``Anima(quantize=8, model_path=DIR, model_config=ModelConfig.anima_turbo())``.

A directory counts only when its marker file (``.herd-complete.json``) exists and matches the versions; an
interrupted install or build leaves no marker and is redone from scratch.

Run ``python -m tests.real_mflux.setup`` from the repository root to do everything and print the paths.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import platform
import re
import shutil
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

try:
    import fcntl
except ImportError:  # not on POSIX: no cross-process lock (real mflux needs Linux or macOS anyway)
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

MFLUX_VERSION = "0.24.0"
MLX_SPEC = "mlx[cpu]==0.32.2"
# On Apple Silicon the plain wheel already carries the CPU and Metal back ends; the [cpu] extra is Linux's.
MLX_SPEC_DARWIN = "mlx==0.32.2"

# mflux 0.24.0's Requires-Dist (from mflux-0.24.0.dist-info/METADATA, `pip download --no-deps mflux==0.24.0`),
# verbatim, minus the three we must not take from it:
#   mlx>=0.32.0,<0.33.0 ; sys_platform == 'darwin'   -> replaced by MLX_SPEC / MLX_SPEC_DARWIN
#   mlx[cuda13]==0.32.2 ; sys_platform == 'linux'     -> CUDA wheels, never
#   torch>=2.13.0,<3.0                                -> never (mflux imports it only lazily, for a few tools)
# Requires-Python: >=3.11.
MFLUX_REQUIREMENTS: tuple[str, ...] = (
    "filelock>=3.20.1",
    "fonttools>=4.60.2",
    "huggingface-hub>=1.1.6,<2.0",
    "hf-transfer>=0.1.9,<1.0",
    "matplotlib>=3.9.2,<4.0",
    "numpy>=2.0.1,<3.0",
    "opencv-python>=4.10.0,<6.0",
    "piexif>=1.1.3,<2.0",
    "pillow>=13.0.0",
    "platformdirs>=4.0,<5.0",
    "regex>=2024.11.6",
    "requests>=2.33.0",
    "safetensors>=0.4.4,<1.0",
    "sentencepiece>=0.2.1,<1.0",
    "tokenizers>=0.20.3 ; python_full_version >= '3.13'",
    "toml>=0.10.2,<1.0",
    "tqdm>=4.66.5,<5.0",
    "transformers>=5.5.0,<6.0",
    "urllib3>=2.8.0",
    "protobuf>=4.25.0,<8.0",
    "pyyaml>=6.0,<7.0",
)

# Distributions that must never appear in the venv (compared after PEP 503 normalisation).
FORBIDDEN_DISTS: tuple[str, ...] = ("torch", "torchvision", "torchaudio", "triton")
FORBIDDEN_PREFIXES: tuple[str, ...] = ("nvidia-", "mlx-cuda", "pytorch-triton", "cuda-")

ANIMA_SEED = 20240229  # fixed: the random weights (and the tokenizers) are identical on every build
# Bump when make_anima.py changes what it writes: a built model with another recipe number is rebuilt.
# (Not a hash of the script, so reformatting it does not cost a 45 s rebuild.)
ANIMA_RECIPE = 1
MARKER = ".herd-complete.json"
PYPI_SIMPLE_URL = "https://pypi.org/simple/"  # or $PIP_INDEX_URL

VENV_DISK_GB = 1.0  # the venv is ~0.7 GB, plus pip's wheel cache
WEIGHTS_DISK_GB = 6.0  # the Anima weights are 5.6 GB
MIN_AVAILABLE_RAM_GB = 6.0  # weights build 4.4 GB peak RSS; a 64x64 one-step run 5.7-5.8 GB peak RSS
NETWORK_TIMEOUT_S = 5.0
PIP_TIMEOUT_S = 3600.0  # whole install (downloads ~250 MB of wheels)
BUILD_TIMEOUT_S = 3600.0  # Anima weights build (about 45 s on 2 cores)
CHECK_TIMEOUT_S = 300.0  # `mflux-generate-anima --help`, `import mflux`

Progress = Callable[[str], None]

HERE = Path(__file__).resolve().parent
MAKE_ANIMA = HERE / "make_anima.py"


class RealMfluxSetupError(RuntimeError):
    """Installing real mflux or building the Anima weights failed."""


def print_to_stderr(message: str) -> None:
    sys.stderr.write(f"[real-mflux] {message}\n")
    sys.stderr.flush()


def cache_root() -> Path:
    """``$HERD_REAL_MFLUX_CACHE`` if set, else ``~/.cache/herd-mesh-real-mflux``."""
    env = os.environ.get("HERD_REAL_MFLUX_CACHE")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "herd-mesh-real-mflux"


def venv_dir(root: Path) -> Path:
    return Path(root) / f"venv-{MFLUX_VERSION}"


def venv_python(venv: Path) -> Path:
    return Path(venv) / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def anima_dir(root: Path) -> Path:
    return Path(root) / f"anima-turbo-random-{MFLUX_VERSION}-seed{ANIMA_SEED}"


def _mlx_spec() -> str:
    return MLX_SPEC_DARWIN if sys.platform == "darwin" else MLX_SPEC


def _venv_fingerprint() -> dict[str, object]:
    return {"mflux": MFLUX_VERSION, "mlx": _mlx_spec(), "requirements": list(MFLUX_REQUIREMENTS)}


def _anima_fingerprint() -> dict[str, object]:
    return {"mflux": MFLUX_VERSION, "seed": ANIMA_SEED, "recipe": ANIMA_RECIPE}


def _marker_matches(directory: Path, fingerprint: dict[str, object]) -> bool:
    try:
        data = json.loads((directory / MARKER).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and all(data.get(k) == v for k, v in fingerprint.items())


def _write_marker(directory: Path, fingerprint: dict[str, object], **extra: object) -> None:
    tmp = directory / (MARKER + ".tmp")
    tmp.write_text(json.dumps({**fingerprint, **extra, "completed_at": time.time()}, indent=2) + "\n")
    tmp.replace(directory / MARKER)


def _dir_size(path: Path) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_size
            except OSError:
                pass
    return total


@contextlib.contextmanager
def _locked(root: Path, name: str, progress: Progress) -> Iterator[None]:
    """Hold an exclusive lock on ``root/.<name>.lock`` so parallel test workers build once and then reuse."""
    Path(root).mkdir(parents=True, exist_ok=True)
    with open(Path(root) / f".{name}.lock", "w") as handle:
        if fcntl is not None:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                progress(f"waiting for another process building {name} under {root}")
                fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            if fcntl is not None:
                fcntl.flock(handle, fcntl.LOCK_UN)


def _run(
    argv: Sequence[str | os.PathLike[str]],
    *,
    what: str,
    timeout: float,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    stream: Progress | None = None,
) -> str:
    """Run argv; return its combined output; raise RealMfluxSetupError (with the output's tail) on failure.

    With ``stream``, each output line is passed on as it comes (for long steps).
    """
    cmd = [os.fspath(a) for a in argv]
    log.debug("running %s", cmd)
    try:
        proc = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=cwd,
            text=True,
            errors="replace",
        )
    except OSError as exc:
        raise RealMfluxSetupError(f"{what}: cannot run {cmd[0]}: {exc}") from exc
    lines: list[str] = []
    timed_out = threading.Event()

    def kill() -> None:
        timed_out.set()
        proc.kill()

    watchdog = threading.Timer(timeout, kill)
    watchdog.daemon = True
    watchdog.start()
    assert proc.stdout is not None
    try:
        for line in proc.stdout:
            lines.append(line)
            if stream is not None and line.strip():
                stream(line.rstrip())
        proc.wait()
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    finally:
        watchdog.cancel()
    if timed_out.is_set():
        raise RealMfluxSetupError(f"{what}: timed out after {timeout:.0f} s: {' '.join(cmd)}")
    output = "".join(lines)
    if proc.returncode != 0:
        tail = "".join(lines[-40:])
        raise RealMfluxSetupError(f"{what} failed (exit {proc.returncode}): {' '.join(cmd)}\n{tail}")
    return output


def _pip_env(root: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PIP_CACHE_DIR"] = str(Path(root) / "pip-cache")  # keep downloads under the cache root
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    env["PIP_NO_INPUT"] = "1"
    env.pop("PYTHONPATH", None)
    env.pop("PYTHONHOME", None)
    return env


def mflux_env(root: Path | None = None, overrides: dict[str, str] | None = None) -> dict[str, str]:
    """``os.environ`` set up for running the real mflux offline, writing only under ``root``.

    - ``PATH`` starts with the venv's bin/, so ``mflux-generate-anima`` etc. resolve to the real ones;
    - ``HF_HOME`` is ``<root>/hf-home`` (an empty Hugging Face cache) and ``HF_HUB_OFFLINE=1``: a run that would
      download fails at once (exit 1, ``OfflineModeIsEnabled``) and the user's real cache is never read;
    - ``MPLCONFIGDIR`` is ``<root>/mplconfig`` (mflux imports matplotlib, which writes a font cache);
    - ``TRANSFORMERS_NO_ADVISORY_WARNINGS=1`` drops transformers' "PyTorch was not found" line from stderr (a Mac
      install has torch, so its stderr does not carry that line).
    ``overrides`` wins over all of these (e.g. an ``HF_HOME`` holding a fake cache).
    """
    root = Path(root) if root is not None else cache_root()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    bin_dir = venv_python(venv_dir(root)).parent
    env["PATH"] = f"{bin_dir}{os.pathsep}{env['PATH']}" if env.get("PATH") else str(bin_dir)
    env.update(
        HF_HOME=str(root / "hf-home"),
        HF_HUB_OFFLINE="1",
        MPLCONFIGDIR=str(root / "mplconfig"),
        TRANSFORMERS_NO_ADVISORY_WARNINGS="1",
    )
    env.update(overrides or {})
    return env


def _installed_dists(python: Path, env: dict[str, str]) -> dict[str, str]:
    code = (
        "import json, importlib.metadata as m\n"
        "print(json.dumps({d.metadata['Name']: d.version for d in m.distributions() if d.metadata['Name']}))\n"
    )
    out = _run([python, "-c", code], what="listing installed distributions", timeout=CHECK_TIMEOUT_S, env=env)
    dists: dict[str, str] = json.loads(out.strip().splitlines()[-1])
    return dists


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def forbidden_among(dists: Sequence[str]) -> list[str]:
    """The names in ``dists`` that are torch, CUDA or nvidia wheels."""
    return sorted(
        name
        for name in dists
        if _normalise(name) in FORBIDDEN_DISTS or _normalise(name).startswith(FORBIDDEN_PREFIXES)
    )


def ensure_venv(root: Path | None = None, progress: Progress = print_to_stderr) -> Path:
    """Return the venv directory with real mflux installed, creating it if missing or incomplete.

    The venv's python is ``ensure_venv(...)/bin/python``; its console scripts (``mflux-generate-anima`` ...)
    sit next to it.
    """
    root = Path(root) if root is not None else cache_root()
    with _locked(root, "venv", progress):
        return _ensure_venv_locked(root, progress)


def _ensure_venv_locked(root: Path, progress: Progress) -> Path:
    venv = venv_dir(root)
    python = venv_python(venv)
    fingerprint = _venv_fingerprint()
    if python.exists() and _marker_matches(venv, fingerprint):
        progress(f"reusing mflux {MFLUX_VERSION} venv at {venv}")
        return venv
    if venv.exists():
        progress(f"removing incomplete or outdated venv {venv}")
        shutil.rmtree(venv)
    root.mkdir(parents=True, exist_ok=True)
    env = _pip_env(root)
    started = time.monotonic()

    progress(f"creating venv {venv} with {sys.executable} (Python {platform.python_version()})")
    _run([sys.executable, "-m", "venv", venv], what="creating the venv", timeout=CHECK_TIMEOUT_S, env=env)
    pip: list[str | os.PathLike[str]] = [python, "-m", "pip"]

    spec = _mlx_spec()
    progress(f"pip install {spec} + {len(MFLUX_REQUIREMENTS)} mflux requirements (no torch, no CUDA)")
    _run(
        [*pip, "install", "--progress-bar", "off", spec, *MFLUX_REQUIREMENTS],
        what="installing mlx and mflux's requirements",
        timeout=PIP_TIMEOUT_S,
        env=env,
        stream=_pip_progress(progress),
    )
    progress(f"pip install --no-deps mflux=={MFLUX_VERSION}")
    _run(
        [*pip, "install", "--progress-bar", "off", "--no-deps", f"mflux=={MFLUX_VERSION}"],
        what="installing mflux",
        timeout=PIP_TIMEOUT_S,
        env=env,
        stream=_pip_progress(progress),
    )

    dists = _installed_dists(python, env)
    bad = forbidden_among(list(dists))
    if bad:
        raise RealMfluxSetupError(
            f"the mflux venv {venv} contains torch/CUDA distributions it must never have: {', '.join(bad)}. "
            "Something pulled them in (a changed requirement or a pip constraint); delete the venv and fix "
            "MFLUX_REQUIREMENTS in tests/real_mflux/setup.py."
        )
    if dists.get("mflux") != MFLUX_VERSION:
        raise RealMfluxSetupError(f"expected mflux {MFLUX_VERSION} in {venv}, found {dists.get('mflux')!r}")

    progress("checking `import mflux` and `mflux-generate-anima --help`")
    env = mflux_env(root)
    _run(
        [python, "-c", "import mflux, mlx.core as mx; print(mx.default_device())"],
        what="import mflux",
        timeout=CHECK_TIMEOUT_S,
        env=env,
    )
    script = python.parent / "mflux-generate-anima"
    help_text = _run([script, "--help"], what="mflux-generate-anima --help", timeout=CHECK_TIMEOUT_S, env=env)
    if "--base-model" not in help_text:
        raise RealMfluxSetupError(f"`mflux-generate-anima --help` does not look right:\n{help_text[-2000:]}")

    size = _dir_size(venv)
    elapsed = time.monotonic() - started
    _write_marker(venv, fingerprint, dists=dists, install_seconds=round(elapsed, 1), size_bytes=size)
    progress(f"mflux {MFLUX_VERSION} venv ready in {elapsed:.0f} s, {size / 1e6:.0f} MB: {venv}")
    return venv


def _pip_progress(progress: Progress) -> Progress:
    """Forward only pip's informative lines (Collecting/Successfully ...), not every 'Requirement already ...'."""

    def forward(line: str) -> None:
        if "is ignored: it is neither a file nor a directory" in line:  # an absent local index, not news
            return
        if line.startswith(("Collecting ", "Successfully ", "ERROR", "WARNING")):
            progress(f"  pip: {line}")

    return forward


def ensure_anima_weights(venv_python: Path, root: Path | None = None, progress: Progress = print_to_stderr) -> Path:
    """Return the random-weight Anima model directory (mflux's saved layout), building it if needed.

    ``venv_python`` is the python of the venv from :func:`ensure_venv` (it runs make_anima.py, which imports
    mflux). The build takes about 45 s on 2 cores, 4.4 GB peak RSS and 5.6 GB of disk.
    """
    root = Path(root) if root is not None else cache_root()
    with _locked(root, "anima", progress):
        return _ensure_anima_locked(Path(venv_python), root, progress)


def _ensure_anima_locked(python: Path, root: Path, progress: Progress) -> Path:
    out = anima_dir(root)
    fingerprint = _anima_fingerprint()
    if _marker_matches(out, fingerprint):
        progress(f"reusing Anima random weights at {out}")
        return out
    if out.exists():
        progress(f"removing incomplete or outdated weights {out}")
        shutil.rmtree(out)
    partial = out.with_name(out.name + ".partial")
    if partial.exists():
        shutil.rmtree(partial)
    root.mkdir(parents=True, exist_ok=True)
    env = mflux_env(root, {"TRANSFORMERS_OFFLINE": "1"})  # nothing is downloaded: the tokenizers are made here
    started = time.monotonic()
    progress(f"building random-weight Anima (seed {ANIMA_SEED}) into {out} (about 45 s, 4.4 GB RAM, 5.6 GB disk)")
    _run(
        [python, MAKE_ANIMA, "--out", partial, "--seed", str(ANIMA_SEED)],
        what="building the Anima weights",
        timeout=BUILD_TIMEOUT_S,
        env=env,
        stream=lambda line: progress(f"  make_anima: {line}"),
    )
    info = json.loads((partial / "herd_random_anima.json").read_text())
    if info.get("mflux_version") != MFLUX_VERSION:
        raise RealMfluxSetupError(
            f"{python} runs mflux {info.get('mflux_version')}, not {MFLUX_VERSION}: pass the python of ensure_venv()"
        )
    partial.rename(out)
    size = _dir_size(out)
    elapsed = time.monotonic() - started
    _write_marker(out, fingerprint, build_seconds=round(elapsed, 1), size_bytes=size)
    progress(f"Anima weights ready in {elapsed:.0f} s, {size / 1e9:.2f} GB: {out}")
    return out


def _nearest_existing(path: Path) -> Path:
    path = Path(path).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _available_ram_bytes() -> int | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    if sys.platform == "darwin":
        try:
            out = subprocess.run(["sysctl", "-n", "hw.memsize"], capture_output=True, text=True, timeout=10)
            return int(out.stdout.strip())  # total, not available: macOS pages aggressively anyway
        except (OSError, ValueError, subprocess.SubprocessError):
            return None
    return None


def _index_url() -> str:
    return os.environ.get("PIP_INDEX_URL") or PYPI_SIMPLE_URL


def _pypi_reachable() -> bool:
    url = _index_url().rstrip("/") + "/mflux/"
    try:
        with urllib.request.urlopen(url, timeout=NETWORK_TIMEOUT_S) as resp:
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError, ValueError):
        return False


def unavailable_reason(root: Path | None = None) -> str | None:
    """Why real mflux cannot be installed and run here, or None when it can (or already is)."""
    root = Path(root) if root is not None else cache_root()
    system, machine = platform.system(), platform.machine().lower()
    if not ((system == "Linux" and machine in ("x86_64", "amd64")) or (system == "Darwin" and machine == "arm64")):
        return f"real mflux needs Linux x86_64 or macOS arm64, not {system} {machine}"
    if not ((3, 11) <= sys.version_info[:2] <= (3, 13)):
        version = platform.python_version()
        return f"mflux {MFLUX_VERSION} needs Python 3.11-3.13 (Requires-Python >=3.11, mlx wheels), not {version}"

    venv_ready = venv_python(venv_dir(root)).exists() and _marker_matches(venv_dir(root), _venv_fingerprint())
    weights_ready = _marker_matches(anima_dir(root), _anima_fingerprint())
    need_gb = (0.0 if venv_ready else VENV_DISK_GB) + (0.0 if weights_ready else WEIGHTS_DISK_GB)
    if need_gb:
        free_gb = shutil.disk_usage(_nearest_existing(root)).free / 1e9
        if free_gb < need_gb:
            return f"only {free_gb:.1f} GB free under {root}; the real mflux setup needs about {need_gb:.1f} GB more"

    ram = _available_ram_bytes()
    if ram is not None and ram / 1e9 < MIN_AVAILABLE_RAM_GB:
        return f"only {ram / 1e9:.1f} GB RAM available; a real Anima run needs about {MIN_AVAILABLE_RAM_GB:.0f} GB"

    if not venv_ready and not _pypi_reachable():
        return f"no mflux venv cached under {root} and the package index ({_index_url()}) is unreachable"
    return None


def ensure_all(root: Path | None = None, progress: Progress = print_to_stderr) -> tuple[Path, Path]:
    """Install the venv and build the weights; return ``(venv_python, anima_model_dir)``."""
    root = Path(root) if root is not None else cache_root()
    reason = unavailable_reason(root)
    if reason:
        raise RealMfluxSetupError(reason)
    python = venv_python(ensure_venv(root, progress))
    return python, ensure_anima_weights(python, root, progress)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        py, model = ensure_all()
    except RealMfluxSetupError as exc:
        print(f"real mflux setup failed: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
    print(f"venv_python={py}")
    print(f"mflux_bin={py.parent}")
    print(f"anima_model={model}")
    print(
        f"example (with mflux_env()'s variables): HF_HUB_OFFLINE=1 TRANSFORMERS_NO_ADVISORY_WARNINGS=1 "
        f"{py.parent / 'mflux-generate-anima'} --model {model} --base-model anima-turbo --prompt 'a cat' "
        "--width 64 --height 64 --steps 1 --quantize 8 --seed 42 --output /tmp/x/out.png"
    )
