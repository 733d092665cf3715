"""Deployment settings: where the services are and how to reach them, read from the environment.

The local stack (``hopchain stack``) and the production deployment (``docker/compose.yaml``) read
the SAME model, :class:`DeploymentSettings`; only endpoints and credentials differ. Everything else
(stage knobs, profiles, bucket names) stays in ``params.yaml`` (:class:`pipelines.config.Params`).

Environment variables (the compose ``.env`` template ``docker/env.example`` sets them all):

=========================  ====================================================  ==========
variable                   meaning                                               secret
=========================  ====================================================  ==========
HOPCHAIN_PARAMS            path of params.yaml                                   no
HOPCHAIN_PROFILE           params.yaml profile (``base``, ``demo``, ``gpu``)     no
HOPCHAIN_S3_SCHEME         ``http`` or ``https``                                 no
HOPCHAIN_S3_HOST           S3 host name, no scheme (``minio``)                   no
HOPCHAIN_S3_PORT           S3 port                                               no
HOPCHAIN_S3_SECURE         ``true`` iff the scheme is https (JSON bool)          no
HOPCHAIN_S3_REGION         S3 region                                             no
HOPCHAIN_BUCKET            run-artifact bucket; must equal params store.bucket   no
HOPCHAIN_DVC_BUCKET        DVC remote bucket; must equal release.dvc_remote_bucket no
HOPCHAIN_LS_HOST           Label Studio base, scheme included (``http://label-studio``) no
HOPCHAIN_LS_PORT           Label Studio port                                     no
HOPCHAIN_S3_ACCESS_KEY     S3 access key of the platform's (non-root) user       yes
HOPCHAIN_S3_SECRET_KEY     its secret key                                        yes
HOPCHAIN_LS_TOKEN          Label Studio API token (legacy ``Token`` scheme)      yes
HOPCHAIN_PSEUDONYM_KEY     key of the annotator pseudonyms in releases            yes
HOPCHAIN_SIMULATED_ANNOTATORS ``forbid`` (the only value production accepts)       no
=========================  ====================================================  ==========

Simulated annotators are the local demo stack's (:meth:`DeploymentSettings.from_credentials` says
``allow``): the production compose sets ``HOPCHAIN_SIMULATED_ANNOTATORS=forbid`` outright, settings read from
an environment or an env file (:meth:`DeploymentSettings.from_env`) refuse ``allow``, and
:meth:`DeploymentSettings.params` refuses a profile that turns them on (:func:`pipelines.config.check_deployment`).

Secrets are :class:`pydantic.SecretStr` (never shown by ``repr``/``str``) and come only from the
environment; a missing secret is reported by name, never guessed. The Airflow connections built
here are exactly those of the local stack (:func:`airflow_connections`, which the local stack uses too):
``hopchain_s3`` and ``hopchain_label_studio``.

``python -m pipelines.ops.deploy check [docker/.env]`` validates an env file or the environment
(prints no secret).
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator

from pipelines.config import DEFAULT_PARAMS, REPO_ROOT, ConfigError, Params, load_params

S3_CONN_ID = "hopchain_s3"
# the reader connection's extra ``label_studio_endpoint``: Label Studio uses its own S3_ENDPOINT setting
# (pipelines.annotation.image_key.LABEL_STUDIO_S3_ENDPOINT; not imported: this module stays light)
LABEL_STUDIO_S3_ENDPOINT = "S3_ENDPOINT"
LABEL_STUDIO_CONN_ID = "hopchain_label_studio"

# Secrets are pasted into JSON (AIRFLOW_CONN_*) and URLs by compose: refuse what would break them.
_SAFE_SECRET = re.compile(r"^[A-Za-z0-9._~+/=-]+$")
_HOST = re.compile(r"^[A-Za-z0-9.-]+$")


class DeploymentSettings(BaseModel):
    """Endpoints, bucket names, profile and credentials of one deployment (local or compose)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    ENV: ClassVar[dict[str, str]] = {
        "params_path": "HOPCHAIN_PARAMS",
        "profile": "HOPCHAIN_PROFILE",
        "s3_scheme": "HOPCHAIN_S3_SCHEME",
        "s3_host": "HOPCHAIN_S3_HOST",
        "s3_port": "HOPCHAIN_S3_PORT",
        "s3_secure": "HOPCHAIN_S3_SECURE",
        "s3_region": "HOPCHAIN_S3_REGION",
        "bucket": "HOPCHAIN_BUCKET",
        "dvc_bucket": "HOPCHAIN_DVC_BUCKET",
        "ls_host": "HOPCHAIN_LS_HOST",
        "ls_port": "HOPCHAIN_LS_PORT",
        "s3_access_key": "HOPCHAIN_S3_ACCESS_KEY",
        "s3_secret_key": "HOPCHAIN_S3_SECRET_KEY",
        "ls_token": "HOPCHAIN_LS_TOKEN",
        "s3_reader_access_key": "HOPCHAIN_S3_READER_ACCESS_KEY",
        "s3_reader_secret_key": "HOPCHAIN_S3_READER_SECRET_KEY",
        "pseudonym_key": "HOPCHAIN_PSEUDONYM_KEY",
        "simulated_annotators": "HOPCHAIN_SIMULATED_ANNOTATORS",
    }
    # the reader key: read and list the platform bucket only (Label Studio signs image URLs with it)
    SECRETS: ClassVar[tuple[str, ...]] = ("s3_access_key", "s3_secret_key", "ls_token", "s3_reader_access_key",
                                          "s3_reader_secret_key", "pseudonym_key")
    S3_CONN_ID: ClassVar[str] = S3_CONN_ID
    LABEL_STUDIO_CONN_ID: ClassVar[str] = LABEL_STUDIO_CONN_ID

    params_path: Path = DEFAULT_PARAMS
    profile: str = "base"
    s3_scheme: Literal["http", "https"] = "http"
    s3_host: str = Field(pattern=_HOST.pattern)
    s3_port: int = Field(ge=1, le=65535)
    s3_secure: bool = False
    s3_region: str = "us-east-1"
    bucket: str | None = None
    dvc_bucket: str | None = None
    ls_host: str = Field(pattern=r"^https?://[A-Za-z0-9.-]+$")
    ls_port: int = Field(ge=1, le=65535)
    s3_access_key: SecretStr | None = None
    s3_secret_key: SecretStr | None = None
    ls_token: SecretStr | None = None
    s3_reader_access_key: SecretStr | None = None
    s3_reader_secret_key: SecretStr | None = None
    pseudonym_key: SecretStr | None = None
    simulated_annotators: Literal["allow", "forbid"] = "forbid"

    @model_validator(mode="after")
    def _consistent(self) -> DeploymentSettings:
        if self.s3_secure != (self.s3_scheme == "https"):
            raise ValueError("HOPCHAIN_S3_SECURE must be true exactly when HOPCHAIN_S3_SCHEME is https")
        for name in self.SECRETS:
            value = getattr(self, name)
            if value is not None and not _SAFE_SECRET.match(value.get_secret_value()):
                raise ValueError(
                    f"{self.ENV[name]} contains characters that break JSON/URLs (quotes, spaces, $, ...): "
                    "generate it with `openssl rand -hex 32`"
                )
        if self.s3_secret_key is not None and len(self.s3_secret_key.get_secret_value()) < 8:
            raise ValueError("HOPCHAIN_S3_SECRET_KEY must have at least 8 characters (MinIO's minimum)")
        if self.ls_token is not None and not 20 <= len(self.ls_token.get_secret_value()) <= 40:
            raise ValueError("HOPCHAIN_LS_TOKEN must have 20 to 40 characters "
                             "(Label Studio stores at most 40)")
        return self

    # -- construction ----------------------------------------------------------------------------
    @classmethod
    def from_env(cls, env: Mapping[str, str], *, local_stack: bool = False) -> DeploymentSettings:
        """Read the ``HOPCHAIN_*`` variables of ``env``; empty values count as unset.

        A production deployment (anything but the local stack, ``local_stack``) never runs simulated
        annotators: ``HOPCHAIN_SIMULATED_ANNOTATORS=allow`` is refused here.

        Raises :class:`ConfigError` naming each offending variable (never its value).
        """
        raw: dict[str, Any] = {}
        for name, var in cls.ENV.items():
            value = env.get(var)
            if value is not None and value.strip() != "":
                raw[name] = value.strip()
        if raw.get("simulated_annotators") == "allow" and not local_stack:
            raise ConfigError("invalid deployment settings:\n  HOPCHAIN_SIMULATED_ANNOTATORS: 'allow' is the local "
                              "demo stack's; a production deployment never runs simulated annotators (set forbid)")
        secure = raw.get("s3_secure")
        if secure is not None and secure not in ("true", "false"):  # pasted into JSON by compose
            raise ConfigError("invalid deployment settings:\n  HOPCHAIN_S3_SECURE: must be true or false")
        if "params_path" in raw and not Path(raw["params_path"]).is_absolute():
            raw["params_path"] = REPO_ROOT / raw["params_path"]
        try:
            return cls.model_validate(raw)
        except ValidationError as err:
            lines = ["invalid deployment settings:"]
            for e in err.errors():
                loc = e["loc"][0] if e["loc"] else ""
                var = cls.ENV.get(str(loc), str(loc) or "settings")
                msg = "is not set" if e["type"] == "missing" else e["msg"]
                lines.append(f"  {var}: {msg}")
            raise ConfigError("\n".join(lines)) from None

    @classmethod
    def from_env_file(cls, path: str | Path,
                      overrides: Mapping[str, str] | None = None) -> DeploymentSettings:
        """Read a compose-style ``.env`` file (``KEY=VALUE`` lines), then ``overrides`` on top."""
        env = read_env_file(path)
        env.update(overrides or {})
        return cls.from_env(env)

    @classmethod
    def from_credentials(cls, s3: Mapping[str, str], ls: Mapping[str, str], *, profile: str = "base",
                         params_path: Path = DEFAULT_PARAMS) -> DeploymentSettings:
        """From the local stack's credential dicts (``SeaweedS3.credentials()``,
        ``LabelStudio.credentials()``): ``{"endpoint", "access_key", "secret_key", "region"}`` and
        ``{"url", "token"}``."""
        scheme, rest = s3["endpoint"].split("://", 1)
        s3_host, s3_port = rest.rsplit(":", 1)
        ls_scheme, ls_rest = ls["url"].split("://", 1)
        ls_host, ls_port = ls_rest.rsplit(":", 1)
        return cls.from_env({
            "HOPCHAIN_PARAMS": str(params_path), "HOPCHAIN_PROFILE": profile,
            "HOPCHAIN_S3_SCHEME": scheme, "HOPCHAIN_S3_HOST": s3_host, "HOPCHAIN_S3_PORT": s3_port,
            "HOPCHAIN_S3_SECURE": str(scheme == "https").lower(),
            "HOPCHAIN_S3_REGION": s3.get("region", "us-east-1"),
            "HOPCHAIN_S3_ACCESS_KEY": s3["access_key"], "HOPCHAIN_S3_SECRET_KEY": s3["secret_key"],
            "HOPCHAIN_LS_HOST": f"{ls_scheme}://{ls_host}", "HOPCHAIN_LS_PORT": ls_port,
            "HOPCHAIN_LS_TOKEN": ls["token"],
            "HOPCHAIN_S3_READER_ACCESS_KEY": s3.get("reader_access_key", ""),
            "HOPCHAIN_S3_READER_SECRET_KEY": s3.get("reader_secret_key", ""),
            "HOPCHAIN_SIMULATED_ANNOTATORS": "allow",  # the local stack is the demo deployment
        }, local_stack=True)

    # -- derived values --------------------------------------------------------------------------
    @property
    def s3_endpoint(self) -> str:
        return f"{self.s3_scheme}://{self.s3_host}:{self.s3_port}"

    @property
    def label_studio_url(self) -> str:
        return f"{self.ls_host}:{self.ls_port}"

    def missing_secrets(self) -> list[str]:
        """Names of the secret variables that are not set (empty in the template)."""
        return [self.ENV[n] for n in self.SECRETS if getattr(self, n) is None]

    def _require_secrets(self) -> None:
        """The secrets the connections need (the pseudonym key is the tasks', checked where it is used)."""
        missing = [m for m in self.missing_secrets() if m != self.ENV["pseudonym_key"]]
        if missing:
            raise ConfigError(f"missing secrets (set them in the environment): {', '.join(missing)}")

    def params(self) -> Params:
        """``params.yaml`` with this deployment's profile; bucket names must agree with it."""
        params = load_params(self.params_path, self.profile)
        expected = {"HOPCHAIN_BUCKET": (self.bucket, params.store.bucket),
                    "HOPCHAIN_DVC_BUCKET": (self.dvc_bucket, params.release.dvc_remote_bucket)}
        wrong = [f"{var}={got!r} but params.yaml says {want!r}"
                 for var, (got, want) in expected.items() if got is not None and got != want]
        if wrong:
            raise ConfigError("deployment and params.yaml disagree: " + "; ".join(wrong))
        from pipelines.config import SIMULATED_ENV, check_deployment

        check_deployment(params, env={"HOPCHAIN_PROFILE": self.profile, SIMULATED_ENV: self.simulated_annotators})
        return params

    def s3_credentials_dict(self) -> dict[str, str]:
        """The local stack's S3 credential layout (contains the secret)."""
        self._require_secrets()
        assert self.s3_access_key is not None and self.s3_secret_key is not None
        out = {"endpoint": self.s3_endpoint, "access_key": self.s3_access_key.get_secret_value(),
               "secret_key": self.s3_secret_key.get_secret_value(), "region": self.s3_region}
        if self.s3_reader_access_key is not None and self.s3_reader_secret_key is not None:
            out["reader_access_key"] = self.s3_reader_access_key.get_secret_value()
            out["reader_secret_key"] = self.s3_reader_secret_key.get_secret_value()
        return out

    def label_studio_credentials_dict(self) -> dict[str, str]:
        self._require_secrets()
        assert self.ls_token is not None
        return {"url": self.label_studio_url, "token": self.ls_token.get_secret_value()}

    def s3_credentials(self) -> Any:
        """:class:`pipelines.store.S3Credentials` for the pipeline code."""
        from pipelines.store import S3Credentials

        c = self.s3_credentials_dict()
        return S3Credentials(c["endpoint"], c["access_key"], c["secret_key"], c["region"])

    def airflow_connections(self) -> dict[str, dict[str, Any]]:
        """``{conn_id: connection}`` exactly as the local stack provisions them (contains secrets)."""
        return airflow_connections(self.s3_credentials_dict(), self.label_studio_credentials_dict())

    def env_exports(self) -> dict[str, str]:
        """What the stage code reads (``HOPCHAIN_S3_ENDPOINT``, ``HOPCHAIN_LS_URL``, ...); has secrets."""
        s3 = self.s3_credentials_dict()
        return {
            "HOPCHAIN_PARAMS": str(self.params_path), "HOPCHAIN_PROFILE": self.profile,
            "HOPCHAIN_S3_ENDPOINT": s3["endpoint"], "HOPCHAIN_S3_ACCESS_KEY": s3["access_key"],
            "HOPCHAIN_S3_SECRET_KEY": s3["secret_key"], "HOPCHAIN_S3_REGION": s3["region"],
            "HOPCHAIN_LS_URL": self.label_studio_url,
            "HOPCHAIN_LS_TOKEN": self.label_studio_credentials_dict()["token"],
        }

    def summary(self) -> dict[str, str]:
        """Non-secret description (safe to print or log)."""
        return {
            "profile": self.profile, "params": str(self.params_path), "s3": self.s3_endpoint,
            "region": self.s3_region, "label_studio": self.label_studio_url,
            "connections": f"{S3_CONN_ID}, {LABEL_STUDIO_CONN_ID}",
            "simulated": f"{self.simulated_annotators} (simulated annotators)",
            "missing secrets": ", ".join(self.missing_secrets()) or "none",
        }


