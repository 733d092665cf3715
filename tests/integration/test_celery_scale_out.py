"""Issue 31, item 2: two GPU workers share one nightly as production scales out (docker/compose.yaml:
``airflow-worker-default`` on ``default``, identical ``airflow-worker-gpu``/``-gpu-2`` on ``gpu``, each
``--concurrency 1``), and a GPU worker killed in the middle of a shard loses nothing.

Real processes on this machine: Debian's redis-server (broker), Airflow 3.3 api-server + scheduler +
dag-processor on the CeleryExecutor, three ``airflow celery worker`` processes, the session's SeaweedFS
and Label Studio. One cluster, two nightlies over the same 8 images in 4 shards:

1. **single GPU worker** (``worker-gpu-2`` not started yet): the reference outputs;
2. **two GPU workers**; once each has finished a shard task, the worker running the next GPU shard task
   (its stage's stats marker not yet written) is SIGKILLed with its whole process tree, like a lost machine.

What recovers the shard in Airflow 3.3: the dead task's supervisor stops heartbeating, the scheduler fails
the running task instance whose heartbeat is older than ``[scheduler] task_instance_heartbeat_timeout``
(here 30 s instead of 300 s, checked every 2 s), and the task's retries (``dag_defaults``: 2, delay lowered
to 2 s here by ``HOPCHAIN_RETRY_DELAY_S``) queue try 2 on ``gpu``, where only the surviving worker listens.
Celery's own redelivery is not what recovers it: the broker's visibility timeout stays at compose's 24 h.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import psutil
import pytest

from tests.support.celery_cluster import celery_cluster, dump, gpu_scale_out, logs_tail, redis_available
from tests.support.celery_scale_out import (
    DAG_ID,
    GPU_SHARD_TASKS,
    MARKED_STAGES,
    output_digests,
    parse_time,
    run_keys,
    run_nightly,
    seed_batch,
    shards_per_worker,
)

# xdist: own scope (about 9 minutes: beside the Label Studio group, with a Label Studio of its own)
pytestmark = [pytest.mark.integration, pytest.mark.slow]

IMAGES, SHARD_SIZE = 8, 2
SHARDS = set(range(IMAGES // SHARD_SIZE))
GPU_WORKERS = ("worker-gpu-1", "worker-gpu-2")
HEARTBEAT_TIMEOUT_S = 30


def _tries_expected(tis: list[dict]) -> Counter:
    """One execution per (task, map index, try) of every try Airflow recorded (a task skipped without
    running has try 0)."""
    return Counter((ti["task_id"], int(ti["map_index"]), k) for ti in tis
                   for k in range(1, int(ti["try_number"]) + 1))


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@pytest.mark.skipif(not redis_available(), reason="Debian package redis-server is not installed")
@pytest.mark.timeout(1500)
def test_two_gpu_workers_share_a_nightly_and_a_killed_worker_loses_no_shard(
        tmp_path: Path, s3_server, label_studio, object_store) -> None:
    seed_batch(object_store, "scale-out", IMAGES)
    conf = {"input_prefix": "scale-out", "shard_size": SHARD_SIZE, "max_images": IMAGES, "profile": "demo"}
    with celery_cluster(tmp_path, s3_server.credentials(), label_studio.credentials(), workers=gpu_scale_out(2),
                        start_workers=("worker-default", "worker-gpu-1"), heartbeat_timeout_s=HEARTBEAT_TIMEOUT_S,
                        retry_delay_s=2) as cluster:
        single = run_nightly(cluster, object_store, conf)
        assert single.state == "success", dump(single.task_instances) + logs_tail(cluster.home)
        assert set(shards_per_worker(single)) == {"worker-default", "worker-gpu-1"}

        cluster.start_worker("worker-gpu-2")
        cluster.wait_workers()
        shared = run_nightly(cluster, object_store, conf, kill_among=GPU_WORKERS)
        kill = shared.kill
        assert kill is not None
        detail = f"killed: {kill}\n{dump(shared.task_instances)}\n{logs_tail(cluster.home)}"
        assert shared.state == "success", detail
        survivor = next(w for w in GPU_WORKERS if w != kill.worker)
        tis = shared.task_instances
        keys = run_keys(cluster, shared.run_id)

        # (a) every shard ran exactly once: one try per task instance except the killed one (two), and each
        # worker's log shows each try started once, on exactly one worker
        assert {ti["state"] for ti in tis} <= {"success", "skipped"}, detail
        tries = {(ti["task_id"], int(ti["map_index"])): int(ti["try_number"]) for ti in tis}
        victim = (kill.task_id, kill.map_index)
        assert tries[victim] == 2, detail
        assert all(n == 1 for key, n in tries.items() if key != victim), detail
        started = Counter(e for ex in shared.executions.values() for e in ex)
        assert started == _tries_expected(tis), dump(shared.executions)
        assert (*victim, 1) in shared.executions[kill.worker]
        assert (*victim, 2) in shared.executions[survivor]
        assert {int(ti["map_index"]) for ti in tis if ti["task_id"] == "shard.detect"} == SHARDS
        for stage in MARKED_STAGES:  # the runner's done-marker of every shard, and no other
            assert set(object_store.list(keys.stats_prefix() + stage + "/")) == \
                {keys.stats(stage, s) for s in SHARDS}, stage
        # both GPU workers ran shard tasks, and GPU tasks ran nowhere else
        per_worker = shards_per_worker(shared)
        assert per_worker.get("worker-gpu-1") and per_worker.get("worker-gpu-2"), dump(shared.executions)
        assert all(kill.done_before[w] >= 1 for w in GPU_WORKERS)
        gpu_hosts = {ti["hostname"] for ti in tis if ti["task_id"] in GPU_SHARD_TASKS}
        assert gpu_hosts <= set(GPU_WORKERS), gpu_hosts

        # (b) the killed worker's shard was completed by the other worker, through the heartbeat timeout
        assert not cluster.workers[kill.worker].running()
        assert not [p for p in kill.pids if _alive(p)], kill.pids
        history = cluster.ti_tries(DAG_ID, shared.run_id, *victim)
        assert [t["hostname"] for t in history] == [kill.worker, survivor], dump(history)
        assert history[0]["state"] in ("failed", "up_for_retry") and history[1]["state"] == "success", dump(history)
        assert object_store.exists(kill.marker_key)  # absent when the worker died, written by try 2
        scheduler_log = (cluster.home / "logs" / "airflow-scheduler.log").read_text(errors="replace")
        assert "Detected a task instance without a heartbeat" in scheduler_log
        recovered_s = (parse_time(history[1]["end_date"]) - kill.at).total_seconds()  # type: ignore[operator]

        # (c) outputs byte-identical to the single-worker run
        reference = output_digests(object_store, run_keys(cluster, single.run_id))
        got = output_digests(object_store, keys)
        assert any(k.startswith("questions/") for k in reference) and len(reference) >= 4 * len(SHARDS)
        assert got == reference
    assert not cluster.running()
    print(f"\nnightly wall: single GPU worker {single.wall_s:.1f} s, two GPU workers with one killed "
          f"{shared.wall_s:.1f} s; killed {kill.worker} during {kill.task_id}[{kill.map_index}], completed on "
          f"{survivor} {recovered_s:.1f} s later; shards per worker {dump(per_worker)}")
