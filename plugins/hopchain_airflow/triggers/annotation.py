"""Deferrable wait for a Label Studio batch: every task answered by ``required`` distinct users.

Runs in the triggerer's event loop: JSON-only kwargs with no secret in them (a connection id,
resolved in the triggerer through :class:`~hopchain_airflow.hooks.label_studio.LabelStudioHook`),
the Label Studio SDK's async client, no Airflow database access except resolving that connection.
Completion is counted from the annotations themselves (:mod:`pipelines.annotation.completion`),
never from Label Studio's stored counters. Connection errors, 5xx answers (Label Studio
restarting) and garbled bodies are logged and the polling goes on until the deadline; a 4xx (bad
token, unknown project) fails the trigger.

Early stop (``early_stop``, on by default): each poll also finds the tasks whose counted answers can
no longer be unanimous (:mod:`pipelines.annotation.early_stop`) and withdraws them from Label
Studio's ``/next`` stream (``PATCH /api/tasks/<id>`` with ``overlap`` = the annotators it has and
``is_labeled``); such a task counts as complete, and the decision rejects it with its reason.

Events (JSON): ``{"status": "complete" | "deadline", "project_id", "batch", "total", "complete",
"incomplete", "required", "counter_mismatches", "stopped", "withdrawn", "polls", "errors",
"last_error"}`` (``stopped``: tasks stopped early, counted in ``complete``; ``withdrawn``: tasks this
wait took out of the stream). At the deadline the complete items go on and the rest stay pending
for the next run.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
from airflow.triggers.base import BaseTrigger, TriggerEvent
from label_studio_sdk.core.api_error import ApiError
from label_studio_sdk.core.parse_error import ParsingError

from pipelines.annotation.client import AsyncLabelStudioClient
from pipelines.annotation.completion import CompletionSummary, summarize_completion
from pipelines.annotation.early_stop import stopped_questions, withdrawals

CLASSPATH = "hopchain_airflow.triggers.annotation.AnnotationCompleteTrigger"


class AnnotationCompleteTrigger(BaseTrigger):
    """Poll until all tasks of ``batch`` in ``project_id`` have ``required`` distinct annotators,
    or ``deadline`` (ISO-8601, timezone-aware) passes.

    ``conn_id`` names the Label Studio connection (``AIRFLOW_CONN_<ID>`` works too); it is
    resolved in the triggerer, so no token travels in the serialized kwargs.
    """

    def __init__(
        self,
        project_id: int,
        batch: str,
        deadline: str,
        poll_interval_s: float = 30.0,
        required: int = 4,
        conn_id: str = "hopchain_label_studio",
        page_size: int = 500,
        request_timeout_s: float = 30.0,
        early_stop: bool = True,
    ) -> None:
        super().__init__()
        if not conn_id:
            raise ValueError("AnnotationCompleteTrigger needs a Label Studio conn_id")
        self.project_id = int(project_id)
        self.batch = str(batch)
        self.deadline = _parse_deadline(deadline).isoformat()
        self.poll_interval_s = float(poll_interval_s)
        self.required = int(required)
        self.conn_id = str(conn_id)
        self.page_size = int(page_size)
        self.request_timeout_s = float(request_timeout_s)
        self.early_stop = bool(early_stop)
        self.withdrawn = 0

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return CLASSPATH, {
            "project_id": self.project_id,
            "batch": self.batch,
            "deadline": self.deadline,
            "poll_interval_s": self.poll_interval_s,
            "required": self.required,
            "conn_id": self.conn_id,
            "page_size": self.page_size,
            "request_timeout_s": self.request_timeout_s,
            "early_stop": self.early_stop,
        }

    async def poll_once(self, client: AsyncLabelStudioClient) -> CompletionSummary:
        """Fetch every task of the batch (with annotations), withdraw the ones stopped early from the
        labeling stream, and count distinct annotators."""
        tasks = [t async for t in client.iter_tasks(self.project_id, self.batch, "all", self.page_size)]
        if not self.early_stop:
            return summarize_completion(tasks, self.required)
        for w in withdrawals(tasks, self.required):
            await client.withdraw_task(w.task_id, w.overlap)
            self.withdrawn += 1
            self.log.info("withdrew task %s (%s) from the labeling stream: %s", w.task_id, w.question_id, w.reason)
        return summarize_completion(tasks, self.required, stopped_questions(tasks, self.required))

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
                "stopped": None,
            }
        )
        return TriggerEvent(
            {
                "status": status,
                "project_id": self.project_id,
                "batch": self.batch,
                **counts,
                "withdrawn": self.withdrawn,
                "polls": polls,
                "errors": errors,
                "last_error": last_error,
            }
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from hopchain_airflow.hooks.label_studio import LabelStudioHook

        deadline = _parse_deadline(self.deadline)
        summary: CompletionSummary | None = None
        polls = errors = 0
        last_error: str | None = None
        client = await LabelStudioHook(self.conn_id).get_async_conn(timeout_s=self.request_timeout_s)
        async with client:
            while True:
                try:
                    summary = await self.poll_once(client)
                    polls += 1
                    self.log.info(
                        "batch %s of project %s: %d/%d complete",
                        self.batch,
                        self.project_id,
                        summary.complete,
                        summary.total,
                    )
                except ApiError as err:
                    if err.status_code is not None and 400 <= err.status_code < 500:
                        raise  # a wrong token or project does not heal by waiting
                    errors += 1  # 5xx, or a body that is not JSON (the SDK reports its status)
                    last_error = f"HTTP {err.status_code}"
                    self.log.warning(
                        "Label Studio answered %s; polling on until %s", last_error, self.deadline
                    )
                except (httpx.TransportError, ParsingError, ValueError) as err:  # down, restarting, garbled
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
    dt = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    if dt.tzinfo is None:
        raise ValueError(f"deadline {value!r} must carry a timezone")
    return dt.astimezone(UTC)
