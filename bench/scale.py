"""Nightly at scale: the three DAGs through the real scheduler at two or more sizes, then a second night.

    .venv/bin/python bench/scale.py [--sizes 1000,5000] [--shard-size 250] [--extra 0.05]
                                    [--filler 50000] [--json out.json] [--results bench/RESULTS.md]
    .venv/bin/python bench/scale.py --one-stack --sizes 1000,5000,20000 --shard-size 500 --extra 0 --filler 0 \
                                    --grow-filler 15000 --deadline 13:35 --results bench/RESULTS.md

With ``--one-stack`` any number of sizes run on one stack, each pushing into the Label Studio project that
holds the sizes before it (``--grow-filler N`` adds N answered tasks of no batch after the first size, so the
later sizes run with a large project); ``--deadline HH:MM`` (UTC) shrinks the last size to what the night
before it says ends by then, and says so in the output. Peak RSS is sampled per task worker and per component
(each service's process tree), push and decide rates per size; ``bench/ls_probe.py`` times the Label Studio
calls one push makes against the running stack.

For each size a private local stack (SeaweedFS, Label Studio, Airflow; ``demo`` profile: the
``annotations`` backend, the program question generator, simulated annotators) starts cold on free
127.0.0.1 ports in a temporary home. N distinct images with COCO instances (the demo's photo scenes,
then rendered shapes scenes, one seed each; generated once and cached under ``bench/_work``) are
uploaded to ``inputs/scale-N/`` and ``hopchain_nightly`` is triggered through the REST API with
``shard_size``. Then ``hopchain_annotations`` and ``hopchain_release`` run (the release by its Asset).

What is measured, and how (printed again under the table):

* **per-stage seconds per image**: the durations Airflow recorded for the task instances of each
  task id (summed over map indexes), divided by the images of the night; the ratio is
  (s/image at the larger size) / (s/image at the smaller): 1.0 = linear, target <= 1.2.
* **Airflow overhead per mapped shard**: a shard is 5 task instances (detect, segment, questions,
  validate, push). Each costs (a) its launch latency, ``start_date - queued_when`` (the executor
  starting a supervisor and a task process), and (b) its in-task overhead, the Airflow duration
  minus the time the same step takes when replayed right after the night in one warm Python
  process (same runner call, same run, same shard; a fresh run environment per step). The replay covers
  the four steps that can be rerun without side effects; push is estimated by their mean.
  Per shard = 5 x (mean launch latency + mean in-task overhead).
* **peak RSS per worker**: every 0.2 s the RSS of the LocalExecutor processes under the scheduler
  (bench/demo.py's sampler): the task process alone, and with its supervisor; max per task id.
* **push throughput**: Label Studio tasks created / seconds of the push task instances (Airflow
  durations), on the first night (project empty at the start: also the first push alone) and on the
  second night, after ~50,000 extra tasks were imported into the same project.
* **tasks fetched**: the ``tasks_fetched`` counters of the ledger's batch records (push) and
  consensus records (decide), per push / per decision ("n/a" when the counters are not filled).
* **second night**: 5% more images (new ones, in their own input folder: the nightly drop), the
  same three DAGs. The DVC remote's objects (``s3://<dvc_remote_bucket>/<dvc_remote_prefix>/``)
  are listed before and after: bytes the second release's ``dvc push`` added / bytes of the first
  release. A trainer's clone: ``git checkout <tag 1> && dvc pull``, then ``git checkout <tag 2> &&
  dvc pull``: bytes added to the clone's DVC cache / bytes after the first pull. Target <= 10%.

The simulated annotators: answering ~4 questions per image four times through ``/next`` runs at
~4 answers/s here (hours at 5,000 images), so the bench gives the simulated annotators' answers
(the same per-question seeded decisions and error rate as ``pipelines.annotation.simulated``)
straight to Label Studio's database in bulk, the way its own import stores annotations, while
``hopchain_annotations`` is paused; then it triggers that DAG, whose ``simulate`` task finds the
labeling stream empty, and whose ``wait`` and ``decide`` read the answers through the API.

``--one-stack`` runs both sizes and the second night on one stack (one start-up; the second size
uses other images and pushes into the project holding the first; releases are append-only, so each
release task packs its own night). Before each ``hopchain_annotations`` run the triggerer is
restarted, and the ledger is read as plain JSON: the working tree is shared with engineers editing
it, and long-lived processes would otherwise run modules imported before their edits. Failed tasks
are cleared and rerun once (recorded in the output).

Every stack is stopped by its recorded pids and its home removed at the end.
"""

from __future__ import annotations

import argparse
import json
import mimetypes
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from _machine import cpu_model  # noqa: E402  (bench/ is on sys.path when run as a script)

os.environ.setdefault("OMP_NUM_THREADS", "1")

import psutil  # noqa: E402

WORK = REPO / "bench" / "_work"
MB = 1024 * 1024
DAGS = ("hopchain_nightly", "hopchain_annotations", "hopchain_release")
REPLAY_STEPS = ("detect", "segment", "questions", "validate")
SHARD_TASKS = ("shard.detect", "shard.segment", "shard.questions", "shard.validate", "shard.push")
LINEAR_TARGET = 1.2
RSS_TARGET_MB = 2048
SHARE_TARGET = 0.10


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# -- images ----------------------------------------------------------------------------------------
def _render(k: int) -> dict[str, Any]:
    """Scene k: the demo's 7 photo scenes first, then shapes scenes with seed k - 7 (distinct bytes)."""
    import io

    import numpy as np
    from PIL import Image

    from hopchain_demo.samples import sample_scenes, shapes_scene
    from pipelines.segment.masks import encode_mask

    if k < 7:
        scene = list(sample_scenes(7))[k]
    else:
        w, h = [(320, 240), (400, 300), (256, 256), (360, 200)][(k - 7) % 4]
        scene = shapes_scene(seed=k - 7, width=w, height=h)
    buf = io.BytesIO()
    Image.fromarray(np.asarray(scene.rgb)).save(buf, "JPEG" if scene.photo else "PNG",
                                                **({"quality": 95} if scene.photo else {}))
    h, w = scene.rgb.shape[:2]
    anns: list[dict[str, Any]] = []
    for category, mask in scene.instances:
        enc = encode_mask(mask)
        anns.append({"category": category, "counts": enc.counts, "area": enc.area, "bbox": list(enc.bbox)})
    return {"file_name": f"{k:06d}-{scene.name}.{'jpg' if scene.photo else 'png'}", "bytes": buf.getvalue(),
            "width": w, "height": h, "instances": anns}


def image_cache(count: int) -> Path:
    """``bench/_work/scale-images/`` holding scenes 0..count-1 (rendered once, on both cores)."""
    folder = WORK / "scale-images"
    (folder / "images").mkdir(parents=True, exist_ok=True)
    index_path = folder / "index.json"
    index: list[dict[str, Any]] = json.loads(index_path.read_text()) if index_path.exists() else []
    if len(index) >= count:
        return folder
    t0 = time.monotonic()
    todo = range(len(index), count)
    with ProcessPoolExecutor(max_workers=max(1, min(2, os.cpu_count() or 1))) as pool:
        for item in pool.map(_render, todo, chunksize=25):
            (folder / "images" / item["file_name"]).write_bytes(item.pop("bytes"))
            index.append(item)
    index_path.write_text(json.dumps(index))
    log(f"rendered {len(todo)} scenes in {time.monotonic() - t0:.0f}s (cached in {folder})")
    return folder


