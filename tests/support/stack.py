"""Local services for tests and benches: free loopback ports, params that use them, throwaway S3 and Label
Studio servers."""

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

    # its tests each make their own bucket: the read-only key may read them all (never writes)
    svc = SeaweedS3(params_with_ports(free_ports()), home, reader_buckets=("*",))
    svc.check_ports()
    svc.start()
    try:
        svc.wait_healthy(60)
        svc.ensure_buckets()
        yield svc
    finally:
        svc.stop()


@contextmanager
def running_label_studio(home: Path, timeout_s: float = 300) -> Iterator:
    """A real Label Studio (its own venv) on free ports in ``home``, with an admin and a legacy API token;
    stopped by pid after."""
    from pipelines.stack.services import LabelStudio

    svc = LabelStudio(params_with_ports(free_ports()), home)
    svc.check_ports()
    svc.start()
    try:
        svc.wait_healthy(timeout_s)
        yield svc
    finally:
        svc.stop()


@contextmanager
def bench_label_studio() -> Iterator[tuple[str, str]]:
    """``(url, token)`` of the Label Studio a bench uses: ``HOPCHAIN_LS_URL`` / ``HOPCHAIN_LS_TOKEN`` when
    both are set, else a private one under ``bench/_work`` (first start runs migrations, ~1 min)."""
    if os.environ.get("HOPCHAIN_LS_URL") and os.environ.get("HOPCHAIN_LS_TOKEN"):
        yield os.environ["HOPCHAIN_LS_URL"], os.environ["HOPCHAIN_LS_TOKEN"]
        return
    import tempfile

    work = REPO_ROOT / "bench" / "_work"
    work.mkdir(parents=True, exist_ok=True)
    print("starting a private Label Studio (first start runs migrations, ~1 min) ...", flush=True)
    with running_label_studio(Path(tempfile.mkdtemp(prefix="ls-", dir=work))) as svc:
        creds = svc.credentials()
        yield creds["url"], creds["token"]


def annotator_accounts(admin, prefix: str, count: int) -> list:  # type: ignore[no-untyped-def]
    """``count`` new annotator accounts ``<prefix><i>-<tag>@example.org`` (created like `hopchain annotators
    add`), each with a client on its own token (its own ``/next`` stream): ``[(account, client), ...]``.
    The caller closes the clients."""
    import uuid

    from pipelines.annotation.annotators import add_annotator, user_token
    from pipelines.annotation.client import LabelStudioClient

    tag = uuid.uuid4().hex[:6]
    out = []
    for i in range(count):
        account = add_annotator(admin, f"{prefix}{i}-{tag}@example.org")
        out.append((account, LabelStudioClient(admin.url, user_token(admin.url, account.email, account.password))))
    return out


def register_annotators(env, clients, kind: str = "person") -> None:  # type: ignore[no-untyped-def]
    """Register the accounts of ``clients`` (Label Studio clients on their own tokens) as annotators of
    the deployment of ``env`` (a :class:`pipelines.runner.RunEnv`; what `hopchain annotators register` does),
    so their answers count."""
    from pipelines.annotation.registry import save
    from pipelines.annotation.tasks import load_registry

    registry = load_registry(env)
    for client in clients:
        me = client.whoami()
        registry.register(int(me["id"]), str(me.get("email") or me["id"]), kind)
    save(env.store, env.ledger.annotators_key, registry)
