"""Early stop: which tasks leave the labeling stream, and that decisions do not change because of it."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest

from pipelines.annotation.completion import summarize_completion
from pipelines.annotation.consensus import annotation_cost, decide
from pipelines.annotation.early_stop import stopped_questions, withdraw_payload, withdrawals
from pipelines.annotation.labeling import AMBIGUOUS, ANSWERABLE, NOT_ANSWERABLE
from pipelines.annotation.simulated import answer_result
from pipelines.annotation.validate import AnnotationRecord

pytestmark = pytest.mark.unit

T0 = datetime(2026, 1, 1, tzinfo=UTC)
VOTES = ["3", "4", NOT_ANSWERABLE, AMBIGUOUS]


def rec(who: int, vote: str) -> AnnotationRecord:
    answer, verdict = (vote, ANSWERABLE) if vote[0].isdigit() else (None, vote)
    return AnnotationRecord("q", f"a{who}", answer, verdict, T0 + timedelta(minutes=who), 5.0, "", who)


def row(records: list[AnnotationRecord], early_stop: bool = True) -> dict:
    return decide(records, {"q": "3"}, early_stop=early_stop).consensus[0]


def test_every_four_answer_sequence_is_decided_as_before():
    """All 4⁴ sequences: the full answers decide the same with and without early stop; the answers the
    early stop collects (a prefix) are rejected exactly when the full answers are, for the same kind of
    reason unless an answer it never asked for was a verdict (a first verdict: the same reason);
    nothing is rejected that four answers would accept."""
    for votes in itertools.product(VOTES, repeat=4):
        full = [rec(i, v) for i, v in enumerate(votes)]
        before = row(full, early_stop=False)
        assert row(full) == before
        n = next((k for k in range(1, 5) if row(full[:k])["status"] == "rejected"), 4)
        stopped = row(full[:n])
        assert stopped["status"] == before["status"], votes
        if not set(votes[n:]) & {NOT_ANSWERABLE, AMBIGUOUS}:  # else the full answers name a later verdict
            assert stopped["reason"].split(" (")[0] == before["reason"].split(" (")[0], votes
        if before["status"] == "accepted":
            assert n == 4 and stopped == before
        if votes[0] in (NOT_ANSWERABLE, AMBIGUOUS):
            assert n == 1 and stopped["reason"].endswith("(1 of 4)")


def test_partial_answers_that_can_still_agree_stay_pending():
    assert row([rec(0, "3"), rec(1, "3"), rec(2, "3")])["status"] == "pending"
    assert row([rec(0, "3"), rec(1, "4")]) == {
        "question_id": "q", "answers": ["3", "4"], "agreed_answer": None, "matches_generated": False,
        "status": "rejected", "reason": "disagreement (1 vs 1: 3, 4)"}
    assert row([rec(0, "3"), rec(1, "4")], early_stop=False)["status"] == "pending"  # the old rule


def task(tid: int, qid: str, answers: list[tuple[int, object, str]], overlap: int = 4, labeled: bool = False) -> dict:
    anns = [{"id": tid * 10 + i, "completed_by": user, "result": answer_result(value, verdict),
             "created_at": f"2026-01-01T00:0{i}:00Z", "was_cancelled": False}
            for i, (user, value, verdict) in enumerate(answers)]
    return {"id": tid, "data": {"question_id": qid}, "annotations": anns, "overlap": overlap, "is_labeled": labeled,
            "total_annotations": len(anns)}


def test_withdrawals_pick_the_tasks_that_can_no_longer_be_unanimous():
    tasks = [
        task(1, "split", [(1, 3, ANSWERABLE), (2, 5, ANSWERABLE)]),
        task(2, "three-equal", [(1, 3, ANSWERABLE), (2, 3, ANSWERABLE), (3, "3.0", ANSWERABLE)]),
        task(3, "amb", [(1, None, AMBIGUOUS)]),
        task(4, "done-split", [(1, 3, ANSWERABLE), (2, 5, ANSWERABLE)], overlap=2, labeled=True),  # withdrawn
        task(5, "complete", [(u, 3 if u < 4 else 4, ANSWERABLE) for u in range(1, 5)], labeled=True),
        task(6, "same-user-twice", [(1, 3, ANSWERABLE), (1, 5, ANSWERABLE)]),  # the second is not counted
    ]
    assert stopped_questions(tasks) == {"split": "disagreement (1 vs 1: 3, 5)", "amb": "ambiguous (1 of 4)",
                                        "done-split": "disagreement (1 vs 1: 3, 5)"}
    got = withdrawals(tasks)
    assert [(w.task_id, w.overlap) for w in got] == [(1, 2), (3, 1)]
    assert withdraw_payload(got[0]) == {"overlap": 2, "is_labeled": True}
    summary = summarize_completion(tasks, 4, stopped_questions(tasks))
    assert (summary.complete, summary.stopped, summary.total, summary.counter_mismatches) == (4, 3, 6, 0)
    assert summarize_completion(tasks, 4).complete == 1  # without the early stop only the complete one


def test_annotation_cost_per_accepted_and_saved():
    rows = [
        {"status": "accepted", "answers": ["3"] * 4},
        {"status": "accepted", "answers": ["2"] * 4},
        {"status": "rejected", "answers": ["3", "5"]},  # stopped: 2 saved
        {"status": "rejected", "answers": [None]},  # not answerable at once: 3 saved
        {"status": "rejected", "answers": ["3", "3", "3", "4"]},
        {"status": "pending", "answers": ["3"]},  # not decided: not counted
    ]
    cost = annotation_cost(rows)
    assert (cost.annotations, cost.accepted, cost.annotations_per_accepted, cost.annotations_saved) == (15, 2, 7.5, 5)
    assert annotation_cost([{"status": "rejected", "answers": ["1", "2"]}]).annotations_per_accepted is None
    from pipelines.release.card import annotation_cost_metrics  # the card's restatement agrees

    assert annotation_cost_metrics(rows) == {"annotations": 15, "annotations_per_accepted": 7.5,
                                             "annotations_saved": 5}


def test_consensus_records_written_before_the_cost_fields_still_read():
    from pipelines.ledger import ConsensusRecord

    old = {"batch_id": "b", "run_id": "r", "decided_by": "r", "accepted": 1, "rejected": 0, "pending": 0,
           "annotations_rejected": 0, "agreement_rate": 1.0, "decided_at": "2026-01-01T00:00:00Z", "keys": {}}
    rec = ConsensusRecord.model_validate(old)
    assert (rec.annotations_per_accepted, rec.annotations_saved, rec.withdrawn) == (None, 0, 0)
    again = ConsensusRecord.model_validate(rec.model_copy(update={"annotations_per_accepted": 4.5}).to_json())
    assert again.annotations_per_accepted == 4.5
