"""``AnnotationWaitOperator``: defers on :class:`AnnotationCompleteTrigger` for each open batch.

While deferred it holds no worker slot; the triggerer polls Label Studio. The operator waits for
the open batches one after another (each deferral resumes in ``execute_complete`` and defers again
for the next batch) and returns every trigger event, JSON only.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import BaseOperator


class AnnotationWaitOperator(BaseOperator):
    template_fields = ("batches",)
    ui_color = "#e8f0fe"

    def __init__(self, *, batches: Any, conn_id: str = "hopchain_label_studio", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.batches = batches  # {"batches": [{"batch_id", "project_id", "deadline", ...}, ...]} (an XComArg)
        self.conn_id = conn_id

    def execute(self, context: Any) -> dict[str, Any]:
        pending = [b for b in (self.batches or {}).get("batches", []) if b.get("project_id")]
        if not pending:
            self.log.info("no open batches: nothing to wait for")
            return {"events": []}
        return self._wait_next(pending, [], context)

    def _wait_next(self, pending: list[dict[str, Any]], events: list[dict[str, Any]], context: Any) -> dict[str, Any]:
        if not pending:
            return {"events": events}
        from hopchain_airflow.triggers.annotation import AnnotationCompleteTrigger

        from pipelines.config import load_params

        params = load_params(None, (context.get("params") or {}).get("profile") or None)
        batch = pending[0]
        self.log.info("waiting for batch %s (project %s) until %s", batch["batch_id"], batch["project_id"],
                      batch["deadline"])
        self.defer(
            trigger=AnnotationCompleteTrigger(
                project_id=int(batch["project_id"]),
                batch=str(batch["batch_id"]),
                deadline=str(batch["deadline"]),
                poll_interval_s=params.annotation.poll_interval_s,
                required=params.annotation.annotators_required,
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
            batches = [b for b in (self.batches or {}).get("batches", []) if b.get("project_id")]
            ids = [str(b["batch_id"]) for b in batches]
            done = ids.index(str(event.get("batch"))) + 1 if str(event.get("batch")) in ids else len(ids)
            pending = batches[done:]
        return self._wait_next(pending, [*(events or []), event], context)
