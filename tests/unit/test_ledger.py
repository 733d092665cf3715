"""The ledger: one key layout (from params.store) and typed records that refuse what they do not know."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from pipelines.config import StoreConfig
from pipelines.store.ledger import BatchRecord, ConsensusRecord, Ledger, ReleaseRecord, RunSummary, batch_id_for
from tests.support.memory_store import MemoryStore

pytestmark = pytest.mark.unit

T0 = datetime(2026, 11, 30, 2, 0, tzinfo=UTC)


def _batch(batch_id: str = "r1.shard-00000", **kw) -> BatchRecord:
    fields = dict(batch_id=batch_id, run_id="r1", shard=0, questions=12, project_id=3, status="open",
                  pushed_at=T0, deadline=T0 + timedelta(days=1), questions_key="runs/r1/questions/shard-00000.parquet")
    return BatchRecord(**{**fields, **kw})


def test_keys_follow_the_configured_prefixes() -> None:
    layout = StoreConfig(runs_prefix="nightly/runs", batches_prefix="lb", consensus_prefix="lc", releases_prefix="lr")
    ledger = Ledger(MemoryStore(), layout)  # type: ignore[arg-type]
    run = ledger.run("scheduled__2026-11-30T02:00:00+00:00")
    assert run.table("questions", 3) == "nightly/runs/scheduled__2026-11-30T02_00_00+00_00/questions/shard-00003.parquet"
    assert run.rejects("detect", 3).endswith("/rejects/detect/shard-00003.parquet")
    assert run.summary().startswith("nightly/runs/") and run.summary().endswith("/summary.json")
    assert ledger.batch_key("b") == "lb/b.json"
    assert ledger.consensus_table_key("b", "consensus") == "lc/b/consensus.parquet"
    assert ledger.release_file_key("v1", "card", "index.html") == "lr/v1/card/index.html"
    assert ledger.document_prefixes == ("nightly/runs/", "lr/")
    assert ledger.batch_key("../../etc/passwd") == "lb/etc/passwd.json"  # a record key never leaves its prefix


def test_records_round_trip_through_the_store_and_read_newest_first() -> None:
    store = MemoryStore()
    ledger = Ledger(store, StoreConfig())  # type: ignore[arg-type]
    ledger.put_batch(_batch("r1.shard-00000"))
    ledger.put_batch(_batch("r2.shard-00000", run_id="r2", pushed_at=T0 + timedelta(days=1)))
    ledger.put_consensus(ConsensusRecord(batch_id="r1.shard-00000", run_id="r1", decided_by="a1", accepted=9,
                                         rejected=2, pending=1, annotations_rejected=0, agreement_rate=0.75,
                                         decided_at=T0, keys={"consensus": "consensus/r1.shard-00000/consensus.parquet"}))
    # the decided tables beside the record are never read as records
    store.put_bytes("consensus/r1.shard-00000/consensus.parquet", b"PAR1")
    for day, tag in ((1, "v2026.12.01"), (2, "v2026.12.02")):
        ledger.put_release(ReleaseRecord(tag=tag, registry="/r.git", commit="c" * 40, questions=9, images=3,
                                         metrics={}, card=None, run_ids=["r1"], accepted_digest="d" * 64,
                                         released_by="rel", released_at=T0 + timedelta(days=day)))
    ledger.put_run_summary(RunSummary(run_id="r1", images=4, finished_at=T0))
    store.put_json("runs/r2/stats/ingest/shard-00000.json", {"images": 1})  # a run still going: no summary

    assert ledger.batch("r1.shard-00000") == _batch("r1.shard-00000")
    assert ledger.batch("missing") is None
    view = ledger.view()
    assert [b.batch_id for b in view.batches] == ["r2.shard-00000", "r1.shard-00000"]
    assert [c.accepted for c in view.consensus] == [9]
    assert [r.tag for r in view.releases] == ["v2026.12.02", "v2026.12.01"]
    assert ledger.latest_release().tag == "v2026.12.02"  # type: ignore[union-attr]
    assert [r.run_id for r in view.runs] == ["r1"]
    # one listing level per prefix: never every object of every run
    assert "runs/" in store.listings and not any(p.startswith("runs/r") for p in store.listings)


def test_records_refuse_unknown_fields_and_bad_values() -> None:
    with pytest.raises(ValidationError, match="extra"):
        BatchRecord.model_validate({**_batch().to_json(), "projcet_id": 4})
    with pytest.raises(ValidationError):
        _batch(status="half-open")
    with pytest.raises(ValidationError):
        _batch(questions=-1)


def test_a_ledger_written_by_the_first_build_is_still_readable() -> None:
    """The JSON the earlier Flow wrote by hand (same field names, ISO times) validates unchanged."""
    old = {"batch_id": "manual__1.shard-00000", "run_id": "manual__1", "shard": 0, "questions": 16,
           "project_id": 1, "status": "open", "pushed_at": "2026-11-24T02:00:00.123456+00:00",
           "deadline": "2026-11-25T02:00:00+00:00", "questions_key": "runs/manual__1/questions/shard-00000.parquet",
           "created_tasks": 16, "carried_over": 1, "pending": 2}
    record = BatchRecord.model_validate(old)
    assert record.deadline == datetime(2026, 11, 25, 2, 0, tzinfo=UTC) and record.carried_over == 1
    assert BatchRecord.model_validate(record.to_json()) == record


def test_batch_ids_are_safe_key_segments() -> None:
    assert batch_id_for("scheduled__2026-11-30T02:00:00+00:00", 7) == "scheduled__2026-11-30T02_00_00_00_00.shard-00007"


class CountingStore(MemoryStore):
    """A MemoryStore that counts the records it reads (``get_bytes``) and the keys it lists."""

    def __init__(self) -> None:
        super().__init__()
        self.reads: list[str] = []
        self.listed = 0

    def get_bytes(self, key: str) -> bytes:
        self.reads.append(key)
        return super().get_bytes(key)

    def get_json(self, key: str):  # type: ignore[no-untyped-def]
        self.reads.append(key)
        return super().get_json(key)

    def list(self, prefix: str, recursive: bool = True):  # type: ignore[no-untyped-def]
        for key in super().list(prefix, recursive):
            self.listed += 1
            yield key

    def reset(self) -> None:
        self.reads.clear()
        self.listings.clear()
        self.listed = 0


def _decision(batch_id: str, at: datetime, accepted: int = 1) -> ConsensusRecord:
    return ConsensusRecord(batch_id=batch_id, run_id="r", decided_by="a", accepted=accepted, rejected=0, pending=0,
                           annotations_rejected=0, agreement_rate=1.0, decided_at=at, keys={})


def _release(tag: str, at: datetime) -> ReleaseRecord:
    return ReleaseRecord(tag=tag, registry="/r.git", commit="c" * 40, questions=1, images=1, metrics={}, card=None,
                         run_ids=["r"], accepted_digest="d" * 64, released_by="rel", released_at=at)


def test_open_batches_cost_the_open_batches_not_the_history() -> None:
    store = CountingStore()
    ledger = Ledger(store, StoreConfig())  # type: ignore[arg-type]
    for i in range(300):  # a year of nightlies, all decided
        ledger.put_batch(_batch(f"r{i:03d}.shard-00000", pushed_at=T0 + timedelta(days=i), status="closed"))
    ledger.put_batch(_batch("r300.shard-00000", pushed_at=T0 + timedelta(days=300)))
    ledger.put_batch(_batch("r301.shard-00000", pushed_at=T0 + timedelta(days=301)))
    store.reset()
    fresh = Ledger(store, StoreConfig())  # type: ignore[arg-type]  # another task: no memory of the first
    assert [b.batch_id for b in fresh.open_batches()] == ["r300.shard-00000", "r301.shard-00000"]
    assert store.reads == ["batches/r300.shard-00000.json", "batches/r301.shard-00000.json"]
    assert store.listed == 2 and "batches/" not in store.listings  # two open markers listed, no batch listing
    # closing a batch removes it from the open set; a carried-over one stays
    fresh.put_batch(_batch("r300.shard-00000", pushed_at=T0 + timedelta(days=300), status="closed"))
    fresh.put_batch(_batch("r301.shard-00000", pushed_at=T0 + timedelta(days=301), carried_over=1))
    assert [b.batch_id for b in fresh.open_batches()] == ["r301.shard-00000"]


def test_the_page_reads_one_bounded_page_newest_first() -> None:
    store = CountingStore()
    ledger = Ledger(store, StoreConfig())  # type: ignore[arg-type]
    for i in range(120):
        at = T0 + timedelta(hours=i)
        ledger.put_batch(_batch(f"r{i:03d}.shard-00000", pushed_at=at, status="closed"))
        ledger.put_consensus(_decision(f"r{i:03d}.shard-00000", at))
        ledger.put_run_summary(RunSummary(run_id=f"r{i:03d}", finished_at=at))
    for day in range(5):
        ledger.put_release(_release(f"v2026.12.0{day + 1}", T0 + timedelta(days=day)))
    store.reset()
    first = Ledger(store, StoreConfig()).view(per_page=50)  # type: ignore[arg-type]
    assert [b.batch_id for b in first.batches][:2] == ["r119.shard-00000", "r118.shard-00000"]
    assert len(first.batches) == len(first.consensus) == len(first.runs) == 50 and first.more
    assert [r.tag for r in first.releases] == [f"v2026.12.0{d}" for d in (5, 4, 3, 2, 1)]
    assert len(store.reads) == 50 * 3 + 5  # one read per shown record, nothing else
    assert store.listed <= 4 * 51 + 4  # one page of markers per kind (plus the "built" checks)
    last = Ledger(store, StoreConfig()).view(per_page=50, page=2)  # type: ignore[arg-type]
    assert [b.batch_id for b in last.batches] == [f"r{i:03d}.shard-00000" for i in range(19, -1, -1)]
    assert not last.more and last.releases == []


def test_a_batch_decided_again_shows_once_and_decided_since_release_reads_only_the_new() -> None:
    store = CountingStore()
    ledger = Ledger(store, StoreConfig())  # type: ignore[arg-type]
    for i in range(200):
        ledger.put_consensus(_decision(f"old{i:03d}.shard-00000", T0 + timedelta(minutes=i)))
    ledger.put_release(_release("v2026.12.01", T0 + timedelta(days=1)))
    ledger.put_consensus(_decision("new1.shard-00000", T0 + timedelta(days=2), accepted=3))
    ledger.put_consensus(_decision("new2.shard-00000", T0 + timedelta(days=3)))
    ledger.put_consensus(_decision("new1.shard-00000", T0 + timedelta(days=4), accepted=5))  # decided again
    store.reset()
    since = ledger.decided_since_release()
    assert [(c.batch_id, c.accepted) for c in since] == [("new1.shard-00000", 5), ("new2.shard-00000", 1)]
    assert len([k for k in store.reads if k.startswith("consensus/")]) == 2
    assert "consensus/" not in store.listings and store.listed <= 2 + 1 + 3  # release page, new markers, one past
    assert len(ledger.decided_since(None)) == 202  # every decision, each once
    assert [c.batch_id for c in ledger.view().consensus][:2] == ["new1.shard-00000", "new2.shard-00000"]


def test_a_ledger_written_before_the_indexes_is_indexed_on_first_use() -> None:
    """Records written as the earlier build did (no markers): the first read builds the index from one
    full listing and writes ``_index/built.json``; from then on reads are bounded again."""
    store = CountingStore()
    layout = StoreConfig()
    for i in range(30):
        b = _batch(f"r{i:02d}.shard-00000", pushed_at=T0 + timedelta(days=i), status="open" if i >= 28 else "closed")
        store.put_json(f"batches/{b.batch_id}.json", b.to_json())
        store.put_json(f"consensus/{b.batch_id}.json", _decision(b.batch_id, T0 + timedelta(days=i)).to_json())
    store.put_json("releases/v2026.12.10.json", _release("v2026.12.10", T0 + timedelta(days=10)).to_json())
    store.put_json("runs/r00/summary.json", RunSummary(run_id="r00", finished_at=T0).to_json())
    ledger = Ledger(store, layout)  # type: ignore[arg-type]
    assert [b.batch_id for b in ledger.open_batches()] == ["r28.shard-00000", "r29.shard-00000"]
    assert ledger.latest_release().tag == "v2026.12.10"  # type: ignore[union-attr]
    assert [c.batch_id for c in ledger.decided_since_release()] == [f"r{i:02d}.shard-00000" for i in range(29, 10, -1)]
    assert [r.run_id for r in ledger.view().runs] == ["r00"]
    for prefix in ("batches", "consensus", "releases", "runs"):
        assert store.exists(f"{prefix}/_index/built.json")
    store.reset()
    again = Ledger(store, layout)  # type: ignore[arg-type]
    assert [b.batch_id for b in again.open_batches()] == ["r28.shard-00000", "r29.shard-00000"]
    again.view()
    assert not {"batches/", "consensus/", "releases/", "runs/"} & set(store.listings)  # no full listing again
    # and the full reads still see only records, never the index objects
    assert len(again.batches()) == 30 and len(again.consensus()) == 30 and [r.run_id for r in again.runs()] == ["r00"]


def test_a_batch_record_without_the_id_bound_still_loads_and_reads_unbounded() -> None:
    """Records written before ``first_task_id`` existed load with None (their readers filter ``data.batch``
    alone); a record with the bound keeps it through the store; no task id is below 1."""
    store = MemoryStore()
    ledger = Ledger(store, StoreConfig())  # type: ignore[arg-type]
    legacy = _batch("old.shard-00000").to_json()
    del legacy["first_task_id"]
    store.put_json(ledger.batch_key("old.shard-00000"), legacy)
    old = ledger.batch("old.shard-00000")
    assert old is not None and old.first_task_id is None
    ledger.put_batch(_batch("new.shard-00000", first_task_id=4321))
    new = ledger.batch("new.shard-00000")
    assert new is not None and new.first_task_id == 4321
    assert {b.batch_id: b.first_task_id for b in ledger.open_batches()} == {"old.shard-00000": None,
                                                                             "new.shard-00000": 4321}
    with pytest.raises(ValidationError):
        _batch(first_task_id=0)
