"""hopchain_annotations — wait for four-way answers in Label Studio, pull, decide consensus, validate."""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import dag, task

from hopchain_airflow.assets import CONSENSUS, QUESTIONS_BATCH
from hopchain_airflow.dag_defaults import START_DATE, default_args
from hopchain_airflow.operators.annotation import AnnotationWaitOperator

DOC = """
### HopChain annotation wait and consensus
Scheduled whenever `hopchain_nightly` pushes a batch (the `hopchain_questions_batch` Asset), and safe to run by hand.

1. **open_batches** — every batch still open (including items left *pending* by an earlier run).
2. **simulate** — demo profile only: simulated annotators answer through the real Label Studio API.
3. **wait** — after *simulate* (done or skipped); deferrable: the `AnnotationCompleteTrigger` polls Label Studio
   (distinct annotators per task, read only: tasks are handed out by `hopchain_labeling`) until
   every task has four answers or the batch deadline passes; it holds no worker slot while waiting.
4. **decide** — one labeling pass (journal, integrity, handout), then decides from the annotation journal: validates
   each answer, counts only registered annotators' answers nobody changed (rejects are kept with reasons), holds a
   batch whose project changed outside the platform, decides unanimous consensus,
   runs the Great Expectations suites, and closes what is decided; pending items stay open for the next run.
"""


@dag(
    dag_id="hopchain_annotations",
    schedule=[QUESTIONS_BATCH],
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    default_args=default_args(retry_delay_s=15, execution_timeout=timedelta(hours=1)),
    tags=["hopchain", "annotation", "label-studio"],
    doc_md=DOC,
)
def hopchain_annotations():
    @task
    def open_batches(**context) -> dict:
        from hopchain_airflow.runtime import run_task

        return run_task(context, "pipelines.annotation.tasks:open_batches")

    @task(execution_timeout=timedelta(minutes=30))
    def simulate(batches: dict, **context) -> dict:
        """Demo only: simulated annotators (skipped unless the profile enables them)."""
        from airflow.sdk.exceptions import AirflowSkipException

        from hopchain_airflow.runtime import run_task

        def step(env):  # type: ignore[no-untyped-def]
            if not env.params.annotation.simulated.enabled:
                raise AirflowSkipException("simulated annotators are disabled in this profile")
            from pipelines.annotation.tasks import simulate_annotators

            return simulate_annotators(env, batches)

        return run_task(context, step)

    @task(outlets=[CONSENSUS], trigger_rule="none_failed")
    def decide(batches: dict, wait_event: dict | None = None, **context) -> dict:
        from hopchain_airflow.runtime import run_task

        result = run_task(context, "pipelines.annotation.tasks:decide", batches)
        context["outlet_events"][CONSENSUS].extra = result
        return result

    batches = open_batches()
    # the wait follows the (demo-only) simulation, which is skipped in every other profile: so a
    # sequential run (dag.test) never waits for answers that the simulation has not given yet
    wait = AnnotationWaitOperator(task_id="wait", batches=batches, execution_timeout=timedelta(days=2),
                                  trigger_rule="none_failed")
    sim = simulate(batches)
    batches >> sim >> wait
    decided = decide(batches, wait.output)
    sim >> decided


hopchain_annotations()
