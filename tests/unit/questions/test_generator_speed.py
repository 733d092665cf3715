"""Issue 29 item 5: the generator's inner-loop shortcuts change nothing it emits."""

from __future__ import annotations

import random

import pytest

from pipelines.questions.generator import shuffled

pytestmark = pytest.mark.unit


def test_shuffled_is_random_shuffle_permutation_and_draws() -> None:
    for seed in range(200):
        a, b = random.Random(seed), random.Random(seed)
        for n in (0, 1, 2, 3, 5, 8, 13, 31, 100):
            items = list(range(n))
            want = list(items)
            a.shuffle(want)
            assert shuffled(b, items) == want and items == list(range(n))  # the input is not touched
            assert a.getstate() == b.getstate()  # the same draws: later choices stay the same


def test_the_stage_hands_the_frozen_heap_back_even_when_it_fails() -> None:
    import gc

    from pipelines.questions.stage import _heap_frozen

    before = gc.get_freeze_count()
    with _heap_frozen():
        assert gc.get_freeze_count() > before  # the older objects are set aside for the run
    assert gc.get_freeze_count() == before
    with pytest.raises(RuntimeError), _heap_frozen():
        raise RuntimeError("a failing stage")
    assert gc.get_freeze_count() == before
