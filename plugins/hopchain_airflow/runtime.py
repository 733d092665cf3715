"""How a HopChain task runs: build the run's :class:`pipelines.flow.Flow`, call one step, return JSON.

Credentials come from the Airflow connections (``hopchain_s3``, ``hopchain_label_studio``) through
the hooks; configuration from ``params.yaml`` and the DAG run's ``profile`` param, read once per
task. A task body is one explicit call::

    @task
    def detect(shard: int, **context) -> dict:
        from hopchain_airflow.runtime import run_task

        return run_task(context, lambda flow: flow.detect(shard))

A critical validation failure fails the task without retries (the data will not change on a
retry; the full result and Data Docs are already saved).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

S3_CONN_ID = "hopchain_s3"
S3_READER_CONN_ID = "hopchain_s3_reader"
LABEL_STUDIO_CONN_ID = "hopchain_label_studio"


def run_params(context: dict[str, Any], refusal: str = "refused") -> Any:
    """This DAG run's configuration: ``params.yaml`` with the run conf's ``profile`` (else the deployment's
    ``HOPCHAIN_PROFILE``), refused (``AirflowFailException`` "<refusal>: <why>", no retry) when it does not
    load or the run may not use it here (:func:`pipelines.config.check_deployment`: simulated annotators
    where the deployment forbids them, whether its own profile or the run conf's turns them on)."""
    from airflow.sdk.exceptions import AirflowFailException

    from pipelines.config import ConfigError, check_deployment, load_params

    profile = (context.get("params") or {}).get("profile") or None
    try:
        params = load_params(None, profile)
        check_deployment(params, profile)
    except ConfigError as err:
        raise AirflowFailException(f"{refusal}: {err}") from None
    return params


def flow_for(context: dict[str, Any]) -> Any:
    """A :class:`pipelines.flow.Flow` for this task's DAG run."""
    from hopchain_airflow.hooks.label_studio import LabelStudioHook
    from hopchain_airflow.hooks.object_store import ObjectStoreHook
    from pipelines.flow import Flow

    params = run_params(context)
    store = ObjectStoreHook(S3_CONN_ID).get_store(params.store.bucket)
    return Flow(params=params, store=store, run_id=str(context["run_id"]),
                label_studio=LabelStudioHook(LABEL_STUDIO_CONN_ID).get_conn, s3_credentials=store.creds,
                image_reader=_image_reader)


def _image_reader() -> Any:
    """The bucket's read-only key (connection ``hopchain_s3_reader``) that Label Studio's image storage
    signs with; None where the deployment has none (the push then uses the platform's key and says so)."""
    from airflow.exceptions import AirflowNotFoundException

    from hopchain_airflow.hooks.object_store import ObjectStoreHook

    try:
        return ObjectStoreHook(S3_READER_CONN_ID).get_credentials()
    except AirflowNotFoundException:
        return None


def to_jsonable(value: Any) -> Any:
    """Pydantic records (and lists/dicts of them) → plain JSON for XCom."""
    from pydantic import BaseModel

    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, list | tuple):
        return [to_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: to_jsonable(v) for k, v in value.items()}
    return value


def run_task(context: dict[str, Any], step: Callable[[Any], T]) -> Any:
    """Run ``step(flow)`` for this task's DAG run and return its result as JSON.

    :class:`expectations.runner.ValidationFailed` and :class:`pipelines.config.Refused` (a release or a
    simulation this deployment refuses) become ``AirflowFailException`` (no retry); everything else
    propagates unchanged (Airflow retries it).
    """
    from airflow.sdk.exceptions import AirflowFailException

    from expectations.runner import ValidationFailed
    from pipelines.config import Refused

    flow = flow_for(context)
    try:
        return to_jsonable(step(flow))
    except ValidationFailed as err:
        raise AirflowFailException(f"critical validation failure (no retry): {err}") from err
    except Refused as err:
        raise AirflowFailException(f"refused (no retry): {err}") from err



# -- preflight: the nightly's first task ------------------------------------------------------------
GPU_POOL = "gpu"


