"""Deferrable wait for Label Studio batches: every task answered by ``required`` distinct users.

Runs in the triggerer's event loop: JSON-only kwargs with no secret in them (a connection id,
resolved in the triggerer through :class:`~hopchain_airflow.hooks.label_studio.LabelStudioHook`),
the Label Studio SDK's async client, no Airflow database access except resolving that connection.
Completion is counted from the annotations themselves (:mod:`pipelines.annotation.completion`),
never from Label Studio's stored counters. Connection errors, 5xx answers (Label Studio
restarting) and garbled bodies are logged and the polling goes on until the deadline; a 4xx (bad
token, unknown project) fails the trigger.

One trigger waits for all open batches at once (``batches``: ``[{"project_id", "batch",
"deadline"}]``), so every batch is handed out on every poll, not only the one waited for first.
Each poll reconciles every task of every batch (:mod:`pipelines.annotation.handout`): with the
``serial`` handout (default) a task whose answers still agree is opened to one more annotator; with
``early_stop`` (default) a task whose counted answers can no longer be unanimous is withdrawn from
``/next`` (it counts as complete and the decision rejects it with its reason). Under the serial
handout it also hands out the tasks of batches pushed after it began (``hand_out_later_batches``:
the tasks with a higher id than the waited batches' newest, one filtered query a poll; the next run
waits for them). It fires once every batch is complete or past its own deadline.

Event (JSON): ``{"status": "complete" | "deadline", "batches": [{"status", "project_id", "batch",
"total", "complete", "incomplete", "required", "counter_mismatches", "stopped"}, ...], "total",
"complete", "incomplete", "stopped", "counter_mismatches", "required", "withdrawn", "opened",
"opened_later_batches", "polls", "errors", "last_error"}`` (totals over the batches; ``withdrawn`` /
``opened``: tasks this wait took out of / opened in the stream; ``opened_later_batches``: tasks of
later batches it opened; with one batch also its ``project_id`` and ``batch``). At
a deadline the complete items go on and the rest stay pending for the next run. The single-batch
form ``(project_id, batch, deadline)`` of earlier versions is still accepted.
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
from pipelines.annotation.completion import CompletionSummary, ids_after_filter
from pipelines.annotation.handout import HANDOUTS, Handout, plan

CLASSPATH = "hopchain_airflow.triggers.annotation.AnnotationCompleteTrigger"


class AnnotationCompleteTrigger(BaseTrigger):
    """Poll until all tasks of each batch have ``required`` distinct annotators (or were stopped
    early), or that batch's deadline (ISO-8601, timezone-aware) passes.

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
        self.hand_out_later_batches = bool(hand_out_later_batches)
        self.withdrawn = 0
        self.opened = 0
        self.opened_later = 0  # tasks of batches pushed after this wait began, handed on by it
        self._newest: dict[int, int] = {}  # project -> highest task id of the waited batches

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return CLASSPATH, {
            "batches": self.batches,
            "poll_interval_s": self.poll_interval_s,
            "required": self.required,
            "conn_id": self.conn_id,
            "page_size": self.page_size,
            "request_timeout_s": self.request_timeout_s,
            "early_stop": self.early_stop,
            "handout": self.handout,
            "hand_out_later_batches": self.hand_out_later_batches,
        }

    async def poll_batch(self, client: AsyncLabelStudioClient, project_id: int, batch: str) -> CompletionSummary:
        """Fetch every task of one batch (with annotations), put each where the handout wants it
        (withdraw the ones stopped early, open the agreeing ones to one more annotator) and count
        distinct annotators."""
        tasks = [t async for t in client.iter_tasks(project_id, batch, "all", self.page_size)]
        if tasks:
            self._newest[project_id] = max(self._newest.get(project_id, 0), max(int(t["id"]) for t in tasks))
        changes, summary = plan(tasks, self.required, self.handout, self.early_stop)
        for c in changes:
            await client.set_task_overlap(c.task_id, c.overlap, c.is_labeled)
            if c.withdraws:
                self.withdrawn += 1
                self.log.info("withdrew task %s (%s) from the labeling stream: %s", c.task_id, c.question_id,
                              c.reason)
            else:
                self.opened += 1
        return summary

    async def poll_later_batches(self, client: AsyncLabelStudioClient, project_id: int) -> None:
        """Hand out the tasks of batches pushed after this wait began (the next run waits for them, but
        under the serial handout their tasks would stop after one answer until then): the tasks with
        an id above the waited batches' newest, read with one filtered query and not waited for."""
        newest = self._newest.get(project_id)
        if newest is None:
            return  # the waited batches have no tasks: this wait ends at once anyway
        own = {b["batch"] for b in self.batches if b["project_id"] == project_id}
        query = ids_after_filter(newest)
        tasks = [t async for t in client.iter_tasks(project_id, None, "all", self.page_size, query=query)
                 if str((t.get("data") or {}).get("batch")) not in own]
        changes, _ = plan(tasks, self.required, self.handout, self.early_stop)
        for c in changes:
            await client.set_task_overlap(c.task_id, c.overlap, c.is_labeled)
            if not c.withdraws:
                self.opened_later += 1

    async def poll_once(self, client: AsyncLabelStudioClient, summaries: dict[str, CompletionSummary]) -> None:
        """One poll of every batch not yet complete (a batch past its deadline is still handed out:
        people may still be answering it), then of the tasks pushed since (serial handout)."""
        for b in self.batches:
            done = summaries.get(b["batch"])
            if done is not None and done.all_complete:
                continue
            summaries[b["batch"]] = await self.poll_batch(client, b["project_id"], b["batch"])
        if self.hand_out_later_batches and self.handout == "serial" and not self._finished(summaries):
            for project_id in sorted({b["project_id"] for b in self.batches}):
                try:
                    await self.poll_later_batches(client, project_id)
                except (ApiError, httpx.TransportError, ParsingError, ValueError) as err:
                    # best effort: the next run's wait hands these out anyway; never fail this wait for it
                    self.log.warning("could not hand out later batches of project %s (%s: %s)", project_id,
                                     type(err).__name__, err)

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
        return TriggerEvent({"status": status, **single, **totals, "batches": per_batch,
                             "withdrawn": self.withdrawn, "opened": self.opened,
                             "opened_later_batches": self.opened_later, "polls": polls,
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
