"""Acceptance 3: the local stack and the compose deployment read the same configuration model.

``pipelines.ops.deploy.DeploymentSettings`` is loaded from the compose env template (docker/env.example)
and from the local stack's generated credentials; both give the same params.yaml profiles, the same
connection ids and connection layout, and only endpoints and credentials differ.
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path

import pytest

from pipelines.config import ConfigError, load_params, profile_names
from pipelines.ops.deploy import LABEL_STUDIO_CONN_ID, S3_CONN_ID, DeploymentSettings, main, read_env_file

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[3]
TEMPLATE = REPO / "docker" / "env.example"
PARAMS = REPO / "params.yaml"


def secrets_env() -> dict[str, str]:
    return {"HOPCHAIN_S3_ACCESS_KEY": "hc" + secrets.token_hex(9),
            "HOPCHAIN_S3_SECRET_KEY": secrets.token_urlsafe(30),
            "HOPCHAIN_LS_TOKEN": secrets.token_hex(20),
            "HOPCHAIN_S3_READER_ACCESS_KEY": "hr" + secrets.token_hex(9),
            "HOPCHAIN_S3_READER_SECRET_KEY": secrets.token_urlsafe(30),
            "HOPCHAIN_PSEUDONYM_KEY": secrets.token_hex(32)}


@pytest.fixture()
def local_stack(tmp_path: Path):
    """The local stack object with generated credentials (files only; nothing is started)."""
    from pipelines.stack import LocalStack

    return LocalStack(load_params(PARAMS, "demo"), home=tmp_path / "stack")


def test_the_compose_env_template_loads_into_the_settings_model() -> None:
    settings = DeploymentSettings.from_env_file(TEMPLATE)
    assert settings.profile == "gpu" and settings.profile in profile_names(PARAMS)
    assert settings.s3_endpoint == "http://minio:9000"
    assert settings.label_studio_url == "http://label-studio:8080"
    # The template holds no secret: exactly the three platform secrets are missing.
    assert settings.missing_secrets() == [
        "HOPCHAIN_S3_ACCESS_KEY", "HOPCHAIN_S3_SECRET_KEY", "HOPCHAIN_LS_TOKEN", "HOPCHAIN_S3_READER_ACCESS_KEY",
        "HOPCHAIN_S3_READER_SECRET_KEY", "HOPCHAIN_PSEUDONYM_KEY"]
    with pytest.raises(ConfigError, match="missing secrets"):
        settings.airflow_connections()
    # The deployment runs the repository's params.yaml with the template's profile.
    assert settings.params() == load_params(PARAMS, "gpu")
    assert (settings.bucket, settings.dvc_bucket) == (
        settings.params().store.bucket, settings.params().release.dvc_remote_bucket)


def test_local_stack_and_compose_give_the_same_connections_and_profiles(local_stack) -> None:
    from pipelines.ops.deploy import airflow_connections

    s3, ls = local_stack.s3.credentials(), local_stack.labelstudio.credentials()
    local = DeploymentSettings.from_credentials(s3, ls, profile="demo")
    compose = DeploymentSettings.from_env_file(TEMPLATE, overrides=secrets_env())

    # The local stack's own provisioning and the settings model build identical connections.
    assert local.airflow_connections() == airflow_connections(s3, ls)
    local_conns, compose_conns = local.airflow_connections(), compose.airflow_connections()
    assert set(local_conns) == set(compose_conns) == {S3_CONN_ID, "hopchain_s3_reader", LABEL_STUDIO_CONN_ID}
    # the reader is a key of its own: Label Studio never gets the platform's read-write key
    assert local_conns["hopchain_s3_reader"]["login"] != local_conns[S3_CONN_ID]["login"]
    for cid in local_conns:
        a, b = local_conns[cid], compose_conns[cid]
        assert set(a) == set(b) and a["conn_type"] == b["conn_type"]
        assert set(json.loads(a["extra"])) == set(json.loads(b["extra"]))
        # Only endpoints and credentials differ.
        same = {k for k in a if a[k] == b[k]}
        assert same >= {"conn_type", "description"}
    assert local_conns[S3_CONN_ID]["host"] == "127.0.0.1" and compose_conns[S3_CONN_ID]["host"] == "minio"

    # Same profiles from the same params.yaml.
    assert local.params() == load_params(PARAMS, "demo")
    assert compose.params() == load_params(PARAMS, "gpu")
    # The pipeline code's environment: the local stack exports exactly what the model exports.
    exported = local_stack.env_exports()
    model = local.env_exports()
    for key in ("HOPCHAIN_S3_ENDPOINT", "HOPCHAIN_S3_ACCESS_KEY", "HOPCHAIN_S3_SECRET_KEY", "HOPCHAIN_LS_URL",
                "HOPCHAIN_LS_TOKEN"):
        assert exported[key] == model[key], key


def test_s3_credentials_for_the_stage_code() -> None:
    env = secrets_env()
    creds = DeploymentSettings.from_env_file(TEMPLATE, overrides=env).s3_credentials()
    assert (creds.url, creds.access_key, creds.secret_key) == (
        "http://minio:9000", env["HOPCHAIN_S3_ACCESS_KEY"], env["HOPCHAIN_S3_SECRET_KEY"])
    assert env["HOPCHAIN_S3_SECRET_KEY"] not in repr(creds)


def test_secrets_never_appear_in_repr_or_summary() -> None:
    env = secrets_env()
    settings = DeploymentSettings.from_env_file(TEMPLATE, overrides=env)
    shown = repr(settings) + str(settings) + json.dumps(settings.summary())
    for value in env.values():
        assert value not in shown


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"HOPCHAIN_S3_SECURE": "true"}, "HOPCHAIN_S3_SECURE"),
        ({"HOPCHAIN_S3_SECURE": "yes"}, "HOPCHAIN_S3_SECURE"),
        ({"HOPCHAIN_S3_PORT": "http"}, "HOPCHAIN_S3_PORT"),
        ({"HOPCHAIN_S3_HOST": ""}, "HOPCHAIN_S3_HOST: is not set"),
        ({"HOPCHAIN_LS_HOST": "label-studio"}, "HOPCHAIN_LS_HOST"),
        ({"HOPCHAIN_S3_SECRET_KEY": 'ab"cdefgh123'}, "HOPCHAIN_S3_SECRET_KEY"),
        ({"HOPCHAIN_S3_SECRET_KEY": "short"}, "HOPCHAIN_S3_SECRET_KEY"),
        ({"HOPCHAIN_LS_TOKEN": "x" * 41}, "HOPCHAIN_LS_TOKEN"),
    ],
)
def test_invalid_settings_name_the_variable_not_the_value(override: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message) as err:
        DeploymentSettings.from_env_file(TEMPLATE, overrides={**secrets_env(), **override})
    for value in override.values():
        if len(value) > 5:
            assert value not in str(err.value)


def test_bucket_names_must_agree_with_params_yaml() -> None:
    settings = DeploymentSettings.from_env_file(TEMPLATE, overrides={"HOPCHAIN_BUCKET": "other"})
    with pytest.raises(ConfigError, match="HOPCHAIN_BUCKET='other' but params.yaml says 'hopchain'"):
        settings.params()


def test_a_production_env_that_allows_simulated_annotators_is_refused(tmp_path: Path) -> None:
    """Issue 26: only the local demo stack allows simulated annotators; settings read from an environment or
    an env file (a production deployment) refuse ``allow`` naming the variable, and ``check`` exits 1."""
    with pytest.raises(ConfigError, match=r"HOPCHAIN_SIMULATED_ANNOTATORS: 'allow' is the local demo stack's"):
        DeploymentSettings.from_env_file(TEMPLATE, overrides={"HOPCHAIN_SIMULATED_ANNOTATORS": "allow"})
    with pytest.raises(ConfigError, match="HOPCHAIN_SIMULATED_ANNOTATORS"):
        DeploymentSettings.from_env_file(TEMPLATE, overrides={"HOPCHAIN_SIMULATED_ANNOTATORS": "yes"})
    assert DeploymentSettings.from_env_file(TEMPLATE).simulated_annotators == "forbid"  # the default
    env = tmp_path / "allow.env"
    env.write_text(TEMPLATE.read_text() + "HOPCHAIN_SIMULATED_ANNOTATORS=allow\n")
    assert main(["check", str(env)]) == 1


def test_the_local_stack_is_the_deployment_that_allows_simulated_annotators(local_stack) -> None:
    local = DeploymentSettings.from_credentials(local_stack.s3.credentials(), local_stack.labelstudio.credentials(),
                                                profile="demo")
    assert local.simulated_annotators == "allow" and local.params().annotation.simulated.enabled
    assert local_stack.env_exports()["HOPCHAIN_SIMULATED_ANNOTATORS"] == "allow"  # `hopchain stack env`
    env = local_stack.airflow.env()  # what its Airflow components (and so the tasks) run with
    assert env["HOPCHAIN_SIMULATED_ANNOTATORS"] == "allow" and env["HOPCHAIN_PROFILE"] == "demo"


def test_env_file_parser(tmp_path: Path) -> None:
    f = tmp_path / "x.env"
    f.write_text("# comment\n\nexport A=1\nB='two words'\nC=\"q\"\nD=\n")
    assert read_env_file(f) == {"A": "1", "B": "two words", "C": "q", "D": ""}
    f.write_text("not an assignment\n")
    with pytest.raises(ConfigError, match="x.env:1"):
        read_env_file(f)


def test_check_command_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", str(TEMPLATE)]) == 3  # valid, secrets missing
    out = capsys.readouterr().out
    assert "HOPCHAIN_LS_TOKEN" in out and "hopchain, hopchain-dvc" in out
    env = read_env_file(TEMPLATE) | secrets_env()
    filled = tmp_path / "filled.env"
    filled.write_text("".join(f"{k}={v}\n" for k, v in env.items()))
    assert main(["check", str(filled)]) == 0
    out = capsys.readouterr().out
    assert env["HOPCHAIN_S3_SECRET_KEY"] not in out and "missing secrets  none" in out
    filled.write_text(filled.read_text().replace("HOPCHAIN_S3_SECURE=false", "HOPCHAIN_S3_SECURE=true"))
    assert main(["check", str(filled)]) == 1
    assert main(["nonsense"]) == 2
