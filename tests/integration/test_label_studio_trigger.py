"""The deferrable wait (AnnotationCompleteTrigger.run driven by asyncio, no Airflow DB) against a
real Label Studio — including a stop/restart of the server while the batch is being waited on."""

from __future__ import annotations

import asyncio
import json
import sys
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote

import pytest

from pipelines.annotation.client import LabelStudioClient, LabelStudioCredentials
from pipelines.annotation.project import ensure_project
from pipelines.annotation.pull import pull_and_decide
from pipelines.annotation.push import push_questions
from pipelines.annotation.simulated import answer_result
from tests.support.stack import annotator_accounts

PLUGINS = str(Path(__file__).resolve().parents[2] / "plugins")
if PLUGINS not in sys.path:
    sys.path.insert(0, PLUGINS)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def setup(label_studio):
    creds = LabelStudioCredentials.from_mapping(label_studio.credentials())
    admin = LabelStudioClient.from_credentials(creds)
    people = [client for _, client in annotator_accounts(admin, "waiter", 4)]
    yield creds, admin, people
    for c in [admin, *people]:
        c.close()


def batch_project(admin: LabelStudioClient, n: int) -> tuple[int, list[dict], dict[str, int]]:
    pid = int(ensure_project(admin, f"wait-{uuid.uuid4().hex[:8]}")["id"])
    qs = [{"question_id": f"w{i}", "image_id": "i", "question": "How many?", "answer": "2"} for i in range(n)]
    push_questions(admin, pid, qs, lambda _: "http://127.0.0.1:9/i.png", batch="batch-1")
    push_questions(
        admin,
        pid,
        [{"question_id": "other", "image_id": "i", "question": "?", "answer": "1"}],
        lambda _: "http://127.0.0.1:9/i.png",
        batch="batch-2",
    )  # another batch: not waited on
    tasks = {t["data"]["question_id"]: int(t["id"]) for t in admin.iter_tasks(pid, fields="task_only")}
    return pid, qs, tasks


@pytest.fixture(autouse=True)
def ls_connection(setup, monkeypatch) -> str:
    """The Label Studio connection the trigger resolves, as an ``AIRFLOW_CONN_`` variable (URI form)."""
    creds = setup[0]
    host_port = creds.url.split("://", 1)[1]  # the fixture's Label Studio speaks plain http on loopback
    monkeypatch.setenv("AIRFLOW_CONN_LS_UNDER_TEST",
                       f"label-studio://:{quote(creds.token, safe='')}@{host_port}?timeout_s=5")
    return "ls_under_test"


def trigger(creds: LabelStudioCredentials, pid: int, seconds: float, poll: float):
    from hopchain_airflow.triggers.annotation import AnnotationCompleteTrigger

    deadline = (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat()
    _, kwargs = AnnotationCompleteTrigger(
        pid, "batch-1", deadline, poll_interval_s=poll, conn_id="ls_under_test", request_timeout_s=5
    ).serialize()
    assert creds.token not in json.dumps(kwargs)  # the triggerer resolves the connection itself
    return AnnotationCompleteTrigger(**kwargs)  # run what the triggerer would rebuild


async def first_event(trig) -> dict:
    async for event in trig.run():
        return event.payload
    raise AssertionError("trigger ended without an event")


def test_deadline_lets_complete_items_go_on_and_keeps_the_rest_pending(setup):
    creds, admin, people = setup
    pid, qs, tasks = batch_project(admin, 2)
    for client in people:
        client.create_annotation(tasks["w0"], answer_result(2))
    people[0].create_annotation(tasks["w1"], answer_result(2))
    people[0].create_annotation(tasks["w1"], answer_result(2))  # same user twice: still 1 distinct
    payload = asyncio.run(first_event(trigger(creds, pid, 1.5, 0.3)))
    assert payload["status"] == "deadline"
    assert (payload["total"], payload["complete"], payload["incomplete"]) == (2, 1, 1)
    assert payload["errors"] == 0 and payload["polls"] >= 2
    status = {
        r["question_id"]: r["status"]
        for r in pull_and_decide(admin, pid, qs, batch="batch-1").consensus.consensus
    }
    assert status == {"w0": "accepted", "w1": "pending"}


def test_wait_survives_label_studio_restart(setup, label_studio):
    creds, admin, people = setup
    pid, qs, tasks = batch_project(admin, 3)
    trig = trigger(creds, pid, 240, 0.5)
    timeline: dict[str, float] = {}
    failure: list[BaseException] = []

    def restart_then_annotate() -> None:
        try:
            time.sleep(1.5)  # the trigger is polling a healthy server now
            label_studio.stop()
            timeline["stopped"] = time.monotonic()
            time.sleep(2.0)  # it polls a dead server for a while
            label_studio.start()
            label_studio.wait_healthy(180)
            timeline["restarted"] = time.monotonic()
            for client in people:
                for task_id in tasks.values():
                    if task_id != tasks["other"]:
                        client.create_annotation(task_id, answer_result(2))
            timeline["annotated"] = time.monotonic()
        except BaseException as err:  # noqa: BLE001 - surfaced by the assertion below
            failure.append(err)

    worker = threading.Thread(target=restart_then_annotate)
    worker.start()
    try:
        payload = asyncio.run(first_event(trig))
    finally:
        worker.join(240)
    assert not failure, failure
    done = time.monotonic()
    assert payload["status"] == "complete" and payload["total"] == 3 and payload["complete"] == 3
    assert payload["errors"] >= 1 and payload["last_error"]  # it saw Label Studio down and kept waiting
    assert timeline["stopped"] < timeline["restarted"] < timeline["annotated"] <= done
    result = pull_and_decide(admin, pid, qs)
    assert result.consensus.status_counts() == {"accepted": 3, "rejected": 0, "pending": 0}
