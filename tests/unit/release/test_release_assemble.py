"""Release assembly: selection, split, append-only parts, withdrawals, COCO, chat records, card and
metrics (no servers)."""

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
from pipelines.release.snapshot import ReleaseSources, SnapshotError, SourceReader, append_part, compact_parts
from pipelines.release.synthetic import make_inputs

pytestmark = pytest.mark.unit

CFG = ReleaseConfig(rows_per_shard=4, eval_fraction=0.3)


def _sources(inputs, **kw) -> ReleaseSources:
    return ReleaseSources(str(inputs.consensus), str(inputs.questions), str(inputs.instances),
                          str(inputs.manifest), **kw)


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory):
    root = tmp_path_factory.mktemp("snap")
    inputs = make_inputs(root / "src", n_images=10, questions_per_image=3, seed=3)
    append_part(_sources(inputs, run_ids=("run-a",)), root / "data", CFG, SourceReader())
    return inputs, root / "data"


@pytest.fixture(scope="module")
def built(snapshot):
    inputs, data = snapshot
    out = data.parent / "release"
    index = build_release(data, out, CFG)
    return inputs, data, out, index


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


def test_a_part_holds_shards_with_images_and_the_build_is_byte_for_byte_reproducible(built, tmp_path):
    inputs, data, out, index = built
    shards = sorted(data.glob("*/part-*.parquet"))
    assert [f.relative_to(data.parent).as_posix() for f in shards] == sorted(
        s for v in index["splits"].values() for s in v["shards"])
    assert all(f.name.startswith("part-00001-") for f in shards)  # no shard total in the name
    table = pa.concat_tables([pq.read_table(f) for f in shards])
    assert table.num_rows == inputs.accepted
    assert all(pq.read_schema(f).metadata[b"huggingface"] for f in shards)
    meta = json.loads(pq.read_schema(shards[0]).metadata[b"huggingface"])
    assert meta["info"]["features"]["images"] == [{"_type": "Image"}]  # list shorthand: datasets 3.x and 4.x+
    for images in table.column("images").to_pylist()[:5]:
        assert len(images) == 1
        assert images[0]["bytes"][:2] == b"\xff\xd8" and images[0]["path"].endswith(".jpg")  # JPEG bytes
    # image bytes are stored once: the part's contract tables carry none
    assert not any("bytes" in pq.read_schema(f).names for f in (data / "meta").rglob("*.parquet"))
    again = build_release(data, tmp_path / "again", CFG)
    assert again == index
    assert _tree_digest(tmp_path / "again") == _tree_digest(out)


def test_no_image_is_in_both_splits_and_coco_holds_only_release_images(built):
    inputs, data, out, index = built
    per_split = {}
    for split, info in index["splits"].items():
        ids = set()
        for shard in info["shards"]:
            ids |= set(pq.read_table(data.parent / shard, columns=["image_id"]).column("image_id").to_pylist())
        per_split[split] = ids
        if ids:
            coco = json.loads((out / "coco" / split / "part-00001.json").read_text())
            assert {i["hopchain_image_id"] for i in coco["images"]} == ids
            coco_ids = {i["id"] for i in coco["images"]}
            assert coco["annotations"] and all(a["image_id"] in coco_ids for a in coco["annotations"])
            assert all(set(a["segmentation"]) == {"size", "counts"} for a in coco["annotations"])
            assert all(i["file_name"].endswith(".jpg") for i in coco["images"])
    assert per_split["train"] and not per_split["train"] & per_split["eval"]


def test_rows_load_in_datasets_and_carry_the_trl_and_verl_fields_the_shipped_reward_scores(built):
    """One row layout for datasets, TRL (prompt + images) and verl (verl_prompt, images, data_source,
    reward_model, extra_info); the shipped reward agrees with every released answer."""
    datasets = pytest.importorskip("datasets")
    from pipelines.reward import REWARD_VERSION, extract_answer, score, trl_reward

    _, data, _, index = built
    ds = datasets.load_dataset("parquet", data_files={"train": str(data / "train" / "*.parquet")}, split="train")
    assert len(ds) == index["splits"]["train"]["questions"]
    row = ds[0]
    image = row["images"][0]
    image.load()  # decodes: a PIL image
    assert image.size == (row["width"], row["height"])
    turn = row["prompt"][0]
    assert turn["role"] == "user" and [p["type"] for p in turn["content"]] == ["image", "text"]
    assert turn["content"][1]["text"].startswith(row["question"]) and "Answer: <number>" in turn["content"][1]["text"]
    assert row["verl_prompt"][0]["content"].startswith("<image>" + row["question"])
    assert row["data_source"] == "hopchain" and row["reward_model"] == {"style": "rule", "ground_truth": row["answer"]}
    assert row["extra_info"]["question_id"] == row["question_id"]
    assert row["extra_info"]["reward_version"] == REWARD_VERSION
    for r in ds:
        assert extract_answer(r["answer"]) == r["answer"]  # every released answer is its own canonical form
        assert score(f"Answer: {r['answer']}", r["reward_model"]["ground_truth"]) == 1.0
    assert trl_reward(["Answer: " + a for a in ds["answer"][:4]], ds["answer"][:4]) == [1.0] * min(4, len(ds))


