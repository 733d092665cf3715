"""Suites for generated questions and the release: ``questions``, ``release``.

The hop program (``hops``) is a JSON list of ``{"op", "args", "inputs", "kind", "value"}``
(``docs/hop-programs.md``): ``inputs`` index earlier hops; every hop but the first has an input,
every hop but the last is consumed; ``value`` is a sorted list of instance ids or a number, and
the last hop's value is the (canonical) answer.

The release frame is the questions contract plus ``split`` (``train`` | ``eval``): one row per
released question (see :data:`RELEASE_SCHEMA`).
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from expectations.checks import Check, References, SuiteSpec
from expectations.suites.annotations import acceptance_errors
from expectations.suites.common import CANONICAL_DECIMAL, null_check, reasons, schema_checks, share_reasons
from pipelines.config import Params
from pipelines.contracts import QUESTIONS, canonical_number

HOP_KEYS = frozenset({"op", "args", "inputs", "kind", "value"})
HOP_KINDS = frozenset({"perception", "instance_chain"})
VARIANTS = ("full", "half", "single")
SPLITS = ("train", "eval")
RELEASE_SCHEMA = pa.schema([*QUESTIONS, ("split", pa.string())])
NULLABLE = [n for n in ("pass_rate",) if n in QUESTIONS.names]  # set only when difficulty calibration ran

try:  # orjson (an Airflow dependency) parses hop programs ~3x faster than json
    from orjson import JSONDecodeError as _JSONError
    from orjson import loads as _loads
except ImportError:  # pragma: no cover - plain json gives identical results
    from json import JSONDecodeError as _JSONError  # type: ignore[assignment]
    from json import loads as _loads  # type: ignore[assignment]


def _variant_is_full(full: bool) -> Any:
    """A GX row condition on ``variant`` (a Condition object: string conditions are deprecated in GX 1.9)."""
    from great_expectations.expectations.row_conditions import Column

    return Column("variant") == "full" if full else Column("variant") != "full"


def question_checks(params: Params, s: str = "questions") -> list[Check]:
    """The questions suite's checks, named ``<s>.<what>`` (the release suite reuses them)."""
    v = params.validation
    return [
        Check(f"{s}.question_id_unique", "uniqueness", "each question_id appears once",
              lambda gxe, _c: gxe.ExpectColumnValuesToBeUnique(column="question_id")),
        Check(f"{s}.no_duplicate_text", "uniqueness", "no image has the same question text twice in a variant",
              lambda gxe, _c: gxe.ExpectCompoundColumnsToBeUnique(column_list=["image_id", "variant", "question"])),
        Check(f"{s}.variant_known", "range", f"variant is one of {', '.join(VARIANTS)}",
              lambda gxe, _c: gxe.ExpectColumnValuesToBeInSet(column="variant", value_set=list(VARIANTS))),
        Check(f"{s}.num_hops_range", "range", f"full questions have {v.min_hops_full}..{v.max_hops} hops",
              lambda gxe, _c: gxe.ExpectColumnValuesToBeBetween(
                  column="num_hops", min_value=v.min_hops_full, max_value=v.max_hops,
                  row_condition=_variant_is_full(True))),
        Check(f"{s}.num_hops_range_ablation", "range",
              f"half/single questions have {v.min_hops_ablation}..{v.max_hops} hops",
              lambda gxe, _c: gxe.ExpectColumnValuesToBeBetween(
                  column="num_hops", min_value=v.min_hops_ablation, max_value=v.max_hops,
                  row_condition=_variant_is_full(False))),
        Check(f"{s}.answer_canonical", "range", "answer is a canonical decimal string (\"3\", \"2.5\")",
              lambda gxe, _c: gxe.ExpectColumnValuesToMatchRegex(column="answer", regex=CANONICAL_DECIMAL)),
        *([Check(f"{s}.pass_rate_range", "range", "pass_rate (when set) is within 0..1",
                 lambda gxe, _c: gxe.ExpectColumnValuesToBeBetween(column="pass_rate", min_value=0, max_value=1))]
          if "pass_rate" in QUESTIONS.names else []),
        Check(f"{s}.question_text_present", "range", "question text is not empty",
              lambda gxe, _c: gxe.ExpectColumnValueLengthsToBeBetween(column="question", min_value=1)),
        null_check(f"{s}.hops_well_formed", "schema",
                   "hops is a connected program of num_hops hops ending in a number", "_chk_hops"),
        null_check(f"{s}.answer_matches_program", "range",
                   "answer equals the last hop's value (canonical)", "_chk_answer_matches_program"),
        null_check(f"{s}.image_in_manifest", "referential", "every question's image is in the manifest",
                   "_chk_image_in_manifest", requires=["manifest"]),
        null_check(f"{s}.hop_instances_exist", "referential",
                   "every instance id a hop names exists in that image", "_chk_hop_instances",
                   requires=["instances"]),
        null_check(f"{s}.answer_concentration", "distribution",
                   f"no answer value is more than {v.max_answer_share:.0%} of the questions",
                   "_chk_answer_concentration", min_rows=v.distribution_min_rows),
        null_check(f"{s}.hop_length_mix", "distribution",
                   f"no hop length is more than {v.max_hop_length_share:.0%} of the full questions",
                   "_chk_hop_length_mix", min_rows=v.distribution_min_rows),
    ]


