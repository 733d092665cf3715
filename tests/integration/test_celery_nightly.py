"""Issue 10 acceptance 2: on the CeleryExecutor with two workers (`default`, `gpu`), a nightly run places
every GPU task on the gpu worker and nothing else there."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from tests.support.celery_cluster import celery_cluster, dump, logs_tail, redis_available

pytestmark = [pytest.mark.integration, pytest.mark.slow]
GPU_TASKS = {"shard.detect", "shard.segment"}
# the preflight checks models and GPUs where they are used: on the gpu queue, without a gpu pool slot
GPU_WORKER_TASKS = GPU_TASKS | {"preflight"}


def _seed(object_store, count: int = 4) -> None:
    from hopchain_demo.samples import write_samples
    from pipelines.store import safe_key

    with tempfile.TemporaryDirectory() as tmp:
        coco = write_samples(tmp, count)
        for f in [coco, *sorted((Path(tmp) / "images").iterdir())]:
            object_store.put_bytes(safe_key("inputs", "celery-demo", str(f.relative_to(tmp))), f.read_bytes())


@pytest.mark.skipif(not redis_available(), reason="Debian package redis-server is not installed")
@pytest.mark.timeout(900)
def test_nightly_gpu_tasks_run_only_on_the_gpu_worker(tmp_path: Path, s3_server, label_studio, object_store) -> None:
    _seed(object_store)
    with celery_cluster(tmp_path, s3_server.credentials(), label_studio.credentials(), triggerer=True) as cluster:
        run_id = cluster.trigger("hopchain_nightly", conf={"input_prefix": "celery-demo", "shard_size": 2,
                                                           "max_images": 4, "profile": "demo"}, timeout_s=180)
        state = cluster.wait_for_run("hopchain_nightly", run_id, 600)
        tis = cluster.task_instances("hopchain_nightly", run_id)
        detail = dump(tis) + "\n" + logs_tail(cluster.home)
        assert state == "success", detail
        ran = [ti for ti in tis if ti["state"] == "success"]
        on_gpu = {ti["task_id"] for ti in ran if ti["hostname"] == "worker-gpu"}
        assert on_gpu == GPU_WORKER_TASKS, detail
        for ti in ran:
            expected = "worker-gpu" if ti["task_id"] in GPU_WORKER_TASKS else "worker-default"
            assert ti["hostname"] == expected, (ti["task_id"], ti["hostname"])
            assert ti["queue"] == ("gpu" if ti["task_id"] in GPU_WORKER_TASKS else "default")
            if ti["task_id"] in GPU_TASKS:
                assert ti["pool"] == "gpu"
        assert sum(1 for ti in ran if ti["task_id"] == "shard.detect") == 2  # two shards mapped
