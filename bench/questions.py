"""Program-generator throughput: images/s at 5, 20 and 80 instances per image on one CPU core.

    OMP_NUM_THREADS=1 .venv/bin/python bench/questions.py [--images N] [--per-image N] [--repeats R]

Scenes come from ``pipelines.questions.synthetic.random_scene`` (the same maker the tests use).
Each timed run is the whole batch path: candidates per image (build, execute, render, leakage
checks, dedupe) + batch answer balancing. Prints a table: machine, sizes, images/s, questions/s,
ms per image, ratio to the 200 images/s target and cost growth relative to the smallest size,
plus the fitted growth exponent (cost ~ instances^k).
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import time
from _machine import cpu_model  # noqa: E402  (bench/ is on sys.path when run as a script)

os.environ.setdefault("OMP_NUM_THREADS", "1")

TARGET_IMAGES_PER_S = 200.0  # at 20 instances per image (issue 4, acceptance 4)




def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="5,10,20,40,80", help="instances per image")
    ap.add_argument("--images", type=int, default=200)
    ap.add_argument("--per-image", type=int, default=6)
    ap.add_argument("--repeats", type=int, default=3, help="best of R runs")
    ap.add_argument(
        "--decode", type=int, default=50, help="also time building N scenes from RLE masks (0: skip)"
    )
    args = ap.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core

    from pipelines.questions.generator import generate
    from pipelines.questions.synthetic import random_scene

    sizes = [int(s) for s in args.sizes.split(",")]
    print(
        f"machine: {cpu_model()}, {os.cpu_count()} cores visible, pinned to 1 core; python {platform.python_version()}"
    )
    print(f"batch: {args.images} images x per_image {args.per_image}; best of {args.repeats}\n")
    head = f"{'instances':>9} {'images/s':>9} {'questions/s':>11} {'ms/image':>9} {'vs target':>9} {'cost x':>7} {'q/image':>7}"
    print(head)
    print("-" * len(head))
    rows = []
    for n in sizes:
        scenes = [random_scene(10_000 * n + i, n) for i in range(args.images)]
        generate(scenes[:5], per_image=args.per_image)  # warm-up
        best, nq = math.inf, 0
        for r in range(args.repeats):
            t0 = time.perf_counter()
            res = generate(scenes, seed=r, per_image=args.per_image)
            best = min(best, time.perf_counter() - t0)
            nq = len(res.questions)
        ips = args.images / best
        rows.append((n, ips))
        base_cost = 1 / rows[0][1]
        print(
            f"{n:>9} {ips:>9.1f} {nq / best:>11.1f} {1000 / ips:>9.2f} "
            f"{(ips / TARGET_IMAGES_PER_S if n == 20 else float('nan')):>9.2f} {(1 / ips) / base_cost:>7.2f} "
            f"{nq / args.images:>7.2f}"
        )
    if len(rows) > 1:
        xs = [math.log(n) for n, _ in rows]
        ys = [math.log(1 / ips) for _, ips in rows]
        mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
        k = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
        print(
            f"\ncost per image grows ~ instances^{k:.2f} over {sizes[0]}..{sizes[-1]} instances "
            f"(target at 20 instances: >= {TARGET_IMAGES_PER_S:.0f} images/s)"
        )

    if args.decode:
        from pipelines.questions.scene import scenes_from_tables
        from pipelines.questions.synthetic import synthetic_tables

        inst, man = synthetic_tables(0, args.decode, 20, width=640, height=480)
        t0 = time.perf_counter()
        scenes_from_tables(inst, man)
        dt = time.perf_counter() - t0
        print(
            f"\nscene build from RLE (pycocotools decode + centroids), 640x480, 20 instances: "
            f"{args.decode / dt:.1f} images/s ({1000 * dt / args.decode:.2f} ms/image)"
        )


if __name__ == "__main__":
    main()
