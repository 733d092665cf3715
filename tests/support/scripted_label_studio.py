"""Stand-ins for Label Studio in unit tests: a scripted HTTP server on loopback (what the SDK really sends)
and a scripted in-process async client (what the annotation wait's trigger calls), plus the JSON of
task pages. Nothing here reaches a real server."""

from __future__ import annotations

import json
import threading
from collections.abc import AsyncIterator, Iterable, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit


class ScriptedLabelStudio:
    """A loopback HTTP server answering ``GET /api/...`` paths from a script (the last answer of a
    path repeats); it records each request's path and Authorization header. Every write (POST, PATCH,
    PUT, DELETE) is recorded in ``writes`` and refused (405)."""

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

            def _write(self) -> None:
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

    def connection(self, token: str = "tok-1") -> str:
        """The ``AIRFLOW_CONN_<ID>`` value (JSON form) for this server."""
        return json.dumps({"conn_type": "label_studio", "host": "http://127.0.0.1", "port": self.port,
                           "password": token})

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def make_task(task_id: int, annotators: Iterable[int], batch: str = "b") -> dict[str, Any]:
    """A task as ``fields=all`` lists it: one non-cancelled annotation per user id in ``annotators``."""
    return {
        "id": task_id,
        "data": {"question_id": f"q{task_id}", "batch": batch},
        "annotations": [{"completed_by": u, "was_cancelled": False} for u in annotators],
    }


def tasks_page(*annotators: list[int]) -> dict[str, Any]:
    """One page of ``GET /api/tasks/``: task ``i`` answered by the users in ``annotators[i]``."""
    tasks = [make_task(i, users) for i, users in enumerate(annotators)]
    return {"tasks": tasks, "total": len(tasks), "total_annotations": 0, "total_predictions": 0}


class ReadOnlyViolation(AssertionError):
    """The code under test called something on :class:`ScriptedTaskReader` other than reading tasks."""


class ScriptedTaskReader:
    """An in-process stand-in for :class:`pipelines.annotation.client.AsyncLabelStudioClient` that can
    only list tasks. Each call of :meth:`iter_tasks` takes the next step of ``script`` (the last one
    repeats): a list of tasks to yield, or an exception to raise. Every other attribute, the client's
    write methods included (``set_task_overlap``, ``create_annotation``, ...), raises
    :class:`ReadOnlyViolation` and is recorded in ``violations``."""

    def __init__(self, script: Sequence[list[dict[str, Any]] | BaseException]) -> None:
        self.script = list(script)
        self.calls: list[tuple[int, str | None, str, int]] = []
        self.bounds: list[int | None] = []  # the first_task_id of each call (the batch's id bound)
        self.violations: list[str] = []
        self.closed = False

    def __getattr__(self, name: str) -> Any:  # only for attributes this class does not define
        if name.startswith("__"):
            raise AttributeError(name)
        self.violations.append(name)
        raise ReadOnlyViolation(f"the trigger called {name!r}: it may only read tasks")

    async def __aenter__(self) -> ScriptedTaskReader:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.closed = True

    async def iter_tasks(
        self, project_id: int, batch: str | None = None, fields: str = "all", page_size: int = 500,
        query: str | None = None, first_task_id: int | None = None,
    ) -> AsyncIterator[dict[str, Any]]:
        self.calls.append((project_id, batch, fields, page_size))
        self.bounds.append(first_task_id)
        step = self.script.pop(0) if len(self.script) > 1 else self.script[0]
        if isinstance(step, BaseException):
            raise step
        for task in step:
            yield task
