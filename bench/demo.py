"""End-to-end demo benchmark: wall time per DAG, peak memory per stage task, idle memory of the stack.

    .venv/bin/python bench/demo.py [--images 24] [--json out.json]

Starts a private local stack (SeaweedFS, Label Studio, Airflow; demo profile) on free 127.0.0.1
ports in a temporary home — a cold start, as on a fresh machine — and then:

* **idle memory**: after start-up and a short settle, before any run, the PSS (and RSS) of every
  process of the stack and all their children, per service, against the 3 GB target;
* **the demo** (:func:`hopchain_demo.run.run_demo`) through the real scheduler, while a sampler reads
  every 0.2 s the RSS of the LocalExecutor processes (descendants of the scheduler pid). Both the
  executor's supervisor (``airflow worker -- LocalExecutor <ti id>``) and the task process
  (``airflow worker -- <ti id>``) carry the task instance id in their title; the ids are resolved to
  ``dag.task[map_index]`` through the REST API afterwards. The stack's total RSS is sampled too;
* **wall time**: stack start-up, each DAG run (start → end as Airflow recorded it), the whole demo,
  and the start-up + demo sum (what ``make demo`` costs on a fresh machine, without the installs),
  against the 15-minute target.

The stack is stopped (by recorded pid) and its home removed at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import tempfile
import threading
import time
from collections import defaultdict
from datetime import datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from _machine import cpu_model  # noqa: E402  (bench/ is on sys.path when run as a script)

os.environ.setdefault("OMP_NUM_THREADS", "1")

import psutil  # noqa: E402

IDLE_TARGET_GB = 3.0
DEMO_TARGET_S = 15 * 60
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
MB = 1024 * 1024




def tree(pid: int) -> list[psutil.Process]:
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def service_memory(stack: Any) -> dict[str, dict[str, float]]:
    """PSS and RSS (MB) of each service's processes and all their descendants."""
    out: dict[str, dict[str, float]] = {}
    for svc in stack.services:
        pss = rss = 0
        n = 0
        seen: set[int] = set()
        for pid in svc.pids():
            for p in tree(pid):
                if p.pid in seen:
                    continue
                seen.add(p.pid)
                try:
                    info = p.memory_full_info()
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    continue
                pss += getattr(info, "pss", info.rss)
                rss += info.rss
                n += 1
        out[svc.name] = {"pss_mb": pss / MB, "rss_mb": rss / MB, "processes": n}
    return out


class TaskMemorySampler(threading.Thread):
    """Samples the scheduler's descendants every ``interval_s``; peak RSS per task-instance id."""

    def __init__(self, stack: Any, interval_s: float = 0.2) -> None:
        super().__init__(daemon=True)
        self.stack = stack
        self.interval_s = interval_s
        self.stop_event = threading.Event()
        self.task_peak: dict[str, int] = defaultdict(int)  # the task process alone
        self.ti_peak: dict[str, int] = defaultdict(int)  # supervisor + task process
        self.stack_peak = 0
        self.samples = 0
        self._stack_pids: list[int] = []

    def run(self) -> None:
        sched = self.stack.airflow.processes[1]  # AIRFLOW_COMPONENTS: api-server, scheduler, ...
        assert sched.name == "airflow-scheduler"
        every_total = max(1, int(2.0 / self.interval_s))
        while not self.stop_event.wait(self.interval_s):
            self.samples += 1
            pid = sched.pid
            if pid is None:
                continue
            by_ti: dict[str, int] = defaultdict(int)
            for p in tree(pid)[1:]:
                try:
                    title = " ".join(p.cmdline())
                    rss = p.memory_info().rss
                except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                    continue
                m = UUID.search(title)
                if not m:
                    continue
                ti = m.group(0)
                by_ti[ti] += rss
                if "LocalExecutor" not in title:
                    self.task_peak[ti] = max(self.task_peak[ti], rss)
            for ti, rss in by_ti.items():
                self.ti_peak[ti] = max(self.ti_peak[ti], rss)
            if self.samples % every_total == 0:
                total = 0
                for svc in self.stack.services:
                    for spid in svc.pids():
                        for p in tree(spid):
                            try:
                                total += p.memory_info().rss
                            except (psutil.NoSuchProcess, psutil.AccessDenied):
                                pass
                self.stack_peak = max(self.stack_peak, total)

    def stop(self) -> None:
        self.stop_event.set()
        self.join(timeout=10)


