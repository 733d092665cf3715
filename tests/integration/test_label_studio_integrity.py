"""Each counted answer is its author's, against a real Label Studio 1.23 and a real S3 server.

Annotator accounts do what Community Edition lets any of them do: overwrite another's annotation,
create one in another's name, change their own after it was seen; an unregistered account and the
platform's own account answer too. The platform journals what it sees (tend), counts only what its
authors handed in, and sends the task back to the labeling stream for a fresh answer.
"""

from __future__ import annotations

import json
import uuid

import pytest

from pipelines.annotation.client import LabelStudioClient, LabelStudioCredentials
from pipelines.annotation.integrity import (
    CHANGED_AFTER_SEEN,
    CHANGED_BY_OTHER,
    PLATFORM_ACCOUNT,
    UNREGISTERED,
)
from pipelines.annotation.journal import Journal
from pipelines.annotation.project import ensure_project
from pipelines.annotation.pull import decide_batch
from pipelines.annotation.push import push_questions
from pipelines.annotation.registry import AnnotatorRegistry
from pipelines.annotation.simulated import answer_result
from pipelines.annotation.tend import BatchRef, Tending, tend
from tests.support.stack import annotator_accounts

pytestmark = pytest.mark.integration
BATCH = "batch-integrity"


@pytest.fixture(scope="module")
def people(label_studio):
    creds = LabelStudioCredentials.from_mapping(label_studio.credentials())
    admin = LabelStudioClient.from_credentials(creds)
    accounts = annotator_accounts(admin, "honest", 6)
    yield admin, accounts
    for c in [admin, *(c for _, c in accounts)]:
        c.close()


def _ids(client: LabelStudioClient) -> int:
    return int(client.whoami()["id"])


def _setup(admin, accounts, object_store, qids):
    pid = int(ensure_project(admin, f"integrity-{uuid.uuid4().hex[:8]}")["id"])
    qs = [{"question_id": q, "image_id": "i", "question": "How many?", "answer": "3"} for q in qids]
    push_questions(admin, pid, qs, lambda _: "http://127.0.0.1:9/i.png", batch=BATCH)
    tasks = {t["data"]["question_id"]: int(t["id"]) for t in admin.iter_tasks(pid, fields="task_only")}
    registry = AnnotatorRegistry()
    platform = frozenset({_ids(admin)})
    for account, client in accounts[:5]:  # the sixth account is not registered
        registry.register(_ids(client), account.email, platform=platform)
    journal = Journal(object_store, f"journal-{uuid.uuid4().hex[:8]}")
    tending = Tending([BatchRef(pid, BATCH)], required=4, handout="parallel", journal=journal, registry=registry,
                      platform=platform)
    return pid, qs, tasks, registry, platform, journal, tending


def test_overwrite_forge_and_late_change_do_not_count(people, object_store):
    admin, accounts = people
    a = [c for _, c in accounts]
    pid, qs, tasks, registry, platform, journal, tending = _setup(admin, accounts, object_store, ["q-over", "q-forge"])

    # q-over: four registered annotators answer 3; the platform sees them
    anns = [a[i].create_annotation(tasks["q-over"], answer_result(3, "answerable")) for i in range(4)]
    first = tend(admin, tending)
    assert first.journaled == 4 and not first.integrity

    # the first annotator overwrites the second's answer (one API call, allowed by Label Studio CE)
    a[0].sdk.annotations.update(id=int(anns[1]["id"]), result=answer_result(5, "answerable"))
    # the third changes their own answer after the platform saw it
    a[2].sdk.annotations.update(id=int(anns[2]["id"]), result=answer_result(4, "answerable"))
    # q-forge: the first annotator creates an annotation in the fourth's name
    forged = a[0].sdk.annotations.create(tasks["q-forge"], result=answer_result(3, "answerable"),
                                         completed_by=_ids(a[3]))
    assert int(forged.completed_by) == _ids(a[3])  # Label Studio CE accepts it
    # an unregistered account and the platform's own account answer q-forge too
    a[5].create_annotation(tasks["q-forge"], answer_result(3, "answerable"))
    admin.create_annotation(tasks["q-forge"], answer_result(3, "answerable"))

    second = tend(admin, tending)
    assert second.integrity == {CHANGED_BY_OTHER: 2, CHANGED_AFTER_SEEN: 1, UNREGISTERED: 1, PLATFORM_ACCOUNT: 1}

    result = decide_batch(admin, pid, BATCH, qs, 4, {u: e for u, e in ((x.user_id, x.email)
                                                                       for x in registry.annotators)},
                          early_stop=True, handout="parallel", journal=journal, registry=registry,
                          platform=platform)
    rows = {r["question_id"]: r for r in result.consensus.consensus}
    # two of q-over's four answers no longer count: not unanimous-by-four, pending for fresh answers
    assert rows["q-over"]["status"] == "pending" and rows["q-over"]["answers"] == ["3", "3"]
    assert rows["q-forge"]["status"] == "pending" and rows["q-forge"]["answers"] == []
    codes = sorted(r.code for r in result.uncounted)
    assert codes == sorted([CHANGED_BY_OTHER, CHANGED_BY_OTHER, CHANGED_AFTER_SEEN, UNREGISTERED, PLATFORM_ACCOUNT])
    detail = {json.loads(r.raw)["annotation_id"]: r.code for r in result.uncounted}
    assert detail[int(anns[1]["id"])] == CHANGED_BY_OTHER and detail[int(anns[2]["id"])] == CHANGED_AFTER_SEEN

    # the task went back to the stream: the fifth registered annotator (who has not answered) gets it
    task = admin.get_task(tasks["q-over"])
    assert int(task["overlap"]) == 4 + 2 and task["is_labeled"] is False
    got = a[4].next_task(pid)
    assert got is not None and int(got["id"]) in (tasks["q-over"], tasks["q-forge"])

    # what the journal holds: the first-seen answers and every change since, append-only
    view = journal.view(pid, BATCH)
    assert [v["content"] == view.first(int(anns[1]["id"]))["content"]
            for v in view.versions[int(anns[1]["id"])]] == [True, False]


