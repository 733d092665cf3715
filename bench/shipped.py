"""What one detect or segment shard pays to read the COCO instances shipped with a night's images.

    .venv/bin/python bench/shipped.py [--sizes 1000,5000,20000] [--shard-size 500]

With ``detect.backend: annotations`` (the demo profile, the scale bench), every shard task read and
parsed the night's whole ``instances.json`` and matched its shard against it: a per-shard cost that
grows with the night, so a night's cost grows with the square of its size. Ingest now hands each
shard its slice (``ingest/shipped/shard-NNNNN.json``). This bench builds a night's COCO file from the
scale bench's scenes (the demo photos and shapes scenes, compressed RLE), then times one shard's read
(JSON text → instances table) both ways, and prints ms per shard, ms per image and the ratio to the
smallest night. Both ways give the same instances (tests/unit/segment/test_shipped_slices.py).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import cpu_model


def night(n: int, scenes: list[dict[str, Any]]) -> dict[str, Any]:
    """A COCO dict of ``n`` images cycling over ``scenes`` (each image its own file name)."""
    from scale import coco_for  # bench/scale.py: the file its nights upload

    return coco_for([{**scenes[k % len(scenes)], "file_name": f"{k:06d}.png"} for k in range(n)])


def manifest(names: list[str], scenes: list[dict[str, Any]], first: int) -> Any:
    from pipelines.contracts import to_table

    return to_table([{"image_id": f"{first + i:064x}", "uri": f"/in/{name}", "width": scenes[(first + i) % len(scenes)]["width"],
                      "height": scenes[(first + i) % len(scenes)]["height"], "format": "PNG", "shard": 0}
                     for i, name in enumerate(names)], "manifest")


def read_ms(text: str, m: Any, k: int = 3) -> float:
    """Best of ``k``: one shard's JSON text parsed and its manifest matched (what a shard task does)."""
    from pipelines.segment.annotations import match_coco_instances

    return best_of(k, lambda: match_coco_instances(json.loads(text), m, _rel))


def _rel(uri: str) -> str:
    return uri.removeprefix("/in/")


def best_of(k: int, f: Any) -> float:
    import gc

    times = []
    for _ in range(k):
        gc.collect()
        t = time.perf_counter()
        f()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1000,5000,20000")
    ap.add_argument("--shard-size", type=int, default=500)
    args = ap.parse_args()
    from scale import _render

    from pipelines.segment.annotations import coco_slice

    scenes = [_render(k) for k in range(27)]  # 7 photo scenes, 20 shapes scenes
    for s in scenes:
        s.pop("bytes")
    print(f"machine: {cpu_model()}, {os.cpu_count()} cores; shard {args.shard_size} images; best of 3")
    print("| images in the night | instances.json MB | whole file, ms/shard | slice, ms/shard "
          "| whole, ms/image (ratio to first) | slice, ms/image (ratio to first) | whole / slice |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    base: list[float] = []
    for n in (int(x) for x in args.sizes.split(",")):
        text = json.dumps(night(n, scenes))
        names = [f"{k:06d}.png" for k in range(args.shard_size)]
        m = manifest(names, scenes, 0)
        piece = json.dumps(coco_slice(json.loads(text), [f"/in/{x}" for x in names], _rel))
        whole, sliced = read_ms(text, m), read_ms(piece, m)
        if not base:
            base = [whole, sliced]
        print(f"| {n:,} | {len(text) / 1e6:.1f} | {1e3 * whole:.0f} | {1e3 * sliced:.0f} | "
              f"{1e3 * whole / args.shard_size:.3f} ({whole / base[0]:.2f}) | {1e3 * sliced / args.shard_size:.3f} "
              f"({sliced / base[1]:.2f}) | {whole / sliced:.1f}x |")


if __name__ == "__main__":
    main()