def coco_for(entries: list[dict[str, Any]]) -> dict[str, Any]:
    cats: dict[str, int] = {}
    images, anns = [], []
    for image_id, e in enumerate(entries, start=1):
        images.append({"id": image_id, "file_name": e["file_name"], "width": e["width"], "height": e["height"]})
        for inst in e["instances"]:
            cat = cats.setdefault(inst["category"], len(cats) + 1)
            anns.append({"id": len(anns) + 1, "image_id": image_id, "category_id": cat, "iscrowd": 0,
                         "segmentation": {"size": [e["height"], e["width"]], "counts": inst["counts"]},
                         "area": inst["area"], "bbox": inst["bbox"]})
    return {"info": {"description": "bench/scale.py scenes"}, "images": images,
            "categories": [{"id": i, "name": n, "supercategory": ""} for n, i in cats.items()],
            "annotations": anns}


def upload_inputs(store: Any, params: Any, prefix: str, folder: Path, entries: list[dict[str, Any]]) -> float:
    """Images under ``inputs/<prefix>/images/`` + ``instances.json`` (as hopchain_demo.run seeds them)."""
    from pipelines.store.layout import BucketLayout

    layout = BucketLayout(params.store)
    t0 = time.monotonic()

    def put(e: dict[str, Any]) -> None:
        name = e["file_name"]
        store.put_bytes(layout.input_key(prefix, "images", name), (folder / "images" / name).read_bytes(),
                        mimetypes.guess_type(name)[0] or "application/octet-stream")

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(put, entries))
    store.put_bytes(layout.input_key(prefix, "instances.json"), json.dumps(coco_for(entries)).encode(), "application/json")
    return time.monotonic() - t0


# -- Airflow ---------------------------------------------------------------------------------------
def _ts(s: str | None) -> datetime | None:
    return datetime.fromisoformat(s.replace("Z", "+00:00")) if s else None


def _secs(a: str | None, b: str | None) -> float | None:
    x, y = _ts(a), _ts(b)
    return (y - x).total_seconds() if x and y else None


def wait_run(api: Any, dag_id: str, run_id: str, timeout_s: float) -> dict[str, Any]:
    last = [""]

    def poll(r: dict[str, Any]) -> None:
        counts: dict[str, int] = defaultdict(int)
        for ti in api.task_instances(dag_id, run_id):
            counts[ti.get("state") or "scheduled"] += 1
        msg = f"{dag_id}: {r['state']} ({', '.join(f'{k}={v}' for k, v in sorted(counts.items()))})"
        if msg != last[0]:
            log(msg)
            last[0] = msg

    run = api.wait_for_run(dag_id, run_id, timeout_s, on_poll=poll, interval_s=10)
    if run["state"] != "success":
        bad = [f"{t['task_id']}[{t.get('map_index')}]" for t in api.task_instances(dag_id, run_id)
               if t.get("state") in ("failed", "upstream_failed")]
        raise RuntimeError(f"{dag_id} run {run_id} {run['state']}: failed tasks {bad}")
    return run


def wait_or_clear(api: Any, dag_id: str, run_id: str, timeout_s: float, notes: list[str]) -> dict[str, Any]:
    """``wait_run``; a failed run has its failed tasks cleared once (the working tree is shared with
    engineers editing other files: a task can meet a half-written module) and is waited for again."""
    try:
        return wait_run(api, dag_id, run_id, timeout_s)
    except RuntimeError as err:
        notes.append(f"{dag_id}: {err}; failed tasks cleared and rerun once")
        log(notes[-1])
        api.request("POST", f"/dags/{dag_id}/clearTaskInstances",
                    json={"dry_run": False, "only_failed": True, "dag_run_id": run_id, "reset_dag_runs": True})
        return wait_run(api, dag_id, run_id, timeout_s)


def run_record(api: Any, dag_id: str, run: dict[str, Any]) -> dict[str, Any]:
    tis = api.task_instances(dag_id, run["dag_run_id"])
    return {"run_id": run["dag_run_id"], "wall_s": _secs(run.get("start_date"), run.get("end_date")),
            "tis": [{"task_id": t["task_id"], "map_index": t.get("map_index", -1), "id": t.get("id"),
                     "duration": t.get("duration"), "state": t.get("state"),
                     "launch_s": _secs(t.get("queued_when"), t.get("start_date")),
                     "start": t.get("start_date"), "end": t.get("end_date")} for t in tis]}


# -- simulated answers -----------------------------------------------------------------------------
INJECT = r"""
import json, os, sys
sys.path.insert(0, os.environ["LS_PKG"])
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "core.settings.label_studio")
import django
django.setup()
from django.db import transaction
from django.db.models import Count
from tasks.models import Annotation, Task
rows = json.load(open(sys.argv[1]))
tasks = {t.id: t for t in Task.objects.filter(id__in={r[0] for r in rows})}
with transaction.atomic():
    Annotation.objects.bulk_create(
        [Annotation(task=tasks[t], project_id=tasks[t].project_id, completed_by_id=u, updated_by_id=u, result=res,
                    lead_time=lead, ground_truth=False, was_cancelled=False) for t, u, res, lead in rows],
        batch_size=1000)
    counts = Task.objects.filter(id__in=list(tasks)).annotate(n=Count("annotations__completed_by", distinct=True))
    for t in counts:
        Task.objects.filter(id=t.id).update(total_annotations=t.n, is_labeled=t.n >= t.overlap)
print(len(rows))
"""


def raw_records(store: Any, prefix: str) -> list[dict[str, Any]]:
    """The ledger's JSON records under ``prefix``, as plain dicts: the bench runs for many minutes while
    the ledger's pydantic models may gain fields in the shared tree, so it does not validate them."""
    keys = sorted(store.list(prefix.strip("/") + "/", recursive=False))
    return [store.get_json(k) for k in keys if k.endswith(".json")]


def simulated_answers(stack: Any, params: Any, store: Any, run_id: str, filler: int = 0) -> dict[str, Any]:
    """The simulated annotators' answers to every task of the run's batches, into LS's database."""
    from pipelines.annotation.client import LabelStudioClient
    from pipelines.annotation.simulated import answer_result, simulated_annotators

    sim = params.annotation.simulated
    creds = stack.labelstudio.credentials()
    url = stack.labelstudio.url()
    batches = [b for b in raw_records(store, params.store.batches_prefix)
               if b.get("run_id") == run_id and b.get("project_id") and b.get("status") == "open"]
    t0 = time.monotonic()
    rows: list[list[Any]] = []
    with LabelStudioClient(url, creds["token"]) as admin:
        annotators = simulated_annotators(admin, admin.token, sim.count)
        for a in annotators:
            a.client.close()
        ids = {u["email"]: int(u["id"]) for u in admin.users()}
        for b in batches:
            truths = {q["question_id"]: q["answer"] for q in store.get_table(b["questions_key"], "questions").to_pylist()}
            for task in admin.iter_tasks(int(b["project_id"]), batch=b["batch_id"], fields="task_only",
                                         page_size=1000):
                qid = str((task.get("data") or {}).get("question_id"))
                if qid not in truths:
                    continue
                for a in annotators:
                    answer, verdict, lead = a.decide(qid, truths[qid], sim.error_rate, sim.seed)
                    rows.append([int(task["id"]), ids[a.email], answer_result(answer, verdict), lead])
    fetched_s = time.monotonic() - t0
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False, dir=WORK) as f:
        json.dump(rows, f)
    t1 = time.monotonic()
    env = dict(stack.labelstudio.env(), LS_PKG=str(ls_package()))
    out = subprocess.run([str(REPO / ".venv-ls" / "bin" / "python"), "-c", INJECT, f.name], env=env,
                         capture_output=True, text=True, timeout=1800)
    os.unlink(f.name)
    if out.returncode != 0:
        raise RuntimeError(f"answer injection failed: {out.stderr[-2000:]}")
    return {"answers": len(rows), "tasks": len(rows) // max(1, sim.count), "batches": len(batches),
            "read_s": round(fetched_s, 1), "write_s": round(time.monotonic() - t1, 1)}


