"""How tasks are handed to annotators: one at a time (``serial``) or all at once (``parallel``).

Early stop saves an answer only if nobody has taken the question yet when its first disagreement
comes in. Label Studio's ``/next`` stream hands a task to as many annotators at once as its
``overlap`` allows, and serves tasks that already have answers first, so with ``overlap = 4`` the
other three usually hold a question before its second answer is in: the stop then saves almost
nothing (measured: 1.6 % fewer annotations at 10 % error, ``bench/annotation_cost.py``).

``serial`` (the default) is *dynamic overlap*, the crowdsourcing practice of asking for one more
answer only while the answers so far still agree (Label Studio Enterprise does the same for its
agreement threshold: one extra annotator at a time):

* the project asks for one annotation per task (``maximum_annotations = 1``), so a pushed task has
  ``overlap = 1`` and ``/next`` hands it to one annotator; ``show_overlap_first`` makes the stream
  serve tasks that already have answers (``overlap > 1``) before fresh ones, so questions finish
  rather than pile up half-answered;
* the labeling pass (:mod:`pipelines.annotation.tend`: DAG ``hopchain_labeling`` every minute, each
  decision, and the demo's simulation) *reconciles* every task of the open batches: a task whose
  counted answers can still be unanimous and has fewer than ``required`` gets
  ``overlap = answers + 1`` (open to exactly one more annotator); a task stopped early keeps
  ``overlap = answers`` and ``is_labeled`` (withdrawn: :mod:`pipelines.annotation.early_stop`);
* a question therefore sees its second answer before anyone else takes it, and the answers that
  early stop saves are the ones after the first disagreement, all of them.

Cost: one ``PATCH /api/tasks/<id>`` per answer, and each question waits up to one poll between its
answers (annotators meanwhile work on other questions; only the last questions of a batch wait).
Without a pass a serial task stops after one answer, so serial needs ``hopchain_labeling`` unpaused
while people work (it runs whether or not a wait is deferred). ``parallel`` is the previous behaviour
(``overlap = required`` at once; the early stop then only withdraws what nobody holds yet).

:func:`plan` is pure (the labeling pass applies it; the annotation wait's trigger only reads the
same completion counts); :func:`reconcile` applies it with the synchronous client.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from pipelines.annotation.completion import CompletionSummary, distinct_annotators, summarize_completion
from pipelines.annotation.early_stop import stopped_questions

Handout = Literal["serial", "parallel"]
HANDOUTS: tuple[str, ...] = ("serial", "parallel")


def project_overlap(handout: Handout, required: int) -> int:
    """The project's ``maximum_annotations`` (what a freshly pushed task's ``overlap`` becomes)."""
    return 1 if handout == "serial" else int(required)


@dataclass(frozen=True)
class TaskChange:
    """Set task ``task_id``'s ``overlap`` and ``is_labeled`` (one ``PATCH /api/tasks/<id>``)."""

    task_id: int
    question_id: str
    overlap: int
    is_labeled: bool
    reason: str | None = None  # set when the task is withdrawn (stopped early): the rejection reason

    @property
    def withdraws(self) -> bool:
        return self.reason is not None

    def payload(self) -> dict[str, Any]:
        return {"overlap": self.overlap, "is_labeled": self.is_labeled}


def _question_id(task: Mapping[str, Any]) -> str:
    return str((task.get("data") or {}).get("question_id", f"task-{task.get('id')}"))


def counted_view(task: Mapping[str, Any], uncounted: Collection[int]) -> Mapping[str, Any]:
    """``task`` without the annotations that do not count (:mod:`pipelines.annotation.integrity`)."""
    if not uncounted:
        return task
    anns = [a for a in task.get("annotations") or [] if a.get("id") is None or int(a["id"]) not in uncounted]
    return {**task, "annotations": anns}


