"""The HopChain page renders the ledger (runs → batches → progress → consensus → releases) safely."""

from __future__ import annotations

import pytest

from pipelines.annotation.completion import batch_progress

pytestmark = pytest.mark.unit


class FakeLabelStudio:
    def __init__(self, tasks):
        self.tasks = tasks

    def iter_tasks(self, project_id, batch=None, fields="all", first_task_id=None):
        return [t for t in self.tasks if t["data"]["batch"] == batch]


def _task(qid: str, batch: str, users: list[int]) -> dict:
    return {"id": hash(qid) % 1000, "data": {"question_id": qid, "batch": batch},
            "annotations": [{"completed_by": u, "was_cancelled": False} for u in users]}


def test_progress_counts_distinct_annotators_per_task() -> None:
    client = FakeLabelStudio([
        _task("q1", "b1", [1, 2, 3, 4]),
        _task("q2", "b1", [1, 1, 2]),        # the same annotator twice counts once
        _task("q3", "b1", []),
        _task("q4", "b2", [1, 2, 3, 4, 5]),  # another batch
    ])
    assert batch_progress(client, 1, "b1", required=4) == {"4": 1, "2": 1, "0": 1}


def test_page_lists_every_level_and_escapes_user_text() -> None:
    from hopchain_airflow.ui.app import render_page

    data = {
        "runs": [{"run_id": "manual__1", "images": 24, "quarantined": 1, "instances": 197, "questions": 84,
                  "rejects": 3, "datadocs": "runs/manual__1/datadocs/index.html"}],
        "batches": [{"batch_id": "b1", "run_id": "manual__1", "questions": 16, "status": "open",
                     "progress": {"4": 10, "2": 6}, "pushed_at": "t"},
                    {"batch_id": "b2<script>", "run_id": "r", "questions": 1, "status": "open",
                     "progress": {"error": "ConnectError"}},
                    {"batch_id": "b3", "run_id": "r", "questions": 2, "status": "open", "progress": {},
                     "held": "project 1 changed outside the platform: maximum_annotations 1 → 4"}],
        "consensus": [{"batch_id": "b0", "accepted": 12, "rejected": 4, "pending": 0, "agreement_rate": 0.75,
                       "annotations_per_accepted": 4.5, "annotations_saved": 6,
                       "integrity": {"integrity.changed_by_other": 3, "integrity.unregistered_annotator": 1},
                       "source": "journal"},
                      {"batch_id": "b-old", "accepted": 0, "rejected": 1, "pending": 0, "agreement_rate": 0.0}],
        "releases": [{"tag": "v2026.11.24", "questions": 59, "images": 21, "registry": "/r.git",
                      "card": "releases/v2026.11.24/card/index.html"}],
    }
    page = render_page(data)
    for text in ("manual__1", "Data Docs", "v2026.11.24", "dataset card", "4&#8239;ann:&nbsp;10",
                 "Label Studio unreachable (ConnectError)", "docs/runs/manual__1/datadocs/index.html"):
        assert text in page
    assert "b2<script>" not in page and "b2&lt;script&gt;" in page  # user text is escaped, never markup
    # the cost of each decided batch (issue 19): annotations per accepted question, saved by the early stop
    assert "annotations / accepted" in page and "saved by early stop" in page
    assert "<td>4.50</td><td>6</td>" in page and "<td>-</td><td>0</td><td>0</td>" in page  # older records
    # issue 26: answers that do not count, by reason; where the decision read them; held batches
    assert "answers not counted" in page and "changed by another account: 3, from an unregistered account: 1" in page
    assert "<b class='error'>4</b>" in page and "<td>journal</td>" in page
    assert "held</b>: project 1 changed outside the platform: maximum_annotations 1 → 4" in page


class DownStore:
    bucket = "hopchain"

    def list(self, prefix, recursive=True):  # type: ignore[no-untyped-def]
        raise ConnectionRefusedError("object store down")

    list_prefixes = list

    def get_bytes(self, key):  # type: ignore[no-untyped-def]
        raise ConnectionRefusedError("object store down")


