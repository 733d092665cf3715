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
LABEL_STUDIO_CONN_ID = "hopchain_label_studio"


def flow_for(context: dict[str, Any]) -> Any:
    """A :class:`pipelines.flow.Flow` for this task's DAG run."""
    from hopchain_airflow.hooks.label_studio import LabelStudioHook
    from hopchain_airflow.hooks.object_store import ObjectStoreHook
    from pipelines.config import load_params
    from pipelines.flow import Flow

    profile = (context.get("params") or {}).get("profile") or None
    params = load_params(None, profile)
    store = ObjectStoreHook(S3_CONN_ID).get_store(params.store.bucket)
    return Flow(params=params, store=store, run_id=str(context["run_id"]),
                label_studio=LabelStudioHook(LABEL_STUDIO_CONN_ID).get_conn, s3_credentials=store.creds)


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

    :class:`expectations.runner.ValidationFailed` becomes ``AirflowFailException`` (no retry);
    everything else propagates unchanged (Airflow retries it).
    """
    from airflow.sdk.exceptions import AirflowFailException

    from expectations.runner import ValidationFailed

    flow = flow_for(context)
    try:
        return to_jsonable(step(flow))
    except ValidationFailed as err:
        raise AirflowFailException(f"critical validation failure (no retry): {err}") from err

