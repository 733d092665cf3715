"""The three services of the local stack: SeaweedFS (S3), Label Studio and Airflow 3.

Each service knows its ports, how to start its processes, how to check its health, and where its
credentials are. All bind 127.0.0.1; all state lives under the stack home (git-ignored).
Credential files are written with mode 0600 and never printed.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from pipelines.config import Params
from pipelines.contracts.files import write_atomic
from pipelines.ops.deploy import airflow_connections
from pipelines.stack.process import PRIVATE_UMASK, ManagedProcess, StackError, port_in_use, private_dir, wait_until

REPO_ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent


def write_secret_file(path: Path, data: dict[str, Any]) -> None:
    """Write JSON with mode 0600 (created that way, never world-readable even briefly) in a 0700 folder."""
    private_dir(path.parent)
    write_atomic(path, json.dumps(data, indent=2), mode=0o600)


def read_secret_file(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def _token(nbytes: int = 24) -> str:
    return secrets.token_urlsafe(nbytes)


def _hex(nbytes: int = 20) -> str:
    return secrets.token_hex(nbytes)


def base_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "LABEL_STUDIO"))}
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env.setdefault("OMP_NUM_THREADS", "1")
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    return env


@dataclass
class Service:
    """Base class: a named service with processes, ports and a health check."""

    params: Params
    home: Path
    name: str = ""
    processes: list[ManagedProcess] = field(default_factory=list)

    def ports(self) -> dict[str, int]:
        raise NotImplementedError

    def url(self) -> str:
        raise NotImplementedError

    def credentials_file(self) -> Path:
        return self.home / "credentials" / f"{self.name}.json"

    def _credentials(self, generate) -> dict[str, str]:
        """The service's credential file (mode 0600), generated on first use; ``url`` follows the ports."""
        f = self.credentials_file()
        if f.exists():
            creds = read_secret_file(f)
            if creds.get("url") != self.url():
                creds["url"] = self.url()
                write_secret_file(f, creds)
            return creds
        creds = {"url": self.url(), **generate()}
        write_secret_file(f, creds)
        return creds

    def running(self) -> bool:
        return any(p.running() for p in self.processes)

    def pids(self) -> list[int]:
        return [p.pid for p in self.processes if p.pid]

    def check_ports(self) -> None:
        for what, port in self.ports().items():
            if port_in_use(port):
                raise StackError(
                    f"port {port} ({self.name} {what}) on 127.0.0.1 is already in use by another "
                    f"program; free it or choose another port in params.yaml (stack.ports) "
                    f"or with HOPCHAIN_PORT_* variables"
                )

    def start(self) -> None:
        raise NotImplementedError

    def started_processes(self) -> list[ManagedProcess]:
        """The processes whose early exit fails :meth:`wait_healthy` (all of them, unless a service starts
        some later)."""
        return list(self.processes)

    def wait_healthy(self, timeout_s: float) -> None:
        expected = self.started_processes()

        def check() -> bool:
            for p in expected:
                tail = p.exited_early()
                if tail is not None:
                    raise StackError(f"{self.name}: process {p.name} exited during start-up:\n{tail}")
            return self.healthy()

        try:
            wait_until(check, timeout_s, 0.5, what=f"{self.name} to become healthy")
        except StackError as err:
            raise StackError(f"{err}\n(see logs in {self.home / 'logs'})") from None

    def healthy(self) -> bool:
        raise NotImplementedError

    def stop(self) -> list[str]:
        """Stop every process of the service concurrently (each by its recorded pid)."""
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=max(1, len(self.processes))) as pool:
            results = list(pool.map(lambda p: p.stop(), self.processes))
        return [p.name for p, stopped in zip(self.processes, results, strict=True) if stopped]


