"""Smoke test of the Celery scale-out helpers: a task on queue ``gpu`` runs on the gpu worker only.

Real processes: Debian's redis-server (broker), Airflow 3 api-server + scheduler + dag-processor on
the CeleryExecutor (SQLite metadata DB, SQLite Celery result backend) and two Celery workers, one
per queue. Skipped with a reason when redis-server or the Celery provider is not installed.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from pipelines.stack.process import wait_until
from tests.support.celery_cluster import celery_cluster, dump, logs_tail, redis_available

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DAG = textwrap.dedent(
    '''
    """Two tasks: one on the gpu queue, one on the default queue."""
    import pendulum
    from airflow.sdk import dag, task


    @dag(dag_id="celery_smoke", schedule=None, start_date=pendulum.datetime(2026, 1, 1), catchup=False)
    def celery_smoke():
        @task(queue="gpu", pool="gpu")
        def on_gpu() -> str:
            import socket
            return socket.gethostname()

        @task
        def on_default(x: str) -> str:
            return x

        on_default(on_gpu())


    celery_smoke()
    '''
)


def _celery_provider_installed() -> bool:
    try:
        import airflow.providers.celery  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.mark.skipif(not redis_available(), reason="Debian package redis-server is not installed")
@pytest.mark.skipif(not _celery_provider_installed(),
                    reason="apache-airflow-providers-celery is not installed")
@pytest.mark.timeout(420)
def test_each_task_runs_on_the_worker_of_its_queue(tmp_path: Path) -> None:
    dags = tmp_path / "dags"
    dags.mkdir()
    (dags / "celery_smoke.py").write_text(DAG)
    dummy_s3 = {"endpoint": "http://127.0.0.1:9", "access_key": "unused", "secret_key": "unused"}
    dummy_ls = {"url": "http://127.0.0.1:9", "token": "unused"}
    with celery_cluster(tmp_path, dummy_s3, dummy_ls, dags_folder=dags) as cluster:
        run_id = cluster.trigger("celery_smoke", timeout_s=120)
        state = cluster.wait_for_run("celery_smoke", run_id, 240)
        tis = cluster.task_instances("celery_smoke", run_id)
        detail = dump(tis) + "\n" + logs_tail(cluster.home)
        assert state == "success", detail
        placed = {ti["task_id"]: (ti["queue"], ti["hostname"]) for ti in tis}
        assert placed == {"on_gpu": ("gpu", "worker-gpu"),
                          "on_default": ("default", "worker-default")}, detail
        assert cluster.hostnames_by_queue("celery_smoke", run_id) == {
            "gpu": {"worker-gpu"}, "default": {"worker-default"}}
        # Each worker's own log shows it received exactly its task.
        gpu_log = cluster.worker_log("gpu")
        assert "task_id='on_gpu'" in gpu_log and "task_id='on_default'" not in gpu_log
        assert "task_id='on_default'" in cluster.worker_log("default")
        # The Celery result backend (SQLite) records both tasks (a moment after the TI states).
        wait_until(lambda: [s for _, s in cluster.celery_results()].count("SUCCESS") == 2, 30, 0.5,
                   what="both Celery results to be SUCCESS")
    # Everything was stopped by pid: no process of the cluster is left.
    assert not cluster.running()
