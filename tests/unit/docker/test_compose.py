"""The production deployment files under docker/: compose validity, health checks, pinned images,
no committed secrets, the Celery topology, and the same Airflow connections as the local stack.

``docker-compose`` (Debian package, 1.29) validates the file without a Docker engine; the tests
that need it are skipped with a visible reason when the binary is missing. The structural checks
read the YAML directly (anchors and merge keys resolved by PyYAML) and always run.
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

from pipelines.ops.deploy import DeploymentSettings, read_env_file
from tests.support.secret_scan import scan_file, scan_tree

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[3]
DOCKER = REPO / "docker"
COMPOSE = DOCKER / "compose.yaml"
TEMPLATE = DOCKER / "env.example"
DOCKERFILE = DOCKER / "airflow" / "Dockerfile"
COMPOSE_BIN = shutil.which("docker-compose")
needs_compose = pytest.mark.skipif(
    COMPOSE_BIN is None, reason="docker-compose not installed (Debian: apt-get install docker-compose)"
)
ONE_SHOT_CONDITION = "service_completed_successfully"
AIRFLOW_COMPONENTS = {"airflow-api-server", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer"}


def filled_env(path: Path) -> dict[str, str]:
    """The template with every empty variable given a fresh, syntactically valid test secret."""
    env = read_env_file(TEMPLATE)
    for key, value in env.items():
        if value == "":
            env[key] = secrets.token_hex(20)
    path.write_text("".join(f"{k}={v}\n" for k, v in env.items()))
    return env


def compose_config(env_file: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    assert COMPOSE_BIN is not None
    return subprocess.run(
        [COMPOSE_BIN, "--env-file", str(env_file), "-f", str(COMPOSE), *extra, "config"],
        capture_output=True, text=True, timeout=60, cwd=DOCKER,
    )


@pytest.fixture(scope="module")
def raw() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], dict[str, str]]:
    """``docker-compose config`` output for the template + generated secrets, and that env."""
    if COMPOSE_BIN is None:
        pytest.skip("docker-compose not installed (Debian: apt-get install docker-compose)")
    env_file = tmp_path_factory.mktemp("compose") / "test.env"
    env = filled_env(env_file)
    proc = compose_config(env_file)
    assert proc.returncode == 0, proc.stderr
    return yaml.safe_load(proc.stdout), env


# -- acceptance 1: it parses --------------------------------------------------------------------
@needs_compose
def test_compose_config_parses_with_the_template_and_secrets(
    rendered: tuple[dict[str, Any], dict[str, str]],
) -> None:
    config, _ = rendered
    expected = {"postgres", "redis", "minio", "minio-init", "label-studio", "airflow-init",
                "airflow-worker-default", "airflow-worker-gpu"} | AIRFLOW_COMPONENTS
    assert expected <= set(config["services"])


@needs_compose
def test_compose_refuses_to_render_while_a_secret_is_empty(tmp_path: Path) -> None:
    env_file = tmp_path / "template.env"
    shutil.copy(TEMPLATE, env_file)
    proc = compose_config(env_file)
    assert proc.returncode != 0
    assert re.search(r"set [A-Z_]+ in docker/\.env", proc.stderr), proc.stderr


@needs_compose
def test_the_optional_second_gpu_worker_profile_renders(tmp_path: Path) -> None:
    env_file = tmp_path / "test.env"
    filled_env(env_file)
    proc = compose_config(env_file, "--profile", "gpu2")
    assert proc.returncode == 0, proc.stderr
    gpu2 = yaml.safe_load(proc.stdout)["services"]["airflow-worker-gpu-2"]
    devices = gpu2["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["device_ids"] == ["1"] and "--queues" in gpu2["command"]


# -- health checks ------------------------------------------------------------------------------
def test_every_service_has_a_health_check_or_is_an_awaited_one_shot_job(raw: dict[str, Any]) -> None:
    services: dict[str, Any] = raw["services"]
    conditions: dict[str, set[str]] = {name: set() for name in services}
    for svc in services.values():
        for dep, spec in (svc.get("depends_on") or {}).items():
            conditions[dep].add(spec["condition"])
    for name, svc in services.items():
        hc = svc.get("healthcheck")
        if hc and not hc.get("disable") and hc.get("test"):
            assert svc.get("restart") != "no", f"{name}: long-running services restart"
            continue
        # No health check: only a one-shot job that every dependent awaits to completion.
        assert svc.get("restart") == "no", f"{name} has no health check and is not a one-shot job"
        assert conditions[name] == {ONE_SHOT_CONDITION}, (
            f"{name} is a one-shot job: dependents must wait with {ONE_SHOT_CONDITION}, "
            f"got {conditions[name]}"
        )


def test_services_wait_for_healthy_dependencies(raw: dict[str, Any]) -> None:
    services = raw["services"]
    for name, svc in services.items():
        for dep, spec in (svc.get("depends_on") or {}).items():
            want = ONE_SHOT_CONDITION if services[dep].get("restart") == "no" else "service_healthy"
            assert spec["condition"] == want, f"{name} -> {dep}"
    for comp in AIRFLOW_COMPONENTS | {"airflow-worker-default", "airflow-worker-gpu"}:
        assert set(services[comp]["depends_on"]) == {"postgres", "redis", "minio-init", "airflow-init"}


# -- pinned images --------------------------------------------------------------------------------
def _pinned(ref: str) -> bool:
    name, _, tag = ref.rpartition(":")
    return bool(name) and "/" not in tag and tag not in ("", "latest") and bool(re.search(r"\d", tag))


def test_every_image_is_pinned_to_an_explicit_version(raw: dict[str, Any]) -> None:
    for name, svc in raw["services"].items():
        image = re.sub(r"\$\{[A-Z_]+:-([^}]+)\}", r"\1", svc["image"])  # default of ${TAG:-0.1.0}
        assert _pinned(image), f"{name}: image {svc['image']!r} is not pinned"
        if "build" in svc:
            assert svc["image"].startswith("hopchain/"), f"{name}: built images are named hopchain/..."


def test_dockerfile_base_images_are_pinned() -> None:
    text = DOCKERFILE.read_text()
    args = dict(re.findall(r"^ARG\s+([A-Z_]+)=(\S+)", text, re.M))
    stages: set[str] = set()
    froms = re.findall(r"^FROM\s+(\S+)(?:\s+AS\s+(\S+))?", text, re.M)
    assert froms, "no FROM line"
    for ref, stage in froms:
        ref = re.sub(r"\$\{([A-Z_]+)\}", lambda m: args[m.group(1)], ref)
        assert ref in stages or _pinned(ref), f"FROM {ref} is not pinned"
        stages.add(stage)
    assert args["AIRFLOW_BASE_IMAGE"].split("@")[0] == "apache/airflow:3.3.2-python3.11"
    assert {"airflow", "gpu-worker"} <= stages


def test_celery_pins_are_the_ones_that_work_with_the_provider() -> None:
    """celery 5.7.0 breaks apache-airflow-providers-celery: the environment and the lock pin 5.6.3."""
    from importlib.metadata import version

    assert version("celery") == "5.6.3"
    assert version("apache-airflow-providers-celery") == "3.26.0"
    lock = REPO / "requirements" / "lock.txt"
    if not lock.exists():
        pytest.skip("requirements/lock.txt not generated yet (the images install from it)")
    pins = {line.split("==")[0].lower(): line.split("==")[1].split()[0]
            for line in lock.read_text().splitlines() if "==" in line and not line.startswith("#")}
    assert pins.get("celery") == "5.6.3"
    assert pins.get("apache-airflow-providers-celery") == "3.26.0"
    assert pins.get("apache-airflow") == "3.3.2"
    assert pins.get("torch") == "2.14.1"


# -- no secrets -----------------------------------------------------------------------------------
def test_no_secret_value_in_any_file_under_docker() -> None:
    assert scan_tree(DOCKER) == {}


def test_the_env_template_leaves_every_secret_empty() -> None:
    env = read_env_file(TEMPLATE)
    secret_like = {k for k in env if re.search(r"PASSWORD|SECRET|TOKEN|KEY", k) and not k.endswith("_FILE")}
    assert secret_like >= {"HOPCHAIN_S3_SECRET_KEY", "HOPCHAIN_LS_TOKEN", "POSTGRES_PASSWORD",
                           "AIRFLOW_FERNET_KEY"}
    assert {k: env[k] for k in secret_like if env[k]} == {}


@pytest.mark.parametrize(
    ("filename", "content"),
    [
        ("a.env", "POSTGRES_PASSWORD=hunter22\n"),
        ("b.yaml", "services:\n  a:\n    environment:\n      DB_PASSWORD: hunter22\n"),
        ("c.yaml", "services:\n  a:\n    environment:\n      - API_TOKEN=abc123\n"),
        ("d.yaml", "x:\n  url: redis://:hunter22@redis:6379/0\n"),
        ("e.yaml", "x:\n  conn: '{\"login\": \"AKIA1\", \"password\": \"${P}\"}'\n"),
        ("f.yaml", "x:\n  command: [\"redis-server\", \"--requirepass\", \"hunter22\"]\n"),
        ("g.sh", "export MINIO_SECRET_KEY=abc123\n"),
        ("h.sh", "mc alias set x http://root:hunter22@minio:9000\n"),
    ],
)
def test_the_secret_scanner_finds_planted_secrets(tmp_path: Path, filename: str, content: str) -> None:
    f = tmp_path / filename
    f.write_text(content)
    findings = scan_file(f)
    assert findings, f"planted secret not found in {content!r}"
    assert not any("hunter22" in x or "abc123" in x for x in findings), "findings must not echo secrets"


def test_the_secret_scanner_accepts_placeholders(tmp_path: Path) -> None:
    f = tmp_path / "ok.yaml"
    f.write_text(
        "x:\n  environment:\n    DB_PASSWORD: ${DB_PASSWORD:?set me}\n    EMPTY_TOKEN: ''\n"
        "    ENABLE_LEGACY_API_TOKEN: 'true'\n    PASSWORDS_FILE: /run/secrets/pw.json\n"
        "    URL: redis://:${REDIS_PASSWORD}@redis:6379/0\n"
    )
    assert scan_file(f) == []


# -- topology -------------------------------------------------------------------------------------
def test_celery_topology_default_and_gpu_workers(raw: dict[str, Any]) -> None:
    services = raw["services"]
    for name in AIRFLOW_COMPONENTS | {"airflow-worker-default", "airflow-worker-gpu", "airflow-init"}:
        env = services[name]["environment"]
        assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor", name
        assert env["AIRFLOW__CELERY__BROKER_URL"].startswith("redis://"), name
        assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("postgresql"), name
    default, gpu = services["airflow-worker-default"], services["airflow-worker-gpu"]
    queue = lambda svc: svc["command"][svc["command"].index("--queues") + 1]
    assert (default["command"][:2], queue(default)) == (["celery", "worker"], "default")
    assert (gpu["command"][:2], queue(gpu)) == (["celery", "worker"], "gpu")
    assert gpu["command"][gpu["command"].index("--concurrency") + 1] == "1"
    devices = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [
        {"driver": "nvidia", "device_ids": ["${GPU_WORKER_DEVICE_ID:-0}"], "capabilities": ["gpu"]}]
    assert gpu["build"]["target"] == "gpu-worker" and default["build"]["target"] == "airflow"
    assert "deploy" not in default


def test_volumes_are_named_and_host_ports_bind_loopback(raw: dict[str, Any]) -> None:
    declared = set(raw["volumes"])
    used: set[str] = set()
    for name, svc in raw["services"].items():
        for mount in svc.get("volumes", []):
            source, target = mount.split(":")[:2]
            if source.startswith("./"):  # read-only init scripts from this folder only
                assert mount.endswith(":ro") and (DOCKER / source).is_file(), f"{name}: {mount}"
            else:
                assert source in declared, f"{name}: {source} is not a named volume"
                used.add(source)
        for port in svc.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name}: {port} must bind 127.0.0.1"
    assert used == declared
    data = {"postgres": "/var/lib/postgresql/data", "minio": "/data", "redis": "/data",
            "label-studio": "/label-studio/data"}
    for name, path in data.items():
        assert any(m.split(":")[1] == path for m in raw["services"][name]["volumes"]), name


def test_label_studio_runs_on_postgresql(raw: dict[str, Any]) -> None:
    ls = raw["services"]["label-studio"]
    assert ls["image"].startswith("heartexlabs/label-studio:1.23.")
    env = ls["environment"]
    assert env["DJANGO_DB"] == "default" and env["POSTGRE_HOST"] == "postgres"
    assert env["POSTGRE_NAME"] == "labelstudio"
    init = (DOCKER / "postgres" / "init-databases.sh").read_text()
    assert "CREATE DATABASE airflow" in init and "CREATE DATABASE labelstudio" in init
    initdb = ":/docker-entrypoint-initdb.d/10-init-databases.sh:ro"
    assert any(m.endswith(initdb) for m in raw["services"]["postgres"]["volumes"])


def test_env_template_defines_every_variable_compose_uses(raw: dict[str, Any]) -> None:
    code = "\n".join(line for line in COMPOSE.read_text().splitlines() if not line.lstrip().startswith("#"))
    used = set(re.findall(r"(?<!\$)\$\{([A-Z][A-Z0-9_]*)", code))
    defined = set(read_env_file(TEMPLATE))
    assert used - defined == set()
    # Every HOPCHAIN_* variable is a DeploymentSettings field, except the image tag and the optional
    # VLM endpoint key (read by pipelines.vlm.backends, not a connection).
    not_settings = {"HOPCHAIN_IMAGE_TAG", "HOPCHAIN_VLM_API_KEY"}
    hopchain = {k for k in defined if k.startswith("HOPCHAIN_")} - not_settings
    # HOPCHAIN_SIMULATED_ANNOTATORS is fixed to forbid in the compose itself, never taken from .env
    assert hopchain == set(DeploymentSettings.ENV.values()) - {"HOPCHAIN_PARAMS", "HOPCHAIN_SIMULATED_ANNOTATORS"}


def test_production_refuses_simulated_annotators_outright(raw: dict[str, Any]) -> None:
    """Issue 26: the compose fixes HOPCHAIN_SIMULATED_ANNOTATORS=forbid (no .env can allow it), and a
    deployment that forbids them refuses a profile that turns them on, the demo profile included."""
    from pipelines.config import ConfigError

    common = raw["x-hopchain-env"] if "x-hopchain-env" in raw else next(
        v for k, v in raw.items() if k.startswith("x-") and isinstance(v, dict) and "HOPCHAIN_PROFILE" in v)
    assert common["HOPCHAIN_SIMULATED_ANNOTATORS"] == "forbid"
    settings = DeploymentSettings.from_env_file(TEMPLATE, overrides={"HOPCHAIN_PROFILE": "demo"})
    assert settings.simulated_annotators == "forbid"
    with pytest.raises(ConfigError, match="simulated annotators"):
        settings.params()
    assert DeploymentSettings.from_env_file(TEMPLATE, overrides={"HOPCHAIN_PROFILE": "gpu"}).params().profile == "gpu"


@needs_compose
def test_no_env_file_turns_on_simulated_annotators_in_production(tmp_path: Path) -> None:
    """``docker-compose config`` with a .env that says allow and selects the demo profile: every Airflow
    component (the tasks run in the workers) still gets forbid, and its settings refuse the demo profile."""
    from pipelines.config import ConfigError

    env_file = tmp_path / "test.env"
    filled_env(env_file)
    text = env_file.read_text().replace("HOPCHAIN_PROFILE=gpu\n", "HOPCHAIN_PROFILE=demo\n")
    env_file.write_text(text + "HOPCHAIN_SIMULATED_ANNOTATORS=allow\n")
    proc = compose_config(env_file)
    assert proc.returncode == 0, proc.stderr
    services = yaml.safe_load(proc.stdout)["services"]
    for name in AIRFLOW_COMPONENTS | {"airflow-worker-default", "airflow-worker-gpu", "airflow-init"}:
        svc_env = services[name]["environment"]
        assert svc_env["HOPCHAIN_SIMULATED_ANNOTATORS"] == "forbid", name
        assert svc_env["HOPCHAIN_PROFILE"] == "demo"
    with pytest.raises(ConfigError, match=r"profile 'demo' turns on simulated annotators"):
        # (the image's params.yaml is the repository's)
        DeploymentSettings.from_env({**services["airflow-init"]["environment"],
                                     "HOPCHAIN_PARAMS": str(REPO / "params.yaml")}).params()


# -- the same connections as the local stack -------------------------------------------------------
@needs_compose
def test_compose_connections_are_the_local_stack_connections(
    rendered: tuple[dict[str, Any], dict[str, str]],
) -> None:
    config, env = rendered
    settings = DeploymentSettings.from_env(env)
    expected = settings.airflow_connections()  # pipelines.ops.deploy.airflow_connections
    for conn in expected.values():
        conn["extra"] = json.loads(conn["extra"])
    # each component gets only the connections it uses (test_compose_secrets.py): these, exactly
    uses = {"airflow-worker-default": set(expected), "airflow-api-server": {"hopchain_s3", "hopchain_label_studio"},
            "airflow-worker-gpu": {"hopchain_s3", "hopchain_label_studio"}, "airflow-triggerer": {"hopchain_label_studio"},
            "airflow-scheduler": set(), "airflow-dag-processor": set(), "airflow-init": set()}
    for name in AIRFLOW_COMPONENTS | {"airflow-worker-default", "airflow-worker-gpu", "airflow-init"}:
        svc_env = config["services"][name]["environment"]
        got = {k[len("AIRFLOW_CONN_"):].lower(): json.loads(v) for k, v in svc_env.items()
               if k.startswith("AIRFLOW_CONN_")}
        assert got == {cid: expected[cid] for cid in uses[name]}, name
        # ... and the stage code sees the same endpoints as the settings model.
        assert svc_env["HOPCHAIN_S3_ENDPOINT"] == settings.s3_endpoint
        assert svc_env["HOPCHAIN_LS_URL"] == settings.label_studio_url
        assert DeploymentSettings.from_env(svc_env).s3_endpoint == settings.s3_endpoint