def _connection_check(conn_id: str) -> Any:
    from pipelines.doctor import Check, CheckFailed

    def probe() -> str:
        from airflow.sdk import BaseHook

        try:
            conn = BaseHook.get_connection(conn_id)
        except Exception as err:  # noqa: BLE001 - AirflowNotFoundException and secrets-backend errors alike
            raise CheckFailed(f"connection {conn_id!r} not found ({type(err).__name__})",
                              f"create it: airflow connections add {conn_id} ... (docs/deployment.md), "
                              f"or set AIRFLOW_CONN_{conn_id.upper()}") from None
        return f"{conn_id} ({conn.conn_type}, host {conn.host or '-'})"

    return Check(f"airflow connection {conn_id}", probe)


def _pool_check(timeout_s: float = 10.0) -> Any:
    """The ``gpu`` pool through ``airflow pools get`` (tasks have no database access and the Task SDK
    has no pool call); where the command cannot answer here, the line says it was not checked."""
    import os
    import shutil
    import subprocess
    import sys

    from pipelines.doctor import Check, CheckFailed

    def probe() -> str:
        exe = shutil.which("airflow") or os.path.join(os.path.dirname(sys.executable), "airflow")
        try:
            proc = subprocess.run([exe, "pools", "get", GPU_POOL, "-o", "json"], capture_output=True, text=True,
                                  timeout=max(1.0, timeout_s - 2.0))
        except (OSError, subprocess.TimeoutExpired) as err:
            return f"not checked here ({type(err).__name__}); the scheduler never runs tasks of a missing pool"
        if proc.returncode == 0:
            return f"pool {GPU_POOL!r} exists: {proc.stdout.strip()[:120]}"
        if "does not exist" in (proc.stdout + proc.stderr):
            raise CheckFailed(f"pool {GPU_POOL!r} does not exist, so no GPU task would ever be scheduled",
                              f"airflow pools set {GPU_POOL} <number of GPUs> 'GPU stages'")
        return "not checked here (no metadata database on this worker)"

    return Check(f"airflow pool {GPU_POOL}", probe, timeout_s=timeout_s)


def preflight_checks(params: Any, *, pool: bool = True) -> list[Any]:
    """The ``hopchain doctor`` checks of ``params`` with this deployment's connections, plus the
    connections themselves and the ``gpu`` pool."""
    from pipelines.doctor import Services, profile_checks

    services = Services(s3_origin=f" (connection {S3_CONN_ID})",
                        label_studio_origin=f" (connection {LABEL_STUDIO_CONN_ID})")
    extra = [_connection_check(S3_CONN_ID), _connection_check(LABEL_STUDIO_CONN_ID)]
    try:
        from hopchain_airflow.hooks.object_store import ObjectStoreHook

        services.s3 = ObjectStoreHook(S3_CONN_ID).get_credentials()
    except Exception:  # noqa: BLE001 - a missing connection is reported by its own check line
        services.s3 = None
    try:
        from hopchain_airflow.hooks.label_studio import LabelStudioHook

        services.label_studio = LabelStudioHook(LABEL_STUDIO_CONN_ID).credentials()
    except Exception:  # noqa: BLE001 - as above
        services.label_studio = None
    services.extra = extra + ([_pool_check()] if pool else [])
    return profile_checks(params, services)


def preflight(context: dict[str, Any], *, pool: bool = True) -> dict[str, Any]:
    """Run every preflight check for this DAG run's profile; log one line per check; fail the task
    without retry (``AirflowFailException``) naming each failed check and its fix."""
    import logging

    from airflow.sdk.exceptions import AirflowFailException

    from pipelines.doctor import run_checks, summary_line

    log = logging.getLogger("hopchain.preflight")
    params = run_params(context, "preflight")
    results = run_checks(preflight_checks(params, pool=pool))
    for r in results:
        log.info(r.line())
    failed = [r for r in results if not r.ok]
    if failed:
        raise AirflowFailException(
            f"preflight ({params.profile}): {summary_line(results)} — " + " | ".join(r.line() for r in failed))
    return {"profile": params.profile, "checks": [{"name": r.name, "ok": r.ok, "detail": r.detail,
                                                   "seconds": round(r.seconds, 2)} for r in results]}