# ------------------------------------------------------------------------------------------------
class SeaweedS3(Service):
    """SeaweedFS ``weed mini`` (master + volume + filer + S3 in one process) with credentials."""

    def __init__(self, params: Params, home: Path, reader_buckets: tuple[str, ...] | None = None):
        super().__init__(params, home, "s3")
        self.processes = [ManagedProcess("seaweedfs", home)]
        self.data_dir = home / "seaweedfs"
        # what the read-only key may read and list: the platform bucket; ("*",): every bucket (a test
        # server, whose tests each make their own bucket)
        self.reader_buckets = reader_buckets or (params.store.bucket,)

    def ports(self) -> dict[str, int]:
        p = self.params.stack.ports
        out = {"s3": p.s3, "master": p.s3_master, "volume": p.s3_volume, "filer": p.s3_filer,
               "admin": p.s3_admin}
        # gRPC ports are HTTP port + 10000 (the admin's workers dial that too).
        out.update({f"{k} grpc": v + 10000 for k, v in list(out.items())})
        return out

    def url(self) -> str:
        return f"http://127.0.0.1:{self.params.stack.ports.s3}"

    def credentials(self) -> dict[str, str]:
        """The platform's read-write key, and ``reader_access_key`` / ``reader_secret_key``: a key that
        may only read and list the platform bucket (what Label Studio signs image URLs with).
        A credentials file written before the reader key existed gets one added."""
        f = self.credentials_file()
        creds = read_secret_file(f) if f.exists() else {
            "endpoint": self.url(),
            "access_key": "hc" + _hex(9),
            "secret_key": _token(30),
            "region": "us-east-1",
        }
        if "reader_access_key" not in creds:
            creds.update({"reader_access_key": "hr" + _hex(9), "reader_secret_key": _token(30)})
            write_secret_file(f, creds)
        return creds

    def start(self) -> None:
        creds = self.credentials()
        if creds["endpoint"] != self.url():  # ports changed since the credentials were made
            creds["endpoint"] = self.url()
            write_secret_file(self.credentials_file(), creds)
        s3_config = self.home / "seaweedfs-s3.json"
        write_secret_file(
            s3_config,
            {
                "identities": [
                    {
                        "name": "hopchain",
                        "credentials": [{"accessKey": creds["access_key"], "secretKey": creds["secret_key"]}],
                        "actions": ["Admin", "Read", "List", "Tagging", "Write"],
                    },
                    {  # Label Studio's image storage: read and list the platform bucket, nothing else
                        "name": "hopchain-images-reader",
                        "credentials": [{"accessKey": creds["reader_access_key"],
                                         "secretKey": creds["reader_secret_key"]}],
                        "actions": ["Read", "List"] if self.reader_buckets == ("*",) else
                                   [f"{a}:{b}" for b in self.reader_buckets for a in ("Read", "List")],
                    },
                ]
            },
        )
        private_dir(self.data_dir)
        (self.data_dir / "mini.options").unlink(missing_ok=True)  # weed remembers old flags there
        p = self.params.stack.ports
        logdir = self.home / "logs" / "seaweedfs"
        private_dir(logdir)
        cmd = [
            str(VENV_BIN / "weed"), f"-logdir={logdir}", "mini",
            f"-dir={self.data_dir}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
            f"-master.port={p.s3_master}", f"-master.port.grpc={p.s3_master + 10000}",
            f"-volume.port={p.s3_volume}", f"-volume.port.grpc={p.s3_volume + 10000}",
            f"-filer.port={p.s3_filer}", f"-filer.port.grpc={p.s3_filer + 10000}",
            f"-s3.port={p.s3}", f"-s3.port.grpc={p.s3 + 10000}",
            f"-admin.port={p.s3_admin}",
            "-s3.port.iceberg=0", "-s3.port.lance=0", "-webdav=false",
            "-master.telemetry=false", f"-s3.config={s3_config}",
        ]
        env = base_env()
        env["GOMEMLIMIT"] = f"{self.params.stack.s3_memory_limit_mb}MiB"
        self.processes[0].start(cmd, env, cwd=self.home)

    def client(self) -> Any:
        import urllib3
        from minio import Minio

        creds = self.credentials()
        http = urllib3.PoolManager(timeout=urllib3.Timeout(connect=2, read=10), retries=urllib3.Retry(0))
        return Minio(f"127.0.0.1:{self.params.stack.ports.s3}", access_key=creds["access_key"],
                     secret_key=creds["secret_key"], secure=False, region="us-east-1", http_client=http)

    # A tiny object written by ensure_buckets. After a crash, `weed mini` answers S3 listings at once
    # but object reads fail with HTTP 500 for a few seconds (until the volume server has reported its
    # volumes to the master), so health means "a stored object can be read back".
    PROBE_KEY = ".health/probe"

    def healthy(self) -> bool:
        from minio.error import S3Error

        try:
            client = self.client()
            client.list_buckets()
            bucket = self.params.stack.buckets[0]
            if not client.bucket_exists(bucket):
                return True  # a fresh server: nothing stored yet
            try:
                resp = client.get_object(bucket, self.PROBE_KEY)
            except S3Error as err:
                # no probe yet: data stored before the probe existed (or none at all)
                return err.code in ("NoSuchKey", "NoSuchObject", "NotFound")
            try:
                return resp.read() == b"ok"
            finally:
                resp.close()
                resp.release_conn()
        except Exception:  # noqa: BLE001 - any failure of the probe means not healthy
            return False

    def ensure_buckets(self, timeout_s: float = 30.0) -> None:
        import io

        client = self.client()
        for bucket in self.params.stack.buckets:
            def made(b: str = bucket) -> bool:
                if not client.bucket_exists(b):
                    client.make_bucket(b)
                return client.bucket_exists(b)

            wait_until(made, timeout_s, 0.5, what=f"bucket {bucket}")
        client.put_object(self.params.stack.buckets[0], self.PROBE_KEY, io.BytesIO(b"ok"), 2)

    def anonymous_refused(self) -> bool:
        r = httpx.get(f"{self.url()}/{self.params.stack.buckets[0]}", timeout=5)
        return r.status_code in (401, 403)


