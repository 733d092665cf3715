"""Early stop: a question whose counted answers can no longer be unanimous leaves the labeling stream.

A question is accepted only when ``required`` (4) annotators give the same number, so once two
counted answers differ, or one annotator says *not answerable* / *ambiguous*, every further answer
is paid for nothing. The process that already polls Label Studio (the annotation wait's trigger;
the decision too, so a stop is never missed) finds such tasks here and withdraws them:

* which answers count is exactly what consensus counts (:func:`~pipelines.annotation.consensus.count_answers`
  over the validated annotations), and the reason is :func:`~pipelines.annotation.consensus.stop_reason`;
* a task is **withdrawn** by lowering its ``overlap`` (the number of annotations Label Studio's
  ``/next`` stream wants for it) to the distinct annotators it already has, and marking it
  ``is_labeled`` (one ``PATCH /api/tasks/<id>``): ``/next`` then hands it to nobody else (it serves
  only ``is_labeled=false`` tasks, and treats a task whose annotations + open locks reach its overlap
  as taken). Annotators who already hold it open can still submit; those answers are kept and
  counted like any other (the reason may then name them too; the rejection stays);
* the question is decided ``rejected`` with that reason at the next decision
  (:func:`~pipelines.annotation.consensus.decide`), as its answers would be decided had it been
  answered to the end.

Pure functions here; :mod:`pipelines.annotation.handout` turns them into task changes and the
clients' ``set_task_overlap`` sends them.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

from pipelines.annotation.consensus import count_answers, stop_reason
from pipelines.annotation.validate import AnnotationRecord, validate_task_annotations


def stopped_questions(tasks: Iterable[Mapping[str, Any]], required: int = 4) -> dict[str, str]:
    """``question_id`` → rejection reason, for the tasks (``fields=all`` JSON) whose counted answers
    can no longer be unanimous (with fewer than ``required`` answers: complete tasks are left to
    the normal decision)."""
    by_question: dict[str, list[AnnotationRecord]] = defaultdict(list)
    records, _ = validate_task_annotations(tasks)
    for rec in records:
        by_question[rec.question_id].append(rec)
    out: dict[str, str] = {}
    for qid, recs in by_question.items():
        counted, _ = count_answers(recs, required)
        if len(counted) >= required:
            continue
        reason = stop_reason(counted, required)
        if reason is not None:
            out[qid] = reason.detail
    return out
