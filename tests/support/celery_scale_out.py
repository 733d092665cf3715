"""One nightly shared by several Celery workers: seed a batch, run the nightly, kill a worker in the middle
of a shard, and read back where each shard ran and what it wrote.

Used by ``tests/integration/test_celery_scale_out.py`` (the assertions) and ``bench/celery_workers.py``
(the wall times). Evidence comes from three independent places, so one cannot hide another's mistake:

* Airflow's task instances and their tries (REST API): state, ``try_number`` and the ``hostname`` of the
  worker that ran each try (:class:`~tests.support.celery_cluster.CeleryAirflow` makes it the worker name);
* each worker's own log: one ``Executing workload in Celery`` line per message it started
  (:meth:`~tests.support.celery_cluster.CeleryAirflow.executions`);
* the store: the runner's per-shard stats marker (written last, so it means "this shard of this stage is
  done") and the bytes of every output object.

A worker is killed like a crashed machine: SIGKILL to its recorded process group and every descendant
(:func:`tests.support.faults.kill_group`), never by name.
"""

from __future__ import annotations

import hashlib
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pipelines.store import ObjectStore
from pipelines.store.layout import BucketLayout, RunKeys
from tests.support.celery_cluster import CeleryAirflow
from tests.support.faults import kill_group

DAG_ID = "hopchain_nightly"
#: The nightly's per-shard tasks and the runner stage each runs (its stats key marks the shard done).
SHARD_STAGES = {"shard.detect": "detect", "shard.segment": "segment", "shard.questions": "questions",
                "shard.validate": "validate"}
#: Stages whose runner writes a per-shard stats marker (validate's record is its validation result).
MARKED_STAGES = ("ingest", "detect", "segment", "questions")
#: Per-shard tasks on the ``gpu`` queue (``dags/hopchain_nightly.py``).
GPU_SHARD_TASKS = ("shard.detect", "shard.segment")


def seed_batch(store: ObjectStore, input_name: str, images: int) -> None:
    """``images`` demo sample images and their COCO instances under ``inputs/<input_name>/``."""
    from hopchain_demo.samples import write_samples

    layout = BucketLayout()
    with tempfile.TemporaryDirectory() as tmp:
        coco = write_samples(tmp, images)
        for f in [coco, *sorted((Path(tmp) / "images").iterdir())]:
            store.put_bytes(layout.input_key(input_name, str(f.relative_to(tmp))), f.read_bytes())


def run_keys(cluster: CeleryAirflow, run_id: str) -> RunKeys:
    return BucketLayout(cluster.params.store).run(run_id)


@dataclass
class Kill:
    """A worker killed while one of its shard tasks was running."""

    worker: str
    pids: list[int]
    task_id: str
    map_index: int
    marker_key: str  # the stage's stats key of that shard: absent when the worker was killed
    done_before: dict[str, int]  # shard task instances each worker had finished by then
    at: datetime = field(default_factory=lambda: datetime.now(UTC))


def parse_time(ts: str | None) -> datetime | None:
    """An Airflow REST timestamp (ISO 8601, ``Z`` or offset) as an aware datetime."""
    return datetime.fromisoformat(ts.replace("Z", "+00:00")) if ts else None


def kill_worker_mid_shard(cluster: CeleryAirflow, store: ObjectStore, run_id: str, workers: tuple[str, ...],
                          *, timeout_s: float = 300.0, interval_s: float = 0.25) -> Kill:
    """Wait until every worker in ``workers`` has finished at least one shard task of ``run_id``, then SIGKILL
    the worker running the next GPU shard task whose stage has not written its stats marker yet (the
    worker process, its Celery pool child, the task supervisor and the task process: the whole tree).

    Returns what was killed; raises AssertionError if no such moment came (the run ended or timed out)."""
    keys = run_keys(cluster, run_id)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        tis = cluster.task_instances(DAG_ID, run_id)
        done: dict[str, int] = {w: 0 for w in workers}
        for ti in tis:
            if ti["task_id"] in SHARD_STAGES and ti["state"] == "success" and ti.get("hostname") in done:
                done[ti["hostname"]] += 1
        if all(done.values()):
            for ti in tis:
                if ti["task_id"] not in GPU_SHARD_TASKS or ti["state"] != "running":
                    continue
                worker, shard = ti.get("hostname"), int(ti["map_index"])
                marker = keys.stats(SHARD_STAGES[ti["task_id"]], shard)
                if worker in workers and not store.exists(marker):
                    proc = cluster.workers[worker]
                    root = proc.process()
                    assert root is not None, f"{worker} is not running"
                    pids = [root.pid, *(c.pid for c in root.children(recursive=True))]
                    kill_group(proc)
                    return Kill(worker, pids, ti["task_id"], shard, marker, done)
        if any(ti["state"] in ("failed", "upstream_failed") for ti in tis):
            break
        time.sleep(interval_s)
    raise AssertionError(f"no GPU shard task of {run_id} ran on each of {workers} in time to kill one mid-shard")


@dataclass
class NightlyRun:
    run_id: str
    state: str
    wall_s: float  # the DAG run's start -> end, as Airflow recorded it
    task_instances: list[dict[str, Any]]
    executions: dict[str, list[tuple[str, int, int]]]  # worker -> (task_id, map_index, try) it started
    kill: Kill | None = None


def run_nightly(cluster: CeleryAirflow, store: ObjectStore, conf: dict[str, Any], *, timeout_s: float = 900.0,
                kill_among: tuple[str, ...] = ()) -> NightlyRun:
    """Trigger the nightly with ``conf`` and wait for its end; with ``kill_among``, kill one of those workers
    mid-shard (:func:`kill_worker_mid_shard`, watching ``store`` for the stage's marker) while it runs."""
    run_id = cluster.trigger(DAG_ID, conf=conf, timeout_s=180)
    kill = kill_worker_mid_shard(cluster, store, run_id, kill_among) if kill_among else None
    state = cluster.wait_for_run(DAG_ID, run_id, timeout_s)
    dr = cluster.dag_run(DAG_ID, run_id)
    start, end = parse_time(dr.get("start_date")), parse_time(dr.get("end_date"))
    wall = (end - start).total_seconds() if start and end else float("nan")
    return NightlyRun(run_id, state, wall, cluster.task_instances(DAG_ID, run_id), cluster.executions(run_id), kill)


def shards_per_worker(run: NightlyRun) -> dict[str, set[int]]:
    """``{worker: {shard, ...}}``: the shards of which a worker started at least one per-shard task."""
    return {w: {m for t, m, _ in ex if t.startswith("shard.")} for w, ex in run.executions.items()
            if any(t.startswith("shard.") for t, _, _ in ex)}


def output_digests(store: ObjectStore, keys: RunKeys) -> dict[str, str]:
    """sha256 of every stage output, reject table and stats object of a run, keyed relative to the run:
    what a deterministic pipeline must reproduce byte for byte (Data Docs, validation results and the
    summary carry times and run ids, so they are left out)."""
    out: dict[str, str] = {}
    for key in store.list(keys.prefix):
        rel = key[len(keys.prefix):]
        if rel.endswith(".parquet") or rel.startswith("stats/"):
            out[rel] = hashlib.sha256(store.get_bytes(key)).hexdigest()
    return out
