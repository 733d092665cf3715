"""Deferrable wait for Label Studio batches: every task answered by ``required`` distinct users.

**It only watches.** Runs in the triggerer's event loop: JSON-only kwargs with no secret in them (a
connection id, resolved in the triggerer through :class:`~hopchain_airflow.hooks.label_studio.LabelStudioHook`),
the Label Studio SDK's async client, reads only (it lists tasks; it never changes one: opening a task to
the next annotator, withdrawing one at its first disagreement, sending one back when an answer does not
count is :mod:`pipelines.annotation.tend`'s job, run by DAG ``hopchain_labeling`` every minute and by
each decision), and no Airflow database access except resolving that connection. So a restarted
triggerer, or two of them, cannot act twice, and labeling advances whether or not a wait is deferred.

Completion is counted from the annotations themselves (:mod:`pipelines.annotation.completion`, the
stopped questions of :mod:`pipelines.annotation.early_stop` counting as complete), never from Label
Studio's stored counters. Connection errors, 5xx answers (Label Studio restarting) and garbled bodies
are logged and the polling goes on until the deadline; a 4xx (bad token, unknown project) fails the
trigger. One trigger waits for all open batches (``batches``: ``[{"project_id", "batch", "deadline"}]``)
and fires once every batch is complete or past its own deadline.

Event (JSON): ``{"status": "complete" | "deadline", "batches": [{"status", "project_id", "batch",
"deadline", "total", "complete", "incomplete", "required", "counter_mismatches", "stopped"}, ...],
"total", "complete", "incomplete", "stopped", "counter_mismatches", "required", "polls", "errors",
"last_error"}`` (totals over the batches; with one batch also its ``project_id`` and ``batch``). At a
deadline the complete items go on and the rest stay pending for the next run. The single-batch form
``(project_id, batch, deadline)`` and the acting kwargs of earlier versions (``handout``,
``hand_out_later_batches``) are still accepted, so a trigger serialized by them rebuilds; they no
longer do anything.
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
from pipelines.annotation.early_stop import stopped_questions
from pipelines.annotation.handout import HANDOUTS, Handout

CLASSPATH = "hopchain_airflow.triggers.annotation.AnnotationCompleteTrigger"


class AnnotationCompleteTrigger(BaseTrigger):
    """Poll (read only) until all tasks of each batch have ``required`` distinct annotators (or were
    stopped early), or that batch's deadline (ISO-8601, timezone-aware) passes.

    ``batches``: ``[{"project_id": int, "batch": str, "deadline": str}]``; or one batch as
    ``project_id, batch, deadline``. ``conn_id`` names the Label Studio connection
    (``AIRFLOW_CONN_<ID>`` works too); it is resolved in the triggerer, so no token travels in the
    serialized kwargs.
    """

    def __init__(
        self,
        project_id: int | None = None,
        batch: str | None = None,
        deadline: str | None = None,
        poll_interval_s: float = 30.0,
        required: int = 4,
        conn_id: str = "hopchain_label_studio",
        page_size: int = 500,
        request_timeout_s: float = 30.0,
        early_stop: bool = True,
        handout: str = "serial",
        batches: list[dict[str, Any]] | None = None,
        hand_out_later_batches: bool = True,
    ) -> None:
        super().__init__()
        if not conn_id:
            raise ValueError("AnnotationCompleteTrigger needs a Label Studio conn_id")
        if batches is None:
            if project_id is None or batch is None or deadline is None:
                raise ValueError("AnnotationCompleteTrigger needs batches, or project_id, batch and deadline")
            batches = [{"project_id": project_id, "batch": batch, "deadline": deadline}]
        if not batches:
            raise ValueError("AnnotationCompleteTrigger needs at least one batch")
        if handout not in HANDOUTS:
            raise ValueError(f"handout must be one of {HANDOUTS}, not {handout!r}")
        self.batches: list[dict[str, Any]] = [
            {"project_id": int(b["project_id"]), "batch": str(b["batch"]),
             "deadline": _parse_deadline(b["deadline"]).isoformat()}
            for b in batches
        ]
        self.poll_interval_s = float(poll_interval_s)
        self.required = int(required)
        self.conn_id = str(conn_id)
        self.page_size = int(page_size)
        self.request_timeout_s = float(request_timeout_s)
        self.early_stop = bool(early_stop)
        self.handout: Handout = handout  # type: ignore[assignment]
        self.hand_out_later_batches = bool(hand_out_later_batches)  # accepted from earlier versions; unused

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return CLASSPATH, {
            "batches": self.batches,
            "poll_interval_s": self.poll_interval_s,
            "required": self.required,
            "conn_id": self.conn_id,
            "page_size": self.page_size,
            "request_timeout_s": self.request_timeout_s,
            "early_stop": self.early_stop,
        }

    async def poll_batch(self, client: AsyncLabelStudioClient, project_id: int, batch: str) -> CompletionSummary:
        """Fetch every task of one batch (with annotations) and count where it stands; changes nothing."""
        tasks = [t async for t in client.iter_tasks(project_id, batch, "all", self.page_size)]
        stopped = stopped_questions(tasks, self.required) if self.early_stop else {}
        return summarize_completion(tasks, self.required, stopped)

    async def poll_once(self, client: AsyncLabelStudioClient, summaries: dict[str, CompletionSummary]) -> None:
        """One poll of every batch not yet complete (a batch past its deadline is still counted: people
        may still be answering it)."""
        for b in self.batches:
            done = summaries.get(b["batch"])
            if done is not None and done.all_complete:
                continue
            summaries[b["batch"]] = await self.poll_batch(client, b["project_id"], b["batch"])

    def _event(
        self, summaries: dict[str, CompletionSummary], polls: int, errors: int, last_error: str | None
    ) -> TriggerEvent:
        per_batch = []
        totals: dict[str, Any] = {"required": self.required, "total": 0, "complete": 0, "incomplete": 0,
                                  "counter_mismatches": 0, "stopped": 0}
        for b in self.batches:
            summary = summaries.get(b["batch"])
            counts: dict[str, Any] = summary.as_dict() if summary else {
                "required": self.required, "total": None, "complete": None, "incomplete": None,
                "counter_mismatches": None, "stopped": None}
            complete = summary is not None and summary.all_complete
            per_batch.append({"status": "complete" if complete else "deadline", "project_id": b["project_id"],
                              "batch": b["batch"], "deadline": b["deadline"], **counts})
            for k in ("total", "complete", "incomplete", "counter_mismatches", "stopped"):
                if counts[k] is None:
                    totals[k] = None
                elif totals[k] is not None:
                    totals[k] += counts[k]
        status = "complete" if all(p["status"] == "complete" for p in per_batch) else "deadline"
        single = {"project_id": self.batches[0]["project_id"], "batch": self.batches[0]["batch"]} \
            if len(self.batches) == 1 else {}
        return TriggerEvent({"status": status, **single, **totals, "batches": per_batch, "polls": polls,
                             "errors": errors, "last_error": last_error})

    def _finished(self, summaries: dict[str, CompletionSummary]) -> bool:
        now = datetime.now(UTC)
        for b in self.batches:
            summary = summaries.get(b["batch"])
            if not (summary is not None and summary.all_complete) and _parse_deadline(b["deadline"]) > now:
                return False
        return True

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from hopchain_airflow.hooks.label_studio import LabelStudioHook

        summaries: dict[str, CompletionSummary] = {}
        polls = errors = 0
        last_error: str | None = None
        last_deadline = max(_parse_deadline(b["deadline"]) for b in self.batches)
        client = await LabelStudioHook(self.conn_id).get_async_conn(timeout_s=self.request_timeout_s)
        async with client:
            while True:
                try:
                    await self.poll_once(client, summaries)
                    polls += 1
                    self.log.info("%s", "; ".join(
                        f"batch {b['batch']} of project {b['project_id']}: "
                        f"{summaries[b['batch']].complete}/{summaries[b['batch']].total} complete"
                        for b in self.batches if b["batch"] in summaries))
                except ApiError as err:
                    if err.status_code is not None and 400 <= err.status_code < 500:
                        raise  # a wrong token or project does not heal by waiting
                    errors += 1  # 5xx, or a body that is not JSON (the SDK reports its status)
                    last_error = f"HTTP {err.status_code}"
                    self.log.warning("Label Studio answered %s; polling on until %s", last_error,
                                     last_deadline.isoformat())
                except (httpx.TransportError, ParsingError, ValueError) as err:  # down, restarting, garbled
                    errors += 1
                    last_error = f"{type(err).__name__}: {err}"
                    self.log.warning("Label Studio unreachable (%s); polling on until %s", last_error,
                                     last_deadline.isoformat())
                if self._finished(summaries):
                    yield self._event(summaries, polls, errors, last_error)
                    return
                remaining = (last_deadline - datetime.now(UTC)).total_seconds()
                await asyncio.sleep(max(0.0, min(self.poll_interval_s, remaining)))


def _parse_deadline(value: str | datetime) -> datetime:
    dt = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    if dt.tzinfo is None:
        raise ValueError(f"deadline {value!r} must carry a timezone")
    return dt.astimezone(UTC)