_ENV_LINE = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*?)\s*$")


def read_env_file(path: str | Path) -> dict[str, str]:
    """Parse a compose ``.env`` file: ``KEY=VALUE`` lines, ``#`` comments, optional quotes.

    Values are taken literally (no interpolation), as docker-compose 1.29 does.
    """
    out: dict[str, str] = {}
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        m = _ENV_LINE.match(line)
        if not m:
            raise ConfigError(f"{path}:{n}: not a KEY=VALUE line")
        key, value = m.groups()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        out[key] = value
    return out


def main(argv: list[str] | None = None) -> int:
    """``python -m pipelines.ops.deploy check [ENV_FILE]``: validate the settings (of ``ENV_FILE``, else
    of this process's environment) against params.yaml and print a summary without secrets.

    Exit status: 0 valid and complete, 1 invalid, 2 usage, 3 valid but secrets missing.
    """
    import os

    argv = list(sys.argv[1:] if argv is None else argv)
    if not 1 <= len(argv) <= 2 or argv[0] != "check":
        print("usage: python -m pipelines.ops.deploy check [ENV_FILE]", file=sys.stderr)
        return 2
    try:
        if len(argv) == 2:
            settings = DeploymentSettings.from_env_file(argv[1])
        else:
            settings = DeploymentSettings.from_env(os.environ)
        params = settings.params()
    except (ConfigError, OSError) as err:
        print(err, file=sys.stderr)
        return 1
    for key, value in settings.summary().items():
        print(f"{key:16} {value}")
    print(f"{'buckets':16} {params.store.bucket}, {params.release.dvc_remote_bucket}")
    return 3 if settings.missing_secrets() else 0


