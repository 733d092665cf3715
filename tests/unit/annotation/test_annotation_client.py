"""The SDK-backed client against a scripted Label Studio (httpx MockTransport, no network): what it
sends (token auth, the batch filter), what it returns (tasks exactly as the server sent them, every
page), and which calls it retries (reads on 5xx, never writes)."""

from __future__ import annotations

import json

import httpx
import pytest
from label_studio_sdk.core.api_error import ApiError

from pipelines.annotation.client import LabelStudioClient, LabelStudioCredentials
from pipelines.annotation.completion import batch_filter

pytestmark = pytest.mark.unit

TASK = {
    "id": 11,
    "data": {"image": "http://s3/i.png", "question": "How many?", "question_id": "q1", "batch": "run-1"},
    "annotations": [
        {
            "id": 1,
            "completed_by": 3,
            "was_cancelled": False,
            "lead_time": 4.5,
            "result": [{"from_name": "answer", "to_name": "image", "type": "number", "value": {"number": 2}}],
        }
    ],
    "total_annotations": 1,
    "is_labeled": False,
    "field_the_sdk_does_not_know": {"kept": True},
}


class Script:
    """Answers per (method, path) from a list of responses (the last one repeats); records requests."""

    def __init__(self, routes: dict[tuple[str, str], list[httpx.Response]]):
        self.routes = routes
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answers = self.routes.get((request.method, request.url.path))
        if not answers:
            return httpx.Response(404, json={"detail": "Not found."})
        return answers.pop(0) if len(answers) > 1 else answers[0]

    def calls(self, method: str, path: str) -> list[httpx.Request]:
        return [r for r in self.requests if r.method == method and r.url.path == path]


@pytest.fixture(autouse=True)
def no_backoff(monkeypatch):
    monkeypatch.setattr("label_studio_sdk.core.http_client._retry_timeout", lambda **_: 0.0)


def client(script: Script, retries: int = 2) -> LabelStudioClient:
    return LabelStudioClient(
        "http://ls.test:8081/", "secret-token", retries=retries, transport=httpx.MockTransport(script)
    )


def tasks_page(tasks: list[dict], total: int) -> httpx.Response:
    return httpx.Response(
        200, json={"tasks": tasks, "total": total, "total_annotations": 0, "total_predictions": 0}
    )


def test_token_auth_and_the_token_never_in_repr():
    script = Script(
        {("GET", "/api/current-user/whoami"): [httpx.Response(200, json={"id": 1, "email": "a@x"})]}
    )
    with client(script) as c:
        assert c.whoami() == {"id": 1, "email": "a@x"}
        assert c.url == "http://ls.test:8081" and c.token == "secret-token"
        assert "secret-token" not in repr(c) and "secret-token" not in repr(c.sdk)
    assert script.requests[0].headers["Authorization"] == "Token secret-token"
    assert "secret-token" not in repr(LabelStudioCredentials("http://h", "secret-token"))


def test_iter_tasks_reads_every_page_of_one_batch_as_sent():
    script = Script(
        {
            ("GET", "/api/tasks/"): [
                tasks_page([TASK, {**TASK, "id": 12}], 3),
                tasks_page([{**TASK, "id": 13}], 3),
                httpx.Response(404, json={"detail": "Invalid page."}),  # how Label Studio ends the pages
            ]
        }
    )
    with client(script) as c:
        tasks = list(c.iter_tasks(7, batch="run-1", page_size=2))
    assert [t["id"] for t in tasks] == [11, 12, 13]
    assert tasks[0] == TASK  # unknown fields kept, nothing added
    first = script.requests[0].url.params
    assert (first["project"], first["fields"], first["page_size"], first["page"]) == ("7", "all", "2", "1")
    assert json.loads(first["query"]) == json.loads(batch_filter("run-1"))
    assert [r.url.params["page"] for r in script.requests] == ["1", "2", "3"]


