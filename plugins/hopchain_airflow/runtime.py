"""How a HopChain task runs: build the run's :class:`pipelines.runner.RunEnv`, make one runner call, return JSON.

Credentials come from the Airflow connections (``hopchain_s3``, ``hopchain_label_studio``) through
the hooks; configuration from ``params.yaml`` and the DAG run's ``profile`` param, read once per
task. A task body is one explicit call, naming what it runs by ``"module:name"`` (imported when the
task runs, so parsing stays light)::

    @task
    def detect(shard: int, **context) -> dict:
        from hopchain_airflow.runtime import run_stage

        return run_stage(context, "pipelines.detect.stage:DetectStage", shard)

    @task
    def decide(batches: dict, **context) -> dict:
        from hopchain_airflow.runtime import run_task

        return run_task(context, "pipelines.annotation.tasks:decide", batches)

:func:`run_stage` runs a stage (:class:`pipelines.runner.Stage`) through :class:`pipelines.runner.Runner`
on one shard (or, for a source stage, on its whole plan); :func:`run_task` calls a function of the run
(``f(env, *args)``: the push, the annotation tasks, the release, the summary). A critical validation
failure fails the task without retries (the data will not change on a retry; the full result and Data
Docs are already saved).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

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


def run_env(context: dict[str, Any]) -> Any:
    """The :class:`pipelines.runner.RunEnv` of this task's DAG run (store and Label Studio from the connections)."""
    from hopchain_airflow.hooks.label_studio import LabelStudioHook
    from hopchain_airflow.hooks.object_store import ObjectStoreHook
    from pipelines.runner import RunEnv

    params = run_params(context)
    store = ObjectStoreHook(S3_CONN_ID).get_store(params.store.bucket)
    return RunEnv(params=params, store=store, run_id=str(context["run_id"]),
                  label_studio=LabelStudioHook(LABEL_STUDIO_CONN_ID).get_conn, s3_credentials=store.creds,
                  image_reader=_image_reader)


def _image_reader() -> Any:
    """Label Studio's read-only image key: connection ``hopchain_s3_reader`` as a
    :class:`pipelines.annotation.image_key.ReaderKey` (extra ``label_studio_endpoint``: ``"S3_ENDPOINT"``
    when Label Studio reaches the store through its own setting); None where the deployment has none,
    and the push then refuses (it never falls back to the platform's key)."""
    from airflow.exceptions import AirflowNotFoundException
    from airflow.sdk import BaseHook

    from hopchain_airflow.hooks.object_store import ObjectStoreHook
    from pipelines.annotation.image_key import ReaderKey

    try:
        creds = ObjectStoreHook(S3_READER_CONN_ID).get_credentials()
        extra = BaseHook.get_connection(S3_READER_CONN_ID).extra_dejson or {}
    except AirflowNotFoundException:
        return None
    if not (creds.access_key and creds.secret_key):
        return None
    return ReaderKey(creds.endpoint, creds.access_key, creds.secret_key, creds.region,
                     label_studio_endpoint=str(extra.get("label_studio_endpoint", "")))


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


def run_task(context: dict[str, Any], step: str | Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call ``step(env, *args, **kwargs)`` for this task's DAG run and return its result as JSON.
    ``step`` is a function or its ``"module:name"``.

    :class:`expectations.runner.ValidationFailed` and :class:`pipelines.config.Refused` (a release or a
    simulation this deployment refuses) become ``AirflowFailException`` (no retry); everything else
    propagates unchanged (Airflow retries it).
    """
    from airflow.sdk.exceptions import AirflowFailException

    from expectations.runner import ValidationFailed
    from pipelines.config import Refused
    from pipelines.runner import resolve

    env = run_env(context)
    call = resolve(step) if isinstance(step, str) else step
    try:
        return to_jsonable(call(env, *args, **kwargs))
    except ValidationFailed as err:
        raise AirflowFailException(f"critical validation failure (no retry): {err}") from err
    except Refused as err:
        raise AirflowFailException(f"refused (no retry): {err}") from err


def run_stage(context: dict[str, Any], stage: str, shard: int | None = None, **options: Any) -> Any:
    """Run the stage ``stage`` (``"module:Class"``, built with ``options``) through the runner on ``shard``
    (None: a source stage's whole plan) for this task's DAG run; its :class:`pipelines.runner.StageRun` as JSON.
    A retried task overwrites only its own shard's keys."""

    def step(env: Any) -> Any:
        from pipelines.runner import Runner, resolve

        return Runner(env).run(resolve(stage)(**options), None if shard is None else [shard])

    return run_task(context, step)



# -- preflight: the nightly's first task ------------------------------------------------------------
GPU_POOL = "gpu"


def _connection_check(conn_id: str) -> Any:
    from pipelines.ops.doctor import Check, CheckFailed

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

    from pipelines.ops.doctor import Check, CheckFailed

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
    from pipelines.ops.doctor import Services, profile_checks

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

    from pipelines.ops.doctor import run_checks, summary_line

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
