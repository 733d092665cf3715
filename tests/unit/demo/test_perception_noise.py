"""The perception-noise model: seeded, its rates hold on a large sample, and each kind of error happens."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pyarrow as pa
import pytest

from hopchain_demo.perception_noise import NoiseRates, perceive
from pipelines.contracts import to_table
from pipelines.segment.masks import encode_mask

pytestmark = pytest.mark.unit

W, H = 240, 160
# (x0, y0, side): ids 1-2 small (< 32² px), 3-4 medium, 5 large (> 96² px); far apart, no box overlaps
LAYOUT = {1: (180, 10, 16), 2: (180, 60, 16), 3: (120, 10, 40), 4: (120, 100, 40), 5: (5, 5, 100)}
SIZE = {1: "small", 2: "small", 3: "medium", 4: "medium", 5: "large"}


def _row(image_id: str, iid: int, category: str, x: int, y: int, w: int, h: int) -> dict:
    mask = np.zeros((H, W), bool)
    mask[y:y + h, x:x + w] = True
    enc = encode_mask(mask)
    return {"image_id": image_id, "instance_id": iid, "category": category, "bbox": list(enc.bbox),
            "area": enc.area, "score": 1.0, "mask_rle": enc.counts, "mask_height": H, "mask_width": W,
            "source": "annotations:test"}


def _sample(images: int) -> pa.Table:
    rows = [_row(f"img{k:04d}", iid, "horse", x, y, s, s)
            for k in range(images) for iid, (x, y, s) in LAYOUT.items()]
    return to_table(rows, "instances")


def test_the_noise_is_seeded() -> None:
    table = _sample(40)
    a, b, c = perceive(table, seed=3), perceive(table, seed=3), perceive(table, seed=4)
    assert a.instances.equals(b.instances) and a.events == b.events
    assert not a.instances.equals(c.instances)


def test_the_rates_hold_on_a_large_sample() -> None:
    rates = NoiseRates()
    images = 600
    out = perceive(_sample(images), rates, seed=0)
    lost = {(e.image_id, o): e.kind for e in out.events if e.kind in ("miss", "near_miss") for o in e.objects}
    for size, recall in (("small", rates.recall_small), ("medium", rates.recall_medium),
                         ("large", rates.recall_large)):
        ids = [i for i, s in SIZE.items() if s == size]
        n = images * len(ids)
        kinds = Counter(k for (_, o), k in lost.items() if o in ids)
        kept = 1 - (kinds["miss"] + kinds["near_miss"]) / n
        assert kept == pytest.approx(recall, abs=0.05), size
        assert kinds["near_miss"] / n == pytest.approx((1 - recall) * rates.near_miss_share, abs=0.05), size
    detected = images * len(LAYOUT) - sum(k == "miss" for k in lost.values())
    confusions = [e for e in out.events if e.kind == "confusion"]
    assert len(confusions) / detected == pytest.approx(rates.confusion, abs=0.015)
    assert all(e.categories == ("horse", "cow") for e in confusions)
    scores = np.asarray(out.instances.column("score").to_pylist())
    kept, near = scores[scores >= rates.min_score], scores[scores < rates.min_score]
    assert kept.max() <= rates.max_score and near.min() >= rates.shadow_score
    assert kept.std() > 0.05  # a spread of scores, not one value
    assert (near.shape[0] / scores.shape[0]) > 0.1  # near misses in the output: the scene's near_misses


def test_scores_fall_with_size() -> None:
    out = perceive(_sample(300), seed=1)
    kept = [r for r in out.instances.to_pylist() if r["score"] >= 0.5]
    small = [r["score"] for r in kept if r["area"] < 32 * 32]
    large = [r["score"] for r in kept if r["area"] > 96 * 96]
    assert np.mean(small) < np.mean(large) - 0.1


def test_occluded_objects_are_found_less_often() -> None:
    rates = NoiseRates()
    assert rates.recall(2000, True) == pytest.approx(rates.recall_medium * rates.occluded_recall)
    assert rates.recall(500, False) < rates.recall(2000, False) < rates.recall(20000, False)


def test_touching_pairs_merge_and_large_ones_split() -> None:
    rows = [_row("a", 1, "cup", 10, 10, 40, 40), _row("a", 2, "cup", 50, 10, 40, 40),  # touching
            _row("b", 1, "sofa", 10, 10, 110, 110)]
    sure = NoiseRates(recall_small=1, recall_medium=1, recall_large=1, occluded_recall=1, confusion=0, merge=1,
                      split=1, edge_change=0)
    out = perceive(to_table(rows, "instances"), sure, seed=0)
    kinds = Counter((e.image_id, e.kind) for e in out.events)
    assert kinds == {("a", "merge"): 1, ("b", "split"): 1}
    per_image = Counter(out.instances.column("image_id").to_pylist())
    assert per_image == {"a": 1, "b": 2}
    merged = next(r for r in out.instances.to_pylist() if r["image_id"] == "a")
    assert merged["area"] == 2 * 40 * 40


def test_confusion_falls_back_to_another_category_of_the_image() -> None:
    rows = [_row("a", 1, "sock pack", 10, 10, 40, 40), _row("a", 2, "wipes pack", 100, 10, 40, 40)]
    always = NoiseRates(recall_small=1, recall_medium=1, recall_large=1, confusion=1, confusion_trace=0,
                        edge_change=0)
    out = perceive(to_table(rows, "instances"), always, seed=0)
    assert sorted(out.instances.column("category").to_pylist()) == ["sock pack", "wipes pack"]
    assert {e.categories for e in out.events} == {("sock pack", "wipes pack"), ("wipes pack", "sock pack")}


def test_a_traced_confusion_leaves_the_true_label_just_under_the_threshold_on_the_same_box() -> None:
    rows = [_row("a", 1, "sock pack", 10, 10, 40, 40), _row("a", 2, "wipes pack", 100, 10, 40, 40)]
    traced = NoiseRates(recall_small=1, recall_medium=1, recall_large=1, confusion=1, confusion_trace=1,
                        edge_change=0)
    out = perceive(to_table(rows, "instances"), traced, seed=0).instances.to_pylist()
    sure = [r for r in out if r["score"] >= traced.min_score]
    second = [r for r in out if r["score"] < traced.min_score]
    assert len(sure) == len(second) == 2
    for r in second:
        assert traced.shadow_score <= r["score"] < traced.min_score
        twin = next(s for s in sure if s["bbox"] == r["bbox"])
        assert twin["category"] != r["category"]
