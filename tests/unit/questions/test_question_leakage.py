"""Leakage checks: values in the text, mark references, categories named, hops that need the image."""

from __future__ import annotations

import pytest

from pipelines.questions.leakage import check_needs_image, check_text, numbers_in_text
from pipelines.questions.program import Hop, LeakageError

pytestmark = pytest.mark.unit

HOPS = [
    Hop("find", {"category": "cup"}, (), value=[1, 4, 9]),
    Hop("extreme", {"key": "area", "order": "max"}, (0,), value=[4]),
    Hop("relate", {"relation": "left_of", "category": "dog"}, (1,), value=[2, 5]),
    Hop("count", {}, (2,), value=2),
]


def test_numbers_in_text_reads_digits_and_words() -> None:
    assert numbers_in_text("There are 3 cups, two dogs and 2.50 apples") == {"3", "2", "2.5"}


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("How many dogs are left of the largest cup? (2)", "leakage.answer_in_text"),
        ("How many dogs, of the two, are left of the largest cup?", "leakage.answer_in_text"),
        (
            "Of the three cups, take the largest; how many dogs are left of it?",
            "leakage.intermediate_value_in_text",
        ),
        ("How many dogs are left of cup #4?", "leakage.mark_reference"),
        ("How many dogs are left of object 4?", "leakage.mark_reference"),
        ("How many are left of the largest cup?", "leakage.category_not_in_text"),
    ],
)
def test_text_leaks_are_refused(text: str, reason: str) -> None:
    with pytest.raises(LeakageError) as err:
        check_text(text, HOPS)
    assert err.value.reason == reason


def test_clean_text_passes() -> None:
    check_text("How many dogs are to the left of the largest cup?", HOPS)


def test_hops_that_do_not_need_the_image_are_refused() -> None:
    base = [Hop("find", {"category": "cup"}), Hop("extreme", {"key": "cx", "order": "min"}, (0,))]
    with pytest.raises(LeakageError, match="rank_of_extreme"):
        check_needs_image([*base, Hop("rank", {"key": "cx", "order": "max"}, (1, 0))])
    check_needs_image([*base, Hop("rank", {"key": "cy", "order": "max"}, (1, 0))])
    with pytest.raises(LeakageError, match="arith_self"):
        check_needs_image([base[0], Hop("count", {}, (0,)), Hop("arith", {"fn": "sub"}, (1, 1))])
    with pytest.raises(LeakageError, match="repeated_hop"):
        check_needs_image(
            [base[0], Hop("count", {}, (0,)), Hop("count", {}, (0,)), Hop("arith", {"fn": "add"}, (1, 2))]
        )
