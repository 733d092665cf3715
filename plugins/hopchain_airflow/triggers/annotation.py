"""Deferrable wait for a Label Studio batch: every task answered by ``required`` distinct users.

Runs in the triggerer's event loop: JSON-only kwargs, async HTTP (``httpx.AsyncClient``), no
Airflow database access except resolving a connection id. Completion is counted from the
annotations themselves (:mod:`pipelines.annotation.completion`), never from Label Studio's
stored counters. Connection errors and 5xx answers (Label Studio restarting) are logged and the
polling goes on until the deadline; a 4xx (bad token, unknown project) fails the trigger.

Events (JSON): ``{"status": "complete" | "deadline", "project_id", "batch", "total", "complete",
"incomplete", "required", "counter_mismatches", "polls", "errors", "last_error"}``. At the
deadline the complete items go on and the rest stay pending for the next run.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
from airflow.triggers.base import BaseTrigger, TriggerEvent

from pipelines.annotation.client import auth_headers
from pipelines.annotation.completion import CompletionSummary, summarize_completion, tasks_page_params

CLASSPATH = "hopchain_airflow.triggers.annotation.AnnotationCompleteTrigger"


class AnnotationCompleteTrigger(BaseTrigger):
    """Poll until all tasks of ``batch`` in ``project_id`` have ``required`` distinct annotators,
    or ``deadline`` (ISO-8601, timezone-aware) passes.

    Give either ``conn_id`` (resolved in the triggerer; preferred: no secret in the kwargs) or
    ``base_url`` + ``token`` (Airflow stores trigger kwargs encrypted).
    """

    def __init__(
        self,
        project_id: int,
        batch: str,
        deadline: str,
        poll_interval_s: float = 30.0,
        required: int = 4,
        conn_id: str | None = None,
        base_url: str | None = None,
        token: str | None = None,
        page_size: int = 500,
        request_timeout_s: float = 30.0,
    ) -> None:
        super().__init__()
        if not conn_id and not (base_url and token):
            raise ValueError("AnnotationCompleteTrigger needs conn_id, or base_url and token")
        self.project_id = int(project_id)
        self.batch = str(batch)
        self.deadline = _parse_deadline(deadline).isoformat()
        self.poll_interval_s = float(poll_interval_s)
        self.required = int(required)
        self.conn_id = conn_id
        self.base_url = base_url.rstrip("/") if base_url else None
        self.token = token
        self.page_size = int(page_size)
        self.request_timeout_s = float(request_timeout_s)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return CLASSPATH, {
            "project_id": self.project_id,
            "batch": self.batch,
            "deadline": self.deadline,
            "poll_interval_s": self.poll_interval_s,
            "required": self.required,
            "conn_id": self.conn_id,
            "base_url": self.base_url,
            "token": self.token,
            "page_size": self.page_size,
            "request_timeout_s": self.request_timeout_s,
        }

    async def _credentials(self) -> tuple[str, str]:
        if self.base_url and self.token:
            return self.base_url, self.token
        from hopchain_airflow.hooks.label_studio import LabelStudioHook

        creds = await LabelStudioHook(self.conn_id or LabelStudioHook.default_conn_name).acredentials()
        return creds.url, creds.token

    async def poll_once(self, http: httpx.AsyncClient) -> CompletionSummary:
        """Fetch every task of the batch (with annotations) and count distinct annotators."""
        tasks: list[dict[str, Any]] = []
        page = 1
        while True:
            resp = await http.get(
                "/api/tasks",
                params=tasks_page_params(self.project_id, page, self.page_size, self.batch, "all"),
            )
            resp.raise_for_status()
            data = resp.json()
            chunk = data.get("tasks", [])
            tasks += chunk
            if not chunk or len(tasks) >= int(data.get("total", len(tasks))):
                break
            page += 1
        return summarize_completion(tasks, self.required)

    def _event(
        self, status: str, summary: CompletionSummary | None, polls: int, errors: int, last_error: str | None
    ) -> TriggerEvent:
        counts = (
            summary.as_dict()
            if summary
            else {
                "required": self.required,
                "total": None,
                "complete": None,
                "incomplete": None,
                "counter_mismatches": None,
            }
        )
        return TriggerEvent(
            {
                "status": status,
                "project_id": self.project_id,
                "batch": self.batch,
                **counts,
                "polls": polls,
                "errors": errors,
                "last_error": last_error,
            }
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        deadline = _parse_deadline(self.deadline)
        url, token = await self._credentials()
        summary: CompletionSummary | None = None
        polls = errors = 0
        last_error: str | None = None
        timeout = httpx.Timeout(self.request_timeout_s, connect=min(5.0, self.request_timeout_s))
        async with httpx.AsyncClient(base_url=url, headers=auth_headers(token), timeout=timeout) as http:
            while True:
                try:
                    summary = await self.poll_once(http)
                    polls += 1
                    self.log.info(
                        "batch %s of project %s: %d/%d complete",
                        self.batch,
                        self.project_id,
                        summary.complete,
                        summary.total,
                    )
                except httpx.HTTPStatusError as err:
                    if err.response.status_code < 500:
                        raise  # a wrong token or project does not heal by waiting
                    errors += 1
                    last_error = f"HTTP {err.response.status_code}"
                    self.log.warning(
                        "Label Studio answered %s; polling on until %s", last_error, self.deadline
                    )
                except (httpx.TransportError, ValueError) as err:  # down, restarting, or garbled body
                    errors += 1
                    last_error = f"{type(err).__name__}: {err}"
                    self.log.warning(
                        "Label Studio unreachable (%s); polling on until %s", last_error, self.deadline
                    )
                if summary is not None and summary.all_complete:
                    yield self._event("complete", summary, polls, errors, last_error)
                    return
                remaining = (deadline - datetime.now(UTC)).total_seconds()
                if remaining <= 0:
                    yield self._event("deadline", summary, polls, errors, last_error)
                    return
                await asyncio.sleep(min(self.poll_interval_s, remaining))


def _parse_deadline(value: str | datetime) -> datetime:
    dt = value if isinstance(value, datetime) else datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    if dt.tzinfo is None:
        raise ValueError(f"deadline {value!r} must carry a timezone")
    return dt.astimezone(UTC)
