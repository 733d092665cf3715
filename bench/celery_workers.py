"""Two Celery GPU workers sharing one nightly (issue 31): wall time with one vs two GPU workers, shards
per worker, and how long a shard whose worker was killed takes to finish on the other one.

    OMP_NUM_THREADS=1 .venv/bin/python bench/celery_workers.py [--images 8] [--shard-size 2] [--heartbeat-timeout 30]

Private services on free 127.0.0.1 ports: SeaweedFS, Label Studio (``bench_label_studio``; first start
runs migrations, ~1 min), Debian's redis-server, and Airflow 3.3 on the CeleryExecutor with production's
scale-out topology (``tests.support.celery_cluster.gpu_scale_out``: ``worker-default`` on ``default``,
``worker-gpu-1``/``worker-gpu-2`` on ``gpu``, concurrency 1 each; the ``gpu`` pool has 2 slots). The
demo profile (annotations backend: no model runs, so a GPU task costs what the CPU stages cost). Three
nightlies over the same images on one cluster:

1. one GPU worker (``worker-gpu-2`` not started yet);
2. two GPU workers;
3. two GPU workers, one killed (SIGKILL, whole process tree) in the middle of a GPU shard task once each
   had finished one; the scheduler's heartbeat timeout (``--heartbeat-timeout``) fails that try and its
   retry runs on the other worker.

Printed per run: the DAG run's wall time, per worker the shards it touched and the task instances it
started, and for run 3 the seconds from the kill to the end of the retried try; the outputs of runs 2
and 3 are compared byte for byte with run 1.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(1, str(REPO / "plugins"))

from _machine import cpu_model  # noqa: E402

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["HOPCHAIN_SIMULATED_ANNOTATORS"] = "allow"
for _var in ("HOPCHAIN_PROFILE", "HOPCHAIN_PARAMS", "HOPCHAIN_HOME"):
    os.environ.pop(_var, None)

from pipelines.store import ObjectStore, S3Credentials  # noqa: E402
from tests.support.celery_cluster import celery_cluster, gpu_scale_out  # noqa: E402
from tests.support.celery_scale_out import (  # noqa: E402
    DAG_ID,
    GPU_SHARD_TASKS,
    NightlyRun,
    output_digests,
    parse_time,
    run_keys,
    run_nightly,
    seed_batch,
    shards_per_worker,
)
from tests.support.stack import bench_label_studio, running_s3_server  # noqa: E402

GPU_WORKERS = ("worker-gpu-1", "worker-gpu-2")


def row(label: str, run: NightlyRun, same: str, recovered: str) -> str:
    shards = shards_per_worker(run)
    per_worker = ", ".join(f"{w}: {len(shards.get(w, ()))} shards / {len(ex)} tasks"
                           for w, ex in sorted(run.executions.items()) if ex)
    gpu = {w: sum(1 for t, _, _ in ex if t in GPU_SHARD_TASKS) for w, ex in sorted(run.executions.items())}
    gpu_text = " + ".join(f"{n}" for w, n in gpu.items() if w in GPU_WORKERS)
    return f"| {label} | {run.state} | {run.wall_s:.1f} | {gpu_text} | {per_worker} | {same} | {recovered} |"


def bench(args: argparse.Namespace, conf: dict, tmp: Path) -> None:
    """The three nightlies on one cluster in ``tmp``; prints the table."""
    with running_s3_server(tmp / "s3") as s3, bench_label_studio() as (ls_url, ls_token):
        c = s3.credentials()
        store = ObjectStore(S3Credentials(c["endpoint"], c["access_key"], c["secret_key"]), "hopchain")
        seed_batch(store, "bench-workers", args.images)
        with celery_cluster(tmp, c, {"url": ls_url, "token": ls_token}, workers=gpu_scale_out(2),
                            start_workers=("worker-default", "worker-gpu-1"),
                            heartbeat_timeout_s=args.heartbeat_timeout, retry_delay_s=2) as cluster:
            one = run_nightly(cluster, store, conf)
            cluster.start_worker("worker-gpu-2")
            cluster.wait_workers()
            two = run_nightly(cluster, store, conf)
            killed = None if args.skip_kill else run_nightly(cluster, store, conf, kill_among=GPU_WORKERS)
            reference = output_digests(store, run_keys(cluster, one.run_id))
            kill = killed.kill if killed else None
            history = cluster.ti_tries(DAG_ID, killed.run_id, kill.task_id, kill.map_index) if killed and kill else []
            end = parse_time(history[-1].get("end_date")) if history else None
            recovered = f"{(end - kill.at).total_seconds():.1f}" if end and kill else "-"
            print()
            print("| run | state | wall s | GPU shard tasks (gpu-1 + gpu-2) | per worker: shards touched / task instances started | outputs = run 1 | kill -> retry done, s |")
            print("|---|---|---|---|---|---|---|")
            print(row("1. one GPU worker", one, "reference", "-"))
            runs = [("2. two GPU workers", two)] + ([("3. two GPU workers, one killed mid-shard", killed)] if killed else [])
            notes = []
            for label, run in runs:
                got = output_digests(store, run_keys(cluster, run.run_id))
                same = "yes" if got == reference else "NO"
                print(row(label, run, same, recovered if run is killed else "-"))
                if got != reference:
                    notes.append(f"{label}: differs from run 1 in {sorted(k for k in set(got) | set(reference) if got.get(k) != reference.get(k))}")
            for label, run in [("1. one GPU worker", one), *runs]:
                retried = [(t["task_id"], t["map_index"], t["try_number"]) for t in run.task_instances
                           if int(t["try_number"]) > 1]
                if retried:
                    notes.append(f"{label}: task instances with more than one try: {retried}")
            for note in notes:
                print(note)
            if kill:
                print(f"\nrun 3: killed {kill.worker} (pids {kill.pids}) during {kill.task_id}[{kill.map_index}]; "
                      f"tries: {[(t['try_number'], t['hostname'], t['state']) for t in history]}")
            print(f"speed-up of two GPU workers over one: {one.wall_s / two.wall_s:.2f}x "
                  f"({len(reference)} output objects compared)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=8)
    ap.add_argument("--shard-size", type=int, default=2)
    ap.add_argument("--heartbeat-timeout", type=int, default=30)
    ap.add_argument("--skip-kill", action="store_true", help="runs 1 and 2 only")
    ap.add_argument("--keep", action="store_true", help="keep the work folder (logs, stores) under bench/_work")
    args = ap.parse_args()
    load = " ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"machine: {cpu_model()}, {os.cpu_count()} cores; load average at start {load}")
    print(f"batch: {args.images} demo images, shard size {args.shard_size} -> {args.images // args.shard_size} shards; "
          f"heartbeat timeout {args.heartbeat_timeout} s, retry delay 2 s")
    conf = {"input_prefix": "bench-workers", "shard_size": args.shard_size, "max_images": args.images,
            "profile": "demo"}
    work = REPO / "bench" / "_work"
    work.mkdir(parents=True, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix="celery-workers-", dir=work)
    try:
        bench(args, conf, Path(tmp))
    finally:
        if args.keep:
            print(f"kept: {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
