"""Airflow's own connection parser reads the AIRFLOW_CONN_* JSON that docker/compose.yaml renders.

Needs the docker-compose binary (Debian package, validates without an engine) and imports Airflow
(~1.5 s), hence an integration test rather than a unit test.
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from pipelines.ops.deploy import read_env_file

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
DOCKER = REPO / "docker"
COMPOSE_BIN = shutil.which("docker-compose")


@pytest.mark.skipif(COMPOSE_BIN is None,
                    reason="docker-compose not installed (Debian: apt-get install docker-compose)")
def test_airflow_parses_the_compose_connections(tmp_path: Path) -> None:
    from airflow.models.connection import Connection

    env = {k: (v or secrets.token_hex(20)) for k, v in read_env_file(DOCKER / "env.example").items()}
    env_file = tmp_path / "test.env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in env.items()))
    proc = subprocess.run([str(COMPOSE_BIN), "--env-file", str(env_file), "-f", str(DOCKER / "compose.yaml"),
                           "config"], capture_output=True, text=True, timeout=60, cwd=DOCKER)
    assert proc.returncode == 0, proc.stderr
    svc_env = yaml.safe_load(proc.stdout)["services"]["airflow-worker-gpu"]["environment"]

    s3 = Connection.from_json(svc_env["AIRFLOW_CONN_HOPCHAIN_S3"], conn_id="hopchain_s3")
    assert (s3.conn_type, s3.host, s3.port) == ("hopchain_s3", "minio", 9000)
    assert (s3.login, s3.password) == (env["HOPCHAIN_S3_ACCESS_KEY"], env["HOPCHAIN_S3_SECRET_KEY"])
    assert s3.extra_dejson == {"secure": False, "region": "us-east-1"}
    ls = Connection.from_json(svc_env["AIRFLOW_CONN_HOPCHAIN_LABEL_STUDIO"], conn_id="hopchain_label_studio")
    assert (ls.conn_type, ls.host, ls.port, ls.password) == (
        "label_studio", "http://label-studio", 8080, env["HOPCHAIN_LS_TOKEN"])
    assert ls.extra_dejson == {"token_type": "legacy"}
