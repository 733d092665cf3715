"""The ledger: one key layout (from params.store) and typed records that refuse what they do not know."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from pipelines.config import StoreConfig
from pipelines.ledger import BatchRecord, ConsensusRecord, Ledger, ReleaseRecord, RunSummary, batch_id_for
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
