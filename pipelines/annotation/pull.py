"""Pull annotations from Label Studio, validate them, decide consensus.

Outputs (run-scoped, written atomically by :func:`save_results`):
``annotations`` (ANNOTATIONS contract: the counted annotations), ``annotations_detail`` (the same
plus ``verdict``, ``lead_time_s``, ``annotation_id``, ``task_id`` — what ``hopchain consensus``
reads back losslessly), ``consensus`` (CONSENSUS contract), ``rejects`` (REJECTS contract: invalid,
cancelled and ignored annotations with their reasons) and ``annotator_stats``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from pipelines.annotation import integrity
from pipelines.annotation.client import LabelStudioClient, LabelStudioError
from pipelines.annotation.consensus import ConsensusResult, decide
from pipelines.annotation.handout import Handout, counted_view, reconcile
from pipelines.annotation.journal import Journal, JournalView, view_of
from pipelines.annotation.push import tasks_with
from pipelines.annotation.registry import AnnotatorRegistry
from pipelines.annotation.validate import AnnotationRecord, validate_task_annotations
from pipelines.contracts import ANNOTATIONS
from pipelines.contracts.rejects import Reject, rejects_table

log = logging.getLogger(__name__)

DETAIL = pa.schema(
    list(ANNOTATIONS)
    + [
        pa.field("verdict", pa.string()),
        pa.field("lead_time_s", pa.float64()),
        pa.field("annotation_id", pa.int64()),
        pa.field("task_id", pa.int64()),
    ]
)


#: Per counted answer of a decided question: the release's audit table (no account names: pseudonyms).
AUDIT = pa.schema(
    [
        pa.field("question_id", pa.string()),
        pa.field("annotator", pa.string()),  # keyed hash of the Label Studio account (stable across releases)
        pa.field("source", pa.string()),  # person | simulated
        pa.field("answer", pa.string()),
        pa.field("verdict", pa.string()),
        pa.field("submitted_at", pa.timestamp("us", tz="UTC")),
        pa.field("lead_time_s", pa.float64()),
        pa.field("snapshot", pa.string()),  # sha256 of the journaled annotation version that was counted
    ]
)


def detail_table(records: Iterable[AnnotationRecord]) -> pa.Table:
    rows = [
        {
            **r.contract_row(),
            "verdict": r.verdict,
            "lead_time_s": r.lead_time_s,
            "annotation_id": r.annotation_id,
            "task_id": r.task_id,
        }
        for r in records
    ]
    return pa.Table.from_pylist(rows, schema=DETAIL)


@dataclass
class PullResult:
    consensus: ConsensusResult
    invalid: list[Reject]  # refused by validation (cancelled, unknown field, non-numeric, ...)
    tasks_seen: int
    tasks_fetched: int = 0  # tasks read from Label Studio for this decision
    held_elsewhere: dict[str, str] = field(default_factory=dict)  # question_id -> the batch holding its task
    withdrawn: int = 0  # tasks this decision took out of the labeling stream (early stop)
    uncounted: list[Reject] = field(default_factory=list)  # integrity.* findings: annotations that do not count
    journaled: int = 0  # annotation snapshots this decision appended to the journal
    source: str = "label-studio"  # where the annotations were read: "label-studio" or "journal" (store alone)
    snapshots: dict[int, str] = field(default_factory=dict)  # annotation id -> its journaled version (sha256)
    uncounted_ids: set[int] = field(default_factory=set)  # ids of the annotations in ``uncounted``

    @property
    def rejects(self) -> list[Reject]:
        return self.invalid + self.uncounted + self.consensus.ignored

    def audit_table(self, pseudonym: Callable[[int | None], str]) -> pa.Table:
        """Who answered each decided question (AUDIT): annotator pseudonym (``pseudonym`` of the Label
        Studio user id: a keyed hash, stable across releases), source, answer or verdict, time, and
        the journal snapshot the answer was counted from."""
        decided = {r["question_id"] for r in self.consensus.consensus if r["status"] != "pending"}
        rows = [{"question_id": r.question_id, "annotator": pseudonym(r.annotator_id), "source": r.source,
                 "answer": r.answer, "verdict": r.verdict, "submitted_at": r.submitted_at,
                 "lead_time_s": r.lead_time_s,
                 "snapshot": self.snapshots.get(r.annotation_id) if r.annotation_id is not None else None}
                for r in self.consensus.counted if r.question_id in decided]
        rows.sort(key=lambda row: (row["question_id"], row["submitted_at"]))
        return pa.Table.from_pylist(rows, schema=AUDIT)

    def integrity_counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self.uncounted:
            out[r.code] = out.get(r.code, 0) + 1
        return out

    def tables(self) -> dict[str, pa.Table]:
        return {
            "annotations": self.consensus.annotations_table(),
            "annotations_detail": detail_table(self.consensus.counted),
            "consensus": self.consensus.consensus_table(),
            "rejects": rejects_table(self.rejects),
            "annotator_stats": self.consensus.stats_table(),
        }

    def summary(self) -> dict[str, Any]:
        return {
            **self.consensus.status_counts(),
            "tasks_seen": self.tasks_seen,
            "tasks_fetched": self.tasks_fetched,
            "held_elsewhere": len(self.held_elsewhere),
            "annotations_counted": len(self.consensus.counted),
            "annotations_rejected": len(self.invalid),
            "annotations_ignored": len(self.consensus.ignored),
            "annotations_uncounted": len(self.uncounted),
            "withdrawn": self.withdrawn,
            "journaled": self.journaled,
            "source": self.source,
        }


def annotator_names(client: LabelStudioClient) -> dict[int, str]:
    """Label Studio user id → email (the ``annotator`` value of the contract)."""
    return {
        int(u["id"]): str(u.get("email") or u.get("username") or f"user-{u['id']}") for u in client.users()
    }


def decide_tasks(
    tasks: Iterable[Mapping[str, Any]],
    generated_answers: Mapping[str, Any],
    required: int = 4,
    names: Mapping[int, str] | None = None,
    early_stop: bool = True,
    registry: AnnotatorRegistry | None = None,
    platform: Iterable[int] = (),
    view: JournalView | None = None,
) -> PullResult:
    """Validate the annotations of ``tasks`` and decide the questions of ``generated_answers``.

    Tasks of questions outside ``generated_answers`` are skipped (they belong to other batches).
    Only annotations that count are decided on (:mod:`pipelines.annotation.integrity`, over ``view``:
    the journal of these tasks, or these tasks alone when None); the others are ``uncounted`` with their
    reason. ``registry`` None: every account counts as a person (tools and tests without a deployment).
    """
    tasks = list(tasks)
    if view is None:
        view = view_of(tasks)
    findings = integrity.check(view, registry, platform)
    mine = {aid: f for aid, f in findings.items() if str(f.question_id) in generated_answers}
    uncounted = [f.reject() for f in mine.values()]
    wanted = [counted_view(t, set(findings)) for t in tasks
              if str((t.get("data") or {}).get("question_id")) in generated_answers]
    users = {a.get("completed_by") for t in wanted for a in t.get("annotations") or []}
    kinds = integrity.kinds(registry, [u.get("id") if isinstance(u, Mapping) else u for u in users])
    records, invalid = validate_task_annotations(wanted, names, kinds)
    result = decide(records, generated_answers, required, early_stop)
    out = PullResult(result, invalid, len(wanted))
    out.uncounted = sorted(uncounted, key=lambda r: r.item_id)
    out.uncounted_ids = set(mine)
    out.snapshots = {aid: vs[0]["version"] for aid, vs in view.versions.items()}
    return out


def decide_journaled(
    view: JournalView,
    questions: Iterable[Mapping[str, Any]],
    required: int = 4,
    names: Mapping[int, str] | None = None,
    early_stop: bool = True,
    registry: AnnotatorRegistry | None = None,
    platform: Iterable[int] = (),
) -> PullResult:
    """Decide a batch from its journal alone (Label Studio's copy unreachable or lost): the same rules
    over the tasks as the journal last saw them."""
    generated = {str(q["question_id"]): q.get("answer") for q in questions}
    result = decide_tasks(view.tasks(), generated, required, names, early_stop, registry, platform, view)
    result.source = "journal"
    return result


def decide_batch(
    client: LabelStudioClient,
    project_id: int,
    batch: str,
    questions: Iterable[Mapping[str, Any]],
    required: int = 4,
    names: Mapping[int, str] | None = None,
    early_stop: bool = True,
    handout: Handout = "serial",
    journal: Journal | None = None,
    registry: AnnotatorRegistry | None = None,
    platform: Iterable[int] = (),
    first_task_id: int | None = None,
) -> PullResult:
    """Decide the questions of one batch from that batch's tasks only (the ``data.batch`` filter, bounded
    by ``first_task_id``, the batch record's id bound; None reads the batch unbounded).

    With a ``journal``, the tasks' annotations are journaled first and the decision reads the journal
    (so what is decided is exactly what is kept, and changes after first seen are caught).

    A question of ``questions`` without a task in the batch was already held by another batch when
    this one was pushed (same ``question_id``): it keeps that first task and is decided there, once,
    so it is left out of this decision and reported in ``held_elsewhere``. Those few are looked up by
    ``question_id`` (:func:`~pipelines.annotation.push.tasks_with`); one with no task anywhere stays
    ``pending``. What is read is the batch plus its missing questions, never the whole project.
    With ``early_stop`` a question whose answers can no longer be unanimous is rejected now and its
    task withdrawn from the labeling stream if it still was in it; the batch's other unfinished tasks
    are handed out as ``handout`` wants (:func:`~pipelines.annotation.handout.reconcile`), so a
    carried-over batch stays open to annotators until the next wait polls it.
    """
    generated = {str(q["question_id"]): q.get("answer") for q in questions}
    try:
        tasks = list(client.iter_tasks(project_id, batch=batch, fields="all", first_task_id=first_task_id))
    except LabelStudioError as err:
        if err.status_code == 404:
            raise LookupError(f"project {project_id} not found in Label Studio") from err
        raise
    fetched = len(tasks)
    own = {str((t.get("data") or {}).get("question_id")) for t in tasks}
    missing = [qid for qid in generated if qid not in own]
    held: dict[str, str] = {}
    if missing:
        lookup = tasks_with(client, project_id, "question_id", missing)
        fetched += lookup.tasks_fetched
        held = {qid: b for qid, (_, b) in lookup.found.items() if b != batch}
    wanted = {qid: answer for qid, answer in generated.items() if qid not in held}
    view, journaled = journal.append(project_id, batch, tasks) if journal is not None else (None, 0)
    decided_tasks = view.tasks() if view is not None else tasks
    result = decide_tasks(decided_tasks, wanted, required, annotator_names(client) if names is None else names,
                          early_stop, registry, platform, view)
    result.tasks_fetched, result.held_elsewhere, result.journaled = fetched, held, journaled
    own_tasks = [t for t in tasks if str((t.get("data") or {}).get("question_id")) in wanted]
    result.withdrawn = reconcile(client, own_tasks, required, handout, early_stop, result.uncounted_ids).withdrawn
    log.info("consensus for batch %s of project %s: %s", batch, project_id, result.summary())
    return result


def pull_and_decide(
    client: LabelStudioClient,
    project_id: int,
    questions: Iterable[Mapping[str, Any]],
    required: int = 4,
    batch: str | None = None,
    early_stop: bool = True,
    handout: Handout = "serial",
    first_task_id: int | None = None,
) -> PullResult:
    """Decide the given questions: those of one ``batch`` (:func:`decide_batch`, bounded by ``first_task_id``), or, with
    ``batch=None``, from every task of the project (a whole-project read, for tools and tests; the
    platform decides per batch).

    ``questions`` are QUESTIONS-contract rows (``question_id``, ``answer``).
    """
    if batch is not None:
        return decide_batch(client, project_id, batch, questions, required, early_stop=early_stop, handout=handout,
                            first_task_id=first_task_id)
    generated = {str(q["question_id"]): q.get("answer") for q in questions}
    tasks = list(client.iter_tasks(project_id, fields="all"))
    result = decide_tasks(tasks, generated, required, annotator_names(client), early_stop)
    result.tasks_fetched = len(tasks)
    own_tasks = [t for t in tasks if str((t.get("data") or {}).get("question_id")) in generated]
    result.withdrawn = reconcile(client, own_tasks, required, handout, early_stop).withdrawn
    log.info("consensus for project %s: %s", project_id, result.summary())
    return result
