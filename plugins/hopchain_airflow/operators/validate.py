"""``ValidateDataOperator``: validate a stage's output with its Great Expectations suite.

Thin by design (the validation is :func:`expectations.runner.validate_keys`, a plain function):
``__init__`` only stores arguments; ``execute`` builds the object store from the ``hopchain_s3``
connection (:class:`~hopchain_airflow.hooks.object_store.ObjectStoreHook`), loads params, and
imports great_expectations (via the runner) only then. The full result and Data Docs are saved in
the object store first; then a critical failure fails the task with ``AirflowFailException`` (no
retry: the same data fails the same way), so downstream tasks do not run. The returned XCom is
plain JSON: ``{"suite", "success", "docs_index_key", "docs_page_key", "result_key",
"critical_failures", "warnings", "skipped", "rows"}`` — the plugin page links ``docs_index_key``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseOperator


class ValidateDataOperator(BaseOperator):
    """Run suite ``suite`` on the Parquet object(s) ``data_keys`` of the platform's bucket.

    ``reference_keys`` maps ``manifest`` / ``instances`` / ``questions`` / ``annotations`` to the
    key(s) of tables that cross-table checks join against. ``run_id`` (templated, default the DAG
    run's id) scopes result and Data Docs keys: ``runs/<run_id>/datadocs/<suite>[/<docs_label>]/``
    (``docs_label`` tells apart several validations of one suite in a run, e.g. per shard).
    """

    template_fields: Sequence[str] = ("data_keys", "reference_keys", "hopchain_run_id", "docs_label")
    ui_color = "#ffe5b4"

    def __init__(
        self,
        *,
        suite: str,
        data_keys: str | list[str],
        reference_keys: dict[str, str | list[str]] | None = None,
        hopchain_run_id: str = "{{ run_id }}",
        docs_label: str | None = None,
        s3_conn_id: str = "hopchain_s3",
        params_path: str | None = None,
        profile: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.suite = suite
        self.data_keys = data_keys
        self.reference_keys = reference_keys or {}
        self.hopchain_run_id = hopchain_run_id
        self.docs_label = docs_label
        self.s3_conn_id = s3_conn_id
        self.params_path = params_path
        self.profile = profile

    def execute(self, context: Any) -> dict[str, Any]:
        return validate_stage(
            suite=self.suite,
            data_keys=self.data_keys,
            reference_keys=self.reference_keys,
            run_id=self.hopchain_run_id,
            label=self.docs_label,
            s3_conn_id=self.s3_conn_id,
            params_path=self.params_path,
            profile=self.profile,
        )


def validate_stage(
    *,
    suite: str,
    data_keys: str | list[str],
    reference_keys: dict[str, str | list[str]] | None = None,
    run_id: str,
    label: str | None = None,
    s3_conn_id: str = "hopchain_s3",
    params_path: str | None = None,
    profile: str | None = None,
) -> dict[str, Any]:
    """The operator's body, callable from a ``@task`` too. Raises ``AirflowFailException`` on a
    critical failure (after the result and Data Docs are stored)."""
    import logging

    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    from airflow.sdk.exceptions import AirflowFailException
    from hopchain_airflow.hooks.object_store import ObjectStoreHook

    from expectations.runner import ValidationFailed, validate_keys
    from pipelines.config import load_params

    params = load_params(params_path, profile)
    store = ObjectStoreHook(s3_conn_id).get_store(params.store.bucket)
    try:
        report = validate_keys(store, suite, data_keys, params=params, reference_keys=reference_keys,
                               run_id=run_id, label=label)
    except ValidationFailed as failed:
        logging.getLogger(__name__).error("%s", failed.report.summary())
        raise AirflowFailException(str(failed)) from failed
    return {
        "suite": report.suite,
        "success": report.success,
        "rows": report.rows,
        "docs_index_key": report.docs_index_key,
        "docs_page_key": report.docs_page_key,
        "result_key": report.result_key,
        "critical_failures": report.critical_failures,
        "warnings": report.warnings,
        "skipped": report.skipped,
    }
