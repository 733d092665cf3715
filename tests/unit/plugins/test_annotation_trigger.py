"""``AnnotationCompleteTrigger`` the way Airflow's providers test their triggers, without a database:
``serialize()`` is a classpath and plain JSON kwargs (a connection id, never a token) that rebuild an
equal trigger, also from the kwargs earlier versions serialized; ``run()`` driven by asyncio yields
exactly one JSON event per outcome (complete; deadline; 5xx, garbled bodies or Label Studio down, then
complete or deadline) and raises on a 4xx. It only reads: against a client whose every other method
raises, and against a scripted server that records writes, it lists tasks and nothing else, even where
the handout would change them."""

from __future__ import annotations

import asyncio
import importlib
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from label_studio_sdk.core.api_error import ApiError

from hopchain_airflow.triggers.annotation import CLASSPATH, AnnotationCompleteTrigger
from tests.support.scripted_label_studio import ScriptedLabelStudio, ScriptedTaskReader, make_task, tasks_page

pytestmark = pytest.mark.unit

END = (404, {"detail": "Invalid page."})  # how Label Studio answers the page after the last


def in_seconds(s: float) -> str:
    return (datetime.now(UTC) + timedelta(seconds=s)).isoformat()


def all_events(trigger: AnnotationCompleteTrigger, timeout_s: float = 20.0) -> list[dict[str, Any]]:
    """Run the trigger to its end (as the triggerer does) and return every event's payload."""

    async def run() -> list[dict[str, Any]]:
        return [event.payload async for event in trigger.run()]

    return asyncio.run(asyncio.wait_for(run(), timeout_s))


def only_event(trigger: AnnotationCompleteTrigger) -> dict[str, Any]:
    events = all_events(trigger)
    assert len(events) == 1, events  # one event, then the trigger ends
    assert json.loads(json.dumps(events[0])) == events[0]  # JSON, never a pickle
    return events[0]


@pytest.fixture
def reader(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[ScriptedTaskReader]]:
    """Give the trigger a :class:`ScriptedTaskReader` instead of the client the hook would build: append
    one to the yielded list before running the trigger."""
    readers: list[ScriptedTaskReader] = []

    async def get_async_conn(self: object, timeout_s: float | None = None) -> ScriptedTaskReader:
        return readers[-1]

    monkeypatch.setattr("hopchain_airflow.hooks.label_studio.LabelStudioHook.get_async_conn", get_async_conn)
    yield readers
    for r in readers:
        assert r.violations == [], f"the trigger called {r.violations}: it may only read tasks"


def answered(value: str, task_id: int, user: int) -> dict[str, Any]:
    return {"id": task_id * 100 + user, "completed_by": user, "was_cancelled": False,
            "created_at": "2026-12-01T00:00:00Z",
            "result": [{"from_name": "answer", "to_name": "image", "type": "number", "value": {"number": value}}]}


def tasks_the_handout_would_change() -> list[dict[str, Any]]:
    """Task 0: one answer, closed at overlap 1 (serial handout would open it to one more annotator);
    task 1: two different answers, still open to four (early stop would withdraw it)."""
    first, split = make_task(0, []), make_task(1, [])
    first.update(overlap=1, is_labeled=True, annotations=[answered("3", 0, 1)])
    split.update(overlap=4, is_labeled=False, annotations=[answered("3", 1, 1), answered("5", 1, 2)])
    return [first, split]


# -- serialize -----------------------------------------------------------------------------------------


def test_serialize_round_trip() -> None:
    deadline = in_seconds(7200)
    trig = AnnotationCompleteTrigger(project_id=3, batch="run-1", deadline=deadline, poll_interval_s=5,
                                     conn_id="hopchain_label_studio")
    classpath, kwargs = trig.serialize()
    assert classpath == CLASSPATH == f"{AnnotationCompleteTrigger.__module__}.AnnotationCompleteTrigger"
    assert kwargs == {
        "batches": [{"project_id": 3, "batch": "run-1", "deadline": deadline}],
        "poll_interval_s": 5.0, "required": 4, "conn_id": "hopchain_label_studio", "page_size": 500,
        "request_timeout_s": 30.0, "early_stop": True,
    }  # nothing about a handout: it only watches; no token or URL: the triggerer resolves the connection
    assert json.loads(json.dumps(kwargs)) == kwargs
    module, _, name = classpath.rpartition(".")
    rebuilt = getattr(importlib.import_module(module), name)(**json.loads(json.dumps(kwargs)))
    assert rebuilt.serialize() == (classpath, kwargs)


