"""Release assembly: selection, split, shards, COCO, chat records, card and metrics (no servers)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.config import ReleaseConfig
from pipelines.contracts import to_table
from pipelines.release.assemble import plan_shards, select_rows, split_of
from pipelines.release.build import build_release
from pipelines.release.card import write_card
from pipelines.release.snapshot import ReleaseSources, SnapshotError, SourceReader, snapshot_inputs
from pipelines.release.synthetic import make_inputs

pytestmark = pytest.mark.unit

CFG = ReleaseConfig(rows_per_shard=4, eval_fraction=0.3)


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory):
    root = tmp_path_factory.mktemp("snap")
    inputs = make_inputs(root / "src", n_images=10, questions_per_image=3, seed=3)
    src = ReleaseSources(str(inputs.consensus), str(inputs.questions), str(inputs.instances),
                         str(inputs.manifest), run_ids=("run-a",))
    snapshot_inputs(src, root / "inputs", CFG, SourceReader())
    return inputs, root / "inputs"


@pytest.fixture(scope="module")
def built(snapshot, tmp_path_factory):
    inputs, snap = snapshot
    out = tmp_path_factory.mktemp("rel") / "release"
    index = build_release(snap, out, CFG)
    return inputs, snap, out, index


def _tree_digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.md5(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_split_is_by_image_stable_and_near_the_fraction():
    ids = [hashlib.sha256(str(i).encode()).hexdigest() for i in range(4000)]
    splits = [split_of(i, "salt", 0.1) for i in ids]
    assert splits == [split_of(i, "salt", 0.1) for i in ids]
    assert 0.08 < splits.count("eval") / len(ids) < 0.12
    assert all(split_of(i, "salt", 0.0) == "train" for i in ids[:100])
    assert [split_of(i, "other", 0.1) for i in ids] != splits  # the salt reshuffles


def test_select_rows_releases_accepted_questions_with_the_human_answer_and_rejects_the_rest():
    q = lambda qid, img: {"question_id": qid, "image_id": img, "question": f"q {qid}", "answer": "7",
                          "num_hops": 3, "hops": "[]", "generator": "program:v1", "variant": "full"}
    c = lambda qid, status, agreed: {"question_id": qid, "status": status, "answers": [agreed] * 4,
                                     "agreed_answer": agreed, "matches_generated": agreed == "7", "reason": None}
    questions = to_table([q("a", "img1"), q("b", "img2"), q("c", "img3"), q("d", "img1"), q("e", "imgX")],
                         "questions")
    consensus = to_table([c("a", "accepted", "3.0"), c("b", "accepted", "4"), c("c", "accepted", "5"),
                          c("d", "rejected", None), c("e", "accepted", "1"), c("zz", "accepted", "2"),
                          c("n", "accepted", "many")], "consensus")
    manifest = to_table([{"image_id": i, "uri": f"/x/{i}.jpg", "width": 8, "height": 6, "format": "jpeg",
                          "shard": 0} for i in ("img1", "img2", "img3")], "manifest")
    rows, rejects = select_rows(consensus, questions, manifest, {"img1", "img2"}, salt="s", eval_fraction=0.5)
    assert {r.question_id: r.answer for r in rows} == {"a": "3", "b": "4"}  # canonical human answers
    reasons = {r.item_id: (r.code, r.detail) for r in rejects}
    assert reasons == {
        "c": ("release.image_unavailable", "image bytes unavailable in the snapshot"),
        "e": ("release.image_not_in_manifest", "image missing from the manifest"),
        "zz": ("release.question_missing", "accepted question missing from the questions table"),
        "n": ("release.question_missing", "accepted question missing from the questions table"),
    }
    assert all(r.stage == "release" for r in rejects)
    assert rows == sorted(rows, key=lambda r: (["train", "eval"].index(r.split), r.image_id, r.question_id))


def test_non_numeric_agreed_answer_is_a_reject():
    questions = to_table([{"question_id": "a", "image_id": "i", "question": "q", "answer": "1", "num_hops": 3,
                           "hops": "[]", "generator": "g", "variant": "full"}], "questions")
    consensus = to_table([{"question_id": "a", "status": "accepted", "answers": ["x"] * 4, "agreed_answer": "x",
                           "matches_generated": False, "reason": None}], "consensus")
    manifest = to_table([{"image_id": "i", "uri": "u", "width": 1, "height": 1, "format": "png", "shard": 0}],
                        "manifest")
    rows, rejects = select_rows(consensus, questions, manifest, {"i"}, salt="s", eval_fraction=0)
    assert rows == [] and (rejects[0].code, rejects[0].detail, rejects[0].raw) == (
        "release.answer_not_numeric", "agreed_answer is not a number", "x")


def test_plan_shards_respects_rows_per_shard_and_caps_the_file_count():
    assert plan_shards(10, 4, 100) == [(0, 4), (4, 8), (8, 10)]
    assert plan_shards(0, 4, 100) == []
    plan = plan_shards(1_000_000, 100, 256)
    assert len(plan) <= 256 and plan[-1][1] == 1_000_000
    assert all(b - a <= 3907 for a, b in plan)


def test_build_writes_packed_shards_with_images_and_is_byte_for_byte_reproducible(built, snapshot, tmp_path):
    inputs, snap, out, index = built
    shards = sorted((out / "data").glob("*.parquet"))
    assert len(shards) == sum(len(s["shards"]) for s in index["splits"].values())
    table = pa.concat_tables([pq.read_table(f) for f in shards])
    assert table.num_rows == inputs.accepted
    assert all(pq.read_schema(f).metadata[b"huggingface"] for f in shards)
    meta = json.loads(pq.read_schema(shards[0]).metadata[b"huggingface"])
    assert meta["info"]["features"]["image"] == {"_type": "Image"}
    for img in table.column("image").to_pylist()[:5]:
        assert img["bytes"][:2] == b"\xff\xd8" and img["path"].endswith(".jpg")  # JPEG bytes
    again = build_release(snap, tmp_path / "again", CFG)
    assert again == index
    assert _tree_digest(tmp_path / "again") == _tree_digest(out)


def test_no_image_is_in_both_splits_and_coco_holds_only_release_images(built):
    inputs, _, out, index = built
    per_split = {}
    for split, info in index["splits"].items():
        ids = set()
        for shard in info["shards"]:
            ids |= set(pq.read_table(out / shard, columns=["image_id"]).column("image_id").to_pylist())
        per_split[split] = ids
        if ids:
            coco = json.loads((out / "coco" / f"instances_{split}.json").read_text())
            assert {i["hopchain_image_id"] for i in coco["images"]} == ids
            coco_ids = {i["id"] for i in coco["images"]}
            assert coco["annotations"] and all(a["image_id"] in coco_ids for a in coco["annotations"])
            assert all(set(a["segmentation"]) == {"size", "counts"} for a in coco["annotations"])
    assert per_split["train"] and not per_split["train"] & per_split["eval"]


def test_chat_records_reference_their_shard_row_and_carry_numeric_answers(built):
    _, _, out, index = built
    records = [json.loads(line) for line in (out / "chat" / "train.jsonl").read_text().splitlines()]
    assert len(records) == index["splits"]["train"]["questions"]
    for rec in records[:6]:
        shard, row = rec["image"].split("#")
        stored = pq.read_table(out / shard).slice(int(row), 1).to_pylist()[0]
        assert stored["question_id"] == rec["id"] and stored["image_id"] == rec["image_id"]
        assert isinstance(rec["answer"], int) and str(rec["answer"]) == stored["answer"]
        assert rec["messages"][0]["content"][1]["text"] == stored["question"]


def test_card_and_metrics_report_counts_rates_models_and_runs(built, tmp_path):
    inputs, snap, out, _ = built
    metrics = write_card(snap, out, tmp_path / "card", tmp_path / "metrics.json", CFG)
    consensus = pq.read_table(inputs.consensus).to_pylist()
    acc = [c for c in consensus if c["status"] == "accepted"]
    rej = [c for c in consensus if c["status"] == "rejected"]
    assert metrics["consensus"]["accepted"] == len(acc) == metrics["released"]["questions"]
    assert metrics["acceptance_rate"] == round(len(acc) / (len(acc) + len(rej)), 6)
    assert metrics["generator_precision"] == round(sum(c["matches_generated"] for c in acc) / len(acc), 6)
    assert json.loads((tmp_path / "metrics.json").read_text()) == metrics
    card = (tmp_path / "card" / "README.md").read_text()
    for needle in ("hop_lengths.png", "answers.png", "categories.png", "agreement.png", "run-a",
                   "program:v1", "annotations:synthetic-v1", "Acceptance rate"):
        assert needle in card
    for png in ("hop_lengths.png", "answers.png", "categories.png", "agreement.png"):
        assert (tmp_path / "card" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    write_card(snap, out, tmp_path / "card2", tmp_path / "metrics2.json", CFG)
    assert _tree_digest(tmp_path / "card2") == _tree_digest(tmp_path / "card")


def test_snapshot_rejects_altered_and_missing_images_and_refuses_when_none_is_readable(tmp_path):
    inputs = make_inputs(tmp_path / "src", n_images=4, questions_per_image=2, seed=4, accept_rate=1.0)
    files = sorted(inputs.images.iterdir())
    files[0].write_bytes(files[0].read_bytes() + b"tampered")
    files[1].unlink()
    src = ReleaseSources(str(inputs.consensus), str(inputs.questions), str(inputs.instances), str(inputs.manifest))
    summary = snapshot_inputs(src, tmp_path / "inputs", CFG, SourceReader())
    assert summary["images"] == 2 and summary["image_rejects"] == 2
    codes = sorted(pq.read_table(tmp_path / "inputs" / "rejects.parquet").column("code").to_pylist())
    assert codes == ["release.image_altered", "release.image_unavailable"]
    kept = set(pq.read_table(tmp_path / "inputs" / "instances.parquet").column("image_id").to_pylist())
    assert len(kept) == 2
    index = build_release(tmp_path / "inputs", tmp_path / "release", CFG)
    assert index["rejected"] == 4  # their questions are counted, not silently lost
    for f in files[2:]:
        f.unlink()
    with pytest.raises(SnapshotError, match="none of the 4 images"):
        snapshot_inputs(src, tmp_path / "inputs2", CFG, SourceReader())


def test_images_from_a_folder_are_found_by_file_name(tmp_path):
    inputs = make_inputs(tmp_path / "src", n_images=3, questions_per_image=1, seed=6, accept_rate=1.0)
    moved = tmp_path / "elsewhere"
    inputs.images.rename(moved)
    src = ReleaseSources(str(inputs.consensus), str(inputs.questions), str(inputs.instances), str(inputs.manifest),
                         images_from=str(moved))
    assert snapshot_inputs(src, tmp_path / "inputs", CFG, SourceReader())["images"] == 3