def ls_package() -> Path:
    found = sorted((REPO / ".venv-ls" / "lib").glob("python3*/site-packages/label_studio"))
    if not found:
        raise RuntimeError("Label Studio is not installed in .venv-ls; run `make setup`")
    return found[0]


def import_filler(stack: Any, project_id: int, count: int, chunk: int = 5000) -> dict[str, Any]:
    """``count`` extra tasks in the project, each already answered by the 4 simulated accounts
    (so the labeling stream never hands them out), through the import API."""
    from pipelines.annotation.client import LabelStudioClient
    from pipelines.annotation.simulated import answer_result, simulated_email

    creds = stack.labelstudio.credentials()
    t0 = time.monotonic()
    with LabelStudioClient(stack.labelstudio.url(), creds["token"]) as admin:
        ids = {u["email"]: int(u["id"]) for u in admin.users()}
        users = [ids[simulated_email(i)] for i in range(1, 5)]
        done = 0
        while done < count:
            n = min(chunk, count - done)
            tasks = [{"data": {"image": "http://127.0.0.1:9/filler.png", "question": "filler",
                               "question_id": f"filler-{done + i}", "image_id": "filler", "batch": "bench-filler"},
                      "annotations": [{"completed_by": u, "result": answer_result(1), "lead_time": 1.0}
                                      for u in users]} for i in range(n)]
            admin.import_tasks(project_id, tasks)
            done += n
    return {"tasks": count, "seconds": round(time.monotonic() - t0, 1)}


# -- replay (in-task overhead) ---------------------------------------------------------------------
def replay(spec_path: str, cold: str | None = None) -> int:
    """Child process: time each replayable step on the given shards, one warm-up shard first; with
    ``cold``, run only that step once on the first shard (the parent times the whole process)."""
    from pipelines.config import load_params
    from pipelines.runner import RunEnv
    from pipelines.store import ObjectStore, S3Credentials
    from tests.support import nightly

    spec = json.loads(Path(spec_path).read_text())
    params = load_params(None, "demo")
    store = ObjectStore(S3Credentials(**spec["s3"]), params.store.bucket)

    def step(name: str, shard: int) -> float:
        env = RunEnv(params=params, store=store, run_id=spec["run_id"], s3_credentials=store.creds)
        t = time.perf_counter()
        nightly.run(env, name, shard)
        return time.perf_counter() - t

    if cold:
        step(cold, spec["shards"][0])
        return 0
    for name in REPLAY_STEPS:  # warm-up: imports (GX, pyarrow, ...) once
        step(name, spec["shards"][0])
    out = {name: {str(s): step(name, s) for s in spec["shards"]} for name in REPLAY_STEPS}
    Path(spec["out"]).write_text(json.dumps(out))
    return 0


def replay_steps(stack: Any, run_id: str, shards: list[int]) -> dict[str, Any]:
    c = stack.s3.credentials()
    with tempfile.TemporaryDirectory(dir=WORK) as tmp:
        spec = Path(tmp) / "spec.json"
        out = Path(tmp) / "out.json"
        spec.write_text(json.dumps({"s3": {"endpoint": c["endpoint"], "access_key": c["access_key"],
                                           "secret_key": c["secret_key"]},
                                    "run_id": run_id, "shards": shards, "out": str(out)}))
        env = dict(os.environ, HOPCHAIN_PROFILE="demo", OMP_NUM_THREADS="1")
        cold: dict[str, float] = {}
        for name in REPLAY_STEPS:  # one fresh process per step, as a task process is
            t0 = time.perf_counter()
            p = subprocess.run([sys.executable, __file__, "--replay", str(spec), "--cold", name], env=env,
                               capture_output=True, text=True, timeout=900)
            cold[name] = time.perf_counter() - t0
            if p.returncode != 0:
                raise RuntimeError(f"cold replay of {name} failed: {p.stderr[-2000:]}")
        p = subprocess.run([sys.executable, __file__, "--replay", str(spec)], env=env, capture_output=True,
                           text=True, timeout=900)
        if p.returncode != 0:
            raise RuntimeError(f"replay failed: {p.stderr[-2000:]}")
        return {"warm": json.loads(out.read_text()), "cold": cold, "cold_shard": shards[0]}


# -- DVC -------------------------------------------------------------------------------------------
def remote_objects(store: Any, bucket: str, prefix: str) -> dict[str, int]:
    return {o.object_name: int(o.size) for o in store.client.list_objects(bucket, prefix=prefix + "/", recursive=True)}


def dir_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) if folder.exists() else 0


def trainer_pull(registry: str, tag1: str, tag2: str, creds: Any) -> dict[str, Any]:
    from pipelines.release.dvc import dvc, git, tool_env

    env = tool_env(creds)
    with tempfile.TemporaryDirectory(dir=WORK) as tmp:
        wc = Path(tmp) / "hopchain-data"
        git("clone", "--quiet", registry, str(wc), cwd=None, env=env)
        git("checkout", "--quiet", tag1, cwd=wc, env=env)
        first = dvc("pull", cwd=wc, env=env, timeout_s=900)
        b1 = dir_bytes(wc / ".dvc" / "cache")
        git("checkout", "--quiet", tag2, cwd=wc, env=env)
        second = dvc("pull", cwd=wc, env=env, timeout_s=900)
        b2 = dir_bytes(wc / ".dvc" / "cache")
    return {"first_bytes": b1, "added_bytes": b2 - b1, "first_s": round(first.elapsed_s, 1),
            "second_s": round(second.elapsed_s, 1)}


# -- peak RSS of each long-lived component -----------------------------------------------------------
class ComponentSampler:
    """Every ``interval_s``: the RSS of each service's process tree (MB), peak per component since ``reset``.

    Airflow's scheduler tree holds the LocalExecutor's task processes (sampled per task by
    ``TaskMemorySampler``): they are left out of "scheduler" here, so it is the scheduler and its
    executor's idle workers. Why: "what grows" with the project is a component's memory, not a task's.
    """

    def __init__(self, stack: Any, interval_s: float = 1.0) -> None:
        import threading

        self.stack, self.interval_s = stack, interval_s
        self.peak: dict[str, float] = defaultdict(float)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def reset(self) -> dict[str, float]:
        out, self.peak = dict(self.peak), defaultdict(float)
        return out

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        from demo import UUID, tree

        while not self._stop.wait(self.interval_s):
            for svc in self.stack.services:
                for proc in svc.processes:
                    if not proc.pid:
                        continue
                    total = 0
                    for q in tree(proc.pid):
                        try:
                            if UUID.search(" ".join(q.cmdline())):
                                continue  # a task instance's process (or its supervisor)
                            total += q.memory_info().rss
                        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                            continue
                    name = proc.name.removeprefix("airflow-")
                    self.peak[name] = max(self.peak[name], total / MB)


