"""A critical validation failure stops the stage, and its Data Docs render from the S3 server.

Real SeaweedFS (``object_store`` fixture) and real headless Chromium (Debian ``chromium``): the
validation page is fetched through a presigned URL straight from the object store.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid
from pathlib import Path

import pyarrow as pa
import pytest

from expectations.runner import ValidationFailed, validate
from expectations.samples import sample_tables
from pipelines.config import load_params

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def tables() -> dict[str, pa.Table]:
    return sample_tables(n_images=4, questions_per_image=2, seed=5)


@pytest.fixture(scope="module")
def bad_questions(tables) -> pa.Table:
    df = tables["questions"].to_pandas()
    program = json.loads(df.loc[1, "hops"])
    program[0]["value"] = sorted(program[0]["value"] + [404])  # names an instance the image lacks
    df.loc[1, "hops"] = json.dumps(program)
    return pa.Table.from_pandas(df, schema=tables["questions"].schema, preserve_index=False)


def chromium_dom(url: str, tmp_path: Path, screenshot: bool = False) -> str:
    assert CHROMIUM, "headless Chromium is needed: apt-get install -y chromium"
    shot = tmp_path / "page.png"
    flags = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run",
             f"--user-data-dir={tmp_path / 'chromium-profile'}"]
    dom = subprocess.run([*flags, "--dump-dom", url], capture_output=True, text=True, timeout=90, check=True).stdout
    if screenshot:
        subprocess.run([*flags, f"--screenshot={shot}", "--window-size=1280,1600", url], capture_output=True,
                       timeout=90, check=True)
        assert shot.stat().st_size > 10_000  # a rendered page, not a blank error screen
    return dom


def test_critical_failure_data_docs_render_in_chromium(object_store, tables, bad_questions, tmp_path) -> None:
    run_id = f"it-{uuid.uuid4().hex[:8]}"
    with pytest.raises(ValidationFailed) as info:
        validate("questions", bad_questions, params=load_params(), run_id=run_id, store=object_store,
                 refs=_refs(tables))
    report = info.value.report
    assert report.critical_failures == ["questions.hop_instances_exist"]
    saved = object_store.get_json(report.result_key)  # saved before the raise
    assert saved["report"]["critical_failures"] == ["questions.hop_instances_exist"]
    assert report.docs_index_key == f"runs/{run_id}/datadocs/questions/index.html"
    assert object_store.exists(report.docs_index_key)

    dom = chromium_dom(object_store.presigned_get(report.docs_page_key, expires_s=600), tmp_path, screenshot=True)
    assert "questions.hop_instances_exist" in dom
    assert "404" in dom  # the offending instance id is shown on the page
    index_dom = chromium_dom(object_store.presigned_get(report.docs_index_key, expires_s=600), tmp_path)
    assert run_id in index_dom  # the index lists this run's validation


def _refs(tables):
    from expectations.checks import References

    return References(manifest=tables["manifest"], instances=tables["instances"])


def test_task_runner_fails_the_task_without_retry_and_downstream_does_not_run(
        object_store, s3_creds, tables, bad_questions, monkeypatch) -> None:
    """The one validation path of the DAGs: a task runs :func:`pipelines.runner.validate` through ``run_task``; a
    critical failure saves result and Data Docs, then fails the task with no retry."""
    from urllib.parse import urlparse

    monkeypatch.syspath_prepend(str(REPO / "plugins"))
    url = urlparse(s3_creds.url)
    monkeypatch.setenv("AIRFLOW_CONN_HOPCHAIN_S3", json.dumps({
        "conn_type": "hopchain_s3", "host": url.hostname, "port": url.port,
        "login": s3_creds.access_key, "password": s3_creds.secret_key}))
    from airflow.sdk.exceptions import AirflowFailException

    from hopchain_airflow.runtime import run_task
    from pipelines.runner import summarize, validate

    run_id = f"op-{uuid.uuid4().hex[:8]}"
    context = {"run_id": run_id, "params": {}}
    refs = {"manifest": tables["manifest"], "instances": tables["instances"]}
    ran_downstream = []

    def stage(questions: pa.Table, label: str) -> dict:
        result = run_task(context, validate, label, [("questions", questions, refs)])
        ran_downstream.append(label)  # the next stage only runs when validation passed
        return result

    ok = stage(tables["questions"], "good")
    assert ok["questions"]["success"] and object_store.exists(f"runs/{run_id}/datadocs/questions/good/index.html")
    with pytest.raises(AirflowFailException, match="questions.hop_instances_exist"):
        stage(bad_questions, "bad")
    assert ran_downstream == ["good"]
    assert object_store.get_json(f"runs/{run_id}/validation/questions/bad.json")["report"]["success"] is False
    # the run's summary (trigger rule all_done: it runs after a failed task too) renders the Data Docs
    # index from the sites the validations marked, and links both
    summary = run_task(context, summarize)
    assert summary["datadocs"] == f"runs/{run_id}/datadocs/index.html"
    index = object_store.get_bytes(summary["datadocs"]).decode()
    assert "questions/good" in index and "questions/bad" in index
