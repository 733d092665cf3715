"""Builds the stage-library ``Flow`` for a running task from Airflow's context and connections.

Kept tiny on purpose: credentials come from the Airflow connections (``hopchain_s3``,
``hopchain_label_studio``), configuration from ``params.yaml`` and the run's ``profile`` param.
"""

from __future__ import annotations

from typing import Any


def flow_for(context: dict[str, Any]):
    """A :class:`pipelines.flow.Flow` for this task's DAG run."""
    from hopchain_airflow.hooks.object_store import ObjectStoreHook
    from pipelines.config import load_params
    from pipelines.flow import Flow

    params_in = context.get("params") or {}
    profile = params_in.get("profile") or None
    params = load_params(None, profile)
    store = ObjectStoreHook().get_store(params.store.bucket)

    def label_studio():
        from hopchain_airflow.hooks.label_studio import LabelStudioHook

        return LabelStudioHook().get_client()

    return _FailFast(Flow(params=params, store=store, run_id=str(context["run_id"]), label_studio=label_studio,
                          s3_credentials=store.creds))


class _FailFast:
    """Forwards to the Flow; a critical validation failure fails the task without retries (the data
    will not change on a retry; the full result and Data Docs are already saved)."""

    def __init__(self, flow: Any) -> None:
        self._flow = flow

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._flow, name)
        if not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            from airflow.sdk.exceptions import AirflowFailException

            from expectations.runner import ValidationFailed

            try:
                return attr(*args, **kwargs)
            except ValidationFailed as err:
                raise AirflowFailException(f"critical validation failure (no retry): {err}") from err

        return call
