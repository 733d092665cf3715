"""Tending the labeling stream: the one place that *acts* on Label Studio tasks while people annotate.

The annotation wait only watches (its trigger reads and emits JSON events); every change to a task
(opening it to one more annotator, withdrawing it at its first disagreement, sending it back for a
fresh answer when one of its annotations no longer counts) is made here, by :func:`tend`, which one
Airflow task runs on a schedule (DAG ``hopchain_labeling``), each decision runs once before it
decides, and the demo's simulated annotators run between their answers. One pass:

1. reads each open batch's tasks once (``data.batch`` filter bounded by the batch's first task id,
   annotations included);
2. appends every annotation it has not seen in this form to the annotation journal in the object
   store (:mod:`pipelines.annotation.journal`), so nothing paid for lives only in Label Studio;
3. finds the annotations that do not count (:mod:`pipelines.annotation.integrity`: changed by another
   account, changed after first seen, or by an account that is not a registered annotator);
4. puts each task where the handout wants it (:func:`pipelines.annotation.handout.plan`), counting only
   the annotations that count.

Idempotent: a second pass over unchanged tasks writes nothing and sends nothing, so retries and
restarts are safe.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, Field

from pipelines.annotation import integrity
from pipelines.annotation.handout import Handout, plan
from pipelines.annotation.journal import Journal, view_of
from pipelines.annotation.registry import AnnotatorRegistry

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BatchRef:
    """One open batch of a Label Studio project; ``first_task_id`` is its record's id bound (None: unbounded)."""

    project_id: int
    batch_id: str
    first_task_id: int | None = None


class TendReport(BaseModel):
    """What one pass did (JSON for XCom and the logs)."""

    batches: list[str] = Field(default_factory=list)
    tasks: int = 0
    complete: int = 0
    opened: int = 0
    withdrawn: int = 0
    journaled: int = 0  # annotation snapshots appended to the journal
    integrity: dict[str, int] = Field(default_factory=dict)  # reason code -> annotations not counted
    held: dict[str, str] = Field(default_factory=dict)  # batch -> why it is held (project changed)

    def merge(self, other: TendReport) -> None:
        self.batches += other.batches
        for k in ("tasks", "complete", "opened", "withdrawn", "journaled"):
            setattr(self, k, getattr(self, k) + getattr(other, k))
        for code, n in other.integrity.items():
            self.integrity[code] = self.integrity.get(code, 0) + n
        self.held.update(other.held)


def apply_plan(
    client: Any,
    tasks: Sequence[Mapping[str, Any]],
    required: int,
    handout: Handout,
    early_stop: bool,
    uncounted: Iterable[int] = (),
) -> TendReport:
    """Put ``tasks`` where the handout wants them (one ``PATCH`` per task that is elsewhere)."""
    changes, summary = plan(tasks, required, handout, early_stop, uncounted=frozenset(uncounted))
    report = TendReport(tasks=summary.total, complete=summary.complete)
    for c in changes:
        client.set_task_overlap(c.task_id, c.overlap, c.is_labeled)
        if c.withdraws:
            report.withdrawn += 1
            log.info("withdrew task %s (%s) from the labeling stream: %s", c.task_id, c.question_id, c.reason)
        else:
            report.opened += 1
    return report


@dataclass
class Tending:
    """What a pass needs besides the client: the open batches, the handout rules, and the trust rules
    (journal, registered annotators, the platform's own accounts, the project as the platform set it)."""

    batches: Sequence[BatchRef]
    required: int = 4
    handout: Handout = "serial"
    early_stop: bool = True
    journal: Journal | None = None
    registry: AnnotatorRegistry | None = None
    platform: frozenset[int] = frozenset()
    # project id -> one-line reason it is held (its settings changed outside the platform), if any
    check_project: Callable[[Any, int], str | None] | None = None


def tend(client: Any, tending: Tending) -> TendReport:
    """One pass over ``tending.batches`` (see the module doc). A project whose settings changed outside
    the platform is journaled but not acted on (its batches are held; :mod:`pipelines.annotation.guard`)."""
    report = TendReport()
    held: dict[int, str | None] = {}
    for ref in tending.batches:
        if ref.project_id not in held:
            held[ref.project_id] = tending.check_project(client, ref.project_id) if tending.check_project else None
        tasks = list(client.iter_tasks(ref.project_id, batch=ref.batch_id, fields="all",
                                       first_task_id=ref.first_task_id))
        part = TendReport(batches=[ref.batch_id])
        if tending.journal is not None:
            view, part.journaled = tending.journal.append(ref.project_id, ref.batch_id, tasks)
        else:
            view = view_of(tasks)
        findings = integrity.check(view, tending.registry, tending.platform)
        for f in findings.values():
            part.integrity[f.code] = part.integrity.get(f.code, 0) + 1
        reason = held[ref.project_id]
        if reason is not None:
            part.held[ref.batch_id] = reason
            part.tasks = len(tasks)
        else:
            acted = apply_plan(client, tasks, tending.required, tending.handout, tending.early_stop, set(findings))
            part.tasks, part.complete, part.opened, part.withdrawn = (acted.tasks, acted.complete, acted.opened,
                                                                      acted.withdrawn)
        report.merge(part)
    if report.opened or report.withdrawn or report.journaled or report.integrity or report.held:
        log.info("tended %d batch(es): %s", len(report.batches), report.model_dump(exclude={"batches"}))
    return report
