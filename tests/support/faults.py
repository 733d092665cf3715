"""Helpers of the fault-injection tests: reach the services of a running stack, kill a process by its
recorded pid, and keep the shared stack's DAG state as the tests found it.

Processes are only ever signalled by a pid the stack recorded (``ManagedProcess``) or a pid found
among that process's own descendants; nothing is looked up by name.
"""

from __future__ import annotations

import io
import os
import signal
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import psutil
import pyarrow.parquet as pq

from pipelines.annotation.client import LabelStudioClient
from pipelines.ops.airflow_api import AirflowAPI
from pipelines.stack.process import ManagedProcess
from pipelines.store import ObjectStore, S3Credentials


def stack_store(stack: Any, bucket: str | None = None) -> ObjectStore:
    c = stack.s3.credentials()
    return ObjectStore(S3Credentials(c["endpoint"], c["access_key"], c["secret_key"]),
                       bucket or stack.params.store.bucket)


def ls_client(label_studio: Any, **kw: Any) -> LabelStudioClient:
    """Admin client of a :class:`pipelines.stack.services.LabelStudio` service."""
    c = label_studio.credentials()
    return LabelStudioClient(c["url"], c["token"], **kw)


def airflow_api(stack: Any) -> AirflowAPI:
    c = stack.airflow.credentials()
    return AirflowAPI(c["url"], c["username"], c["password"])


def set_paused(api: AirflowAPI, dag_id: str, paused: bool) -> None:
    api.request("PATCH", f"/dags/{dag_id}", json={"is_paused": paused})


@contextmanager
def dags_paused(api: AirflowAPI, dag_ids: Iterable[str]) -> Iterator[None]:
    """Pause DAGs for the block (a paused asset-scheduled DAG is not queued), then restore their state."""
    dag_ids = list(dag_ids)
    before = {d: bool(api.request("GET", f"/dags/{d}")["is_paused"]) for d in dag_ids}
    for d in dag_ids:
        set_paused(api, d, True)
    try:
        yield
    finally:
        for d, was in before.items():
            set_paused(api, d, was)


def kill_group(proc: ManagedProcess) -> int:
    """SIGKILL the process group of a recorded process (a crash: no clean shutdown), reap it.
    Returns the pid that was killed."""
    p = proc.process()
    assert p is not None, f"{proc.name} is not running"
    pid = p.pid
    members = [p, *p.children(recursive=True)]
    os.killpg(pid, signal.SIGKILL)
    for m in members:  # children that left the group are still the component's: kill them by pid
        try:
            m.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(members, timeout=15)
    _reap(pid)
    assert not proc.running()
    return pid


def kill_pid(pid: int) -> None:
    """SIGKILL one process (found by recorded pid or among its descendants) and reap it if ours."""
    os.kill(pid, signal.SIGKILL)
    try:
        psutil.Process(pid).wait(timeout=15)
    except psutil.NoSuchProcess:
        pass
    _reap(pid)


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:  # not our child: its parent reaps it
        pass


def wait_for(check: Callable[[], Any], timeout_s: float, what: str, interval_s: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}")
        time.sleep(interval_s)


def task_instance(api: AirflowAPI, dag_id: str, run_id: str, task_id: str,
                  map_index: int = -1) -> dict | None:
    for ti in api.task_instances(dag_id, run_id):
        if ti["task_id"] == task_id and int(ti.get("map_index", -1)) == map_index:
            return ti
    return None


def read_objects(store: ObjectStore, prefix: str) -> dict[str, bytes]:
    """Every object under ``prefix``, keyed by the key relative to it."""
    return {k[len(prefix):]: store.get_bytes(k) for k in store.list(prefix)}


def parquet_rows(data: bytes) -> list[dict[str, Any]]:
    """The rows of a Parquet object; raises if the bytes are not one complete Parquet file."""
    return pq.read_table(io.BytesIO(data)).to_pylist()
