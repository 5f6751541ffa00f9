"""End-to-end: a burst of image requests sent to every peer of a real mesh with mixed-speed Macs.

Real peer processes, real mDNS, real HTTP; the mflux stand-in sleeps `ms_per_mp_step` per megapixel-step, so
each peer has its own speed (default 1x / 2x / 4x). Reports how many images each peer made against its share
of the fleet's speed, and the burst makespan against the ideal (total work / total speed).

    python benchmarks/e2e_images.py [--jobs 24] [--speeds 4000,2000,1000] [--write docs/benchmarks-e2e.md]
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

from tests.harness import Mesh  # noqa: E402

BODY = {"model": "z-image-turbo", "prompt": "benchmark", "width": 512, "height": 512, "steps": 4}
MP_STEPS = 512 * 512 / 1e6 * 4


def run(jobs: int, speeds: list[float], warmup: bool) -> dict:
    with tempfile.TemporaryDirectory(prefix="herd-e2e-") as tmp:
        mesh = Mesh(Path(tmp))
        try:
            names = [f"mac{i + 1}" for i in range(len(speeds))]
            peers = [mesh.add(n, ms_per_mp_step=ms) for n, ms in zip(names, speeds, strict=True)]
            mesh.wait_all_see_each_other(timeout=15)
            if warmup:  # every peer measures its own speed once, as a long-running fleet would have
                for peer in peers:
                    httpx.post(peer.url + "/api/generate-image", json={**BODY, "seed": 1},
                               headers={"X-Herd-Forwarded": "1"}, timeout=120)  # fmt: skip
                time.sleep(1.5)  # let the new speeds reach every peer
            print(f"sending {jobs} requests at once, spread over {len(peers)} entry peers", file=sys.stderr)
            started = time.monotonic()

            def one(i: int) -> tuple[str, float]:
                entry = peers[i % len(peers)]
                r = httpx.post(entry.url + "/api/generate-image", json={**BODY, "seed": 100 + i}, timeout=600)
                r.raise_for_status()
                return r.headers["X-Fleet-Node"], time.monotonic() - started

            with ThreadPoolExecutor(jobs) as pool:
                results = list(pool.map(one, range(jobs)))
            makespan = max(t for _, t in results)
        finally:
            mesh.close()
    rates = [1000 / (ms * MP_STEPS) for ms in speeds]  # images per second per peer
    counts = collections.Counter(node for node, _ in results)
    ideal = jobs / sum(rates)
    return {
        "names": names,
        "speeds": speeds,
        "rates": rates,
        "counts": [counts.get(n, 0) for n in names],
        "makespan": makespan,
        "ideal": ideal,
        "mean": statistics.fmean(t for _, t in results),
    }


def table(r: dict, jobs: int) -> str:
    total_rate = sum(r["rates"])
    lines = [
        "| peer | s per image | share of fleet speed | images made | share of images |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, rate, count in zip(r["names"], r["rates"], r["counts"], strict=True):
        lines.append(f"| {name} | {1 / rate:.2f} | {rate / total_rate:.0%} | {count} | {count / jobs:.0%} |")
    lines.append("")
    lines.append(
        f"Burst of {jobs} images sent at once to all peers: makespan {r['makespan']:.2f} s, ideal "
        f"(total work / total speed) {r['ideal']:.2f} s, ratio {r['makespan'] / r['ideal']:.2f}; "
        f"mean completion {r['mean']:.2f} s."
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=24)
    parser.add_argument("--speeds", default="4000,2000,1000", help="ms per megapixel-step for each peer")
    parser.add_argument("--no-warmup", action="store_true", help="start from the hardware prior only")
    parser.add_argument("--write", type=Path)
    args = parser.parse_args()
    speeds = [float(s) for s in args.speeds.split(",")]
    result = run(args.jobs, speeds, warmup=not args.no_warmup)
    text = table(result, args.jobs)
    print(text)
    if args.write:
        header = (
            "## End to end: real peers, mixed speeds\n\n"
            f"`python benchmarks/e2e_images.py --jobs {args.jobs} --speeds {args.speeds}`"
            f"{' --no-warmup' if args.no_warmup else ''}: {len(speeds)} real peer processes with the mflux "
            "stand-in (512x512, 4 steps), real mDNS and HTTP on loopback, every request sent at the same moment, "
            "spread over all peers as entry points.\n\n"
        )
        args.write.write_text(header + text + "\n")


if __name__ == "__main__":
    main()
