"""hopchain_release — pack accepted questions into a DVC release, tag it in the registry, push the data."""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import dag, task

from hopchain_airflow.assets import CONSENSUS, RELEASE
from hopchain_airflow.dag_defaults import START_DATE, default_args

DOC = """
### HopChain release
Scheduled on the `hopchain_consensus` Asset. Packs every accepted question so far into Parquet shards with their
images, a COCO instances file, a chat-format JSONL, a dataset card and `metrics.json`; `dvc repro` in the dataset
registry, commit, tag `vYYYY.MM.DD`, `dvc push` to the S3 remote. The new tag is in the `hopchain_release`
Asset's extra.
Trainers: `git clone <registry> && cd <registry> && git checkout <tag> && dvc pull`.
"""


@dag(
    dag_id="hopchain_release",
    schedule=[CONSENSUS],
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    default_args=default_args(retry_delay_s=30, execution_timeout=timedelta(hours=2)),
    tags=["hopchain", "release", "dvc"],
    doc_md=DOC,
)
def hopchain_release():
    @task(outlets=[RELEASE])
    def release(**context) -> dict:
        from hopchain_airflow.runtime import run_task

        result = run_task(context, "pipelines.release.platform:release")
        context["outlet_events"][RELEASE].extra = result
        return result

    release()


hopchain_release()
