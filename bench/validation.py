"""Benchmark: validate 1,000,000 question rows with the ``questions`` suite (all checks, with the
manifest and instances reference tables, Data Docs built). Target: under 60 s on the 2-core dev box.

    OMP_NUM_THREADS=1 .venv/bin/python bench/validation.py [--rows 1000000] [--images 50000]

Prints a table: machine, sizes, time of each phase, rows/s, and the ratio to the 60 s budget.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from _machine import cpu_model

BUDGET_S = 60.0




def make_tables(rows: int, images: int, per_image_instances: int = 8, seed: int = 0):
    """Valid manifest / instances (ids only: what the questions suite joins on) / questions."""
    import pyarrow as pa

    rng = random.Random(seed)
    image_ids = [hashlib.sha256(f"bench-{i}".encode()).hexdigest() for i in range(images)]
    manifest = pa.table({
        "image_id": image_ids, "uri": [f"s3://hopchain/inputs/{i}.jpg" for i in range(images)],
        "width": pa.array([640] * images, pa.int32()), "height": pa.array([480] * images, pa.int32()),
        "format": ["JPEG"] * images, "shard": pa.array([i // 300 for i in range(images)], pa.int32()),
    })
    instances = pa.table({
        "image_id": [iid for iid in image_ids for _ in range(per_image_instances)],
        "instance_id": pa.array(list(range(per_image_instances)) * images, pa.int32()),
    })
    # a few program shapes (3..6 hops), instance ids drawn per row
    qid, img, text, answer, num_hops, hops = [], [], [], [], [], []
    for r in range(rows):
        n = 3 + r % 4
        a, b = rng.sample(range(per_image_instances), 2)
        chosen = sorted(rng.sample(range(per_image_instances), rng.randint(1, per_image_instances)))
        program = [{"op": "find", "args": {"category": "cat"}, "inputs": [], "kind": "perception", "value": sorted({a, b})}]
        for k in range(1, n - 1):
            program.append({"op": "relate", "args": {"relation": "left_of", "category": "dog"}, "inputs": [k - 1],
                            "kind": "instance_chain", "value": chosen if k == n - 2 else [a]})
        program.append({"op": "count", "args": {}, "inputs": [n - 2], "kind": "perception", "value": len(chosen)})
        i = r % images
        qid.append(f"{r:024x}")
        img.append(image_ids[i])
        text.append(f"How many dogs are left of the largest cat? ({r})")
        answer.append(str(len(chosen)))
        num_hops.append(n)
        hops.append(json.dumps(program, separators=(",", ":")))
    questions = pa.table({
        "question_id": qid, "image_id": img, "question": text, "answer": answer,
        "num_hops": pa.array(num_hops, pa.int32()), "hops": hops, "generator": ["program:v1"] * rows,
        "variant": ["full"] * rows, "pass_rate": pa.array([None] * rows, pa.float64()),
    })
    from pipelines.contracts import conform

    return manifest, instances, conform(questions, "questions")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--images", type=int, default=50_000)
    args = ap.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import logging

    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    from expectations import runner
    from expectations.checks import References
    from expectations.suites import get_suite
    from pipelines.config import load_params

    params = load_params()
    t = time.perf_counter()
    manifest, instances, questions = make_tables(args.rows, args.images)
    t_make = time.perf_counter() - t

    # the computed-column pass alone (what the suite adds to GX's own column expectations)
    t = time.perf_counter()
    frame = runner.to_frame(questions)
    refs = References(manifest=runner.to_frame(manifest), instances=runner.to_frame(instances))
    get_suite("questions").prepare(frame, refs, params)
    t_prepare = time.perf_counter() - t

    runner._import_gx()  # GX import time is a one-off per process; not part of the validation
    with tempfile.TemporaryDirectory() as out:
        t = time.perf_counter()
        report = runner.validate("questions", questions, params=params,
                                 refs=References(manifest=manifest, instances=instances),
                                 run_id="bench", out_dir=out, raise_on_critical=False)
        t_total = time.perf_counter() - t
    gx_expectations = sum(1 for o in report.outcomes if o.success is not None)
    failed = [o.name for o in report.outcomes if o.success is False]

    print(f"machine      : {cpu_model()}, {os.cpu_count()} cores, python {platform.python_version()}")
    print(f"sizes        : {args.rows:,} questions, {args.images:,} images, {instances.num_rows:,} instances")
    print(f"expectations : {gx_expectations} evaluated, {len(report.skipped)} skipped, failed: {failed or 'none'}")
    print(f"{'phase':<34}{'seconds':>10}{'rows/s':>14}")
    print(f"{'fabricate tables (not timed)':<34}{t_make:>10.1f}{'':>14}")
    print(f"{'computed columns only':<34}{t_prepare:>10.1f}{args.rows / t_prepare:>14,.0f}")
    print(f"{'validate (all, + result + docs)':<34}{t_total:>10.1f}{args.rows / t_total:>14,.0f}")
    print(f"ratio to the {BUDGET_S:.0f} s budget: {t_total / BUDGET_S:.2f}  ({'OK' if t_total < BUDGET_S else 'OVER'})")
    return 0 if t_total < BUDGET_S and not failed else 1


if __name__ == "__main__":
    sys.exit(main())
