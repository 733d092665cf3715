"""Airflow side without a database: the hook reads an AIRFLOW_CONN_ variable, the trigger
serialises to a classpath + plain JSON kwargs (a connection id, never a token) and rebuilds
identically; run against a scripted Label Studio on loopback it fails on a 4xx, polls on through
5xx answers and garbled bodies, and reports through JSON events."""

from __future__ import annotations

import asyncio
import json
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import pytest

PLUGINS = str(Path(__file__).resolve().parents[3] / "plugins")
if PLUGINS not in sys.path:
    sys.path.insert(0, PLUGINS)

pytestmark = pytest.mark.unit


class ScriptedLabelStudio:
    """A loopback HTTP server answering ``GET /api/...`` paths from a script (the last answer of a
    path repeats); it records each request's path and Authorization header."""

    def __init__(self) -> None:
        self.answers: dict[str, list[tuple[int, bytes]]] = {}
        self.seen: list[tuple[str, str | None]] = []
        self.writes: list[tuple[str, str]] = []
        script = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = urlsplit(self.path).path
                script.seen.append((self.path, self.headers.get("Authorization")))
                queue = script.answers.get(path) or [(404, b'{"detail": "Not found."}')]
                status, body = queue.pop(0) if len(queue) > 1 else queue[0]
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _write(self) -> None:  # the trigger only reads: any write is recorded and refused
                script.writes.append((self.command, self.path))
                self.send_response(405)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_POST = do_PATCH = do_PUT = do_DELETE = _write

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def answer(self, path: str, *answers: tuple[int, object]) -> None:
        self.answers[path] = [
            (status, json.dumps(body).encode() if not isinstance(body, bytes) else body)
            for status, body in answers
        ]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake_ls(monkeypatch) -> Iterator[ScriptedLabelStudio]:
    server = ScriptedLabelStudio()
    monkeypatch.setenv(
        "AIRFLOW_CONN_LS_TEST",
        json.dumps(
            {
                "conn_type": "label_studio",
                "host": "http://127.0.0.1",
                "port": server.port,
                "password": "tok-1",
            }
        ),
    )
    yield server
    server.close()


def tasks_page(*annotators: list[int]) -> dict:
    tasks = [
        {
            "id": i,
            "data": {"question_id": f"q{i}", "batch": "b"},
            "annotations": [{"completed_by": u, "was_cancelled": False} for u in users],
        }
        for i, users in enumerate(annotators)
    ]
    return {"tasks": tasks, "total": len(tasks), "total_annotations": 0, "total_predictions": 0}


def first_event(trigger) -> dict:
    async def run():
        async for event in trigger.run():
            return event.payload
        raise AssertionError("no event")

    return asyncio.run(run())


def in_seconds(s: float) -> str:
    return (datetime.now(UTC) + timedelta(seconds=s)).isoformat()


def test_hook_builds_client_from_connection(monkeypatch):
    from hopchain_airflow.hooks.label_studio import LabelStudioHook

    monkeypatch.setenv(
        "AIRFLOW_CONN_HOPCHAIN_LABEL_STUDIO",
        json.dumps(
            {
                "conn_type": "label_studio",
                "host": "http://127.0.0.1",
                "port": 8081,
                "password": "secret-token",
                "extra": {"timeout_s": 7},
            }
        ),
    )
    hook = LabelStudioHook()
    assert hook.default_conn_name == "hopchain_label_studio" and hook.conn_type == "label_studio"
    client = hook.get_conn()
    assert client.url == "http://127.0.0.1:8081" and client.timeout_s == 7
    assert hook.get_client().url == client.url
    assert "secret-token" not in repr(client)
    assert "secret-token" not in repr(hook.credentials())
    behaviour = LabelStudioHook.get_ui_field_behaviour()
    assert "login" in behaviour["hidden_fields"] and behaviour["relabeling"]["password"].startswith(
        "API token"
    )
    assert isinstance(LabelStudioHook.get_connection_form_widgets(), dict)


def test_base_url_from_parts():
    from pipelines.annotation.client import base_url_from_parts

    assert base_url_from_parts("http://127.0.0.1", 8081) == "http://127.0.0.1:8081"
    assert base_url_from_parts("ls.example.org", None, "https") == "https://ls.example.org"
    assert base_url_from_parts("https://h:9/prefix/", 443) == "https://h:9/prefix"
    with pytest.raises(ValueError):
        base_url_from_parts("", 1)