# -- one stack, one or more nights -----------------------------------------------------------------
class Session:
    def __init__(self, stack: Any, params: Any, api: Any, store: Any, sampler: Any):
        self.stack, self.params, self.api, self.store, self.sampler = stack, params, api, store, sampler
        self.components: ComponentSampler | None = None

    def night(self, label: str, prefix: str, folder: Path, entries: list[dict[str, Any]],
              shard_size: int, timeout_s: float, replay_shards: int = 1) -> dict[str, Any]:
        from pipelines.store.ledger import Ledger

        api, store = self.api, self.store
        night: dict[str, Any] = {"label": label, "images": len(entries)}
        t_night = time.monotonic()
        if self.components is not None:
            self.components.reset()
        night["upload_s"] = round(upload_inputs(store, self.params, prefix, folder, entries), 1)
        log(f"{label}: uploaded {len(entries)} images to inputs/{prefix}/ in {night['upload_s']}s")
        before = {d: {r["dag_run_id"] for r in api.dag_runs(d)} for d in DAGS}
        run = api.trigger("hopchain_nightly", conf={"input_prefix": prefix, "profile": "demo",
                                                    "shard_size": shard_size})
        run_id = run["dag_run_id"]
        log(f"{label}: triggered hopchain_nightly {run_id}")
        notes: list[str] = []
        night["notes"] = notes
        done = wait_or_clear(api, "hopchain_nightly", run_id, timeout_s, notes)
        night["nightly"] = run_record(api, "hopchain_nightly", done)
        layout = self.params.store
        key = Ledger(store, layout).run(run_id).summary()
        night["summary"] = store.get_json(key) if store.exists(key) else {}
        night["batches"] = [b for b in raw_records(store, layout.batches_prefix) if b.get("run_id") == run_id]
        shards = sorted({t["map_index"] for t in night["nightly"]["tis"] if t["task_id"] == "shard.detect"})
        t0 = time.monotonic()
        night["replay"] = replay_steps(self.stack, run_id, shards[:replay_shards]) if shards and replay_shards else {}
        log(f"{label}: replayed {REPLAY_STEPS} on shards {shards[:replay_shards]} in {time.monotonic() - t0:.0f}s")
        night["answers"] = simulated_answers(self.stack, self.params, store, run_id)
        log(f"{label}: simulated answers {night['answers']}")
        # the triggerer is long-lived: restarted here, it polls with the code now in the tree (shared
        # with engineers editing it), not with modules it imported hours ago
        t0 = time.monotonic()
        self.stack.airflow.restart(["triggerer"])
        night["triggerer_restart_s"] = round(time.monotonic() - t0, 1)
        api.unpause("hopchain_annotations")
        ann = None
        t_wait = time.monotonic() + 15  # an Asset event queued while paused would start a run by itself
        while time.monotonic() < t_wait and ann is None:
            ann = next((r for r in api.dag_runs("hopchain_annotations")
                        if r["dag_run_id"] not in before["hopchain_annotations"]), None)
            time.sleep(3)
        if ann is None:
            ann = api.trigger("hopchain_annotations", conf={})
            log(f"{label}: triggered hopchain_annotations {ann['dag_run_id']}")
        ann = wait_or_clear(api, "hopchain_annotations", ann["dag_run_id"], timeout_s, notes)
        api.request("PATCH", "/dags/hopchain_annotations", json={"is_paused": True})
        night["annotations"] = run_record(api, "hopchain_annotations", ann)
        rel = api.wait_for_new_run("hopchain_release", before["hopchain_release"], 300)
        rel = wait_or_clear(api, "hopchain_release", rel["dag_run_id"], timeout_s, notes)
        night["release"] = run_record(api, "hopchain_release", rel)
        night["decisions"] = [c for c in raw_records(store, layout.consensus_prefix)
                              if c.get("decided_by") == ann["dag_run_id"]]
        releases = raw_records(store, layout.releases_prefix)
        night["release_record"] = max(releases, key=lambda r: str(r.get("released_at"))) if releases else {}
        cfg = self.params.release
        night["remote"] = remote_objects(store, cfg.dvc_remote_bucket, cfg.dvc_remote_prefix)
        log(f"{label}: release {night['release_record'].get('tag')} "
            f"({night['release_record'].get('questions')} questions)")
        night["wall_s"] = round(time.monotonic() - t_night, 1)
        if self.components is not None:
            night["components_mb"] = self.components.reset()
        return night


def run_stack(sizes_here: list[tuple[str, str, list[dict[str, Any]]]], folder: Path, args: argparse.Namespace,
              filler_before_last: int) -> dict[str, Any]:
    from demo import TaskMemorySampler

    from pipelines.config import load_params
    from pipelines.ops.airflow_api import AirflowAPI
    from pipelines.stack import LocalStack
    from pipelines.store import ObjectStore, S3Credentials
    from tests.support.stack import free_ports, params_with_ports

    home = Path(tempfile.mkdtemp(prefix="bench-scale-", dir=WORK))
    params = params_with_ports(free_ports(), profile="demo")
    stack = LocalStack(params, home=home)
    sampler = None
    components: ComponentSampler | None = None
    out: dict[str, Any] = {"nights": []}
    try:
        t0 = time.monotonic()
        stack.up(log=lambda m: log(f"  {m.strip()}"))
        out["startup_s"] = round(time.monotonic() - t0, 1)
        c = stack.s3.credentials()
        creds = S3Credentials(c["endpoint"], c["access_key"], c["secret_key"])
        store = ObjectStore(creds, params.store.bucket)
        a = stack.airflow.credentials()
        api = AirflowAPI(a["url"], a["username"], a["password"], timeout_s=120)
        api.wait_for_dags(list(DAGS), timeout_s=240)
        before = {r["dag_run_id"] for r in api.dag_runs("hopchain_nightly")}
        api.unpause("hopchain_nightly")
        api.unpause("hopchain_release")
        # unpausing runs the latest cron interval over the empty drop zone: let it finish first
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            new = [r for r in api.dag_runs("hopchain_nightly") if r["dag_run_id"] not in before]
            if new:
                wait_run(api, "hopchain_nightly", new[0]["dag_run_id"], 300)
                break
            time.sleep(3)
        sampler = TaskMemorySampler(stack)
        sampler.start()
        components = ComponentSampler(stack)
        components.start()
        session = Session(stack, load_params(None, "demo"), api, store, sampler)
        session.components = components
        for i, (label, prefix, entries) in enumerate(sizes_here):
            last_size = max(j for j, step in enumerate(sizes_here) if not step[0].startswith("+"))
            if i > 0 and args.deadline and i == last_size:
                label, prefix, entries = fit_deadline(out["nights"][-1], (label, prefix, entries), args, out)
            if i == len(sizes_here) - 1 and filler_before_last:
                project = next(b["project_id"] for b in out["nights"][-1]["batches"] if b["project_id"])
                out["filler"] = import_filler(stack, int(project), filler_before_last)
                log(f"imported {filler_before_last} filler tasks in {out['filler']['seconds']}s")
            if i == 1 and args.grow_filler:
                # answered tasks of no batch: the sizes after the first push into (and decide in) a project
                # that already holds this many more tasks
                project = next(b["project_id"] for b in out["nights"][-1]["batches"] if b["project_id"])
                grown = import_filler(stack, int(project), args.grow_filler)
                log(f"imported {args.grow_filler} filler tasks before {label} in {grown['seconds']}s")
            second_night = i > 0 and i == len(sizes_here) - 1 and bool(filler_before_last or args.extra)
            out["nights"].append(session.night(label, prefix, folder, entries, args.shard_size, args.timeout,
                                               replay_shards=0 if second_night else 1))
            if i == 1 and args.grow_filler:
                out["nights"][-1]["filler_before"] = args.grow_filler
                out["nights"][-1]["filler_s"] = grown["seconds"]
            # each night kept as it ends: a run cut off later still leaves the nights it finished
            (WORK / "scale-partial.json").write_text(json.dumps(out, indent=1, default=str))
        sampler.stop()
        components.stop()
        for night in out["nights"]:
            for dag in ("nightly", "annotations", "release"):
                for t in night[dag]["tis"]:
                    if t["id"] in sampler.ti_peak:
                        t["task_rss_mb"] = sampler.task_peak.get(t["id"], 0) / MB
                        t["ti_rss_mb"] = sampler.ti_peak[t["id"]] / MB
        if len(out["nights"]) > 1:
            n1, n2 = out["nights"][-2], out["nights"][-1]
            r1, r2 = n1["release_record"], n2["release_record"]
            first = sum(n1["remote"].values())
            added = sum(v for k, v in n2["remote"].items() if k not in n1["remote"])
            out["dvc"] = {"tag1": r1.get("tag"), "tag2": r2.get("tag"), "first_bytes": first,
                          "push_added_bytes": added, "pushed_files_1": r1.get("pushed_files"),
                          "pushed_files_2": r2.get("pushed_files"),
                          "objects_1": len(n1["remote"]), "objects_added": len(set(n2["remote"]) - set(n1["remote"]))}
            out["dvc"]["pull"] = trainer_pull(r2["registry"], r1["tag"], r2["tag"], creds)
        api.close()
    finally:
        if components is not None:
            components.stop()
        if sampler is not None and sampler.is_alive():
            sampler.stop()
        stack.down(log=lambda *_: None)
        if not args.keep_home:
            shutil.rmtree(home, ignore_errors=True)
    return out


