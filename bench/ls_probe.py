"""Time the Label Studio calls of one push against a running stack's project, read-only.

    .venv/bin/python bench/ls_probe.py --home <stack home> [--reps 3] [--chunk 50]

Why: bench/scale.py measured push throughput falling with the project's size (319 tasks/s on an
empty project, 81 with 57,459 tasks in it) without saying which call grows. A push makes two kinds of
request: lookups (``GET /api/tasks`` with a Data Manager filter ``data.image_id in_list [...]``, one per
:data:`pipelines.annotation.push.LOOKUP_CHUNK` images) and imports (``POST /api/projects/<id>/import``).
This probe times the lookup as the push sends it, for images the project holds and for new ones (the
nightly's usual case), next to an unfiltered one-task page; run it while the project grows (e.g.
between the sizes of ``bench/scale.py --one-stack``) and compare. Imports are not probed here: they
would add tasks to the project being measured (their time is in Label Studio's log, see scale.py).
Prints one JSON line.

Batch reads (issue 31, after): ``batch_list_*`` read the project's oldest batch (the first task's), as
before; ``batch_list_newest_s`` / ``batch_list_newest_idbound_s`` read its newest batch (the last task's:
what an open batch is) with the ``data.batch`` filter alone and with the batch's id bound added
(``id >= first_task_id``, :func:`pipelines.annotation.completion.batch_filter`), as the readers now do.

``--log labelstudio.log --since HH:MM:SS [--until HH:MM:SS]`` instead reads a stack's Label Studio log
(Django's access lines, written as each request ends) and estimates each request's time by the gap to the
line before it when both belong to one caller's sequence (a lookup after a lookup or a storage check, an
import after a lookup or an import, a PATCH after a PATCH): medians per kind in the window.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from itertools import islice
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def timed(fn: Any) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


KINDS = (("lookup", "GET /api/tasks/", "image_id"), ("batch_list", "GET /api/tasks/", "batch"),
         ("import", "POST /api/projects/", "/import"), ("patch", "PATCH /api/tasks/", ""),
         ("next", "GET /api/projects/", "/next"), ("storage", "GET /api/storages/", ""))
FOLLOWS = {"lookup": ("lookup", "storage"), "import": ("lookup", "import"), "patch": ("patch",),
           "batch_list": ("batch_list",)}


def kind_of(request: str) -> str | None:
    for kind, head, part in KINDS:
        if request.startswith(head) and part in request:
            return kind
    return None


def log_gaps(path: Path, since: str, until: str) -> dict[str, Any]:
    """Median gap (s) per request kind, in the window [since, until) of the log's clock."""
    from datetime import datetime
    from statistics import median

    prev: tuple[datetime, str | None] | None = None
    last_line = ""
    gaps: dict[str, list[float]] = {}
    for line in path.read_text(errors="replace").splitlines():
        if "django.server" not in line or line == last_line:  # each access line is written twice
            continue
        last_line = line
        stamp = datetime.strptime(line[1:24], "%Y-%m-%d %H:%M:%S,%f")
        if not since <= stamp.strftime("%H:%M:%S") < until:
            prev = None
            continue
        request = line.split('"')[1] if '"' in line else ""
        kind = kind_of(request)
        if prev is not None and kind in FOLLOWS and prev[1] in FOLLOWS[kind]:
            gap = (stamp - prev[0]).total_seconds()
            if gap < 30:
                gaps.setdefault(kind, []).append(gap)
        prev = (stamp, kind)
    return {k: {"n": len(v), "median_s": round(median(v), 3)} for k, v in sorted(gaps.items())}