def _seconds(run: dict[str, Any], start: str = "start_date", end: str = "end_date") -> float | None:
    if not run.get(start) or not run.get(end):
        return None
    a = datetime.fromisoformat(run[start].replace("Z", "+00:00"))
    b = datetime.fromisoformat(run[end].replace("Z", "+00:00"))
    return (b - a).total_seconds()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=24, help="sample images seeded for the demo")
    ap.add_argument("--settle", type=float, default=15.0, help="seconds to wait after start-up before idle memory")
    ap.add_argument("--json", type=Path, help="also write the figures as JSON here")
    ap.add_argument("--keep-home", action="store_true")
    args = ap.parse_args()

    from hopchain_demo.run import DAGS, run_demo
    from pipelines.ops.airflow_api import AirflowAPI
    from pipelines.stack import LocalStack
    from tests.support.stack import free_ports, params_with_ports

    os.environ["HOPCHAIN_PROFILE"] = "demo"
    home = Path(tempfile.mkdtemp(prefix="bench-demo-", dir=REPO / "bench" / "_work"
                                 if (REPO / "bench" / "_work").is_dir() else None))
    params = params_with_ports(free_ports(), profile="demo")
    stack = LocalStack(params, home=home)
    result: dict[str, Any] = {"machine": {"cpu": cpu_model(), "cores": os.cpu_count(),
                                          "ram_gb": round(psutil.virtual_memory().total / 1e9, 1)},
                              "images": args.images}
    sampler = None
    try:
        t0 = time.monotonic()
        stack.up(log=lambda m: print(f"  {m.strip()}", flush=True))
        result["startup_s"] = round(time.monotonic() - t0, 1)
        time.sleep(args.settle)
        idle = service_memory(stack)
        result["idle"] = idle
        result["idle_total_pss_mb"] = sum(v["pss_mb"] for v in idle.values())
        result["idle_total_rss_mb"] = sum(v["rss_mb"] for v in idle.values())

        sampler = TaskMemorySampler(stack)
        sampler.start()
        t1 = time.monotonic()
        demo = run_demo(params, timeout_s=900, images=args.images, stack=stack, quiet=False)
        result["demo_s"] = round(time.monotonic() - t1, 1)
        sampler.stop()
        result["tag"] = demo["tag"]
        result["questions"] = demo["questions"]
        result["total_s"] = round(result["startup_s"] + result["demo_s"], 1)
        result["stack_peak_rss_mb"] = sampler.stack_peak / MB
        result["samples"] = sampler.samples

        creds = stack.airflow.credentials()
        api = AirflowAPI(creds["url"], creds["username"], creds["password"])
        dags: dict[str, Any] = {}
        stages: dict[str, dict[str, Any]] = {}
        for dag_id in DAGS:
            # the demo's own runs: its nightly run (unpausing also starts the latest cron interval,
            # a run over an empty input) and the asset-triggered annotation and release runs
            runs = [api.dag_run(dag_id, demo["nightly_run_id"])] if dag_id == "hopchain_nightly" else \
                [r for r in api.dag_runs(dag_id) if r.get("run_type") == "asset_triggered"] or api.dag_runs(dag_id)
            if not runs:
                continue
            run = runs[0]
            tis = api.task_instances(dag_id, run["dag_run_id"])
            dags[dag_id] = {"run_id": run["dag_run_id"], "state": run["state"], "wall_s": _seconds(run),
                            "queued_to_end_s": _seconds(run, "queued_at", "end_date"), "tasks": len(tis)}
            for ti in tis:
                name = f"{dag_id}.{ti['task_id']}"
                s = stages.setdefault(name, {"count": 0, "duration_s": [], "peak_task_rss_mb": 0.0,
                                             "peak_ti_rss_mb": 0.0, "sampled": 0})
                s["count"] += 1
                if ti.get("duration") is not None:
                    s["duration_s"].append(float(ti["duration"]))
                tid = ti.get("id")
                if tid in sampler.ti_peak:
                    s["sampled"] += 1
                    s["peak_ti_rss_mb"] = max(s["peak_ti_rss_mb"], sampler.ti_peak[tid] / MB)
                    s["peak_task_rss_mb"] = max(s["peak_task_rss_mb"], sampler.task_peak.get(tid, 0) / MB)
        api.close()
        result["dags"] = dags
        result["stages"] = {k: {**v, "max_duration_s": max(v["duration_s"] or [0]),
                                "sum_duration_s": sum(v["duration_s"])} for k, v in stages.items()}
    finally:
        if sampler is not None and sampler.is_alive():
            sampler.stop()
        stack.down(log=lambda *_: None)
        if not args.keep_home:
            shutil.rmtree(home, ignore_errors=True)

    print_report(result)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2, default=str))
    return 0


