"""Where the questions stage's CPU time goes, step by step, without cProfile's per-call overhead.

    OMP_NUM_THREADS=1 .venv/bin/python bench/questions_steps.py [--sizes 20,80] [--images 100]

cProfile multiplies the cost of every Python call by 3-5x, so its shares overstate the generator's
many small calls. This bench times only a dozen coarse steps (each wrapped once with the process's CPU
clock) on the warm batch of ``bench/questions.py``'s throughput part (the same synthetic images, the
same seeds): the builder's attempts, the stability check and its parts (perturbed scene builds,
re-executions), the scene build, the wording and leakage checks, the degeneracy lookup, the candidate
rule, the report. Steps nest (``_perturb`` is inside ``check_stable``), so shares do not add up to 100%;
what no step covers is the generator's own loop (plans, duplicate keys, balancing).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("OMP_NUM_THREADS", "1")


def _timed(owner: Any, name: str, spent: Counter, calls: Counter) -> None:
    """Replace ``owner.name`` by a wrapper that adds its CPU time to ``spent[name]``."""
    f: Callable[..., Any] = getattr(owner, name)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        t = time.process_time()
        try:
            return f(*args, **kwargs)
        finally:
            spent[name] += time.process_time() - t
            calls[name] += 1

    setattr(owner, name, wrapper)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="20", help="instances per image")
    ap.add_argument("--images", type=int, default=100, help="images per batch")
    args = ap.parse_args()

    import pyarrow as pa
    import pyarrow.compute as pc
    from PIL import Image

    import pipelines.questions.generator as G
    import pipelines.questions.leakage as L
    import pipelines.questions.stability as ST
    import pipelines.questions.stage as S
    from pipelines.config import QuestionsConfig
    from pipelines.questions.synthetic import synthetic_tables

    spent: Counter = Counter()
    calls: Counter = Counter()
    for owner, names in ((S, ("scenes_from_tables", "question_report")),
                         (G, ("check_stable", "render", "check_text", "check_not_degenerate", "check_candidates",
                              "check_needs_image", "make_question", "select_balanced")),
                         (G._Builder, ("build",)), (ST, ("_perturb", "_rebuild", "_answer_on")),
                         (L, ("numbers_in_text", "secret_values"))):
        for name in names:
            _timed(owner, name, spent, calls)
    for n in (int(x) for x in args.sizes.split(",")):
        inst, man = synthetic_tables(100 + n, 2 * args.images, n, width=640, height=480, image_dir=tempfile.mkdtemp())
        pics = {r["image_id"]: Image.open(r["uri"]).convert("RGB") for r in man.to_pylist()}
        ids = man.column("image_id").to_pylist()
        batches = []
        for part in (ids[:args.images], ids[args.images:]):
            wanted = pa.array(part)
            batches.append((inst.filter(pc.is_in(inst["image_id"], value_set=wanted)),
                            man.filter(pc.is_in(man["image_id"], value_set=wanted))))
        for part_inst, part_man in batches:  # the first batch warms the caches
            spent.clear()
            calls.clear()
            t0 = time.process_time()
            S.run_questions(part_inst, part_man, QuestionsConfig(), image_loader=lambda r, p=pics: p[r["image_id"]])
            total = time.process_time() - t0
        print(f"\n{n} instances, warm batch of {args.images}: {total:.3f} s CPU = {args.images / total:.1f} img/cpu-s")
        for name, s in spent.most_common():
            print(f"  {name:22s} {s:7.3f} s {100 * s / total:5.1f}%  {calls[name]:6d} calls"
                  f"  {1e6 * s / calls[name]:7.0f} us/call")


if __name__ == "__main__":
    main()
