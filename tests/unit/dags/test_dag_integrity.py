"""DAG integrity: Airflow's DagBag loads every DAG; each file parses fast and imports no heavy library."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit
REPO = Path(__file__).resolve().parents[3]
DAG_FILES = sorted((REPO / "dags").glob("*.py"))
HEAVY = ("torch", "pandas", "transformers", "great_expectations", "sam2", "pycocotools", "matplotlib")


def _env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update({
        "AIRFLOW_HOME": str(tmp_path / "airflow"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{tmp_path / 'airflow.db'}",
        "PYTHONPATH": str(REPO / "plugins"),
    })
    return env


def test_dagbag_has_no_import_errors(tmp_path: Path) -> None:
    code = (
        "import json\n"
        "from airflow.dag_processing.dagbag import DagBag\n"
        f"bag = DagBag(dag_folder={str(REPO / 'dags')!r})\n"
        "print(json.dumps({'errors': {k: v[-2000:] for k, v in bag.import_errors.items()},\n"
        "  'dags': {d.dag_id: {'tags': sorted(d.tags), 'doc': bool(d.doc_md), 'tasks': [t.task_id for t in d.tasks],\n"
        "   'max_active_runs': d.max_active_runs, 'schedule': str(d.schedule), 'catchup': d.catchup,\n"
        "   'timeouts': {t.task_id: t.execution_timeout and t.execution_timeout.total_seconds() for t in d.tasks},\n"
        "   'retries': {t.task_id: t.retries for t in d.tasks}} for d in bag.dags.values()}}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], env=_env(tmp_path), capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr[-3000:]
    data = json.loads(out.stdout.strip().splitlines()[-1])
    assert data["errors"] == {}
    dags = data["dags"]
    assert {"hopchain_nightly", "hopchain_annotations", "hopchain_release", "hopchain_labeling"} <= set(dags)
    for dag_id, d in dags.items():
        assert d["tags"] and d["doc"], f"{dag_id} needs tags and doc_md"
        assert d["max_active_runs"] == 1
    labeling = dags["hopchain_labeling"]  # the one labeling pass: every minute, one at a time, short, retried
    assert (labeling["tasks"], labeling["schedule"], labeling["catchup"]) == (["tend"], "0:01:00", False)
    assert 0 < labeling["timeouts"]["tend"] <= 600 and labeling["retries"]["tend"] >= 1
    nightly = dags["hopchain_nightly"]["tasks"]
    assert {"ingest", "shard.detect", "shard.segment", "shard.questions", "shard.validate", "shard.push"} <= set(nightly)


@pytest.mark.parametrize("dag_file", DAG_FILES, ids=lambda p: p.name)
def test_dag_file_parses_fast_without_heavy_imports(dag_file: Path, tmp_path: Path) -> None:
    code = (
        "import sys, time, json, runpy\n"
        "import airflow.sdk  # the SDK itself is not counted: every DAG file needs it\n"
        "t = time.perf_counter()\n"
        f"runpy.run_path({str(dag_file)!r})\n"
        "elapsed = time.perf_counter() - t\n"
        f"heavy = [m for m in {HEAVY!r} if m in sys.modules]\n"
        "print(json.dumps({'elapsed': elapsed, 'heavy': heavy}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], env=_env(tmp_path), capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    data = json.loads(out.stdout.strip().splitlines()[-1])
    assert data["heavy"] == [], f"{dag_file.name} imports {data['heavy']} at parse time"
    assert data["elapsed"] < 1.0, f"{dag_file.name} took {data['elapsed']:.2f}s to parse"
