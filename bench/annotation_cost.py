"""Benchmark of the early stop: annotations per accepted question with and without it, on a real
Label Studio, with the simulated annotators working its ``/next`` stream.

    .venv/bin/python bench/annotation_cost.py                 # starts a private Label Studio (~1 min)
    HOPCHAIN_LS_URL=... HOPCHAIN_LS_TOKEN=... .venv/bin/python bench/annotation_cost.py   # reuse one

For each per-annotator error rate (5 %, 10 %, 20 %) and a share of *ambiguous* verdicts, the same
questions are pushed into two projects and answered by the same four simulated annotators (answers
seeded per annotator and question, so a question gets the same four votes in both). In the first
project a poller withdraws stopped questions from the stream while they work (what the annotation
wait's trigger does, :func:`pipelines.annotation.pull.withdraw_stopped`, every ``--poll-s``); in the
second nothing is withdrawn. Each annotator "thinks" its lead time × ``--think-scale`` before
submitting (lead times 4–45 s; 0.01 → 0.04–0.45 s, with a 0.3 s poll: the ratio of a 30 s poll to
people's answer times). With four annotators every question that is not stopped gets all four
votes, so the accepted sets must be identical: the bench checks it.

Prints per error rate: annotations per accepted question with and without early stop, the saving,
annotations saved (from the consensus rows) and whether the accepted sets are equal.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import sys
import tempfile
import threading
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from _machine import cpu_model  # noqa: E402  (bench/ is on sys.path when run as a script)

from pipelines.annotation.client import LabelStudioClient  # noqa: E402
from pipelines.annotation.project import ensure_project  # noqa: E402
from pipelines.annotation.pull import pull_and_decide, withdraw_stopped  # noqa: E402
from pipelines.annotation.push import push_questions  # noqa: E402
from pipelines.annotation.simulated import run_simulation, simulated_annotators  # noqa: E402

BATCH = "bench"


def questions(n: int, tag: str) -> list[dict]:
    return [{"question_id": f"{tag}-{i:04d}", "image_id": f"img{i % 7}", "question": f"How many things #{i}?",
             "answer": str(1 + i % 6)} for i in range(n)]


def one_run(admin: LabelStudioClient, sims: list, qs: list[dict], error_rate: float, early_stop: bool,
            poll_s: float, seed: int) -> dict:
    pid = int(ensure_project(admin, f"cost-{uuid.uuid4().hex[:8]}")["id"])
    push_questions(admin, pid, qs, lambda i: f"http://127.0.0.1:9/{i}.png", batch=BATCH)
    truths = {q["question_id"]: q["answer"] for q in qs}
    stop = threading.Event()
    withdrawn = [0]

    def poller() -> None:
        with LabelStudioClient(admin.url, admin.token) as client:
            while not stop.wait(poll_s):
                tasks = list(client.iter_tasks(pid, batch=BATCH, fields="all"))
                withdrawn[0] += withdraw_stopped(client, tasks)

    thread = threading.Thread(target=poller, daemon=True)
    if early_stop:
        thread.start()
    try:
        done = run_simulation(sims, pid, truths, error_rate=error_rate, seed=seed)
    finally:
        stop.set()
        if early_stop:
            thread.join()
    result = pull_and_decide(admin, pid, qs, batch=BATCH, early_stop=early_stop)
    cost = result.consensus.cost()
    rows = result.consensus.consensus
    return {
        "submitted": sum(done.values()),
        "counted": cost.annotations,
        "accepted": {r["question_id"]: r["agreed_answer"] for r in rows if r["status"] == "accepted"},
        "pending": sum(r["status"] == "pending" for r in rows),
        "per_accepted": cost.annotations_per_accepted,
        "saved": cost.annotations_saved,
        "withdrawn": withdrawn[0] + result.withdrawn,
    }


def start_private_label_studio(home: Path):
    from pipelines.stack.services import LabelStudio
    from tests.support.stack import free_ports, params_with_ports

    svc = LabelStudio(params_with_ports(free_ports()), home)
    svc.check_ports()
    svc.start()
    svc.wait_healthy(300)
    return svc


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--questions", type=int, default=80)
    ap.add_argument("--error-rates", default="0.05,0.10,0.20")
    ap.add_argument("--ambiguous", type=float, default=0.02, help="share of answers that say ambiguous")
    ap.add_argument("--think-scale", type=float, default=0.01)
    ap.add_argument("--poll-s", type=float, default=0.3)
    ap.add_argument("--seed", type=int, default=19)
    args = ap.parse_args()
    svc = None
    if os.environ.get("HOPCHAIN_LS_URL") and os.environ.get("HOPCHAIN_LS_TOKEN"):
        ls_url, token = os.environ["HOPCHAIN_LS_URL"], os.environ["HOPCHAIN_LS_TOKEN"]
    else:
        work = REPO / "bench" / "_work"
        work.mkdir(parents=True, exist_ok=True)
        print("starting a private Label Studio (first start runs migrations, ~1 min) ...", flush=True)
        svc = start_private_label_studio(Path(tempfile.mkdtemp(prefix="ls-", dir=work)))
        ls_url, token = svc.credentials()["url"], svc.credentials()["token"]
    rows = []
    ok = True
    try:
        with LabelStudioClient(ls_url, token) as admin:
            sims = [dataclasses.replace(s, ambiguous_rate=args.ambiguous, think_scale=args.think_scale,
                                        empty_retries=3, retry_wait_s=0.5)
                    for s in simulated_annotators(admin, token, 4)]
            try:
                for rate in (float(r) for r in args.error_rates.split(",")):
                    qs = questions(args.questions, f"e{int(rate * 100):02d}")
                    with_stop = one_run(admin, sims, qs, rate, True, args.poll_s, args.seed)
                    without = one_run(admin, sims, qs, rate, False, args.poll_s, args.seed)
                    same = with_stop["accepted"] == without["accepted"]
                    ok &= same and not with_stop["pending"] and not without["pending"]
                    a, b = with_stop["per_accepted"], without["per_accepted"]
                    saving = 1 - with_stop["submitted"] / without["submitted"]
                    rows.append((f"{rate:.0%}", str(len(with_stop["accepted"])),
                                 f"{b:.2f}" if b else "-", f"{a:.2f}" if a else "-",
                                 f"{without['submitted']} → {with_stop['submitted']}", f"{saving:.1%}",
                                 str(with_stop["saved"]), str(with_stop["withdrawn"]), "yes" if same else "NO"))
            finally:
                for s in sims:
                    s.client.close()
    finally:
        if svc is not None:
            svc.stop()
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"early stop — {args.questions} questions per rate, 4 simulated annotators, "
                        f"{args.ambiguous:.0%} ambiguous, poll {args.poll_s} s, think ×{args.think_scale} — "
                        f"{cpu_model()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    for col in ("error rate", "accepted", "annotations/accepted without", "with early stop",
                "annotations submitted", "fewer", "saved (consensus rows)", "withdrawn", "same accepted set"):
        table.add_column(col)
    for row in rows:
        table.add_row(*row)
    Console(width=160).print(table)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
