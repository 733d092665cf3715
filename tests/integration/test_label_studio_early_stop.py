"""Early stop and the handout against a real Label Studio 1.23: the labeling pass (``pipelines.annotation.tend``,
what DAG ``hopchain_labeling`` runs) hands each task to one annotator at a time (serial) and withdraws a
question from the ``/next`` labeling stream at its first disagreement, while the annotation wait's trigger
(driven by asyncio, no Airflow DB) only watches; the decision rejects a stopped question as the same
answers are rejected without the early stop."""

from __future__ import annotations

import asyncio
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote

import pytest

from pipelines.annotation.client import LabelStudioClient, LabelStudioCredentials
from pipelines.annotation.consensus import decide
from pipelines.annotation.labeling import AMBIGUOUS, ANSWERABLE
from pipelines.annotation.project import ensure_project
from pipelines.annotation.pull import pull_and_decide
from pipelines.annotation.push import push_questions
from pipelines.annotation.simulated import answer_result
from pipelines.annotation.tend import BatchRef, Tending, tend
from pipelines.annotation.validate import validate_task_annotations
from tests.support.stack import annotator_accounts

PLUGINS = str(Path(__file__).resolve().parents[2] / "plugins")
if PLUGINS not in sys.path:
    sys.path.insert(0, PLUGINS)

pytestmark = pytest.mark.integration
BATCH = "batch-1"


@pytest.fixture(scope="module")
def setup(label_studio):
    """The admin and five annotator accounts, each with its own token (its own ``/next`` stream)."""
    creds = LabelStudioCredentials.from_mapping(label_studio.credentials())
    admin = LabelStudioClient.from_credentials(creds)
    people = [client for _, client in annotator_accounts(admin, "stopper", 5)]
    yield creds, admin, people
    for c in [admin, *people]:
        c.close()


@pytest.fixture(autouse=True)
def ls_connection(setup, monkeypatch) -> str:
    creds = setup[0]
    host_port = creds.url.split("://", 1)[1]
    monkeypatch.setenv("AIRFLOW_CONN_LS_EARLY_STOP",
                       f"label-studio://:{quote(creds.token, safe='')}@{host_port}?timeout_s=5")
    return "ls_early_stop"


def make_project(admin: LabelStudioClient, qids: list[str], handout: str = "serial"
                 ) -> tuple[int, list[dict], dict[str, int]]:
    pid = int(ensure_project(admin, f"stop-{uuid.uuid4().hex[:8]}", handout=handout)["id"])
    qs = [{"question_id": q, "image_id": "i", "question": "How many?", "answer": "3"} for q in qids]
    push_questions(admin, pid, qs, lambda _: "http://127.0.0.1:9/i.png", batch=BATCH)
    tasks = {t["data"]["question_id"]: int(t["id"]) for t in admin.iter_tasks(pid, fields="task_only")}
    return pid, qs, tasks


def wait_once(pid: int, early_stop: bool = True, handout: str = "serial") -> dict:
    """Run the annotation wait's trigger (what the triggerer rebuilds from its JSON) for ~1 s."""
    from hopchain_airflow.triggers.annotation import AnnotationCompleteTrigger

    deadline = (datetime.now(UTC) + timedelta(seconds=1.0)).isoformat()
    _, kwargs = AnnotationCompleteTrigger(pid, BATCH, deadline, poll_interval_s=0.3, conn_id="ls_early_stop",
                                          request_timeout_s=5, early_stop=early_stop, handout=handout).serialize()

    async def first() -> dict:
        async for event in AnnotationCompleteTrigger(**kwargs).run():
            return event.payload
        raise AssertionError("no event")

    return asyncio.run(first())


def tend_once(admin: LabelStudioClient, pid: int, early_stop: bool = True, handout: str = "serial",
              batches: tuple[str, ...] = (BATCH,)) -> dict:
    """One pass of the one module that acts on tasks (what ``hopchain_labeling`` runs every minute), then
    what the annotation wait's trigger sees (it only reads): the trigger's event with the pass's
    ``opened`` / ``withdrawn``."""
    report = tend(admin, Tending(batches=[BatchRef(pid, b) for b in batches], required=4,
                                 handout=handout, early_stop=early_stop))  # type: ignore[arg-type]
    before = {int(t["id"]): (t["overlap"], t["is_labeled"]) for t in admin.iter_tasks(pid, fields="task_only")}
    event = wait_once(pid, early_stop, handout)
    after = {int(t["id"]): (t["overlap"], t["is_labeled"]) for t in admin.iter_tasks(pid, fields="task_only")}
    assert before == after, "the wait's trigger changed a task"  # it watches, never acts
    return {**event, "opened": report.opened, "withdrawn": report.withdrawn}


def qid_of(task: dict | None) -> str | None:
    return None if task is None else str(task["data"]["question_id"])


