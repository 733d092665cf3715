"""The platform's ledger: the records of runs, batches, decisions and releases, and their indexes.

The key layout lives in :mod:`pipelines.store.layout` (the one module that builds keys; its docstring
draws the whole tree); this module owns the typed records the DAGs pass between tasks (as JSON), the
Airflow page shows and the release reads, and where each is kept:

* ``<runs>/<run_id>/summary.json``                           :class:`RunSummary`
* ``<batches>/<batch_id>.json``                              :class:`BatchRecord` (a shard pushed to Label Studio)
* ``<consensus>/<batch_id>.json`` + ``<consensus>/<batch_id>/<table>.parquet``   :class:`ConsensusRecord`
* ``<releases>/<tag>.json`` + ``<releases>/<tag>/card/…``    :class:`ReleaseRecord`

Indexes (empty marker objects, so that no read grows with the history):

* ``<prefix>/_index/newest-first/<inverted ms>.<id>`` for runs, batches, consensus and releases: S3 lists
  keys in ascending order, and the key sorts newest first, so the newest N records cost one listing page
  and N reads (:meth:`Ledger.view`, :meth:`Ledger.latest_release`, :meth:`Ledger.decided_since`).
* ``<batches>/_index/open/<batch_id>``: one marker per open batch (:meth:`Ledger.open_batches` costs
  O(open batches)). Each marker is its writer's own key, so parallel pushes never race on one object.
* ``<prefix>/_index/built.json``: the index of that prefix is complete. A ledger written before the
  indexes existed has none: the first read builds it from one full listing (any caller, the page
  included), or the first write, and writes ``built.json`` last; later reads never list the records again.

Order of writes: a marker is written before its record and removed after it, so a reader may meet a
marker whose record is missing, closed or newer (it skips it), never a record without its marker.

Every write is one atomic PUT; a retried task overwrites only its own keys. Times are
timezone-aware UTC. Reading a ledger lists one level of each prefix, never the data beside it.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from pipelines.config import StoreConfig
from pipelines.store import ObjectStore
from pipelines.store.layout import BucketLayout, RunKeys, batch_id_for

__all__ = [
    "BatchRecord", "ConsensusRecord", "Ledger", "LedgerView", "ReleaseRecord", "RunKeys", "RunSummary",
    "batch_id_for", "utc_now",
]


def utc_now() -> datetime:
    return datetime.now(UTC)


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
    already_present: int = Field(0, ge=0)  # questions whose task existed (an earlier try, or another batch)
    tasks_fetched: int = Field(0, ge=0)  # Label Studio tasks the push read to find those
    carried_over: int = Field(0, ge=0)  # decisions that left items pending and moved the deadline
    pending: int | None = None  # items still pending after the last decision
    # how its tasks reference images: "s3" (signed by Label Studio on every open, never expire),
    # "presigned" (URLs signed at push time, expire); None: pushed before this was recorded
    image_refs: Literal["s3", "presigned"] | None = None
    # why the batch is held (its project changed outside the platform: no decision, no release until
    # `hopchain project repair` puts it back); None: not held
    held: str | None = None
    # the lowest Label Studio task id the batch holds: every reader of the batch filters
    # ``data.batch == batch_id AND id >= first_task_id`` (pipelines.annotation.completion.batch_filter), which
    # Label Studio answers without scanning the older tasks. Correct under retries: it is the lowest id among
    # the batch's own tasks found by the push (an earlier try's) and the ids it created, and a task created
    # later always gets a higher id. None: pushed before this was recorded, or the batch holds no task
    # (read unbounded)
    first_task_id: int | None = Field(None, ge=1)


class ConsensusRecord(_Record):
    """The decision of one batch: counts, and the keys of its tables under ``<consensus>/<batch_id>/``."""

    batch_id: str
    run_id: str  # the run that pushed the batch
    decided_by: str  # the annotation run that decided it
    accepted: int = Field(ge=0)
    rejected: int = Field(ge=0)
    pending: int = Field(ge=0)
    annotations_rejected: int = Field(ge=0)
    agreement_rate: float = Field(ge=0, le=1)  # accepted / questions the batch holds a task for
    decided_at: datetime
    held_elsewhere: int = Field(0, ge=0)  # questions whose task belongs to an earlier batch (decided there)
    tasks_fetched: int = Field(0, ge=0)  # Label Studio tasks read for this decision
    # cost: counted annotations of the decided questions / accepted questions (None: none accepted)
    annotations_per_accepted: float | None = Field(None, ge=0)
    annotations_saved: int = Field(0, ge=0)  # answers not asked for: questions stopped at their first disagreement
    withdrawn: int = Field(0, ge=0)  # tasks this decision took out of the labeling stream (early stop)
    # annotations not counted, by reason code (integrity.*: changed by another account, changed after
    # first seen, not a registered annotator); the tasks went back for fresh answers
    integrity: dict[str, int] = Field(default_factory=dict)
    journaled: int = Field(0, ge=0)  # annotation snapshots this decision appended to the journal
    source: Literal["label-studio", "journal"] = "label-studio"  # "journal": decided from the store alone
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
    # the newest decision this release read: the next release reads the decisions after it
    decisions_through: datetime | None = None


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
    """One page of what is recorded, newest first (what the Airflow page shows): at most ``per_page``
    records of each kind, skipping ``page * per_page``; ``more`` says an older page has records."""

    runs: list[RunSummary] = []
    batches: list[BatchRecord] = []
    consensus: list[ConsensusRecord] = []
    releases: list[ReleaseRecord] = []
    page: int = 0
    per_page: int = 50
    more: bool = False


R = TypeVar("R", bound=_Record)

_MAX_MS = 10**13 - 1  # inverted milliseconds stay 13 digits until the year 2286


def _inverted(t: datetime) -> str:
    return f"{_MAX_MS - int(t.timestamp() * 1000):013d}"


def _uninverted(text: str) -> datetime:
    return datetime.fromtimestamp((_MAX_MS - int(text)) / 1000, UTC)


class NewestFirst:
    """The ``<prefix>/_index/newest-first/`` markers of one kind of record (see the module docstring)."""

    def __init__(self, store: ObjectStore, prefix: str) -> None:
        self.store = store
        self.prefix = prefix
        self.root = BucketLayout.newest_first_root(prefix)

    def key(self, record_id: str, at: datetime) -> str:
        return BucketLayout.newest_first_marker(self.prefix, _inverted(at), record_id)

    def add(self, record_id: str, at: datetime) -> None:
        self.store.put_bytes(self.key(record_id, at), b"")

    def drop(self, record_id: str, at: datetime) -> None:
        self.store.delete_keys([self.key(record_id, at)])

    def entries(self) -> Iterator[tuple[datetime, str]]:
        """``(time, id)`` newest first, lazily: the store lists 1,000 keys per request, so stopping early
        bounds the listing."""
        for key in self.store.list(self.root, recursive=False):
            stamp, _, record_id = key[len(self.root):].partition(".")
            if stamp.isdigit() and record_id:
                yield _uninverted(stamp), record_id


class Ledger:
    """Reads and writes the ledger records of one bucket (layout from ``params.store``).

    Bounded reads: :meth:`open_batches` (O(open batches)), :meth:`view` (one page of each kind),
    :meth:`latest_release`, :meth:`decided_since` / :meth:`decided_since_release` (O(decisions since)).
    The full reads :meth:`batches`, :meth:`consensus`, :meth:`releases`, :meth:`runs` list a whole prefix
    and are for tools that need everything (a cumulative release, a migration).
    """

    def __init__(self, store: ObjectStore, layout: StoreConfig) -> None:
        self.store = store
        self.layout = layout
        self.keys = BucketLayout(layout)
        self._built: set[str] = set()

    # -- keys ------------------------------------------------------------------------------------
    def run(self, run_id: str) -> RunKeys:
        return self.keys.run(run_id)

    def batch_key(self, batch_id: str) -> str:
        return self.keys.batch(batch_id)

    def open_marker_key(self, batch_id: str) -> str:
        return self.keys.open_marker(batch_id)

    def consensus_key(self, batch_id: str) -> str:
        return self.keys.consensus(batch_id)

    def consensus_table_key(self, batch_id: str, table: str) -> str:
        return self.keys.consensus_table(batch_id, table)

    def consensus_prefix(self, batch_id: str) -> str:
        return self.keys.consensus_tables(batch_id)

    @property
    def journal_prefix(self) -> str:
        """Where the annotation journal lives (:class:`pipelines.annotation.journal.Journal`)."""
        return self.keys.journal_root

    @property
    def annotators_key(self) -> str:
        """The registered annotators (:mod:`pipelines.annotation.registry`)."""
        return self.keys.annotators_registry

    @property
    def pseudonym_key_key(self) -> str:
        """Where a generated pseudonym key is kept when ``HOPCHAIN_PSEUDONYM_KEY`` is not set."""
        return self.keys.pseudonym_key

    def release_key(self, tag: str) -> str:
        return self.keys.release(tag)

    def release_file_key(self, tag: str, *parts: str) -> str:
        return self.keys.release_file(tag, *parts)

    @property
    def document_prefixes(self) -> tuple[str, ...]:
        """Prefixes of the documents the Airflow page may proxy (Data Docs, dataset cards)."""
        return self.keys.document_prefixes

    # -- indexes ---------------------------------------------------------------------------------
    def _newest(self, prefix: str) -> NewestFirst:
        return NewestFirst(self.store, prefix)

    def _ensure_index(self, prefix: str) -> None:
        """Build the indexes of ``prefix`` from one full listing if this ledger predates them."""
        if prefix in self._built:
            return
        built = self.keys.index_built(prefix)
        if not self.store.exists(built):
            index = self._newest(prefix)
            if prefix == self.layout.batches_prefix:
                for b in self.batches():
                    index.add(b.batch_id, b.pushed_at)
                    if b.status == "open":
                        self.store.put_bytes(self.open_marker_key(b.batch_id), b"")
            elif prefix == self.layout.consensus_prefix:
                for c in self.consensus():
                    index.add(c.batch_id, c.decided_at)
            elif prefix == self.layout.releases_prefix:
                for r in self.releases():
                    index.add(r.tag, r.released_at)
            else:
                for s in self.runs():
                    index.add(s.run_id, s.finished_at)
            self.store.put_json(built, {"version": 1, "built_at": utc_now().isoformat()})
        self._built.add(prefix)

    def _page(self, prefix: str, read: Callable[[str], R | None], when: Callable[[R], datetime],
              per_page: int, page: int) -> tuple[list[R], bool]:
        """Records of one newest-first page (stale markers skipped) and whether an older page exists."""
        self._ensure_index(prefix)
        start = max(0, page) * per_page
        entries = list(itertools.islice(self._newest(prefix).entries(), start, start + per_page + 1))
        out: list[R] = []
        for at, record_id in entries[:per_page]:
            record = read(record_id)
            if record is not None and _inverted(when(record)) == _inverted(at):
                out.append(record)
        return out, len(entries) > per_page

    # -- records ---------------------------------------------------------------------------------
    def _records(self, prefix: str, model: type[R]) -> list[R]:
        keys = sorted(self.store.list(self.keys.records_root(prefix), recursive=False))
        return [model.model_validate(self.store.get_json(k)) for k in keys if k.endswith(".json")]

    def batches(self) -> list[BatchRecord]:
        """Every batch ever pushed (a full listing; see :meth:`open_batches` and :meth:`view`)."""
        return self._records(self.layout.batches_prefix, BatchRecord)

    def open_batches(self) -> list[BatchRecord]:
        """The open batches, oldest push first: one listing of the open markers and one read per open batch."""
        self._ensure_index(self.layout.batches_prefix)
        root = self.keys.open_markers_root()
        out = []
        for key in self.store.list(root, recursive=False):
            record = self.batch(key[len(root):])
            if record is not None and record.status == "open":  # a marker of a batch closed meanwhile: skip
                out.append(record)
        return sorted(out, key=lambda b: (b.pushed_at, b.batch_id))

    def batch(self, batch_id: str) -> BatchRecord | None:
        key = self.batch_key(batch_id)
        return BatchRecord.model_validate(self.store.get_json(key)) if self.store.exists(key) else None

    def put_batch(self, record: BatchRecord) -> str:
        """Write the record and keep its markers: an open batch is marked before its record is written,
        a closed one unmarked after."""
        self._ensure_index(self.layout.batches_prefix)
        self._newest(self.layout.batches_prefix).add(record.batch_id, record.pushed_at)
        if record.status == "open":
            self.store.put_bytes(self.open_marker_key(record.batch_id), b"")
        key = self.store.put_json(self.batch_key(record.batch_id), record.to_json())
        if record.status == "closed":
            self.store.delete_keys([self.open_marker_key(record.batch_id)])
        return key

    def consensus(self) -> list[ConsensusRecord]:
        """Every decision ever recorded (a full listing; see :meth:`decided_since` and :meth:`view`)."""
        return self._records(self.layout.consensus_prefix, ConsensusRecord)

    def decision(self, batch_id: str) -> ConsensusRecord | None:
        key = self.consensus_key(batch_id)
        return ConsensusRecord.model_validate(self.store.get_json(key)) if self.store.exists(key) else None

    def put_consensus(self, record: ConsensusRecord) -> str:
        """Write the decision (a batch decided again replaces its earlier decision and its marker)."""
        self._ensure_index(self.layout.consensus_prefix)
        earlier = self.decision(record.batch_id)
        index = self._newest(self.layout.consensus_prefix)
        index.add(record.batch_id, record.decided_at)
        key = self.store.put_json(self.consensus_key(record.batch_id), record.to_json())
        if earlier is not None and _inverted(earlier.decided_at) != _inverted(record.decided_at):
            index.drop(record.batch_id, earlier.decided_at)
        return key

    def decided_since(self, since: datetime | None) -> list[ConsensusRecord]:
        """Decisions recorded after ``since`` (every decision when None), newest first; reads only those
        (plus one listing page per 1,000 of them). A batch decided again appears once, at its latest time."""
        self._ensure_index(self.layout.consensus_prefix)
        out = []
        for at, batch_id in self._newest(self.layout.consensus_prefix).entries():
            if since is not None and at <= since:
                break
            record = self.decision(batch_id)
            if record is not None and _inverted(record.decided_at) == _inverted(at):
                out.append(record)
        return out

    def decided_since_release(self) -> list[ConsensusRecord]:
        """Decisions recorded after the latest release (every decision when there is none), newest
        first: what a release adds to the previous one. O(new decisions + one page of releases)."""
        latest = self.latest_release()
        if latest is None:
            return self.decided_since(None)
        return self.decided_since(latest.decisions_through or latest.released_at)

    def release(self, tag: str) -> ReleaseRecord | None:
        key = self.release_key(tag)
        return ReleaseRecord.model_validate(self.store.get_json(key)) if self.store.exists(key) else None

    def releases(self) -> list[ReleaseRecord]:
        """Every release, newest first (a full listing; see :meth:`latest_release` and :meth:`view`)."""
        return sorted(self._records(self.layout.releases_prefix, ReleaseRecord),
                      key=lambda r: r.released_at, reverse=True)

    def latest_release(self) -> ReleaseRecord | None:
        releases, _ = self._page(self.layout.releases_prefix, self.release, lambda r: r.released_at, 1, 0)
        return releases[0] if releases else None

    def put_release(self, record: ReleaseRecord) -> str:
        self._ensure_index(self.layout.releases_prefix)
        earlier = self.release(record.tag)
        index = self._newest(self.layout.releases_prefix)
        index.add(record.tag, record.released_at)
        key = self.store.put_json(self.release_key(record.tag), record.to_json())
        if earlier is not None and _inverted(earlier.released_at) != _inverted(record.released_at):
            index.drop(record.tag, earlier.released_at)
        return key

    def run_summary(self, run_id: str) -> RunSummary | None:
        key = self.run(run_id).summary()
        return RunSummary.model_validate(self.store.get_json(key)) if self.store.exists(key) else None

    def runs(self) -> list[RunSummary]:
        """Summaries of every finished run, newest first (one listing level, never every object of every
        run; still a full listing of the runs: see :meth:`view`)."""
        out: list[RunSummary] = []
        index_prefix = self.keys.runs_index_root
        for run_prefix in self.store.list_prefixes(self.keys.runs_root):
            key = self.keys.run_summary_of(run_prefix)
            if run_prefix != index_prefix and self.store.exists(key):
                out.append(RunSummary.model_validate(self.store.get_json(key)))
        return sorted(out, key=lambda r: r.finished_at, reverse=True)

    def put_run_summary(self, summary: RunSummary) -> str:
        self._ensure_index(self.layout.runs_prefix)
        earlier = self.run_summary(summary.run_id)
        index = self._newest(self.layout.runs_prefix)
        index.add(summary.run_id, summary.finished_at)
        key = self.store.put_json(self.run(summary.run_id).summary(), summary.to_json())
        if earlier is not None and _inverted(earlier.finished_at) != _inverted(summary.finished_at):
            index.drop(summary.run_id, earlier.finished_at)
        return key

    def view(self, per_page: int = 50, page: int = 0) -> LedgerView:
        """One newest-first page of each kind of record: at most ``4 * (per_page + 1)`` reads plus one
        listing page per kind, whatever the history holds."""
        lay = self.layout
        runs, m1 = self._page(lay.runs_prefix, self.run_summary, lambda r: r.finished_at, per_page, page)
        batches, m2 = self._page(lay.batches_prefix, self.batch, lambda b: b.pushed_at, per_page, page)
        consensus, m3 = self._page(lay.consensus_prefix, self.decision, lambda c: c.decided_at, per_page, page)
        releases, m4 = self._page(lay.releases_prefix, self.release, lambda r: r.released_at, per_page, page)
        return LedgerView(runs=runs, batches=batches, consensus=consensus, releases=releases,
                          page=page, per_page=per_page, more=m1 or m2 or m3 or m4)
