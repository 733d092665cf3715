"""The question engine, measured the way its users meet it.

    OMP_NUM_THREADS=1 .venv/bin/python bench/questions.py [--seeds 0-9] [--sizes 5,20,80] [--images 200]
    .venv/bin/python bench/questions.py --score DIR [DIR ...]   # the same quality table for saved runs

Part 1, quality on the demo samples (``hopchain-demo samples`` -> ``import-coco`` -> the questions stage,
one run per seed): images/s end to end from RLE (scene build, colours, generation, balancing; the
images are decoded once beforehand, as a worker holds them), distinct program skeletons, the share of
full questions with both hop kinds, self-answering and beyond-reach counts, image coverage, the
zero-answer share, answer entropy and the language-prior baseline (the accuracy of answering every
question with the most common answer of its skeleton; lower is better). Self-answering and
beyond-reach are judged independently of the generator: each emitted program is run on 300
randomised scenes from a separate random stream (constant answer = self-answering), and re-executed
on its scene under today's rules (a reach refusal = beyond reach). Both are judged for the old
generator's saved runs the same way.

Part 2, throughput on one core: synthetic images with N instances (RLE ellipses + PNG pixels in
memory), the whole stage per batch; the first batch starts with every cache of the process emptied
(degeneracy verdicts read or judged, plurals: cold), the second reuses them (warm). Images/s are given
per second of wall time and per second of this process's CPU time (the machine is shared: CPU time is
the steadier figure). ``--profile DIR`` also writes a cProfile (CPU-time clock) of each size's warm
batch to ``DIR/questions-<N>.prof`` and prints its top functions.

``--save DIR`` writes each seed's questions/instances/manifest Parquet so another checkout's run can
be scored with ``--score`` (how the closing note's "before" column was made).
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import platform
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _machine import cpu_model

os.environ.setdefault("OMP_NUM_THREADS", "1")

TARGET_IMAGES_PER_S = 200.0  # at 20 instances per image, one core


def _seeds(text: str) -> list[int]:
    if "-" in text:
        a, b = text.split("-")
        return list(range(int(a), int(b) + 1))
    return [int(x) for x in text.split(",")]


@functools.cache
def _varies(shape: str) -> bool:
    """Whether a program shape's answer changes over randomised scenes (an independent stream; a
    program executing fewer than 10 times there is not judged self-answering)."""
    from pipelines.questions import degenerate as D
    from pipelines.questions import program as P

    seen, runs = D.answers_on_random_scenes(P.program_from_json(shape), seed=2026)
    return len(seen) > 1 or runs < 10


def quality(runs: list[tuple], margins) -> dict:  # type: ignore[no-untyped-def]
    """Measures over runs of (questions rows, scenes by image id, image groups by image id)."""
    from pipelines.questions import degenerate as D
    from pipelines.questions import program as P
    from pipelines.questions.report import entropy_bits, prior_accuracy

    rows, covered, eligible, photo_cov, photo_elig = [], 0, 0, 0, 0
    self_answering = beyond = margin_miss = 0
    for questions, scenes, groups in runs:
        with_q = Counter(q["image_id"] for q in questions)
        for iid, sc in scenes.items():
            if sc.n >= 3 and len(sc.by_category) >= 2:
                eligible += 1
                covered += with_q[iid] > 0
                if groups[iid] == "photo":
                    photo_elig += 1
                    photo_cov += with_q[iid] > 0
        for q in questions:
            hops = P.program_from_json(q["hops"])
            rows.append((q, hops))
            if not _varies(D.shape_key(hops)):
                self_answering += 1
            try:
                P.execute(hops, scenes[q["image_id"]], margins, min_hops=1)
            except P.ReachError:
                beyond += 1
            except P.MarginError:
                margin_miss += 1
            except P.ProgramError:
                beyond += 1  # an op or category the scene no longer supports counts as out of reach
    full = [(q, h) for q, h in rows if (q.get("variant") or "full") == "full"]
    answers = [q["answer"] for q, _ in full]
    sk = [P.skeleton(h) for _, h in full]
    n = max(1, len(full))
    return {
        "questions": len(full),
        "skeletons": len(set(sk)),
        "both_kinds": sum(P.has_both_kinds(h) for _, h in full) / n,
        "self_answering": self_answering,
        "beyond_reach": beyond,
        "below_reader_margins": margin_miss,
        "coverage": covered / max(1, eligible),
        "photo_coverage": photo_cov / max(1, photo_elig),
        "zero_share": answers.count("0") / n,
        "entropy": entropy_bits(answers),
        "prior_accuracy": prior_accuracy(list(zip(sk, answers, strict=True))),
        # held out by image: the demo pools its 24 images over many seeds, and an image asked the same
        # program under two seeds gives one question id; leaving out only the question lets the guesser
        # read the answer off its twin from another seed, which measures repetition, not the prior
        "prior_accuracy_by_image": prior_accuracy(list(zip(sk, answers, strict=True)),
                                                  [q["image_id"] for q, _ in full]),
        "distinct_questions": len({q["question_id"] for q, _ in full}),
        "ops": dict(Counter(h.op for _, hs in full for h in hs).most_common()),
        "hops": dict(sorted(Counter(len(h) for _, h in full).items())),
    }


def print_quality(label: str, m: dict, ips: float | None) -> None:
    print(f"\n{label}")
    rows = [
        ("images/s (end to end from RLE)", f"{ips:.1f}" if ips else "-"),
        ("full questions", m["questions"]),
        ("  of which distinct questions", m.get("distinct_questions", "-")),
        ("distinct program skeletons", m["skeletons"]),
        ("both hop kinds (target 100%)", f"{100 * m['both_kinds']:.1f}%"),
        ("self-answering (target 0)", m["self_answering"]),
        ("beyond reach (target 0)", m["beyond_reach"]),
        ("below today's reader margins", m["below_reader_margins"]),
        ("image coverage (>=3 inst., >=2 cat.)", f"{100 * m['coverage']:.1f}%"),
        ("  of which photographs", f"{100 * m['photo_coverage']:.1f}%"),
        ("zero answers", f"{100 * m['zero_share']:.1f}%"),
        ("answer entropy (bits)", f"{m['entropy']:.2f}"),
        ("language-prior baseline (lower is better)", f"{100 * m['prior_accuracy']:.1f}%"),
        ("  held out by image (target <= 25%)", f"{100 * m['prior_accuracy_by_image']:.1f}%"
         if "prior_accuracy_by_image" in m else "-"),
        ("hops per question", m["hops"]),
    ]
    for k, v in rows:
        print(f"  {k:<44} {v}")
    print(f"  {'ops used':<44} {m['ops']}")


def demo_runs(seeds: list[int], save: Path | None) -> tuple[list[tuple], float]:
    import tempfile

    import numpy as np
    from PIL import Image

    from hopchain_demo.samples import write_samples
    from pipelines.config import QuestionsConfig
    from pipelines.contracts import write_parquet_atomic
    from pipelines.questions.scene import scenes_from_tables
    from pipelines.questions.stage import run_questions
    from pipelines.segment.annotations import import_coco

    work = Path(tempfile.mkdtemp(prefix="bench-questions-"))
    coco = write_samples(work, 24)
    imp = import_coco(coco, work / "images")
    rows = imp.manifest.to_pylist()
    pictures = {r["image_id"]: Image.open(r["uri"]).convert("RGB") for r in rows}
    groups = {r["image_id"]: "shapes" if Path(r["uri"]).name.startswith("shapes-") else "photo" for r in rows}
    cfg0 = QuestionsConfig()
    from pipelines.questions.stability import trusting_stability

    scenes, _ = scenes_from_tables(imp.instances, imp.manifest, images=lambda i: np.asarray(pictures[i]))
    # judged as the stage reads them: with the stability check on, tiny members do not close a category
    by_id = {s.image_id: trusting_stability(s) if cfg0.stability.enabled else s for s in scenes}
    runs, elapsed, images = [], 0.0, 0
    for seed in seeds:
        cfg = cfg0.model_validate({**cfg0.model_dump(), "seed": seed})
        t0 = time.perf_counter()
        res = run_questions(imp.instances, imp.manifest, cfg, image_loader=lambda r: pictures[r["image_id"]])
        elapsed += time.perf_counter() - t0
        images += len(rows)
        runs.append((res.questions.to_pylist(), by_id, groups))
        if save is not None:
            d = save / f"seed-{seed}"
            write_parquet_atomic(res.questions, d / "questions.parquet")
            write_parquet_atomic(imp.instances, d / "instances.parquet")
            write_parquet_atomic(imp.manifest, d / "manifest.parquet")
    return runs, images / elapsed


def scored_runs(dirs: list[Path]) -> list[tuple]:
    import numpy as np
    from PIL import Image

    from pipelines.contracts import read_parquet
    from pipelines.questions.scene import scenes_from_tables

    runs = []
    for d in dirs:
        man = read_parquet(d / "manifest.parquet", "manifest")
        inst = read_parquet(d / "instances.parquet", "instances")
        rows = man.to_pylist()
        pics = {r["image_id"]: np.asarray(Image.open(r["uri"]).convert("RGB")) for r in rows if Path(r["uri"]).exists()}
        scenes, _ = scenes_from_tables(inst, man, images=pics.get)
        groups = {r["image_id"]: "shapes" if Path(r["uri"]).name.startswith("shapes-") else "photo" for r in rows}
        q = read_parquet(d / "questions.parquet").to_pylist()
        runs.append((q, {s.image_id: s for s in scenes}, groups))
    return runs


def _cold_start() -> None:
    """Empty every cache a first batch of a process would find empty (works on older checkouts too)."""
    from pipelines.questions import degenerate, english

    getattr(degenerate, "clear_caches", degenerate._verdict.cache_clear)()
    english.plural.cache_clear()
    if hasattr(english, "known_plurals"):
        english.known_plurals.cache_clear()


def throughput(sizes: list[int], n_images: int, profile: Path | None = None, repeat: int = 5) -> list[tuple]:
    """(instances, cold images/s, warm images/s, questions per image, cold and warm images per CPU
    second, the median warm images per CPU second) per size: two batches of ``n_images`` synthetic
    images through the whole stage in this process, the second ``repeat`` times; warm figures are the
    best of those runs (as ``timeit`` reports: on a shared machine the other runs measure the
    neighbours), the median says how far apart they were."""
    import cProfile
    import pstats
    import tempfile

    import pyarrow as pa
    import pyarrow.compute as pc
    from PIL import Image

    from pipelines.config import QuestionsConfig
    from pipelines.questions.stage import run_questions
    from pipelines.questions.synthetic import synthetic_tables

    out = []
    for n in sizes:
        folder = tempfile.mkdtemp(prefix=f"bench-q{n}-")
        inst, man = synthetic_tables(100 + n, 2 * n_images, n, width=640, height=480, image_dir=folder)
        pics = {r["image_id"]: Image.open(r["uri"]).convert("RGB") for r in man.to_pylist()}
        ids = man.column("image_id").to_pylist()
        batches = []
        for part in (ids[:n_images], ids[n_images:]):
            wanted = pa.array(part)
            batches.append((inst.filter(pc.is_in(inst["image_id"], value_set=wanted)),
                            man.filter(pc.is_in(man["image_id"], value_set=wanted))))
        _cold_start()  # cold: nothing judged or read yet in this process
        times, cpu, nq = [], [], 0
        for part_inst, part_man in [batches[0]] + [batches[1]] * max(1, repeat):  # then warm: caches reused
            t0, c0 = time.perf_counter(), time.process_time()
            res = run_questions(part_inst, part_man, QuestionsConfig(), image_loader=lambda r, pics=pics: pics[r["image_id"]])
            times.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
            nq = len(res.questions)
        if profile is not None:
            prof = cProfile.Profile(time.process_time_ns, 1e-9)
            prof.runcall(run_questions, *batches[1], QuestionsConfig(), image_loader=lambda r, pics=pics: pics[r["image_id"]])
            profile.mkdir(parents=True, exist_ok=True)
            prof.dump_stats(str(profile / f"questions-{n}.prof"))
            print(f"\nprofile of the warm batch, {n} instances (CPU time, with profiler overhead):")
            pstats.Stats(prof).sort_stats("cumulative").print_stats(25)
        warm_cpu = sorted(cpu[1:])
        out.append((n, n_images / times[0], n_images / min(times[1:]), nq / n_images, n_images / cpu[0],
                    n_images / warm_cpu[0], n_images / warm_cpu[len(warm_cpu) // 2]))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="0-9")
    ap.add_argument("--sizes", default="5,20,80", help="instances per image for the throughput part")
    ap.add_argument("--images", type=int, default=200, help="images per throughput batch")
    ap.add_argument("--save", type=Path, default=None)
    ap.add_argument("--score", type=Path, nargs="*", default=None, help="score saved runs instead")
    ap.add_argument("--json", type=Path, default=None, help="also write the numbers as JSON")
    ap.add_argument("--profile", type=Path, default=None, help="write a cProfile of each warm batch here")
    ap.add_argument("--repeat", type=int, default=5, help="warm runs per size (the best is reported)")
    args = ap.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core

    from pipelines.config import QuestionsConfig
    from pipelines.questions.program import margins_of

    margins = margins_of(QuestionsConfig())
    print(f"machine: {cpu_model()}, {os.cpu_count()} cores visible, pinned to 1 core; python {platform.python_version()}")
    if args.score:
        dirs = [p for d in args.score for p in (sorted(d.glob("seed-*")) or [d])]
        m = quality(scored_runs(dirs), margins)
        print_quality(f"saved runs: {len(dirs)} ({', '.join(p.name for p in dirs)}), judged by today's rules", m, None)
        if args.json:
            args.json.write_text(json.dumps(m, indent=1))
        return
    seeds = _seeds(args.seeds)
    print(f"demo samples: 24 images (7 photographs, 17 shapes scenes) x seeds {seeds[0]}..{seeds[-1]}")
    runs, ips = demo_runs(seeds, args.save)
    m = quality(runs, margins)
    print_quality("quality on the demo samples", m, ips)
    if args.sizes:
        sizes = [int(s) for s in args.sizes.split(",")]
        print(f"\nthroughput, whole questions stage, {args.images} synthetic 640x480 images per batch, one core")
        rows = throughput(sizes, args.images, args.profile, args.repeat)
        print(f"(warm: the best of {args.repeat} runs of the second batch; img/cpu-s: images per second of this"
              " process's CPU time, the per-core figure)")
        head = (f"{'instances':>9} {'cold img/s':>11} {'warm img/s':>11} {'q/image':>8} {'cost x':>7}"
                f" {'cold img/cpu-s':>15} {'warm img/cpu-s':>15} {'(median)':>9} {'vs 200/s':>9}")
        print(head + "\n" + "-" * len(head))
        base = rows[0][5]
        for n, cold, warm, qpi, cold_cpu, warm_cpu, median_cpu in rows:
            print(f"{n:>9} {cold:>11.1f} {warm:>11.1f} {qpi:>8.2f} {base / warm_cpu:>7.2f} {cold_cpu:>15.1f}"
                  f" {warm_cpu:>15.1f} {median_cpu:>9.1f} {warm_cpu / TARGET_IMAGES_PER_S:>9.2f}")
        if len(rows) > 1:
            xs = [math.log(n) for n, *_ in rows]
            ys = [math.log(1 / r[5]) for r in rows]
            mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
            k = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum((x - mx) ** 2 for x in xs)
            print(f"\ncost per image grows ~ instances^{k:.2f} over {sizes[0]}..{sizes[-1]} instances")
        m["throughput"] = rows
    m["demo_images_per_s"] = ips
    if args.json:
        args.json.write_text(json.dumps(m, indent=1, default=str))


if __name__ == "__main__":
    main()