if __name__ == "__main__":
    raise SystemExit(main())


def airflow_connections(s3: dict[str, str], ls: dict[str, str]) -> dict[str, Any]:
    """The Airflow connections of the platform, from the generated (or production) credentials;
    ``hopchain_s3_reader`` (the bucket's read-only key, for Label Studio's image storage) when
    ``s3`` has ``reader_access_key`` / ``reader_secret_key``."""
    s3_host, s3_port = s3["endpoint"].split("://", 1)[-1].rsplit(":", 1)
    ls_host, ls_port = ls["url"].split("://", 1)[-1].rsplit(":", 1)

    def s3_connection(description: str, access_key: str, secret_key: str, **extra: str) -> dict[str, Any]:
        return {"conn_type": "hopchain_s3", "description": description, "host": s3_host, "port": int(s3_port),
                "login": access_key, "password": secret_key,
                "extra": json.dumps({"secure": s3["endpoint"].startswith("https"),
                                     "region": s3.get("region", "us-east-1"), **extra})}

    reader = s3.get("reader_access_key", ""), s3.get("reader_secret_key", "")
    # where Label Studio reads the images: its own S3_ENDPOINT (compose, the local stack), or, for a Label
    # Studio started alone (``ls["image_endpoint"] == ""``), the reader key's own endpoint
    ls_endpoint = ls.get("image_endpoint", LABEL_STUDIO_S3_ENDPOINT)
    return {
        "hopchain_s3": s3_connection("Object store of the HopChain platform (S3 API)", s3["access_key"],
                                     s3["secret_key"]),
        # Label Studio reaches the store through its own S3_ENDPOINT (pipelines.annotation.image_key)
        **({"hopchain_s3_reader": s3_connection(
            "Read-only key of the platform bucket: Label Studio reads task images with it", *reader,
            **({"label_studio_endpoint": ls_endpoint} if ls_endpoint else {}))}
           if all(reader) else {}),
        "hopchain_label_studio": {
            "conn_type": "label_studio",
            "description": "Label Studio of the HopChain platform",
            "host": ls["url"].split("://", 1)[0] + "://" + ls_host,
            "port": int(ls_port),
            "password": ls["token"],
            "extra": json.dumps({"token_type": "legacy"}),
        },
    }
