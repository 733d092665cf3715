"""The Qwen3-VL answer parser on realistic answers."""

from __future__ import annotations

import json

import pytest

from pipelines.detect.parser import normalize_label, parse_grounding

pytestmark = pytest.mark.unit

FENCED = """```json
[
\t{"bbox_2d": [135, 114, 516, 672], "label": "chair"},
\t{"bbox_2d": [600, 50, 900, 400], "label": "Potted Plants"}
]
```"""


def test_fenced_json_on_a_non_square_image() -> None:
    res = parse_grounding(FENCED, width=640, height=480)
    assert res.ok and [o.category for o in res.objects] == ["chair", "potted plant"]
    x, y, w, h = res.objects[0].bbox
    assert (x, y) == pytest.approx((135 / 1000 * 640, 114 / 1000 * 480))
    assert (x + w, y + h) == pytest.approx((516 / 1000 * 640, 672 / 1000 * 480))


def test_prose_around_the_json_and_a_trailing_comma() -> None:
    text = (
        "Sure! Here are the objects I found in the image:\n"
        '[{"bbox_2d": [10, 20, 300, 400], "label": "dog"},\n {"bbox_2d": [500, 500, 700, 900], "label": "the cats"},]\n'
        "Let me know if you need anything else."
    )
    res = parse_grounding(text, width=1000, height=500)
    assert res.ok and [(o.category, o.bbox) for o in res.objects] == [
        ("dog", pytest.approx((10.0, 10.0, 290.0, 190.0))),
        ("cat", pytest.approx((500.0, 250.0, 200.0, 200.0))),
    ]


def test_coordinates_at_the_grid_edges_and_beyond_are_clamped() -> None:
    text = '[{"bbox_2d": [0, 0, 1000, 1000], "label": "table"}, {"bbox_2d": [900, -5, 1013, 1000], "label": "lamp"}]'
    res = parse_grounding(text, width=333, height=201)
    assert res.objects[0].bbox == pytest.approx((0.0, 0.0, 333.0, 201.0))
    x, y, w, h = res.objects[1].bbox
    assert x == pytest.approx(299.7) and y == 0.0 and x + w == pytest.approx(333.0) and y + h == 201.0


def test_malformed_json_is_an_error_keeping_nothing() -> None:
    res = parse_grounding('```json\n[{"bbox_2d": [1, 2, 3, "label": cat\n```', width=10, height=10)
    assert not res.ok and res.objects == []


def test_truncated_answer_keeps_its_complete_objects() -> None:
    text = '```json\n[{"bbox_2d": [0, 0, 500, 500], "label": "cup"}, {"bbox_2d": [500, 500, 9'
    res = parse_grounding(text, width=100, height=100)
    assert res.ok and [o.category for o in res.objects] == ["cup"]


def test_empty_list_is_a_valid_answer_with_no_objects() -> None:
    res = parse_grounding("```json\n[]\n```", width=10, height=10)
    assert res.ok and res.objects == []


def test_duplicates_merged_and_bad_items_dropped() -> None:
    text = """[
      {"bbox_2d": [100, 100, 200, 200], "label": "apple"},
      {"bbox_2d": [100, 100, 200, 201], "label": "Apples"},
      {"bbox_2d": [300, 300, 400, 400], "label": "apple"},
      {"bbox_2d": [5, 5, 5, 90], "label": "stick"},
      {"bbox_2d": [1, 2, 3], "label": "broken"},
      {"bbox_2d": [1, 2, 30, 40]}
    ]"""
    res = parse_grounding(text, width=1000, height=1000)
    assert [o.category for o in res.objects] == ["apple", "apple"]
    assert [(d.index, d.code) for d in res.dropped] == [
        (3, "item.empty_box"), (4, "item.bad_box"), (5, "item.no_label")]
    assert json.loads(res.dropped[1].raw) == {"bbox_2d": [1, 2, 3], "label": "broken"}


def test_every_unusable_item_is_dropped_with_its_code() -> None:
    text = '[17, {"bbox_2d": ["a", 0, 1, 1], "label": "cup"}, {"bbox_2d": [0, 0, 10, 10], "label": "cup"}]'
    res = parse_grounding(text, width=100, height=100)
    assert [o.category for o in res.objects] == ["cup"]
    assert [(d.index, d.code, d.raw) for d in res.dropped] == [
        (0, "item.not_an_object", "17"),
        (1, "item.bad_box", '{"bbox_2d": ["a", 0, 1, 1], "label": "cup"}'),
    ]
    assert all(d.detail for d in res.dropped)


def test_categories_only_answer_and_max_categories() -> None:
    res = parse_grounding('Categories: ["Dogs", "a frisbee", "people", "dogs", "grass"]', 10, 10, max_categories=3)
    assert [(o.category, o.bbox) for o in res.objects] == [("dog", None), ("frisbee", None), ("person", None)]
    assert [(d.index, d.code, d.raw) for d in res.dropped] == [(4, "item.over_max_categories", "grass")]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("Boxes", "box"), ("knives", "knife"), ("Wine Glasses", "wine glass"), ("bus", "bus"),
     ("berries", "berry"), ("sheep", "sheep"), ("  Two  red_apples. ", "red apple"), ("benches", "bench")],
)
def test_normalize_label(raw: str, expected: str) -> None:
    assert normalize_label(raw) == expected