def main() -> int:
    from pipelines.annotation.client import LabelStudioClient
    from pipelines.annotation.completion import data_in_filter
    from pipelines.annotation.push import tasks_with

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--home", type=Path, help="the stack's home (credentials/labelstudio.json)")
    ap.add_argument("--log", type=Path, help="a Label Studio log to read instead (see the docstring)")
    ap.add_argument("--since", default="00:00:00")
    ap.add_argument("--until", default="24:00:00")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--chunk", type=int, default=50)
    args = ap.parse_args()
    if args.log:
        print(json.dumps({"window": [args.since, args.until], **log_gaps(args.log, args.since, args.until)}))
        return 0
    if args.home is None:
        ap.error("--home or --log")
    creds = json.loads((args.home / "credentials" / "labelstudio.json").read_text())
    out: dict[str, Any] = {"at": time.strftime("%H:%M:%S")}
    with LabelStudioClient(creds["url"], creds["token"], timeout_s=300) as ls:
        projects = [p for p in ls.sdk.projects.list() if (p.task_number or 0) > 0]
        if not projects:
            print(json.dumps({**out, "error": "no project with tasks"}))
            return 1
        project = max(projects, key=lambda p: p.task_number or 0)
        pid = int(project.id)
        out["project_tasks"] = int(project.task_number or 0)
        page = list(islice(ls.iter_tasks(pid, fields="task_only", page_size=200), args.chunk * 4))
        held = sorted({str(t["data"]["image_id"]) for t in page})[: args.chunk]
        new = [hashlib.sha256(f"probe-{i}".encode()).hexdigest() for i in range(args.chunk)]
        for label, ids in (("lookup_held", held), ("lookup_new", new)):
            runs = [timed(lambda ids=ids: tasks_with(ls, pid, "image_id", ids, chunk=args.chunk)) for _ in range(args.reps)]
            out[f"{label}_s"] = round(min(r[0] for r in runs), 3)
            out[f"{label}_fetched"] = runs[0][1].tasks_fetched
        runs = [timed(lambda: next(iter(ls.iter_tasks(pid, fields="task_only", page_size=1)), None))
                for _ in range(args.reps)]
        out["page1_s"] = round(min(r[0] for r in runs), 3)
        # the same lookup for new images, also bounded to the last 2,000 task ids (Label Studio has an
        # index on (project, id)): does an id bound keep the scan from covering the whole project?
        bounded = json.loads(data_in_filter("image_id", new))
        bounded["filters"]["items"].append({"filter": "filter:tasks:id", "operator": "greater", "type": "Number",
                                            "value": max(0, out["project_tasks"] - 2000)})
        query = json.dumps(bounded)
        runs = [timed(lambda: list(ls.iter_tasks(pid, fields="task_only", page_size=1000, query=query)))
                for _ in range(args.reps)]
        out["lookup_new_idbound_s"] = round(min(r[0] for r in runs), 3)
        # what decide / wait / handout read: one batch's tasks with annotations (data.batch equal)
        batch = str(page[0]["data"].get("batch", ""))
        runs = [timed(lambda: list(ls.iter_tasks(pid, batch=batch, fields="all"))) for _ in range(max(1, args.reps - 1))]
        out["batch_list_s"] = round(min(r[0] for r in runs), 3)
        out["batch_list_tasks"] = len(runs[0][1])
        # the newest batch (an open batch is a recent one), unbounded and bounded by its first task id
        newest = next(iter(ls.iter_tasks(pid, fields="task_only", page_size=1,
                                         query=json.dumps({"ordering": ["-tasks:id"]}))))
        batch = str(newest["data"].get("batch", ""))
        reps = max(1, args.reps - 1)
        unbounded = [timed(lambda: list(ls.iter_tasks(pid, batch=batch, fields="all"))) for _ in range(reps)]
        first = min(int(t["id"]) for t in unbounded[0][1])  # what the batch record's first_task_id holds
        bounded = [timed(lambda: list(ls.iter_tasks(pid, batch=batch, fields="all", first_task_id=first)))
                   for _ in range(reps)]
        assert len(bounded[0][1]) == len(unbounded[0][1]), "the id bound lost tasks of the batch"
        out["batch_list_newest_s"] = round(min(r[0] for r in unbounded), 3)
        out["batch_list_newest_idbound_s"] = round(min(r[0] for r in bounded), 3)
        out["batch_list_newest_tasks"] = len(bounded[0][1])
        # one page of one task: the filtered query's own cost per page request (Label Studio runs it ~4 times)
        for label, bound in (("batch_page1_newest", None), ("batch_page1_newest_idbound", first)):
            runs = [timed(lambda bound=bound: next(iter(ls.iter_tasks(pid, batch=batch, fields="all", page_size=1,
                                                                      first_task_id=bound))))
                    for _ in range(args.reps * 2)]
            out[f"{label}_s"] = round(min(r[0] for r in runs), 3)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
