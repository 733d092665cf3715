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
Studio's stored counters. It counts every annotation, also one that the labeling pass does not count
(:mod:`pipelines.annotation.integrity` needs the journal and the annotator registry, which a trigger does
not read): a batch it reports complete may still have items that the decision keeps pending and the
labeling pass sends back for a fresh answer. Connection errors, 5xx answers (Label Studio restarting)
and garbled bodies are logged and the polling goes on until the deadline; a 4xx (bad token, unknown
project) fails the trigger. One trigger waits for all open batches (``batches``: ``[{"project_id",
"batch", "deadline"}]``) and fires once every batch is complete or past its own deadline.

One event (JSON, :class:`AnnotationEvent`): ``{"status": "complete" | "deadline", "batches": [{"status",
"project_id", "batch", "deadline", "required", "total", "complete", "incomplete", "counter_mismatches",
"stopped"}, ...], "required", "total", "complete", "incomplete", "counter_mismatches", "stopped", "polls",
"errors", "last_error"}`` (totals over the batches; with one batch also its ``project_id`` and ``batch``). It
says nothing about tasks opened or withdrawn: the trigger does neither. At a deadline the complete items go
on and the rest stay pending for the next run. The single-batch form ``(project_id, batch, deadline)`` and
the acting kwargs of earlier versions (``handout``, ``hand_out_later_batches``) are still accepted, so a
trigger serialized by them rebuilds; the acting ones are ignored.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Literal, NotRequired, Protocol, TypedDict, get_args

import httpx
from airflow.triggers.base import BaseTrigger, TriggerEvent
from label_studio_sdk.core.api_error import ApiError
from label_studio_sdk.core.parse_error import ParsingError

from pipelines.annotation.completion import CompletionSummary, summarize_completion
from pipelines.annotation.early_stop import stopped_questions

CLASSPATH = "hopchain_airflow.triggers.annotation.AnnotationCompleteTrigger"

EventStatus = Literal["complete", "deadline"]
EVENT_STATUSES: tuple[EventStatus, ...] = get_args(EventStatus)
COUNTS = ("total", "complete", "incomplete", "counter_mismatches", "stopped")


class TaskReader(Protocol):
    """All the trigger may call: listing tasks (:meth:`AsyncLabelStudioClient.iter_tasks
    <pipelines.annotation.client.AsyncLabelStudioClient.iter_tasks>`). It has no method that changes one."""

    def iter_tasks(
        self, project_id: int, batch: str | None = None, fields: str = "all", page_size: int = 500,
        query: str | None = None, first_task_id: int | None = None,
    ) -> AsyncIterator[dict[str, Any]]: ...


class WaitedBatch(TypedDict):
    """One batch the trigger waits for (its serialized form)."""

    project_id: int
    batch: str
    deadline: str  # ISO-8601 in UTC
    # the batch record's id bound (pipelines.store.ledger.BatchRecord.first_task_id): the poll reads
    # ``data.batch == batch AND id >= first_task_id``; None (or absent: serialized by an earlier version): unbounded
    first_task_id: NotRequired[int | None]


class BatchResult(TypedDict):
    """Where one batch stood when the event fired. The counts are ``None`` when no poll of the batch
    succeeded (Label Studio down until the deadline)."""

    status: EventStatus
    project_id: int
    batch: str
    deadline: str
    required: int
    total: int | None
    complete: int | None
    incomplete: int | None
    counter_mismatches: int | None
    stopped: int | None


class AnnotationEvent(TypedDict):
    """The trigger's one event (JSON). The counts are sums over ``batches`` (``None`` if any is)."""

    status: EventStatus  # complete: every batch complete; deadline: at least one past its deadline, not complete
    batches: list[BatchResult]
    required: int
    total: int | None
    complete: int | None
    incomplete: int | None
    counter_mismatches: int | None
    stopped: int | None
    polls: int  # successful polls of every batch not yet complete
    errors: int  # polls that failed (5xx, garbled body, connection error)
    last_error: str | None
    project_id: NotRequired[int]  # with one batch: its project and name
    batch: NotRequired[str]


