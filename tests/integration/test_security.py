"""Issue 11 security tests against the running local stack (after the demo ran through it).

* the plugin API refuses unauthenticated requests;
* no generated credential appears in any log, any git-tracked file, or any object of the registry;
* object keys built from user-supplied names cannot leave their prefix;
* Label Studio webhooks are not used (completion is polled by the deferrable trigger; docs/security.md);
* every process of the stack, children included, listens on 127.0.0.1 only.
"""

from __future__ import annotations

import mimetypes
import subprocess
import time
from pathlib import Path

import httpx
import jwt
import psutil
import pytest

from hopchain_demo.samples import write_samples
from pipelines.runner import RunEnv
from pipelines.store import KeyError_, safe_key
from tests.support import nightly
from tests.support.faults import ls_client, stack_store
from tests.support.stack import REPO_ROOT

pytestmark = pytest.mark.integration


def _secrets(stack) -> dict[str, str]:
    """Every generated secret of a stack, by name (identifiers such as user names are not secrets)."""
    s3, ls, af = stack.s3.credentials(), stack.labelstudio.credentials(), stack.airflow.credentials()
    out = {"s3 secret key": s3["secret_key"], "label studio token": ls["token"],
           "label studio password": ls["password"]}
    out.update({f"airflow {k}": af[k] for k in ("password", "jwt_secret", "api_secret_key", "fernet_key")})
    assert all(len(v) >= 16 for v in out.values())
    return out


def _found(secrets: dict[str, str], data: bytes) -> list[str]:
    return [name for name, value in secrets.items() if value.encode() in data]


# -- authentication --------------------------------------------------------------------------------
def test_plugin_api_and_pages_refuse_unauthenticated_requests(local_stack, demo_release) -> None:
    base = demo_release["plugin_page"].rstrip("/")
    paths = ["/api/status", "/", "/docs/releases/x/card/index.html"]
    # a token signed with another key, as someone without the stack's JWT secret would make it
    now = int(time.time())
    forged = jwt.encode({"sub": "admin", "role": "admin", "iat": now, "exp": now + 600},
                        "not-the-stack-secret-" * 4, algorithm="HS512")
    for path in paths:
        assert httpx.get(base + path, timeout=30).status_code == 401, path
        for bad in ("not-a-token", forged):
            # Airflow answers a token it cannot verify with 403 ("Invalid JWT token"), as its own API does
            r = httpx.get(base + path, headers={"Authorization": f"Bearer {bad}"}, timeout=30)
            assert r.status_code in (401, 403) and "detail" in r.json(), (path, r.status_code)
            r = httpx.get(base + path, cookies={"_token": bad}, timeout=30)
            assert r.status_code in (401, 403) and "detail" in r.json(), (path, r.status_code)
    token = local_stack.airflow.token()
    ok = httpx.get(base + "/api/status", headers={"Authorization": f"Bearer {token}"}, timeout=60)
    assert ok.status_code == 200 and demo_release["tag"] in ok.text


# -- secrets -------------------------------------------------------------------------------------
def test_no_credential_in_any_log_of_the_stack(local_stack, demo_release) -> None:
    secrets = _secrets(local_stack)
    roots = [local_stack.home / "airflow" / "logs", local_stack.home / "logs"]
    files = [f for root in roots for f in root.rglob("*") if f.is_file()]
    task_logs = [f for f in files if "dag_id=hopchain_nightly" in str(f)]
    assert task_logs, "no task log found: did the demo run?"
    leaks = {str(f): found for f in files if (found := _found(secrets, f.read_bytes()))}
    assert not leaks, leaks


def _tracked_files() -> list[Path]:
    out = subprocess.run(["git", "ls-files", "-z"], cwd=REPO_ROOT, capture_output=True, check=True).stdout
    return [REPO_ROOT / name for name in out.decode().split("\0") if name]


def test_no_credential_in_any_git_tracked_file(local_stack, demo_release) -> None:
    secrets = _secrets(local_stack)
    default_home = REPO_ROOT / ".stack" / "credentials"  # a developer's own running stack, if any
    for f in sorted(default_home.glob("*.json")) if default_home.is_dir() else []:
        import json

        data = json.loads(f.read_text())
        for k in ("secret_key", "token", "password", "jwt_secret", "api_secret_key", "fernet_key"):
            if isinstance(data.get(k), str) and len(data[k]) >= 16:
                secrets[f"{f.name} {k}"] = data[k]
    files = [f for f in _tracked_files() if f.is_file()]
    assert len(files) > 50
    leaks = {str(f.relative_to(REPO_ROOT)): found for f in files
             if (found := _found(secrets, f.read_bytes()))}
    assert not leaks, leaks
    assert not any(f.is_relative_to(REPO_ROOT / ".stack") for f in files)


def test_no_credential_in_the_dataset_registry(local_stack, demo_release) -> None:
    secrets = _secrets(local_stack)
    registry = Path(demo_release["registry"])
    assert (registry / "HEAD").exists()
    dump = subprocess.run(["git", "cat-file", "--batch-all-objects", "--batch"], cwd=registry,
                          capture_output=True, check=True).stdout
    assert demo_release["tag"].encode() in dump and b"endpointurl" in dump  # really the release's objects
    refs = b"".join(p.read_bytes() for p in registry.rglob("*") if p.is_file() and "objects" not in p.parts)
    assert not _found(secrets, dump + refs)
    access_key = local_stack.s3.credentials()["access_key"].encode()
    assert access_key not in dump  # not even the key id: DVC's credentials stay in config.local


