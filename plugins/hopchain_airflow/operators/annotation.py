"""``AnnotationWaitOperator``: defers once on one :class:`AnnotationCompleteTrigger` for all open batches.

While deferred it holds no worker slot; the triggerer polls Label Studio (read only: the tasks are
handed out by DAG ``hopchain_labeling``'s tend, :mod:`pipelines.annotation.tend`) until every open batch
is complete or past its deadline. It returns the trigger's per-batch results, JSON only:
``{"events": [BatchResult, ...]}`` (one per waited batch; ``[]`` when nothing is open). A batch past its
deadline is a result, not a failure (its complete items go on, the rest stay pending); an event whose
status is neither ``complete`` nor ``deadline`` fails the task. Everything it needs comes in its
``batches`` argument (the upstream task's :class:`pipelines.annotation.tasks.OpenBatches` as JSON: the batches,
``poll_interval_s``, ``annotators_required``, ``early_stop``; its ``handout`` is the labeling pass's
business and is not read) and its connection id; it reads no configuration file.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

from airflow.sdk import BaseOperator, Context
from airflow.sdk.exceptions import AirflowException

if TYPE_CHECKING:  # the trigger (httpx, the Label Studio SDK) is imported when the task runs, not when a DAG parses
    from hopchain_airflow.triggers.annotation import AnnotationCompleteTrigger, BatchResult

#: What the operator returns (its XCom): one result per waited batch.
WaitResult = dict[str, list["BatchResult"]]


class AnnotationWaitOperator(BaseOperator):
    """Wait (deferred) until every open batch is complete or past its deadline.

    ``batches``: the :class:`pipelines.annotation.tasks.OpenBatches` JSON (templated; usually the upstream task's
    XCom): ``{"batches": [{"batch_id", "project_id", "deadline", "first_task_id", ...}], "poll_interval_s",
    "annotators_required", "early_stop"}``. A batch without a ``project_id`` (nothing was pushed) is not
    waited for. ``conn_id``: the Label Studio connection, resolved in the triggerer.
    """

    template_fields = ("batches",)
    ui_color = "#e8f0fe"

    def __init__(self, *, batches: Any, conn_id: str = "hopchain_label_studio", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.batches = batches  # an XComArg until rendered, then the OpenBatches JSON
        self.conn_id = conn_id

    def _open(self) -> list[Mapping[str, Any]]:
        plan: Mapping[str, Any] = self.batches or {}
        return [b for b in plan.get("batches", []) if b.get("project_id")]

    def _trigger(self, pending: Sequence[Mapping[str, Any]]) -> AnnotationCompleteTrigger:
        from hopchain_airflow.triggers.annotation import AnnotationCompleteTrigger

        plan: Mapping[str, Any] = self.batches or {}
        return AnnotationCompleteTrigger(
            batches=[{"project_id": int(b["project_id"]), "batch": str(b["batch_id"]),
                      "deadline": str(b["deadline"]), "first_task_id": b.get("first_task_id")} for b in pending],
            conn_id=self.conn_id,
            poll_interval_s=float(plan.get("poll_interval_s", 30.0)),
            required=int(plan.get("annotators_required", 4)),
            early_stop=bool(plan.get("early_stop", True)),
        )

    def execute(self, context: Context) -> WaitResult:
        pending = self._open()
        if not pending:
            self.log.info("no open batches: nothing to wait for")
            return {"events": []}
        return self._wait(pending, [])

    def _wait(self, pending: Sequence[Mapping[str, Any]], events: list[BatchResult]) -> WaitResult:
        if not pending:
            return {"events": events}
        for b in pending:
            self.log.info("waiting for batch %s (project %s) until %s", b["batch_id"], b["project_id"], b["deadline"])
        self.defer(trigger=self._trigger(pending), method_name="execute_complete", kwargs={"events": events})

    def execute_complete(
        self,
        context: Context,
        event: Mapping[str, Any] | None = None,
        pending: Sequence[Mapping[str, Any]] | None = None,
        events: Sequence[BatchResult] | None = None,
    ) -> WaitResult:
        """Resume from the trigger's event: return every batch's result; raise on an event that is not
        ``complete`` or ``deadline`` (a trigger that failed raises in the triggerer instead).

        ``pending``: batches that a single-batch wait of an earlier version had still to wait for when
        it deferred (resumed after an upgrade, it waits for them with one more deferral).
        """
        from hopchain_airflow.triggers.annotation import EVENT_STATUSES

        if event is None or event.get("status") not in EVENT_STATUSES:
            status = None if event is None else event.get("status")
            message = None if event is None else event.get("message")
            raise AirflowException(f"annotation wait: unexpected event status {status!r}"
                                   + (f": {message}" if message else ""))
        # an event of an earlier single-batch version has no "batches": it is that batch's result
        results = cast("list[BatchResult]", list(event.get("batches") or [event]))
        for r in results:
            self.log.info("batch %s: %s (%s of %s tasks complete)", r.get("batch"), r.get("status"),
                          r.get("complete"), r.get("total"))
        return self._wait(list(pending or []), [*(events or []), *results])
