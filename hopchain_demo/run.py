"""``hopchain-demo run``: a nightly build through the real Airflow scheduler on the local stack.

Starts the stack if needed, seeds the sample images (with instance annotations) into the object
store, unpauses the DAGs, triggers ``hopchain_nightly`` through the REST API, lets the simulated
annotators answer (demo profile only), waits for ``hopchain_release`` and prints the tag, the URLs
and what a trainer runs. Progress is printed while it waits.
"""

from __future__ import annotations

import mimetypes
import tempfile
import time
from pathlib import Path
from typing import Any

from pipelines.config import Params
from pipelines.ops.airflow_api import AirflowAPI, AirflowAPIError
from pipelines.stack import LocalStack, StackError
from pipelines.stack.services import AIRFLOW_COMPONENTS

DAGS = ("hopchain_nightly", "hopchain_annotations", "hopchain_release", "hopchain_labeling")
DEMO_INPUT = "demo"


class Progress:
    def __init__(self, quiet: bool = False) -> None:
        self.t0 = time.monotonic()
        self._last = ""
        self.quiet = quiet

    def __call__(self, msg: str, force: bool = False) -> None:
        if (msg != self._last or force) and not self.quiet:
            print(f"[{time.monotonic() - self.t0:6.0f}s] {msg}", flush=True)
            self._last = msg


def seed_samples(stack: LocalStack, params: Params, count: int = 24) -> int:
    """Upload the demo images + COCO instances to ``inputs/demo/`` (idempotent)."""
    from hopchain_demo.samples import write_samples
    from pipelines.store import ObjectStore, S3Credentials
    from pipelines.store.layout import BucketLayout

    creds = stack.s3.credentials()
    store = ObjectStore(S3Credentials(creds["endpoint"], creds["access_key"], creds["secret_key"]),
                        params.store.bucket)
    layout = BucketLayout(params.store)
    present = set(store.list(layout.input_prefix(DEMO_INPUT) + "/"))
    with tempfile.TemporaryDirectory() as tmp:
        coco = write_samples(tmp, count)
        files = [coco, *sorted((Path(tmp) / "images").iterdir())]
        uploaded = 0
        for f in files:
            key = layout.input_key(DEMO_INPUT, str(f.relative_to(tmp)))
            if key in present and f.name != "instances.json":
                continue
            store.put_bytes(key, f.read_bytes(), mimetypes.guess_type(f.name)[0] or "application/octet-stream")
            uploaded += 1
    return len(files)


def _task_summary(api: AirflowAPI, dag_id: str, run_id: str) -> str:
    tis = api.task_instances(dag_id, run_id)
    counts: dict[str, int] = {}
    for ti in tis:
        state = ti.get("state") or "scheduled"
        counts[state] = counts.get(state, 0) + 1
    return ", ".join(f"{k}={v}" for k, v in sorted(counts.items()))


def _failed_tasks(api: AirflowAPI, dag_id: str, run_id: str) -> list[str]:
    return [f"{ti['task_id']}[{ti.get('map_index', -1)}]" for ti in api.task_instances(dag_id, run_id)
            if ti.get("state") in ("failed", "upstream_failed")]


def _repair_demo_project(stack: LocalStack, params: Params, progress: Any) -> None:
    """The demo stack is its operator's own: a project left by an earlier version of the platform (other
    settings, instructions) would hold every batch, so the demo puts it back as the platform sets it
    (what an operator does with `hopchain project repair` after looking) and says what it changed."""
    from pipelines.annotation.client import LabelStudioClient
    from pipelines.annotation.guard import expected_state, hold_reason, repair_project

    cfg = params.annotation
    ls = stack.labelstudio.credentials()
    with LabelStudioClient(stack.labelstudio.url(), ls["token"]) as client:
        project = client.find_project(cfg.project_title)
        if project is None:
            return
        changed = repair_project(client, int(project["id"]),
                                 expected_state(cfg.project_title, cfg.annotators_required, cfg.handout))
    if changed:
        progress(f"repaired the demo's Label Studio project: {hold_reason(changed, int(project['id']))}")


