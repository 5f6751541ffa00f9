"""A shared registry of running GPU jobs, so that stand-ins on one "machine" slow each other down (stdlib only).

A real Mac has one GPU: an LLM answer and an image generation that run at the same time both get slower.
The Ollama stand-in (and the mflux stand-in, later) emulate that through one shared file whose path they get
from ``--contention-file`` or the environment variable ``HERD_STANDIN_CONTENTION``.

File format (UTF-8 text, one JSON object per line, one line per job that is running now)::

    {"pid": 4242, "kind": "llm", "job": "4242-7-1f9a0c", "since": 1757000000.25, "what": "/api/chat"}

``pid`` (int, required)
    The process that runs the job. A line whose process is gone (or a zombie) is stale: readers ignore it and
    the next writer drops it, so a crashed stand-in never leaves contention behind.
``kind`` (str, required)
    The workload class. A job is slowed only by live jobs of *other* kinds: the Ollama stand-in writes
    ``"llm"`` by default, the mflux stand-in is meant to write ``"image"``.
``job`` (str, required)
    A unique id (``"<pid>-<counter>-<random hex>"``); the line is removed by it when the job ends.
``since`` (float)
    Epoch seconds when the job started.
anything else
    Informational (``what``, ``model``, ``node``). Readers ignore unknown keys, blank and malformed lines.

Locking: every access opens the file (creating it, mode 0o666 less umask) and holds ``fcntl.flock`` on it for
the whole access: ``LOCK_SH`` to read, ``LOCK_EX`` to change it (read, drop stale lines, add or remove one,
truncate, write, flush). Nobody holds the lock between accesses.

Slowdown: a job paces each step (an LLM token, a diffusion step) by ``slowdown(path, kind, k)``, that is
``1 + k * n`` with ``n`` the number of live jobs of other kinds, re-read at every step.
"""

from __future__ import annotations

import fcntl
import itertools
import json
import os
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

ENV_VAR = "HERD_STANDIN_CONTENTION"
_counter = itertools.count(1)


def pid_alive(pid: int) -> bool:
    """True if ``pid`` is a running process (a zombie, killed but not yet reaped, counts as gone)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, owned by someone else
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no procfs (macOS): trust kill(0)
    state = stat.rsplit(")", 1)[-1].split()[:1]
    return state not in (["Z"], ["X"])


def _parse(text: str) -> list[dict[str, Any]]:
    """The well-formed job lines of a file's text (stale ones included)."""
    jobs = []
    for line in text.splitlines():
        try:
            job = json.loads(line)
        except ValueError:
            continue
        if (
            isinstance(job, dict)
            and isinstance(job.get("pid"), int)
            and isinstance(job.get("kind"), str)
            and isinstance(job.get("job"), str)
        ):
            jobs.append(job)
    return jobs


@contextmanager
def _locked(path: str | os.PathLike[str], exclusive: bool) -> Iterator[IO[str]]:
    """The registry file opened for reading and appending, flock-ed for the duration."""
    with open(path, "a+", encoding="utf-8") as f:
        fcntl.flock(f, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        try:
            f.seek(0)
            yield f
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _rewrite(f: IO[str], jobs: list[dict[str, Any]]) -> None:
    f.seek(0)
    f.truncate()
    f.write("".join(json.dumps(job, separators=(", ", ": ")) + "\n" for job in jobs))
    f.flush()


def read_jobs(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The live jobs in the registry, in the order they registered."""
    with _locked(path, exclusive=False) as f:
        jobs = _parse(f.read())
    return [job for job in jobs if pid_alive(job["pid"])]


def register(path: str | os.PathLike[str], kind: str, **info: Any) -> str:
    """Add a line for a job of this process that starts now; return its id (for :func:`unregister`)."""
    job_id = f"{os.getpid()}-{next(_counter)}-{secrets.token_hex(3)}"
    line = {**info, "pid": os.getpid(), "kind": kind, "job": job_id, "since": round(time.time(), 3)}
    with _locked(path, exclusive=True) as f:
        jobs = [job for job in _parse(f.read()) if pid_alive(job["pid"])]
        _rewrite(f, [*jobs, line])
    return job_id


def unregister(path: str | os.PathLike[str], job_id: str) -> None:
    """Remove a job's line (and any stale ones); a missing line or file is fine."""
    with _locked(path, exclusive=True) as f:
        jobs = _parse(f.read())
        _rewrite(f, [job for job in jobs if job["job"] != job_id and pid_alive(job["pid"])])


def count_others(path: str | os.PathLike[str], kind: str) -> int:
    """How many live jobs of a kind other than ``kind`` are running."""
    return sum(1 for job in read_jobs(path) if job["kind"] != kind)


def slowdown(path: str | os.PathLike[str] | None, kind: str, factor: float = 1.0) -> float:
    """The pace multiplier ``1 + factor * count_others(path, kind)`` (1.0 without a registry)."""
    if not path:
        return 1.0
    return 1.0 + factor * count_others(path, kind)


@contextmanager
def job(path: str | os.PathLike[str] | None, kind: str, **info: Any) -> Iterator[str | None]:
    """Register a job for the duration of a ``with`` block (nothing at all when ``path`` is empty)."""
    if not path:
        yield None
        return
    job_id = register(path, kind, **info)
    try:
        yield job_id
    finally:
        unregister(path, job_id)