def answer(client: LabelStudioClient, task_id: int, value: object, verdict: str = ANSWERABLE) -> None:
    client.create_annotation(task_id, answer_result(value, verdict), lead_time_s=5.0)


def test_serial_handout_gives_a_task_to_one_annotator_at_a_time_and_stops_it_at_its_first_disagreement(setup):
    """Everything through ``/next``, as people work: a pushed task goes to one annotator; after each
    agreeing answer the labeling pass opens it to exactly one more; after two different answers a
    fifth annotator never receives it; three equal answers stay available for the fourth."""
    _, admin, people = setup
    p0, p1, p2, p3, p4 = people
    pid, qs, task = make_project(admin, ["x", "y"])
    assert admin.get_task(task["x"])["overlap"] == 1  # the project asks for one annotation at a time
    first, second = p0.next_task(pid), p1.next_task(pid)
    assert {qid_of(first), qid_of(second)} == {"x", "y"}  # one task each: nobody shares a task
    assert p2.next_task(pid) is None  # both held
    split, agree = (first, second) if qid_of(first) == "x" else (second, first)
    holder = {qid_of(first): p0, qid_of(second): p1}
    answer(holder["x"], int(split["id"]), 3)
    answer(holder["y"], int(agree["id"]), 3)
    assert p2.next_task(pid) is None  # answered: closed until the labeling pass sees the answers agree

    event = tend_once(admin, pid)
    assert (event["opened"], event["withdrawn"], event["complete"]) == (2, 0, 0)
    assert {(t["overlap"], t["is_labeled"]) for t in map(admin.get_task, task.values())} == {(2, False)}
    third, fourth = p2.next_task(pid), p3.next_task(pid)
    assert {qid_of(third), qid_of(fourth)} == {"x", "y"}
    answerer = {qid_of(third): p2, qid_of(fourth): p3}
    answer(answerer["x"], task["x"], 5)  # x: 3 then 5, can no longer be unanimous
    answer(answerer["y"], task["y"], 3)

    event = tend_once(admin, pid)
    assert (event["stopped"], event["complete"], event["opened"]) == (1, 1, 1)
    assert (admin.get_task(task["x"])["overlap"], admin.get_task(task["x"])["is_labeled"]) == (2, True)
    assert qid_of(p4.next_task(pid)) == "y"  # the fifth annotator gets y, never x
    answer(p4, task["y"], 3)
    tend_once(admin, pid)
    last = next(p for p in people if p not in (holder["y"], answerer["y"], p4))
    assert qid_of(last.next_task(pid)) == "y"  # three equal answers: available for the fourth
    answer(last, task["y"], 3)
    assert all(p.next_task(pid) is None for p in people)

    result = pull_and_decide(admin, pid, qs, batch=BATCH)
    rows = {r["question_id"]: r for r in result.consensus.consensus}
    assert (rows["y"]["status"], rows["y"]["agreed_answer"]) == ("accepted", "3")
    assert (rows["x"]["status"], rows["x"]["reason"]) == ("rejected", "disagreement (1 vs 1: 3, 5)")
    assert result.consensus.cost().annotations_saved == 2 and result.withdrawn == 0


def test_every_open_batch_is_handed_out_whatever_the_wait_waits_for(setup):
    """A batch pushed while a wait runs is waited for by the next run; the labeling pass hands out every
    open batch meanwhile, so its tasks do not stop after one answer."""
    _, admin, people = setup
    pid, qs, task = make_project(admin, ["waited"])
    later = [{"question_id": "later", "image_id": "i", "question": "How many?", "answer": "3"}]
    push_questions(admin, pid, later, lambda _: "http://127.0.0.1:9/i.png", batch="batch-2")
    later_id = next(int(t["id"]) for t in admin.iter_tasks(pid, batch="batch-2", fields="task_only"))
    answer(people[0], later_id, 3)
    assert admin.get_task(later_id)["is_labeled"] is True  # one answer: closed until a handout

    event = tend_once(admin, pid, batches=(BATCH, "batch-2"))  # the wait waits for batch-1 only
    assert [b["batch"] for b in event["batches"]] == [BATCH] and event["total"] == 1
    assert event["opened"] == 1
    assert (admin.get_task(later_id)["overlap"], admin.get_task(later_id)["is_labeled"]) == (2, False)
    assert qid_of(people[1].next_task(pid)) == "later"  # answered questions are served first


