"""Suites for human verification: ``annotations``, ``consensus``; and the acceptance rule.

Acceptance rule (``docs/annotators.md``): a question is accepted when at least
``annotation.annotators_required`` (four) *distinct* annotators have answered, every one of their
annotations is answerable with a numeric answer, and all answers are equal after
:func:`pipelines.contracts.canonical_number`; the accepted (released) answer is that value.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from expectations.checks import Check, References, SuiteSpec
from expectations.suites.common import CANONICAL_DECIMAL, null_check, reasons, schema_checks
from pipelines.config import Params
from pipelines.contracts import ANNOTATIONS, ANSWERS_SOURCES, CONSENSUS, canonical_number
from pipelines.contracts.rejects import DECISION_CODES

STATUSES = ("accepted", "rejected", "pending")


def _canonical_or_none(values: pd.Series) -> pd.Series:
    """canonical_number of each value (None where it is not a number), computed once per distinct value."""
    uniq = values.dropna().unique()
    table: dict[object, str | None] = {}
    for u in uniq:
        try:
            table[u] = canonical_number(u)
        except ValueError:
            table[u] = None
    return values.map(table).astype(object).where(values.notna(), None)


def acceptance_errors(
    question_ids: pd.Series,
    agreed: pd.Series,
    annotations: pd.DataFrame,
    required: int,
    applies: pd.Series | None = None,
) -> pd.Series:
    """Reason per row why question ``question_ids[i]`` with accepted answer ``agreed[i]`` breaks
    the acceptance rule against ``annotations`` (None when it holds or ``applies`` is false)."""
    idx = question_ids.index
    applies_arr = np.ones(len(idx), bool) if applies is None else applies.fillna(False).to_numpy(bool)
    ann = annotations[annotations["question_id"].isin(question_ids[applies_arr].unique())]
    canon = _canonical_or_none(ann["answer"])
    valid = ann["answerable"].fillna(False).astype(bool) & canon.notna()
    by_q = ann["question_id"]
    stats = pd.DataFrame({
        "annotators": ann.groupby(by_q)["annotator"].nunique(),
        "invalid": (~valid).groupby(by_q).sum(),
        "distinct": canon.groupby(by_q).nunique(dropna=True),
        "value": canon.groupby(by_q).first(),
    })
    s = stats.reindex(question_ids.to_numpy())
    annotators = s["annotators"].fillna(0).to_numpy(int)
    invalid = s["invalid"].fillna(0).to_numpy(int)
    distinct = s["distinct"].fillna(0).to_numpy(int)
    value = s["value"].to_numpy(dtype=object)
    agreed_canon = _canonical_or_none(agreed).to_numpy(dtype=object)
    too_few = annotators < required
    has_invalid = ~too_few & (invalid > 0)
    disagree = ~too_few & ~has_invalid & (distinct != 1)
    differs = ~too_few & ~has_invalid & ~disagree & (agreed_canon != value)
    bad = applies_arr & (too_few | has_invalid | disagree | differs)
    text = np.full(len(idx), None, dtype=object)
    for i in np.flatnonzero(bad):
        if too_few[i]:
            text[i] = f"{annotators[i]} distinct annotators answered (need {required})"
        elif has_invalid[i]:
            text[i] = f"{invalid[i]} annotations are unanswerable or not a number"
        elif disagree[i]:
            text[i] = f"annotators gave {distinct[i]} different answers"
        else:
            text[i] = f"accepted answer {agreed.iloc[i]!r} differs from the annotators' {value[i]!r}"
    return pd.Series(text, index=idx, dtype=object)


# -- annotations ----------------------------------------------------------------------------------
def annotations_checks(params: Params) -> list[Check]:
    s = "annotations"
    return [
        *schema_checks(s, ANNOTATIONS, nullable=["answer"]),
        Check(f"{s}.one_per_annotator", "uniqueness", "an annotator answers a question at most once",
              lambda gxe, _c: gxe.ExpectCompoundColumnsToBeUnique(column_list=["question_id", "annotator"])),
        Check(f"{s}.annotator_named", "range", "annotator is not empty",
              lambda gxe, _c: gxe.ExpectColumnValueLengthsToBeBetween(column="annotator", min_value=1)),
        Check(f"{s}.answer_canonical", "range", "every given answer is a canonical decimal string",
              lambda gxe, _c: gxe.ExpectColumnValuesToMatchRegex(column="answer", regex=CANONICAL_DECIMAL)),
        null_check(f"{s}.answer_iff_answerable", "range",
                   "an answer is given exactly when the question is marked answerable", "_chk_answerable"),
        null_check(f"{s}.question_known", "referential", "every annotation is of a known question",
                   "_chk_question_known", requires=["questions"]),
    ]


def prepare_annotations(frame: pd.DataFrame, refs: References, params: Params) -> pd.DataFrame:
    out = frame.copy()
    idx = out.index
    answerable = out["answerable"].astype(object)
    has_answer = out["answer"].notna()
    missing = (answerable == True) & ~has_answer  # noqa: E712 - object column, may hold None
    extra = (answerable == False) & has_answer  # noqa: E712
    text = np.where(missing, "answerable but no answer", "marked unanswerable but has an answer")
    out["_chk_answerable"] = reasons((missing | extra).to_numpy(), pd.Series(text, index=idx), idx)
    if refs.questions is not None:
        known = out["question_id"].isin(refs.questions["question_id"]).to_numpy()
        out["_chk_question_known"] = reasons(~known, "question_id not in the questions table", idx)
    return out


# -- consensus ------------------------------------------------------------------------------------
def consensus_checks(params: Params) -> list[Check]:
    s = "consensus"
    required = params.annotation.annotators_required
    return [
        *schema_checks(s, CONSENSUS, nullable=["agreed_answer", "matches_generated", "reason", "answers_source",
                                                "reason_code"]),
        Check(f"{s}.reason_code_known", "range", "reason_code is a decision code of rejects.REASONS (or "
              "null: decided before it was recorded)",
              lambda gxe, _c: gxe.ExpectColumnValuesToBeInSet(column="reason_code", value_set=list(DECISION_CODES))),
        Check(f"{s}.answers_source_known", "range", "answers_source is people, simulated or mixed (or null: "
              "nobody answered yet, or decided before it was recorded)",
              lambda gxe, _c: gxe.ExpectColumnValuesToBeInSet(column="answers_source",
                                                              value_set=list(ANSWERS_SOURCES))),
        Check(f"{s}.question_id_unique", "uniqueness", "one consensus row per question",
              lambda gxe, _c: gxe.ExpectColumnValuesToBeUnique(column="question_id")),
        Check(f"{s}.status_known", "range", f"status is one of {', '.join(STATUSES)}",
              lambda gxe, _c: gxe.ExpectColumnValuesToBeInSet(column="status", value_set=list(STATUSES))),
        Check(f"{s}.agreed_answer_canonical", "range", "agreed_answer is a canonical decimal string",
              lambda gxe, _c: gxe.ExpectColumnValuesToMatchRegex(column="agreed_answer", regex=CANONICAL_DECIMAL)),
        null_check(f"{s}.status_fields", "range",
                   "accepted rows carry agreed_answer and matches_generated; rejected rows carry a reason",
                   "_chk_status_fields"),
        null_check(f"{s}.accepted_unanimous", "acceptance",
                   f"accepted rows list >= {required} answers, all equal to agreed_answer", "_chk_unanimous"),
        null_check(f"{s}.acceptance_rule", "acceptance",
                   f"every accepted question has {required} distinct annotators with equal answers "
                   "in the annotations table, equal to agreed_answer", "_chk_acceptance",
                   requires=["annotations"]),
        null_check(f"{s}.question_known", "referential", "every consensus row is of a known question",
                   "_chk_question_known", requires=["questions"]),
    ]


def prepare_consensus(frame: pd.DataFrame, refs: References, params: Params) -> pd.DataFrame:
    out = frame.copy()
    idx = out.index
    required = params.annotation.annotators_required
    accepted = (out["status"] == "accepted").fillna(False).to_numpy(bool)
    rejected = (out["status"] == "rejected").fillna(False).to_numpy(bool)
    no_answer = accepted & out["agreed_answer"].isna().to_numpy()
    no_flag = accepted & out["matches_generated"].isna().to_numpy()
    reason_missing = rejected & (out["reason"].fillna("").astype(str).str.len() == 0).to_numpy()
    text = np.where(no_answer, "accepted without agreed_answer",
                    np.where(no_flag, "accepted without matches_generated", "rejected without a reason"))
    out["_chk_status_fields"] = reasons(no_answer | no_flag | reason_missing, pd.Series(text, index=idx), idx)

    unanimous = np.full(len(out), None, dtype=object)
    agreed = _canonical_or_none(out["agreed_answer"]).to_numpy(dtype=object)
    for i in np.flatnonzero(accepted):
        answers = out["answers"].iloc[i]
        answers = [] if answers is None else list(answers)
        canon = set(_canonical_or_none(pd.Series(answers, dtype=object)).tolist())
        if len(answers) < required:
            unanimous[i] = f"{len(answers)} answers listed (need {required})"
        elif canon != {agreed[i]} or agreed[i] is None:
            unanimous[i] = f"answers {answers} are not all equal to agreed_answer {out['agreed_answer'].iloc[i]!r}"
    out["_chk_unanimous"] = pd.Series(unanimous, index=idx, dtype=object)

    if refs.annotations is not None:
        out["_chk_acceptance"] = acceptance_errors(
            out["question_id"], out["agreed_answer"], refs.annotations, required, applies=out["status"] == "accepted"
        )
    if refs.questions is not None:
        known = out["question_id"].isin(refs.questions["question_id"]).to_numpy()
        out["_chk_question_known"] = reasons(~known, "question_id not in the questions table", idx)
    return out


SUITES = [
    SuiteSpec("annotations", annotations_checks, prepare_annotations, ("question_id", "annotator"), ANNOTATIONS),
    SuiteSpec("consensus", consensus_checks, prepare_consensus, ("question_id",), CONSENSUS),
]
