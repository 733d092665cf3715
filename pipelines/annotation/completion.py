"""Completion of tasks, decided from the annotations themselves (pure functions, no I/O).

Label Studio's stored counters (``total_annotations``, ``is_labeled``) can be wrong under
concurrent submissions, so a task is *complete* when its non-cancelled annotations have at least
``required`` distinct ``completed_by`` users. These helpers are shared by the synchronous client
and the asynchronous Airflow trigger, so both count the same way.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any


def _data_item(key: str, operator: str, value: str | list[str]) -> dict[str, Any]:
    return {"filter": f"filter:tasks:data.{key}", "operator": operator, "type": "String", "value": value}


def _query(*items: dict[str, Any]) -> str:
    """Data Manager filter items joined by ``and`` (one query: Label Studio applies them together)."""
    return json.dumps({"filters": {"conjunction": "and", "items": list(items)}})


def _data_filter(key: str, operator: str, value: str | list[str]) -> str:
    return _query(_data_item(key, operator, value))


def id_at_least_item(first_task_id: int) -> dict[str, Any]:
    """The Data Manager filter item ``id >= first_task_id``: Label Studio answers it from the primary key, so
    its cost does not grow with the project (a ``data.*`` item is a JSON scan of every task)."""
    if isinstance(first_task_id, bool) or int(first_task_id) < 1:
        raise ValueError(f"not a Label Studio task id: {first_task_id!r}")
    return {"filter": "filter:tasks:id", "operator": "greater_or_equal", "type": "Number", "value": int(first_task_id)}


def batch_filter(batch: str, first_task_id: int | None = None) -> str:
    """A Data Manager ``query`` (JSON text) selecting the tasks whose ``data.batch`` equals ``batch``,
    and, with ``first_task_id`` (:attr:`pipelines.store.ledger.BatchRecord.first_task_id`), whose id is at
    least that: the id item lets Label Studio skip the older tasks of the project, so reading a batch
    stops growing with the project's history. ``None`` (a record written before the bound existed,
    or a batch that holds no task) reads the batch unbounded."""
    item = _data_item("batch", "equal", batch)
    return _query(item) if first_task_id is None else _query(item, id_at_least_item(first_task_id))


def data_in_filter(key: str, values: list[str]) -> str:
    """A Data Manager ``query`` (JSON text) selecting the tasks whose ``data.<key>`` is one of ``values``
    (operator ``in_list``: Label Studio evaluates it in its database and sends only the matches)."""
    if not key.isidentifier():
        raise ValueError(f"not a task data field: {key!r}")
    return _data_filter(key, "in_list", [str(v) for v in values])


def ids_after_filter(task_id: int) -> str:
    """A Data Manager ``query`` (JSON text) selecting the tasks with an id above ``task_id``: Label Studio
    numbers tasks in creation order, so these are the tasks pushed after it."""
    item = {"filter": "filter:tasks:id", "operator": "greater", "type": "Number", "value": int(task_id)}
    return _query(item)


def tasks_query(
    project_id: int, batch: str | None = None, fields: str = "all", page_size: int = 500, query: str | None = None,
    first_task_id: int | None = None,
) -> dict[str, str | int]:
    """Keyword arguments of the SDK's ``tasks.list`` for a project's tasks (optionally of one batch).

    ``fields="all"`` includes each task's annotations (with ``completed_by``, ``was_cancelled``,
    ``lead_time``); ``"task_only"`` returns task data only (cheaper). The sync client and the
    trigger's async client both list tasks with these arguments, so both read a batch the same way.
    ``first_task_id`` bounds a batch's read by task id (:func:`batch_filter`); it needs ``batch``.
    ``query`` is another filter (e.g. :func:`data_in_filter`), exclusive with ``batch``.
    """
    if batch is not None and query is not None:
        raise ValueError("give a batch or a query, not both")
    if first_task_id is not None and batch is None:
        raise ValueError("first_task_id bounds the read of a batch: give the batch too")
    kwargs: dict[str, str | int] = {"project": int(project_id), "fields": fields, "page_size": int(page_size)}
    if batch is not None:
        kwargs["query"] = batch_filter(batch, first_task_id)
    elif query is not None:
        kwargs["query"] = query
    return kwargs


def distinct_annotators(task: Mapping[str, Any]) -> set[int]:
    """Users with at least one non-cancelled annotation on ``task`` (from ``completed_by``)."""
    users: set[int] = set()
    for ann in task.get("annotations") or []:
        if ann.get("was_cancelled"):
            continue
        user = ann.get("completed_by")
        if isinstance(user, dict):  # some endpoints expand the user object
            user = user.get("id")
        if user is not None:
            users.add(int(user))
    return users


@dataclass
class CompletionSummary:
    """Where a batch stands: ``complete`` tasks have ``required`` distinct annotators or were stopped
    early (``stopped``: their answers can no longer be unanimous, so nothing more is waited for)."""

    required: int
    total: int = 0
    complete: int = 0
    annotators_per_task: dict[str, int] = field(default_factory=dict)  # question_id -> distinct users
    counter_mismatches: int = 0  # tasks whose stored total_annotations / is_labeled disagree with the count
    stopped: int = 0  # tasks stopped early, counted in ``complete``

    @property
    def incomplete(self) -> int:
        return self.total - self.complete

    @property
    def all_complete(self) -> bool:
        """True when every task is complete (an empty batch has nothing to wait for)."""
        return self.complete == self.total

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready counts (what the trigger puts in its event)."""
        return {
            "required": self.required,
            "total": self.total,
            "complete": self.complete,
            "incomplete": self.incomplete,
            "counter_mismatches": self.counter_mismatches,
            "stopped": self.stopped,
        }