# ------------------------------------------------------------------------------------------------
def label_studio_bin() -> Path:
    """The Label Studio server lives in its own virtual environment (``.venv-ls``)."""
    override = os.environ.get("HOPCHAIN_LABEL_STUDIO_BIN")
    if override:
        return Path(override)
    return REPO_ROOT / ".venv-ls" / "bin" / "label-studio"


# Label Studio's SSRF guard bans these (its own default list) for storages and webhooks. A Label Studio
# started alone (``s3_endpoint`` None: test fixtures whose storages name a loopback object store) gets the
# list without 127.0.0.0/8; the local stack's keeps the whole default list and reaches its object store
# through S3_ENDPOINT, the operator's endpoint the guard trusts (as in production).
LS_BANNED_SUBNETS_BUT_LOOPBACK = (
    "0.0.0.0/8,10.0.0.0/8,100.64.0.0/10,169.254.0.0/16,172.16.0.0/12,192.0.0.0/24,192.0.2.0/24,"
    "192.88.99.0/24,192.168.0.0/16,198.18.0.0/15,198.51.100.0/24,203.0.113.0/24,224.0.0.0/4,"
    "233.252.0.0/24,240.0.0.0/4,255.255.255.255/32,::/128,::1/128,::ffff:0:0/96,::ffff:0:0:0/96,"
    "64:ff9b::/96,64:ff9b:1::/48,100::/64,2001:0000::/32,2001:20::/28,2001:db8::/32,2002::/16,fc00::/7,"
    "fe80::/10,ff00::/8"
)


class LabelStudio(Service):
    """Label Studio 1.23 (open-source) on SQLite, no outbound calls, admin + token preset."""

    def __init__(self, params: Params, home: Path, s3_endpoint: str | None = None):
        super().__init__(params, home, "labelstudio")
        self.processes = [ManagedProcess("labelstudio", home)]
        self.data_dir = home / "labelstudio"
        self.s3_endpoint = s3_endpoint  # Label Studio's S3_ENDPOINT: where image storages without one read

    def ports(self) -> dict[str, int]:
        return {"http": self.params.stack.ports.label_studio}

    def url(self) -> str:
        return f"http://127.0.0.1:{self.params.stack.ports.label_studio}"

    def credentials(self) -> dict[str, str]:
        return self._credentials(lambda: {
            "username": self.params.stack.label_studio_admin,
            "password": _token(18),
            "token": _hex(20),  # legacy API token: "Authorization: Token <token>"
        })

    def env(self) -> dict[str, str]:
        creds = self.credentials()
        env = base_env()
        private_dir(self.data_dir / "home")
        env.update(
            {
                "HOME": str(self.data_dir / "home"),
                "LABEL_STUDIO_BASE_DATA_DIR": str(self.data_dir),
                "COLLECT_ANALYTICS": "false",
                "LATEST_VERSION_CHECK": "false",
                "SENTRY_DSN": "",
                "FRONTEND_SENTRY_DSN": "",
                "LABEL_STUDIO_USERNAME": creds["username"],
                "LABEL_STUDIO_PASSWORD": creds["password"],
                "LABEL_STUDIO_USER_TOKEN": creds["token"],
                "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true",
                "LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK": "true",
                "DISABLE_SIGNUP_WITHOUT_LINK": "true",
                "LABEL_STUDIO_HOST": self.url(),
                "SSRF_PROTECTION_ENABLED": "true",
                "DJANGO_DB": "sqlite",
                "LOG_LEVEL": "WARNING",
                "PYTHONUNBUFFERED": "1",
            }
        )
        if self.s3_endpoint:
            env["S3_ENDPOINT"] = self.s3_endpoint
        else:
            env.update({"USE_DEFAULT_BANNED_SUBNETS": "false",
                        "USER_ADDITIONAL_BANNED_SUBNETS": LS_BANNED_SUBNETS_BUT_LOOPBACK})
        return env

    def start(self) -> None:
        binary = label_studio_bin()
        if not binary.exists():
            raise StackError(f"Label Studio is not installed at {binary}; run `make setup`")
        cmd = [
            str(binary), "start", "--no-browser", "--internal-host", "127.0.0.1",
            "--port", str(self.params.stack.ports.label_studio), "--data-dir", str(self.data_dir),
            "--log-level", "WARNING",
        ]
        self.processes[0].start(cmd, self.env(), cwd=self.data_dir)

    def healthy(self) -> bool:
        creds = self.credentials()
        r = httpx.get(f"{self.url()}/api/current-user/whoami",
                      headers={"Authorization": f"Token {creds['token']}"}, timeout=5)
        return r.status_code == 200


