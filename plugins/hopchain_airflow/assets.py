"""The Assets that connect the three DAGs (names are stable: the UI and the plugin page use them)."""

from __future__ import annotations

from airflow.sdk import Asset

#: A batch of validated questions pushed to Label Studio (extra: run_id, batch_id, questions, project_id).
QUESTIONS_BATCH = Asset(name="hopchain_questions_batch", uri="s3://hopchain/batches/")
#: Consensus decided for one or more batches (extra: batches, accepted, rejected, pending).
CONSENSUS = Asset(name="hopchain_consensus", uri="s3://hopchain/consensus/")
#: A dataset release tagged in the registry (extra: tag, registry, questions, images).
RELEASE = Asset(name="hopchain_release", uri="s3://hopchain/releases/")
