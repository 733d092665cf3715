"""hopchain_nightly — ingest → (detect → segment → questions → validate) per shard → push to Label Studio.

DAG files only wire tasks: each task is one runner call through :func:`hopchain_airflow.runtime.run_stage`
(a stage of :mod:`pipelines.runner` on one shard) or :func:`~hopchain_airflow.runtime.run_task` (a function of
the run), naming what it runs as ``"module:name"`` (imported inside the task, so parsing stays light).
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import Param, dag, task, task_group

from hopchain_airflow.assets import QUESTIONS_BATCH
from hopchain_airflow.dag_defaults import START_DATE, default_args

DOC = """
### HopChain nightly build
Turns the images under **input_prefix** (in the platform bucket) into multi-hop questions and pushes them to
Label Studio for four-way verification.

0. **preflight** — the `hopchain doctor` checks for the run's profile (models resolve offline, GPU memory, VLM
   endpoint, S3, Label Studio, the connections and the `gpu` pool): one log line per check; any failure fails the
   run here, before a shard starts.
1. **ingest** — hash, decode, quarantine bad files, write the sharded manifest (`runs/<run_id>/manifest/`).
2. per shard (mapped task group; GPU tasks run in the `gpu` pool and on the `gpu` queue):
   **detect** (VLM categories/boxes) → **segment** (SAM3/SAM2 masks) → **questions** (hop programs) →
   **validate** (Great Expectations on the questions; manifest and instances are validated by the stage that
   wrote them, so a critical failure stops the shard before the next stage reads it).
3. **push** — the shard's questions go to Label Studio as one batch; the `hopchain_questions_batch` Asset is
   updated, which schedules `hopchain_annotations`.

Params are validated; `profile` selects a block of `params.yaml` (`demo` on a CPU, `gpu` in production).
"""


@dag(
    dag_id="hopchain_nightly",
    schedule="0 2 * * *",
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    default_args=default_args(retry_delay_s=20, execution_timeout=timedelta(hours=2)),
    tags=["hopchain", "nightly", "gpu"],
    doc_md=DOC,
    params={
        "input_prefix": Param("incoming", type="string", minLength=1,
                              description="folder under inputs/ in the platform bucket holding the images"),
        "profile": Param("", type="string", description="params.yaml profile (empty: HOPCHAIN_PROFILE or base)"),
        "shard_size": Param(0, type="integer", minimum=0, maximum=5000, description="images per shard (0: params)"),
        "max_images": Param(0, type="integer", minimum=0, description="stop after this many images (0: all)"),
    },
)
def hopchain_nightly():
    @task(queue="gpu", retries=0, execution_timeout=timedelta(minutes=2))
    def preflight(**context) -> dict:
        """`hopchain doctor` for this run's profile, on a GPU worker, plus the connections and the `gpu` pool:
        a broken configuration fails here in seconds, before any shard waits for a GPU slot."""
        from hopchain_airflow.runtime import preflight as check

        return check(context)

    @task(execution_timeout=timedelta(minutes=30))
    def ingest(**context) -> list[int]:
        """List the inputs, write the manifest and quarantine shards; returns the shard numbers."""
        from hopchain_airflow.runtime import run_stage

        p = context["params"]
        return run_stage(context, "pipelines.ingest.stage:IngestStage", input_prefix=p["input_prefix"],
                         shard_size=p["shard_size"], max_images=p["max_images"])["shards"]

    @task_group(group_id="shard")
    def process_shard(shard: int):
        @task(pool="gpu", queue="gpu")
        def detect(shard: int, **context) -> int:
            from hopchain_airflow.runtime import run_stage

            run_stage(context, "pipelines.detect.stage:DetectStage", shard)
            return shard

        @task(pool="gpu", queue="gpu")
        def segment(shard: int, **context) -> int:
            from hopchain_airflow.runtime import run_stage

            run_stage(context, "pipelines.segment.stage:SegmentStage", shard)
            return shard

        @task
        def questions(shard: int, **context) -> int:
            from hopchain_airflow.runtime import run_stage

            run_stage(context, "pipelines.questions.stage:QuestionsStage", shard)
            return shard

        @task(retries=0)
        def validate(shard: int, **context) -> int:
            """Great Expectations on manifest, instances and questions; critical failures stop here."""
            from hopchain_airflow.runtime import run_stage

            run_stage(context, "pipelines.validate.stage:ValidateStage", shard)
            return shard

        @task
        def push(shard: int, **context) -> dict:
            from hopchain_airflow.runtime import run_task

            return run_task(context, "pipelines.annotation.tasks:push", shard)

        return push(validate(questions(segment(detect(shard)))))

    @task(trigger_rule="all_done")
    def summary(**context) -> dict:
        """Counts per stage for this run (also written to runs/<run_id>/summary.json)."""
        from hopchain_airflow.runtime import run_task

        return run_task(context, "pipelines.runner:summarize")

    @task(trigger_rule="all_done", outlets=[QUESTIONS_BATCH])
    def announce(**context) -> dict:
        """One Asset event per run for the batches it pushed (skipped when it pushed none)."""
        from airflow.sdk.exceptions import AirflowSkipException

        from hopchain_airflow.runtime import run_task

        batches = run_task(context, "pipelines.annotation.tasks:pushed_batches")
        if not batches:
            raise AirflowSkipException("no batch was pushed in this run")
        extra = {"run_id": context["run_id"], "batches": [b["batch_id"] for b in batches],
                 "questions": sum(int(b["questions"]) for b in batches)}
        context["outlet_events"][QUESTIONS_BATCH].extra = extra
        return extra

    shards = ingest()
    preflight() >> shards
    pushed = process_shard.expand(shard=shards)
    pushed >> summary() >> announce()


hopchain_nightly()
