"""Consensus rules: unanimity after numeric normalisation, reasons, ordering rules, stats."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from pipelines.annotation.consensus import decide
from pipelines.annotation.labeling import AMBIGUOUS, ANSWERABLE, NOT_ANSWERABLE
from pipelines.annotation.validate import AnnotationRecord

pytestmark = pytest.mark.unit

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def rec(
    qid: str,
    who: str,
    answer: str | None,
    verdict: str = ANSWERABLE,
    minute: int = 0,
    lead: float | None = 10.0,
    ann_id: int | None = None,
) -> AnnotationRecord:
    return AnnotationRecord(qid, who, answer, verdict, T0 + timedelta(minutes=minute), lead, "", ann_id)


def four(qid: str, answers: list[str | None], verdicts: list[str] | None = None) -> list[AnnotationRecord]:
    verdicts = verdicts or [ANSWERABLE] * 4
    return [rec(qid, f"a{i}", a, v, minute=i, ann_id=i) for i, (a, v) in enumerate(zip(answers, verdicts, strict=True))]


def by_id(result):
    return {row["question_id"]: row for row in result.consensus}


def test_unanimous_accepted_and_matches_generated():
    res = decide(four("q", ["3"] * 4), {"q": "3.0"})
    row = by_id(res)["q"]
    assert row["status"] == "accepted" and row["agreed_answer"] == "3"
    assert row["matches_generated"] is True and row["answers"] == ["3"] * 4


def test_unanimous_but_generator_wrong():
    row = by_id(decide(four("q", ["4"] * 4), {"q": "3"}))["q"]
    assert row["status"] == "accepted" and row["agreed_answer"] == "4" and row["matches_generated"] is False


def test_three_vs_one_is_rejected_as_disagreement():
    row = by_id(decide(four("q", ["3", "3", "3", "5"]), {"q": "3"}))["q"]
    assert row["status"] == "rejected" and row["reason"].startswith("disagreement (3 vs 1")
    assert row["agreed_answer"] is None and row["matches_generated"] is False


@pytest.mark.parametrize(
    ("verdicts", "reason"),
    [
        ([ANSWERABLE, ANSWERABLE, ANSWERABLE, NOT_ANSWERABLE], "not answerable (1 of 4)"),
        ([NOT_ANSWERABLE] * 4, "not answerable (4 of 4)"),
        ([AMBIGUOUS, ANSWERABLE, ANSWERABLE, ANSWERABLE], "ambiguous (1 of 4)"),
        ([AMBIGUOUS, NOT_ANSWERABLE, ANSWERABLE, ANSWERABLE], "not answerable (1 of 4)"),
    ],
)
def test_not_answerable_and_ambiguous_reasons(verdicts, reason):
    answers = [("3" if v == ANSWERABLE else None) for v in verdicts]
    row = by_id(decide(four("q", answers, verdicts), {"q": "3"}))["q"]
    assert row["status"] == "rejected" and row["reason"] == reason


def test_fewer_than_four_is_pending_and_unannotated_questions_appear():
    res = decide(four("q", ["3", "3", "3", "3"])[:3], {"q": "3", "untouched": "1"})
    rows = by_id(res)
    assert rows["q"]["status"] == "pending" and rows["q"]["reason"] == "3 of 4 annotators so far"
    assert rows["untouched"]["status"] == "pending" and rows["untouched"]["answers"] == []


def test_second_answer_by_same_annotator_and_fifth_annotator_are_ignored_and_reported():
    records = four("q", ["3"] * 4) + [
        rec("q", "a1", "9", minute=10, ann_id=10),  # same annotator again, later, different answer
        rec("q", "a5", "7", minute=11, ann_id=11),  # a fifth distinct annotator
    ]
    res = decide(records, {"q": "3"})
    assert by_id(res)["q"]["status"] == "accepted"
    reasons = sorted((r.code, r.detail) for r in res.ignored)
    assert reasons == [
        ("consensus.beyond_required", "annotator beyond the first 4 distinct ignored"),
        ("consensus.repeat_annotation", "second annotation by the same annotator ignored"),
    ]
    assert {r.item_id for r in res.ignored} == {"q/annotation-10", "q/annotation-11"}


def test_order_is_by_submission_time_not_input_order():
    records = list(reversed(four("q", ["3"] * 4))) + [rec("q", "early", "5", minute=-5, ann_id=99)]
    res = decide(records, {"q": "3"})
    row = by_id(res)["q"]
    # "early" submitted first, so a3 (the last) is the one beyond the fourth
    assert row["status"] == "rejected" and "5" in row["reason"]
    assert [r.detail for r in res.ignored] == ["annotator beyond the first 4 distinct ignored"]
    assert "a3" in res.ignored[0].raw


def test_numeric_normalisation_makes_answers_equal():
    from pipelines.annotation.simulated import answer_result
    from pipelines.annotation.validate import parse_result

    answers = [parse_result(answer_result(v))[0] for v in ("3", "3.0", " 3 ", 3)]
    res = decide(four("q", answers), {"q": 3})
    assert by_id(res)["q"]["status"] == "accepted"


def test_unknown_question_reported():
    res = decide([rec("ghost", "a0", "1")], {"q": "1"})
    assert [(r.code, r.detail) for r in res.ignored] == [
        ("consensus.unknown_question", "annotation of an unknown question")
    ]


def test_annotator_stats_agreement_and_lead_time():
    records = four("q1", ["3"] * 4) + four("q2", ["2", "2", "2", "7"])
    records = [
        (
            r
            if r.annotator != "a3"
            else AnnotationRecord(
                r.question_id, r.annotator, r.answer, r.verdict, r.submitted_at, 30.0, "", r.annotation_id
            )
        )
        for r in records
    ]
    res = decide(records, {"q1": "3", "q2": "2"})
    stats = {s["annotator"]: s for s in res.stats}
    assert stats["a0"]["agreement"] == 1.0 and stats["a0"]["compared"] == 2
    assert stats["a3"]["agreement"] == 0.5 and stats["a3"]["median_lead_time_s"] == 30.0
    assert stats["a0"]["mean_lead_time_s"] == 10.0
    assert res.stats_table().num_rows == 4


def test_tables_conform_to_contracts():
    res = decide(
        four("q", ["3"] * 4)
        + four("p", ["1", None, "1", "1"], [ANSWERABLE, NOT_ANSWERABLE, ANSWERABLE, ANSWERABLE]),
        {"q": "3", "p": "1"},
    )
    assert res.consensus_table().num_rows == 2
    ann = res.annotations_table()
    assert ann.num_rows == 8 and ann.column("answerable").to_pylist().count(False) == 1
    assert res.status_counts() == {"accepted": 1, "rejected": 1, "pending": 0}


def test_every_decision_carries_its_code_beside_its_sentence() -> None:
    from pipelines.contracts.rejects import REASONS

    cases = {
        "decision.unanimous": four("q", ["3", "3", "3", "3"]),
        "decision.pending": [rec("q", "a0", "3")],
        "decision.disagreement": [rec("q", "a0", "3", minute=0), rec("q", "a1", "4", minute=1)],
        "decision.ambiguous": [rec("q", "a0", "3", minute=0), rec("q", "a1", None, AMBIGUOUS, minute=1)],
        "decision.not_answerable": [rec("q", "a0", None, AMBIGUOUS, minute=0),
                                    rec("q", "a1", None, NOT_ANSWERABLE, minute=1)],
    }
    for code, records in cases.items():
        row = by_id(decide(records, {"q": "3"}))["q"]
        assert row["reason_code"] == code and code in REASONS, (code, row)
        assert row["reason"]  # the sentence stays, for people
