"""Ablation variants (half, single) and difficulty calibration."""

from __future__ import annotations

import math

import pytest
from PIL import Image

from pipelines.questions import program as P
from pipelines.questions.difficulty import calibrate, solver_answer
from pipelines.questions.generator import generate
from pipelines.questions.synthetic import random_scene
from pipelines.questions.variants import derive_variants, half_variant, single_variant
from tests.support.fake_vlm import Solver

pytestmark = pytest.mark.unit


def test_half_and_single_are_shorter_verified_programs_on_the_same_image() -> None:
    scenes = [random_scene(s, 16) for s in range(25)]
    by_id = {s.image_id: s for s in scenes}
    full = generate(scenes, seed=2).questions
    halves = 0
    for q in full:
        sc = by_id[q.image_id]
        h = half_variant(q, sc)
        if q.num_hops == 3:
            assert h is None
        if h is not None:
            halves += 1
            assert (
                h.variant == "half"
                and 3 <= h.num_hops <= max(3, math.ceil(q.num_hops / 2) + 1) < q.num_hops + 1
            )
            assert h.num_hops < q.num_hops
            # the half keeps a prefix of the full program
            assert P.canonical_program(h.hops[:-1]) == P.canonical_program(q.hops[: h.num_hops - 1]) or (
                P.canonical_program(h.hops) == P.canonical_program(q.hops[: h.num_hops])
            )
            P.verify(h.hops, sc, h.answer, min_hops=3, max_hops=5)
        s = single_variant(q, sc)
        assert s is not None and s.variant == "single" and s.num_hops == 2
        assert s.hops[0].args == q.hops[0].args and s.answer == str(len(q.hops[0].value))
    assert halves > len(full) // 3
    variants, _missing = derive_variants(full, by_id, ["half", "single"])
    assert len({q.question_id for q in variants}) == len(variants)
    assert {q.variant for q in variants} == {"half", "single"}


def test_solver_answer_parsing() -> None:
    assert solver_answer("Let me count: 1, 2, 3.\nAnswer: **4**") == "4"
    assert solver_answer("there are 3.0 of them") is None  # hopchain-reward-2: no explicit answer scores 0
    assert solver_answer("<think>about 3</think>\nthe answer is 3.0") == "3"
    assert solver_answer("no idea") is None


@pytest.mark.parametrize(("right", "kept"), [(5, True), (6, False), (8, False), (0, True)])
def test_calibration_stores_pass_rate_and_drops_at_six_of_eight(right: int, kept: bool) -> None:
    qs = generate([random_scene(1, 12)], seed=0, per_image=3).questions
    solver = Solver(right)
    solver.answers = {q.question: q.answer for q in qs}
    out, rejects = calibrate(
        qs, lambda _: Image.new("RGB", (8, 8)), solver, k=8, temperature=1.0, drop_at_pass_rate=0.75
    )
    assert solver.temperatures == [1.0]
    if kept:
        assert [q.pass_rate for q in out] == [right / 8] * len(qs) and rejects == []
    else:
        assert out == [] and all(
            r.code == "difficulty.too_easy" and r.detail.startswith(f"pass rate {right}/8") for r in rejects
        )


def test_solver_failure_keeps_questions_unscored_with_reject_rows() -> None:
    class Broken(Solver):
        def generate(self, *a, **k):  # type: ignore[override]
            raise RuntimeError("CUDA out of memory")

    qs = generate([random_scene(2, 14), random_scene(3, 14)], seed=0, per_image=1).questions
    assert len(qs) == 2
    out, rejects = calibrate(qs, lambda _: Image.new("RGB", (8, 8)), Broken(0))
    assert [q.pass_rate for q in out] == [None, None]
    assert [r.code for r in rejects] == ["difficulty.solver_error", "difficulty.solver_error"]