def plan(
    tasks: Iterable[Mapping[str, Any]], required: int = 4, handout: Handout = "serial", early_stop: bool = True,
    uncounted: Collection[int] = frozenset(),
) -> tuple[list[TaskChange], CompletionSummary]:
    """The changes that put each task (``fields=all`` JSON, with ``overlap`` and ``is_labeled``) where
    it should be, and the batch's completion (stopped tasks count as complete).

    * stopped early (``early_stop``): ``overlap`` = its distinct annotators (≥ 1), ``is_labeled``;
    * ``required`` distinct annotators: left alone (Label Studio has marked it labeled);
    * otherwise open: ``overlap`` = annotators + 1 (``serial``) or ``required`` (``parallel``),
      ``is_labeled`` false.

    ``uncounted``: ids of annotations that do not count (changed by another account, changed after
    first seen, not a registered annotator). Counting, stopping and completion use only the others;
    the overlap targets add the accounts of the uncounted ones (Label Studio counts every annotation
    against ``overlap`` and never hands a task back to an account that annotated it), so such a task
    goes back to the stream for a fresh answer from another annotator.

    Only tasks that differ from their target are listed, so polling again sends nothing (idempotent).
    A task that is open is never changed while it may be held: its target is recomputed from
    answers that can only grow, and an open task already has the target overlap.
    """
    tasks = list(tasks)
    counted = [counted_view(t, uncounted) for t in tasks]
    stopped = stopped_questions(counted, required) if early_stop else {}
    changes: list[TaskChange] = []
    for task, mine in zip(tasks, counted, strict=True):
        qid = _question_id(task)
        have = len(distinct_annotators(mine))
        present = len(distinct_annotators(task))  # every account with an answer here, counted or not
        overlap, labeled = task.get("overlap"), task.get("is_labeled")
        if qid in stopped:
            target = TaskChange(int(task["id"]), qid, max(1, present), True, stopped[qid])
            # a withdrawn task may have gained an answer from someone who held it: still withdrawn
            if labeled is True and overlap is not None and int(overlap) <= max(1, present):
                continue
        elif have >= required:
            continue
        else:
            want = present + 1 if handout == "serial" else required + (present - have)
            target = TaskChange(int(task["id"]), qid, want, False)
            if overlap is None or (int(overlap) == want and labeled is False):
                continue  # (a task listed without its overlap is left as it is)
        changes.append(target)
    return changes, summarize_completion(counted, required, stopped)


@dataclass
class HandoutPass:
    """What one reconciliation did: tasks opened to one more annotator, tasks withdrawn, and where the
    batches stand."""

    opened: int = 0
    withdrawn: int = 0
    total: int = 0
    complete: int = 0
    stopped: int = 0
    reasons: dict[str, str] = field(default_factory=dict)  # question_id -> reason, of the withdrawn ones

    @property
    def all_complete(self) -> bool:
        return self.complete == self.total

    def add(self, changes: list[TaskChange], summary: CompletionSummary) -> None:
        for c in changes:
            if c.withdraws:
                self.withdrawn += 1
                self.reasons[c.question_id] = str(c.reason)
            else:
                self.opened += 1
        self.total += summary.total
        self.complete += summary.complete
        self.stopped += summary.stopped


def reconcile(
    client: Any,
    tasks: Iterable[Mapping[str, Any]],
    required: int = 4,
    handout: Handout = "serial",
    early_stop: bool = True,
    uncounted: Collection[int] = frozenset(),
) -> HandoutPass:
    """Apply :func:`plan` to ``tasks`` with the synchronous client (``client.set_task_overlap``)."""
    changes, summary = plan(tasks, required, handout, early_stop, uncounted)
    for c in changes:
        client.set_task_overlap(c.task_id, c.overlap, c.is_labeled)
    done = HandoutPass()
    done.add(changes, summary)
    return done


def reconcile_batches(
    client: Any,
    project_id: int,
    batches: Iterable[str],
    required: int = 4,
    handout: Handout = "serial",
    early_stop: bool = True,
    first_task_ids: Mapping[str, int | None] | None = None,
) -> HandoutPass:
    """:func:`reconcile` every task of ``batches`` (read per batch, ``data.batch`` filter bounded by the
    batch's ``first_task_ids`` entry, its record's id bound; a batch without one is read unbounded)."""
    total = HandoutPass()
    bounds = first_task_ids or {}
    for batch in batches:
        tasks = list(client.iter_tasks(project_id, batch=batch, fields="all", first_task_id=bounds.get(batch)))
        changes, summary = plan(tasks, required, handout, early_stop)
        for c in changes:
            client.set_task_overlap(c.task_id, c.overlap, c.is_labeled)
        total.add(changes, summary)
    return total
