"""A batch of prompts over the whole fleet with herd_mesh.AsyncClient: every image is sent at once and the mesh
spreads them over its Macs. Each is tagged, so `herd stats` (or the dashboard) shows this batch apart.

    python client_batch.py [OUT_DIR]        # finds a peer by itself; HERD_URL=http://studio.local:11435 to pick one
"""

import asyncio
import sys
from pathlib import Path

import herd_mesh

PROMPTS = [
    "a lighthouse on a cliff at dawn, oil painting",
    "a red fox in fresh snow, wildlife photography",
    "a tiny robot watering a bonsai tree, studio light",
    "an old tram in Lisbon at golden hour",
]
TAGS = ["batch-example", "client"]


async def main(out_dir: Path) -> int:
    out_dir.mkdir(parents=True, exist_ok=True)
    async with herd_mesh.AsyncClient() as herd:
        jobs = [herd.generate_image(prompt, model="z-image-turbo", tags=TAGS) for prompt in PROMPTS]
        results = await asyncio.gather(*jobs, return_exceptions=True)
    failed = 0
    for i, (prompt, result) in enumerate(zip(PROMPTS, results, strict=True), start=1):
        if isinstance(result, herd_mesh.HerdError):
            failed += 1
            print(f"failed: {prompt!r}: {result}")
            continue
        if isinstance(result, BaseException):
            raise result
        path = result.save(out_dir / f"image-{i}.png")
        print(f"{path} made on {result.node} in {result.generation_ms} ms (seed {result.seed})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(Path(sys.argv[1] if len(sys.argv) > 1 else "batch"))))