def test_trigger_serialize_round_trip():
    import importlib

    from hopchain_airflow.triggers.annotation import AnnotationCompleteTrigger

    deadline = (datetime.now(UTC) + timedelta(hours=2)).isoformat()
    trig = AnnotationCompleteTrigger(
        project_id=3, batch="run-1", deadline=deadline, poll_interval_s=5, conn_id="hopchain_label_studio"
    )
    classpath, kwargs = trig.serialize()
    assert json.loads(json.dumps(kwargs)) == kwargs  # plain JSON
    module, _, name = classpath.rpartition(".")
    rebuilt = getattr(importlib.import_module(module), name)(**kwargs)
    assert rebuilt.serialize() == (classpath, kwargs)
    assert kwargs["batches"] == [{"project_id": 3, "batch": "run-1", "deadline": deadline}]
    assert kwargs["early_stop"] is True and "handout" not in kwargs  # it only watches: no handout to do
    assert kwargs["conn_id"] == "hopchain_label_studio"
    assert not {"token", "base_url"} & set(kwargs)  # no secret in the serialized kwargs


def test_trigger_refuses_naive_deadline_and_missing_connection():
    from hopchain_airflow.triggers.annotation import AnnotationCompleteTrigger

    with pytest.raises(ValueError, match="timezone"):
        AnnotationCompleteTrigger(1, "b", "2026-01-01T00:00:00", conn_id="x")
    with pytest.raises(ValueError, match="conn_id"):
        AnnotationCompleteTrigger(1, "b", "2026-01-01T00:00:00+00:00", conn_id="")
    with pytest.raises(TypeError):
        AnnotationCompleteTrigger(1, "b", "2026-01-01T00:00:00+00:00", base_url="http://h", token="t")
    with pytest.raises(ValueError, match="handout"):
        AnnotationCompleteTrigger(1, "b", "2026-01-01T00:00:00+00:00", handout="random")
    with pytest.raises(ValueError, match="at least one batch"):
        AnnotationCompleteTrigger(batches=[])


def test_one_trigger_waits_for_every_batch_until_each_is_complete_or_past_its_deadline(fake_ls):
    """Two batches: the first completes, the second's deadline passes; one event names both."""
    from hopchain_airflow.triggers.annotation import AnnotationCompleteTrigger

    end = (404, {"detail": "Invalid page."})
    unanswered = [(200, tasks_page([])), end] * 30  # batch b, on every poll until its deadline
    fake_ls.answer("/api/tasks/", (200, tasks_page([1])), end, *unanswered)
    trig = AnnotationCompleteTrigger(batches=[{"project_id": 5, "batch": "a", "deadline": in_seconds(30)},
                                              {"project_id": 5, "batch": "b", "deadline": in_seconds(2)}],
                                     poll_interval_s=0.1, required=1, conn_id="ls_test")
    payload = first_event(trig)
    assert payload["status"] == "deadline" and "batch" not in payload
    assert [(b["batch"], b["status"]) for b in payload["batches"]] == [("a", "complete"), ("b", "deadline")]
    assert (payload["total"], payload["complete"]) == (2, 1) and payload["polls"] >= 2
    polled = [url for url, _ in fake_ls.seen]
    assert sum("%22a%22" in u for u in polled) == 2  # a complete batch is not polled again (page 1, end)


def test_hook_builds_an_async_client_in_the_triggerer(fake_ls):
    from hopchain_airflow.hooks.label_studio import LabelStudioHook

    client = asyncio.run(LabelStudioHook("ls_test").get_async_conn(timeout_s=3))
    assert client.url == f"http://127.0.0.1:{fake_ls.port}" and client.timeout_s == 3
    assert "tok-1" not in repr(client)


def test_trigger_completes_from_the_annotations_with_the_connection_token(fake_ls):
    from hopchain_airflow.triggers.annotation import AnnotationCompleteTrigger

    end = (404, {"detail": "Invalid page."})  # how Label Studio answers the page after the last
    fake_ls.answer(
        "/api/tasks/", (200, tasks_page([1, 2], [3, 3])), end, (200, tasks_page([1, 2], [3, 4])), end
    )
    payload = first_event(
        AnnotationCompleteTrigger(5, "b", in_seconds(30), poll_interval_s=0.05, required=2, conn_id="ls_test")
    )
    assert json.loads(json.dumps(payload)) == payload  # JSON only
    assert (payload["status"], payload["total"], payload["complete"]) == ("complete", 2, 2)
    assert payload["polls"] == 2 and payload["errors"] == 0  # first poll: q1 had one distinct user
    assert payload["counter_mismatches"] == 0 and len(fake_ls.seen) == 4
    assert {auth for _, auth in fake_ls.seen} == {"Token tok-1"}
    assert "filter%3Atasks%3Adata.batch" in fake_ls.seen[0][0] and "project=5" in fake_ls.seen[0][0]


