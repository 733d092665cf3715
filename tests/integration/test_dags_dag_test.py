"""Issue 9 acceptance 2: ``dag.test()`` of each DAG passes against the real local services.

``dag.test()`` runs the tasks (and the deferrable trigger) in-process. It gets its own Airflow
metadata database, so it never races the stack's scheduler, but talks to the stack's real S3 server
and Label Studio through the same two connections (as ``AIRFLOW_CONN_*`` variables).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipelines.ops.deploy import airflow_connections

pytestmark = [pytest.mark.integration, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[2]

DAG_TEST = """
import json, sys
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(dag_folder={dags!r})
assert not bag.import_errors, bag.import_errors
dag = bag.get_dag(sys.argv[1])
run = dag.test(run_conf=json.loads(sys.argv[2]))
states = {{ti.task_id + ("[%d]" % ti.map_index if ti.map_index >= 0 else ""): str(ti.state)
          for ti in run.get_task_instances()}}
print("RESULT " + json.dumps({{"state": str(run.state), "tasks": states}}))
"""


def _dag_test(stack, tmp_path: Path, dag_id: str, conf: dict) -> dict:
    home = tmp_path / "airflow-dagtest"
    home.mkdir(exist_ok=True)
    env = stack.airflow.env()
    env.update({
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "PYTHONPATH": f"{REPO / 'plugins'}{os.pathsep}{REPO}",
    })
    for conn_id, conn in airflow_connections(stack.s3.credentials(), stack.labelstudio.credentials()).items():
        env[f"AIRFLOW_CONN_{conn_id.upper()}"] = json.dumps(conn)
    if not (home / "airflow.db").exists():
        subprocess.run([str(Path(sys.executable).parent / "airflow"), "db", "migrate"], env=env, check=True,
                       capture_output=True, timeout=300)
        # the nightly's preflight checks the gpu pool (dag.test itself ignores pools)
        subprocess.run([str(Path(sys.executable).parent / "airflow"), "pools", "set", "gpu", "1", "GPU stages"],
                       env=env, check=True, capture_output=True, timeout=300)
    out = subprocess.run([sys.executable, "-c", DAG_TEST.format(dags=str(REPO / "dags")), dag_id, json.dumps(conf)],
                         env=env, capture_output=True, text=True, timeout=600, cwd=home)
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")]
    assert out.returncode == 0 and lines, f"dag.test({dag_id}) failed:\n{out.stdout[-3000:]}\n{out.stderr[-5000:]}"
    return json.loads(lines[-1][len("RESULT "):])


def test_dag_test_of_each_dag_against_the_real_services(local_stack, demo_release, tmp_path: Path) -> None:
    nightly = _dag_test(local_stack, tmp_path, "hopchain_nightly", {"input_prefix": "demo", "max_images": 4,
                                                                    "shard_size": 2, "profile": "demo"})
    assert nightly["state"] == "success", nightly
    assert nightly["tasks"]["announce"] == "success"
    assert sum(1 for t in nightly["tasks"] if t.startswith("shard.push[")) == 2

    # the labeling pass over the batches just pushed (what the scheduler runs every minute)
    labeling = _dag_test(local_stack, tmp_path, "hopchain_labeling", {})
    assert labeling == {"state": "success", "tasks": {"tend": "success"}}, labeling

    annotations = _dag_test(local_stack, tmp_path, "hopchain_annotations", {})
    assert annotations["state"] == "success", annotations
    assert annotations["tasks"]["decide"] == "success" and annotations["tasks"]["wait"] == "success"

    release = _dag_test(local_stack, tmp_path, "hopchain_release", {})
    assert release["state"] == "success", release
