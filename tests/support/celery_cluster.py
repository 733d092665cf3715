"""Test helpers for the Celery scale-out: Debian's redis-server and Airflow on the CeleryExecutor.

Nothing is installed at test time. :class:`RedisServer` runs ``/usr/bin/redis-server`` (Debian
package ``redis-server``) on a free 127.0.0.1 port with its own config file, no persistence and no
daemonising; it is stopped by the pid we recorded. :class:`CeleryAirflow` is the local stack's
:class:`~pipelines.stack.services.Airflow` service switched to the CeleryExecutor, plus its Celery
workers (by default one per queue, ``default`` and ``gpu``), each with ``--concurrency 1`` and its own
Celery node name. The task instance ``hostname`` of a task is the name of the worker that ran it (each worker
process gets its own ``[core] hostname_callable``), so a test can assert task placement.

Usage (a scale-out test; ``s3_server``/``label_studio`` are the session fixtures of conftest)::

    from tests.support.celery_cluster import celery_cluster

    with celery_cluster(tmp_path, s3_server.credentials(), label_studio.credentials(),
                        triggerer=True) as cluster:          # the repository's dags/
        run_id = cluster.trigger("hopchain_nightly", conf={"input_prefix": "inputs/demo"})
        assert cluster.wait_for_run("hopchain_nightly", run_id, 600) == "success"
        assert cluster.hostnames_by_queue("hopchain_nightly", run_id) == {
            "gpu": {"worker-gpu"}, "default": {"worker-default"}}

Worker processes run with ``HOPCHAIN_PROFILE`` from the test's environment (see ``for_test``).

Scale-out as production does it (``docker/compose.yaml``: ``airflow-worker-default`` on ``default`` and N
identical ``airflow-worker-gpu[-k]`` on ``gpu``, concurrency 1 each) is ``workers=gpu_scale_out(2)``; a
worker can be left stopped at start (``start_workers``) and started later (:meth:`CeleryAirflow.start_worker`).
``heartbeat_timeout_s``/``retry_delay_s`` lower what recovers a task whose worker died: the scheduler fails a
running task instance whose heartbeat is older than ``[scheduler] task_instance_heartbeat_timeout`` and
Airflow's retry sends it to the queue again, where a live worker takes it.
"""

from __future__ import annotations

import json
import re
import shutil
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from hopchain_airflow.dag_defaults import RETRY_DELAY_ENV
from pipelines.config import Params, load_params
from pipelines.ops.airflow_api import AirflowAPI
from pipelines.stack.process import ManagedProcess, StackError, free_port, port_in_use, wait_until
from pipelines.stack.services import REPO_ROOT, VENV_BIN, Airflow, base_env

REDIS_SERVER = Path("/usr/bin/redis-server")
CELERY_QUEUES: tuple[str, ...] = ("default", "gpu")

# Imported by each Celery worker's task processes through [core] hostname_callable: the task
# instance's ``hostname`` becomes the worker's name instead of the (shared) machine name.
_HOSTNAME_MODULE = '''"""Written by tests/integration/celery_cluster.py: TI hostname = worker name."""
import os


def worker_hostname() -> str:
    return os.environ["HOPCHAIN_CELERY_WORKER_NAME"]
'''


@dataclass(frozen=True)
class WorkerSpec:
    """One ``airflow celery worker`` process: its name (Celery node ``<name>@<host>`` and the ``hostname``
    of every task instance it runs), the queues it consumes and its pool size."""

    name: str
    queues: tuple[str, ...]
    concurrency: int = 1


def one_worker_per_queue(queues: Iterable[str] = CELERY_QUEUES) -> tuple[WorkerSpec, ...]:
    """``worker-<queue>`` for each queue (the smoke tests' topology)."""
    return tuple(WorkerSpec(f"worker-{q}", (q,)) for q in queues)


def gpu_scale_out(gpu_workers: int = 2) -> tuple[WorkerSpec, ...]:
    """Production's scale-out: one ``default`` worker and ``gpu_workers`` identical ``gpu`` workers
    (``worker-gpu-1``, ``worker-gpu-2``, ...), each ``--concurrency 1`` like compose's GPU workers."""
    return (WorkerSpec("worker-default", ("default",)),
            *(WorkerSpec(f"worker-gpu-{i}", ("gpu",)) for i in range(1, gpu_workers + 1)))


#: The task instance of a workload line in a worker log (``ExecuteTask(... ti=TaskInstance(...)``).
_WORKLOAD = re.compile(r"task_id='(?P<task>[^']+)'.*?try_number=(?P<try>\d+).*?map_index=(?P<map>-?\d+)")


