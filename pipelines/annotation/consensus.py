"""Unanimous four-way consensus (DESIGN.md "Acceptance rule"), pure and fast.

Per question, valid annotations are ordered by ``submitted_at`` (then annotation id):

* a second (third, ...) annotation by the same annotator is ignored and reported;
* only the first ``required`` (4) distinct annotators count; later ones are ignored and reported;
* all ``required`` answerable with equal canonical answers → ``accepted`` (``agreed_answer`` is it);
* counted answers that can no longer be unanimous (two different canonical answers, or any
  ``not answerable`` / ``ambiguous`` verdict: :func:`stop_reason`) → ``rejected`` with the reason:
  ``not answerable`` (any annotator said so), else ``ambiguous`` (any said so), else
  ``disagreement``. With ``early_stop`` (the default) this holds with fewer than ``required``
  answers too: such a question was withdrawn from the labeling stream at its first disagreement
  (:mod:`pipelines.annotation.early_stop`), and it is decided by the same rule and reason as if it
  had been answered to the end (rejection cannot be undone by more answers);
* otherwise fewer than ``required`` counted → ``pending``.

``matches_generated`` is True only for accepted questions whose agreed answer equals the
generator's answer (after :func:`~pipelines.contracts.canonical_number`).
"""

from __future__ import annotations

import json
import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa

from pipelines.annotation.answers import parse_answer
from pipelines.annotation.labeling import AMBIGUOUS, ANSWERABLE, NOT_ANSWERABLE, VERDICTS
from pipelines.annotation.validate import (
    INVALID_VERDICT,
    NO_ANSWER,
    NON_NUMERIC,
    AnnotationRecord,
    InvalidAnnotation,
    annotation_reject,
    lead_time_seconds,
    parse_time,
)
from pipelines.contracts import canonical_number, to_table
from pipelines.contracts.rejects import (
    DECISION_AMBIGUOUS,
    DECISION_DISAGREEMENT,
    DECISION_NOT_ANSWERABLE,
    DECISION_PENDING,
    DECISION_UNANIMOUS,
    Reject,
)

ACCEPTED, REJECTED, PENDING = "accepted", "rejected", "pending"

ANNOTATOR_STATS = pa.schema(
    [
        ("annotator", pa.string()),
        ("counted", pa.int64()),  # annotations that entered consensus
        ("ignored", pa.int64()),  # duplicates / beyond the required distinct annotators
        ("compared", pa.int64()),  # counted on questions that have a reference vote
        ("agreed", pa.int64()),
        ("agreement", pa.float64()),  # agreed / compared (null when nothing compared)
        ("median_lead_time_s", pa.float64()),
        ("mean_lead_time_s", pa.float64()),
    ]
)


def _vote(rec: AnnotationRecord) -> str:
    """What an annotator said: the canonical answer, or the verdict when not answerable."""
    return rec.answer if rec.verdict == ANSWERABLE and rec.answer is not None else rec.verdict


@dataclass
class ConsensusResult:
    """Consensus rows (CONSENSUS contract), the counted annotations, ignored ones, annotator stats."""

    consensus: list[dict[str, Any]]
    counted: list[AnnotationRecord]
    ignored: list[Reject]
    stats: list[dict[str, Any]]
    references: dict[str, str] = field(default_factory=dict)  # question_id -> majority vote

    def consensus_table(self) -> pa.Table:
        return to_table(self.consensus, "consensus")

    def annotations_table(self) -> pa.Table:
        """The counted annotations as the ANNOTATIONS contract."""
        return to_table([r.contract_row() for r in self.counted], "annotations")

    def stats_table(self) -> pa.Table:
        return pa.Table.from_pylist(self.stats, schema=ANNOTATOR_STATS)

    def status_counts(self) -> dict[str, int]:
        c = Counter(row["status"] for row in self.consensus)
        return {s: c.get(s, 0) for s in (ACCEPTED, REJECTED, PENDING)}

    def cost(self, required: int = 4) -> AnnotationCost:
        return annotation_cost(self.consensus, required)


@dataclass(frozen=True)
class AnnotationCost:
    """What the decided questions cost in annotations.

    ``annotations``: counted annotations of the decided (accepted + rejected) questions;
    ``annotations_per_accepted``: that ÷ accepted questions (None when none was accepted);
    ``annotations_saved``: answers the early stop did not ask for (``required`` − counted, summed
    over the rejected questions decided with fewer than ``required`` answers)."""

    annotations: int
    accepted: int
    annotations_per_accepted: float | None
    annotations_saved: int


def annotation_cost(rows: Iterable[Mapping[str, Any]], required: int = 4) -> AnnotationCost:
    """:class:`AnnotationCost` of consensus rows (CONSENSUS contract: ``status`` and ``answers``)."""
    annotations = accepted = saved = 0
    for row in rows:
        if row["status"] == PENDING:
            continue
        n = len(row.get("answers") or [])
        annotations += n
        if row["status"] == ACCEPTED:
            accepted += 1
        elif n < required:
            saved += required - n
    per = round(annotations / accepted, 4) if accepted else None
    return AnnotationCost(annotations, accepted, per, saved)


