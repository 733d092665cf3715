"""The platform's ledger: where every run artifact and record lives in the bucket, and what the
records are.

One place owns the key layout (prefixes from ``params.store``) and the typed records the DAGs
pass between tasks (as JSON), the Airflow page shows and the release reads:

* ``<runs>/<run_id>/<stage>/shard-NNNNN.parquet``            manifest, quarantine, detections, instances, questions
* ``<runs>/<run_id>/rejects/<stage>/shard-NNNNN.parquet``    refused items (contract ``rejects``)
* ``<runs>/<run_id>/stats/<stage>/shard-NNNNN.json``         counts per task
* ``<runs>/<run_id>/ingest/plan.json``                       what ingest listed and sharded
* ``<runs>/<run_id>/validation/…``, ``<runs>/<run_id>/datadocs/…``   GX results and Data Docs
* ``<runs>/<run_id>/summary.json``                           :class:`RunSummary`
* ``<batches>/<batch_id>.json``                              :class:`BatchRecord` (a shard pushed to Label Studio)
* ``<consensus>/<batch_id>.json`` + ``<consensus>/<batch_id>/<table>.parquet``   :class:`ConsensusRecord`
* ``<releases>/<tag>.json`` + ``<releases>/<tag>/card/…``    :class:`ReleaseRecord`

Every write is one atomic PUT; a retried task overwrites only its own keys. Times are
timezone-aware UTC. Reading a ledger lists one level of each prefix, never the data beside it.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from pipelines.config import StoreConfig
from pipelines.store import ObjectStore, safe_key

__all__ = [
    "BatchRecord", "ConsensusRecord", "Ledger", "LedgerView", "ReleaseRecord", "RunKeys", "RunSummary",
    "batch_id_for", "utc_now",
]


def utc_now() -> datetime:
    return datetime.now(UTC)


def batch_id_for(run_id: str, shard: int) -> str:
    """A batch id that is a safe object-key segment and a Label Studio filter value."""
    clean = re.sub(r"[^A-Za-z0-9._-]+", "_", run_id).strip("_")
    return f"{clean}.shard-{shard:05d}"


class _Record(BaseModel):
    """Ledger records refuse unknown fields: a typo is an error, not a silently lost value."""

    model_config = ConfigDict(extra="forbid")

    def to_json(self) -> dict[str, Any]:
        """Plain JSON (what XCom, the object store and the page carry)."""
        return self.model_dump(mode="json")


class BatchRecord(_Record):
    """One shard's questions pushed to Label Studio, waiting for (or done with) its annotators."""

    batch_id: str
    run_id: str
    shard: int = Field(ge=0)
    questions: int = Field(ge=0)
    project_id: int | None  # None: nothing was pushed (an empty shard)
    status: Literal["open", "closed"]
    pushed_at: datetime
    deadline: datetime  # the annotation wait gives up on this batch at this time
    questions_key: str
    created_tasks: int = Field(0, ge=0)
    carried_over: int = Field(0, ge=0)  # decisions that left items pending and moved the deadline
    pending: int | None = None  # items still pending after the last decision


class ConsensusRecord(_Record):
    """The decision of one batch: counts, and the keys of its tables under ``<consensus>/<batch_id>/``."""

    batch_id: str
    run_id: str  # the run that pushed the batch
    decided_by: str  # the annotation run that decided it
    accepted: int = Field(ge=0)
    rejected: int = Field(ge=0)
    pending: int = Field(ge=0)
    annotations_rejected: int = Field(ge=0)
    agreement_rate: float = Field(ge=0, le=1)  # accepted / questions of the batch
    decided_at: datetime
    keys: dict[str, str]  # table name (annotations, consensus, rejects, ...) -> object key


class ReleaseRecord(_Record):
    """A tagged dataset release in the registry."""

    tag: str
    registry: str
    commit: str
    questions: int | None
    images: int | None
    metrics: dict[str, Any]
    card: str | None  # key of the rendered dataset card, if any
    run_ids: list[str]
    accepted_digest: str  # sha256 over the accepted (question_id, answer) pairs
    released_by: str
    reused: bool = False  # the registry already had this content: no new commit
    pushed_files: int | None = None
    released_at: datetime


class RunSummary(_Record):
    """Counts of one nightly run (from its per-shard stats)."""

    run_id: str
    images: int = 0
    quarantined: int = 0
    instances: int = 0
    questions: int = 0
    rejects: int = 0
    stages: dict[str, dict[str, float]] = {}
    datadocs: str | None = None
    finished_at: datetime


class LedgerView(BaseModel):
    """Everything recorded, newest first (what the Airflow page shows)."""

    runs: list[RunSummary] = []
    batches: list[BatchRecord] = []
    consensus: list[ConsensusRecord] = []
    releases: list[ReleaseRecord] = []


