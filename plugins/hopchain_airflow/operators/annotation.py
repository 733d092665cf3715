"""``AnnotationWaitOperator``: defers on one :class:`AnnotationCompleteTrigger` for all open batches.

While deferred it holds no worker slot; the triggerer polls Label Studio (read only: the tasks are
handed out by DAG ``hopchain_labeling``'s tend, :mod:`pipelines.annotation.tend`) until every open batch
is complete or past its deadline. It returns the trigger's per-batch results, JSON only.
Everything it needs comes in its ``batches`` argument (the upstream task's
:class:`pipelines.flow.OpenBatches` as JSON: the batches, ``poll_interval_s``,
``annotators_required``, ``handout``, ``early_stop``) and its connection id; it reads no
configuration file.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import BaseOperator


class AnnotationWaitOperator(BaseOperator):
    template_fields = ("batches",)
    ui_color = "#e8f0fe"

    def __init__(self, *, batches: Any, conn_id: str = "hopchain_label_studio", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.batches = batches  # OpenBatches JSON: {"batches": [...], "poll_interval_s", "annotators_required"}
        self.conn_id = conn_id

    def _plan(self) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        plan = self.batches or {}
        pending = [b for b in plan.get("batches", []) if b.get("project_id")]
        options = {
            "poll_interval_s": float(plan.get("poll_interval_s", 30.0)),
            "required": int(plan.get("annotators_required", 4)),
            "early_stop": bool(plan.get("early_stop", True)),
        }
        return pending, options

    def execute(self, context: Any) -> dict[str, Any]:
        pending, _ = self._plan()
        if not pending:
            self.log.info("no open batches: nothing to wait for")
            return {"events": []}
        return self._wait(pending, [], context)

    def _wait(self, pending: list[dict[str, Any]], events: list[dict[str, Any]], context: Any) -> dict[str, Any]:
        if not pending:
            return {"events": events}
        from hopchain_airflow.triggers.annotation import AnnotationCompleteTrigger

        _, options = self._plan()
        for b in pending:
            self.log.info("waiting for batch %s (project %s) until %s", b["batch_id"], b["project_id"], b["deadline"])
        self.defer(
            trigger=AnnotationCompleteTrigger(
                batches=[{"project_id": int(b["project_id"]), "batch": str(b["batch_id"]),
                          "deadline": str(b["deadline"])} for b in pending],
                conn_id=self.conn_id,
                **options,
            ),
            method_name="execute_complete",
            kwargs={"events": events},
        )
        raise AssertionError("unreachable: defer() raises")  # pragma: no cover

    def execute_complete(self, context: Any, event: dict[str, Any], pending: list[dict[str, Any]] | None = None,
                         events: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        results = event.get("batches") or [event]
        for r in results:
            self.log.info("batch %s: %s (%s of %s tasks complete)", r.get("batch"), r.get("status"),
                          r.get("complete"), r.get("total"))
        # ``pending``: batches a single-batch wait of an earlier version still had to wait for
        return self._wait(list(pending or []), [*(events or []), *results], context)