def questions_checks(params: Params) -> list[Check]:
    return [*schema_checks("questions", QUESTIONS, nullable=NULLABLE), *question_checks(params, "questions")]


def release_checks(params: Params) -> list[Check]:
    s = "release"
    return [
        *schema_checks(s, RELEASE_SCHEMA, nullable=NULLABLE),
        *question_checks(params, s),
        Check(f"{s}.split_known", "range", "split is train or eval",
              lambda gxe, _c: gxe.ExpectColumnValuesToBeInSet(column="split", value_set=list(SPLITS))),
        null_check(f"{s}.no_image_in_both_splits", "leakage",
                   "no image has questions in both the train and the eval split", "_chk_split_leak"),
        null_check(f"{s}.acceptance_rule", "acceptance",
                   f"every released question was answered by {params.annotation.annotators_required} distinct "
                   "annotators with equal answers, equal to the released answer", "_chk_acceptance",
                   requires=["annotations"]),
    ]


# -- hop programs ---------------------------------------------------------------------------------
def _is_number(v: Any) -> bool:
    return (isinstance(v, int) and not isinstance(v, bool)) or (isinstance(v, float) and math.isfinite(v))


def program_error(program: Any, num_hops: Any) -> str | None:
    """Why ``program`` (parsed ``hops``) is not a well-formed hop program of ``num_hops`` hops, or None."""
    if not isinstance(program, list) or not program:
        return "hops is not a non-empty JSON list"
    if num_hops != len(program):
        return f"hops has {len(program)} hops but num_hops is {num_hops}"
    used = [False] * len(program)
    for k, hop in enumerate(program):
        if not isinstance(hop, dict) or not HOP_KEYS <= hop.keys():
            return f"hop {k} is not an object with keys op, args, inputs, kind, value"
        op, args, inputs, value = hop["op"], hop["args"], hop["inputs"], hop["value"]
        if not isinstance(op, str) or not op or not isinstance(args, dict):
            return f"hop {k}: op must be a non-empty string and args an object"
        if hop["kind"] not in HOP_KINDS:
            return f"hop {k}: kind {hop['kind']!r} is not perception or instance_chain"
        if not isinstance(inputs, list) or (k > 0 and not inputs):
            return f"hop {k}: inputs must list earlier hops (only hop 0 may have none)"
        for j in inputs:
            if not isinstance(j, int) or isinstance(j, bool) or not 0 <= j < k:
                return f"hop {k}: input {j!r} is not an earlier hop"
            used[j] = True
        if isinstance(value, list):
            if not all(isinstance(i, int) and not isinstance(i, bool) for i in value):
                return f"hop {k}: value list holds a non-integer instance id"
            if any(a >= b for a, b in itertools.pairwise(value)):
                return f"hop {k}: instance ids are not sorted and unique"
        elif not _is_number(value):
            return f"hop {k}: value is neither a list of instance ids nor a finite number"
    if not _is_number(program[-1]["value"]):
        return "the last hop does not yield a number"
    unused = [k for k in range(len(program) - 1) if not used[k]]
    if unused:
        return f"hop {unused[0]} is not used by any later hop"
    return None