def summarize_completion(
    tasks: Iterable[Mapping[str, Any]], required: int = 4, stopped: Collection[str] = ()
) -> CompletionSummary:
    """Count complete tasks among ``tasks`` (as returned with ``fields=all``); the questions in
    ``stopped`` (:func:`pipelines.annotation.early_stop.stopped_questions`) are complete too."""
    summary = CompletionSummary(required=required)
    for task in tasks:
        users = distinct_annotators(task)
        qid = str((task.get("data") or {}).get("question_id", task.get("id")))
        summary.total += 1
        summary.annotators_per_task[qid] = len(users)
        if len(users) >= required:
            summary.complete += 1
        elif qid in stopped:
            summary.complete += 1
            summary.stopped += 1
            continue  # a withdrawn task is is_labeled with fewer annotations: not a counter fault
        stored = task.get("total_annotations")
        non_cancelled = sum(1 for a in task.get("annotations") or [] if not a.get("was_cancelled"))
        labeled = task.get("is_labeled")
        # Label Studio's rule: labeled when its distinct annotators reach the task's own overlap (which
        # the serial handout keeps at answers + 1, so a task between two answers is labeled too)
        overlap = task.get("overlap")
        enough = len(users) >= (int(overlap) if overlap is not None else required)
        if (stored is not None and int(stored) != non_cancelled) or (labeled is not None and bool(labeled) != enough):
            summary.counter_mismatches += 1
    return summary


def batch_progress(
    client: Any, project_id: int, batch: str, required: int, first_task_id: int | None = None
) -> dict[str, int]:
    """Tasks of a batch by number of distinct annotators, capped at ``required``
    (``{"0": n0, ..., "4": n4}`` for four). ``first_task_id``: the batch record's id bound."""
    summary = summarize_completion(
        client.iter_tasks(project_id, batch=batch, fields="all", first_task_id=first_task_id), required)
    hist: dict[str, int] = {}
    for n in summary.annotators_per_task.values():
        k = str(min(n, required))
        hist[k] = hist.get(k, 0) + 1
    return hist