def run_demo(params: Params, timeout_s: float = 840.0, images: int = 24, stack: LocalStack | None = None,
             quiet: bool = False) -> dict[str, Any]:
    progress = Progress(quiet)
    stack = stack or LocalStack(params)
    if stack.running_services():
        bad = [s.name for s in stack.status() if not s.healthy]
        if bad:
            raise StackError(f"the local stack is running but unhealthy ({', '.join(bad)}); "
                             "run `make down` and try again")
        running_profile = (stack.airflow.env().get("HOPCHAIN_PROFILE") or "base")
        progress(f"using the running stack at {stack.home}")
        if stack.airflow.code_changed():
            # its processes keep the modules they imported when they started: old code, or a mix
            progress("the platform's code changed since Airflow started: restarting its components ...")
            stack.airflow.restart(AIRFLOW_COMPONENTS)
        if params.profile != "base" and running_profile != params.profile:
            progress(f"note: stack was configured for profile {running_profile!r}")
    else:
        progress("starting the local stack (first start runs migrations: ~1 min) ...")
        stack.up(log=lambda m: progress(m.strip()))
    n = seed_samples(stack, params, images)
    progress(f"seeded {n} sample files into s3://{params.store.bucket}/{params.store.inputs_prefix}/{DEMO_INPUT}/")
    _repair_demo_project(stack, params, progress)

    creds = stack.airflow.credentials()
    api = AirflowAPI(creds["url"], creds["username"], creds["password"])
    progress("waiting for the dag-processor to parse the DAGs ...")
    api.wait_for_dags(list(DAGS), timeout_s=240)
    before = {d: {r["dag_run_id"] for r in api.dag_runs(d)} for d in DAGS}
    for d in DAGS:
        api.unpause(d)
    run = api.trigger("hopchain_nightly", conf={"input_prefix": DEMO_INPUT, "profile": params.profile
                                                if params.profile != "base" else ""})
    run_id = run["dag_run_id"]
    progress(f"triggered hopchain_nightly run {run_id}")
    deadline = time.monotonic() + timeout_s

    def wait(dag_id: str, rid: str) -> None:
        def poll(r: dict[str, Any]) -> None:
            progress(f"{dag_id}: {r['state']} ({_task_summary(api, dag_id, rid)})")

        result = api.wait_for_run(dag_id, rid, max(5.0, deadline - time.monotonic()), on_poll=poll, interval_s=5)
        if result["state"] != "success":
            raise AirflowAPIError(f"{dag_id} run {rid} {result['state']}: failed tasks "
                                  f"{_failed_tasks(api, dag_id, rid)} (see the Airflow UI, {creds['url']})")

    wait("hopchain_nightly", run_id)
    for dag_id in ("hopchain_annotations", "hopchain_release"):
        progress(f"waiting for {dag_id} (scheduled by its Asset) ...")
        new = api.wait_for_new_run(dag_id, before[dag_id], max(5.0, deadline - time.monotonic()))
        wait(dag_id, new["dag_run_id"])
    release = _release_record(stack, params)
    result = {
        "tag": release.get("tag"),
        "registry": release.get("registry"),
        "questions": release.get("questions"),
        "images": release.get("images"),
        "airflow": creds["url"],
        "plugin_page": f"{creds['url']}/hopchain/",
        "label_studio": stack.labelstudio.url(),
        "s3": stack.s3.url(),
        "elapsed_s": round(time.monotonic() - progress.t0, 1),
        "nightly_run_id": run_id,
    }
    if not quiet:
        _print_result(result, stack)
    return result


def _release_record(stack: LocalStack, params: Params) -> dict[str, Any]:
    from pipelines.store import ObjectStore, S3Credentials
    from pipelines.store.ledger import Ledger

    c = stack.s3.credentials()
    store = ObjectStore(S3Credentials(c["endpoint"], c["access_key"], c["secret_key"]), params.store.bucket)
    latest = Ledger(store, params.store).latest_release()
    return latest.to_json() if latest else {}


def _print_result(r: dict[str, Any], stack: LocalStack) -> None:
    print()
    print(f"Release {r['tag']}: {r['questions']} accepted questions over {r['images']} images "
          f"(demo finished in {r['elapsed_s']:.0f}s)")
    print()
    print("Look at:")
    print(f"  Airflow UI        {r['airflow']}   (user/password in {stack.airflow.credentials_file()})")
    print(f"  HopChain page     {r['plugin_page']}   (Browse → HopChain in the UI)")
    print(f"  Label Studio      {r['label_studio']}   (login in {stack.labelstudio.credentials_file()})")
    print(f"  S3 server         {r['s3']}   (keys in {stack.s3.credentials_file()})")
    print()
    print("A trainer gets this release with (S3 keys as AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY):")
    print(f"  git clone {r['registry']} hopchain-data && cd hopchain-data")
    print(f"  git checkout {r['tag']} && dvc pull")
    print()
    print("Stop the stack with `make down`.")