def test_card_and_metrics_report_counts_rates_models_and_runs(built, tmp_path):
    inputs, data, out, _ = built
    metrics = write_card(data, out, tmp_path / "card", tmp_path / "metrics.json", CFG)  # README beside card/
    consensus = pq.read_table(inputs.consensus).to_pylist()
    acc = [c for c in consensus if c["status"] == "accepted"]
    rej = [c for c in consensus if c["status"] == "rejected"]
    assert metrics["consensus"]["accepted"] == len(acc) == metrics["released"]["questions"]
    assert metrics["acceptance_rate"] == round(len(acc) / (len(acc) + len(rej)), 6)
    assert metrics["generator_precision"] == round(sum(c["matches_generated"] for c in acc) / len(acc), 6)
    assert json.loads((tmp_path / "metrics.json").read_text()) == metrics
    counted = sum(len(c["answers"]) for c in acc + rej)
    saved = sum(4 - len(c["answers"]) for c in rej if len(c["answers"]) < 4)
    assert metrics["annotation_cost"] == {"annotations": counted, "annotations_saved": saved,
                                          "annotations_per_accepted": round(counted / len(acc), 4)}
    card = (tmp_path / "README.md").read_text()
    assert f"**{counted / len(acc):.2f}** per accepted question" in card and f"; {saved} annotations saved" in card
    assert metrics["answers_source"] == {"people": len(acc)}  # who answered the released questions
    assert f"Answers: {len(acc)} questions answered by people; 0 by simulated annotators (" in card
    assert "Simulated answers" not in card
    from pipelines.reward import REWARD_VERSION
    assert REWARD_VERSION == "hopchain-reward-2" and f"**Reward: `{REWARD_VERSION}`**" in card  # the card names it
    assert "Needs trl >= 0.24, datasets >= 3.0, verl >= 0.9" in card and "load_dataset(os.getcwd())" in card
    for needle in ("hop_lengths.png", "answers.png", "categories.png", "agreement.png", "run-a",
                   "program:v1", "annotations:synthetic-v1", "Acceptance rate", "path: data/train/*.parquet"):
        assert needle in card
    for png in ("hop_lengths.png", "answers.png", "categories.png", "agreement.png"):
        assert (tmp_path / "card" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    write_card(data, out, tmp_path / "card2", tmp_path / "metrics2.json", CFG, tmp_path / "README2.md")
    assert _tree_digest(tmp_path / "card2") == _tree_digest(tmp_path / "card")
    assert (tmp_path / "README2.md").read_text() == card


def test_the_card_says_which_released_answers_came_from_the_simulation(tmp_path, monkeypatch):
    """Where the deployment allows simulated annotators (the demo), their answers are released and the card
    says so at the top and in "Who answered"; decisions made before the source was recorded are counted apart."""
    monkeypatch.setenv("HOPCHAIN_SIMULATED_ANNOTATORS", "allow")
    sim = make_inputs(tmp_path / "a", n_images=3, questions_per_image=2, seed=31, accept_rate=1.0,
                      answers_source="simulated")
    old = make_inputs(tmp_path / "b", n_images=2, questions_per_image=1, seed=32, accept_rate=1.0, answers_source=None)
    data = tmp_path / "data"
    append_part(_sources(sim), data, CFG, SourceReader())
    append_part(_sources(old), data, CFG, SourceReader())
    consensus = pq.read_table(data / "meta" / "part-00001" / "consensus.parquet")
    assert set(consensus.column("answers_source").to_pylist()) == {"simulated"}  # carried into the release
    build_release(data, tmp_path / "release", CFG)
    metrics = write_card(data, tmp_path / "release", tmp_path / "card", tmp_path / "metrics.json", CFG)
    assert metrics["answers_source"] == {"simulated": 6, "unrecorded": 2}
    card = (tmp_path / "README.md").read_text()
    assert "> **Simulated answers.** 6 released questions were answered, wholly or partly, by simulated annotators" \
        in card.split("## Contents")[0]
    assert ("Answers: 0 questions answered by people; 6 by simulated annotators; 2 decided before who answered was "
            "recorded") in card


def test_source_line_counts_people_simulated_and_mixed() -> None:
    from pipelines.release.card import _simulation_notice, _source_line

    assert _source_line({"people": 1234}).startswith("Answers: 1,234 questions answered by people; "
                                                     "0 by simulated annotators (")
    assert "; 3 partly by simulated annotators" in _source_line({"people": 1, "mixed": 3})
    assert _simulation_notice({"people": 5}) == [] and "4 released questions" in _simulation_notice(
        {"mixed": 3, "simulated": 1})[0]


def test_the_card_counts_audited_answers_and_lists_those_not_counted() -> None:
    from pipelines.release.card import _integrity_lines

    lines = _integrity_lines({"audited_answers": 40, "annotators": 5, "answers_by_source": {"person": 40},
                              "uncounted": {"integrity.changed_by_other": 2}, "parts_audited": 1})
    text = "\n".join(lines)
    assert "40 counted answers" in text and "from 5 annotators" in text
    assert "| integrity.changed_by_other | changed by another account | 2 |" in text


def test_a_release_of_simulated_answers_is_refused_where_the_deployment_forbids_them(tmp_path, monkeypatch):
    """The command line's release too (not only the platform's): nothing is written."""
    from pipelines.config import Refused

    monkeypatch.setenv("HOPCHAIN_SIMULATED_ANNOTATORS", "forbid")
    inputs = make_inputs(tmp_path / "a", n_images=3, questions_per_image=2, seed=33, accept_rate=1.0,
                         answers_source="mixed")
    with pytest.raises(Refused, match=r"^release refused: 6 accepted questions carry simulated answers \(first: "):
        append_part(_sources(inputs), tmp_path / "data", CFG, SourceReader())
    assert not list((tmp_path / "data").rglob("*.parquet"))
    people = make_inputs(tmp_path / "b", n_images=3, questions_per_image=2, seed=33, accept_rate=1.0)
    assert append_part(_sources(people), tmp_path / "data", CFG, SourceReader()).released == 6


def test_the_registry_root_loads_in_one_call(built, tmp_path):
    """The card at the root carries ``configs:``: ``datasets.load_dataset(<folder>)`` gives both splits."""
    datasets = pytest.importorskip("datasets")
    import shutil

    _, data, out, index = built
    root = tmp_path / "registry"
    shutil.copytree(data, root / "data")
    write_card(root / "data", out, root / "card", root / "metrics.json", CFG, root / "README.md")
    ds = datasets.load_dataset(str(root), cache_dir=str(tmp_path / "hf"))
    present = {s for s, v in index["splits"].items() if v["questions"]}
    assert set(ds) == present
    assert sum(len(ds[s]) for s in ds) == sum(v["questions"] for v in index["splits"].values())


def test_snapshot_rejects_altered_and_missing_images_and_refuses_when_none_is_readable(tmp_path):
    inputs = make_inputs(tmp_path / "src", n_images=4, questions_per_image=2, seed=4, accept_rate=1.0)
    files = sorted(inputs.images.iterdir())
    files[0].write_bytes(files[0].read_bytes() + b"tampered")
    files[1].unlink()
    summary = append_part(_sources(inputs), tmp_path / "data", CFG, SourceReader())
    assert summary.images == 2 and summary.released == 4
    meta = tmp_path / "data" / "meta" / "part-00001"
    codes = pq.read_table(meta / "rejects.parquet").column("code").to_pylist()
    assert sorted(set(codes)) == ["release.image_altered", "release.image_unavailable"]
    kept = set(pq.read_table(meta / "instances.parquet").column("image_id").to_pylist())
    assert len(kept) == 2
    index = build_release(tmp_path / "data", tmp_path / "release", CFG)
    assert index["rejected"] == 2 + 4  # the two images, and their four questions: counted, not lost
    for f in files[2:]:
        f.unlink()
    with pytest.raises(SnapshotError, match="none of the 4 images"):
        append_part(_sources(inputs), tmp_path / "data2", CFG, SourceReader())


def test_images_from_a_folder_are_found_by_file_name(tmp_path):
    inputs = make_inputs(tmp_path / "src", n_images=3, questions_per_image=1, seed=6, accept_rate=1.0)
    moved = tmp_path / "elsewhere"
    inputs.images.rename(moved)
    assert append_part(_sources(inputs, images_from=str(moved)), tmp_path / "data", CFG, SourceReader()).images == 3


def _decide_again(inputs, folder, changes: dict[str, str]):
    """The same inputs with some questions decided again (``question_id -> status``)."""
    rows = pq.read_table(inputs.consensus).to_pylist()
    for r in rows:
        if r["question_id"] in changes:
            r["status"] = changes[r["question_id"]]
            r["agreed_answer"] = r["agreed_answer"] if r["status"] == "accepted" else None
            r["reason"] = "re-annotated"
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(to_table(rows, "consensus"), folder / "consensus.parquet")
    return ReleaseSources(str(folder / "consensus.parquet"), str(inputs.questions), str(inputs.instances),
                          str(inputs.manifest))


def test_a_second_part_adds_files_and_leaves_every_earlier_file_byte_identical(tmp_path):
    first = make_inputs(tmp_path / "a", n_images=8, questions_per_image=3, seed=11)
    data = tmp_path / "data"
    append_part(_sources(first), data, CFG, SourceReader())
    build_release(data, tmp_path / "release", CFG)
    before = {**_tree_digest(data), **{f"release/{k}": v for k, v in _tree_digest(tmp_path / "release").items()}}
    assert append_part(_sources(first), data, CFG, SourceReader()).part == 0  # nothing new: no part
    more = make_inputs(tmp_path / "b", n_images=2, questions_per_image=3, seed=12)
    summary = append_part(_sources(more), data, CFG, SourceReader())
    assert summary.part == 2 and summary.released == more.accepted
    build_release(data, tmp_path / "release", CFG)
    after = {**_tree_digest(data), **{f"release/{k}": v for k, v in _tree_digest(tmp_path / "release").items()}}
    changed = {k for k in before if after.get(k) != before[k]}
    assert changed == {"release/index.json"}  # nothing released earlier changed, only the small index
    added = set(after) - set(before)
    assert added and all("part-00002" in k for k in added)


def test_a_withdrawn_question_leaves_the_data_and_only_its_shard_is_replaced(tmp_path):
    datasets = pytest.importorskip("datasets")
    inputs = make_inputs(tmp_path / "a", n_images=10, questions_per_image=3, seed=21, accept_rate=1.0)
    data = tmp_path / "data"
    append_part(_sources(inputs), data, CFG, SourceReader())
    shards_before = _tree_digest(data)
    train = sorted((data / "train").glob("*.parquet"))
    victim = pq.read_table(train[0], columns=["question_id"]).column("question_id")[0].as_py()
    gone_image = pq.read_table(train[-1], columns=["image_id"]).column("image_id")[0].as_py()
    summary = append_part(_decide_again(inputs, tmp_path / "re", {victim: "rejected"}), data, CFG, SourceReader(),
                          withdraw_images=[gone_image])
    assert summary.part == 2 and summary.withdrawn >= 2 and summary.released == 0
    removals = pq.read_table(data / "removals.parquet").to_pylist()
    assert {r["code"] for r in removals} == {"release.withdrawn_decision", "release.withdrawn_image"}
    assert victim in {r["question_id"] for r in removals}
    after = _tree_digest(data)
    replaced = {k for k in shards_before if k not in after}
    assert replaced and all(k.endswith(".parquet") and "/part-00001-" in "/" + k for k in replaced)
    untouched = {k for k in shards_before if k in after}
    assert all(after[k] == shards_before[k] for k in untouched)
    assert len(replaced) <= 2  # only the shards that held the withdrawn questions
    ds = datasets.load_dataset("parquet", data_files={"train": str(data / "train" / "*.parquet")}, split="train")
    assert victim not in set(ds["question_id"]) and gone_image not in set(ds["image_id"])
    # compaction: every shard rewritten into one part, withdrawn questions stay out
    rows_before = len(ds) + sum(pq.read_metadata(f).num_rows for f in (data / "eval").glob("*.parquet"))
    compact = compact_parts(data, CFG)
    assert compact.part == 3 and compact.released == rows_before
    assert all("part-00003-" in f.name for f in data.glob("*/part-*.parquet"))