@pytest.fixture
def app_with():  # type: ignore[no-untyped-def]
    """The page's app with an authenticated user and the ledger on ``store``."""
    from fastapi.testclient import TestClient

    from hopchain_airflow.ui import app as ui
    from pipelines.config import Params
    from pipelines.store.ledger import Ledger

    def make(store, params: Params | None = None):  # type: ignore[no-untyped-def]
        params = params or Params()
        application = ui.create_app(params=params, ledger=lambda: Ledger(store, params.store))
        from airflow.api_fastapi.core_api.security import get_user

        from hopchain_airflow.ui.security import require_hopchain_read

        application.dependency_overrides[get_user] = lambda: object()
        application.dependency_overrides[require_hopchain_read] = lambda: object()
        return TestClient(application)

    return make


def test_the_page_and_the_api_say_502_when_the_object_store_is_down(app_with) -> None:  # type: ignore[no-untyped-def]
    client = app_with(DownStore())
    api = client.get("/api/status")
    assert api.status_code == 502 and "object store unreachable" in api.json()["error"]
    page = client.get("/")
    assert page.status_code == 502 and "object store unreachable" in page.text
    assert client.get("/docs/runs/r1/datadocs/index.html").status_code == 502


def test_the_page_uses_the_configured_annotator_count(app_with) -> None:  # type: ignore[no-untyped-def]
    from datetime import UTC, datetime

    from pipelines.config import AnnotationConfig, Params
    from pipelines.store.ledger import BatchRecord, Ledger
    from tests.support.memory_store import MemoryStore

    params = Params(annotation=AnnotationConfig(annotators_required=3))
    store = MemoryStore()
    t = datetime(2026, 11, 30, tzinfo=UTC)
    Ledger(store, params.store).put_batch(BatchRecord(  # type: ignore[arg-type]
        batch_id="r1.shard-00000", run_id="r1", shard=0, questions=4, project_id=1, status="closed",
        pushed_at=t, deadline=t, questions_key="runs/r1/questions/shard-00000.parquet"))
    client = app_with(store, params)
    assert client.get("/api/status").json()["annotators_required"] == 3
    assert "of 3)" in client.get("/").text
    assert client.get("/docs/runs/r1/missing.html").status_code == 404
    assert client.get("/docs/batches/secret.json").status_code == 404  # only Data Docs and cards are served


def test_the_page_shows_the_newest_records_a_page_at_a_time(app_with) -> None:  # type: ignore[no-untyped-def]
    from datetime import UTC, datetime, timedelta

    from pipelines.config import Params
    from pipelines.store.ledger import BatchRecord, Ledger
    from tests.support.memory_store import MemoryStore

    params = Params()
    store = MemoryStore()
    ledger = Ledger(store, params.store)  # type: ignore[arg-type]
    t = datetime(2026, 11, 30, tzinfo=UTC)
    for i in range(60):
        ledger.put_batch(BatchRecord(batch_id=f"r{i:02d}.shard-00000", run_id=f"r{i:02d}", shard=0, questions=4,
                                     project_id=1, status="closed", pushed_at=t + timedelta(hours=i),
                                     deadline=t, questions_key="runs/r/questions/shard-00000.parquet"))
    client = app_with(store, params)
    first = client.get("/api/status").json()
    assert [b["batch_id"] for b in first["batches"]][:2] == ["r59.shard-00000", "r58.shard-00000"]
    assert len(first["batches"]) == 50 and first["more"] is True
    second = client.get("/api/status", params={"page": 1}).json()
    assert [b["batch_id"] for b in second["batches"]] == [f"r{i:02d}.shard-00000" for i in range(9, -1, -1)]
    assert second["more"] is False
    assert "href='?page=1'>older" in client.get("/").text
    page2 = client.get("/", params={"page": 1}).text
    assert "href='?page=0'>newer" in page2 and "older" not in page2 and "r09.shard-00000" in page2