def test_deadline_is_kept_in_utc() -> None:
    trig = AnnotationCompleteTrigger(1, "b", "2026-12-01T12:00:00+02:00", conn_id="x")
    assert trig.serialize()[1]["batches"][0]["deadline"] == "2026-12-01T10:00:00+00:00"


@pytest.mark.parametrize("earlier", [
    # f144933: one batch, early stop (it withdrew tasks)
    {"project_id": 3, "batch": "run-1", "deadline": "2026-12-01T10:00:00+00:00", "poll_interval_s": 30.0,
     "required": 4, "conn_id": "hopchain_label_studio", "page_size": 500, "request_timeout_s": 30.0,
     "early_stop": True},
    # ce37dc7: every open batch, serial handout (it opened and withdrew tasks)
    {"batches": [{"project_id": 3, "batch": "run-1", "deadline": "2026-12-01T10:00:00+00:00"}],
     "poll_interval_s": 30.0, "required": 4, "conn_id": "hopchain_label_studio", "page_size": 500,
     "request_timeout_s": 30.0, "early_stop": True, "handout": "serial"},
    # 6174ffc: and the batches pushed after the wait began
    {"batches": [{"project_id": 3, "batch": "run-1", "deadline": "2026-12-01T10:00:00+00:00"}],
     "poll_interval_s": 30.0, "required": 4, "conn_id": "hopchain_label_studio", "page_size": 500,
     "request_timeout_s": 30.0, "early_stop": True, "handout": "parallel", "hand_out_later_batches": True},
])
def test_a_trigger_serialized_by_an_earlier_version_rebuilds_and_only_watches(earlier: dict[str, Any]) -> None:
    """A triggerer upgraded while a wait was deferred rebuilds it from the stored kwargs; the acting
    ones are ignored and the rebuilt trigger serializes as this version does."""
    _, kwargs = AnnotationCompleteTrigger(**earlier).serialize()
    assert kwargs["batches"] == [{"project_id": 3, "batch": "run-1", "deadline": "2026-12-01T10:00:00+00:00"}]
    assert not {"handout", "hand_out_later_batches", "project_id", "batch", "deadline"} & set(kwargs)


def test_refuses_naive_deadline_missing_connection_and_secrets() -> None:
    with pytest.raises(ValueError, match="timezone"):
        AnnotationCompleteTrigger(1, "b", "2026-01-01T00:00:00", conn_id="x")
    with pytest.raises(ValueError, match="conn_id"):
        AnnotationCompleteTrigger(1, "b", "2026-01-01T00:00:00+00:00", conn_id="")
    with pytest.raises(TypeError):  # the versions that carried a token are not rebuilt: no secret in kwargs
        AnnotationCompleteTrigger(1, "b", "2026-01-01T00:00:00+00:00", base_url="http://h", token="t")  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="at least one batch"):
        AnnotationCompleteTrigger(batches=[])
    with pytest.raises(ValueError, match="project_id, batch and deadline"):
        AnnotationCompleteTrigger(1, "b")


# -- events, with a scripted client ----------------------------------------------------------------------


