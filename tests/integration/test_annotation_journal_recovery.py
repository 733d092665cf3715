"""Nothing paid for is lost: Label Studio's database is deleted after the answers and before the decision,
and the decision and the release come out identical to those made with it.

A private Label Studio (so its database can be removed) and the session's S3 server. The nightly's stages
run through the runner (:mod:`pipelines.runner`, as the Airflow tasks call it; :mod:`tests.support.nightly`) on three sample images (the ``annotations`` backend), four
registered annotators answer through their own accounts, and the labeling DAG's ``tend`` journals what
they did. The ledger is then copied to a second bucket (the same platform state twice): bucket A decides
and releases with Label Studio alive; then Label Studio is stopped, its data folder (SQLite database)
removed, and it is started empty; bucket B decides and releases.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
import uuid
from pathlib import Path

import pytest

from pipelines.annotation import tasks as annotation_tasks
from pipelines.annotation.client import LabelStudioClient
from pipelines.annotation.simulated import answer_result
from pipelines.config import load_params
from pipelines.release.platform import release_from_store
from pipelines.runner import RunEnv
from pipelines.store import ObjectStore, safe_key
from tests.support import nightly
from tests.support.image_reader import image_reader
from tests.support.stack import annotator_accounts, register_annotators, running_label_studio

pytestmark = pytest.mark.integration


def _seed(store: ObjectStore, prefix: str) -> None:
    from hopchain_demo.samples import write_samples

    with tempfile.TemporaryDirectory() as tmp:
        coco_path = write_samples(tmp, 3)
        for f in [coco_path, *sorted((Path(tmp) / "images").iterdir())]:
            store.put_bytes(safe_key("inputs", prefix, str(f.relative_to(tmp))), f.read_bytes())


def _copy_bucket(src: ObjectStore, dst: ObjectStore) -> int:
    dst.ensure_bucket()
    n = 0
    for key in src.list(""):
        dst.put_bytes(key, src.get_bytes(key))
        n += 1
    return n


def _data_files(home: Path, name: str) -> dict[str, str]:
    data = home / "release" / name / "checkout" / "data"
    return {str(p.relative_to(data)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(data.rglob("*.parquet"))}


def test_decision_and_release_survive_losing_label_studios_database(s3_creds, s3_server, tmp_path, monkeypatch):
    tag = uuid.uuid4().hex[:8]
    monkeypatch.setenv("HOPCHAIN_PSEUDONYM_KEY", f"deployment-key-{tag}")  # the deployment's, as in production
    base = load_params(None, "demo")
    params = base.model_copy(update={
        "annotation": base.annotation.model_copy(update={"project_title": f"journal-{tag}", "handout": "parallel",
                                                         "simulated": base.annotation.simulated.model_copy(
                                                             update={"enabled": False})}),
        "release": base.release.model_copy(update={"dvc_remote_prefix": f"journal-{tag}"}),
    })
    store_a = ObjectStore(s3_creds, f"journal-a-{tag}")
    store_a.ensure_bucket()
    _seed(store_a, "in")
    with running_label_studio(tmp_path / "ls", timeout_s=240) as ls:
        creds = ls.credentials()

        def client() -> LabelStudioClient:
            return LabelStudioClient(creds["url"], creds["token"])

        env = RunEnv(params, store_a, f"nightly-{tag}", label_studio=client, image_reader=image_reader(s3_server))
        for shard in nightly.ingest(env, "in"):
            nightly.run(env, "detect", shard)
            nightly.run(env, "segment", shard)
            nightly.run(env, "questions", shard)
            annotation_tasks.push(env, shard)
        batches = env.ledger.open_batches()
        assert batches and all(b.project_id for b in batches)
        truths = {q["question_id"]: q["answer"] for b in batches
                  for q in store_a.get_table(b.questions_key, "questions").to_pylist()}
        assert len(truths) >= 2  # one accepted, one rejected
        dissent = min(truths)
        with client() as admin:
            people = annotator_accounts(admin, f"paid{tag}-", 4)
            register_annotators(env, [c for _, c in people])
            for b in batches:
                for t in admin.iter_tasks(int(b.project_id), batch=b.batch_id, fields="task_only"):
                    qid = t["data"]["question_id"]
                    for i, (_, c) in enumerate(people):  # one question gets a dissenting answer
                        wrong = i == 3 and qid == dissent
                        c.create_annotation(int(t["id"]), answer_result(float(truths[qid]) + wrong))
            for _, c in people:
                c.close()
        tended = annotation_tasks.tend(env)
        assert tended.journaled == 4 * len(truths) and not tended.integrity

        store_b = ObjectStore(s3_creds, f"journal-b-{tag}")
        assert _copy_bucket(store_a, store_b) > 0

        decided_a = annotation_tasks.decide(env, annotation_tasks.open_batches(env))
        assert decided_a.accepted and decided_a.rejected and not decided_a.pending and not decided_a.from_journal
        release_a = release_from_store(params, store_a, env.run_id, home=tmp_path / "home-a")

        # Label Studio's database is lost: stopped, its data folder removed, started empty
        ls.stop()
        shutil.rmtree(ls.data_dir)
        ls.start()
        ls.wait_healthy(240)
        with client() as fresh:
            assert fresh.find_project(params.annotation.project_title) is None

        env_b = RunEnv(params, store_b, f"nightly-{tag}", label_studio=client, image_reader=image_reader(s3_server))
        decided_b = annotation_tasks.decide(env_b, annotation_tasks.open_batches(env_b))
        release_b = release_from_store(params, store_b, env_b.run_id, home=tmp_path / "home-b")

    assert decided_b.from_journal == decided_a.batches
    for field in ("accepted", "rejected", "pending", "annotations_rejected", "annotations_uncounted"):
        assert getattr(decided_b, field) == getattr(decided_a, field), field
    for b in decided_a.batches:
        for table in ("consensus", "annotations", "annotations_detail", "rejects", "audit"):
            key = env.ledger.consensus_table_key(b, table)
            assert store_a.get_table(key).equals(store_b.get_table(key)), (b, table)
        assert env_b.ledger.decision(b).source == "journal"  # type: ignore[union-attr]
    assert release_a.accepted_digest == release_b.accepted_digest
    assert release_a.questions == release_b.questions and release_a.questions
    files_a = _data_files(tmp_path / "home-a", params.release.name)
    assert files_a and files_a == _data_files(tmp_path / "home-b", params.release.name)
    audit = store_a.get_table(env.ledger.consensus_table_key(decided_a.batches[0], "audit")).to_pylist()
    assert audit and all(r["annotator"].startswith("a-") and r["snapshot"] for r in audit)
    assert not any("@" in json.dumps(r, default=str) for r in audit)  # pseudonyms, never emails
