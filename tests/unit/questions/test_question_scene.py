"""Scenes from the contract tables: RLE decoding, centroids at pixel centres, filters with reasons."""

from __future__ import annotations

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from pipelines.contracts import to_table
from pipelines.questions.scene import scenes_from_tables
from pipelines.questions.synthetic import synthetic_tables

pytestmark = pytest.mark.unit


def _row(
    iid: int, mask: np.ndarray, *, score: float = 0.9, cat: str = "Cup", bbox=None, image_id: str = "img"
) -> dict:
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    ys, xs = np.nonzero(mask)
    box = bbox or [
        float(xs.min()),
        float(ys.min()),
        float(xs.max() - xs.min() + 1),
        float(ys.max() - ys.min() + 1),
    ]
    return {
        "image_id": image_id,
        "instance_id": iid,
        "category": cat,
        "bbox": box,
        "area": int(mask.sum()),
        "score": score,
        "mask_rle": rle["counts"].decode(),
        "mask_height": mask.shape[0],
        "mask_width": mask.shape[1],
        "source": "test",
    }


def _manifest(w: int = 40, h: int = 30, image_id: str = "img") -> object:
    return to_table(
        [{"image_id": image_id, "uri": "x.png", "width": w, "height": h, "format": "PNG", "shard": 0}],
        "manifest",
    )


def test_centroid_is_mean_pixel_index_plus_half_and_box_edges_from_coco_box() -> None:
    m = np.zeros((30, 40), bool)
    m[10:14, 20:30] = True  # rows 10..13, cols 20..29 -> centroid (25.0, 12.0) at pixel centres
    scenes, rejects = scenes_from_tables(to_table([_row(7, m)], "instances"), _manifest())
    (sc,) = scenes
    assert rejects == []
    assert sc.ids.tolist() == [7] and sc.categories == ("cup",)
    assert (sc.cx[0], sc.cy[0], sc.area[0]) == (25.0, 12.0, 40.0)
    assert (sc.x0[0], sc.y0[0], sc.x1[0], sc.y1[0]) == (20.0, 10.0, 30.0, 14.0)


def test_low_score_small_area_and_mismatched_masks_are_left_out_with_reasons() -> None:
    big = np.zeros((30, 40), bool)
    big[0:8, 0:8] = True  # 64 px
    small = np.zeros((30, 40), bool)
    small[20:25, 20:26] = True  # 30 px < 32
    edge = np.zeros((30, 40), bool)
    edge[0:4, 30:38] = True  # exactly 32 px: kept
    other = np.zeros((10, 10), bool)
    other[2:8, 2:8] = True
    rows = [
        _row(1, big),
        _row(2, big, score=0.49),
        _row(3, small),
        _row(4, edge, score=0.5),
        _row(5, other),
        _row(6, big, image_id="ghost"),
        {**_row(8, big), "mask_rle": "zzzz"},  # corrupt counts: pycocotools decodes them into garbage
    ]
    scenes, rejects = scenes_from_tables(to_table(rows, "instances"), _manifest())
    assert scenes[0].ids.tolist() == [1, 4]
    codes = {r.item_id: r.code for r in rejects}
    assert codes == {
        "img#2": "scene.low_score",
        "img#3": "scene.small_area",
        "img#5": "scene.mask_size_mismatch",
        "ghost#6": "scene.unknown_image",
        "img#8": "scene.bad_mask",
    }
    assert all(r.stage == "questions" and r.detail for r in rejects)


def test_every_manifest_image_gets_a_scene_and_synthetic_tables_round_trip() -> None:
    inst, man = synthetic_tables(0, 3, 10)
    scenes, rejects = scenes_from_tables(inst, man)
    assert len(scenes) == 3
    assert all(sc.n == 8 for sc in scenes)  # every fifth instance has score 0.3
    assert sum(r.code == "scene.low_score" for r in rejects) == 6
    sc = scenes[0]
    rows = [r for r in inst.to_pylist() if r["image_id"] == sc.image_id and r["score"] >= 0.5]
    for r in rows:  # ellipse centroid ~ box centre; area equals the stored area column
        p = sc.position[r["instance_id"]]
        x, y, w, h = r["bbox"]
        assert abs(sc.cx[p] - (x + w / 2)) < 1.0 and abs(sc.cy[p] - (y + h / 2)) < 1.0
        assert sc.area[p] == r["area"]
