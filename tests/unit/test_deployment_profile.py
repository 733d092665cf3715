"""Issue 26 item 3: the profile belongs to the deployment. A run's conf cannot turn on simulated annotators
where the deployment forbids them; the simulation itself refuses to run there; a release of simulated
answers is refused there; the card says who answered."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from pipelines.config import ConfigError, Refused, check_deployment, load_params, simulated_allowed
from pipelines.ledger import BatchRecord, ConsensusRecord, Ledger, utc_now
from tests.support.memory_store import MemoryStore

pytestmark = pytest.mark.unit
FORBID = {"HOPCHAIN_SIMULATED_ANNOTATORS": "forbid", "HOPCHAIN_PROFILE": "gpu"}


def test_only_an_explicit_allow_allows_simulated_annotators():
    assert simulated_allowed({"HOPCHAIN_SIMULATED_ANNOTATORS": "allow"})
    for value in ({}, {"HOPCHAIN_SIMULATED_ANNOTATORS": ""}, {"HOPCHAIN_SIMULATED_ANNOTATORS": "yes"}, FORBID):
        assert not simulated_allowed(value)


def test_a_run_conf_cannot_swap_people_for_simulations():
    demo = load_params(None, "demo")
    assert demo.annotation.simulated.enabled
    with pytest.raises(ConfigError, match="from the run's conf turns on simulated annotators.*profile 'gpu'"):
        check_deployment(demo, "demo", FORBID)
    with pytest.raises(ConfigError, match="which this deployment forbids"):  # the deployment's own profile
        check_deployment(demo, None, {"HOPCHAIN_PROFILE": "demo"})
    check_deployment(load_params(None, "gpu"), "gpu", FORBID)  # people: fine anywhere
    check_deployment(load_params(None, "base"), None, FORBID)
    check_deployment(demo, "demo", {"HOPCHAIN_SIMULATED_ANNOTATORS": "allow", "HOPCHAIN_PROFILE": "demo"})


def test_runtime_refuses_the_run_without_retry(monkeypatch):
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "plugins"))
    from airflow.sdk.exceptions import AirflowFailException

    from hopchain_airflow.runtime import run_params

    for k, v in FORBID.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(AirflowFailException, match="refused: profile 'demo' from the run's conf"):
        run_params({"params": {"profile": "demo"}})
    assert run_params({"params": {}}).profile == "gpu"  # the deployment's own profile


def test_the_simulation_refuses_to_run_where_it_is_forbidden(monkeypatch):
    from pipelines.flow import Flow

    monkeypatch.setenv("HOPCHAIN_SIMULATED_ANNOTATORS", "forbid")
    flow = Flow(load_params(None, "demo"), MemoryStore(), "r")  # type: ignore[arg-type]
    with pytest.raises(Refused, match="simulated annotators are forbidden"):
        flow.simulate_annotators({"batches": [], "poll_interval_s": 1, "annotators_required": 4})


def _decided_ledger(source: str) -> tuple[MemoryStore, Ledger]:
    from expectations.samples import sample_tables

    store = MemoryStore()
    params = load_params(None, "base")
    ledger = Ledger(store, params.store)  # type: ignore[arg-type]
    tables = sample_tables(n_images=2, questions_per_image=2, seed=1)
    run = ledger.run("night-1")
    manifest = pa.Table.from_pylist([{**r, "shard": 0} for r in tables["manifest"].to_pylist()])
    store.put_table(run.table("manifest", 0), manifest, "manifest")
    store.put_table(run.table("instances", 0), tables["instances"], "instances")
    store.put_table(run.table("questions", 0), tables["questions"], "questions")
    consensus = tables["consensus"].to_pylist()
    for row in consensus:
        row["answers_source"] = source
    key = ledger.consensus_table_key("b1", "consensus")
    store.put_table(key, pa.Table.from_pylist(consensus), "consensus")
    now = utc_now()
    ledger.put_batch(BatchRecord(batch_id="b1", run_id="night-1", shard=0, questions=len(consensus), project_id=1,
                                 status="closed", pushed_at=now, deadline=now,
                                 questions_key=run.table("questions", 0)))
    ledger.put_consensus(ConsensusRecord(batch_id="b1", run_id="night-1", decided_by="ann-1",
                                         accepted=len(consensus), rejected=0, pending=0, annotations_rejected=0,
                                         agreement_rate=1.0, decided_at=now, keys={"consensus": key}))
    return store, ledger


@pytest.mark.parametrize("source", ["simulated", "mixed"])
def test_a_release_of_simulated_answers_is_refused_where_they_are_forbidden(source, monkeypatch, tmp_path):
    from pipelines.release.platform import release_from_store

    store, _ = _decided_ledger(source)
    monkeypatch.setenv("HOPCHAIN_SIMULATED_ANNOTATORS", "forbid")
    with pytest.raises(Refused, match=r"4 accepted questions carry simulated answers \(batches b1\)"):
        release_from_store(load_params(None, "base"), store, "rel-1", tmp_path)  # type: ignore[arg-type]
    assert not (tmp_path / "release").exists()  # refused before anything was built


def test_people_answers_are_gathered_without_refusal():
    from pipelines.release.platform import gather_tables

    _, ledger = _decided_ledger("people")
    simulated: dict[str, int] = {}
    tables, runs, _ = gather_tables(ledger, simulated)
    assert simulated == {} and runs == ["night-1"] and set(tables["consensus"]["answers_source"].to_pylist()) == {
        "people"}


def test_the_card_says_who_answered():
    from pipelines.release.card import _integrity_lines, _source_line

    assert _source_line({"people": 10}) == "Released questions: 10 answered by people."
    assert "simulated annotators" in _source_line({"simulated": 3, "unrecorded": 1})
    lines = _integrity_lines({"audited_answers": 40, "annotators": 5, "answers_by_source": {"person": 40},
                              "uncounted": {"integrity.changed_by_other": 2}, "parts_audited": 1})
    text = "\n".join(lines)
    assert "40 counted answers" in text and "from 5 annotators" in text
    assert "| integrity.changed_by_other | 2 |" in text
