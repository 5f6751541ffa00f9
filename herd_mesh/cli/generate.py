"""`herd generate "prompt" -o out.png`: make images on the mesh, with progress on stderr while they are made.

Each image is sent with its own `X-Request-Id`, and `GET /api/jobs/{id}` is polled for where it waits and which
step it is on. `--count N` sends N at once: the mesh spreads them over its Macs. The saved files are listed on
stdout, one line each (path, node, seed, milliseconds), so scripts can read them.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from ..client import AsyncClient, ImageResult, Job, NoPeerFound
from ..client._client import new_request_id
from ..errors import HerdError
from ._common import EXIT_FAILED, EXIT_OK, add_client_options, error, explain

MAX_COUNT = 64


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="herd generate",
        description="Generate images on the mesh. Progress goes to stderr; each saved file is printed on stdout "
        "as: path, node, seed, generation ms. Exit codes: 0 done, 1 the mesh refused or failed (its message is "
        "printed), 2 bad arguments, 3 no peer found.",
    )
    p.add_argument("prompt", help="what to draw")
    p.add_argument("-o", "--output", default="image.png", help="file to write (default image.png); with --count "
                   "N > 1: out-1.png ... out-N.png")  # fmt: skip
    p.add_argument("--model", default="z-image-turbo", help="image model (default z-image-turbo; see `herd models`)")
    p.add_argument("--width", type=int, default=1024, help="pixels, 64-2048 (default 1024)")
    p.add_argument("--height", type=int, default=1024, help="pixels, 64-2048 (default 1024)")
    p.add_argument("--steps", type=int, help="inference steps (default: the model's, 4 for z-image-turbo)")
    p.add_argument("--seed", type=int, help="seed for a reproducible image (with --count: seed, seed+1, ...)")
    p.add_argument("--quantize", type=int, default=8, choices=(3, 4, 5, 6, 8), help="bits (default 8)")
    p.add_argument("--guidance", type=float, help="guidance scale, for models that take one")
    p.add_argument("--negative-prompt", help="what to keep out of the image")
    p.add_argument("--tags", action="append", default=[], metavar="TAG[,TAG]",
                   help="tags for the statistics; comma-separated or repeated")  # fmt: skip
    p.add_argument("--count", type=int, default=1, metavar="N", help=f"make N images in parallel (1-{MAX_COUNT})")
    p.add_argument("--timeout", type=float, default=900.0, help="seconds to wait for each image (default 900)")
    add_client_options(p)
    return p


def output_paths(output: str, count: int) -> list[Path]:
    path = Path(output).expanduser()
    if count == 1:
        return [path]
    return [path.with_name(f"{path.stem}-{i}{path.suffix}") for i in range(1, count + 1)]


def describe(job: Job) -> str:
    """A job's progress in a few words."""
    where = job.node or "the mesh"
    if job.state == "queued":
        position = f", number {job.queue_position} in line" if job.queue_position else ""
        return f"queued on {where}{position}"
    if job.state == "running":
        if not job.step or not job.steps:  # before the first step: loading the model, encoding the prompt
            return f"{where}: starting"
        eta = f" (~{job.eta_s:.0f} s left)" if job.eta_s is not None else ""
        return f"{where}: step {job.step}/{job.steps}{eta}"
    if job.state == "failed":
        return f"failed on {where}: {job.error or job.reason or 'no reason given'}"
    return f"done on {where}"


class Reporter(Protocol):
    def add(self, index: int, label: str) -> None: ...
    def update(self, index: int, job: Job) -> None: ...
    def finish(self, index: int, text: str) -> None: ...
    def close(self) -> None: ...


class LineReporter:
    """stderr is not a terminal (a log, a pipe): one line whenever an image's progress changes."""

    def __init__(self, count: int) -> None:
        self._count = count
        self._last: dict[int, str] = {}

    def _say(self, index: int, text: str) -> None:
        if self._last.get(index) != text:
            self._last[index] = text
            prefix = f"[{index + 1}/{self._count}] " if self._count > 1 else ""
            print(f"{prefix}{text}", file=sys.stderr, flush=True)

    def add(self, index: int, label: str) -> None:
        self._say(index, f"{label}: sent to the mesh")

    def update(self, index: int, job: Job) -> None:
        self._say(index, describe(job))

    def finish(self, index: int, text: str) -> None:
        self._say(index, text)

    def close(self) -> None:
        pass


