"""Runner behaviour: severities, saving before raising, Data Docs upload keys, skips, CLI exit codes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from expectations.checks import References
from expectations.runner import ValidationFailed, validate
from expectations.samples import sample_tables
from pipelines.cli import main as hopchain
from pipelines.config import ConfigError, Params, load_params

pytestmark = pytest.mark.unit


class RecordingStore:
    """An in-memory stand-in for pipelines.store.ObjectStore that records the order of writes."""

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}
        self.order: list[str] = []

    def put_bytes(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> str:
        self.objects[key] = data
        self.order.append(key)
        return key

    def put_json(self, key: str, obj: Any) -> str:
        return self.put_bytes(key, json.dumps(obj).encode(), "application/json")

    def list(self, prefix: str):
        return iter(sorted(k for k in self.objects if k.startswith(prefix)))

    def delete_keys(self, keys: list[str]) -> int:
        for k in keys:
            self.objects.pop(k, None)
        return len(keys)


@pytest.fixture(scope="module")
def tables() -> dict[str, pa.Table]:
    return sample_tables(n_images=4, questions_per_image=2, seed=3)


@pytest.fixture(scope="module")
def bad_questions(tables) -> pa.Table:
    df = tables["questions"].to_pandas()
    df.loc[0, "answer"] = "007"  # answer_canonical + answer_matches_program
    return pa.Table.from_pandas(df, schema=tables["questions"].schema, preserve_index=False)


def severities(params: Params, **severity: str) -> Params:
    mapped = {k.replace("__", "."): v for k, v in severity.items()}
    return params.model_copy(update={"validation": params.validation.model_copy(
        update={"severity": {**params.validation.severity, **mapped}})})


def test_critical_failure_saves_result_and_docs_then_raises(tables, bad_questions, tmp_path) -> None:
    store = RecordingStore()
    with pytest.raises(ValidationFailed) as info:
        validate("questions", bad_questions, params=load_params(), run_id="run-7", out_dir=tmp_path,
                 store=store)  # type: ignore[arg-type]
    report = info.value.report
    assert "questions.answer_canonical" in str(info.value)
    assert set(report.critical_failures) == {"questions.answer_canonical", "questions.answer_matches_program"}
    saved = json.loads(Path(report.result_path).read_text())
    assert "questions.answer_canonical" in saved["report"]["critical_failures"]
    assert saved["great_expectations"]["success"] is False  # GX's full result is inside
    # the object store got the result first, then the Data Docs site (index + the run's page)
    assert store.order[0] == report.result_key == "runs/run-7/validation/questions/result.json"
    assert report.docs_index_key == "runs/run-7/datadocs/questions/index.html"
    assert report.docs_index_key in store.objects and report.docs_page_key in store.objects
    assert report.docs_page_key.startswith("runs/run-7/datadocs/questions/validations/questions/run-7/")
    page = store.objects[report.docs_page_key].decode()
    assert "questions.answer_canonical" in page
    assert (tmp_path / "datadocs" / "questions" / "index.html").is_file()


def test_warning_severity_reports_without_raising(bad_questions) -> None:
    params = severities(load_params(), questions__answer_canonical="warning",
                        questions__answer_matches_program="warning")
    report = validate("questions", bad_questions, params=params)
    assert report.success
    assert set(report.warnings) == {"questions.answer_canonical", "questions.answer_matches_program"}
    assert report.outcome("questions.answer_canonical").severity == "warning"


def test_default_severity_applies_to_unnamed_expectations(bad_questions) -> None:
    params = load_params()
    params = params.model_copy(update={"validation": params.validation.model_copy(
        update={"default_severity": "warning"})})
    report = validate("questions", bad_questions, params=params)
    assert report.success and "questions.answer_canonical" in report.warnings


def test_unknown_severity_name_is_refused(tables) -> None:
    params = severities(load_params(), questions__answer_canonicl="warning")
    with pytest.raises(ConfigError, match="questions.answer_canonicl"):
        validate("questions", tables["questions"], params=params)


def test_checks_without_their_reference_tables_are_skipped_not_passed(tables) -> None:
    report = validate("questions", tables["questions"], params=load_params(), raise_on_critical=False)
    skipped = {o.name: o.skipped for o in report.outcomes if o.success is None}
    assert skipped["questions.hop_instances_exist"] == "needs the instances table"
    assert skipped["questions.image_in_manifest"] == "needs the manifest table"
    assert "rows" in skipped["questions.answer_concentration"]  # 8 rows < distribution_min_rows
    assert "SKIPPED  questions.hop_instances_exist" in report.summary()


def test_missing_column_fails_schema_checks_without_crashing(tables) -> None:
    report = validate("questions", tables["questions"].drop_columns(["hops"]), params=load_params(),
                      refs=References(manifest=tables["manifest"]), raise_on_critical=False)
    assert {"questions.columns", "questions.type_hops", "questions.hops_well_formed"} <= set(report.critical_failures)


def _write(table: pa.Table, path: Path) -> Path:
    pq.write_table(table, path)
    return path


def test_cli_exit_codes_and_names(tables, bad_questions, tmp_path, capsys) -> None:
    good = _write(tables["questions"], tmp_path / "good.parquet")
    bad = _write(bad_questions, tmp_path / "bad.parquet")
    manifest = _write(tables["manifest"], tmp_path / "manifest.parquet")
    assert hopchain(["validate", "--suite", "questions", "--data", str(good), "--manifest", str(manifest),
                     "--out", str(tmp_path / "out-good")]) == 0
    assert "PASSED" in capsys.readouterr().out
    assert hopchain(["validate", "--suite", "questions", "--data", str(bad), "--out", str(tmp_path / "out")]) == 1
    captured = capsys.readouterr()
    assert "questions.answer_canonical" in captured.err and "questions.answer_matches_program" in captured.err
    assert (tmp_path / "out" / "questions.validation.json").is_file()
    assert (tmp_path / "out" / "datadocs" / "questions" / "index.html").is_file()
    assert hopchain(["validate", "--suite", "questions", "--data", str(tmp_path / "nope.parquet")]) == 2


def test_the_data_docs_index_escapes_run_ids_and_file_names() -> None:
    from expectations.runner import render_docs_index

    page = render_docs_index("run<1>'", ["questions", "q'><script>x</script>"])
    assert "<script>" not in page and "<title>Data Docs run&lt;1&gt;&#39;</title>" in page
    assert "<li><a href='questions/index.html'>questions</a></li>" in page
    assert "<a href='q&#39;&gt;&lt;script&gt;x&lt;/script&gt;/index.html'>q&#39;&gt;&lt;script&gt;x&lt;/script&gt;</a>" in page