class RunKeys:
    """Object keys of one run: ``<runs>/<run_id>/...``."""

    def __init__(self, runs_prefix: str, run_id: str) -> None:
        self.runs_prefix = runs_prefix
        self.run_id = run_id

    def _key(self, *parts: str) -> str:
        return safe_key(self.runs_prefix, self.run_id, *parts)

    @property
    def prefix(self) -> str:
        return safe_key(self.runs_prefix, self.run_id) + "/"

    def table(self, stage: str, shard: int) -> str:
        return self._key(stage, f"shard-{int(shard):05d}.parquet")

    def rejects(self, stage: str, shard: int) -> str:
        return self._key("rejects", stage, f"shard-{int(shard):05d}.parquet")

    def stats(self, stage: str, shard: int) -> str:
        return self._key("stats", stage, f"shard-{int(shard):05d}.json")

    def stats_prefix(self) -> str:
        return self._key("stats") + "/"

    def plan(self) -> str:
        return self._key("ingest", "plan.json")

    def validation(self, name: str) -> str:
        return self._key("validation", name)

    def datadocs_prefix(self) -> str:
        return self._key("datadocs") + "/"

    def datadocs_index(self) -> str:
        return self._key("datadocs", "index.html")

    def summary(self) -> str:
        return self._key("summary.json")


R = TypeVar("R", bound=_Record)


class Ledger:
    """Reads and writes the ledger records of one bucket (layout from ``params.store``)."""

    def __init__(self, store: ObjectStore, layout: StoreConfig) -> None:
        self.store = store
        self.layout = layout

    # -- keys ------------------------------------------------------------------------------------
    def run(self, run_id: str) -> RunKeys:
        return RunKeys(self.layout.runs_prefix, run_id)

    def batch_key(self, batch_id: str) -> str:
        return safe_key(self.layout.batches_prefix, f"{batch_id}.json")

    def consensus_key(self, batch_id: str) -> str:
        return safe_key(self.layout.consensus_prefix, f"{batch_id}.json")

    def consensus_table_key(self, batch_id: str, table: str) -> str:
        return safe_key(self.layout.consensus_prefix, batch_id, f"{table}.parquet")

    def consensus_prefix(self, batch_id: str) -> str:
        return safe_key(self.layout.consensus_prefix, batch_id) + "/"

    def release_key(self, tag: str) -> str:
        return safe_key(self.layout.releases_prefix, f"{tag}.json")

    def release_file_key(self, tag: str, *parts: str) -> str:
        return safe_key(self.layout.releases_prefix, tag, *parts)

    @property
    def document_prefixes(self) -> tuple[str, ...]:
        """Prefixes of the documents the Airflow page may proxy (Data Docs, dataset cards)."""
        return (self.layout.runs_prefix.strip("/") + "/", self.layout.releases_prefix.strip("/") + "/")

    # -- records ---------------------------------------------------------------------------------
    def _records(self, prefix: str, model: type[R]) -> list[R]:
        keys = sorted(self.store.list(prefix.strip("/") + "/", recursive=False))
        return [model.model_validate(self.store.get_json(k)) for k in keys if k.endswith(".json")]

    def batches(self) -> list[BatchRecord]:
        return self._records(self.layout.batches_prefix, BatchRecord)

    def open_batches(self) -> list[BatchRecord]:
        return [b for b in self.batches() if b.status == "open"]

    def batch(self, batch_id: str) -> BatchRecord | None:
        key = self.batch_key(batch_id)
        return BatchRecord.model_validate(self.store.get_json(key)) if self.store.exists(key) else None

    def put_batch(self, record: BatchRecord) -> str:
        return self.store.put_json(self.batch_key(record.batch_id), record.to_json())

    def consensus(self) -> list[ConsensusRecord]:
        return self._records(self.layout.consensus_prefix, ConsensusRecord)

    def decision(self, batch_id: str) -> ConsensusRecord | None:
        key = self.consensus_key(batch_id)
        return ConsensusRecord.model_validate(self.store.get_json(key)) if self.store.exists(key) else None

    def put_consensus(self, record: ConsensusRecord) -> str:
        return self.store.put_json(self.consensus_key(record.batch_id), record.to_json())

    def releases(self) -> list[ReleaseRecord]:
        """Newest first."""
        return sorted(self._records(self.layout.releases_prefix, ReleaseRecord),
                      key=lambda r: r.released_at, reverse=True)

    def latest_release(self) -> ReleaseRecord | None:
        releases = self.releases()
        return releases[0] if releases else None

    def put_release(self, record: ReleaseRecord) -> str:
        return self.store.put_json(self.release_key(record.tag), record.to_json())

    def runs(self) -> list[RunSummary]:
        """Summaries of the finished runs, newest first (one listing level: never every object of every run)."""
        out: list[RunSummary] = []
        for run_prefix in self.store.list_prefixes(self.layout.runs_prefix.strip("/") + "/"):
            key = run_prefix + "summary.json"
            if self.store.exists(key):
                out.append(RunSummary.model_validate(self.store.get_json(key)))
        return sorted(out, key=lambda r: r.finished_at, reverse=True)

    def put_run_summary(self, summary: RunSummary) -> str:
        return self.store.put_json(self.run(summary.run_id).summary(), summary.to_json())

    def view(self) -> LedgerView:
        return LedgerView(
            runs=self.runs(),
            batches=sorted(self.batches(), key=lambda b: b.pushed_at, reverse=True),
            consensus=sorted(self.consensus(), key=lambda c: c.decided_at, reverse=True),
            releases=self.releases(),
        )
