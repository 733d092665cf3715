"""Shared test configuration and session fixtures for the real local services.

Every server is started on 127.0.0.1 with free ports in a temporary stack home, and stopped by
pid at the end of the session. Tests never reach the network: HF hub offline, no analytics.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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
# The tests are a demo deployment, as the local stack is (simulated annotators allowed); the tests of the
# production refusal set HOPCHAIN_SIMULATED_ANNOTATORS=forbid themselves.
os.environ["HOPCHAIN_SIMULATED_ANNOTATORS"] = "allow"

import pytest  # noqa: E402

from tests.support.stack import free_ports, params_with_ports, running_label_studio, running_s3_server  # noqa: E402

#: Session servers that are expensive to start: with ``pytest -n N --dist loadgroup`` (``make test``) every
#: test module that uses one runs on one worker, so each starts once; the other tests spread one by one.
SHARED_SERVERS = {"local_stack": "stack", "demo_release": "stack", "label_studio": "label_studio"}
_TESTS = Path(__file__).resolve().parent
_DEF = re.compile(r"def \w+\(([^)]*)\)")


#: a module that says so runs as a scope of its own even though it takes a shared server: its one long test
#: is cheaper beside the group (its worker starts its own server) than queued behind it
OWN_SCOPE = "# xdist: own scope"


def _group_of_module(text: str) -> str | None:
    """The shared server a test module's functions take as a fixture ("stack" wins: it has its own LS)."""
    if OWN_SCOPE in text:
        return None
    used = {name.split(":")[0].strip() for params in _DEF.findall(text) for name in params.split(",")}
    return next((g for f, g in SHARED_SERVERS.items() if f in used), None)


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """``--dist loadgroup``: pytest-xdist 3.8 groups by ``item._nodeid``, which pytest 9 no longer reads, so
    its own groups are lost; this scheduler groups by module instead (the modules of one shared server are
    one scope, sent to one worker; every other test is a scope of its own)."""
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadScopeScheduling

    groups = {p.relative_to(_TESTS.parent).as_posix(): g for p in _TESTS.rglob("test_*.py")
              if (g := _group_of_module(p.read_text()))}

    class SharedServerScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return groups.get(nodeid.split("::", 1)[0], nodeid)

    return SharedServerScheduling(config, log)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except Exception:  # noqa: BLE001 - torch missing or broken: no GPU tests either way
        has_cuda = False
    skip_gpu = pytest.mark.skip(reason="needs CUDA: no GPU on this machine")
    for item in items:
        if "gpu" in item.keywords and not has_cuda:
            item.add_marker(skip_gpu)


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
    with running_label_studio(tmp_path_factory.mktemp("lshome"), timeout_s=240) as svc:
        yield svc


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
    from hopchain_demo.run import run_demo

    return run_demo(local_stack.params, timeout_s=900, images=12, stack=local_stack, quiet=True)