def test_trigger_only_reads(fake_ls):
    """Tasks that the handout would change (answered, closed at overlap 1; a disagreement still open):
    the trigger counts them and sends nothing but GETs; acting is the labeling pass's job."""
    from hopchain_airflow.triggers.annotation import AnnotationCompleteTrigger

    page = tasks_page([1], [1, 2])
    page["tasks"][0].update(overlap=1, is_labeled=True)
    page["tasks"][1].update(overlap=4, is_labeled=False)
    for t, answers in zip(page["tasks"], (["3"], ["3", "5"]), strict=True):
        for a, value in zip(t["annotations"], answers, strict=True):
            a.update(id=hash((t["id"], value)) % 1000, created_at="2026-12-01T00:00:00Z",
                     result=[{"from_name": "answer", "to_name": "image", "type": "number", "value": {"number": value}}])
    fake_ls.answer("/api/tasks/", *[(200, page), (404, {"detail": "Invalid page."})] * 30)
    payload = first_event(AnnotationCompleteTrigger(5, "b", in_seconds(0.5), poll_interval_s=0.1, required=4,
                                                    conn_id="ls_test", handout="serial", hand_out_later_batches=True))
    assert payload["status"] == "deadline" and (payload["stopped"], payload["complete"]) == (1, 1)
    assert fake_ls.writes == [] and all(url.startswith("/api/tasks/") for url, _ in fake_ls.seen)
    assert not {"opened", "withdrawn", "opened_later_batches"} & set(payload)


def test_operator_defers_once_and_returns_the_events():
    from airflow.exceptions import TaskDeferred

    from hopchain_airflow.operators.annotation import AnnotationWaitOperator
    from hopchain_airflow.triggers.annotation import AnnotationCompleteTrigger

    plan = {"batches": [{"batch_id": "b1", "project_id": 5, "deadline": in_seconds(60)},
                        {"batch_id": "empty", "project_id": None, "deadline": in_seconds(60)}],
            "poll_interval_s": 7, "annotators_required": 3, "handout": "serial", "early_stop": False}
    op = AnnotationWaitOperator(task_id="wait", batches=plan, conn_id="ls_x")
    with pytest.raises(TaskDeferred) as deferred:
        op.execute({})
    trigger = deferred.value.trigger
    assert isinstance(trigger, AnnotationCompleteTrigger) and deferred.value.method_name == "execute_complete"
    _, kwargs = trigger.serialize()
    assert kwargs["batches"][0]["batch"] == "b1" and len(kwargs["batches"]) == 1  # nothing pushed: not waited
    assert (kwargs["poll_interval_s"], kwargs["required"], kwargs["early_stop"], kwargs["conn_id"]) == (7, 3, False,
                                                                                                      "ls_x")
    for status in ("complete", "deadline"):
        event = {"status": status, "batches": [{"batch": "b1", "status": status, "complete": 1, "total": 2}]}
        assert op.execute_complete({}, event, **deferred.value.kwargs) == {"events": event["batches"]}
    assert AnnotationWaitOperator(task_id="w", batches={"batches": []}).execute({}) == {"events": []}


def test_trigger_polls_on_through_5xx_and_garbled_bodies(fake_ls):
    from hopchain_airflow.triggers.annotation import AnnotationCompleteTrigger

    fake_ls.answer(
        "/api/tasks/",
        (503, b"<html>restarting</html>"),
        (200, b"not json"),
        (200, tasks_page([1])),
        (404, {"detail": "Invalid page."}),
    )
    payload = first_event(
        AnnotationCompleteTrigger(5, "b", in_seconds(30), poll_interval_s=0.05, required=1, conn_id="ls_test")
    )
    assert payload["status"] == "complete" and payload["errors"] == 2 and payload["polls"] == 1
    assert payload["last_error"] == "HTTP 200"


def test_trigger_fails_on_4xx(fake_ls):
    from label_studio_sdk.core.api_error import ApiError

    from hopchain_airflow.triggers.annotation import AnnotationCompleteTrigger

    fake_ls.answer("/api/tasks/", (401, {"detail": "Invalid token."}))
    with pytest.raises(ApiError) as err:
        first_event(
            AnnotationCompleteTrigger(5, "b", in_seconds(30), poll_interval_s=0.05, conn_id="ls_test")
        )
    assert err.value.status_code == 401 and len(fake_ls.seen) == 1  # no second poll


def test_trigger_reaches_deadline_while_label_studio_is_down(monkeypatch):
    """Nothing listens on the port: connection errors are counted, the deadline event still comes."""
    from hopchain_airflow.triggers.annotation import AnnotationCompleteTrigger
    from pipelines.stack.process import free_port

    monkeypatch.setenv("AIRFLOW_CONN_LS_DOWN", f"label-studio://:t@127.0.0.1:{free_port()}")
    trig = AnnotationCompleteTrigger(1, "b", in_seconds(0.6), poll_interval_s=0.1, conn_id="ls_down")
    payload = first_event(trig)
    assert payload["status"] == "deadline" and payload["errors"] >= 2 and payload["total"] is None
    assert "ConnectError" in payload["last_error"]
