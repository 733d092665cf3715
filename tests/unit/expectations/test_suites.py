"""Every suite passes on good data and fails on crafted bad frames, naming each failing expectation.

Each bad frame breaks several expectation families at once; the test asserts the *exact* set of
failing names, so a check that fires spuriously (or one that stays silent) fails the test.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import pandas as pd
import pyarrow as pa
import pytest

from expectations.checks import References
from expectations.runner import ValidationReport, validate
from expectations.samples import rectangle_rle, sample_tables
from expectations.suites import SUITES
from pipelines.config import Params, load_params

pytestmark = pytest.mark.unit
NEW_IMAGE = "f" * 64


@pytest.fixture(scope="module")
def tables() -> dict[str, pa.Table]:
    return sample_tables(n_images=20, questions_per_image=3, seed=1)  # 60 questions: distributions apply


@pytest.fixture(scope="module")
def params() -> Params:
    return load_params()


def with_validation(params: Params, **changes: object) -> Params:
    return params.model_copy(update={"validation": params.validation.model_copy(update=changes)})


def refs_of(tables: dict[str, pa.Table], **override: object) -> References:
    base = {k: tables[k] for k in ("manifest", "instances", "questions", "annotations")}
    base.update(override)
    return References(**base)


def edit(table: pa.Table, fn: Callable[[pd.DataFrame], None], schema: pa.Schema | None = None) -> pa.Table:
    df = table.to_pandas()
    fn(df)
    return pa.Table.from_pandas(df, schema=schema if schema is not None else table.schema, preserve_index=False)


def run(suite: str, data: pa.Table, params: Params, refs: References) -> ValidationReport:
    return validate(suite, data, params=params, refs=refs, run_id="test", raise_on_critical=False)


@pytest.mark.parametrize("suite", sorted(SUITES))
def test_suite_passes_on_good_data(suite: str, tables: dict[str, pa.Table], params: Params) -> None:
    report = run(suite, tables[suite], params, refs_of(tables))
    assert report.success, report.summary()
    assert report.warnings == [] and report.skipped == [], report.summary()
    assert {o.name for o in report.outcomes} == {c.name for c in SUITES[suite].checks(params)}
    assert all(o.success for o in report.outcomes)


def assert_fails(report: ValidationReport, critical: set[str], warnings: set[str] = frozenset()) -> None:
    assert set(report.critical_failures) == critical, report.summary()
    assert set(report.warnings) == set(warnings), report.summary()
    assert not report.success
    for name in critical:  # every failure carries evidence: failing rows or an observed value
        o = report.outcome(name)
        assert o.examples or o.observed_value is not None or o.error, name


def test_manifest_bad(tables, params) -> None:
    def corrupt(df: pd.DataFrame) -> None:
        df.loc[1, "image_id"] = df.loc[0, "image_id"]  # uniqueness
        df.loc[2, "image_id"] = "NOT-A-HASH"  # range (format)
        df.loc[3, "width"] = 0  # range

    bad = edit(tables["manifest"], corrupt).drop_columns(["format"])  # schema
    assert_fails(run("manifest", bad, params, References()), {
        "manifest.image_id_unique", "manifest.image_id_sha256", "manifest.width_positive",
        "manifest.columns", "manifest.type_format", "manifest.not_null_format"})


def test_quarantine_bad(tables, params) -> None:
    bad = pa.concat_tables([tables["quarantine"], pa.Table.from_pylist(
        [{"uri": tables["quarantine"]["uri"][0].as_py(), "code": "Not A Code", "detail": ""}],
        schema=tables["quarantine"].schema)])
    assert_fails(run("quarantine", bad, params, References()),
                 {"quarantine.uri_unique", "quarantine.code_well_formed", "quarantine.detail_given"})


def test_instances_bad(tables, params) -> None:
    manifest = tables["manifest"].to_pandas().set_index("image_id")

    def corrupt(df: pd.DataFrame) -> None:
        df.loc[1, "instance_id"] = df.loc[0, "instance_id"]  # uniqueness (same image)
        df.loc[2, "score"] = 1.5  # range
        df.loc[3, "mask_rle"] = df.loc[3, "mask_rle"][:-3]  # custom: RLE does not decode to its size
        width = manifest.loc[df.loc[4, "image_id"], "width"]
        df.at[4, "bbox"] = [float(width - 2), 0.0, 10.0, 10.0]  # range: box leaves the image
        df.loc[5, "image_id"] = NEW_IMAGE  # referential
        x, y, w, h = (int(v) for v in df.loc[6, "bbox"])
        height6, width6 = int(df.loc[6, "mask_height"]) + 2, int(df.loc[6, "mask_width"])
        df.loc[6, "mask_rle"], _ = rectangle_rle(height6, width6, x, y, w, h)  # a valid mask of the wrong size
        df.loc[6, "mask_height"] = height6
        df.loc[7, "category"] = "Traffic Light"  # range (format)
        df.at[8, "bbox"] = [1.0, 1.0, -3.0, 4.0]  # range: malformed box

    report = run("instances", edit(tables["instances"], corrupt), with_validation(params, max_category_share=0.2),
                 refs_of(tables))
    assert_fails(report, {
        "instances.instance_id_unique", "instances.score_range", "instances.mask_rle_decodes",
        "instances.bbox_inside_image", "instances.image_in_manifest", "instances.mask_size_matches_image",
        "instances.category_lowercase", "instances.bbox_well_formed",
    }, warnings={"instances.category_counts"})
    rows = report.outcome("instances.mask_rle_decodes").examples
    assert [(r["image_id"], r["instance_id"]) for r in rows] == [
        (tables["instances"]["image_id"][3].as_py(), tables["instances"]["instance_id"][3].as_py())]
    assert "exceeds image" in json.dumps(report.outcome("instances.bbox_inside_image").examples)


def test_questions_bad(tables, params) -> None:
    def corrupt(df: pd.DataFrame) -> None:
        df.loc[0, "question_id"] = df.loc[1, "question_id"]  # uniqueness
        two_hops = [{"op": "find", "args": {"category": "cat"}, "inputs": [], "kind": "perception", "value": [0]},
                    {"op": "count", "args": {}, "inputs": [0], "kind": "perception", "value": 1}]
        df.loc[2, ["hops", "num_hops", "answer"]] = [json.dumps(two_hops), 2, "1"]  # range: full needs 3..6
        df.loc[3, "answer"] = "0" + df.loc[3, "answer"]  # not canonical, and no longer the program's answer
        df.loc[4, "hops"] = '[{"op": "find", '  # structure
        program = json.loads(df.loc[5, "hops"])
        program[0]["value"] = sorted(program[0]["value"] + [99])
        df.loc[5, "hops"] = json.dumps(program)  # referential: instance 99 is not in the image
        df.loc[6, "image_id"] = NEW_IMAGE  # referential: image (and so its instances) unknown
        df.loc[7, "variant"] = "quarter"  # range
        df.loc[10, "question"] = df.loc[9, "question"]  # uniqueness: same text on the same image

    report = run("questions", edit(tables["questions"], corrupt),
                 with_validation(params, max_answer_share=0.1, max_hop_length_share=0.2), refs_of(tables))
    assert_fails(report, {
        "questions.question_id_unique", "questions.num_hops_range", "questions.answer_canonical",
        "questions.answer_matches_program", "questions.hops_well_formed", "questions.hop_instances_exist",
        "questions.image_in_manifest", "questions.variant_known", "questions.no_duplicate_text",
    }, warnings={"questions.answer_concentration", "questions.hop_length_mix"})
    missing = json.dumps(report.outcome("questions.hop_instances_exist").examples)
    assert "[99]" in missing and tables["questions"]["question_id"][5].as_py() in missing


def test_annotations_bad(tables, params) -> None:
    def corrupt(df: pd.DataFrame) -> None:
        df.loc[1, "annotator"] = df.loc[0, "annotator"]  # uniqueness
        df.loc[4, "answer"] = df.loc[4, "answer"] + ".0"  # range: not canonical
        df.loc[8, "answerable"] = False  # range: an answer on an unanswerable mark
        df.loc[12, "question_id"] = "unknown-question"  # referential
        df["submitted_at"] = df["submitted_at"].astype(str)  # schema: type

    schema = pa.schema([f if f.name != "submitted_at" else pa.field("submitted_at", pa.string())
                        for f in tables["annotations"].schema])
    report = run("annotations", edit(tables["annotations"], corrupt, schema), params, refs_of(tables))
    assert_fails(report, {
        "annotations.one_per_annotator", "annotations.answer_canonical", "annotations.answer_iff_answerable",
        "annotations.question_known", "annotations.type_submitted_at"})


def test_consensus_bad(tables, params) -> None:
    def corrupt(df: pd.DataFrame) -> None:
        df.loc[0, "status"] = "maybe"  # range
        df.loc[1, "agreed_answer"] = "77"  # acceptance: not what the four annotators said
        df["matches_generated"] = df["matches_generated"].astype(object)
        df.loc[2, ["status", "agreed_answer", "matches_generated"]] = ["rejected", None, None]  # no reason
        df.loc[3] = df.loc[4]  # uniqueness: the same question twice
        df.loc[5, "question_id"] = "ghost"  # acceptance + referential: nobody annotated it
        df.at[6, "answers"] = df.loc[6, "answers"][:3]  # acceptance: three answers listed

    report = run("consensus", edit(tables["consensus"], corrupt), params, refs_of(tables))
    assert_fails(report, {
        "consensus.status_known", "consensus.acceptance_rule", "consensus.accepted_unanimous",
        "consensus.status_fields", "consensus.question_id_unique", "consensus.question_known"})
    bad_ids = {r["question_id"] for r in report.outcome("consensus.acceptance_rule").examples}
    assert bad_ids == {tables["consensus"]["question_id"][1].as_py(), "ghost"}


def test_release_bad(tables, params) -> None:
    release = tables["release"]
    dropped = release["question_id"][20].as_py()

    def corrupt(df: pd.DataFrame) -> None:
        df.loc[0, "split"] = "eval"  # leakage: image 0's other questions are in train
        df.loc[30:32, "split"] = "test"  # range (a whole image, so no leak)

    annotations = tables["annotations"].to_pandas()
    annotations = annotations[~((annotations.question_id == dropped) & (annotations.annotator == "annotator-3"))]
    report = run("release", edit(release, corrupt), params, refs_of(tables, annotations=annotations))
    assert_fails(report, {"release.no_image_in_both_splits", "release.acceptance_rule", "release.split_known"})
    leak = report.outcome("release.no_image_in_both_splits")
    assert leak.unexpected_count == 3  # every question of the leaked image is named
    assert [r["question_id"] for r in report.outcome("release.acceptance_rule").examples] == [dropped]
