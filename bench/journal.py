"""Annotation journal: what the snapshots cost (objects, bytes, seconds per 1,000 annotations).

    .venv/bin/python bench/journal.py [--annotations 1000,4000] [--passes 100]

Against a real SeaweedFS S3 server (private, on a free 127.0.0.1 port). Synthetic Label Studio tasks
(four annotations each, Label Studio 1.23's annotation JSON) are journaled the way the platform meets
them: the answers arrive over ``--passes`` passes of ``hopchain_labeling``'s tend (a labeling window of
that many minutes; each pass a fresh process, so a fresh :class:`~pipelines.annotation.journal.Journal`,
reading the batch's tasks as they stand), then a decision reads the batch back from a fresh process. Printed: objects and bytes written per 1,000
annotations, seconds per 1,000 annotations for journaling and for reading back, and the ratio of the
largest size to the smallest per annotation (flat = linear cost).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from _machine import cpu_model  # noqa: E402

from pipelines.annotation.journal import Journal  # noqa: E402
from pipelines.annotation.simulated import answer_result  # noqa: E402
from pipelines.store import ObjectStore, S3Credentials  # noqa: E402
from tests.support.stack import running_s3_server  # noqa: E402

T0 = datetime(2026, 12, 1, tzinfo=UTC)


def annotations(n: int) -> list[tuple[int, dict]]:
    """(task id, annotation JSON) for ``n`` annotations, four per task."""
    out = []
    for i in range(n):
        tid, user = 1000 + i // 4, 10 + i % 4
        out.append((tid, {"id": i + 1, "completed_by": user, "updated_by": user,
                          "created_at": (T0 + timedelta(seconds=i)).isoformat(),
                          "updated_at": (T0 + timedelta(seconds=i)).isoformat(), "was_cancelled": False,
                          "lead_time": 12.5, "result": answer_result(3 + i % 2)}))
    return out


def tasks_of(anns: list[tuple[int, dict]]) -> list[dict]:
    by: dict[int, list[dict]] = {}
    for tid, a in anns:
        by.setdefault(tid, []).append(a)
    return [{"id": tid, "data": {"question_id": f"q{tid}", "batch": "b"}, "annotations": a} for tid, a in by.items()]


def run(store: ObjectStore, n: int, passes: int, tag: str) -> dict:
    prefix = f"bench-journal-{tag}-{n}"
    anns = annotations(n)
    per_pass = (n + passes - 1) // passes
    t0 = time.perf_counter()
    for p in range(passes):  # each pass: a fresh process reads the tasks of the batch as they stand
        Journal(store, prefix).append(1, "b", tasks_of(anns[: (p + 1) * per_pass]), now=T0 + timedelta(minutes=p))
    write_s = time.perf_counter() - t0
    keys = list(store.list(prefix + "/"))
    size = sum(len(store.get_bytes(k)) for k in keys)
    t0 = time.perf_counter()
    view = Journal(store, prefix).view(1, "b")
    read_s = time.perf_counter() - t0
    assert len(view) == n
    store.delete_prefix(prefix + "/")
    return {"n": n, "passes": passes, "objects": len(keys), "bytes": size, "write_s": write_s, "read_s": read_s}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--annotations", default="1000,4000")
    ap.add_argument("--passes", type=int, default=100)
    args = ap.parse_args()
    sizes = [int(x) for x in args.annotations.split(",")]
    print(f"machine: {cpu_model()}; SeaweedFS on 127.0.0.1; the answers arrive over {args.passes} tend passes, "
          "each pass a fresh Journal (as each Airflow task is a fresh process)")
    with tempfile.TemporaryDirectory() as home, running_s3_server(Path(home)) as svc:
        c = svc.credentials()
        store = ObjectStore(S3Credentials(c["endpoint"], c["access_key"], c["secret_key"]), "hopchain")
        rows = [run(store, n, args.passes, str(int(time.time()))) for n in sizes]
    print()
    print("| annotations | passes | objects / 1,000 | KB / 1,000 | journal s / 1,000 | read back s / 1,000 |")
    print("|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        k = r["n"] / 1000
        print(f"| {r['n']:,} | {r['passes']:,} | {r['objects'] / k:,.1f} | {r['bytes'] / 1024 / k:,.0f} | "
              f"{r['write_s'] / k:.2f} | {r['read_s'] / k:.3f} |")
    a, z = rows[0], rows[-1]
    ratio = (z["write_s"] / z["n"]) / (a["write_s"] / a["n"])
    print(f"\njournal cost per annotation, {z['n']:,} vs {a['n']:,} annotations: {ratio:.2f}x (1.0 = linear)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