def _order_key(rec: AnnotationRecord) -> tuple[datetime, int]:
    return (rec.submitted_at, rec.annotation_id if rec.annotation_id is not None else 0)


def _generated(value: Any) -> str | None:
    try:
        return canonical_number(value)
    except ValueError:
        return None


def count_answers(
    records: Iterable[AnnotationRecord], required: int = 4
) -> tuple[list[AnnotationRecord], list[Reject]]:
    """One question's annotations → (counted, ignored): ordered by ``submitted_at`` (then id), one
    answer per annotator, the first ``required`` distinct annotators. The one counting rule, shared
    by :func:`decide` and the early stop."""
    counted: list[AnnotationRecord] = []
    ignored: list[Reject] = []
    annotators: set[str] = set()
    for rec in sorted(records, key=_order_key):
        if rec.annotator in annotators:
            ignored.append(_reject(rec, "consensus.repeat_annotation",
                                   "second annotation by the same annotator ignored"))
        elif len(counted) >= required:
            ignored.append(_reject(rec, "consensus.beyond_required",
                                   f"annotator beyond the first {required} distinct ignored"))
        else:
            annotators.add(rec.annotator)
            counted.append(rec)
    return counted, ignored


@dataclass(frozen=True)
class StopReason:
    """Why a question is rejected: ``code`` (``decision.*``, :data:`pipelines.contracts.rejects.REASONS`) and the
    human ``detail`` (``disagreement (3 vs 1: 1, 2)``)."""

    code: str
    detail: str


def stop_reason(counted: list[AnnotationRecord], required: int = 4) -> StopReason | None:
    """The rejection reason when ``counted`` answers can no longer be unanimous, else None.

    Any ``not answerable`` verdict → ``decision.not_answerable`` (``not answerable (n of required)``),
    else any ``ambiguous`` → ``decision.ambiguous`` (``ambiguous (n of required)``), else two different
    canonical answers → ``decision.disagreement`` (``disagreement (...)``).
    Monotonic: more answers never turn a reason back into None.
    """
    votes = Counter(_vote(r) for r in counted)
    n_not = sum(r.verdict == NOT_ANSWERABLE for r in counted)
    n_amb = sum(r.verdict == AMBIGUOUS for r in counted)
    if n_not:
        return StopReason(DECISION_NOT_ANSWERABLE, f"not answerable ({n_not} of {required})")
    if n_amb:
        return StopReason(DECISION_AMBIGUOUS, f"ambiguous ({n_amb} of {required})")
    if len(votes) > 1:
        split = " vs ".join(str(c) for _, c in votes.most_common())
        return StopReason(DECISION_DISAGREEMENT, f"disagreement ({split}: {', '.join(sorted(votes))})")
    return None


def decide(
    records: Iterable[AnnotationRecord],
    generated_answers: Mapping[str, Any],
    required: int = 4,
    early_stop: bool = True,
) -> ConsensusResult:
    """Decide every question of ``generated_answers`` (question_id → generated answer).

    Annotations of questions not in ``generated_answers`` are ignored and reported. With
    ``early_stop=False`` a question is decided only once ``required`` annotators answered it
    (what the platform did before the early stop).
    """
    by_question: dict[str, list[AnnotationRecord]] = defaultdict(list)
    ignored: list[Reject] = []
    for rec in records:
        if rec.question_id not in generated_answers:
            ignored.append(_reject(rec, "consensus.unknown_question", "annotation of an unknown question"))
            continue
        by_question[rec.question_id].append(rec)

    rows: list[dict[str, Any]] = []
    counted_all: list[AnnotationRecord] = []
    references: dict[str, str] = {}
    for qid, generated in generated_answers.items():
        counted, skipped = count_answers(by_question.get(qid, []), required)
        ignored += skipped
        counted_all += counted
        answers = [r.answer for r in counted]
        votes = Counter(_vote(r) for r in counted)
        if votes:
            top, n = votes.most_common(1)[0]
            if n * 2 > len(counted):
                references[qid] = top
        row: dict[str, Any] = {
            "question_id": qid,
            "answers": answers,
            "agreed_answer": None,
            "matches_generated": False,
            "answers_source": answers_source(counted),
        }
        reason = stop_reason(counted, required)
        if reason is not None and (early_stop or len(counted) >= required):
            row.update(status=REJECTED, reason=reason.detail, reason_code=reason.code)
        elif len(counted) < required:
            row.update(status=PENDING, reason=f"{len(counted)} of {required} annotators so far",
                       reason_code=DECISION_PENDING)
        else:  # required answers, one answerable vote
            agreed = counted[0].answer
            row.update(
                status=ACCEPTED,
                reason="unanimous",
                reason_code=DECISION_UNANIMOUS,
                agreed_answer=agreed,
                matches_generated=agreed == _generated(generated),
            )
        rows.append(row)
    return ConsensusResult(
        rows, counted_all, ignored, annotator_stats(counted_all, ignored, references), references
    )