def test_journal_survives_and_decides_alone(people, object_store):
    """Answers journaled by a pass decide the batch identically from the store alone."""
    admin, accounts = people
    a = [c for _, c in accounts]
    pid, qs, tasks, registry, platform, journal, tending = _setup(admin, accounts, object_store, ["q-1", "q-2"])
    for i in range(4):
        a[i].create_annotation(tasks["q-1"], answer_result(3, "answerable"))
        a[i].create_annotation(tasks["q-2"], answer_result(2 if i == 3 else 3, "answerable"))
    tend(admin, tending)
    names = {x.user_id: x.email for x in registry.annotators}
    live = decide_batch(admin, pid, BATCH, qs, 4, names, handout="parallel", journal=journal, registry=registry,
                        platform=platform)
    from pipelines.annotation.pull import decide_journaled

    alone = decide_journaled(Journal(object_store, journal.prefix).view(pid, BATCH), qs, 4, names,
                             registry=registry, platform=platform)
    assert alone.source == "journal"
    assert live.consensus.consensus == alone.consensus.consensus
    assert {r["status"] for r in live.consensus.consensus} == {"accepted", "rejected"}
    assert live.tables()["annotations"].equals(alone.tables()["annotations"])


def test_any_typed_answer_is_data(people, object_store):
    """Hostile and careless answers typed through the real API: the pass and the decision go on, each
    answer is a value or a reject with its code (1e999999999 used to crash every decision)."""
    admin, accounts = people
    a = [c for _, c in accounts]
    pid, qs, tasks, registry, platform, journal, tending = _setup(
        admin, accounts, object_store, ["q-typed", "q-comma"])
    typed = ["1e999999999", "NaN", "1" * 5000, "\u0663"]
    for i, value in enumerate(typed):
        a[i].create_annotation(tasks["q-typed"], [{"from_name": "answer", "to_name": "image", "type": "number",
                                                   "value": {"number": value}}])
        a[i].create_annotation(tasks["q-comma"], [{"from_name": "answer", "to_name": "image", "type": "number",
                                                   "value": {"number": "2,5"}}])
    tend(admin, tending)
    result = decide_batch(admin, pid, BATCH, [{**q, "answer": "2.5"} for q in qs], 4, handout="parallel",
                          journal=journal, registry=registry, platform=platform)
    rows = {r["question_id"]: r for r in result.consensus.consensus}
    assert rows["q-comma"]["status"] == "accepted" and rows["q-comma"]["agreed_answer"] == "2.5"
    codes = sorted(r.code for r in result.invalid)
    assert codes == ["result.answer_too_long", "result.non_numeric_answer", "result.number_out_of_range"]
    assert rows["q-typed"]["status"] == "pending" and rows["q-typed"]["answers"] == ["3"]
