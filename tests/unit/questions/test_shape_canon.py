"""Issue 29 item 5: the hand-written canonical shape is the degeneracy check's own, character for character,
so the cached verdict path gives the verdict of the original path."""

from __future__ import annotations

import random

import pytest

from pipelines.questions import degenerate as D
from pipelines.questions.generator import _Builder, feasible_plans, image_rng
from pipelines.questions.ops.spec import Hop, LeakageError
from pipelines.questions.shape_canon import canonical_of_shape, check_not_degenerate
from pipelines.questions.synthetic import random_scene

pytestmark = pytest.mark.unit


def _built_programs(n_scenes: int = 60) -> list[list[Hop]]:
    """Every program the builder completes on random scenes (before any check: degenerate ones too)."""
    out: list[list[Hop]] = []
    for seed in range(n_scenes):
        scene = random_scene(seed, 6 + seed % 15)
        plans = feasible_plans(scene, 3, 6, D.Margins())
        rng = image_rng(seed, scene.image_id)
        memo: dict = {}
        for _ in range(40 if plans else 0):
            plan = rng.choice(plans[rng.choice(sorted(plans))])
            hops = _Builder(scene, rng, D.Margins(), memo).build(plan)
            if hops is not None:
                out.append(hops)
    return out


def test_the_canonical_shape_is_the_degeneracy_checks_own() -> None:
    programs = _built_programs()
    assert len(programs) > 400
    shapes = set()
    for hops in programs:
        shape = D._shape_tuple(hops)
        shapes.add(shape)
        assert canonical_of_shape(shape) == D.canonical_shape(D.shape_key(hops))
    assert len(shapes) > 100  # many distinct shapes: every op and argument kind appears


def test_the_verdicts_are_the_original_paths(monkeypatch: pytest.MonkeyPatch) -> None:
    programs = random.Random(0).sample(_built_programs(30), 150)

    def verdict(check, hops):  # type: ignore[no-untyped-def]
        try:
            check(hops)
        except LeakageError as err:
            return err.reason, err.detail
        return None

    D.clear_caches()
    fast = [verdict(check_not_degenerate, h) for h in programs]
    D.clear_caches()
    slow = [verdict(D.check_not_degenerate, h) for h in programs]
    assert fast == slow and any(v is not None for v in fast) and any(v is None for v in fast)
    assert [verdict(check_not_degenerate, h) for h in programs] == slow  # warm front cache: the same
