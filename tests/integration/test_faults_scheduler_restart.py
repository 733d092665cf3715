"""Issue 9 acceptance 5 / issue 11: the scheduler and the triggerer crash (SIGKILL) while
``hopchain_annotations`` waits deferred for Label Studio; started again, the run resumes and completes.

The batch is pushed into a Label Studio project of its own, and the run is triggered with the base
profile (simulated annotators off), so nothing answers until the test's annotators do — after the
restart, through the real Label Studio API. ``hopchain_release`` is paused meanwhile and the test's
ledger records are removed afterwards, so the shared stack's releases are not touched.

``hopchain_labeling`` (the every-minute pass that opens a task to its next annotator) is paused too, and
the kill waits until no pass is in flight: a pass killed with the scheduler's LocalExecutor stays
"running" until Airflow's task heartbeat timeout (5 minutes), and its DAG runs one at a time, so every
later pass waits behind it — longer than the annotators wait for a task (the likely cause of CI's
failure on 2026-12-05, 6 of 20 answers; not reproduced here). The test runs the same pass itself (:func:`pipelines.annotation.tasks.tend`) between answers,
as the demo's simulation does; what it checks is the deferred wait surviving the crash.
"""

from __future__ import annotations

import uuid

import pytest

from pipelines.annotation import tasks as annotation_tasks
from pipelines.annotation.simulated import run_simulation, simulated_annotators
from pipelines.config import load_params
from pipelines.runner import RunEnv
from pipelines.store.ledger import BatchRecord
from tests.support import nightly
from tests.support.faults import (
    airflow_api,
    dags_paused,
    kill_group,
    ls_client,
    stack_store,
    task_instance,
    wait_for,
)
from tests.support.image_reader import stack_image_reader

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DAG = "hopchain_annotations"


def _push_own_batch(stack, run_id: str, title: str) -> tuple[RunEnv, BatchRecord, dict[str, str]]:
    """ingest → detect → segment → questions → push of 4 demo images into project ``title``."""
    params = load_params(None, "demo")
    annotation = params.annotation.model_copy(update={"project_title": title})
    params = params.model_copy(update={"annotation": annotation})
    env = RunEnv(params, stack_store(stack), run_id, label_studio=lambda: ls_client(stack.labelstudio),
                 image_reader=stack_image_reader(stack))
    shards = nightly.ingest(env, "demo", max_images=4)
    assert shards == [0]
    nightly.run(env, "detect", 0)
    nightly.run(env, "segment", 0)
    nightly.run(env, "questions", 0)
    batch = annotation_tasks.push(env, 0)
    assert batch.questions > 0 and batch.created_tasks == batch.questions, batch
    truths = {q["question_id"]: q["answer"] for q in env.read_table("questions", 0).to_pylist()}
    return env, batch, truths


def test_scheduler_and_triggerer_crash_during_the_deferred_wait_and_the_run_resumes(
        local_stack, demo_release) -> None:
    api = airflow_api(local_stack)
    store = stack_store(local_stack)
    tag = uuid.uuid4().hex[:8]
    env, batch, truths = _push_own_batch(local_stack, f"faults_restart_{tag}", f"HopChain fault test {tag}")
    project_id = int(batch.project_id)
    airflow = local_stack.airflow
    try:
        with dags_paused(api, ["hopchain_release", "hopchain_labeling"]):
            wait_for(lambda: not api.request("GET", "/dags/hopchain_labeling/dagRuns",
                                             params={"state": ["queued", "running"]})["total_entries"],
                     420, "the labeling pass in flight to end")
            run_id = api.trigger(DAG, conf={"profile": "base"})["dag_run_id"]

            def deferred() -> dict | None:
                ti = task_instance(api, DAG, run_id, "wait")
                return ti if ti and ti["state"] == "deferred" else None

            ti = wait_for(deferred, 180, "the wait task to defer")
            old_triggerer_job = (ti.get("triggerer_job") or {}).get("id")
            # simulate runs beside wait: once it has finished it must have skipped (nobody answers but the test)
            sim = wait_for(lambda: (lambda t: t if t and t["state"] not in (None, "scheduled", "queued", "running")
                                    else None)(task_instance(api, DAG, run_id, "simulate")), 120,
                           "the simulate task to finish")
            assert sim["state"] == "skipped", sim

            killed = {c: kill_group(airflow.process(c)) for c in ("scheduler", "triggerer")}
            assert api.dag_run(DAG, run_id)["state"] == "running"
            assert task_instance(api, DAG, run_id, "wait")["state"] == "deferred"

            airflow.restart(["scheduler", "triggerer"])  # starts the dead ones, waits until healthy
            assert {c: airflow.process(c).pid for c in killed}.items().isdisjoint(killed.items())

            def picked_up_by_new_triggerer() -> bool:
                t = task_instance(api, DAG, run_id, "wait")
                job = (t or {}).get("triggerer_job") or {}
                return t["state"] == "deferred" and job.get("id") not in (None, old_triggerer_job)

            # a crashed triggerer's triggers move on once its heartbeat is stale (~30 s)
            wait_for(picked_up_by_new_triggerer, 120, "the restarted triggerer to take over the trigger", 2)

            with ls_client(local_stack.labelstudio) as admin:
                annotators = simulated_annotators(admin, admin.token, 4)

                def all_answered() -> bool:  # the labeling pass hands each task on (serial handout)
                    report = annotation_tasks.tend(env, annotation_tasks.OpenBatches(
                        batches=[batch], poll_interval_s=2.0, annotators_required=4))
                    return report.complete == report.tasks and not report.held

                try:
                    done = run_simulation(annotators, project_id, truths, error_rate=0.0, seed=11,
                                          handout=all_answered, handout_poll_s=2.0)
                finally:
                    for a in annotators:
                        a.client.close()
            assert all(n == len(truths) for n in done.values()), done

            result = api.wait_for_run(DAG, run_id, 240, interval_s=3)
            states = {t["task_id"]: t["state"] for t in api.task_instances(DAG, run_id)}
            assert result["state"] == "success", states
            wait_ti = task_instance(api, DAG, run_id, "wait")
            assert wait_ti["try_number"] == 1  # resumed from the deferral, not failed and retried
            assert states["decide"] == "success"

        decided = env.ledger.decision(batch.batch_id)
        assert decided and decided.accepted == len(truths) and decided.pending == 0, decided
        closed = env.ledger.batch(batch.batch_id)
        assert closed and closed.status == "closed"
    finally:
        # keep the shared stack as it was: this batch must not enter later releases
        store.delete_prefix(env.ledger.consensus_prefix(batch.batch_id))
        for key in (env.ledger.consensus_key(batch.batch_id), env.ledger.batch_key(batch.batch_id)):
            store.client.remove_object(store.bucket, key)
        with ls_client(local_stack.labelstudio) as admin:
            admin.delete_project(int(project_id))
        for comp in ("scheduler", "triggerer"):
            if not airflow.process(comp).running():
                airflow.start([comp])
        airflow.wait_healthy(120)
