"""Validation of raw Label Studio annotations into typed records (rejects are data).

An annotation's ``result`` may only hold the fields of the labeling config
(:data:`~pipelines.annotation.labeling.KNOWN_FIELDS`): a numeric ``answer``, one ``answerable``
verdict and an optional ``comment``. Label Studio's API accepts anything, so everything is
checked here; every refused annotation becomes a :class:`~pipelines.contracts.rejects.Reject` (stage
``annotation``) with its code and the raw JSON. Codes: ``annotation.no_annotator``,
``annotation.cancelled``, ``annotation.bad_created_at`` and, for a ``result`` that breaks the
labeling contract, the ``result.*`` codes of :class:`InvalidAnnotation`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pipelines.annotation.answers import parse_answer
from pipelines.annotation.labeling import (
    ANSWER_FIELD,
    ANSWERABLE,
    COMMENT_FIELD,
    KNOWN_FIELDS,
    VERDICT_FIELD,
    VERDICTS,
)
from pipelines.contracts.rejects import Reject

STAGE = "annotation"
MALFORMED = "result.malformed"
UNKNOWN_FIELD = "result.unknown_field"
REPEATED_FIELD = "result.repeated_field"
INVALID_VERDICT = "result.invalid_verdict"
NON_NUMERIC = "result.non_numeric_answer"
EMPTY = "result.empty"
NO_ANSWER = "result.answerable_without_answer"


@dataclass(frozen=True)
class AnnotationRecord:
    """One valid annotation. ``answer`` is canonical (``"3"``) when ``verdict == "answerable"``,
    else None; ``lead_time_s`` is the annotator's time on the task in seconds (None if unknown)."""

    question_id: str
    annotator: str
    answer: str | None
    verdict: str
    submitted_at: datetime
    lead_time_s: float | None = None
    comment: str = ""
    annotation_id: int | None = None
    task_id: int | None = None
    annotator_id: int | None = None  # the Label Studio user id (what the audit's pseudonym is keyed on)
    source: str = "person"  # "person" or "simulated": the registered kind of the account

    @property
    def answerable(self) -> bool:
        return self.verdict == ANSWERABLE

    def contract_row(self) -> dict[str, Any]:
        """A row of the ANNOTATIONS contract."""
        return {
            "question_id": self.question_id,
            "annotator": self.annotator,
            "answer": self.answer,
            "answerable": self.answerable,
            "submitted_at": self.submitted_at,
        }


def annotation_reject(item_id: str, code: str, detail: str, raw: str) -> Reject:
    """A reject of this stage (``annotation``)."""
    return Reject(stage=STAGE, item_id=item_id, code=code, detail=detail, raw=raw)


