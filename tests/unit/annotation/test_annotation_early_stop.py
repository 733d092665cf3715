"""Early stop: which tasks leave the labeling stream, and that decisions do not change because of it."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest

from pipelines.annotation.completion import summarize_completion
from pipelines.annotation.consensus import annotation_cost, decide
from pipelines.annotation.early_stop import stopped_questions
from pipelines.annotation.handout import plan, project_overlap, reconcile_batches
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
        "status": "rejected", "reason": "disagreement (1 vs 1: 3, 4)", "reason_code": "decision.disagreement",
        "answers_source": "people"}
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
    changes, summary = plan(tasks, 4, "parallel")
    assert [(c.task_id, c.overlap, c.is_labeled) for c in changes] == [(1, 2, True), (3, 1, True)]
    assert changes[0].payload() == {"overlap": 2, "is_labeled": True} and changes[0].withdraws
    assert (summary.complete, summary.stopped, summary.total, summary.counter_mismatches) == (4, 3, 6, 0)
    assert summary == summarize_completion(tasks, 4, stopped_questions(tasks))
    assert summarize_completion(tasks, 4).complete == 1  # without the early stop only the complete one
    # early stop switched off: a task it withdrew is opened to everyone again, nothing else changes
    assert [(c.task_id, c.overlap, c.is_labeled) for c in plan(tasks, 4, "parallel", early_stop=False)[0]] == [
        (4, 4, False)]


def test_serial_handout_opens_each_agreeing_task_to_exactly_one_more_annotator():
    tasks = [
        task(1, "fresh", [], overlap=1),  # pushed: one annotator may take it
        task(2, "one", [(1, 3, ANSWERABLE)], overlap=1, labeled=True),  # answered, waiting for the poll
        task(3, "two-agree-open", [(1, 3, ANSWERABLE), (2, 3, ANSWERABLE)], overlap=3),  # already opened
        task(4, "three", [(u, 3, ANSWERABLE) for u in (1, 2, 3)], overlap=3, labeled=True),
        task(5, "split", [(1, 3, ANSWERABLE), (2, 5, ANSWERABLE)], overlap=2, labeled=True),  # withdrawn already
        task(6, "amb", [(1, None, AMBIGUOUS)], overlap=2),  # opened, then the answer was ambiguous
        task(7, "four", [(u, 3, ANSWERABLE) for u in (1, 2, 3, 4)], overlap=4, labeled=True),
        task(8, "held-withdrawn", [(1, 3, ANSWERABLE), (2, 5, ANSWERABLE), (3, 3, ANSWERABLE)],
             overlap=2, labeled=True),  # a holder submitted after the withdrawal: still withdrawn
        task(9, "reset", [(1, 3, ANSWERABLE)], overlap=4),  # parallel before: back to one at a time
    ]
    changes, summary = plan(tasks, 4, "serial")
    assert [(c.question_id, c.overlap, c.is_labeled, c.withdraws) for c in changes] == [
        ("one", 2, False, False), ("three", 4, False, False), ("amb", 1, True, True), ("reset", 2, False, False)]
    assert (summary.total, summary.complete, summary.stopped, summary.counter_mismatches) == (9, 4, 3, 0)
    # after applying the changes, polling again changes nothing
    by_id = {c.task_id: c for c in changes}
    applied = [{**t, "overlap": by_id[t["id"]].overlap, "is_labeled": by_id[t["id"]].is_labeled}
               if t["id"] in by_id else t for t in tasks]
    assert plan(applied, 4, "serial")[0] == []
    # parallel wants every open task at the full overlap
    assert [(c.question_id, c.overlap) for c in plan(applied, 4, "parallel")[0]] == [
        ("fresh", 4), ("one", 4), ("two-agree-open", 4), ("reset", 4)]
    assert project_overlap("serial", 4) == 1 and project_overlap("parallel", 4) == 4


def test_reconcile_sends_one_patch_per_change():
    class Client:
        def __init__(self) -> None:
            self.sent: list[tuple[int, int, bool]] = []
            self.bounds: dict[str, int | None] = {}

        def iter_tasks(self, project_id, batch=None, fields="all", first_task_id=None):
            assert (project_id, fields) == (7, "all")
            self.bounds[batch] = first_task_id
            return iter([task(1, f"{batch}-a", [(1, 3, ANSWERABLE)], overlap=1, labeled=True),
                         task(2, f"{batch}-b", [(1, 3, ANSWERABLE), (2, 4, ANSWERABLE)], overlap=3)])

        def set_task_overlap(self, task_id, overlap, is_labeled):
            self.sent.append((task_id, overlap, is_labeled))

    client = Client()
    done = reconcile_batches(client, 7, ["b1", "b2"], 4, "serial", first_task_ids={"b2": 90})
    assert client.bounds == {"b1": None, "b2": 90}  # each batch read with its record's id bound, if any
    assert client.sent == [(1, 2, False), (2, 2, True)] * 2
    assert (done.opened, done.withdrawn, done.total, done.complete, done.all_complete) == (2, 2, 4, 2, False)
    assert done.reasons == {"b1-b": "disagreement (1 vs 1: 3, 4)", "b2-b": "disagreement (1 vs 1: 3, 4)"}


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
    from pipelines.store.ledger import ConsensusRecord

    old = {"batch_id": "b", "run_id": "r", "decided_by": "r", "accepted": 1, "rejected": 0, "pending": 0,
           "annotations_rejected": 0, "agreement_rate": 1.0, "decided_at": "2026-01-01T00:00:00Z", "keys": {}}
    rec = ConsensusRecord.model_validate(old)
    assert (rec.annotations_per_accepted, rec.annotations_saved, rec.withdrawn) == (None, 0, 0)
    again = ConsensusRecord.model_validate(rec.model_copy(update={"annotations_per_accepted": 4.5}).to_json())
    assert again.annotations_per_accepted == 4.5
