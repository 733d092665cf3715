"""Benchmark: render time of the review workspace's question pages with 600 vs 50,000 questions.

Starts a private SeaweedFS S3 server (free ports, state under bench/_work/ui_page), writes synthetic
ledgers straight into it (:mod:`tests.support.review_data`: decided batches of 200 questions with
manifests, instances with RLE masks, consensus and annotation tables, ledger records and indexes), one
bucket per size, and times the real FastAPI app of the HopChain page (``/hopchain/questions``, HTML,
authenticated user stubbed) in-process: a cold first page (empty caches), the same page warm, a filter
(rejected, one reason), a page deep in the history (reached by its cursor), one run, one overlay PNG.

    .venv/bin/python bench/ui_page.py [--questions 50000] [--small 600] [--repeat 5]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "plugins"))
from _machine import cpu_model  # noqa: E402  (bench/ is on sys.path when run as a script)

os.environ.setdefault("OMP_NUM_THREADS", "1")
PER_BATCH = 200


def seed(store, layout, questions: int) -> tuple[float, int]:  # type: ignore[no-untyped-def]
    from tests.support.review_data import seed_batch

    start = datetime(2026, 1, 1, tzinfo=UTC)
    batches = max(1, questions // PER_BATCH)
    t0 = time.monotonic()
    for b in range(batches):
        run, shard = divmod(b, 10)  # runs of 10 shards
        seed_batch(store, layout, f"run{run:04d}", shard, PER_BATCH, start + timedelta(hours=b), images=2)
    return time.monotonic() - t0, batches


class AppClient:
    """A test client of the HopChain app on ``store``; :meth:`cold` starts a fresh app (empty caches: the
    app owns them, as one api-server process does)."""

    def __init__(self, store, params) -> None:  # type: ignore[no-untyped-def]
        self.store, self.params = store, params
        self.cold()

    def cold(self) -> None:
        from fastapi.testclient import TestClient

        from hopchain_airflow.ui.app import create_app
        from hopchain_airflow.ui.security import require_hopchain_read
        from pipelines.store.ledger import Ledger

        app = create_app(params=self.params, ledger=lambda: Ledger(self.store, self.params.store))
        app.dependency_overrides[require_hopchain_read] = lambda: object()
        self.client = TestClient(app)

    def get(self, path: str, params: dict | None = None):  # type: ignore[no-untyped-def]
        return self.client.get(path, params=params)


def timed(client, path: str, params: dict | None = None, repeat: int = 1, cold=None) -> float:  # type: ignore[no-untyped-def]
    """Median milliseconds of GET ``path`` (``cold``: called before each try to empty the caches)."""
    times = []
    for _ in range(repeat):
        if cold:
            cold()
        t0 = time.perf_counter()
        r = client.get(path, params=params or {})
        times.append((time.perf_counter() - t0) * 1000)
        assert r.status_code == 200, (path, r.status_code, r.text[:300])
    return statistics.median(times)


def measure(store, params, repeat: int, deep_pages: int) -> dict[str, float]:  # type: ignore[no-untyped-def]
    client = AppClient(store, params)
    client.get("/questions")  # the first read of a ledger builds its indexes (once, ever): not timed
    cold = client.cold

    out = {
        "first page, cold caches": timed(client, "/questions", repeat=repeat, cold=cold),
        "first page, warm": timed(client, "/questions", repeat=repeat),
        "status=rejected, cold": timed(client, "/questions", {"status": "rejected"}, repeat, cold),
        "reason=not answerable, cold": timed(client, "/questions", {"reason": "not answerable"}, repeat, cold),
        "one run (run0000), cold": timed(client, "/questions", {"run": "run0000"}, repeat, cold),
    }
    cursor = ""
    for _ in range(deep_pages):  # walk to a page deep in the history, then time that page cold
        page = client.get("/api/questions", params={"cursor": cursor}).json()
        if page["next"] is None:
            break
        nxt = page["next"]
        cursor = f"{nxt['page']}.{nxt['pos']}.{nxt['row']}"
    out["deep page (by its cursor), cold"] = timed(client, "/questions", {"cursor": cursor}, repeat, cold)
    q = client.get("/api/questions").json()["questions"][0]
    out["hop overlay PNG, cold"] = timed(client, f"/overlay/{q['batch_id']}/{q['question_id']}/1.png",
                                         repeat=repeat, cold=cold)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--questions", type=int, default=50_000)
    parser.add_argument("--small", type=int, default=600)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--deep-pages", type=int, default=60)
    args = parser.parse_args()

    from pipelines.config import StoreConfig
    from pipelines.store import ObjectStore, S3Credentials
    from tests.support.stack import running_s3_server

    work = REPO / "bench" / "_work" / "ui_page"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    results = []
    try:
        with running_s3_server(work / "s3home") as svc:
            c = svc.credentials()
            creds = S3Credentials(c["endpoint"], c["access_key"], c["secret_key"])
            for n in (args.small, args.questions):
                bucket = f"ui-bench-{n}"
                store = ObjectStore(creds, bucket)
                store.ensure_bucket()
                sized = svc.params.model_copy(update={"store": StoreConfig(bucket=bucket)})
                seconds, batches = seed(store, sized.store, n)
                print(f"seeded {batches * PER_BATCH} questions in {batches} batches in {seconds:.0f} s", flush=True)
                results.append((batches * PER_BATCH, batches, measure(store, sized, args.repeat, args.deep_pages)))
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print(f"\nreview page bench — machine: {cpu_model()}, {os.cpu_count()} cores; SeaweedFS on loopback; "
          f"20 questions per page; median of {args.repeat}")
    names = list(results[0][2])
    head = f"  {'ms per page':<42}" + "".join(f"{f'{n:,} q / {b} batches':>24}" for n, b, _ in results)
    print(head)
    for i, name in enumerate(names):
        cells = "".join(f"{list(r[2].values())[i]:>24.0f}" for r in results)
        print(f"  {name:<42}{cells}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