def fit_deadline(prev: dict[str, Any], step: tuple[str, str, list[dict[str, Any]]], args: argparse.Namespace,
                 out: dict[str, Any]) -> tuple[str, str, list[dict[str, Any]]]:
    """The last size, shrunk (to whole thousands) when the previous night's wall time per image says it
    would end after ``--deadline`` (UTC HH:MM): a result that ends in time beats one cut off."""
    label, prefix, entries = step
    per_image = prev["wall_s"] / prev["images"]
    hh, mm = (int(x) for x in args.deadline.split(":"))
    now = datetime.now(UTC)
    end = now.replace(hour=hh, minute=mm, second=0, microsecond=0)
    if end < now - timedelta(hours=12):  # a deadline past midnight
        end += timedelta(days=1)
    left = (end - now).total_seconds() - 120  # the render and the stack's stop
    estimate = per_image * len(entries) * 1.1  # 10%: the per-image cost may still grow
    log(f"{label}: ~{estimate / 60:.0f} min estimated ({per_image:.3f} s/image at {prev['images']:,}), "
        f"{left / 60:.0f} min left before {args.deadline} UTC")
    if estimate <= left:
        return step
    n = max(1000, int(left / (per_image * 1.1)) // 1000 * 1000)
    out["fallback"] = (f"{len(entries):,} images were estimated at {estimate / 60:.0f} min from the "
                       f"{prev['images']:,}-image night's {per_image:.3f} s/image wall, with {left / 60:.0f} min "
                       f"left before {args.deadline} UTC; ran {n:,} instead")
    log(out["fallback"])
    return f"{n:,} images", prefix.rsplit("-", 1)[0] + f"-{n}", entries[:n]


# -- figures ---------------------------------------------------------------------------------------
STAGE_ORDER = [
    ("hopchain_nightly", "ingest"), ("hopchain_nightly", "shard.detect"), ("hopchain_nightly", "shard.segment"),
    ("hopchain_nightly", "shard.questions"), ("hopchain_nightly", "shard.validate"),
    ("hopchain_nightly", "shard.push"), ("hopchain_nightly", "summary"), ("hopchain_nightly", "announce"),
    ("hopchain_annotations", "open_batches"), ("hopchain_annotations", "simulate"),
    ("hopchain_annotations", "wait"), ("hopchain_annotations", "decide"), ("hopchain_release", "release"),
]
DAG_KEY = {"hopchain_nightly": "nightly", "hopchain_annotations": "annotations", "hopchain_release": "release"}


def stage_seconds(night: dict[str, Any]) -> dict[str, float]:
    out: dict[str, float] = defaultdict(float)
    for dag_id, key in DAG_KEY.items():
        for t in night[key]["tis"]:
            out[f"{dag_id}.{t['task_id']}"] += float(t["duration"] or 0)
    return out


def overhead(night: dict[str, Any]) -> dict[str, Any]:
    """Launch latency (median, all shard tasks) and, on the replayed shard(s), the in-task overhead
    split into a fresh process's own cost (cold replay - warm replay) and Airflow's (duration - cold)."""
    import statistics

    tis = [t for t in night["nightly"]["tis"] if t["task_id"] in SHARD_TASKS]
    launch = [t["launch_s"] for t in tis if t["launch_s"] is not None]

    def ti(name: str, shard: int) -> dict[str, Any] | None:
        return next((t for t in tis if t["task_id"] == f"shard.{name}" and t["map_index"] == shard), None)

    rp = night["replay"]
    in_task, airflow_only, process = [], [], []
    for name, per_shard in rp.get("warm", {}).items():
        for shard, warm in per_shard.items():
            t = ti(name, int(shard))
            if t and t["duration"] is not None:
                in_task.append(float(t["duration"]) - warm)
                if int(shard) == rp.get("cold_shard") and name in rp.get("cold", {}):
                    cold = rp["cold"][name]
                    airflow_only.append(float(t["duration"]) - cold)
                    process.append(cold - warm)

    def mean(xs: list[float]) -> float:
        return sum(xs) / len(xs) if xs else 0.0

    shards = len({t["map_index"] for t in tis})
    med = statistics.median(launch) if launch else 0.0
    return {"shards": shards, "launch_median_s": med, "launch_mean_s": mean(launch),
            "in_task_mean_s": mean(in_task), "airflow_mean_s": mean(airflow_only), "process_mean_s": mean(process),
            "per_shard_s": 5 * mean(in_task), "per_shard_airflow_s": 5 * mean(airflow_only),
            "shard_task_seconds": sum(float(t["duration"] or 0) for t in tis) / max(1, shards),
            "shard_step_seconds": sum(mean(list(v.values())) for v in rp.get("warm", {}).values())}


def push_rate(night: dict[str, Any]) -> dict[str, Any]:
    pushes = [t for t in night["nightly"]["tis"] if t["task_id"] == "shard.push" and t["duration"]]
    created = {b["shard"]: b.get("created_tasks", 0) for b in night["batches"]}
    total_s = sum(float(t["duration"]) for t in pushes)
    total = sum(created.values())
    first = min(pushes, key=lambda t: t["start"] or "") if pushes else None
    return {"created": total, "seconds": total_s, "rate": total / total_s if total_s else 0.0,
            "first_rate": created.get(first["map_index"], 0) / float(first["duration"]) if first else 0.0,
            "first_created": created.get(first["map_index"], 0) if first else 0}


def decide_rate(night: dict[str, Any]) -> dict[str, Any]:
    """Questions judged (accepted + rejected + pending + withdrawn over the night's consensus records, one
    per batch) / seconds of the decide task."""
    secs = sum(float(t["duration"] or 0) for t in night["annotations"]["tis"] if t["task_id"] == "decide")
    n = sum(int(c.get(k) or 0) for c in night["decisions"] for k in ("accepted", "rejected", "pending", "withdrawn"))
    accepted = sum(int(c.get("accepted") or 0) for c in night["decisions"])
    return {"decided": n, "accepted": accepted, "seconds": secs, "rate": n / secs if secs else 0.0}


def fetched(night: dict[str, Any]) -> dict[str, Any]:
    pushed = [b for b in night["batches"] if b.get("project_id")]
    f_push = [int(b["tasks_fetched"]) for b in pushed if "tasks_fetched" in b]  # absent: no counter
    f_dec = [int(c["tasks_fetched"]) for c in night["decisions"] if "tasks_fetched" in c]
    return {"per_push": (sum(f_push) / len(f_push)) if f_push else None,
            "per_push_max": max(f_push) if f_push else None,
            "per_decision": (sum(f_dec) / len(f_dec)) if f_dec else None,
            "per_decision_max": max(f_dec) if f_dec else None,
            "pushes": len(pushed), "decisions": len(f_dec),
            "created_per_push": sum(int(b.get("created_tasks") or 0) for b in pushed) / max(1, len(pushed))}


def peak_rss(night: dict[str, Any]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for dag_id, key in DAG_KEY.items():
        for t in night[key]["tis"]:
            if "ti_rss_mb" in t:
                s = out.setdefault(f"{dag_id}.{t['task_id']}", {"task": 0.0, "ti": 0.0})
                s["task"] = max(s["task"], t["task_rss_mb"])
                s["ti"] = max(s["ti"], t["ti_rss_mb"])
    return out


def fmt_opt(v: float | None, f: str = "{:,.0f}") -> str:
    return "n/a" if v is None else f.format(v)


def report(result: dict[str, Any]) -> list[str]:
    """The tables (markdown-ish, also printed): one column per size, the ratio = last size / first."""
    m = result["machine"]
    nights = result["nights"]  # first night of each size, in size order
    ns = [n["images"] for n in nights]
    qs = ", ".join(f"{n['summary'].get('questions', 0):,}" for n in nights)
    tags = ", ".join(f"{n['release_record'].get('tag')} ({n['release_record'].get('questions')} q)" for n in nights)
    na, nb = ns[0], ns[-1]
    secs = [stage_seconds(n) for n in nights]
    cols = " | ".join(f"@{n:,}" for n in ns)
    sep = "|---" * (len(ns) + 2) + "|"
    lines = [f"machine: {m['cpu']}, {m['cores']} cores, {m['ram_gb']} GB RAM, no GPU; load average at start "
             f"{m['load_at_start']}; other work shared the machine (figures are slower than on an idle one)",
             f"code: commit {result['commit']}"
             f"{' + uncommitted edits in ' + ', '.join(result['dirty']) if result.get('dirty') else ''}; "
             f"shard size {result['shard_size']}; demo profile (annotations backend, program generator, "
             "simulated annotators)",
             f"sizes: {', '.join(f'{n:,}' for n in ns)} images -> "
             f"{qs} questions; releases {tags}",
             "", f"| stage (task, summed over map indexes), s/image | {cols} | ratio @{nb:,} / @{na:,} (<= {LINEAR_TARGET}) |",
             sep]
    tots = [0.0] * len(nights)
    for dag_id, task in STAGE_ORDER:
        key = f"{dag_id}.{task}"
        xs = [sec.get(key, 0.0) / n for sec, n in zip(secs, ns, strict=True)]
        tots = [t + x for t, x in zip(tots, xs, strict=True)]
        ratio = xs[-1] / xs[0] if xs[0] else float("nan")
        flag = "" if task in ("wait", "simulate") else (" OK" if ratio <= LINEAR_TARGET else " OVER")
        lines.append(f"| {key} | {' | '.join(f'{x:.4f}' for x in xs)} | {ratio:.2f}{flag} |")
    work = [t - (sec.get("hopchain_annotations.wait", 0.0) + sec.get("hopchain_annotations.simulate", 0.0)) / n
            for t, sec, n in zip(tots, secs, ns, strict=True)]
    lines.append(f"| all tasks | {' | '.join(f'{t:.4f}' for t in tots)} | {tots[-1] / tots[0]:.2f} |")
    lines.append(f"| **per-image cost**: all tasks but wait and simulate | {' | '.join(f'{t:.4f}' for t in work)} | "
                 f"**{work[-1] / work[0]:.2f}** {'OK' if work[-1] / work[0] <= LINEAR_TARGET else 'OVER'} |")
    for label, key in (("hopchain_nightly run wall (s)", "nightly"), ("hopchain_annotations run wall (s)", "annotations"),
                       ("hopchain_release run wall (s)", "release")):
        ws = [(n[key]["wall_s"] or 0) / n["images"] for n in nights]
        lines.append(f"| {label}, per image | {' | '.join(f'{w:.4f}' for w in ws)} | {ws[-1] / ws[0]:.2f} |")
    if all("wall_s" in n for n in nights):
        ws = [n["wall_s"] / n["images"] for n in nights]
        lines.append(f"| the night's bench wall (upload, 3 DAGs, answers, replay), per image | "
                     f"{' | '.join(f'{w:.4f}' for w in ws)} | {ws[-1] / ws[0]:.2f} |")
    ovs = [overhead(n) for n in nights]
    lines += ["", f"| figure | {cols} | target |", sep]

    def row(label: str, vals: list[str], target: str = "-") -> None:
        lines.append(f"| {label} | {' | '.join(vals)} | {target} |")

    row(f"shards ({result['shard_size']} images)", [str(o["shards"]) for o in ovs])
    row("task seconds per shard (5 task instances)", [f"{o['shard_task_seconds']:.1f}" for o in ovs])
    row("steps' own time per shard, warm replay (4 steps), s", [f"{o['shard_step_seconds']:.1f}" for o in ovs])
    row("launch latency per task (queued -> start), median (mean) s",
        [f"{o['launch_median_s']:.1f} ({o['launch_mean_s']:.1f})" for o in ovs])
    row("in-task overhead per task (Airflow duration - warm replay), mean s", [f"{o['in_task_mean_s']:.1f}" for o in ovs])
    row("**Airflow overhead per mapped shard**: 5 x in-task overhead, s", [f"{o['per_shard_s']:.1f}" for o in ovs])
    rss = [peak_rss(n) for n in nights]
    for label, rr in (("task", "task"), ("task + supervisor", "ti")):
        vs = [max((v[rr] for v in r.values()), default=0) for r in rss]
        ks = [max(r.items(), key=lambda kv: kv[1][rr])[0].split(".", 1)[-1] if r else "-" for r in rss]
        row(f"peak RSS per task worker, {label} (MB)", [f"{v:.0f} ({k})" for v, k in zip(vs, ks, strict=True)],
            f"<= 2048 {'OK' if max(vs) <= RSS_TARGET_MB else 'OVER'}")
    comps = sorted({c for n in nights for c in n.get("components_mb", {})})
    for c in comps:
        row(f"peak RSS, {c} (process tree, MB)", [fmt_opt(n.get("components_mb", {}).get(c)) for n in nights])
    prs = [push_rate(n) for n in nights]
    held, total = [], 0
    for n, pr in zip(nights, prs, strict=True):
        total += int(n.get("filler_before", 0))  # answered filler tasks imported before the night
        held.append(total)
        total += pr["created"]
    row("LS tasks in the project before the night's push", [f"{h:,}" for h in held])
    row("LS tasks in the project after the night", [f"{h + p['created']:,}" for h, p in zip(held, prs, strict=True)])
    row("push, tasks/s (created / push task seconds)", [f"{p['rate']:.0f} ({p['created']:,} tasks)" for p in prs],
        "the same at every size")
    row("push, the night's first push alone, tasks/s", [f"{p['first_rate']:.0f}" for p in prs])
    drs = [decide_rate(n) for n in nights]
    row("decide, questions judged / decide task seconds (judged, accepted)",
        [f"{d['rate']:.0f} ({d['decided']:,}, {d['accepted']:,})" for d in drs], "the same at every size")
    fs = [fetched(n) for n in nights]
    row("LS tasks fetched per push (mean / max)",
        [f"{fmt_opt(f['per_push'])} / {fmt_opt(f['per_push_max'])}" for f in fs],
        "only tasks of its own images (0 when all are new)")
    row("LS tasks fetched per decision (mean / max)",
        [f"{fmt_opt(f['per_decision'])} / {fmt_opt(f['per_decision_max'])}" for f in fs],
        "~ tasks of the batch (" + ", ".join(f"{f['created_per_push']:.0f}" for f in fs) + " created per push)")
    second = result.get("second")
    if second:
        n2 = second["nights"][-1]
        p2 = push_rate(n2)
        f2 = fetched(n2)
        base = push_rate(second["nights"][0])
        before = sum(n["images"] for n in second["nights"][:-1])
        lines += ["", f"Second night: {n2['images']:,} new images, {n2['images'] / before:.0%} of the {before:,} "
                  "released before, "
                  f"after {second.get('filler', {}).get('tasks', 0):,} filler tasks were imported into the project "
                  f"({second.get('filler', {}).get('seconds', 0)} s)", "",
                  "| figure | value | target |", "|---|---|---|"]
        ratio = p2["rate"] / base["rate"] if base["rate"] else float("nan")
        lines.append(f"| push tasks/s: first night (empty project) -> second night (project holding "
                     f"{second.get('filler', {}).get('tasks', 0) + sum(push_rate(n)['created'] for n in second['nights'][:-1]):,} "
                     f"tasks) | {base['rate']:.0f} -> "
                     f"{p2['rate']:.0f} ({ratio:.2f}x; {p2['created']:,} tasks) | the same (~1.0x) |")
        lines.append(f"| LS tasks fetched per push / per decision (second night) | {fmt_opt(f2['per_push'])} / "
                     f"{fmt_opt(f2['per_decision'])} | push: only its images' tasks; decide: the batch ({f2['created_per_push']:.0f}) |")
        d = second.get("dvc")
        if d:
            share = d["push_added_bytes"] / d["first_bytes"] if d["first_bytes"] else float("nan")
            lines.append(f"| dvc push of the second release / first release (bytes) | {d['push_added_bytes'] / MB:.1f} MB / "
                         f"{d['first_bytes'] / MB:.1f} MB = **{share:.1%}** ({d['objects_added']} of "
                         f"{d['objects_1']} + {d['objects_added']} objects new) | <= 10% "
                         f"{'OK' if share <= SHARE_TARGET else 'OVER'} |")
            p = d["pull"]
            pshare = p["added_bytes"] / p["first_bytes"] if p["first_bytes"] else float("nan")
            lines.append(f"| trainer `dvc pull` of {d['tag2']} on top of {d['tag1']} (bytes) | "
                         f"{p['added_bytes'] / MB:.1f} MB / {p['first_bytes'] / MB:.1f} MB = **{pshare:.1%}** "
                         f"({p['second_s']} s vs {p['first_s']} s) | <= 10% {'OK' if pshare <= SHARE_TARGET else 'OVER'} |")
    notes = [n for night in [*nights, *(second or {}).get("nights", [])[1:]] for n in night.get("notes", [])]
    stacks = ", ".join(f"{st['wall_s'] / 60:.1f} min incl. start-up {st['startup_s']:.0f} s" for st in result["stacks"])
    lines += ["", f"whole bench: {result['total_s'] / 60:.1f} min (stacks: {stacks})"]
    if result.get("fallback"):
        lines.append(f"size fallback: {result['fallback']}")
    for n in notes:
        lines.append(f"rerun: {n}")
    return lines


DEFINITIONS = [
    "* **s/image**: Airflow's recorded task-instance durations per task id, summed over map indexes, / images of "
    "the night; *ratio* = larger size / smaller size (1.0 = linear). `wait` is the deferrable wait (time in the "
    "triggerer, no worker), `simulate` the demo's simulated annotators finding the stream already answered (see "
    "below): neither is a per-image cost.",
    "* **Airflow overhead per mapped shard**: 5 x the mean in-task overhead; in-task overhead = Airflow duration - the same step replayed in one warm process right after the "
    "night (detect, segment, questions, validate on the first shard; push is not replayed, its side effects are "
    "not repeatable, and is assumed to carry the same overhead). It is what splitting a shard into 5 task processes "
    "costs over running its steps back to back in one process. It splits into a fresh process's own cost (the step "
    "replayed alone in a new Python process, imports included, minus the warm replay) and Airflow's own (duration "
    "minus that cold replay: task runner, DAG parse, connections through the API server, XCom, state updates; "
    "one sample per step, so it is noisy and can come out below 0). The launch latency `start_date - queued_when` "
    "is shown beside it, not added: with more shards than the 2 executor slots (`airflow_parallelism: 2`) it is "
    "mostly waiting for a free slot (~0.1 s when one is free).",
    "* **per-image cost**: the sum of the stages' s/image without `wait` and `simulate`; its ratio (last size / "
    "first) is the linearity target (<= 1.2).",
    "* **Peak RSS per task worker**: LocalExecutor task process (and with its supervisor), sampled every 0.2 s. "
    "**Peak RSS per component**: each service process with all its descendants except task-instance processes "
    "(so `scheduler` is the scheduler and its executor's idle workers), sampled every 1 s, peak per night.",
    "* **decide rate**: questions judged (accepted + rejected + pending + withdrawn, over the consensus records the "
    "night's `hopchain_annotations` run wrote) / seconds of its `decide` task.",
    "* **LS tasks in the project**: tasks the earlier nights created plus any answered filler tasks imported before "
    "the night (counted in the row).",
    "* **Push tasks/s**: tasks created / seconds of the push task instances (Airflow durations, overhead included).",
    "* **Tasks fetched**: the `tasks_fetched` counters of the ledger's batch (push) and consensus (decide) records.",
    "* **Simulated annotators**: the bench writes their answers (same seeded decisions and error rate as "
    "`pipelines.annotation.simulated`) into Label Studio's database in bulk while `hopchain_annotations` is paused, "
    "because through `/next` they answer ~4 tasks/s here (80,000 answers at 5,000 images); `wait` and `decide` "
    "then read them through the API as usual.",
    "* **DVC shares**: bytes of the objects the second release added to the DVC remote / bytes the first release "
    "put there; and bytes a trainer's clone adds to its DVC cache by `git checkout <tag 2> && dvc pull` after "
    "`git checkout <tag 1> && dvc pull` / bytes of that first pull (inputs snapshot included: what `dvc pull` fetches).",
]


def write_results(path: Path, lines: list[str], command: str) -> None:
    title = "## Nightly at scale (bench/scale.py)"
    body = [f"* {ln}" if ln and not ln.startswith(("|", "Second night")) else ln for ln in lines]
    section = [title, "", f"`{command}`", "", *body, "", *DEFINITIONS, ""]
    text = path.read_text() if path.exists() else "# Benchmark results\n"
    if title in text:
        head, _, rest = text.partition(title)
        nxt = rest.find("\n## ")
        text = head + "\n".join(section) + ("\n" + rest[nxt + 1:] if nxt >= 0 else "\n")
    elif "\n## Notes" in text:
        head, _, rest = text.partition("\n## Notes")
        text = head + "\n" + "\n".join(section) + "\n## Notes" + rest
    else:
        text = text.rstrip("\n") + "\n\n" + "\n".join(section) + "\n"
    path.write_text(text)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1000,5000", help="image counts, comma-separated (two, or more with --one-stack)")
    ap.add_argument("--deadline", help="UTC HH:MM: with --one-stack, shrink the last size to what the night before "
                                       "it says ends by then")
    ap.add_argument("--shard-size", type=int, default=250)
    ap.add_argument("--extra", type=float, default=0.05, help="second night: this share of new images (0: none)")
    ap.add_argument("--filler", type=int, default=50_000, help="extra LS tasks before the second night")
    ap.add_argument("--grow-filler", type=int, default=0,
                    help="with --one-stack: answered filler tasks imported after the first size (the later sizes "
                         "push into a project this much larger)")
    ap.add_argument("--timeout", type=float, default=3600, help="seconds per DAG run")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--results", type=Path, help="write the section into this RESULTS.md")
    ap.add_argument("--keep-home", action="store_true")
    ap.add_argument("--render", type=Path, help="print (and --results: write) the table of a saved JSON result")
    ap.add_argument("--replay", help=argparse.SUPPRESS)
    ap.add_argument("--cold", help=argparse.SUPPRESS)
    ap.add_argument("--budget-min", type=float, default=35.0,
                    help="if the larger size's stack would take longer (extrapolated linearly from the smaller), "
                         "use --fallback instead")
    ap.add_argument("--fallback", type=int, default=2500)
    ap.add_argument("--one-stack", action="store_true",
                    help="both sizes and the second night on one stack (no second start-up); the second night "
                         "adds --extra of all images released before it")
    args = ap.parse_args()
    if args.replay:
        return replay(args.replay, args.cold)
    if args.render:
        return render(from_partial(json.loads(args.render.read_text()), args), args)

    import signal

    # stop the stacks (finally-blocks) on SIGTERM too, and on SIGINT even when started in the background
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    signal.signal(signal.SIGINT, signal.default_int_handler)
    os.environ["HOPCHAIN_PROFILE"] = "demo"
    WORK.mkdir(parents=True, exist_ok=True)
    sizes = [int(s) for s in args.sizes.split(",")]
    extra = int(round(max(sizes[-1], args.fallback) * args.extra))
    t_start = time.monotonic()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                            text=True).stdout.strip()
    dirty = [ln[3:] for ln in subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO,
                                             capture_output=True, text=True).stdout.splitlines()]
    result: dict[str, Any] = {
        "machine": {"cpu": cpu_model(), "cores": os.cpu_count(), "ram_gb": round(psutil.virtual_memory().total / 1e9, 1),
                    "load_at_start": " ".join(f"{x:.1f}" for x in os.getloadavg())},
        "commit": commit, "dirty": dirty, "argv": sys.argv[1:], "shard_size": args.shard_size, "sizes": sizes, "nights": [], "stacks": []}
    folder = image_cache(max(sizes[-1], args.fallback) + extra if not args.one_stack
                         else int(round(sum(sizes) * (1 + args.extra))) + 1)
    index = json.loads((folder / "index.json").read_text())
    if args.one_stack:
        plan, at = [], 0
        for n in sizes:  # each size its own images, pushed into the project holding the sizes before it
            plan.append((f"{n:,} images", f"scale-{n}", index[at:at + n]))
            at += n
        extra = int(round(at * args.extra))
        if extra:
            plan.append((f"+{extra:,} images (second night)", f"scale-{sizes[-1]}-plus", index[at:at + extra]))
        log(f"=== one stack: {', '.join(p[0] for p in plan)}")
        t_stack = time.monotonic()
        out = run_stack(plan, folder, args, args.filler if extra else 0)
        result["stacks"].append({"startup_s": out["startup_s"], "wall_s": time.monotonic() - t_stack})
        result["nights"] = out["nights"][:len(sizes)]
        result["fallback"] = out.get("fallback")
        if extra:
            result["second"] = out
        sizes = []
    for i in range(len(sizes)):
        n = sizes[i]
        last = i == len(sizes) - 1
        if last and i > 0:
            prev = result["stacks"][-1]
            estimate = prev["startup_s"] + (prev["wall_s"] - prev["startup_s"]) * n / sizes[i - 1]
            log(f"the {n:,}-image stack would take ~{estimate / 60:.0f} min (linear from the {sizes[i - 1]:,} one)")
            if estimate > args.budget_min * 60 and args.fallback < n:
                result["fallback"] = (f"{n:,} images were estimated at {estimate / 60:.0f} min (over "
                                      f"{args.budget_min:.0f}); ran {args.fallback:,} instead")
                log(result["fallback"])
                n = sizes[i] = args.fallback
        extra = int(round(n * args.extra))
        plan = [(f"{n:,} images", f"scale-{n}", index[:n])]
        if last and extra:
            plan.append((f"+{extra:,} images (second night)", f"scale-{n}-plus", index[n:n + extra]))
        log(f"=== stack {i + 1}/{len(sizes)}: {', '.join(p[0] for p in plan)}")
        t_stack = time.monotonic()
        out = run_stack(plan, folder, args, args.filler if (last and extra) else 0)
        result["stacks"].append({"startup_s": out["startup_s"], "wall_s": time.monotonic() - t_stack})
        result["nights"].append(out["nights"][0])
        if len(out["nights"]) > 1:
            result["second"] = out
    result["total_s"] = time.monotonic() - t_start
    (WORK / "scale-last.json").write_text(json.dumps(result, indent=1, default=str))  # --render re-reads it
    if args.json:
        args.json.write_text(json.dumps(result, indent=1, default=str))
    return render(result, args)


