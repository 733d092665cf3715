"""``AnnotationWaitOperator`` the way Airflow's providers test their deferrable operators, without a
database: ``execute`` defers once, on one trigger for every open batch, built from the upstream
``OpenBatches`` JSON; with nothing open it returns at once; ``execute_complete`` returns the per-batch
results of a ``complete`` or ``deadline`` event and raises on any other."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from airflow.sdk.exceptions import AirflowException, TaskDeferred

from hopchain_airflow.operators.annotation import AnnotationWaitOperator
from hopchain_airflow.triggers.annotation import AnnotationCompleteTrigger
from tests.support.scripted_label_studio import ScriptedTaskReader, make_task

pytestmark = pytest.mark.unit

CONTEXT: Any = {}  # the operator reads nothing from its context


def in_seconds(s: float) -> str:
    return (datetime.now(UTC) + timedelta(seconds=s)).isoformat()


def open_batches(*batches: dict[str, Any], **options: Any) -> dict[str, Any]:
    """``pipelines.annotation.tasks.OpenBatches`` as the upstream task's XCom carries it."""
    return {"batches": list(batches), "poll_interval_s": 7, "annotators_required": 3, "handout": "serial",
            "early_stop": False, **options}


def batch(batch_id: str, project_id: int | None = 5) -> dict[str, Any]:
    return {"batch_id": batch_id, "project_id": project_id, "deadline": "2026-12-01T10:00:00+00:00",
            "questions": 2}


def deferral(op: AnnotationWaitOperator, call: Any = None) -> TaskDeferred:
    with pytest.raises(TaskDeferred) as deferred:
        (call or (lambda: op.execute(CONTEXT)))()
    return deferred.value


def test_batches_is_templated_and_the_constructor_only_stores() -> None:
    op = AnnotationWaitOperator(task_id="wait", batches="{{ ti.xcom_pull('open_batches') }}", conn_id="ls_x")
    assert "batches" in AnnotationWaitOperator.template_fields
    assert (op.batches, op.conn_id) == ("{{ ti.xcom_pull('open_batches') }}", "ls_x")


def test_execute_defers_once_on_one_trigger_for_every_open_batch() -> None:
    op = AnnotationWaitOperator(task_id="wait", conn_id="ls_x",
                                batches=open_batches(batch("b1"), batch("b2", 6), batch("empty", None)))
    deferred = deferral(op)
    assert isinstance(deferred.trigger, AnnotationCompleteTrigger) and deferred.method_name == "execute_complete"
    assert deferred.kwargs == {"events": []}
    classpath, kwargs = deferred.trigger.serialize()
    assert classpath == "hopchain_airflow.triggers.annotation.AnnotationCompleteTrigger"
    assert kwargs == {
        "batches": [{"project_id": 5, "batch": "b1", "deadline": "2026-12-01T10:00:00+00:00"},
                    {"project_id": 6, "batch": "b2", "deadline": "2026-12-01T10:00:00+00:00"}],  # nothing pushed
        "poll_interval_s": 7.0, "required": 3, "conn_id": "ls_x", "page_size": 500,  # to "empty": not waited
        "request_timeout_s": 30.0, "early_stop": False,
    }


def test_execute_defaults_when_the_plan_leaves_options_out() -> None:
    op = AnnotationWaitOperator(task_id="wait", batches={"batches": [batch("b1")]})
    _, kwargs = deferral(op).trigger.serialize()
    assert (kwargs["poll_interval_s"], kwargs["required"], kwargs["early_stop"], kwargs["conn_id"]) == (
        30.0, 4, True, "hopchain_label_studio")


@pytest.mark.parametrize("plan", [None, {}, {"batches": []}, open_batches(batch("empty", None))])
def test_nothing_open_returns_without_deferring(plan: dict[str, Any] | None) -> None:
    assert AnnotationWaitOperator(task_id="w", batches=plan).execute(CONTEXT) == {"events": []}


