"""The nightly's first task fails the run when a check fails, and no shard starts: ``dag.test()`` of
``hopchain_nightly`` (the real DAG file, Airflow's own task runner) with connections to dead loopback
ports. No other service is needed (a few minutes, mostly dag.test start-up on a 2-core machine)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration]
REPO = Path(__file__).resolve().parents[2]

DAG_TEST = """
import json, sys
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(dag_folder={dags!r})
assert not bag.import_errors, bag.import_errors
dag = bag.get_dag("hopchain_nightly")
run = dag.test(run_conf={{"profile": "demo", "input_prefix": "demo"}})
tis = run.get_task_instances()
print("RESULT " + json.dumps({{"state": str(run.state),
      "tasks": {{ti.task_id + ("[%d]" % ti.map_index if ti.map_index >= 0 else ""): str(ti.state) for ti in tis}},
      "preflight_s": next(((ti.end_date - ti.start_date).total_seconds() for ti in tis
                           if ti.task_id == "preflight" and ti.end_date and ti.start_date), None)}}))
"""


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _airflow(tmp_path: Path, **extra: str) -> tuple[Path, dict[str, str]]:
    """A fresh Airflow home (migrated, with the gpu pool) whose connections point at dead loopback ports."""
    home = tmp_path / "airflow"
    home.mkdir()
    env = dict(os.environ)
    env.update({
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
        "PYTHONPATH": f"{REPO / 'plugins'}{os.pathsep}{REPO}",
        # the run's last tasks (trigger rule all_done) fail against the dead store too: retry at once
        "HOPCHAIN_RETRY_DELAY_S": "1",
        "AIRFLOW_CONN_HOPCHAIN_S3": json.dumps({"conn_type": "hopchain_s3", "host": "127.0.0.1",
                                                "port": _closed_port(), "login": "k", "password": "s"}),
        "AIRFLOW_CONN_HOPCHAIN_LABEL_STUDIO": json.dumps({"conn_type": "label_studio", "host": "http://127.0.0.1",
                                                          "port": _closed_port(), "password": "t"}),
        **extra,
    })
    airflow = str(Path(sys.executable).parent / "airflow")
    subprocess.run([airflow, "db", "migrate"], env=env, check=True, capture_output=True, timeout=300)
    subprocess.run([airflow, "pools", "set", "gpu", "1", "GPU stages"], env=env, check=True, capture_output=True,
                   timeout=300)
    return home, env


def test_a_failed_preflight_fails_the_nightly_before_any_shard(tmp_path: Path) -> None:
    home, env = _airflow(tmp_path)
    t0 = time.monotonic()
    out = subprocess.run([sys.executable, "-c", DAG_TEST.format(dags=str(REPO / "dags"))], env=env,
                         capture_output=True, text=True, timeout=600, cwd=home)
    took = time.monotonic() - t0
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")]
    assert lines, f"dag.test failed:\n{out.stdout[-3000:]}\n{out.stderr[-5000:]}"
    result = json.loads(lines[-1][len("RESULT "):])
    print(f"\n{result} (dag.test took {took:.1f} s)")
    assert result["state"] == "failed", result
    assert result["tasks"]["preflight"] == "failed"
    assert result["tasks"]["ingest"] == "upstream_failed"
    started = [t for t, state in result["tasks"].items() if t.startswith("shard.") and state not in
               ("upstream_failed", "None", "skipped")]
    assert started == [], result
    assert result["preflight_s"] is not None and result["preflight_s"] < 30  # three checks of ≤ 10 s, side by side
    logs = out.stdout + out.stderr
    assert "FAILED  s3: no answer at http://127.0.0.1:" in logs
    assert "FAILED  label studio: no answer at http://127.0.0.1:" in logs


DAG_TEST_ANY = """
import json, sys
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(dag_folder={dags!r})
assert not bag.import_errors, bag.import_errors
run = bag.get_dag(sys.argv[1]).test(run_conf=json.loads(sys.argv[2]))
print("RESULT " + json.dumps({{"state": str(run.state), "tasks": {{ti.task_id: str(ti.state)
      for ti in run.get_task_instances()}}}}))
"""


def test_a_production_deployment_refuses_a_run_conf_that_turns_on_simulated_annotators(tmp_path: Path) -> None:
    """Issue 26: a production deployment (HOPCHAIN_SIMULATED_ANNOTATORS=forbid, its own profile) given
    ``{"profile": "demo"}``: the nightly fails at preflight and the annotation DAG at its first task, each
    with the one-line refusal and without retry; no shard starts, nothing is simulated or decided."""
    # what the production compose sets
    home, env = _airflow(tmp_path, HOPCHAIN_SIMULATED_ANNOTATORS="forbid", HOPCHAIN_PROFILE="base")
    results = {}
    for dag_id in ("hopchain_nightly", "hopchain_annotations"):
        out = subprocess.run([sys.executable, "-c", DAG_TEST_ANY.format(dags=str(REPO / "dags")), dag_id,
                              json.dumps({"profile": "demo", "input_prefix": "demo"})],
                             env=env, capture_output=True, text=True, timeout=600, cwd=home)
        lines = [ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")]
        assert lines, f"dag.test failed:\n{out.stdout[-3000:]}\n{out.stderr[-5000:]}"
        results[dag_id] = (json.loads(lines[-1][len("RESULT "):]), out.stdout + out.stderr)
    nightly, logs = results["hopchain_nightly"]
    assert nightly["state"] == "failed" and nightly["tasks"]["preflight"] == "failed", nightly
    assert nightly["tasks"]["ingest"] == "upstream_failed"
    assert "preflight: profile 'demo' from the run's conf turns on simulated annotators" in logs
    annotations, logs = results["hopchain_annotations"]
    assert annotations["state"] == "failed" and annotations["tasks"]["open_batches"] == "failed", annotations
    assert annotations["tasks"]["simulate"] == "upstream_failed" and annotations["tasks"]["decide"] == "upstream_failed"
    assert "refused: profile 'demo' from the run's conf turns on simulated annotators" in logs
    assert "a run may not swap people for simulations" in logs