def test_disagreement_leaves_the_stream_three_equal_stay_for_the_fourth(setup):
    """The parallel handout (every task open to four at once): a holder may still submit."""
    _, admin, people = setup
    p0, p1, p2, p3, p4 = people
    pid, qs, task = make_project(admin, ["split", "agree"], handout="parallel")
    answer(p0, task["split"], 3)
    answer(p1, task["split"], 5)  # two different answers: can no longer be unanimous
    for p in (p0, p1, p2):
        answer(p, task["agree"], 3)
    held = p2.next_task(pid)  # p2 opens "split" before the stop: it holds the task
    assert qid_of(held) == "split"

    event = tend_once(admin, pid, handout="parallel")
    assert (event["stopped"], event["withdrawn"], event["complete"], event["total"]) == (1, 1, 1, 2)
    split = admin.get_task(task["split"])
    assert split["overlap"] == 2 and split["is_labeled"] is True
    assert tend_once(admin, pid, handout="parallel")["withdrawn"] == 0  # already withdrawn: nothing sent again

    answer(p2, task["split"], 3)  # the holder may still submit; the answer is kept and counted
    assert qid_of(p3.next_task(pid)) == "agree"  # three equal answers: still in the stream
    answer(p3, task["agree"], 3)
    assert p3.next_task(pid) is None
    assert p4.next_task(pid) is None  # a fifth annotator never receives the stopped task

    result = pull_and_decide(admin, pid, qs, batch=BATCH, handout="parallel")
    rows = {r["question_id"]: r for r in result.consensus.consensus}
    assert (rows["agree"]["status"], rows["agree"]["agreed_answer"]) == ("accepted", "3")
    assert rows["split"]["status"] == "rejected"
    assert rows["split"]["reason"] == "disagreement (2 vs 1: 3, 5)"
    assert rows["split"]["answers"] == ["3", "5", "3"]  # the holder's late answer counted
    cost = result.consensus.cost()
    assert (cost.annotations, cost.annotations_per_accepted, cost.annotations_saved) == (7, 7.0, 1)
    assert result.withdrawn == 0  # the labeling pass already did it


def test_ambiguous_stops_at_once(setup):
    _, admin, people = setup
    pid, qs, task = make_project(admin, ["amb"])
    answer(people[0], task["amb"], None, AMBIGUOUS)
    assert tend_once(admin, pid)["stopped"] == 1
    for p in people[1:]:
        assert p.next_task(pid) is None
    rows = pull_and_decide(admin, pid, qs, batch=BATCH).consensus.consensus
    assert [(r["status"], r["reason"]) for r in rows] == [("rejected", "ambiguous (1 of 4)")]


def test_a_stopped_decision_equals_the_same_answers_without_early_stop(setup):
    """Two projects get the same answers in the same order. With the early stop the questions leave
    the stream at their first disagreement; without it they collect four answers. Every question is
    decided the same (status, and the reason's kind; for a verdict the whole reason), and a
    stopped question's decision is what the offline consensus gives its answers."""
    _, admin, people = setup
    plan = {  # the answers of annotators 0..3, in order
        "q-equal": [3, 3, 3, 3],
        "q-late-split": [3, 3, 3, 4],
        "q-split": [3, 5, 3, 3],
        "q-amb": [3, (None, AMBIGUOUS), 3, 3],
        "q-not": [(None, "not answerable"), 3, 3, 3],
    }
    decisions = {}
    for early_stop in (True, False):
        handout = "serial" if early_stop else "parallel"  # early stop as configured, and as it was before
        pid, qs, task = make_project(admin, list(plan), handout)
        for k in range(4):
            for qid, answers in plan.items():
                value, verdict = answers[k] if isinstance(answers[k], tuple) else (answers[k], ANSWERABLE)
                if early_stop and admin.get_task(task[qid])["is_labeled"]:
                    continue  # withdrawn: the stream would not give it to this annotator
                answer(people[k], task[qid], value, verdict)
            tend_once(admin, pid, early_stop, handout)
        result = pull_and_decide(admin, pid, qs, batch=BATCH, early_stop=early_stop, handout=handout)
        decisions[early_stop] = {r["question_id"]: r for r in result.consensus.consensus}
        if early_stop:
            tasks = list(admin.iter_tasks(pid, batch=BATCH, fields="all"))
            records, _ = validate_task_annotations(tasks)
            offline = decide(records, {q["question_id"]: q["answer"] for q in qs})
            assert offline.consensus == result.consensus.consensus
            assert result.consensus.cost().annotations_saved == 2 + 2 + 3  # split, amb, not: 4 - answers given
    stopped, full = decisions[True], decisions[False]
    for qid in plan:
        assert stopped[qid]["status"] == full[qid]["status"], qid
        assert stopped[qid]["reason"].split(" (")[0] == full[qid]["reason"].split(" (")[0], qid
    assert stopped["q-equal"] == full["q-equal"] and stopped["q-equal"]["status"] == "accepted"
    assert stopped["q-late-split"] == full["q-late-split"]  # the fourth answer breaks it: nothing saved
    assert stopped["q-amb"]["reason"] == full["q-amb"]["reason"] == "ambiguous (1 of 4)"
    assert stopped["q-not"]["reason"] == full["q-not"]["reason"] == "not answerable (1 of 4)"
    assert stopped["q-split"]["answers"] == ["3", "5"] and len(full["q-split"]["answers"]) == 4