class AnnotationCompleteTrigger(BaseTrigger):
    """Poll (read only) until all tasks of each batch have ``required`` distinct annotators (or were
    stopped early), or that batch's deadline (ISO-8601, timezone-aware) passes.

    ``batches``: ``[{"project_id": int, "batch": str, "deadline": str, "first_task_id": int | None}]``
    (``first_task_id`` optional: the batch's id bound, see :class:`WaitedBatch`); or one batch as
    ``project_id, batch, deadline``. ``conn_id`` names the Label Studio connection
    (``AIRFLOW_CONN_<ID>`` works too); it is resolved in the triggerer, so no token travels in the
    serialized kwargs. ``early_stop``: a task whose answers can no longer be unanimous counts as
    complete (as the decision counts it). ``handout`` and ``hand_out_later_batches`` are accepted
    from triggers serialized by earlier versions, which acted on tasks; they are ignored.
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
        handout: str | None = None,
        batches: Sequence[Mapping[str, Any]] | None = None,
        hand_out_later_batches: bool | None = None,
    ) -> None:
        super().__init__()
        del handout, hand_out_later_batches  # earlier versions acted on tasks; acting is tend's alone now
        if not conn_id:
            raise ValueError("AnnotationCompleteTrigger needs a Label Studio conn_id")
        if batches is None:
            if project_id is None or batch is None or deadline is None:
                raise ValueError("AnnotationCompleteTrigger needs batches, or project_id, batch and deadline")
            batches = [{"project_id": project_id, "batch": batch, "deadline": deadline}]
        if not batches:
            raise ValueError("AnnotationCompleteTrigger needs at least one batch")
        self.batches: list[WaitedBatch] = [_waited(b) for b in batches]
        self.poll_interval_s = float(poll_interval_s)
        self.required = int(required)
        self.conn_id = str(conn_id)
        self.page_size = int(page_size)
        self.request_timeout_s = float(request_timeout_s)
        self.early_stop = bool(early_stop)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return CLASSPATH, {
            "batches": [dict(b) for b in self.batches],
            "poll_interval_s": self.poll_interval_s,
            "required": self.required,
            "conn_id": self.conn_id,
            "page_size": self.page_size,
            "request_timeout_s": self.request_timeout_s,
            "early_stop": self.early_stop,
        }

    async def poll_batch(
        self, client: TaskReader, project_id: int, batch: str, first_task_id: int | None = None
    ) -> CompletionSummary:
        """Fetch every task of one batch (with annotations; ``data.batch`` bounded by ``first_task_id``, as the
        sync readers do) and count where it stands; changes nothing."""
        tasks = [t async for t in client.iter_tasks(project_id, batch, "all", self.page_size,
                                                      first_task_id=first_task_id)]
        stopped = stopped_questions(tasks, self.required) if self.early_stop else {}
        return summarize_completion(tasks, self.required, stopped)

    async def poll_once(self, client: TaskReader, summaries: dict[tuple[int, str], CompletionSummary]) -> None:
        """One poll of every batch not yet complete (a batch past its deadline is still counted: people
        may still be answering it). ``summaries`` is keyed by ``(project_id, batch)``."""
        for b in self.batches:
            key = (b["project_id"], b["batch"])
            done = summaries.get(key)
            if done is not None and done.all_complete:
                continue
            summaries[key] = await self.poll_batch(client, b["project_id"], b["batch"], b.get("first_task_id"))

    def event_payload(
        self, summaries: Mapping[tuple[int, str], CompletionSummary], polls: int, errors: int, last_error: str | None
    ) -> AnnotationEvent:
        """The event for where the batches stand (see :class:`AnnotationEvent`)."""
        per_batch: list[BatchResult] = []
        totals: dict[str, int | None] = dict.fromkeys(COUNTS, 0)
        for b in self.batches:
            summary = summaries.get((b["project_id"], b["batch"]))
            counts: dict[str, int | None] = (
                {k: int(getattr(summary, k)) for k in COUNTS} if summary is not None else dict.fromkeys(COUNTS)
            )
            complete = summary is not None and summary.all_complete
            per_batch.append({
                "status": "complete" if complete else "deadline", "project_id": b["project_id"],
                "batch": b["batch"], "deadline": b["deadline"], "required": self.required,
                "total": counts["total"], "complete": counts["complete"], "incomplete": counts["incomplete"],
                "counter_mismatches": counts["counter_mismatches"], "stopped": counts["stopped"],
            })
            for k in COUNTS:
                have, add = totals[k], counts[k]
                totals[k] = None if have is None or add is None else have + add
        event: AnnotationEvent = {
            "status": "complete" if all(r["status"] == "complete" for r in per_batch) else "deadline",
            "batches": per_batch, "required": self.required,
            "total": totals["total"], "complete": totals["complete"], "incomplete": totals["incomplete"],
            "counter_mismatches": totals["counter_mismatches"], "stopped": totals["stopped"],
            "polls": polls, "errors": errors, "last_error": last_error,
        }
        if len(self.batches) == 1:
            event["project_id"], event["batch"] = self.batches[0]["project_id"], self.batches[0]["batch"]
        return event

    def _finished(self, summaries: Mapping[tuple[int, str], CompletionSummary]) -> bool:
        now = datetime.now(UTC)
        for b in self.batches:
            summary = summaries.get((b["project_id"], b["batch"]))
            if not (summary is not None and summary.all_complete) and _parse_deadline(b["deadline"]) > now:
                return False
        return True

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from hopchain_airflow.hooks.label_studio import LabelStudioHook

        summaries: dict[tuple[int, str], CompletionSummary] = {}
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
                        f"{summaries[b['project_id'], b['batch']].complete}/"
                        f"{summaries[b['project_id'], b['batch']].total} complete"
                        for b in self.batches if (b["project_id"], b["batch"]) in summaries))
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
                    yield TriggerEvent(self.event_payload(summaries, polls, errors, last_error))
                    return
                remaining = (last_deadline - datetime.now(UTC)).total_seconds()
                await asyncio.sleep(max(0.0, min(self.poll_interval_s, remaining)))


def _waited(b: Mapping[str, Any]) -> WaitedBatch:
    """One batch's serialized form; ``first_task_id`` only when the batch has one (an unbounded batch
    serializes as earlier versions did)."""
    waited: WaitedBatch = {"project_id": int(b["project_id"]), "batch": str(b["batch"]),
                           "deadline": _parse_deadline(b["deadline"]).isoformat()}
    if b.get("first_task_id") is not None:
        waited["first_task_id"] = int(b["first_task_id"])
    return waited


def _parse_deadline(value: str | datetime) -> datetime:
    dt = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    if dt.tzinfo is None:
        raise ValueError(f"deadline {value!r} must carry a timezone")
    return dt.astimezone(UTC)
