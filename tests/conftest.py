"""Shared test configuration and session fixtures for the real local services.

Every server is started on 127.0.0.1 with free ports in a temporary stack home, and stopped by
pid at the end of the session. Tests never reach the network: HF hub offline, no analytics.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["DO_NOT_TRACK"] = "1"
os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")
for _var in ("HOPCHAIN_PROFILE", "HOPCHAIN_PARAMS", "HOPCHAIN_HOME"):  # tests never inherit a developer's stack
    os.environ.pop(_var, None)

import pytest  # noqa: E402

from pipelines.config import Params, PortsConfig, load_params  # noqa: E402
from pipelines.stack.process import port_in_use  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parent.parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except Exception:  # torch missing or broken: no GPU tests either way
        has_cuda = False
    skip_gpu = pytest.mark.skip(reason="needs CUDA: no GPU on this machine")
    for item in items:
        if "gpu" in item.keywords and not has_cuda:
            item.add_marker(skip_gpu)


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


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    """A real SeaweedFS S3 server with generated credentials and the platform's buckets."""
    with running_s3_server(tmp_path_factory.mktemp("s3home")) as svc:
        yield svc


@pytest.fixture(scope="session")
def s3_creds(s3_server):
    from pipelines.store import S3Credentials

    c = s3_server.credentials()
    return S3Credentials(c["endpoint"], c["access_key"], c["secret_key"])


@pytest.fixture()
def object_store(s3_creds, request):
    """An ObjectStore on the ``hopchain`` bucket; keys under a per-test prefix are removed after."""
    from pipelines.store import ObjectStore

    store = ObjectStore(s3_creds, "hopchain")
    yield store


@pytest.fixture(scope="session")
def label_studio(tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    """A real Label Studio server (own venv) with an admin and a legacy API token."""
    from pipelines.stack.services import LabelStudio

    params = params_with_ports(free_ports())
    svc = LabelStudio(params, tmp_path_factory.mktemp("lshome"))
    svc.check_ports()
    svc.start()
    try:
        svc.wait_healthy(240)
        yield svc
    finally:
        svc.stop()


@pytest.fixture(scope="session")
def local_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    """The whole local stack (S3 + Label Studio + Airflow) on free ports in a temporary home.

    Started once per session with the ``demo`` profile and stopped (by pid) at the end.
    """
    from pipelines.stack import LocalStack

    home = tmp_path_factory.mktemp("stackhome")
    params = params_with_ports(free_ports(), profile="demo")  # the stack's Airflow tasks use this profile
    stack = LocalStack(params, home=home)
    try:
        stack.up(log=lambda *_: None)
        yield stack
    finally:
        stack.down(log=lambda *_: None)


@pytest.fixture(scope="session")
def demo_release(local_stack) -> dict:
    """The demo run once through the real scheduler on ``local_stack``: returns the release record
    (``tag``, ``registry``, ``nightly_run_id``, URLs)."""
    from pipelines.demo import run_demo

    return run_demo(local_stack.params, timeout_s=900, images=12, stack=local_stack, quiet=True)
