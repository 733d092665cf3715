"""Benchmark of the early stop and the handout: annotations per accepted question on a real Label
Studio, with the simulated annotators working its ``/next`` stream.

    .venv/bin/python bench/annotation_cost.py                 # starts a private Label Studio (~1 min)
    HOPCHAIN_LS_URL=... HOPCHAIN_LS_TOKEN=... .venv/bin/python bench/annotation_cost.py   # reuse one

For each share of *ambiguous* verdicts (2 %, 5 %) and per-annotator error rate (5 %, 10 %, 20 %: a
wrong number, truth ± 1 or 2), the same questions are pushed into one project per handout and
answered by the same four simulated annotators (votes seeded per annotator and question, so a
question gets the same four votes in every project):

* ``today``: four at once (``parallel``), no early stop (the platform before issue 19);
* ``parallel + early stop``: four at once, stopped questions withdrawn;
* ``serial + early stop``: one annotator at a time (the default).

While they work, a poller reconciles the handout every ``--poll-s`` (what the annotation wait's
trigger does: :func:`pipelines.annotation.handout.reconcile_batches`). Each annotator "thinks" its
lead time × ``--think-scale`` before submitting (lead times 4–45 s; 0.01 → 0.04–0.45 s, with a
0.3 s poll: the ratio of a 30 s poll to people's answer times). Every question that is not stopped
gets all four votes, so the accepted sets must be identical to today's: the bench checks it (exit 1
otherwise). ``best possible`` is what stopping right after the first non-unanimous answer would
cost, from the same votes, averaged over the 24 orders in which the four may come: no handout can
do better.

Prints per error rate and handout: accepted, annotations per accepted question, annotations
submitted, fewer than today, annotations saved (from the consensus rows), tasks withdrawn and
opened, wall time, and whether the accepted set equals today's.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import sys
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from _machine import cpu_model  # noqa: E402  (bench/ is on sys.path when run as a script)

from pipelines.annotation.client import LabelStudioClient  # noqa: E402
from pipelines.annotation.handout import reconcile_batches  # noqa: E402
from pipelines.annotation.project import ensure_project  # noqa: E402
from pipelines.annotation.pull import pull_and_decide  # noqa: E402
from pipelines.annotation.push import push_questions  # noqa: E402
from pipelines.annotation.simulated import run_simulation, simulated_annotators  # noqa: E402
from tests.support.stack import bench_label_studio  # noqa: E402

BATCH = "bench"
CONFIGS = (  # (name, handout, early stop)
    ("today", "parallel", False),
    ("parallel + early stop", "parallel", True),
    ("serial + early stop", "serial", True),
)


def questions(n: int, tag: str) -> list[dict]:
    return [{"question_id": f"{tag}-{i:04d}", "image_id": f"img{i % 7}", "question": f"How many things #{i}?",
             "answer": str(1 + i % 6)} for i in range(n)]


def serial_bound(sims: list, qs: list[dict], error_rate: float, seed: int, required: int = 4) -> float:
    """Expected answers per question if each question stops right after the answer that makes it
    non-unanimous (the best any handout can do), from the same seeded votes, averaged over the 24
    orders in which the four annotators may come."""
    import itertools
    from datetime import UTC, datetime, timedelta

    from pipelines.annotation.consensus import decide
    from pipelines.annotation.validate import AnnotationRecord

    total = 0.0
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    for q in qs:
        votes = [s.decide(q["question_id"], q["answer"], error_rate, seed) for s in sims]
        orders = list(itertools.permutations(range(len(sims))))
        for order in orders:
            recs = [AnnotationRecord(q["question_id"], sims[k].email, None if a is None else str(a), v,
                                     t0 + timedelta(seconds=i), lead, "", i)
                    for i, (k, (a, v, lead)) in enumerate((k, votes[k]) for k in order)]
            n = next((m for m in range(1, required) if decide(recs[:m], {q["question_id"]: q["answer"]}, required
                                                                ).consensus[0]["status"] == "rejected"), required)
            total += n / len(orders)
    return total


def one_run(admin: LabelStudioClient, sims: list, qs: list[dict], error_rate: float, handout: str,
            early_stop: bool, poll_s: float, seed: int) -> dict:
    pid = int(ensure_project(admin, f"cost-{uuid.uuid4().hex[:8]}", handout=handout)["id"])
    push_questions(admin, pid, qs, lambda i: f"http://127.0.0.1:9/{i}.png", batch=BATCH)
    truths = {q["question_id"]: q["answer"] for q in qs}
    passes = {"opened": 0, "withdrawn": 0, "polls": 0}

    with LabelStudioClient(admin.url, admin.token) as poller:
        def handout_pass() -> bool:  # what the annotation wait's trigger does on every poll
            done = reconcile_batches(poller, pid, [BATCH], handout=handout, early_stop=early_stop)  # type: ignore[arg-type]
            passes["opened"] += done.opened
            passes["withdrawn"] += done.withdrawn
            passes["polls"] += 1
            return done.all_complete

        t0 = time.perf_counter()
        done = run_simulation(sims, pid, truths, error_rate=error_rate, seed=seed, handout=handout_pass,
                              handout_poll_s=poll_s)
        wall = time.perf_counter() - t0
    result = pull_and_decide(admin, pid, qs, batch=BATCH, early_stop=early_stop, handout=handout)  # type: ignore[arg-type]
    cost = result.consensus.cost()
    rows = result.consensus.consensus
    return {
        "submitted": sum(done.values()),
        "counted": cost.annotations,
        "accepted": {r["question_id"]: r["agreed_answer"] for r in rows if r["status"] == "accepted"},
        "pending": sum(r["status"] == "pending" for r in rows),
        "per_accepted": cost.annotations_per_accepted,
        "saved": cost.annotations_saved,
        "withdrawn": passes["withdrawn"] + result.withdrawn,
        "opened": passes["opened"],
        "wall_s": wall,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--questions", type=int, default=80)
    ap.add_argument("--error-rates", default="0.05,0.10,0.20")
    ap.add_argument("--ambiguous", default="0.02,0.05",
                    help="shares of answers that say ambiguous (comma-separated: each is a run per error rate)")
    ap.add_argument("--think-scale", type=float, default=0.01)
    ap.add_argument("--poll-s", type=float, default=0.3)
    ap.add_argument("--seed", type=int, default=19)
    ap.add_argument("--configs", default=",".join(name for name, _, _ in CONFIGS),
                    help="which handouts to run (comma-separated names; 'today' is always run: the baseline)")
    args = ap.parse_args()
    wanted = {"today", *args.configs.split(",")}
    configs = [c for c in CONFIGS if c[0] in wanted]
    rows = []
    ok = True
    with bench_label_studio() as (ls_url, token):
        with LabelStudioClient(ls_url, token) as admin:
            base = simulated_annotators(admin, token, 4)
            try:
                for amb in (float(a) for a in args.ambiguous.split(",")):
                    sims = [dataclasses.replace(s, ambiguous_rate=amb, think_scale=args.think_scale,
                                                empty_retries=3, retry_wait_s=0.2) for s in base]
                    for rate in (float(r) for r in args.error_rates.split(",")):
                        qs = questions(args.questions, f"e{int(rate * 100):02d}a{int(amb * 100):02d}")
                        runs = {name: one_run(admin, sims, qs, rate, handout, stop, args.poll_s, args.seed)
                                for name, handout, stop in configs}
                        today = runs["today"]
                        bound = serial_bound(sims, qs, rate, args.seed)
                        for name, run in runs.items():
                            same = run["accepted"] == today["accepted"]
                            ok &= same and not run["pending"]
                            per = run["per_accepted"]
                            rows.append((f"{rate:.0%}", f"{amb:.0%}", name, str(len(run["accepted"])),
                                         f"{per:.2f}" if per else "-", str(run["submitted"]),
                                         f"{1 - run['submitted'] / today['submitted']:.1%}",
                                         str(run["saved"]), str(run["withdrawn"]), str(run["opened"]),
                                         f"{run['wall_s']:.0f}", "yes" if same else "NO"))
                            print(f"error {rate:.0%} ambiguous {amb:.0%} {name}: {run['submitted']} annotations, "
                                  f"{len(run['accepted'])} accepted, {run['wall_s']:.0f} s", flush=True)
                        rows.append((f"{rate:.0%}", f"{amb:.0%}", "best possible", "", "", f"{bound:.0f}",
                                     f"{1 - bound / today['submitted']:.1%}", "", "", "", "", ""))
            finally:
                for s in base:
                    s.client.close()
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"early stop and handout — {args.questions} questions per error rate, 4 simulated annotators, "
                        f"poll {args.poll_s} s, think ×{args.think_scale} — "
                        f"{cpu_model()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    for col in ("error rate", "ambiguous", "handout", "accepted", "annotations/accepted", "annotations submitted",
                "fewer than today", "saved (consensus rows)", "withdrawn", "opened", "wall s", "same accepted set"):
        table.add_column(col)
    for row in rows:
        table.add_row(*row)
    Console(width=200).print(table)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
