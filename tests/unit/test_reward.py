"""The shipped reward: the number a completion gives, against the release's canonical answer."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipelines.reward import REWARD_VERSION, canonical_number, compute_score, extract_answer, score, trl_reward

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(("completion", "number"), [
    ("3", "3"),
    ("3.0", "3"),
    ("Answer: 3.", "3"),
    ("Answer: 3", "3"),
    ("answer = 12", "12"),
    ("**Answer:** 7", "7"),
    ("There are 2 cups and 3 bowls, so 5 in all.\nAnswer: 5 objects", "5"),
    ("first I thought Answer: 4, but recounting... Answer: 6", "6"),  # the last Answer line wins
    ("The total is 1,250.", "1250"),
    ("Answer: -2", "-2"),
    ("Answer: 2.50", "2.5"),
    ("Answer: three", "3"),
    ("Answer: Twenty", "20"),
    ("I count 4 cups", "4"),  # a trailing unit
    ("three cups", None),  # a word is a number only after "Answer:"
    ("I cannot tell.", None),
    ("", None),
    (None, None),
])
def test_formats_people_write(completion: str | None, number: str | None) -> None:
    assert extract_answer(completion) == number


def test_score_compares_canonical_numbers() -> None:
    assert score("Answer: 3.0", "3") == 1.0
    assert score("Answer: 3", 3) == 1.0
    assert score("Answer: 4", "3") == 0.0
    assert score("no number here", "3") == 0.0
    assert score("Answer: 3", "not a number") == 0.0
    assert compute_score("hopchain", "Answer: 2.5", "2.50") == 1.0
    assert trl_reward(["Answer: 1", [{"role": "assistant", "content": "so Answer: 2"}]], ["1", "3"]) == [1.0, 0.0]
    assert REWARD_VERSION.startswith("hopchain-reward-")


@given(st.integers(min_value=-10**6, max_value=10**6))
def test_every_integer_written_plainly_scores_against_itself(n: int) -> None:
    for text in (f"{n}", f"Answer: {n}", f"Answer: {n}.", f"reasoning...\nAnswer: {n} items", f"{n}.0"):
        assert extract_answer(text) == canonical_number(n), text
        assert score(text, str(n)) == 1.0


@given(st.decimals(min_value=-1000, max_value=1000, places=2, allow_nan=False, allow_infinity=False))
def test_decimals_agree_with_canonical_number(d) -> None:  # type: ignore[no-untyped-def]
    assert extract_answer(f"Answer: {d}") == canonical_number(str(d))


@given(st.integers(min_value=0, max_value=50), st.integers(min_value=0, max_value=50))
def test_a_wrong_number_never_scores(got: int, want: int) -> None:
    assert score(f"Answer: {got}", str(want)) == (1.0 if got == want else 0.0)
