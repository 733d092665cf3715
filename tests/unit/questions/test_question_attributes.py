"""Colour naming from mask pixels, the colour and uniqueness ops, and the reach rules — both sides
of every margin (docs/hop-programs.md, "Colour", "Ops", "Within a person's reach")."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from pycocotools import mask as mask_utils

from pipelines.questions import color as C
from pipelines.questions.program import ExecutionError, Hop, MarginError, ReachError, execute, hop_kinds
from pipelines.questions.scene import Scene, rle_stats, scenes_from_tables
from pipelines.segment.masks import rle_counts

pytestmark = pytest.mark.unit

RED, BLUE, WHITE = (220, 40, 40), (40, 80, 220), (250, 250, 250)


def pixels(*parts: tuple[tuple[int, int, int], int]) -> np.ndarray:
    return np.concatenate([np.tile(np.array(c, np.uint8), (n, 1)) for c, n in parts])


@pytest.mark.parametrize(
    ("rgb", "name"),
    [
        ((220, 40, 40), "red"), ((245, 140, 30), "orange"), ((235, 200, 30), "yellow"),
        ((40, 170, 60), "green"), ((40, 80, 220), "blue"), ((150, 60, 180), "purple"),
        ((240, 120, 200), "pink"), ((120, 70, 30), "brown"), ((20, 20, 20), "black"),
        ((250, 250, 250), "white"), ((128, 128, 128), "gray"),
    ],
)
def test_basic_colour_terms(rgb: tuple, name: str) -> None:
    assert C.color_of_pixels(pixels((rgb, 10))) == name


@pytest.mark.parametrize(("red", "ok"), [(60, True), (59, False)])
def test_dominant_share_at_least_0_6(red: int, ok: bool) -> None:
    # the rest split over four other terms, each far below a third of red: only the share decides
    rest = 100 - red
    others = [BLUE, WHITE, (40, 170, 60), (235, 200, 30)]
    parts = [(c, rest // 4 + (1 if i < rest % 4 else 0)) for i, c in enumerate(others)]
    px = pixels((RED, red), *parts)
    assert max(n for _, n in parts) * 3 <= red
    assert C.color_of_pixels(px) == ("red" if ok else None)


@pytest.mark.parametrize(("blue", "ok"), [(20, True), (21, False)])
def test_dominant_ratio_at_least_3_times_the_runner_up(blue: int, ok: bool) -> None:
    px = pixels((RED, 60), (BLUE, blue), (WHITE, 40 - blue))  # red's share is 0.6 either way
    shares = C.term_shares(px)
    assert shares[C.COLOR_TERMS.index("red")] == pytest.approx(0.6)
    assert C.color_of_pixels(px) == ("red" if ok else None)


def test_rle_stats_match_a_full_decode_and_refuse_corrupt_counts() -> None:
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)
    img[5:20, 10:30] = RED
    for _ in range(30):
        m = (rng.random((40, 50)) < rng.random()).astype(np.uint8)
        counts = mask_utils.encode(np.asfortranarray(m))["counts"]
        area, cx, cy, _ = rle_stats(counts, 40, 50)
        assert area == m.sum()
        if area:
            ys, xs = np.nonzero(m)
            assert cx == pytest.approx(xs.mean() + 0.5) and cy == pytest.approx(ys.mean() + 0.5)
    block = np.zeros((40, 50), np.uint8)
    block[5:20, 10:30] = 1
    counts = mask_utils.encode(np.asfortranarray(block))["counts"]
    assert rle_stats(counts, 40, 50, img)[3] == "red"
    with pytest.raises(ValueError):
        rle_counts(counts[:-1] + b"!", 40, 50)
    with pytest.raises(ValueError):
        rle_counts(counts, 40, 51)  # does not cover the mask size


def _tables(scores: list[float], areas_px: list[int], w: int = 100, h: int = 100):
    rows = []
    for i, (s, a) in enumerate(zip(scores, areas_px, strict=True)):
        m = np.zeros((h, w), np.uint8)
        side = int(np.sqrt(a))
        x0 = 5 + 30 * (i % 3)
        y0 = 5 + 30 * (i // 3)
        m[y0 : y0 + side, x0 : x0 + side] = 1
        rle = mask_utils.encode(np.asfortranarray(m))
        rows.append({"image_id": "img", "instance_id": i + 1, "category": "cup", "bbox": [x0, y0, side, side],
                     "area": int(m.sum()), "score": s, "mask_rle": rle["counts"].decode(), "mask_height": h,
                     "mask_width": w, "source": "t"})
    man = pa.Table.from_pylist([{"image_id": "img", "uri": "x", "width": w, "height": h, "format": "PNG", "shard": 0}])
    return pa.Table.from_pylist(rows), man


@pytest.mark.parametrize(("score", "countable"), [(0.29, True), (0.3, False)])
def test_near_threshold_detection_makes_its_category_uncountable(score: float, countable: bool) -> None:
    inst, man = _tables([0.9, 0.9, score], [100, 100, 100])
    (sc,), _ = scenes_from_tables(inst, man)
    assert sc.n == 2 and sc.countable("cup") is countable


@pytest.mark.parametrize(("side", "countable"), [(10, True), (9, False)])
def test_a_member_below_the_visible_size_makes_its_category_uncountable(side: int, countable: bool) -> None:
    # 0.1% of 100x100 = 10 px: a 10 px square is visible, a 9 px one is not (min_area lowered to keep it)
    inst, man = _tables([0.9, 0.9], [100, side * side if side == 10 else 9])
    (sc,), _ = scenes_from_tables(inst, man, min_area=1)
    assert sc.countable("cup") is countable


def scene(inst: list[tuple], w: int = 200, h: int = 200, colors: list | None = None) -> Scene:
    """inst = (id, category, (x, y, w, h), area, cx, cy)."""
    return Scene.from_arrays("img", w, h, *zip(*[(i[0], i[1], i[2], i[3], i[4], i[5]) for i in inst], strict=True),
                             colors=colors)


def sq(iid: int, cat: str, x: float, y: float, s: float = 10.0, area: float | None = None) -> tuple:
    return (iid, cat, (x, y, s, s), area if area is not None else s * s * 0.8, x + s / 2, y + s / 2)


F = lambda c: Hop("find", {"category": c})


def test_unique_filter_color_and_same_color() -> None:
    sc = scene([sq(1, "cup", 20, 20), sq(2, "cup", 60, 20), sq(3, "cup", 100, 20), sq(4, "dog", 150, 150),
                sq(5, "dog", 20, 150)], colors=["red", "blue", "red", "red", "green"])
    red_cups = execute([F("cup"), Hop("filter_color", {"color": "red"}, (0,)), Hop("count", {}, (1,))], sc, min_hops=1)
    assert red_cups[1].value == [1, 3] and red_cups[2].value == 2
    blue = execute([F("cup"), Hop("filter_color", {"color": "blue"}, (0,)), Hop("unique", {}, (1,)),
                    Hop("same_color", {"category": "cup"}, (2,)), Hop("count", {}, (3,))], sc, min_hops=1)
    assert blue[2].value == [2] and blue[-1].value == 0
    dog = execute([F("dog"), Hop("extreme", {"key": "cx", "order": "max"}, (0,)),
                   Hop("same_color", {"category": "cup"}, (1,)), Hop("count", {}, (2,))], sc, min_hops=1)
    assert dog[2].value == [1, 3] and dog[-1].value == 2
    with pytest.raises(ExecutionError, match="not_unique"):
        execute([F("cup"), Hop("unique", {}, (0,)), Hop("same_color", {"category": "dog"}, (1,)),
                 Hop("count", {}, (2,))], sc, min_hops=1)


def test_colour_ops_refuse_a_set_with_an_unclear_colour() -> None:
    sc = scene([sq(1, "cup", 20, 20), sq(2, "cup", 60, 20), sq(3, "dog", 150, 150)], colors=["red", None, "red"])
    with pytest.raises(MarginError, match="color_unclear"):
        execute([F("cup"), Hop("filter_color", {"color": "red"}, (0,)), Hop("count", {}, (1,))], sc, min_hops=1)
    with pytest.raises(MarginError, match="color_unclear"):
        execute([F("dog"), Hop("unique", {}, (0,)), Hop("same_color", {"category": "cup"}, (1,)),
                 Hop("count", {}, (2,))], sc, min_hops=1)


def test_hop_kinds_of_the_new_ops() -> None:
    hops = [F("cup"), Hop("filter_color", {"color": "red"}, (0,)), Hop("unique", {}, (1,)),
            Hop("same_color", {"category": "dog"}, (2,)), Hop("unique", {}, (3,)),
            Hop("relate", {"relation": "left_of", "category": "cup"}, (4,)), Hop("count", {}, (5,))]
    assert hop_kinds(hops) == ["perception", "perception", "perception", "instance_chain", "instance_chain",
                               "perception", "perception"]


PROBE = [Hop("relate", {"relation": "below", "category": "dog"}, (1,)), Hop("count", {}, (2,))]


def _expect_size_compare(sc: Scene, ok: bool) -> None:
    """The largest cup is asked (with a probe after it) when ``ok``, refused as ``size_not_whole`` else."""
    hops = [F("cup"), Hop("extreme", {"key": "area", "order": "max"}, (0,)), *PROBE]
    if ok:
        execute(hops, sc, min_hops=1)
    else:
        with pytest.raises(ReachError, match="size_not_whole"):
            execute(hops, sc, min_hops=1)


@pytest.mark.parametrize(("x", "ok"), [(2.0, True), (1.9, False)])
def test_size_superlative_refused_when_a_member_touches_the_border(x: float, ok: bool) -> None:
    sc = scene([sq(1, "cup", x, 50, 20), sq(2, "cup", 100, 50, 10), sq(3, "dog", 100, 180)])
    _expect_size_compare(sc, ok)
    # position superlatives do not need whole instances
    execute([F("cup"), Hop("extreme", {"key": "cx", "order": "min"}, (0,)), *PROBE], sc, min_hops=1)


@pytest.mark.parametrize(("overlap", "ok"), [(2.4, True), (2.5, False)])
def test_size_superlative_refused_when_a_member_may_be_hidden(overlap: float, ok: bool) -> None:
    # cup 2's 10x10 box: another box covering 24% of it passes, 25% does not
    person = (4, "person", (100 + 10 - overlap, 50, 40, 10), 300.0, 120.0, 55.0)
    sc = scene([sq(1, "cup", 20, 50, 20), sq(2, "cup", 100, 50, 10), sq(3, "dog", 100, 180), person])
    _expect_size_compare(sc, ok)


def test_no_step_returns_to_an_instance_already_named() -> None:
    sc = scene([sq(1, "cup", 20, 20, 20), sq(2, "cup", 150, 150, 10), sq(3, "dog", 40, 30)])
    hops = [F("cup"), Hop("extreme", {"key": "area", "order": "max"}, (0,)), Hop("nearest", {"category": "dog"}, (1,)),
            Hop("nearest", {"category": "cup"}, (2,)), Hop("relate", {"relation": "below", "category": "dog"}, (3,)),
            Hop("count", {}, (4,))]
    with pytest.raises(ReachError, match="revisit"):
        execute(hops, sc)


def test_a_relation_needs_a_candidate_besides_the_reference() -> None:
    sc = scene([sq(1, "cup", 20, 20, 20), sq(2, "cup", 150, 150, 10), sq(3, "dog", 40, 30)])
    hops = [F("dog"), Hop("unique", {}, (0,)), Hop("relate", {"relation": "below", "category": "dog"}, (1,)),
            Hop("count", {}, (2,))]
    with pytest.raises(ReachError, match="no_candidate"):
        execute(hops, sc, min_hops=1)


def test_uncountable_category_is_never_used() -> None:
    sc = Scene.from_arrays("img", 200, 200, [1, 2, 3], ["cup", "cup", "dog"],
                           [(20, 20, 10, 10), (100, 100, 10, 10), (50, 50, 10, 10)], [80, 80, 80],
                           [25, 105, 55], [25, 105, 55], shadow={"cup"})
    with pytest.raises(ReachError, match="uncountable_category"):
        execute([F("cup"), Hop("count", {}, (0,))], sc, min_hops=1)