@pytest.mark.parametrize("status", ["complete", "deadline"])
def test_execute_complete_returns_every_batch_result(status: str) -> None:
    op = AnnotationWaitOperator(task_id="wait", batches=open_batches(batch("b1"), batch("b2")))
    deferred = deferral(op)
    results = [{"status": "complete", "batch": "b1", "complete": 2, "total": 2},
               {"status": status, "batch": "b2", "complete": 1, "total": 2}]
    event = {"status": status, "batches": results, "total": 4, "complete": 3}
    assert op.execute_complete(CONTEXT, event, **(deferred.kwargs or {})) == {"events": results}


@pytest.mark.parametrize(("event", "match"), [
    ({"status": "error", "message": "Label Studio refused the token"}, "'error': Label Studio refused the token"),
    ({"status": "success"}, "'success'"),
    ({"batches": []}, "None"),
    (None, "None"),
])
def test_execute_complete_raises_on_any_other_event(event: dict[str, Any] | None, match: str) -> None:
    op = AnnotationWaitOperator(task_id="wait", batches=open_batches(batch("b1")))
    with pytest.raises(AirflowException, match=match):
        op.execute_complete(CONTEXT, event, events=[])


def test_resumes_a_wait_deferred_by_an_earlier_version() -> None:
    """An earlier version waited batch by batch: its single-batch event has no ``batches``, and it passed
    the batches still to wait for as ``pending``; resumed here, it waits for those with one deferral."""
    op = AnnotationWaitOperator(task_id="wait", batches=open_batches(batch("b1"), batch("b2")))
    first = {"status": "complete", "project_id": 5, "batch": "b1", "total": 2, "complete": 2}
    deferred = deferral(op, lambda: op.execute_complete(CONTEXT, first, pending=[batch("b2")], events=[]))
    assert [b["batch"] for b in deferred.trigger.serialize()[1]["batches"]] == ["b2"]
    assert deferred.kwargs == {"events": [first]}
    second = {"status": "deadline", "batches": [{"status": "deadline", "batch": "b2", "complete": 0, "total": 2}]}
    assert op.execute_complete(CONTEXT, second, **(deferred.kwargs or {})) == {"events": [first, *second["batches"]]}


def test_the_event_the_trigger_fires_is_what_the_operator_returns(monkeypatch: pytest.MonkeyPatch) -> None:
    """Operator → trigger (as the triggerer rebuilds it) → event → ``execute_complete``, end to end."""
    reader = ScriptedTaskReader([[make_task(0, [1, 2, 3])]])

    async def get_async_conn(self: object, timeout_s: float | None = None) -> ScriptedTaskReader:
        return reader

    monkeypatch.setattr("hopchain_airflow.hooks.label_studio.LabelStudioHook.get_async_conn", get_async_conn)
    op = AnnotationWaitOperator(task_id="wait", batches=open_batches(batch("b1") | {"deadline": in_seconds(30)},
                                                                     poll_interval_s=0.01))
    deferred = deferral(op)
    classpath, kwargs = deferred.trigger.serialize()
    rebuilt = AnnotationCompleteTrigger(**kwargs)

    async def first() -> dict[str, Any]:
        async for event in rebuilt.run():
            return dict(event.payload)
        raise AssertionError("no event")

    event = asyncio.run(first())
    result = op.execute_complete(CONTEXT, event, **(deferred.kwargs or {}))
    assert [(r["batch"], r["status"], r["complete"], r["total"]) for r in result["events"]] == [("b1", "complete", 1, 1)]
    assert reader.violations == []


def test_the_trigger_gets_each_batch_id_bound_from_the_ledger_record() -> None:
    """``OpenBatches`` carries each batch record whole: its ``first_task_id`` reaches the trigger's poll."""
    op = AnnotationWaitOperator(task_id="wait", batches=open_batches(batch("b1") | {"first_task_id": 812},
                                                                     batch("legacy")))
    batches = deferral(op).trigger.serialize()[1]["batches"]
    assert [(b["batch"], b.get("first_task_id")) for b in batches] == [("b1", 812), ("legacy", None)]