# ------------------------------------------------------------------------------------------------
AIRFLOW_COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")
CODE_ROOTS = ("pipelines", "plugins", "dags")  # what Airflow's processes import from this checkout


def code_fingerprint(roots: Iterable[Path] | None = None) -> str:
    """A digest of the platform's Python files (path, size, modification time): Airflow's long-lived
    processes keep the modules they imported, so a running stack must restart after these change."""
    import hashlib

    digest = hashlib.sha256()
    for root in roots if roots is not None else [REPO_ROOT / r for r in CODE_ROOTS]:
        for f in sorted(root.rglob("*.py")):
            st = f.stat()
            digest.update(f"{f.relative_to(root.parent)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return digest.hexdigest()


class Airflow(Service):
    """Airflow 3.3: api-server, scheduler, dag-processor, triggerer; SQLite; LocalExecutor."""

    def __init__(self, params: Params, home: Path):
        super().__init__(params, home, "airflow")
        self.airflow_home = home / "airflow"
        self.processes = [ManagedProcess(f"airflow-{c}", home) for c in AIRFLOW_COMPONENTS]

    def ports(self) -> dict[str, int]:
        return {"api-server": self.params.stack.ports.airflow}

    def url(self) -> str:
        return f"http://127.0.0.1:{self.params.stack.ports.airflow}"

    def credentials(self) -> dict[str, str]:
        return self._credentials(lambda: {
            "username": self.params.stack.airflow_admin,
            "password": _token(18),
            "jwt_secret": _token(32),
            "api_secret_key": _token(32),
            "fernet_key": _fernet_key(),
        })

    def env(self) -> dict[str, str]:
        creds = self.credentials()
        a = self.airflow_home
        port = self.params.stack.ports.airflow
        users = f"{creds['username']}:admin"
        pw_file = a / "simple_auth_manager_passwords.json"  # written by provision()
        env = base_env()
        env.update(
            {
                "AIRFLOW_HOME": str(a),
                "AIRFLOW__CORE__DAGS_FOLDER": str(REPO_ROOT / "dags"),
                "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO_ROOT / "plugins"),
                "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
                "AIRFLOW__CORE__PARALLELISM": str(self.params.stack.airflow_parallelism),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__FERNET_KEY": creds["fernet_key"],
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": users,
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(pw_file),
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
                "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{a / 'airflow.db'}",
                "AIRFLOW__API__HOST": "127.0.0.1",
                "AIRFLOW__API__PORT": str(port),
                "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
                "AIRFLOW__API__WORKERS": "1",
                "AIRFLOW__API__SECRET_KEY": creds["api_secret_key"],
                "AIRFLOW__API_AUTH__JWT_SECRET": creds["jwt_secret"],
                "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
                "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "30",
                "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
                "HOPCHAIN_HOME": str(self.home),
                "HOPCHAIN_PARAMS": os.environ.get("HOPCHAIN_PARAMS", str(REPO_ROOT / "params.yaml")),
            }
        )
        # The local stack is the embedded demo deployment: simulated annotators may run here (and nowhere
        # else: production forbids them, pipelines.config.check_deployment).
        env["HOPCHAIN_SIMULATED_ANNOTATORS"] = "allow"
        # Tasks read params.yaml with the profile the stack was started with.
        if self.params.profile != "base":
            env["HOPCHAIN_PROFILE"] = self.params.profile
        else:
            env.pop("HOPCHAIN_PROFILE", None)
        return env

    def _cli(self, *args: str, timeout_s: float = 300) -> str:
        proc = subprocess.run(
            [str(VENV_BIN / "airflow"), *args], env=self.env(), capture_output=True, text=True,
            timeout=timeout_s, cwd=self.airflow_home, umask=PRIVATE_UMASK,
        )
        if proc.returncode != 0:
            raise StackError(f"`airflow {' '.join(args[:2])}` failed:\n{proc.stderr[-3000:]}")
        return proc.stdout

    def provision(self, s3: dict[str, str], ls: dict[str, str]) -> None:
        """DB migration, the ``gpu`` pool and the connections to the S3 server and Label Studio."""
        private_dir(self.airflow_home)
        creds = self.credentials()
        write_secret_file(self.airflow_home / "simple_auth_manager_passwords.json",
                          {creds["username"]: creds["password"]})
        self._cli("db", "migrate")
        pools = self.airflow_home / "pools.json"
        write_atomic(pools, json.dumps({"gpu": {"slots": self.params.stack.gpu_slots,
                                                "description": "GPU stages (slots = GPUs)",
                                                "include_deferred": False}}), mode=0o600)
        self._cli("pools", "import", str(pools))
        conns = self.airflow_home / "connections.json"
        write_secret_file(conns, airflow_connections(s3, ls))
        try:
            self._cli("connections", "import", "--overwrite", str(conns))
        finally:
            conns.unlink(missing_ok=True)

    def _command(self, component: str) -> list[str]:
        args = {
            "api-server": ["api-server", "--host", "127.0.0.1", "--port",
                           str(self.params.stack.ports.airflow), "--workers", "1"],
            "scheduler": ["scheduler", "--skip-serve-logs"],
            "dag-processor": ["dag-processor"],
            "triggerer": ["triggerer", "--skip-serve-logs"],
        }
        return [str(VENV_BIN / "airflow"), *args[component]]

    def process(self, component: str) -> ManagedProcess:
        """The managed process of one component (``api-server``, ``scheduler``, ...)."""
        if component not in AIRFLOW_COMPONENTS:
            known = ", ".join(AIRFLOW_COMPONENTS)
            raise ValueError(f"unknown Airflow component {component!r} (known: {known})")
        return self.processes[AIRFLOW_COMPONENTS.index(component)]

    def start(self, components: Iterable[str] = AIRFLOW_COMPONENTS) -> None:
        """Start the given components (all by default); each must not be running already. Records the
        code they run (:func:`code_fingerprint`) when all are started."""
        env = self.env()
        components = list(components)
        for comp in components:
            self.process(comp).start(self._command(comp), env, cwd=self.airflow_home)
        if set(components) >= set(AIRFLOW_COMPONENTS):
            write_atomic(self._code_stamp(), code_fingerprint().encode(), mode=0o600)

    def _code_stamp(self) -> Path:
        return self.airflow_home / "code-fingerprint"

    def code_changed(self) -> bool:
        """True when the platform's code changed since the components started (or nobody recorded it)."""
        stamp = self._code_stamp()
        return not stamp.exists() or stamp.read_text() != code_fingerprint()

    def restart(self, components: Iterable[str], timeout_s: float = 120.0) -> None:
        """Stop the given components (by recorded pid; a dead one is just started) and start them
        again, then wait until Airflow reports every component healthy. State lives in the
        metadata database, so deferred tasks and running DAG runs carry on."""
        components = list(components)
        for comp in components:
            self.process(comp).stop()
        self.start(components)
        self.wait_healthy(timeout_s)

    def token(self) -> str:
        creds = self.credentials()
        r = httpx.post(f"{self.url()}/auth/token",
                       json={"username": creds["username"], "password": creds["password"]}, timeout=10)
        r.raise_for_status()
        return str(r.json()["access_token"])

    def healthy(self) -> bool:
        r = httpx.get(f"{self.url()}/api/v2/monitor/health", timeout=5)
        if r.status_code != 200:
            return False
        h = r.json()
        sched = (h.get("scheduler") or {}).get("status")
        trig = (h.get("triggerer") or {}).get("status")
        dagp = (h.get("dag_processor") or {}).get("status")
        return h.get("metadatabase", {}).get("status") == "healthy" and sched == "healthy" \
            and trig == "healthy" and dagp in ("healthy", None)

    def component_health(self) -> dict[str, str]:
        try:
            h = httpx.get(f"{self.url()}/api/v2/monitor/health", timeout=5).json()
        except Exception as exc:  # noqa: BLE001 - reported as the component's status
            return {"api-server": f"unreachable ({type(exc).__name__})"}
        return {k: str((v or {}).get("status")) for k, v in h.items() if isinstance(v, dict)}


def _fernet_key() -> str:
    import base64

    return base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()