def answers_source(counted: Iterable[AnnotationRecord]) -> str | None:
    """Who gave a question's counted answers: ``people``, ``simulated`` (the demo's stand-ins) or
    ``mixed``; None when nobody answered yet."""
    sources = {r.source for r in counted}
    if not sources:
        return None
    if sources == {"person"}:
        return "people"
    return "simulated" if sources == {"simulated"} else "mixed"


def _reject(rec: AnnotationRecord, code: str, detail: str) -> Reject:
    item = (
        f"{rec.question_id}/annotation-{rec.annotation_id}"
        if rec.annotation_id is not None
        else f"{rec.question_id}/{rec.annotator}"
    )
    raw = json.dumps(
        {
            "question_id": rec.question_id,
            "annotator": rec.annotator,
            "answer": rec.answer,
            "verdict": rec.verdict,
            "submitted_at": rec.submitted_at.isoformat(),
            "annotation_id": rec.annotation_id,
            "task_id": rec.task_id,
        },
        sort_keys=True,
    )
    return annotation_reject(item, code, detail, raw)


def annotator_stats(
    counted: list[AnnotationRecord], ignored: list[Reject], references: Mapping[str, str]
) -> list[dict[str, Any]]:
    """Per annotator: agreement of their vote with the question's majority vote (the consensus
    answer when accepted; a >50 % vote otherwise, e.g. the 3 of a 3-vs-1) and answer time."""
    per: dict[str, list[AnnotationRecord]] = defaultdict(list)
    for rec in counted:
        per[rec.annotator].append(rec)
    ignored_per: Counter[str] = Counter()
    for rej in ignored:
        ignored_per[json.loads(rej.raw).get("annotator", "")] += 1
    out = []
    for name in sorted(set(per) | {a for a in ignored_per if a}):
        recs = per.get(name, [])
        compared = [r for r in recs if r.question_id in references]
        agreed = sum(_vote(r) == references[r.question_id] for r in compared)
        times = [r.lead_time_s for r in recs if r.lead_time_s is not None]
        out.append(
            {
                "annotator": name,
                "counted": len(recs),
                "ignored": ignored_per.get(name, 0),
                "compared": len(compared),
                "agreed": agreed,
                "agreement": agreed / len(compared) if compared else None,
                "median_lead_time_s": statistics.median(times) if times else None,
                "mean_lead_time_s": statistics.fmean(times) if times else None,
            }
        )
    return out


def records_from_table(table: pa.Table) -> tuple[list[AnnotationRecord], list[Reject]]:
    """Rows of an annotations table (ANNOTATIONS contract columns) → records + rejects.

    Optional extra columns are used when present: ``verdict`` (one of the labeling verdicts,
    distinguishing ``ambiguous`` from ``not answerable``), ``lead_time_s`` and ``annotation_id``.
    """
    missing = {"question_id", "annotator", "answer", "answerable", "submitted_at"} - set(table.column_names)
    if missing:
        raise ValueError(f"annotations table lacks columns {sorted(missing)}")
    records: list[AnnotationRecord] = []
    rejects: list[Reject] = []
    for i, row in enumerate(table.to_pylist()):
        item = f"{row.get('question_id')}/row-{i}"
        raw = json.dumps(row, sort_keys=True, default=str)
        try:
            if not row["question_id"] or not row["annotator"]:
                raise InvalidAnnotation("row.missing_ids", "missing question_id or annotator")
            verdict = row.get("verdict") or (ANSWERABLE if row["answerable"] else NOT_ANSWERABLE)
            if verdict not in VERDICTS:
                raise InvalidAnnotation(INVALID_VERDICT, f"invalid verdict {verdict!r}")
            answer = None
            if verdict == ANSWERABLE:
                if row["answer"] is None or str(row["answer"]).strip() == "":
                    raise InvalidAnnotation(NO_ANSWER, "answerable without an answer")
                parsed = parse_answer(row["answer"])
                if not parsed.ok:
                    raise InvalidAnnotation(parsed.code or NON_NUMERIC, parsed.detail)
                answer = parsed.value
            submitted = (
                parse_time(row["submitted_at"])
                if row["submitted_at"] is not None
                else datetime(1970, 1, 1, tzinfo=UTC)
            )
            ann_id = row.get("annotation_id")
            records.append(
                AnnotationRecord(
                    str(row["question_id"]),
                    str(row["annotator"]),
                    answer,
                    verdict,
                    submitted,
                    lead_time_seconds(row.get("lead_time_s")),
                    "",
                    int(ann_id) if ann_id is not None else i,
                )
            )
        except InvalidAnnotation as err:
            rejects.append(annotation_reject(item, err.code, err.detail, raw))
        except Exception as err:  # noqa: BLE001 - a row of a file is data: refused with its reason, never a crash
            rejects.append(annotation_reject(item, "row.malformed", f"malformed row: {type(err).__name__}: "
                                                                    f"{str(err)[:200]}", raw))
    return records, rejects