# -- object keys -----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", [
    "../../evil.jpg", "/etc/passwd", "..\\..\\evil.jpg", "a/../../../evil.jpg", "./../evil.jpg",
    "\\\\server\\share\\evil.jpg", "C:\\Windows\\evil.jpg", "..%2f..%2fevil.jpg", "\u2025/\u2025/evil.jpg",
    "\uff0e\uff0e/\uff0e\uff0e/evil.jpg", "ev\u2215il\u202e.jpg", "nul\x00byte.jpg", "\n../evil.jpg",
])
def test_object_keys_from_user_names_cannot_leave_their_prefix(name: str) -> None:
    key = safe_key("inputs/upload", name)
    assert key.startswith("inputs/upload/")
    segments = key.split("/")
    assert segments[:2] == ["inputs", "upload"]
    assert not {"", ".", ".."} & set(segments)
    assert key.isascii() and "\\" not in key and "\x00" not in key


@pytest.mark.parametrize("name", ["..", "../..", "/", "\\..\\", " / ./ "])
def test_a_name_that_is_only_traversal_is_refused(name: str) -> None:
    with pytest.raises(KeyError_):
        safe_key("inputs", name)


def test_ingest_of_hostile_file_names_stays_inside_the_input_prefix(
        local_stack, demo_release, tmp_path) -> None:
    """A local folder with files named like paths is uploaded the way ``seed_samples`` does it,
    then ingested; a run's ``input_prefix`` of ``../..`` cannot reach outside ``inputs/``."""
    store = stack_store(local_stack)
    folder = tmp_path / "upload"
    write_samples(tmp_path / "src", 2)
    folder.mkdir()
    images = sorted((tmp_path / "src" / "images").iterdir())
    hostile = ["..\\..\\evil.jpg", "..evil.jpg", "ev\u2215il.png"]  # legal file names on Linux
    for src, name in zip(images + images[:1], hostile, strict=True):
        (folder / name).write_bytes(src.read_bytes())
    before = set(store.list(""))
    prefix = safe_key("inputs", f"sec-{tmp_path.name}")
    for f in sorted(folder.iterdir()):
        store.put_bytes(safe_key(prefix, str(f.relative_to(folder))), f.read_bytes(),
                        mimetypes.guess_type(f.name)[0] or "application/octet-stream")
    added = set(store.list("")) - before
    assert len(added) == len(hostile) and all(k.startswith(prefix + "/") for k in added), added

    env = RunEnv(local_stack.params, store, f"security_{tmp_path.name}")
    assert nightly.ingest(env, prefix.removeprefix("inputs/")) == [0]
    manifest = env.read_table("manifest", 0).to_pylist() + env.read_table("quarantine", 0).to_pylist()
    assert len(manifest) == len(hostile)
    assert all(r["uri"].startswith(f"s3://{store.bucket}/{prefix}/") for r in manifest)
    for escaping in ("../../runs", "/runs", "..\\..\\releases", "../" * 5 + "batches"):
        uri = env.input_uri(escaping)
        assert uri.startswith(f"s3://{store.bucket}/inputs/"), uri
    store.delete_prefix(prefix + "/")
    store.delete_prefix(safe_key("runs", env.run_id) + "/")


# -- Label Studio webhooks ---------------------------------------------------------------------------
def test_label_studio_webhooks_are_not_used(local_stack, demo_release) -> None:
    """Completion is polled (AnnotationCompleteTrigger), so no webhook exists that could be forged."""
    with ls_client(local_stack.labelstudio) as client:
        projects = list(client.sdk.projects.list())
        assert projects, "the demo created no project"
        assert client.sdk.webhooks.list() == []
        for p in projects:
            assert client.sdk.webhooks.list(project=str(p.id)) == []


# -- network ------------------------------------------------------------------------------------------
def test_every_process_of_the_stack_listens_on_loopback_only(local_stack, demo_release) -> None:
    pids = [pid for svc in local_stack.services for pid in svc.pids()]
    assert len(pids) == 6  # weed, label studio, 4 airflow components
    procs = {}
    for pid in pids:
        root = psutil.Process(pid)
        for p in [root, *root.children(recursive=True)]:
            procs[p.pid] = p
    listening = []
    for p in procs.values():
        try:
            conns = p.net_connections(kind="inet")
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        listening += [(p.pid, c.laddr.ip, c.laddr.port) for c in conns if c.status == psutil.CONN_LISTEN]
    assert listening
    assert {ip for _, ip, _ in listening} == {"127.0.0.1"}, listening
    ports = local_stack.params.stack.ports
    assert {ports.s3, ports.s3_filer, ports.label_studio, ports.airflow} <= {port for *_, port in listening}
    # and nothing answers on the machine's other addresses
    others = {a.address for addrs in psutil.net_if_addrs().values() for a in addrs
              if a.family.name == "AF_INET" and not a.address.startswith("127.")}
    for ip in others:
        for port in (ports.s3, ports.label_studio, ports.airflow):
            with pytest.raises(httpx.ConnectError):
                httpx.get(f"http://{ip}:{port}/", timeout=3)