def print_report(r: dict[str, Any]) -> None:
    m = r["machine"]
    print(f"\ndemo bench — {m['cpu']}, {m['cores']} cores, {m['ram_gb']} GB RAM; {r['images']} sample images, "
          f"release {r.get('tag')} ({r.get('questions')} accepted questions)")
    print(f"\n{'wall time':<46}{'seconds':>9}")
    print(f"{'stack start-up (cold: fresh home, migrations)':<46}{r['startup_s']:>9.1f}")
    for dag_id, d in r["dags"].items():
        wall = d["wall_s"]
        print(f"{'  ' + dag_id + ' run (start -> end)':<46}{(wall if wall is not None else float('nan')):>9.1f}"
              f"   {d['tasks']} task instances, {d['state']}")
    print(f"{'demo (seed -> release, run_demo)':<46}{r['demo_s']:>9.1f}")
    print(f"{'start-up + demo (target < 900 s)':<46}{r['total_s']:>9.1f}   "
          f"{r['total_s'] / DEMO_TARGET_S:.2f} of the target ({'OK' if r['total_s'] < DEMO_TARGET_S else 'OVER'})")
    print(f"\n{'idle memory after start-up':<24}{'PSS MB':>9}{'RSS MB':>9}{'procs':>7}")
    for name, v in r["idle"].items():
        print(f"{name:<24}{v['pss_mb']:>9.0f}{v['rss_mb']:>9.0f}{v['processes']:>7}")
    pss_gb = r["idle_total_pss_mb"] / 1024
    print(f"{'whole stack':<24}{r['idle_total_pss_mb']:>9.0f}{r['idle_total_rss_mb']:>9.0f}"
          f"   {pss_gb:.2f} GB PSS vs 3 GB target ({'OK' if pss_gb < IDLE_TARGET_GB else 'OVER'})")
    print(f"peak RSS of the whole stack during the demo (sampled every 2 s): {r['stack_peak_rss_mb']:.0f} MB")
    print(f"\n{'stage task':<40}{'runs':>5}{'max s':>8}{'task RSS MB':>13}{'+supervisor':>13}")
    for name, s in sorted(r["stages"].items()):
        task = f"{s['peak_task_rss_mb']:.0f}" if s["sampled"] else "-"
        both = f"{s['peak_ti_rss_mb']:.0f}" if s["sampled"] else "-"
        print(f"{name:<40}{s['count']:>5}{s['max_duration_s']:>8.1f}{task:>13}{both:>13}")
    print("(peak RSS per task instance, max over mapped instances; '-' = ended between two 0.2 s samples "
          "or ran in the triggerer)")


if __name__ == "__main__":
    sys.exit(main())
