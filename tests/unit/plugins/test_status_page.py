"""The HopChain page renders the ledger (runs → batches → progress → consensus → releases) safely."""

from __future__ import annotations

import pytest

from pipelines.annotation.completion import batch_progress

pytestmark = pytest.mark.unit


class FakeLabelStudio:
    def __init__(self, tasks):
        self.tasks = tasks

    def iter_tasks(self, project_id, batch=None, fields="all"):
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
                     "progress": {"error": "ConnectError"}}],
        "consensus": [{"batch_id": "b0", "accepted": 12, "rejected": 4, "pending": 0, "agreement_rate": 0.75}],
        "releases": [{"tag": "v2026.11.24", "questions": 59, "images": 21, "registry": "/r.git",
                      "card": "releases/v2026.11.24/card/index.html"}],
    }
    page = render_page(data)
    for text in ("manual__1", "Data Docs", "v2026.11.24", "dataset card", "4&#8239;ann:&nbsp;10",
                 "Label Studio unreachable (ConnectError)", "docs/runs/manual__1/datadocs/index.html"):
        assert text in page
    assert "b2<script>" not in page and "b2&lt;script&gt;" in page  # user text is escaped, never markup
