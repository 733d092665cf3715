"""Benchmark of the annotation stage: push throughput (batched vs one request per task) against a
real Label Studio, and consensus throughput for 10,000 annotations.

    .venv/bin/python bench/annotation.py                 # starts a private Label Studio (~1 min)
    HOPCHAIN_LS_URL=... HOPCHAIN_LS_TOKEN=... .venv/bin/python bench/annotation.py   # reuse one

Prints a table: machine, sizes, throughput, ratio to the baseline (one request per task).
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from _machine import cpu_model  # noqa: E402  (bench/ is on sys.path when run as a script)

from pipelines.annotation.client import LabelStudioClient  # noqa: E402
from pipelines.annotation.consensus import decide  # noqa: E402
from pipelines.annotation.project import ensure_project  # noqa: E402
from pipelines.annotation.push import build_task, push_questions  # noqa: E402
from pipelines.annotation.simulated import answer_result  # noqa: E402
from pipelines.annotation.validate import validate_task_annotations  # noqa: E402
from tests.support.stack import bench_label_studio  # noqa: E402


def questions(n: int, tag: str) -> list[dict]:
    return [
        {
            "question_id": f"{tag}-{i}",
            "image_id": f"img{i % 50}",
            "question": f"How many #{i}?",
            "answer": str(i % 9),
        }
        for i in range(n)
    ]


def url(image_id: str) -> str:
    return f"http://127.0.0.1:9/{image_id}.png"


def bench_push(client: LabelStudioClient, batched_n: int, single_n: int, batch_size: int) -> list[tuple]:
    rows = []
    pid = int(ensure_project(client, f"bench-{uuid.uuid4().hex[:6]}")["id"])
    qs = questions(single_n, "single")
    t = time.perf_counter()
    for q in qs:  # baseline: one import request per task
        client.import_tasks(pid, [build_task(q, url(q["image_id"]), "single")])
    single = single_n / (time.perf_counter() - t)
    qs = questions(batched_n, "batched")
    t = time.perf_counter()
    report = push_questions(client, pid, qs, url, batch="batched", batch_size=batch_size)
    batched = batched_n / (time.perf_counter() - t)
    t = time.perf_counter()
    again = push_questions(client, pid, qs, url, batch="batched", batch_size=batch_size)
    repush = batched_n / (time.perf_counter() - t)
    assert report.created == batched_n and again.created == 0
    rows.append(
        ("push, one request per task (baseline)", f"{single_n} tasks", f"{single:,.0f} tasks/s", "1.0x")
    )
    rows.append(
        (
            f"push, batched ({batch_size}/request, incl. dedup scan)",
            f"{batched_n} tasks",
            f"{batched:,.0f} tasks/s",
            f"{batched / single:.1f}x",
        )
    )
    rows.append(
        (
            "re-push same batch (dedup scan, 0 created)",
            f"{batched_n} tasks",
            f"{repush:,.0f} tasks/s",
            f"{repush / single:.1f}x",
        )
    )
    return rows


def synthetic_tasks(n_annotations: int, seed: int = 0) -> tuple[list[dict], dict[str, str]]:
    """Label Studio task JSON: 4 annotations per question, ~10 % disagreeing, a few bad/extra ones."""
    rng = random.Random(seed)
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    tasks, generated = [], {}
    n_q = n_annotations // 4
    ann_id = 0
    for q in range(n_q):
        qid = f"q{q}"
        truth = q % 9
        generated[qid] = str(truth)
        anns = []
        for a in range(4):
            ann_id += 1
            value = truth + (1 if rng.random() < 0.03 else 0)
            anns.append(
                {
                    "id": ann_id,
                    "completed_by": a + 1,
                    "was_cancelled": False,
                    "lead_time": rng.uniform(3, 40),
                    "created_at": (t0 + timedelta(seconds=ann_id)).isoformat(),
                    "result": answer_result(value),
                }
            )
        tasks.append({"id": q, "data": {"question_id": qid}, "annotations": anns})
    return tasks, generated


def bench_consensus(n: int) -> list[tuple]:
    tasks, generated = synthetic_tasks(n)
    t = time.perf_counter()
    records, rejects = validate_task_annotations(tasks, {i: f"a{i}@x" for i in range(1, 5)})
    t_validate = time.perf_counter() - t
    t = time.perf_counter()
    result = decide(records, generated, 4)
    result.consensus_table(), result.annotations_table(), result.stats_table()
    t_decide = time.perf_counter() - t
    assert len(records) == n and not rejects and len(result.consensus) == n // 4
    return [
        (
            "validate Label Studio annotations",
            f"{n:,} annotations",
            f"{n / t_validate:,.0f} annotations/s",
            "-",
        ),
        (
            "consensus + contract tables + stats",
            f"{n:,} annotations",
            f"{n / t_decide:,.0f} annotations/s",
            "-",
        ),
        (
            "validate + consensus (pull, no HTTP)",
            f"{n:,} annotations",
            f"{n / (t_validate + t_decide):,.0f} annotations/s",
            "-",
        ),
    ]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batched", type=int, default=1000)
    ap.add_argument("--single", type=int, default=100)
    ap.add_argument("--batch-size", type=int, default=500)
    ap.add_argument("--annotations", type=int, default=10_000)
    ap.add_argument("--skip-push", action="store_true", help="consensus only (no Label Studio needed)")
    args = ap.parse_args()
    rows = bench_consensus(args.annotations)
    if not args.skip_push:
        with bench_label_studio() as (ls_url, token), LabelStudioClient(ls_url, token) as client:
            rows = bench_push(client, args.batched, args.single, args.batch_size) + rows
    from rich.console import Console
    from rich.table import Table

    table = Table(
        title=f"annotation stage — {cpu_model()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    for col in ("measure", "size", "throughput", "ratio to baseline"):
        table.add_column(col)
    for row in rows:
        table.add_row(*row)
    Console(width=130).print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