def test_event_complete(reader: list[ScriptedTaskReader]) -> None:
    """First poll: task 1 has one annotator of two; second poll: both complete -> one "complete" event."""
    reader.append(ScriptedTaskReader([[make_task(0, [1, 2]), make_task(1, [3])],
                                      [make_task(0, [1, 2]), make_task(1, [3, 4])]]))
    payload = only_event(AnnotationCompleteTrigger(5, "b", in_seconds(30), poll_interval_s=0.01, required=2,
                                                   conn_id="ls", page_size=50))
    assert payload == {
        "status": "complete", "project_id": 5, "batch": "b", "required": 2,
        "total": 2, "complete": 2, "incomplete": 0, "counter_mismatches": 0, "stopped": 0,
        "polls": 2, "errors": 0, "last_error": None,
        "batches": [{"status": "complete", "project_id": 5, "batch": "b", "deadline": payload["batches"][0]["deadline"],
                     "required": 2, "total": 2, "complete": 2, "incomplete": 0, "counter_mismatches": 0,
                     "stopped": 0}],
    }
    assert reader[0].calls == [(5, "b", "all", 50)] * 2 and reader[0].closed


def test_event_deadline_when_the_batch_times_out(reader: list[ScriptedTaskReader]) -> None:
    """Never complete: one "deadline" event once the deadline passes, not before, with the counts."""
    reader.append(ScriptedTaskReader([[make_task(0, [1, 2, 3, 4]), make_task(1, [1])]]))
    started = time.monotonic()
    payload = only_event(AnnotationCompleteTrigger(5, "b", in_seconds(0.6), poll_interval_s=0.1, conn_id="ls"))
    assert 0.5 <= time.monotonic() - started < 5
    assert payload["status"] == "deadline" and payload["batches"][0]["status"] == "deadline"
    assert (payload["total"], payload["complete"], payload["incomplete"]) == (2, 1, 1)
    assert payload["polls"] >= 3 and payload["errors"] == 0


def test_event_counts_a_stopped_question_as_complete(reader: list[ScriptedTaskReader]) -> None:
    """Early stop: two different answers can no longer be unanimous, so nothing more is waited for."""
    tasks = [make_task(0, []), make_task(1, [])]
    tasks[0]["annotations"] = [answered("3", 0, 1), answered("5", 0, 2)]
    tasks[1]["annotations"] = [answered("3", 1, u) for u in (1, 2, 3, 4)]
    reader.append(ScriptedTaskReader([tasks]))
    payload = only_event(AnnotationCompleteTrigger(5, "b", in_seconds(30), poll_interval_s=0.01, conn_id="ls"))
    assert (payload["status"], payload["stopped"], payload["complete"]) == ("complete", 1, 2)
    reader.append(ScriptedTaskReader([tasks]))
    payload = only_event(AnnotationCompleteTrigger(5, "b", in_seconds(0.3), poll_interval_s=0.05, conn_id="ls",
                                                   early_stop=False))
    assert (payload["status"], payload["stopped"], payload["complete"]) == ("deadline", 0, 1)


def test_event_after_5xx_then_complete(reader: list[ScriptedTaskReader]) -> None:
    """Label Studio restarting (503, a dropped connection) is counted and polled through."""
    reader.append(ScriptedTaskReader([ApiError(status_code=503, body="restarting"),
                                      httpx.ConnectError("connection refused"),
                                      [make_task(0, [1])]]))
    payload = only_event(AnnotationCompleteTrigger(5, "b", in_seconds(30), poll_interval_s=0.01, required=1,
                                                   conn_id="ls"))
    assert (payload["status"], payload["polls"], payload["errors"]) == ("complete", 1, 2)
    assert payload["last_error"] == "ConnectError: connection refused"
    assert len(reader[0].calls) == 3


def test_4xx_raises_without_polling_again(reader: list[ScriptedTaskReader]) -> None:
    """A wrong token or a deleted project does not heal by waiting: the trigger fails (the task fails)."""
    reader.append(ScriptedTaskReader([ApiError(status_code=404, body={"detail": "Not found."})]))
    with pytest.raises(ApiError) as err:
        all_events(AnnotationCompleteTrigger(5, "b", in_seconds(30), poll_interval_s=0.01, conn_id="ls"))
    assert err.value.status_code == 404 and len(reader[0].calls) == 1 and reader[0].closed


