"""End to end: a burst of image requests sent to every peer of a real mesh of mixed-speed Macs, over fresh meshes.

Real peer processes, real mDNS, real HTTP; the mflux stand-in sleeps `ms_per_mp_step` per megapixel-step, so
each peer has its own speed (default 0.5 / 1 / 2 s per 512x512 image). Each run starts a fresh mesh, optionally
lets every peer measure its own speed once (a fleet that has been running), and sends the whole burst at
once, spread over every peer as entry points. It reports where the images ran, the makespan, and the optimum:
the best integer split of the burst at the speeds measured in the same run (`X-Generation-Time`).

    python benchmarks/e2e_images.py [--jobs 14] [--speeds 477,954,1907] [--meshes 5]
                                    [--weights complete,none] [--no-warmup] [--write docs/benchmarks-e2e.md]

`--weights none` runs with no Hugging Face cache folder at all (nothing tells whether weights are on disk);
`complete` with mflux's pinned snapshots in place.
"""

from __future__ import annotations

import argparse
import collections
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from tests.harness import Mesh, wait_until  # noqa: E402

BODY = {"model": "z-image-turbo", "prompt": "benchmark", "width": 512, "height": 512, "steps": 4}
MP_STEPS = 512 * 512 / 1e6 * 4


def optimum(jobs: int, seconds: list[float]) -> float:
    """The least makespan of `jobs` equal jobs on machines taking `seconds` each, jobs indivisible."""
    candidates = sorted({k * s for s in seconds for k in range(1, jobs + 1)})
    return next(t for t in candidates if sum(int(t / s + 1e-9) for s in seconds) >= jobs)


def one_mesh(jobs: int, speeds: list[float], *, weights: str, warmup: bool) -> dict:
    with tempfile.TemporaryDirectory(prefix="herd-e2e-") as tmp:
        mesh = Mesh(Path(tmp), weights=weights)
        try:
            names = [f"mac{i + 1}" for i in range(len(speeds))]
            peers = [mesh.add(n, ms_per_mp_step=ms) for n, ms in zip(names, speeds, strict=True)]
            mesh.wait_all_see_each_other(timeout=15)
            if warmup:  # every peer measures its own speed once, on its own GPU, as a running fleet has
                for runner, sender in zip(peers, peers[1:] + peers[:1], strict=True):
                    forwarded = {"X-Herd-Forwarded": "1", "X-Herd-Node": sender.node_id, "X-Herd-Mesh": mesh.name}
                    runner.call_from(sender, "POST", "/api/generate-image", json={**BODY, "seed": 1},
                                     headers=forwarded).raise_for_status()  # fmt: skip
                wait_until(lambda: all(peer_knows_speeds(p, names) for p in peers), 15, what="speeds everywhere")
            started = time.monotonic()

            def send(i: int) -> tuple[str, float, int, int, int]:
                entry = peers[i % len(peers)]
                r = httpx.post(entry.url + "/api/generate-image", json={**BODY, "seed": 100 + i}, timeout=600)
                r.raise_for_status()
                h = r.headers
                return (h["X-Fleet-Node"], time.monotonic() - started, int(h["X-Generation-Time"]),
                        int(h["X-Fleet-Moves"]), int(h["X-Queue-Time"]))  # fmt: skip

            with ThreadPoolExecutor(jobs) as pool:
                results = list(pool.map(send, range(jobs)))
        finally:
            mesh.close()
    per_node = collections.defaultdict(list)
    for node, _, generation_ms, _, _ in results:
        per_node[node].append(generation_ms / 1000)
    nominal = {n: ms * MP_STEPS / 1000 for n, ms in zip(names, speeds, strict=True)}
    measured = [statistics.median(per_node[n]) if per_node[n] else nominal[n] for n in names]
    makespan = max(t for _, t, _, _, _ in results)
    best = optimum(jobs, measured)
    counts = collections.Counter(node for node, *_ in results)
    return {"names": names, "seconds": measured, "counts": [counts.get(n, 0) for n in names], "makespan": makespan,
            "optimum": best, "ratio": makespan / best, "moves": sum(r[3] for r in results)}  # fmt: skip


def peer_knows_speeds(peer: object, names: list[str]) -> bool:
    doc = peer.get("/mesh/peers").json()  # type: ignore[attr-defined]
    speeds = {p["node_id"]: ((p["capabilities"].get("image") or {}).get("speed") or {}).get("ms_per_mp_step")
              for p in doc["peers"]}  # fmt: skip
    return all(speeds.get(n) for n in names)


def report(runs: dict[str, list[dict]], jobs: int, args: argparse.Namespace) -> str:
    lines = [
        f"`python benchmarks/e2e_images.py --jobs {jobs} --speeds {args.speeds} --meshes {args.meshes} "
        f"--weights {args.weights}{' --no-warmup' if args.no_warmup else ''}` — {time.strftime('%Y-%m-%d')}, "
        "this 2-core Linux box (shared with other work). Real peer processes with the mflux stand-in (512x512, "
        "4 steps), real mDNS and HTTP on loopback; each run a fresh mesh, the burst sent at once to every peer.",
        "",
        "| weights cache | run | split (images per peer) | s per image measured | makespan | optimum | ratio "
        "| moves |",
        "|---|---:|---|---|---:|---:|---:|---:|",
    ]
    for weights, results in runs.items():
        for i, r in enumerate(results, 1):
            split = "/".join(str(c) for c in r["counts"])
            secs = "/".join(f"{s:.2f}" for s in r["seconds"])
            lines.append(f"| {weights} | {i} | {split} | {secs} | {r['makespan']:.2f} s | {r['optimum']:.2f} s | "
                         f"{r['ratio']:.2f} | {r['moves']} |")  # fmt: skip
    lines.append("")
    for weights, results in runs.items():
        ratios = [r["ratio"] for r in results]
        median, worst = statistics.median(ratios), max(ratios)
        lines.append(f"- {weights}: makespan / optimum median {median:.2f}, worst {worst:.2f} ({len(results)} runs).")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=14)
    parser.add_argument("--speeds", default="477,954,1907", help="ms per megapixel-step for each peer")
    parser.add_argument("--meshes", type=int, default=5, help="fresh meshes per weights setting")
    parser.add_argument("--weights", default="complete,none", help="comma-separated: complete, none")
    parser.add_argument("--no-warmup", action="store_true", help="start from the hardware prior only")
    parser.add_argument("--write", type=Path)
    args = parser.parse_args()
    speeds = [float(s) for s in args.speeds.split(",")]
    runs: dict[str, list[dict]] = {}
    for weights in args.weights.split(","):
        for i in range(args.meshes):
            result = one_mesh(args.jobs, speeds, weights=weights, warmup=not args.no_warmup)
            print(f"{weights} run {i + 1}: split {result['counts']}, ratio {result['ratio']:.2f}", file=sys.stderr)
            runs.setdefault(weights, []).append(result)
    text = report(runs, args.jobs, args)
    print(text)
    if args.write:
        args.write.write_text("## End to end: real peers, mixed speeds, fresh meshes\n\n" + text + "\n")


if __name__ == "__main__":
    main()