class RichReporter:
    """A terminal: a live bar per image (rich)."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, Progress, SpinnerColumn, TaskID, TextColumn, TimeElapsedColumn

        self._progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.fields[status]}"),
            TimeElapsedColumn(),
            console=Console(stderr=True),
        )
        self._tasks: dict[int, TaskID] = {}
        self._progress.start()

    def add(self, index: int, label: str) -> None:
        self._tasks[index] = self._progress.add_task(label, total=None, status="sent to the mesh")

    def update(self, index: int, job: Job) -> None:
        fields: dict[str, Any] = {"status": describe(job)}
        if job.state == "running" and job.steps:
            fields.update(total=job.steps, completed=job.step or 0)
        self._progress.update(self._tasks[index], **fields)

    def finish(self, index: int, text: str) -> None:
        task = self._tasks[index]
        total = self._progress.tasks[task].total or 1
        self._progress.update(task, total=total, completed=total, status=text)

    def close(self) -> None:
        self._progress.stop()


def _tags(values: Sequence[str]) -> list[str]:
    return [t.strip() for value in values for t in value.split(",") if t.strip()]


async def _one(
    herd: AsyncClient, args: argparse.Namespace, index: int, path: Path, reporter: Reporter
) -> ImageResult:
    reporter.add(index, path.name)
    result = await herd.generate_image(
        args.prompt,
        model=args.model,
        width=args.width,
        height=args.height,
        steps=args.steps,
        quantize=args.quantize,
        seed=None if args.seed is None else (args.seed + index) % 2**32,
        guidance=args.guidance,
        negative_prompt=args.negative_prompt,
        tags=_tags(args.tags),
        request_id=new_request_id(),
        on_progress=lambda job: reporter.update(index, job),
        progress_interval=0.4,
    )
    await asyncio.to_thread(result.save, path)
    seconds = f"{result.generation_ms / 1000:.1f} s" if result.generation_ms is not None else "?"
    reporter.finish(index, f"done on {result.node} in {seconds}, seed {result.seed} -> {path}")
    return result


async def _run(args: argparse.Namespace, paths: list[Path]) -> int:
    async with AsyncClient(args.url, mesh=args.mesh, timeout=args.timeout) as herd:
        try:
            await herd.url()  # find a peer first: "no peer" is one clear message, not one per image
        except NoPeerFound as exc:
            return explain(exc)
        reporter: Reporter = RichReporter() if sys.stderr.isatty() else LineReporter(len(paths))
        try:
            outcomes = await asyncio.gather(
                *(_one(herd, args, i, path, reporter) for i, path in enumerate(paths)), return_exceptions=True
            )
        finally:
            reporter.close()
    code = EXIT_OK
    for path, outcome in zip(paths, outcomes, strict=True):
        if isinstance(outcome, ImageResult):
            print(f"{path}\t{outcome.node}\t{outcome.seed}\t{outcome.generation_ms}", flush=True)
        elif isinstance(outcome, HerdError):
            if len(paths) > 1:
                error(f"{path.name}:")
            code = max(code, explain(outcome))
        elif isinstance(outcome, OSError):
            error(f"could not write {path}: {outcome}")
            code = max(code, EXIT_FAILED)
        elif isinstance(outcome, BaseException):
            raise outcome
    return code


def main(argv: Sequence[str]) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not 1 <= args.count <= MAX_COUNT:
        parser.error(f"--count must be from 1 to {MAX_COUNT}")
    if not args.prompt.strip():
        parser.error("the prompt is empty")
    paths = output_paths(args.output, args.count)
    try:
        return asyncio.run(_run(args, paths))
    except KeyboardInterrupt:
        error("cancelled: the mesh stops the job(s) as the connection closes")
        return 130
