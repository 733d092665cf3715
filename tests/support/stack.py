"""Local services for tests and benches: free loopback ports, params that use them, a throwaway S3 server."""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pipelines.config import Params, PortsConfig, load_params
from pipelines.stack.process import port_in_use

REPO_ROOT = Path(__file__).resolve().parents[2]


def _free_port_pair(rng: random.Random, used: set[int]) -> int:
    """A port p such that p and p+10000 are free (SeaweedFS puts gRPC at +10000)."""
    for _ in range(500):
        p = rng.randrange(20000, 30000)
        if p in used or p + 10000 in used:
            continue
        if not port_in_use(p) and not port_in_use(p + 10000):
            used.update({p, p + 10000})
            return p
    raise RuntimeError("no free port pair found")


def free_ports(seed: int | None = None) -> PortsConfig:
    rng = random.Random(seed if seed is not None else os.getpid() ^ random.getrandbits(16))
    used: set[int] = set()
    return PortsConfig(**{name: _free_port_pair(rng, used) for name in PortsConfig.model_fields})


def params_with_ports(ports: PortsConfig, profile: str | None = None) -> Params:
    base = load_params(REPO_ROOT / "params.yaml", profile)
    stack = base.stack.model_copy(update={"ports": ports})
    return base.model_copy(update={"stack": stack})


@contextmanager
def running_s3_server(home: Path) -> Iterator:
    """A real SeaweedFS S3 server on free ports in ``home`` (credentials, buckets); stopped by pid after.

    Tests that kill the server use their own (this), never the session's ``s3_server``.
    """
    from pipelines.stack.services import SeaweedS3

    svc = SeaweedS3(params_with_ports(free_ports()), home)
    svc.check_ports()
    svc.start()
    try:
        svc.wait_healthy(60)
        svc.ensure_buckets()
        yield svc
    finally:
        svc.stop()