def _parse_programs(
    hops: pd.Series, num_hops: pd.Series, answers: pd.Series
) -> tuple[list[str | None], list[str | None], np.ndarray, np.ndarray]:
    """One pass over the programs: structure reason, answer reason, and the (row, instance id)
    pairs every well-formed program names."""
    n = len(hops)
    structure: list[str | None] = [None] * n
    answer: list[str | None] = [None] * n
    ref_rows: list[int] = []
    ref_ids: list[int] = []
    nh = pd.to_numeric(num_hops, errors="coerce").tolist()
    for i, (text, k, ans) in enumerate(zip(hops.tolist(), nh, answers.tolist(), strict=True)):
        if not isinstance(text, str):
            structure[i] = "hops is missing"
            continue
        try:
            program = _loads(text)
        except (_JSONError, ValueError):
            structure[i] = "hops is not valid JSON"
            continue
        err = program_error(program, k)
        if err is not None:
            structure[i] = err
            continue
        for hop in program:
            value = hop["value"]
            if isinstance(value, list) and value:
                ref_rows.extend([i] * len(value))
                ref_ids.extend(value)
        final = canonical_number(program[-1]["value"])
        if final != ans:
            answer[i] = f"answer {ans!r} but the program yields {final!r}"
    return structure, answer, np.asarray(ref_rows, dtype=np.int64), np.asarray(ref_ids, dtype=np.int64)


def _missing_instances(
    image_ids: pd.Series, ref_rows: np.ndarray, ref_ids: np.ndarray, instances: pd.DataFrame
) -> pd.Series:
    """Reason per question row naming the hop instance ids absent from its image's instances."""
    out = pd.Series(None, index=image_ids.index, dtype=object)
    if len(ref_rows) == 0:
        return out
    codes, _ = pd.factorize(pd.concat([image_ids, instances["image_id"]], ignore_index=True))
    q_codes, i_codes = codes[: len(image_ids)], codes[len(image_ids):]
    inst_ids = pd.to_numeric(instances["instance_id"], errors="coerce").fillna(-1).to_numpy(np.int64)
    known = np.unique((i_codes.astype(np.int64) << 32) | (inst_ids & 0xFFFFFFFF))
    keys = (q_codes[ref_rows].astype(np.int64) << 32) | (ref_ids & 0xFFFFFFFF)
    pos = np.searchsorted(known, keys)
    found = (pos < len(known)) & (known[np.minimum(pos, len(known) - 1)] == keys)
    if found.all():
        return out
    missing = pd.DataFrame({"row": ref_rows[~found], "id": ref_ids[~found]}).drop_duplicates()
    for row, ids in missing.groupby("row")["id"]:
        out.iat[int(row)] = f"instance ids {sorted(ids.tolist())} are not instances of this image"
    return out


def prepare_questions(frame: pd.DataFrame, refs: References, params: Params) -> pd.DataFrame:
    out = frame.copy()
    idx = out.index
    v = params.validation
    structure, answer, ref_rows, ref_ids = _parse_programs(out["hops"], out["num_hops"], out["answer"])
    out["_chk_hops"] = pd.Series(structure, index=idx, dtype=object)
    out["_chk_answer_matches_program"] = pd.Series(answer, index=idx, dtype=object)
    if refs.manifest is not None:
        known = out["image_id"].isin(refs.manifest["image_id"]).to_numpy()
        out["_chk_image_in_manifest"] = reasons(~known, "image_id not in the manifest", idx)
    if refs.instances is not None:
        out["_chk_hop_instances"] = _missing_instances(out["image_id"], ref_rows, ref_ids, refs.instances)
    out["_chk_answer_concentration"] = share_reasons(out["answer"], v.max_answer_share, "answer")
    out["_chk_hop_length_mix"] = share_reasons(
        out["num_hops"], v.max_hop_length_share, "num_hops", mask=out["variant"] == "full"
    )
    return out


def prepare_release(frame: pd.DataFrame, refs: References, params: Params) -> pd.DataFrame:
    out = prepare_questions(frame, refs, params)
    splits = out.groupby("image_id")["split"].nunique(dropna=True)
    leaked = out["image_id"].map(splits).fillna(0).to_numpy() > 1
    out["_chk_split_leak"] = reasons(leaked, "image has questions in both train and eval", out.index)
    if refs.annotations is not None:
        out["_chk_acceptance"] = acceptance_errors(
            out["question_id"], out["answer"], refs.annotations, params.annotation.annotators_required
        )
    return out


SUITES = [
    SuiteSpec("questions", questions_checks, prepare_questions, ("question_id",), QUESTIONS),
    SuiteSpec("release", release_checks, prepare_release, ("question_id",), RELEASE_SCHEMA),
]