def redis_available() -> bool:
    return REDIS_SERVER.exists()


@dataclass
class RedisServer:
    """Debian's ``redis-server`` on 127.0.0.1:<free port>, no persistence, stopped by pid."""

    home: Path
    port: int = 0
    process: ManagedProcess = field(init=False)

    def __post_init__(self) -> None:
        self.home = Path(self.home)
        self.port = self.port or free_port()
        self.process = ManagedProcess("redis", self.home)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def config_file(self) -> Path:
        conf = self.home / "redis.conf"
        conf.write_text(
            "\n".join(
                [
                    "bind 127.0.0.1",
                    f"port {self.port}",
                    "protected-mode yes",
                    "daemonize no",
                    'save ""',
                    "appendonly no",
                    f"dir {self.home}",
                    "loglevel warning",
                    "databases 4",
                    "",
                ]
            )
        )
        return conf

    def start(self, timeout_s: float = 20.0) -> None:
        if not redis_available():
            raise StackError(f"{REDIS_SERVER} is missing: apt-get install redis-server")
        if port_in_use(self.port):
            raise StackError(f"port {self.port} on 127.0.0.1 is already in use")
        self.home.mkdir(parents=True, exist_ok=True)
        # Flags repeat the config file's safety settings so nothing else can widen them.
        cmd = [str(REDIS_SERVER), str(self.config_file()), "--bind", "127.0.0.1", "--port", str(self.port),
               "--save", "", "--daemonize", "no"]
        self.process.start(cmd, base_env(), cwd=self.home)
        wait_until(self.ping, timeout_s, 0.1, what=f"redis-server on 127.0.0.1:{self.port}")

    def ping(self) -> bool:
        tail = self.process.exited_early()
        if tail is not None:
            raise StackError(f"redis-server exited during start-up:\n{tail}")
        import redis

        return bool(redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=1).ping())

    def stop(self) -> bool:
        return self.process.stop(timeout_s=10)

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class CeleryAirflow(Airflow):
    """The local Airflow service on the CeleryExecutor with its Celery workers.

    Components: api-server (tasks reach the execution API there), scheduler, dag-processor,
    triggerer (only with ``triggerer=True``) and, per :class:`WorkerSpec`, ``airflow celery worker
    --queues Q[,Q] --concurrency C --celery-hostname <name>@<host> --skip-serve-logs`` (default: one
    worker per queue in ``queues``). Broker: ``broker_url`` (Redis); result backend:
    ``db+sqlite:///<home>/celery-results.db``. The ``gpu`` pool gets as many slots as there are workers
    on the ``gpu`` queue (the pool caps concurrent GPU tasks, one per GPU worker).
    """

    def __init__(self, params: Params, home: Path, broker_url: str, *, dags_folder: Path | None = None,
                 queues: tuple[str, ...] = CELERY_QUEUES, workers: Sequence[WorkerSpec] | None = None,
                 triggerer: bool = False, heartbeat_timeout_s: int | None = None,
                 retry_delay_s: float | None = None):
        super().__init__(params, home)
        self.broker_url = broker_url
        self.dags_folder = Path(dags_folder) if dags_folder else REPO_ROOT / "dags"
        self.worker_specs = {w.name: w for w in (workers or one_worker_per_queue(queues))}
        self.queues = tuple(dict.fromkeys(q for w in self.worker_specs.values() for q in w.queues))
        self.heartbeat_timeout_s = heartbeat_timeout_s
        self.retry_delay_s = retry_delay_s
        self.components = ["api-server", "scheduler", "dag-processor"] + (["triggerer"] if triggerer else [])
        self.processes = [ManagedProcess(f"airflow-{c}", home) for c in self.components]
        self.workers = {name: ManagedProcess(f"celery-{name}", home) for name in self.worker_specs}
        self.started_workers: set[str] = set()
        self.processes += list(self.workers.values())

    @classmethod
    def for_test(cls, home: Path, broker_url: str, **kwargs: Any) -> CeleryAirflow:
        """The repository's params.yaml (``HOPCHAIN_PROFILE`` honoured) with a free api-server port and a
        ``gpu`` pool of one slot per ``gpu`` worker."""
        params = load_params(REPO_ROOT / "params.yaml")
        ports = params.stack.ports.model_copy(update={"airflow": free_port()})
        workers = kwargs.get("workers") or one_worker_per_queue(kwargs.get("queues", CELERY_QUEUES))
        gpu_slots = max(1, sum(1 for w in workers if "gpu" in w.queues))
        stack = params.stack.model_copy(update={"ports": ports, "gpu_slots": gpu_slots})
        params = params.model_copy(update={"stack": stack})
        return cls(params, Path(home), broker_url, **kwargs)

    @property
    def result_backend(self) -> str:
        return f"db+sqlite:///{self.airflow_home / 'celery-results.db'}"

    def env(self) -> dict[str, str]:
        env = super().env()
        env.update(
            {
                "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
                "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags_folder),
                "AIRFLOW__CELERY__BROKER_URL": self.broker_url,
                "AIRFLOW__CELERY__RESULT_BACKEND": self.result_backend,
                "AIRFLOW__CELERY__WORKER_CONCURRENCY": "1",
                "AIRFLOW__OPERATORS__DEFAULT_QUEUE": "default",
                "AIRFLOW__CELERY__WORKER_ENABLE_REMOTE_CONTROL": "True",
                "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
                "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
                # as docker/compose.yaml: a message a dead worker held is NOT redelivered for a day, so
                # recovery goes through the task heartbeat below, never a second copy of a running task
                "AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__VISIBILITY_TIMEOUT": "86400",
                # Only the runs a test triggers: unpausing the cron-scheduled nightly would otherwise also
                # start its latest scheduled run (over the default input prefix) ahead of the test's own.
                "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
            }
        )
        if self.heartbeat_timeout_s is not None:
            # The scheduler fails a running task instance whose supervisor has not heartbeaten for this
            # long (default 300 s) and checks every 2 s (default 10 s); the supervisor heartbeats every
            # [workers] min_heartbeat_interval (5 s), so the timeout must stay well above that.
            env["AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT"] = str(self.heartbeat_timeout_s)
            env["AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL"] = "2"
        if self.retry_delay_s is not None:
            env[RETRY_DELAY_ENV] = str(self.retry_delay_s)  # read by the DAG files (dag_defaults)
        return env

    def worker_env(self, name: str) -> dict[str, str]:
        env = self.env()
        env["HOPCHAIN_CELERY_WORKER_NAME"] = name
        env["AIRFLOW__CORE__HOSTNAME_CALLABLE"] = "hopchain_celery_hostname.worker_hostname"
        extra = str(self.airflow_home / "pythonpath")
        env["PYTHONPATH"] = f"{extra}:{env['PYTHONPATH']}" if env.get("PYTHONPATH") else extra
        return env

    def start(self, start_workers: Iterable[str] | None = None) -> None:  # type: ignore[override]
        """Start the components and the named workers (all by default; the others stay stopped until
        :meth:`start_worker`)."""
        self.airflow_home.mkdir(parents=True, exist_ok=True)
        pythonpath = self.airflow_home / "pythonpath"
        pythonpath.mkdir(exist_ok=True)
        (pythonpath / "hopchain_celery_hostname.py").write_text(_HOSTNAME_MODULE)
        env = self.env()
        port = str(self.params.stack.ports.airflow)
        args = {
            "api-server": ["api-server", "--host", "127.0.0.1", "--port", port, "--workers", "1"],
            "scheduler": ["scheduler", "--skip-serve-logs"],
            "dag-processor": ["dag-processor"],
            "triggerer": ["triggerer", "--skip-serve-logs"],
        }
        airflow = str(VENV_BIN / "airflow")
        # self.processes lists the components first, then the workers (started below)
        for comp, proc in zip(self.components, self.processes, strict=False):
            proc.start([airflow, *args[comp]], env, cwd=self.airflow_home)
        for name in self.worker_specs if start_workers is None else start_workers:
            self.start_worker(name)

    def start_worker(self, name: str) -> int:
        """Start the worker ``name`` (its own process group, recorded pid); returns its pid."""
        spec = self.worker_specs[name]
        self.started_workers.add(name)
        return self.workers[name].start(
            [str(VENV_BIN / "airflow"), "celery", "worker", "--queues", ",".join(spec.queues),
             "--concurrency", str(spec.concurrency), "--celery-hostname", f"{name}@%h", "--skip-serve-logs"],
            self.worker_env(name), cwd=self.airflow_home,
        )

    def started_processes(self) -> list[ManagedProcess]:
        """The components and the workers started so far (a worker left for later has no process yet, which
        is not an early exit)."""
        expected = [p for p in self.processes if p not in self.workers.values()]
        return expected + [self.workers[name] for name in sorted(self.started_workers)]

    def wait_workers(self, timeout_s: float = 120.0) -> None:
        """Until every running worker answers a Celery ping."""
        wait_until(self.workers_ready, timeout_s, 1.0, what="the Celery workers to answer a ping")

    def running_workers(self) -> list[str]:
        return [name for name, proc in self.workers.items() if proc.running()]

    def healthy(self) -> bool:
        r = httpx.get(f"{self.url()}/api/v2/monitor/health", timeout=5)
        if r.status_code != 200:
            return False
        h = r.json()
        ok = h.get("metadatabase", {}).get("status") == "healthy" and \
            (h.get("scheduler") or {}).get("status") == "healthy"
        return ok and self.workers_ready()

    def workers_ready(self) -> bool:
        """Every running worker answers a Celery ping on the broker (the provider's own Celery app)."""
        names = {f"{name}@" for name in self.running_workers()}
        from celery import Celery

        app = Celery(broker=self.broker_url)
        try:
            replies = app.control.ping(timeout=1.0) or []
        finally:
            app.close()
        seen = {name.split("@", 1)[0] + "@" for reply in replies for name in reply}
        return names <= seen

    def stop(self, timeout_s: float = 30.0) -> list[str]:
        # Workers first (a warm shutdown finishes the running task), then the rest.
        stopped = [p.name for p in self.workers.values() if p.stop(timeout_s)]
        stopped += [p.name for p in self.processes if p not in self.workers.values() and p.stop(timeout_s)]
        return stopped

    # -- driving a DAG through the REST API -------------------------------------------------------
    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token()}"}

    def wait_for_dag(self, dag_id: str, timeout_s: float = 120.0) -> None:
        """Until the dag-processor has serialised ``dag_id`` (then unpause it)."""
        headers = self._headers()

        def parsed() -> bool:
            r = httpx.get(f"{self.url()}/api/v2/dags/{dag_id}", headers=headers, timeout=10)
            return r.status_code == 200

        wait_until(parsed, timeout_s, 1.0, what=f"DAG {dag_id} to be parsed")
        r = httpx.patch(f"{self.url()}/api/v2/dags/{dag_id}", headers=headers, json={"is_paused": False},
                        timeout=10)
        r.raise_for_status()

    def trigger(self, dag_id: str, conf: dict[str, Any] | None = None, timeout_s: float = 120.0) -> str:
        """Unpause and trigger ``dag_id``; returns the run id."""
        self.wait_for_dag(dag_id, timeout_s)
        r = httpx.post(f"{self.url()}/api/v2/dags/{dag_id}/dagRuns", headers=self._headers(),
                       json={"logical_date": None, "conf": conf or {}}, timeout=10)
        r.raise_for_status()
        return str(r.json()["dag_run_id"])

    def wait_for_run(self, dag_id: str, run_id: str, timeout_s: float = 300.0) -> str:
        """Until the run is ``success`` or ``failed``; returns that state (raises on timeout)."""
        headers = self._headers()
        state: dict[str, str] = {}

        def done() -> bool:
            r = httpx.get(f"{self.url()}/api/v2/dags/{dag_id}/dagRuns/{run_id}", headers=headers, timeout=10)
            r.raise_for_status()
            state["v"] = r.json()["state"]
            return state["v"] in ("success", "failed")

        wait_until(done, timeout_s, 1.0, what=f"run {run_id} of {dag_id} to finish")
        return state["v"]

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        """Every task instance of a run (REST API, page by page: :meth:`AirflowAPI.task_instances`),
        including mapped ones: task_id, map_index, state, queue, pool, hostname."""
        c = self.credentials()
        api = AirflowAPI(self.url(), c["username"], c["password"])
        try:
            return api.task_instances(dag_id, run_id)
        finally:
            api.close()

    def task_hostnames(self, dag_id: str, run_id: str) -> dict[str, str]:
        """``{task_id or task_id[map_index]: hostname}`` for every task instance of the run."""
        out: dict[str, str] = {}
        for ti in self.task_instances(dag_id, run_id):
            mapped = ti.get("map_index", -1) not in (-1, None)
            key = f"{ti['task_id']}[{ti['map_index']}]" if mapped else ti["task_id"]
            out[key] = ti.get("hostname") or ""
        return out

    def hostnames_by_queue(self, dag_id: str, run_id: str) -> dict[str, set[str]]:
        """``{queue: {hostname, ...}}`` over the run's task instances that ran (hostname set).

        The scale-out assertion "every GPU task on the gpu worker and nothing else there" is
        ``hostnames_by_queue(...) == {"gpu": {"worker-gpu"}, "default": {"worker-default"}}``.
        """
        out: dict[str, set[str]] = {}
        for ti in self.task_instances(dag_id, run_id):
            if ti.get("hostname"):
                out.setdefault(ti["queue"], set()).add(ti["hostname"])
        return out

    def worker_log(self, worker: str) -> str:
        """The log of worker ``worker`` (a worker name, or a queue for ``worker-<queue>``)."""
        name = worker if worker in self.workers else f"worker-{worker}"
        return self.workers[name].log_file.read_text(errors="replace")

    def ti_tries(self, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> list[dict[str, Any]]:
        """Every try of one task instance (REST API), oldest first: try_number, state, hostname, ..."""
        r = httpx.get(f"{self.url()}/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/{map_index}/tries",
                      headers=self._headers(), timeout=10)
        r.raise_for_status()
        return sorted(r.json()["task_instances"], key=lambda t: int(t["try_number"]))

    def dag_run(self, dag_id: str, run_id: str) -> dict[str, Any]:
        r = httpx.get(f"{self.url()}/api/v2/dags/{dag_id}/dagRuns/{run_id}", headers=self._headers(), timeout=10)
        r.raise_for_status()
        return dict(r.json())

    def executions(self, run_id: str) -> dict[str, list[tuple[str, int, int]]]:
        """``{worker: [(task_id, map_index, try_number), ...]}``: every workload of ``run_id`` a worker
        received, read from the worker's own log (the provider logs ``Executing workload in Celery``
        once per message it starts). A task that ran twice for one try would show up twice here."""
        out: dict[str, list[tuple[str, int, int]]] = {}
        for name, proc in self.workers.items():
            text = proc.log_file.read_text(errors="replace") if proc.log_file.exists() else ""
            out[name] = [(m["task"], int(m["map"]), int(m["try"])) for line in text.splitlines()
                         if "Executing workload in Celery" in line and f"run_id='{run_id}'" in line
                         for m in [_WORKLOAD.search(line)] if m]
        return out

    def celery_results(self) -> list[tuple[str, str]]:
        """(celery task id, status) rows of the SQLite result backend (evidence it was used)."""
        db = self.airflow_home / "celery-results.db"
        if not db.exists():
            return []
        with sqlite3.connect(db) as conn:
            return list(conn.execute("SELECT task_id, status FROM celery_taskmeta"))


@contextmanager
def celery_cluster(tmp_path: Path, s3: dict[str, str], ls: dict[str, str], *, dags_folder: Path | None = None,
                   triggerer: bool = False, timeout_s: float = 240.0, workers: Sequence[WorkerSpec] | None = None,
                   start_workers: Iterable[str] | None = None, heartbeat_timeout_s: int | None = None,
                   retry_delay_s: float | None = None) -> Iterator[CeleryAirflow]:
    """Redis + a provisioned, started, healthy :class:`CeleryAirflow`; everything stopped by pid after.

    ``s3``/``ls`` are the local stack's credential dicts (``s3_server.credentials()``,
    ``label_studio.credentials()``): they become the ``hopchain_s3``/``hopchain_label_studio``
    connections. ``dags_folder`` defaults to the repository's ``dags/``; ``workers`` to one worker per
    queue, all started (``start_workers`` names the ones to start now).
    """
    with RedisServer(tmp_path / "redis") as redis:
        cluster = CeleryAirflow.for_test(tmp_path / "stack", redis.url, dags_folder=dags_folder,
                                         triggerer=triggerer, workers=workers,
                                         heartbeat_timeout_s=heartbeat_timeout_s, retry_delay_s=retry_delay_s)
        # the fixture's Label Studio runs without S3_ENDPOINT: it reads images at the reader key's endpoint
        cluster.provision(s3, {**ls, "image_endpoint": ""})
        cluster.start(start_workers)
        try:
            try:
                cluster.wait_healthy(timeout_s)
            except StackError as err:
                raise StackError(f"{err}\n{logs_tail(cluster.home)}") from None
            yield cluster
        finally:
            cluster.stop()


def logs_tail(home: Path, lines: int = 40) -> str:
    """The last lines of every component log under ``home/logs`` (for assertion messages)."""
    out = []
    for f in sorted((Path(home) / "logs").glob("*.log")):
        tail = f.read_text(errors="replace").splitlines()[-lines:]
        out.append(f"--- {f.name}\n" + "\n".join(tail))
    return "\n".join(out)


def copy_dag(src: Path, dags_folder: Path) -> Path:
    dags_folder.mkdir(parents=True, exist_ok=True)
    return Path(shutil.copy(src, dags_folder / src.name))


def dump(obj: Any) -> str:
    return json.dumps(obj, indent=1, sort_keys=True, default=str)
