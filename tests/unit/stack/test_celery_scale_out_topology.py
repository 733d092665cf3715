"""The Celery scale-out test runs the topology production runs (docker/compose.yaml), and reads each worker's
log the way the provider writes it."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.support.celery_cluster import CeleryAirflow, gpu_scale_out

pytestmark = pytest.mark.unit

COMPOSE = Path(__file__).resolve().parents[3] / "docker" / "compose.yaml"
# One line of an ``airflow celery worker`` log (provider 3.26.0, Airflow 3.3.2), ids shortened.
WORKLOAD_LINE = (
    "2026-12-04T09:11:15.349072Z [info     ] [0120] Executing workload in Celery: dag_rel_path=PurePosixPath("
    "'hopchain_nightly.py') log_path='dag_id=hopchain_nightly/run_id=manual__1/task_id=shard.detect/attempt=2.log' "
    "ti=TaskInstanceDTO(id=UUID('01a2'), task_id='shard.detect', dag_id='hopchain_nightly', run_id='manual__1', "
    "try_number=2, dag_version_id=UUID('01a3'), map_index=3, hostname='', queue='gpu', pool_slots=1) "
    "type='ExecuteTask' [airflow.providers.celery.executors.celery_executor_utils] loc=celery_executor_utils.py:254"
)


def _option(command: list[str], flag: str) -> str:
    return command[command.index(flag) + 1]


def test_scale_out_workers_are_the_compose_workers() -> None:
    """Every compose GPU worker consumes only ``gpu`` at concurrency 1; so does each test GPU worker, and the test
    keeps the ``default`` worker apart as compose does."""
    raw = yaml.safe_load(COMPOSE.read_text())
    gpu_command = raw["x-gpu-worker"]["command"]
    compose_gpu = {name for name, svc in raw["services"].items()
                   if svc.get("command", gpu_command) == gpu_command and name.startswith("airflow-worker-gpu")}
    assert compose_gpu >= {"airflow-worker-gpu", "airflow-worker-gpu-2"}
    assert (_option(gpu_command, "--queues"), _option(gpu_command, "--concurrency")) == ("gpu", "1")

    workers = gpu_scale_out(2)
    assert [(w.name, w.queues, w.concurrency) for w in workers] == [
        ("worker-default", ("default",), 1), ("worker-gpu-1", ("gpu",), 1), ("worker-gpu-2", ("gpu",), 1)]


def test_the_gpu_pool_has_one_slot_per_gpu_worker(tmp_path: Path) -> None:
    cluster = CeleryAirflow.for_test(tmp_path, "redis://127.0.0.1:9/0", workers=gpu_scale_out(3))
    assert cluster.params.stack.gpu_slots == 3
    assert cluster.queues == ("default", "gpu")
    assert CeleryAirflow.for_test(tmp_path, "redis://127.0.0.1:9/0").params.stack.gpu_slots == 1


def test_recovery_settings_reach_every_component(tmp_path: Path) -> None:
    cluster = CeleryAirflow.for_test(tmp_path, "redis://127.0.0.1:9/0", workers=gpu_scale_out(2),
                                     heartbeat_timeout_s=30, retry_delay_s=2)
    env = cluster.worker_env("worker-gpu-2")
    assert env["AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT"] == "30"
    assert env["HOPCHAIN_RETRY_DELAY_S"] == "2"
    assert env["HOPCHAIN_CELERY_WORKER_NAME"] == "worker-gpu-2"
    assert env["AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__VISIBILITY_TIMEOUT"] == "86400"
    plain = CeleryAirflow.for_test(tmp_path, "redis://127.0.0.1:9/0").env()
    assert "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT" not in plain  # Airflow's default (300 s)


def test_executions_are_read_from_each_workers_log(tmp_path: Path) -> None:
    cluster = CeleryAirflow.for_test(tmp_path, "redis://127.0.0.1:9/0", workers=gpu_scale_out(2))
    log = cluster.workers["worker-gpu-2"].log_file
    log.parent.mkdir(parents=True)
    log.write_text(f"{WORKLOAD_LINE}\nsome other line\n{WORKLOAD_LINE.replace('manual__1', 'manual__2')}\n")
    assert cluster.executions("manual__1") == {"worker-default": [], "worker-gpu-1": [],
                                               "worker-gpu-2": [("shard.detect", 3, 2)]}
