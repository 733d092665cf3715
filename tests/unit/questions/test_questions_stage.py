"""The stage end to end on contract tables, and the ``hopchain questions`` command."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pipelines.cli import main
from pipelines.config import QuestionsConfig
from pipelines.contracts import QUESTIONS, REJECTS, read_parquet, write_parquet_atomic
from pipelines.questions import program as P
from pipelines.questions.scene import scenes_from_tables
from pipelines.questions.stability import trusting_stability
from pipelines.questions.stage import run_questions
from pipelines.questions.synthetic import synthetic_tables
from tests.support.fake_vlm import FakeVLM, Solver

pytestmark = pytest.mark.unit


def test_program_stage_rows_follow_the_contract_and_re_execute(tmp_path: Path) -> None:
    inst, man = synthetic_tables(5, 12, 14)
    cfg = QuestionsConfig(per_image=4, variants=["full", "half", "single"])
    res = run_questions(inst, man, cfg)
    assert res.questions.schema.equals(QUESTIONS) and res.rejects.schema.equals(REJECTS)
    rows = res.questions.to_pylist()
    # the stage trusts its stability check with categories holding tiny or near-threshold members
    scenes = {s.image_id: trusting_stability(s) for s in scenes_from_tables(inst, man)[0]}
    assert {r["variant"] for r in rows} == {"full", "half", "single"}
    for r in rows:
        lo, hi = {"full": (3, 6), "half": (3, 5), "single": (2, 2)}[r["variant"]]
        hops = P.verify(
            P.program_from_json(r["hops"]), scenes[r["image_id"]], r["answer"], min_hops=lo, max_hops=hi
        )
        assert r["num_hops"] == len(hops) and r["pass_rate"] is None
        assert set(json.loads(r["hops"])[0]) == {"op", "args", "inputs", "kind", "value"}
    assert len({r["question_id"] for r in rows}) == len(rows)
    codes = set(res.rejects.column("code").to_pylist())
    assert "scene.low_score" in codes  # every fifth synthetic instance is below 0.5
    assert res.stats["rejects"] == dict(Counter(res.rejects.column("code").to_pylist()))
    again = run_questions(inst, man, cfg)
    assert again.questions.equals(res.questions)  # deterministic: a rerun writes the same shard


def test_vlm_stage_with_fake_backend_and_calibration(tmp_path: Path) -> None:
    inst, man = synthetic_tables(2, 3, 8, image_dir=tmp_path)
    scenes = scenes_from_tables(inst, man)[0]
    # the fake model "writes" the program generator's question for each image, plus noise
    from pipelines.questions.generator import scene_candidates

    per_image = {s.image_id: scene_candidates(s, 3, seed=1)[:1] for s in scenes}
    outputs = {}
    for s in scenes:
        good = [
            f"```json\n{json.dumps({'question': q.question, 'hops': [h.to_dict() for h in q.hops], 'answer': q.answer})}\n```"
            for q in per_image[s.image_id]
        ]
        outputs[s.image_id] = good + ["not json at all"]

    class PerImage(FakeVLM):
        def generate(self, requests, **kw):  # type: ignore[override]
            self.calls.append(requests)
            return [outputs[self.current.pop(0)] for _ in requests]

    writable = [s.image_id for s in scenes if s.n >= 2]
    backend = PerImage([])
    backend.current = list(writable)
    solver = Solver(right=2)
    solver.answers = {q.question: q.answer for qs in per_image.values() for q in qs}
    cfg = QuestionsConfig(
        writer="vlm",
        per_image=2,
        max_answer_share=1.0,
        difficulty={"enabled": True, "k": 4, "drop_at_pass_rate": 0.75},
        blind={"enabled": False},
        max_skeleton_answer_share=1.0,
        max_zero_answer_share=1.0,
        stability={"enabled": False},  # the canned programs were written without it (tested on its own)
    )
    res = run_questions(inst, man, cfg, writer_backend=backend, solver_backend=solver)
    assert res.questions.num_rows == sum(len(v) for v in per_image.values()) > 0
    assert all(g.startswith("vlm:fake:canned") for g in res.questions.column("generator").to_pylist())
    assert set(res.questions.column("pass_rate").to_pylist()) == {0.5}
    assert res.rejects.column("code").to_pylist().count("parse.no_json") == len(writable)


def test_cli_writes_questions_and_rejects(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    inst, man = synthetic_tables(9, 6, 12)
    write_parquet_atomic(inst, tmp_path / "instances.parquet")
    write_parquet_atomic(man, tmp_path / "manifest.parquet")
    out = tmp_path / "out" / "questions.parquet"
    argv = [
        "questions",
        "--instances",
        str(tmp_path / "instances.parquet"),
        "--manifest",
        str(tmp_path / "manifest.parquet"),
        "--out",
        str(out),
        "--seed",
        "5",
        "--per-image",
        "3",
    ]
    assert main(argv) == 0
    table = read_parquet(out, "questions")
    assert 0 < table.num_rows <= 18
    assert max(table.group_by("image_id").aggregate([("question_id", "count")]).column(1).to_pylist()) <= 3
    rejects = pq.read_table(tmp_path / "out" / "questions.rejects.parquet")
    assert rejects.num_rows >= 1
    stats = json.loads(capsys.readouterr().out)
    assert stats["questions"] == table.num_rows
    first = table.column("question_id").to_pylist()
    assert main(argv) == 0 and read_parquet(out, "questions").column("question_id").to_pylist() == first


def test_blind_test_drops_questions_answerable_without_the_image(tmp_path: Path) -> None:
    """A solver that answers right without the image on every other question: those are dropped
    (``leakage.blind_solvable``); with the image it is right half the time (kept, pass_rate 0.5)."""
    inst, man = synthetic_tables(4, 10, 12, image_dir=tmp_path)
    base = QuestionsConfig(per_image=3, max_answer_share=1.0, max_skeleton_answer_share=1.0)
    plain = run_questions(inst, man, base)
    texts = plain.questions.column("question").to_pylist()
    answers = dict(zip(texts, plain.questions.column("answer").to_pylist(), strict=True))
    assert len(texts) >= 6
    guessable = set(texts[::2])

    class BlindAware(Solver):
        def generate(self, requests, **kw):  # type: ignore[override]
            out = []
            for r in requests:
                q = r.prompt.split("Question: ", 1)[1].strip()
                if r.image is None:  # the blind test
                    out.append([f"Answer: {answers[q] if q in guessable else 99}"] * kw["num_samples"])
                else:
                    out.extend(super().generate([r], **kw))
            return out

    solver = BlindAware(right=2)
    solver.answers = answers
    cfg = base.model_validate(
        {**base.model_dump(), "difficulty": {"enabled": True, "k": 4, "drop_at_pass_rate": 0.75},
         "blind": {"enabled": True, "k": 2}}
    )
    res = run_questions(inst, man, cfg, solver_backend=solver)
    kept = set(res.questions.column("question").to_pylist())
    assert kept == set(texts) - guessable
    blind = [r for r in res.rejects.to_pylist() if r["code"] == "leakage.blind_solvable"]
    assert len(blind) == len(guessable) == res.stats["blind_solvable"]
