"""Question text: literal relation wording, separately named arithmetic operands, inflect plurals."""

from __future__ import annotations

import random

import pytest

from pipelines.questions.program import Hop
from pipelines.questions.templates import plural, render

pytestmark = pytest.mark.unit

F = lambda c: Hop("find", {"category": c})


@pytest.mark.parametrize(
    ("noun", "want"),
    [("person", "people"), ("nucleus", "nuclei"), ("dining table", "dining tables"), ("mouse", "mice"),
     ("bus", "buses"), ("knife", "knives"), ("glasses", "glasses"), ("skis", "skis"), ("sheep", "sheep"),
     ("bench", "benches"), ("child", "children")],
)
def test_plurals_come_from_inflect(noun: str, want: str) -> None:
    assert plural(noun) == want


def test_relations_are_worded_literally_and_never_beneath() -> None:
    texts = set()
    for seed in range(40):
        for rel in ("left_of", "right_of", "above", "below"):
            hops = [F("cup"), Hop("extreme", {"key": "area", "order": "max"}, (0,)),
                    Hop("nearest", {"category": "dog"}, (1,)),
                    Hop("relate", {"relation": rel, "category": "cup"}, (2,)), Hop("count", {}, (3,))]
            texts.add(render(hops, random.Random(seed)))
    joined = " ".join(texts)
    assert "beneath" not in joined and " below " not in joined and " above " not in joined
    for phrase in ("further left than", "further right than", "higher up in the picture than",
                   "lower down in the picture than"):
        assert phrase in joined


def test_arithmetic_names_each_operand_separately() -> None:
    hops = [F("square"), Hop("extreme", {"key": "cx", "order": "min"}, (0,)), Hop("nearest", {"category": "circle"}, (1,)),
            Hop("relate", {"relation": "above", "category": "square"}, (2,)), Hop("count", {}, (3,)),
            Hop("count", {}, (0,)), Hop("arith", {"fn": "add"}, (5, 4))]
    text = render(hops, random.Random(0), style="nested")
    # "Let P be the number of squares in the picture, and Q be the number of squares that are ... What is P ..."
    assert "Let P be the number of squares in the picture, and Q be the number of squares that are" in text
    assert text.rstrip("?").endswith(("P plus Q", "P + Q"))


def test_colour_and_unique_phrases() -> None:
    hops = [F("cup"), Hop("filter_color", {"color": "red"}, (0,)), Hop("unique", {}, (1,)),
            Hop("same_color", {"category": "cup"}, (2,)), Hop("count", {}, (3,))]
    text = render(hops, random.Random(1), style="nested")
    assert "the red cup" in text and "other cups" in text and "same colour as" in text
