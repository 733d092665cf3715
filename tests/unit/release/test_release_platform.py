"""The platform's cumulative release: the accepted-set fingerprint decides whether a new tag is needed; a
deployment that forbids simulated annotators refuses a release holding their answers (issue 26)."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from pipelines.config import Params, Refused, load_params
from pipelines.contracts import to_table
from pipelines.release.platform import accepted_digest, gather_tables, release_from_store, simulated_refusal
from pipelines.store.ledger import BatchRecord, ConsensusRecord, Ledger, utc_now
from tests.support.memory_store import MemoryStore

pytestmark = pytest.mark.unit


def _consensus(rows):
    return to_table([{"question_id": q, "status": st, "answers": [], "agreed_answer": a,
                      "matches_generated": True, "reason": None} for q, st, a in rows], "consensus")


def test_digest_depends_only_on_the_accepted_set() -> None:
    a = _consensus([("q1", "accepted", "3"), ("q2", "rejected", None), ("q3", "accepted", "2.5")])
    b = _consensus([("q3", "accepted", "2.5"), ("q1", "accepted", "3"), ("q4", "pending", None)])
    assert accepted_digest(a) == accepted_digest(b)  # order, rejects and pending items do not matter
    c = _consensus([("q1", "accepted", "4"), ("q3", "accepted", "2.5")])
    assert accepted_digest(c) != accepted_digest(a)  # a changed answer is a new release
    d = _consensus([("q1", "accepted", "3"), ("q3", "accepted", "2.5"), ("q5", "accepted", "1")])
    assert accepted_digest(d) != accepted_digest(a)  # a newly accepted question is a new release


# -- simulated answers (issue 26) ------------------------------------------------------------------
def _decided(store: MemoryStore, params: Params, batch: str, shard: int, sources: list[str | None]) -> None:
    """Batch ``batch`` of run ``night-1`` (shard ``shard``) decided: one accepted question per source."""
    from expectations.samples import sample_tables

    ledger = Ledger(store, params.store)  # type: ignore[arg-type]
    tables = sample_tables(n_images=len(sources), questions_per_image=1, seed=shard)
    run = ledger.run("night-1")
    manifest = pa.Table.from_pylist([{**r, "shard": shard} for r in tables["manifest"].to_pylist()])
    store.put_table(run.table("manifest", shard), manifest, "manifest")
    store.put_table(run.table("instances", shard), tables["instances"], "instances")
    store.put_table(run.table("questions", shard), tables["questions"], "questions")
    consensus = [{**row, "status": "accepted", "answers_source": source}
                 for row, source in zip(tables["consensus"].to_pylist(), sources, strict=True)]
    key = ledger.consensus_table_key(batch, "consensus")
    store.put_table(key, pa.Table.from_pylist(consensus), "consensus")
    now = utc_now()
    ledger.put_batch(BatchRecord(batch_id=batch, run_id="night-1", shard=shard, questions=len(consensus),
                                 project_id=1, status="closed", pushed_at=now, deadline=now,
                                 questions_key=run.table("questions", shard)))
    ledger.put_consensus(ConsensusRecord(batch_id=batch, run_id="night-1", decided_by="ann-1",
                                         accepted=len(consensus), rejected=0, pending=0, annotations_rejected=0,
                                         agreement_rate=1.0, decided_at=now, keys={"consensus": key}))


@pytest.fixture
def params() -> Params:
    return load_params(None, "base")


def test_a_release_with_simulated_answers_is_refused_where_the_deployment_forbids_them(
        params: Params, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from pipelines.release import registry

    store = MemoryStore()
    _decided(store, params, "b-people", 0, ["people", "people"])
    _decided(store, params, "b-sim", 1, ["simulated", "simulated", "people"])
    _decided(store, params, "b-mixed", 2, ["mixed", None])
    monkeypatch.setenv("HOPCHAIN_SIMULATED_ANNOTATORS", "forbid")
    monkeypatch.setattr(registry, "publish", lambda *a, **k: pytest.fail("published"))
    with pytest.raises(Refused) as err:
        release_from_store(params, store, "rel-1", tmp_path)  # type: ignore[arg-type]
    msg = str(err.value)
    assert msg.startswith("release refused: 3 accepted questions carry simulated answers (2 batches: b-mixed, b-sim), "
                          "and this deployment forbids simulated annotators (HOPCHAIN_SIMULATED_ANNOTATORS is not "
                          "'allow')")
    assert "\n" not in msg and not (tmp_path / "release").exists()  # refused before anything was built
    assert Ledger(store, params.store).latest_release() is None  # type: ignore[arg-type]


def test_where_simulation_is_allowed_the_release_goes_on(params: Params, monkeypatch, tmp_path: Path) -> None:
    """The demo deployment releases its simulated answers (the card then says so)."""
    from pipelines.release import registry

    store = MemoryStore()
    store.creds = None  # type: ignore[attr-defined]  # what publish is given; unused here
    _decided(store, params, "b-sim", 0, ["simulated", "simulated"])
    monkeypatch.setenv("HOPCHAIN_SIMULATED_ANNOTATORS", "allow")
    published: list[str] = []

    def publish(params, sources, **kw):
        published.append(sources.consensus)
        raise RuntimeError("stop here")

    monkeypatch.setattr(registry, "publish", publish)
    with pytest.raises(RuntimeError, match="stop here"):
        release_from_store(params, store, "rel-1", tmp_path)  # type: ignore[arg-type]
    assert len(published) == 1


def test_people_answers_are_gathered_with_their_source_and_no_refusal(params: Params) -> None:
    store = MemoryStore()
    _decided(store, params, "b1", 0, ["people", "people", None])
    simulated: dict[str, list[str]] = {}
    tables, runs, _ = gather_tables(Ledger(store, params.store), simulated)  # type: ignore[arg-type]
    assert simulated == {} and runs == ["night-1"]
    assert sorted(tables["consensus"]["answers_source"].to_pylist(), key=str) == [None, "people", "people"]


def test_the_refusal_stays_one_line_with_many_batches() -> None:
    msg = simulated_refusal({f"b{i:02d}": [f"q{i}", "q-shared"] for i in range(25)})
    assert "26 accepted questions" in msg and "(25 batches: b00, b01," in msg and "b09 and 15 more)" in msg
    assert "b10" not in msg and "\n" not in msg
