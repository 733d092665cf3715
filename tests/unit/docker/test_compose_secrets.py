"""Least privilege in the production compose (issue 30, item 4): each service receives exactly the
secrets it uses, read from the rendered config.

Every variable the template ``docker/env.example`` leaves empty is a secret; each gets a distinct random
value, the compose file is rendered (``docker-compose config`` where installed, else the YAML with its
anchors and merge keys resolved by PyYAML and the ``${...}`` interpolated here), and a service receives
a secret when its value appears anywhere in the service's definition (environment, command, health check).
"""

from __future__ import annotations

import json
import re
import secrets
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipelines.ops.deploy import read_env_file

pytestmark = pytest.mark.unit

DOCKER = Path(__file__).resolve().parents[3] / "docker"
COMPOSE = DOCKER / "compose.yaml"
TEMPLATE = DOCKER / "env.example"
COMPOSE_BIN = shutil.which("docker-compose")

# Airflow's own keys go to every component of the one application; the platform's go where used.
AIRFLOW = {"AIRFLOW_DB_PASSWORD", "REDIS_PASSWORD", "AIRFLOW_FERNET_KEY", "AIRFLOW_API_SECRET_KEY",
           "AIRFLOW_JWT_SECRET"}
STORE = {"HOPCHAIN_S3_ACCESS_KEY", "HOPCHAIN_S3_SECRET_KEY"}
READER = {"HOPCHAIN_S3_READER_ACCESS_KEY", "HOPCHAIN_S3_READER_SECRET_KEY"}
MINIO_ROOT = {"MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD"}
LS_TOKEN = {"HOPCHAIN_LS_TOKEN"}
GPU = AIRFLOW | STORE | LS_TOKEN | {"HOPCHAIN_VLM_API_KEY", "HF_TOKEN"}  # GPU stages + the preflight
EXPECTED: dict[str, set[str]] = {
    "postgres": {"POSTGRES_PASSWORD", "AIRFLOW_DB_PASSWORD", "LABEL_STUDIO_DB_PASSWORD"},  # creates both roles
    "redis": {"REDIS_PASSWORD"},
    "minio": MINIO_ROOT,
    "minio-init": MINIO_ROOT | STORE | READER,  # creates the platform's user and the reader
    "label-studio": {"LABEL_STUDIO_DB_PASSWORD", "LABEL_STUDIO_ADMIN_PASSWORD"} | LS_TOKEN,
    "airflow-init": AIRFLOW | {"AIRFLOW_ADMIN_PASSWORD"},
    "airflow-api-server": AIRFLOW | STORE | LS_TOKEN,  # the HopChain pages read the ledger and Label Studio
    "airflow-scheduler": AIRFLOW,
    "airflow-dag-processor": AIRFLOW,
    "airflow-triggerer": AIRFLOW | LS_TOKEN,  # the annotation wait polls Label Studio
    "airflow-worker-default": AIRFLOW | STORE | READER | LS_TOKEN | {"HOPCHAIN_PSEUDONYM_KEY",
                                                                     "HOPCHAIN_VLM_API_KEY"},
    "airflow-worker-gpu": GPU,
    "airflow-worker-gpu-2": GPU,
    "vllm": {"HOPCHAIN_VLM_API_KEY"},  # the served model (profile "served") checks the key its clients send
}

_VAR = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)")


def interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's interpolation: ``${VAR}``, ``${VAR:-default}``, ``${VAR:?error}``, ``$VAR``, ``$$``."""

    def one(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group(1) or m.group(4)
        value = env.get(name)
        op, arg = m.group(2), m.group(3)
        if op in (":-", "-") and (value is None or (op == ":-" and value == "")):
            return arg
        if op in (":?", "?") and (value is None or (op == ":?" and value == "")):
            raise ValueError(f"{name}: {arg}")
        return value or ""

    return _VAR.sub(one, text)


def _walk(node: Any, env: dict[str, str]) -> Any:
    if isinstance(node, dict):
        return {k: _walk(v, env) for k, v in node.items()}
    if isinstance(node, list):
        return [_walk(v, env) for v in node]
    return interpolate(node, env) if isinstance(node, str) else node


def render_yaml(env: dict[str, str]) -> dict[str, Any]:
    """The compose file as ``docker-compose config`` would give it, without docker-compose."""
    return dict(_walk(yaml.safe_load(COMPOSE.read_text()), env))


def render_compose(env_file: Path) -> dict[str, Any]:
    assert COMPOSE_BIN is not None
    proc = subprocess.run([COMPOSE_BIN, "--env-file", str(env_file), "-f", str(COMPOSE), "--profile", "gpu2",
                           "config"], capture_output=True, text=True, timeout=60, cwd=DOCKER)
    assert proc.returncode == 0, proc.stderr
    return dict(yaml.safe_load(proc.stdout))


@pytest.fixture(scope="module")
def secret_env(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, str], dict[str, str], Path]:
    """(the whole env, the secrets: every variable the template leaves empty, with a random value), its file."""
    env = read_env_file(TEMPLATE)
    found = {k: secrets.token_hex(20) for k, v in env.items() if v == ""}
    env.update(found)
    path = tmp_path_factory.mktemp("secrets") / "test.env"
    path.write_text("".join(f"{k}={v}\n" for k, v in env.items()))
    return env, found, path


def received(config: dict[str, Any], found: dict[str, str]) -> dict[str, set[str]]:
    """Service → the names of the secrets whose value appears in its rendered definition."""
    return {name: {k for k, v in found.items() if v in json.dumps(svc)} for name, svc in config["services"].items()}


def test_the_template_s_secrets_are_the_ones_this_test_knows(secret_env: Any) -> None:
    _, found, _ = secret_env
    assert set(found) == set().union(*EXPECTED.values())


def test_each_service_receives_exactly_the_secrets_it_uses(secret_env: Any) -> None:
    env, found, _ = secret_env
    assert received(render_yaml(env), found) == EXPECTED


@pytest.mark.skipif(COMPOSE_BIN is None, reason="docker-compose not installed (Debian: apt-get install docker-compose)")
def test_docker_compose_renders_the_same_secrets_per_service(secret_env: Any) -> None:
    _, found, path = secret_env
    assert received(render_compose(path), found) == EXPECTED


def test_label_studio_reads_images_with_no_key_of_its_own_and_keeps_its_ssrf_guard(secret_env: Any) -> None:
    """Label Studio gets the store's address (S3_ENDPOINT, the one its SSRF guard trusts), never a store
    key: the push gives it the read-only key through its API. The guard stays on with its default list."""
    env, found, _ = secret_env
    ls = render_yaml(env)["services"]["label-studio"]["environment"]
    assert ls["S3_ENDPOINT"] == f"http://{env['HOPCHAIN_S3_HOST']}:{env['HOPCHAIN_S3_PORT']}"
    assert ls["SSRF_PROTECTION_ENABLED"] == "true"
    assert not {"USE_DEFAULT_BANNED_SUBNETS", "USER_ADDITIONAL_BANNED_SUBNETS"} & set(ls)
    reader = json.loads(render_yaml(env)["services"]["airflow-worker-default"]["environment"]
                        ["AIRFLOW_CONN_HOPCHAIN_S3_READER"])
    assert reader["extra"]["label_studio_endpoint"] == "S3_ENDPOINT"
    assert reader["login"] == found["HOPCHAIN_S3_READER_ACCESS_KEY"]


def test_the_interpolation_matches_compose_s_rules() -> None:
    env = {"A": "1", "E": ""}
    assert interpolate("${A}-${B:-d}-${E:-d}-${E-d}-$$A-$A", env) == "1-d-d--$A-1"
    with pytest.raises(ValueError, match="B: set B"):
        interpolate("${B:?set B}", env)
