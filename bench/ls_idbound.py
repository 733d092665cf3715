"""Grow one Label Studio project through several sizes and run ``bench/ls_probe.py`` at each (issue 31).

    .venv/bin/python bench/ls_idbound.py [--sizes 1400,10000,25000] [--batch 700] [--reps 3] [--json out.json]

Why: reading one batch (``data.batch`` filter) made Label Studio scan every task of the project; the readers
now add the batch's id bound (``id >= first_task_id``). This bench starts a private Label Studio (under
``bench/_work``, stopped by pid at the end), imports batches of ``--batch`` answered tasks (4 annotations
each, like a decided night; ``image_id`` and ``question_id`` distinct per task) until the project holds each
size, and at each size runs the read-only probe, which times the push's lookup and the oldest and newest
batch reads, the newest unbounded and bounded. Prints one JSON line per size (the probe's), plus the import
time. Nothing else shares this Label Studio, so figures are the server's cost at that size on this machine.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def batch_tasks(batch: int, size: int, user: int) -> list[dict[str, Any]]:
    """One pushed-and-answered batch as the push builds its tasks (no image is ever fetched)."""
    from pipelines.annotation.simulated import answer_result

    out = []
    for i in range(size):
        image_id = hashlib.sha256(f"img-{batch}-{i // 2}".encode()).hexdigest()
        out.append({"data": {"image": f"s3://hopchain/bench/{image_id}.jpg", "question": "How many?",
                             "question_id": hashlib.sha256(f"q-{batch}-{i}".encode()).hexdigest()[:32],
                             "image_id": image_id, "batch": f"night-{batch:04d}.shard-00000"},
                    "annotations": [{"completed_by": user, "result": answer_result(1), "lead_time": 1.0}] * 4})
    return out


def main() -> int:
    from pipelines.annotation.client import LabelStudioClient
    from pipelines.annotation.project import ensure_project
    from tests.support.stack import running_label_studio

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1400,10000,25000", help="project sizes (tasks), ascending")
    ap.add_argument("--batch", type=int, default=700, help="tasks per imported batch (a 500-image push: ~700)")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    work = REPO / "bench" / "_work"
    work.mkdir(parents=True, exist_ok=True)
    results = []
    with running_label_studio(Path(tempfile.mkdtemp(prefix="ls-idbound-", dir=work))) as svc:
        creds = svc.credentials()
        with LabelStudioClient(creds["url"], creds["token"], timeout_s=300) as ls:
            pid = int(ensure_project(ls, "HopChain bench idbound")["id"])
            user = int(ls.whoami()["id"])
            have = batch = 0
            for size in sizes:
                t0 = time.monotonic()
                while have < size:
                    n = min(args.batch, size - have)
                    ls.import_tasks(pid, batch_tasks(batch, n, user))
                    have, batch = have + n, batch + 1
                grown_s = round(time.monotonic() - t0, 1)
                probe = subprocess.run([sys.executable, str(REPO / "bench" / "ls_probe.py"), "--home", str(svc.home),
                                        "--reps", str(args.reps)], capture_output=True, text=True, check=True)
                row = {"size": size, "import_s": grown_s, **json.loads(probe.stdout.strip().splitlines()[-1])}
                print(json.dumps(row), flush=True)
                results.append(row)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
