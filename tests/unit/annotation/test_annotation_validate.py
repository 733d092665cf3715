"""Validation of raw Label Studio annotations: known fields, numeric answers, cancelled, verdicts."""

from __future__ import annotations

import pytest

from pipelines.annotation.simulated import answer_result
from pipelines.annotation.validate import InvalidAnnotation, parse_result, validate_task_annotations

pytestmark = pytest.mark.unit


def ann(result, user=1, ann_id=1, cancelled=False, lead=5.0):
    return {
        "id": ann_id,
        "result": result,
        "completed_by": user,
        "was_cancelled": cancelled,
        "created_at": "2026-01-01T00:00:00.123Z",
        "lead_time": lead,
    }


def task(qid, *anns):
    return {"id": 7, "data": {"question_id": qid}, "annotations": list(anns)}


def test_valid_answer_is_canonicalised():
    assert parse_result(answer_result("2.50")) == ("2.5", "answerable", "")


def test_answer_without_verdict_counts_as_answerable():
    result = [r for r in answer_result(4) if r["from_name"] == "answer"]
    assert parse_result(result) == ("4", "answerable", "")


@pytest.mark.parametrize(
    ("result", "code", "reason"),
    [
        (answer_result("three"), "result.non_numeric_answer", "non-numeric answer 'three'"),
        (answer_result(3, extra=[{"from_name": "bbox", "value": {}}]), "result.unknown_field",
         "unknown field 'bbox'"),
        (answer_result(None), "result.answerable_without_answer", "verdict 'answerable' without a numeric answer"),
        ([], "result.empty", "empty annotation: no answer and no verdict"),
        ({"answer": 3}, "result.malformed", "malformed result: expected a list, got dict"),
        (answer_result(3) + answer_result(4)[:1], "result.repeated_field", "field 'answer' given twice"),
        (answer_result(3, verdict="maybe"), "result.invalid_verdict", "invalid verdict ['maybe'] (expected one of"),
    ],
)
def test_invalid_results_are_refused_with_reason(result, code, reason):
    with pytest.raises(InvalidAnnotation) as err:
        parse_result(result)
    assert err.value.code == code
    assert str(err.value).startswith(reason)


def test_not_answerable_drops_any_number_and_keeps_comment():
    result = answer_result(
        5, verdict="not answerable", extra=[{"from_name": "comment", "value": {"text": ["no dogs visible"]}}]
    )
    assert parse_result(result) == (None, "not answerable", "no dogs visible")


def test_validate_tasks_records_and_rejects():
    tasks = [
        task(
            "q1",
            ann(answer_result(3), user=1, ann_id=1),
            ann(answer_result("x"), user=2, ann_id=2),
            ann(answer_result(3), user=3, ann_id=3, cancelled=True),
            ann(answer_result(3), user=None, ann_id=4),
        )
    ]
    records, rejects = validate_task_annotations(tasks, {1: "ann@example.com"})
    assert [(r.question_id, r.annotator, r.answer, r.lead_time_s, r.task_id) for r in records] == [
        ("q1", "ann@example.com", "3", 5.0, 7)
    ]
    assert records[0].submitted_at.tzinfo is not None
    assert {r.item_id: (r.code, r.detail) for r in rejects} == {
        "q1/annotation-2": ("result.non_numeric_answer", "non-numeric answer 'x'"),
        "q1/annotation-3": ("annotation.cancelled", "cancelled (skipped) annotation ignored"),
        "q1/annotation-4": ("annotation.no_annotator", "annotation without completed_by"),
    }
    assert all(r.stage == "annotation" and r.raw for r in rejects)