def test_deadline_event_without_counts_when_label_studio_never_answered(reader: list[ScriptedTaskReader]) -> None:
    reader.append(ScriptedTaskReader([ApiError(status_code=502, body="bad gateway")]))
    payload = only_event(AnnotationCompleteTrigger(5, "b", in_seconds(0.3), poll_interval_s=0.05, conn_id="ls"))
    assert payload["status"] == "deadline" and payload["total"] is None and payload["batches"][0]["total"] is None
    assert payload["polls"] == 0 and payload["errors"] >= 2 and payload["last_error"] == "HTTP 502"


def test_same_batch_name_in_two_projects_is_two_batches(reader: list[ScriptedTaskReader]) -> None:
    reader.append(ScriptedTaskReader([[make_task(0, [1])], [make_task(0, [])], [make_task(0, [])]]))
    payload = only_event(AnnotationCompleteTrigger(
        batches=[{"project_id": 1, "batch": "b", "deadline": in_seconds(30)},
                 {"project_id": 2, "batch": "b", "deadline": in_seconds(0.3)}],
        poll_interval_s=0.05, required=1, conn_id="ls"))
    assert [(r["project_id"], r["status"]) for r in payload["batches"]] == [(1, "complete"), (2, "deadline")]
    assert [c[0] for c in reader[0].calls][:3] == [1, 2, 2]  # a complete batch is not polled again


def test_the_trigger_only_reads(reader: list[ScriptedTaskReader]) -> None:
    """Tasks that the handout would change: the trigger counts them and calls nothing but ``iter_tasks``,
    whatever acting kwargs it was given (the client's every other method raises; see the fixture)."""
    reader.append(ScriptedTaskReader([tasks_the_handout_would_change()]))
    payload = only_event(AnnotationCompleteTrigger(5, "b", in_seconds(0.3), poll_interval_s=0.05, conn_id="ls",
                                                   handout="serial", hand_out_later_batches=True))
    assert payload["status"] == "deadline" and (payload["stopped"], payload["complete"]) == (1, 1)
    assert not {"opened", "withdrawn", "opened_later_batches"} & set(payload)
    assert reader[0].calls and all(c == (5, "b", "all", 500) for c in reader[0].calls)


# -- over HTTP, through the SDK, with a scripted server --------------------------------------------------


def test_completes_from_the_annotations_with_the_connection_token(fake_ls: ScriptedLabelStudio) -> None:
    fake_ls.answer("/api/tasks/", (200, tasks_page([1, 2], [3, 3])), END, (200, tasks_page([1, 2], [3, 4])), END)
    payload = only_event(
        AnnotationCompleteTrigger(5, "b", in_seconds(30), poll_interval_s=0.05, required=2, conn_id="ls_test"))
    assert (payload["status"], payload["total"], payload["complete"]) == ("complete", 2, 2)
    assert payload["polls"] == 2 and payload["errors"] == 0  # first poll: q1 had one distinct user
    assert payload["counter_mismatches"] == 0 and len(fake_ls.seen) == 4
    assert {auth for _, auth in fake_ls.seen} == {"Token tok-1"}
    assert "filter%3Atasks%3Adata.batch" in fake_ls.seen[0][0] and "project=5" in fake_ls.seen[0][0]


def test_one_trigger_waits_for_every_batch_until_each_is_complete_or_past_its_deadline(
    fake_ls: ScriptedLabelStudio,
) -> None:
    """Two batches: the first completes, the second's deadline passes; one event names both."""
    unanswered = [(200, tasks_page([])), END] * 30  # batch b, on every poll until its deadline
    fake_ls.answer("/api/tasks/", (200, tasks_page([1])), END, *unanswered)
    trig = AnnotationCompleteTrigger(batches=[{"project_id": 5, "batch": "a", "deadline": in_seconds(30)},
                                              {"project_id": 5, "batch": "b", "deadline": in_seconds(1)}],
                                     poll_interval_s=0.1, required=1, conn_id="ls_test")
    payload = only_event(trig)
    assert payload["status"] == "deadline" and "batch" not in payload
    assert [(b["batch"], b["status"]) for b in payload["batches"]] == [("a", "complete"), ("b", "deadline")]
    assert (payload["total"], payload["complete"]) == (2, 1) and payload["polls"] >= 2
    polled = [url for url, _ in fake_ls.seen]
    assert sum("%22a%22" in u for u in polled) == 2  # a complete batch is not polled again (page 1, end)


