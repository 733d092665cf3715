"""An Airflow task process is SIGKILLed in the middle of a shard, under the real scheduler: the task
fails, Airflow retries it, and the run's outputs are byte-identical to a run that never saw the fault.

The killed process is found among the descendants of the scheduler's recorded pid: LocalExecutor's
task runner titles itself ``airflow worker -- <task instance id>``, and the id comes from the REST
API. The clean reference is the demo's nightly run over the same input (``demo_release``).
``hopchain_annotations``/``hopchain_release`` are paused meanwhile (a paused asset-scheduled DAG is
not queued) and this run's batch records are removed afterwards, so the shared stack is unchanged.
"""

from __future__ import annotations

import time

import psutil
import pytest

from pipelines.store import safe_key
from pipelines.store.ledger import batch_id_for
from tests.support.faults import (
    airflow_api,
    dags_paused,
    kill_pid,
    parquet_rows,
    read_objects,
    stack_store,
    task_instance,
    wait_for,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DAG = "hopchain_nightly"
VICTIM = ("shard.questions", 1)


def _task_runner(scheduler_pid: int, ti_id: str) -> psutil.Process | None:
    """The process running task instance ``ti_id``: a descendant of the scheduler."""
    try:
        children = psutil.Process(scheduler_pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return None
    for p in children:
        try:
            if " ".join(p.cmdline()).strip() == f"airflow worker -- {ti_id}":
                return p
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return None


def test_task_killed_mid_shard_is_retried_and_its_outputs_are_byte_identical(local_stack, demo_release):
    api = airflow_api(local_stack)
    store = stack_store(local_stack)
    scheduler_pid = local_stack.airflow.process("scheduler").pid
    assert scheduler_pid
    run_id = None
    try:
        with dags_paused(api, ["hopchain_annotations", "hopchain_release"]):
            run_id = api.trigger(DAG, conf={"input_prefix": "demo", "profile": "demo"})["dag_run_id"]
            victim = wait_for(lambda: task_instance(api, DAG, run_id, *VICTIM), 120,
                              f"{VICTIM} to be created", 1)
            ti_id = victim["id"]

            deadline = time.monotonic() + 180
            runner = None
            while runner is None:  # catch the runner process while it exists (a few seconds)
                runner = _task_runner(scheduler_pid, ti_id)
                if runner is None:
                    assert time.monotonic() < deadline, "the task runner process never appeared"
                    time.sleep(0.05)
            assert runner.is_running()
            kill_pid(runner.pid)

            result = api.wait_for_run(DAG, run_id, 300, interval_s=3)
            tis = api.task_instances(DAG, run_id)
            states = {(t["task_id"], t["map_index"]): (t["state"], t["try_number"]) for t in tis}
            assert result["state"] == "success", states
            assert states[VICTIM] == ("success", 2), states  # failed once (killed), retried once
            assert {s for s, _ in states.values()} <= {"success", "skipped"}
    finally:
        if run_id:  # this run's batches must not reach Label Studio's annotation runs or releases
            for key in store.list("batches/"):
                if key.startswith(f"batches/{batch_id_for(run_id, 0).rsplit('.shard-', 1)[0]}.shard-"):
                    store.client.remove_object(store.bucket, key)

    reference = read_objects(store, safe_key("runs", demo_release["nightly_run_id"]) + "/")
    got = read_objects(store, safe_key("runs", run_id) + "/")
    outputs = sorted(k for k in reference if k.endswith(".parquet"))
    assert any(k.startswith("questions/") for k in outputs) and len(outputs) >= 15
    assert sorted(k for k in got if k.endswith(".parquet")) == outputs
    for key in outputs:
        assert parquet_rows(got[key]) == parquet_rows(reference[key]), key
        assert got[key] == reference[key], f"{key}: not byte-identical to the clean run"
    for key in (k for k in reference if k.startswith("stats/")):
        assert got[key] == reference[key], key
