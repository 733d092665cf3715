"""``hopchain consensus`` on contract files, outside Airflow."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pytest

from pipelines.cli import main
from pipelines.contracts import read_parquet, to_table, write_parquet_atomic

pytestmark = pytest.mark.unit


def test_consensus_command(tmp_path, capsys):
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    questions = [
        {
            "question_id": q,
            "image_id": "i",
            "question": "?",
            "answer": a,
            "num_hops": 3,
            "hops": "[]",
            "generator": "program",
            "variant": "full",
        }
        for q, a in [("uni", "3"), ("split", "2"), ("na", "1"), ("pend", "4"), ("bad", "5")]
    ]
    rows = []
    for i in range(4):
        rows.append(
            {
                "question_id": "uni",
                "annotator": f"a{i}",
                "answer": [" 3 ", "3.0", "3", "+3"][i],
                "answerable": True,
                "submitted_at": t0 + timedelta(seconds=i),
            }
        )
        rows.append(
            {
                "question_id": "split",
                "annotator": f"a{i}",
                "answer": "2" if i else "9",
                "answerable": True,
                "submitted_at": t0 + timedelta(seconds=i),
            }
        )
        rows.append(
            {
                "question_id": "na",
                "annotator": f"a{i}",
                "answer": None if i == 2 else "1",
                "answerable": i != 2,
                "submitted_at": t0 + timedelta(seconds=i),
            }
        )
        rows.append(
            {
                "question_id": "bad",
                "annotator": f"a{i}",
                "answer": "five" if i == 0 else "5",
                "answerable": True,
                "submitted_at": t0 + timedelta(seconds=i),
            }
        )
    rows.append(
        {"question_id": "pend", "annotator": "a0", "answer": "4", "answerable": True, "submitted_at": t0}
    )
    write_parquet_atomic(to_table(questions, "questions"), tmp_path / "q.parquet")
    write_parquet_atomic(to_table(rows, "annotations"), tmp_path / "a.parquet")
    out = tmp_path / "consensus.parquet"
    code = main(
        [
            "consensus",
            "--annotations",
            str(tmp_path / "a.parquet"),
            "--questions",
            str(tmp_path / "q.parquet"),
            "--out",
            str(out),
        ]
    )
    assert code == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["accepted"] == 1 and summary["rejected"] == 2 and summary["pending"] == 2
    table = read_parquet(out, "consensus")
    got = {r["question_id"]: (r["status"], r["reason"].split(" (")[0]) for r in table.to_pylist()}
    assert got == {
        "uni": ("accepted", "unanimous"),
        "split": ("rejected", "disagreement"),
        "na": ("rejected", "not answerable"),
        "pend": ("pending", "1 of 4 annotators so far"),
        "bad": ("pending", "3 of 4 annotators so far"),
    }
    rejects = read_parquet(tmp_path / "consensus.rejects.parquet", "rejects").to_pylist()
    assert [(r["item_id"], r["code"], r["detail"]) for r in rejects] == [
        ("bad/row-3", "result.non_numeric_answer", "non-numeric answer 'five'")
    ]
    stats = pa.parquet.read_table(tmp_path / "consensus.annotators.parquet").to_pylist()
    assert {s["annotator"] for s in stats} == {"a0", "a1", "a2", "a3"}


def test_consensus_command_uses_verdict_column_when_present(tmp_path, capsys):
    from pipelines.annotation.pull import detail_table
    from pipelines.annotation.validate import AnnotationRecord

    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    recs = [
        AnnotationRecord(
            "q", f"a{i}", None if i == 0 else "2", "ambiguous" if i == 0 else "answerable", t0, 3.0, "", i
        )
        for i in range(4)
    ]
    write_parquet_atomic(detail_table(recs), tmp_path / "a.parquet")
    write_parquet_atomic(
        to_table(
            [
                {
                    "question_id": "q",
                    "image_id": "i",
                    "question": "?",
                    "answer": "2",
                    "num_hops": 3,
                    "hops": "[]",
                    "generator": "g",
                    "variant": "full",
                }
            ],
            "questions",
        ),
        tmp_path / "q.parquet",
    )
    assert (
        main(
            [
                "consensus",
                "--annotations",
                str(tmp_path / "a.parquet"),
                "--questions",
                str(tmp_path / "q.parquet"),
                "--out",
                str(tmp_path / "c.parquet"),
                "--required",
                "4",
            ]
        )
        == 0
    )
    row = read_parquet(tmp_path / "c.parquet", "consensus").to_pylist()[0]
    assert row["status"] == "rejected" and row["reason"] == "ambiguous (1 of 4)"