def test_sends_nothing_but_gets(fake_ls: ScriptedLabelStudio) -> None:
    page = {"tasks": tasks_the_handout_would_change(), "total": 2, "total_annotations": 3, "total_predictions": 0}
    fake_ls.answer("/api/tasks/", *[(200, page), END] * 30)
    payload = only_event(AnnotationCompleteTrigger(5, "b", in_seconds(0.5), poll_interval_s=0.1, required=4,
                                                   conn_id="ls_test", handout="serial", hand_out_later_batches=True))
    assert payload["status"] == "deadline" and (payload["stopped"], payload["complete"]) == (1, 1)
    assert fake_ls.writes == [] and all(url.startswith("/api/tasks/") for url, _ in fake_ls.seen)


def test_polls_on_through_5xx_and_garbled_bodies(fake_ls: ScriptedLabelStudio) -> None:
    fake_ls.answer("/api/tasks/", (503, b"<html>restarting</html>"), (200, b"not json"), (200, tasks_page([1])), END)
    payload = only_event(
        AnnotationCompleteTrigger(5, "b", in_seconds(30), poll_interval_s=0.05, required=1, conn_id="ls_test"))
    assert payload["status"] == "complete" and payload["errors"] == 2 and payload["polls"] == 1
    assert payload["last_error"] == "HTTP 200"


def test_fails_on_4xx(fake_ls: ScriptedLabelStudio) -> None:
    fake_ls.answer("/api/tasks/", (401, {"detail": "Invalid token."}))
    with pytest.raises(ApiError) as err:
        all_events(AnnotationCompleteTrigger(5, "b", in_seconds(30), poll_interval_s=0.05, conn_id="ls_test"))
    assert err.value.status_code == 401 and len(fake_ls.seen) == 1  # no second poll


def test_reaches_deadline_while_label_studio_is_down(monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing listens on the port: connection errors are counted, the deadline event still comes."""
    from pipelines.stack.process import free_port

    monkeypatch.setenv("AIRFLOW_CONN_LS_DOWN", f"label-studio://:t@127.0.0.1:{free_port()}")
    payload = only_event(AnnotationCompleteTrigger(1, "b", in_seconds(0.6), poll_interval_s=0.1, conn_id="ls_down"))
    assert payload["status"] == "deadline" and payload["errors"] >= 2 and payload["total"] is None
    assert "ConnectError" in payload["last_error"]


def test_each_batch_is_polled_with_its_id_bound_and_the_bound_survives_serialization(
    fake_ls: ScriptedLabelStudio,
) -> None:
    """The wait reads a batch as the sync readers do (``data.batch == b AND id >= first_task_id``, one query);
    a batch without a bound (a record written before it existed) is polled unbounded."""
    from urllib.parse import parse_qs, urlsplit

    from pipelines.annotation.completion import batch_filter

    fake_ls.answer("/api/tasks/", (200, tasks_page([1])), END, (200, tasks_page([2])), END)
    deadline = in_seconds(30)
    _, kwargs = AnnotationCompleteTrigger(
        batches=[{"project_id": 5, "batch": "a", "deadline": deadline, "first_task_id": 40},
                 {"project_id": 5, "batch": "b", "deadline": deadline, "first_task_id": None}],
        poll_interval_s=0.05, required=1, conn_id="ls_test").serialize()
    assert [b.get("first_task_id") for b in kwargs["batches"]] == [40, None]
    assert "first_task_id" not in kwargs["batches"][1]  # an unbounded batch serializes as earlier versions did
    assert only_event(AnnotationCompleteTrigger(**json.loads(json.dumps(kwargs))))["status"] == "complete"
    queries = [json.loads(parse_qs(urlsplit(url).query)["query"][0]) for url, _ in fake_ls.seen
               if "page=1" in url]
    assert queries == [json.loads(batch_filter("a", 40)), json.loads(batch_filter("b"))]
