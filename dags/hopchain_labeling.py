"""hopchain_labeling — every minute, one pass over the open batches: journal new answers, hand tasks out."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from airflow.sdk import dag, task

from hopchain_airflow.dag_defaults import START_DATE, default_args

DOC = """
### HopChain labeling
The one place that acts on Label Studio tasks while people annotate (`pipelines/annotation/tend.py`); every
minute, over every open batch:

1. appends every answer it has not seen in this form to the **annotation journal** in the object store (so no
   paid answer lives only in Label Studio's database);
2. finds the answers that **do not count** (changed by another account or after they were first seen, from an
   account that is not a registered annotator) and sends their tasks back for a fresh answer;
3. **hands tasks out**: opens a task to one more annotator after each agreeing answer, withdraws it at its first
   disagreement (`annotation.handout`, `annotation.early_stop`);
4. leaves a project alone (journals only) when its labeling config, settings or webhooks changed outside the
   platform: its batches are **held** until `hopchain project repair`.

Idempotent: a pass over unchanged tasks writes and sends nothing, so retries, restarts and a pass of the
`hopchain_annotations` decision at the same time are safe. The annotation wait (`hopchain_annotations`'
`wait`) only watches. The same pass also runs once in each decision, before it decides, and between the
demo's simulated answers.

One run at a time (`max_active_runs=1`), no catch-up: a run that overlaps the next minute delays it and a
missed minute is not made up (the next pass sees everything anyway). A pass is short: it times out after
5 minutes and is retried twice, like every HopChain task.
"""


@dag(
    dag_id="hopchain_labeling",
    schedule=timedelta(minutes=1),
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    default_args=default_args(retry_delay_s=10, execution_timeout=timedelta(minutes=5)),
    tags=["hopchain", "annotation", "label-studio"],
    doc_md=DOC,
)
def hopchain_labeling() -> None:
    @task
    def tend(**context: Any) -> dict[str, Any]:
        from hopchain_airflow.runtime import run_task

        return run_task(context, "pipelines.annotation.tasks:tend")

    tend()


hopchain_labeling()