def test_reads_retry_5xx_but_writes_do_not():
    script = Script(
        {
            ("GET", "/api/users/"): [
                httpx.Response(503),
                httpx.Response(200, json=[{"id": 3, "email": "a@x"}]),
            ],
            ("POST", "/api/projects/7/import"): [httpx.Response(503)],
        }
    )
    with client(script) as c:
        assert c.users() == [{"id": 3, "email": "a@x"}]
        with pytest.raises(ApiError) as err:
            c.import_tasks(7, [{"data": {"question_id": "q1"}}])
    assert err.value.status_code == 503
    assert len(script.calls("GET", "/api/users/")) == 2
    assert len(script.calls("POST", "/api/projects/7/import")) == 1  # an import is never sent twice


def test_a_4xx_is_raised_at_once():
    script = Script({("GET", "/api/tasks/"): [httpx.Response(401, json={"detail": "Invalid token."})]})
    with client(script) as c, pytest.raises(ApiError) as err:
        list(c.iter_tasks(7))
    assert err.value.status_code == 401 and len(script.requests) == 1


def test_find_project_wants_the_exact_title_and_the_lowest_id():
    page = {
        "count": 3,
        "next": None,
        "previous": None,
        "results": [
            {"id": 9, "title": "HopChain"},
            {"id": 4, "title": "HopChain"},
            {"id": 2, "title": "HopChain old"},
        ],
    }
    script = Script(
        {
            ("GET", "/api/projects/"): [
                httpx.Response(200, json=page),
                httpx.Response(404, json={"detail": "Invalid page."}),
            ]
        }
    )
    with client(script) as c:
        assert c.find_project("HopChain") == {"id": 4, "title": "HopChain"}
    assert script.requests[0].url.params["title"] == "HopChain"
    empty = Script({("GET", "/api/projects/"): [httpx.Response(200, json={"count": 0, "results": []})]})
    with client(empty) as c:
        assert c.find_project("Other") is None


def test_labeling_stream_and_annotations():
    script = Script(
        {
            ("GET", "/api/projects/7/next"): [
                httpx.Response(200, json={"id": 11, "data": {"question_id": "q1"}}),
                httpx.Response(404, json={"detail": "No more tasks"}),
            ],
            ("POST", "/api/tasks/11/annotations/"): [httpx.Response(201, json={"id": 5, "completed_by": 3})],
        }
    )
    with client(script) as c:
        assert c.next_task(7) == {"id": 11, "data": {"question_id": "q1"}}
        assert c.next_task(7) is None  # the stream is exhausted
        assert c.create_annotation(11, [{"from_name": "answer"}], lead_time_s=3.5)["id"] == 5
    body = json.loads(script.calls("POST", "/api/tasks/11/annotations/")[0].content)
    assert body == {"result": [{"from_name": "answer"}], "was_cancelled": False, "lead_time": 3.5}
    assert all(r.headers["Authorization"] == "Token secret-token" for r in script.requests)


def test_iter_tasks_sends_the_batch_id_bound_in_its_query():
    script = Script({("GET", "/api/tasks/"): [tasks_page([TASK], 1), httpx.Response(404, json={})]})
    with client(script) as c:
        assert [t["id"] for t in c.iter_tasks(7, batch="run-1", first_task_id=11)] == [11]
    assert json.loads(script.requests[0].url.params["query"]) == json.loads(batch_filter("run-1", 11))


def test_import_asks_for_the_created_task_ids():
    """The Community edition's import answers ``task_ids`` when asked (``return_task_ids``); an answer
    without them (an asynchronous import) gives ``None``, never a guess."""
    with_ids = {"task_count": 2, "annotation_count": 0, "task_ids": [41, 42]}
    script = Script({("POST", "/api/projects/7/import"): [httpx.Response(201, json=with_ids),
                                                          httpx.Response(201, json={"import": 9})]})
    with client(script) as c:
        first = c.import_tasks(7, [{"data": {"question_id": "q1"}}, {"data": {"question_id": "q2"}}])
        second = c.import_tasks(7, [{"data": {"question_id": "q3"}}])
    assert (first.count, first.task_ids) == (2, (41, 42))
    assert (second.count, second.task_ids) == (1, None)
    assert script.requests[0].url.params["return_task_ids"] == "true"
