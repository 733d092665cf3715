"""``AnnotationWaitOperator``: defers on :class:`AnnotationCompleteTrigger` for each open batch.

While deferred it holds no worker slot; the triggerer polls Label Studio. The operator waits for
the open batches one after another (each deferral resumes in ``execute_complete`` and defers again
for the next batch) and returns every trigger event, JSON only. Everything it needs comes in its
``batches`` argument (the upstream task's :class:`pipelines.flow.OpenBatches` as JSON: the
batches, ``poll_interval_s``, ``annotators_required``) and its connection id; it reads no
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

    def _plan(self) -> tuple[list[dict[str, Any]], float, int]:
        plan = self.batches or {}
        pending = [b for b in plan.get("batches", []) if b.get("project_id")]
        return pending, float(plan.get("poll_interval_s", 30.0)), int(plan.get("annotators_required", 4))

    def execute(self, context: Any) -> dict[str, Any]:
        pending, _, _ = self._plan()
        if not pending:
            self.log.info("no open batches: nothing to wait for")
            return {"events": []}
        return self._wait_next(pending, [], context)

    def _wait_next(self, pending: list[dict[str, Any]], events: list[dict[str, Any]], context: Any) -> dict[str, Any]:
        if not pending:
            return {"events": events}
        from hopchain_airflow.triggers.annotation import AnnotationCompleteTrigger

        _, poll_interval_s, required = self._plan()
        batch = pending[0]
        self.log.info("waiting for batch %s (project %s) until %s", batch["batch_id"], batch["project_id"],
                      batch["deadline"])
        self.defer(
            trigger=AnnotationCompleteTrigger(
                project_id=int(batch["project_id"]),
                batch=str(batch["batch_id"]),
                deadline=str(batch["deadline"]),
                poll_interval_s=poll_interval_s,
                required=required,
                conn_id=self.conn_id,
            ),
            method_name="execute_complete",
            kwargs={"pending": pending[1:], "events": events},
        )
        raise AssertionError("unreachable: defer() raises")  # pragma: no cover

    def execute_complete(self, context: Any, event: dict[str, Any], pending: list[dict[str, Any]] | None = None,
                         events: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        self.log.info("batch %s: %s (%s of %s tasks complete)", event.get("batch"), event.get("status"),
                      event.get("complete"), event.get("total"))
        if pending is None:  # resumed without the defer kwargs (dag.test): recompute from the batch list
            batches, _, _ = self._plan()
            ids = [str(b["batch_id"]) for b in batches]
            done = ids.index(str(event.get("batch"))) + 1 if str(event.get("batch")) in ids else len(ids)
            pending = batches[done:]
        return self._wait_next(pending, [*(events or []), event], context)