def from_partial(saved: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """A saved result as ``render`` takes it; ``scale-partial.json`` (the nights a cut-off run finished,
    without the run's header) gets one made from this machine and the command line given."""
    if "machine" in saved:
        return saved
    nights = [n for n in saved["nights"] if not str(n["label"]).startswith("+")]
    return {"machine": {"cpu": cpu_model(), "cores": os.cpu_count(),
                        "ram_gb": round(psutil.virtual_memory().total / 1e9, 1), "load_at_start": "n/a"},
            "commit": "n/a", "dirty": [], "argv": ["(partial)", *sys.argv[1:]], "shard_size": args.shard_size,
            "sizes": [n["images"] for n in nights], "nights": nights,
            "stacks": [{"startup_s": saved.get("startup_s", 0), "wall_s": sum(n.get("wall_s", 0) for n in nights)}],
            "total_s": sum(n.get("wall_s", 0) for n in nights), "fallback": saved.get("fallback")}


def render(result: dict[str, Any], args: argparse.Namespace) -> int:
    lines = report(result)
    print()
    print("\n".join(lines))
    print()
    print("\n".join(DEFINITIONS))
    if args.results:
        cmd = ".venv/bin/python bench/scale.py " + " ".join(a for a in result.get("argv", []))
        write_results(args.results, lines, cmd)
        print(f"\nwrote the section into {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
