"""The embedded local stack: ``hopchain stack up | down | status``.

One machine, no Docker: SeaweedFS as the S3 server, Label Studio, and Airflow 3 (api-server,
scheduler, dag-processor, triggerer). Everything binds 127.0.0.1 and keeps its state in one
folder (``stack.home`` in params.yaml, default ``.stack/``; ``HOPCHAIN_HOME`` overrides it).
Ports come from ``stack.ports`` and may be overridden with ``HOPCHAIN_PORT_<NAME>`` variables.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from pipelines.config import Params, PortsConfig, work_home
from pipelines.stack.process import StackError, listening_ports, make_private, private_dir
from pipelines.stack.services import Airflow, LabelStudio, SeaweedS3, Service

__all__ = ["LocalStack", "StackError", "stack_home", "with_port_overrides"]


def stack_home(params: Params) -> Path:
    """The stack's state folder: :func:`pipelines.config.work_home`."""
    return work_home(params)


def with_port_overrides(params: Params, env: dict[str, str] | None = None) -> Params:
    """Apply ``HOPCHAIN_PORT_S3=...`` style overrides (one per field of ``stack.ports``)."""
    env = dict(os.environ if env is None else env)
    changes: dict[str, int] = {}
    for name in PortsConfig.model_fields:
        value = env.get(f"HOPCHAIN_PORT_{name.upper()}")
        if value:
            changes[name] = int(value)
    if not changes:
        return params
    ports = params.stack.ports.model_copy(update=changes)
    return params.model_copy(update={"stack": params.stack.model_copy(update={"ports": ports})})


@dataclass
class ServiceStatus:
    name: str
    running: bool
    healthy: bool
    url: str
    pids: list[int]
    credentials: str
    detail: str = ""


class LocalStack:
    """Start, health-check and stop the local services (state under :func:`stack_home`)."""

    def __init__(self, params: Params, home: Path | None = None):
        self.params = with_port_overrides(params)
        self.home = Path(home) if home else stack_home(self.params)
        self.s3 = SeaweedS3(self.params, self.home)
        self.labelstudio = LabelStudio(self.params, self.home, s3_endpoint=self.s3.url())
        self.airflow = Airflow(self.params, self.home)

    @property
    def services(self) -> list[Service]:
        return [self.s3, self.labelstudio, self.airflow]

    def running_services(self) -> list[str]:
        return [s.name for s in self.services if s.running()]

    def up(self, log=print, timeout_s: float = 240.0) -> None:
        """Start every service; refuse clearly if any part is already running or a port is taken."""
        running = self.running_services()
        if running:
            raise StackError(
                f"the stack is already running ({', '.join(running)}; home {self.home}); "
                "run `make down` (hopchain stack down) first"
            )
        for svc in self.services:
            svc.check_ports()
        private_dir(self.home)
        repaired = make_private(self.home)  # a home made with a looser umask (or by an older version)
        if repaired:
            log(f"made {len(repaired)} files and folders of {self.home} private to their owner")
        t0 = time.monotonic()
        try:
            log("starting S3 server (SeaweedFS) ...")
            self.s3.start()
            log("starting Label Studio ...")
            self.labelstudio.start()
            self.s3.wait_healthy(60)
            self.s3.ensure_buckets()
            log(f"  s3 healthy at {self.s3.url()} ({time.monotonic() - t0:.0f}s)")
            log("provisioning Airflow (db migrate, gpu pool, connections) ...")
            self.airflow.provision(self.s3.credentials(), self.labelstudio.credentials())
            log("starting Airflow (api-server, scheduler, dag-processor, triggerer) ...")
            self.airflow.start()
            self.labelstudio.wait_healthy(timeout_s)
            log(f"  label studio healthy at {self.labelstudio.url()} ({time.monotonic() - t0:.0f}s)")
            self.airflow.wait_healthy(timeout_s)
            log(f"  airflow healthy at {self.airflow.url()} ({time.monotonic() - t0:.0f}s)")
        except BaseException:
            log("start-up failed; stopping what was started")
            self.down(log=lambda *_: None)
            raise
        log(f"stack up in {time.monotonic() - t0:.0f}s; credentials in {self.home / 'credentials'}")

    def down(self, log=print) -> list[str]:
        from concurrent.futures import ThreadPoolExecutor

        stopped: list[str] = []
        with ThreadPoolExecutor(max_workers=len(self.services)) as pool:
            for names in pool.map(lambda svc: svc.stop(), self.services):
                stopped.extend(names)
                if names:
                    log(f"stopped {', '.join(names)}")
        if not stopped:
            log("nothing was running")
        return stopped

    def status(self) -> list[ServiceStatus]:
        out: list[ServiceStatus] = []
        for svc in self.services:
            running = svc.running()
            healthy = False
            detail = ""
            if running:
                try:
                    healthy = svc.healthy()
                except Exception as exc:  # noqa: BLE001 - status must report, never crash
                    detail = f"{type(exc).__name__}"
                if isinstance(svc, Airflow):
                    detail = ", ".join(f"{k}={v}" for k, v in svc.component_health().items())
            out.append(ServiceStatus(svc.name, running, healthy, svc.url(), svc.pids(),
                                     str(svc.credentials_file()), detail))
        return out

    def listening(self) -> list[tuple[int, str, int]]:
        pids = [pid for svc in self.services for pid in svc.pids()]
        return listening_ports(pids)

    def env_exports(self) -> dict[str, str]:
        """Environment a shell needs to use the stack from the command line (contains secrets)."""
        s3 = self.s3.credentials()
        ls = self.labelstudio.credentials()
        return {
            "HOPCHAIN_HOME": str(self.home),
            "HOPCHAIN_S3_ENDPOINT": s3["endpoint"],
            "HOPCHAIN_S3_ACCESS_KEY": s3["access_key"],
            "HOPCHAIN_S3_SECRET_KEY": s3["secret_key"],
            "HOPCHAIN_LS_URL": ls["url"],
            "HOPCHAIN_LS_TOKEN": ls["token"],
            # a shell using the local stack is part of its demo deployment (pipelines.config.SIMULATED_ENV)
            "HOPCHAIN_SIMULATED_ANNOTATORS": "allow",
        }
