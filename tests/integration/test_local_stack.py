"""Issue 3 acceptance against the real services: up, status, APIs, refusal, down."""

from __future__ import annotations

import socket
import subprocess
import sys

import httpx
import pytest

from pipelines.stack import LocalStack, StackError
from tests.support.stack import free_ports, params_with_ports

pytestmark = pytest.mark.integration


def test_every_service_is_healthy_and_listens_on_loopback_only(local_stack: LocalStack) -> None:
    statuses = {s.name: s for s in local_stack.status()}
    assert set(statuses) == {"s3", "labelstudio", "airflow"}
    assert all(s.healthy for s in statuses.values()), statuses
    listening = local_stack.listening()
    assert listening, "no listening sockets found"
    assert {ip for _, ip, _ in listening} == {"127.0.0.1"}, listening
    ports = local_stack.params.stack.ports
    assert {ports.s3, ports.label_studio, ports.airflow} <= {port for *_, port in listening}


def test_credentials_files_are_private(local_stack: LocalStack) -> None:
    for svc in local_stack.services:
        f = svc.credentials_file()
        assert f.exists() and (f.stat().st_mode & 0o777) == 0o600


def test_airflow_rest_api_answers_with_the_preset_credentials(local_stack: LocalStack) -> None:
    af = local_stack.airflow
    token = af.token()
    r = httpx.get(f"{af.url()}/api/v2/dags", headers={"Authorization": f"Bearer {token}"}, timeout=30)
    assert r.status_code == 200 and "dags" in r.json()
    assert httpx.get(f"{af.url()}/api/v2/dags", timeout=10).status_code == 401
    bad = httpx.post(f"{af.url()}/auth/token", json={"username": "admin", "password": "wrong"}, timeout=10)
    assert bad.status_code in (401, 403)
    # the gpu pool and the two connections were provisioned
    pools = httpx.get(f"{af.url()}/api/v2/pools/gpu", headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert pools.status_code == 200 and pools.json()["slots"] == local_stack.params.stack.gpu_slots
    for conn_id in ("hopchain_s3", "hopchain_label_studio"):
        c = httpx.get(f"{af.url()}/api/v2/connections/{conn_id}",
                      headers={"Authorization": f"Bearer {token}"}, timeout=10)
        assert c.status_code == 200, conn_id


def test_label_studio_api_answers_with_the_generated_token(local_stack: LocalStack) -> None:
    ls = local_stack.labelstudio
    token = ls.credentials()["token"]
    r = httpx.get(f"{ls.url()}/api/projects", headers={"Authorization": f"Token {token}"}, timeout=10)
    assert r.status_code == 200
    assert httpx.get(f"{ls.url()}/api/projects", timeout=10).status_code == 401


def test_anonymous_s3_request_is_refused_and_credentials_work(local_stack: LocalStack) -> None:
    assert local_stack.s3.anonymous_refused()
    client = local_stack.s3.client()
    assert set(local_stack.params.stack.buckets) <= {b.name for b in client.list_buckets()}


def test_second_up_while_running_fails_clearly(local_stack: LocalStack) -> None:
    again = LocalStack(local_stack.params, home=local_stack.home)
    with pytest.raises(StackError, match="already running"):
        again.up(log=lambda *_: None)


def test_up_with_a_port_taken_by_another_program_fails_clearly(tmp_path) -> None:
    params = params_with_ports(free_ports())
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", params.stack.ports.label_studio))
        squatter.listen()
        stack = LocalStack(params, home=tmp_path / "home")
        with pytest.raises(StackError) as err:
            stack.up(log=lambda *_: None)
    msg = str(err.value)
    assert f"port {params.stack.ports.label_studio}" in msg and "labelstudio" in msg
    assert stack.running_services() == []  # nothing was left behind


def test_cli_status_reports_health_and_credentials(local_stack: LocalStack) -> None:
    env = {"HOPCHAIN_HOME": str(local_stack.home), "PATH": "/usr/bin:/bin"}
    for name, port in local_stack.params.stack.ports.model_dump().items():
        env[f"HOPCHAIN_PORT_{name.upper()}"] = str(port)
    out = subprocess.run([sys.executable, "-m", "pipelines.cli", "stack", "status"], env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.count("healthy") >= 3 and "credentials" in out.stdout
    secrets = [local_stack.s3.credentials()["secret_key"], local_stack.labelstudio.credentials()["token"]]
    assert not any(s in out.stdout for s in secrets)


@pytest.mark.slow
def test_down_leaves_no_process_and_no_port(tmp_path) -> None:
    """A private stack (so the session one stays up): up, then down frees every pid and port."""
    params = params_with_ports(free_ports())
    stack = LocalStack(params, home=tmp_path / "home")
    stack.up(log=lambda *_: None)
    try:
        pids = [pid for svc in stack.services for pid in svc.pids()]
        ports = sorted({port for *_, port in stack.listening()})
        assert len(pids) == 6 and ports
    finally:
        stack.down(log=lambda *_: None)
    import psutil

    assert not [p for p in pids if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
    from pipelines.stack.process import port_in_use

    assert [p for p in ports if port_in_use(p)] == []
    assert stack.running_services() == []


def test_stack_folders_are_0700_and_secret_files_0600(local_stack: LocalStack) -> None:
    """Issue 30, item 4, on the running stack: every folder under its home is its owner's only, and no
    file is readable by anyone else: credentials, Label Studio's database (API tokens), Airflow's config,
    database and password file, SeaweedFS's identities, the logs."""
    import os
    import stat
    from pathlib import Path

    home = local_stack.home
    secret_files = [*(svc.credentials_file() for svc in local_stack.services), home / "seaweedfs-s3.json",
                    home / "labelstudio" / "label_studio.sqlite3", home / "airflow" / "airflow.cfg",
                    home / "airflow" / "airflow.db", home / "airflow" / "simple_auth_manager_passwords.json"]
    for f in secret_files:
        assert f.exists() and stat.S_IMODE(f.stat().st_mode) == 0o600, f
    loose = []
    for folder, dirs, files in os.walk(home):
        # the dataset registry (release/: its git checkout and DVC's cache, whose objects DVC chmods read-only
        # itself, whatever the umask) is what trainers clone: released data, no secret (test_security scans it
        # for every generated secret), inside the 0700 home
        if Path(folder).relative_to(home).parts[:1] == ("release",):
            continue
        for name in dirs:
            st = os.lstat(os.path.join(folder, name))
            if not stat.S_ISLNK(st.st_mode) and stat.S_IMODE(st.st_mode) != 0o700:  # e.g. logs/.../latest
                loose.append(os.path.join(folder, name))
        for name in files:
            st = os.lstat(os.path.join(folder, name))
            # SeaweedFS chmods its volume-info files (no keys, no object data) to 0644 itself: inside
            # its 0700 folder nobody else reaches them, and the next `stack up` strips the bits again
            if name.endswith(".vif") and Path(folder).name == "seaweedfs":
                continue
            if not stat.S_ISLNK(st.st_mode) and st.st_mode & 0o077:
                loose.append(os.path.join(folder, name))
    assert stat.S_IMODE(home.stat().st_mode) == 0o700 and loose == []