class InvalidAnnotation(ValueError):
    """An annotation that breaks the labeling contract: ``code`` (``result.*``) and the message."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


def parse_time(value: Any) -> datetime:
    """ISO-8601 text (``...Z`` allowed) or datetime → aware UTC datetime; ``ValueError`` for anything else."""
    try:
        if isinstance(value, datetime):
            dt = value
        else:
            text = str(value)
            if len(text) > 64:
                raise ValueError("timestamp too long")
            dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
        return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)
    except (ValueError, TypeError, OverflowError) as err:
        raise ValueError(f"not a timestamp: {str(value)[:40]!r} ({err})") from None


def lead_time_seconds(value: Any) -> float | None:
    """Time spent on an annotation (Label Studio's ``lead_time``, seconds) when it is a finite
    non-negative number; None for anything else (NaN, inf, a huge integer, text, a boolean). Never raises."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        v = float(value)
    except OverflowError:  # an integer beyond float range
        return None
    return v if math.isfinite(v) and v >= 0 else None


MAX_COMMENT = 2000


def parse_result(result: Any) -> tuple[str | None, str, str]:
    """``result`` list → ``(canonical answer or None, verdict, comment)``; raises InvalidAnnotation (only)."""
    try:
        return _parse_result(result)
    except InvalidAnnotation:
        raise
    except Exception as err:  # noqa: BLE001 - whatever an account sends is data, never a crash
        raise InvalidAnnotation(MALFORMED, f"malformed result ({type(err).__name__})") from None


def _parse_result(result: Any) -> tuple[str | None, str, str]:
    if not isinstance(result, list):
        raise InvalidAnnotation(MALFORMED, f"malformed result: expected a list, got {type(result).__name__}")
    seen: dict[str, Any] = {}
    for region in result:
        if not isinstance(region, Mapping):
            raise InvalidAnnotation(MALFORMED, "malformed result: region is not an object")
        name = region.get("from_name")
        if not isinstance(name, str) or name not in KNOWN_FIELDS:
            raise InvalidAnnotation(UNKNOWN_FIELD, f"unknown field {name!r}")
        if name in seen:
            raise InvalidAnnotation(REPEATED_FIELD, f"field {name!r} given twice")
        seen[name] = region.get("value") or {}
    raw_answer: Any = None
    if ANSWER_FIELD in seen:
        value = seen[ANSWER_FIELD]
        raw_answer = value.get("number", value.get("text")) if isinstance(value, Mapping) else value
        if isinstance(raw_answer, list):
            raw_answer = raw_answer[0] if len(raw_answer) == 1 else raw_answer
    verdict: str | None = None
    if VERDICT_FIELD in seen:
        choices = seen[VERDICT_FIELD].get("choices") if isinstance(seen[VERDICT_FIELD], Mapping) else None
        if not isinstance(choices, list) or len(choices) != 1 or not isinstance(choices[0], str) \
                or choices[0] not in VERDICTS:
            raise InvalidAnnotation(INVALID_VERDICT, f"invalid verdict {choices!r} (expected one of {list(VERDICTS)})")
        verdict = choices[0]
    comment = ""
    if COMMENT_FIELD in seen:
        text = seen[COMMENT_FIELD].get("text") if isinstance(seen[COMMENT_FIELD], Mapping) else None
        comment = (" ".join(map(str, text)) if isinstance(text, list) else str(text or ""))[:MAX_COMMENT]
    answer: str | None = None
    if raw_answer is not None and raw_answer != "":
        parsed = parse_answer(raw_answer)
        if not parsed.ok:
            raise InvalidAnnotation(parsed.code or NON_NUMERIC, parsed.detail)
        answer = parsed.value
    if verdict is None:
        if answer is None:
            raise InvalidAnnotation(EMPTY, "empty annotation: no answer and no verdict")
        verdict = ANSWERABLE
    if verdict == ANSWERABLE and answer is None:
        raise InvalidAnnotation(NO_ANSWER, "verdict 'answerable' without a numeric answer")
    if verdict != ANSWERABLE:
        answer = None
    return answer, verdict, comment


def _user_id(ann: Mapping[str, Any]) -> int | None:
    user = ann.get("completed_by")
    if isinstance(user, Mapping):
        user = user.get("id")
    if isinstance(user, bool) or not isinstance(user, (int, str)):
        return None
    try:
        return int(user)
    except ValueError:
        return None


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value) if value is not None and not isinstance(value, bool) else None
    except (TypeError, ValueError, OverflowError):
        return None


def validate_task_annotations(
    tasks: Iterable[Mapping[str, Any]], annotator_names: Mapping[int, str] | None = None,
    kinds: Mapping[int, str] | None = None,
) -> tuple[list[AnnotationRecord], list[Reject]]:
    """Every annotation of ``tasks`` (Label Studio task JSON with ``annotations``) → records + rejects.

    Cancelled (skipped) annotations are ignored and reported. ``annotator_names`` maps user ids
    to names (emails); unknown ids become ``user-<id>``. ``kinds`` maps user ids to ``person`` /
    ``simulated`` (the registry's kind; default ``person``). Per-question rules (one answer per
    annotator, first four distinct annotators) are applied later by consensus.
    """
    names = dict(annotator_names or {})
    records: list[AnnotationRecord] = []
    rejects: list[Reject] = []
    for task in tasks:
        data = task.get("data") or {}
        qid = str(data.get("question_id", f"task-{task.get('id')}"))
        for ann in task.get("annotations") or []:
            if not isinstance(ann, Mapping):
                rejects.append(annotation_reject(f"{qid}/annotation-?", "annotation.malformed",
                                                 "annotation is not an object", json.dumps(ann, default=str)))
                continue
            item = f"{qid}/annotation-{ann.get('id')}"
            raw = json.dumps(ann, sort_keys=True, default=str)
            user = _user_id(ann)
            if user is None:
                rejects.append(annotation_reject(item, "annotation.no_annotator", "annotation without completed_by",
                                                 raw))
                continue
            if ann.get("was_cancelled"):
                rejects.append(annotation_reject(item, "annotation.cancelled", "cancelled (skipped) annotation ignored",
                                                 raw))
                continue
            try:
                answer, verdict, comment = parse_result(ann.get("result"))
                submitted = parse_time(ann.get("created_at"))
            except InvalidAnnotation as err:
                rejects.append(annotation_reject(item, err.code, err.detail, raw))
                continue
            except ValueError as err:
                rejects.append(annotation_reject(item, "annotation.bad_created_at", f"bad created_at: {err}", raw))
                continue
            records.append(
                AnnotationRecord(
                    question_id=qid,
                    annotator=names.get(user, f"user-{user}"),
                    answer=answer,
                    verdict=verdict,
                    submitted_at=submitted,
                    lead_time_s=lead_time_seconds(ann.get("lead_time")),
                    comment=comment,
                    annotation_id=_int_or_none(ann.get("id")),
                    task_id=int(task["id"]) if task.get("id") is not None else None,
                    annotator_id=user,
                    source=(kinds or {}).get(user, "person"),
                )
            )
    return records, rejects
