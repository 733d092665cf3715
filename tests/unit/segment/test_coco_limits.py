"""Issue 30 item 2: COCO polygons and RLE masks are checked before pycocotools sees them. ``inf``/``NaN``
coordinates used to segfault the rasteriser and huge ones to exhaust memory; corrupt RLE counts were decoded
into arbitrary pixels. Each is now a reject with its reason, and the image's other instances go through."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from pipelines.config import IngestConfig
from pipelines.contracts import to_table
from pipelines.contracts.rejects import REASONS
from pipelines.segment.annotations import import_coco, match_coco_instances
from pipelines.segment.masks import encode_mask

pytestmark = pytest.mark.unit

W, H = 64, 48
GOOD = [[10, 10, 30, 10, 30, 25, 10, 25]]


def _zigzag(n: int) -> list[float]:
    """A polygon of ``n`` vertices that crosses the whole image at every edge."""
    return [float(v) for k in range(n) for v in ((0 if k % 2 else W), k * H / n)]


def _rle(mask: np.ndarray) -> str:
    return encode_mask(mask).counts


def _annotations() -> dict[str, Any]:
    """Annotation id → segmentation (or a whole annotation dict for the score case)."""
    full = np.zeros((H, W), bool)
    full[5:20, 5:30] = True
    good_rle = _rle(full)
    other = _rle(np.pad(np.ones((10, 10), bool), ((0, 30), (0, 20))))  # a 40x30 mask
    return {
        1: GOOD,
        2: [[10, 10, float("nan"), 10, 30, 25]],
        3: [[10, 10, float("inf"), 10, 30, 25]],
        4: [[10, 10, 1e12, 10, 30, 1e12]],
        5: [[10, 10, 10**400, 10, 30, 25]],  # a JSON integer no float can hold
        6: [[-40, 10, 30, 10, 30, 25]],  # far left of the image
        7: {"size": [H, W], "counts": good_rle[: len(good_rle) // 2] + "`"},  # truncated: continuation bit set
        8: {"size": [H, W], "counts": good_rle + "1"},  # one run too many: covers more than H x W
        9: {"size": [30, 40], "counts": other},  # a mask of another size
        10: {"size": [H, W], "counts": [5, 10]},  # uncompressed runs covering 15 pixels, not 3072
        11: {"size": [H, W], "counts": "\u00e9\u00e9"},  # not ASCII
        12: {"size": [H, W], "counts": good_rle},
        13: {"size": [H, W], "counts": [-3, 3075]},  # a negative run
    }


SEGMENTATION_CODES = {
    "2": "polygon.non_finite", "3": "polygon.non_finite", "4": "polygon.out_of_bounds", "5": "polygon.non_finite",
    "6": "polygon.out_of_bounds", "7": "mask.rle_malformed", "8": "mask.rle_size_mismatch",
    "9": "mask.rle_size_mismatch", "10": "mask.rle_size_mismatch", "11": "mask.rle_malformed",
    "13": "mask.rle_malformed",
}
EXPECTED = {**SEGMENTATION_CODES, "20": "coco.invalid_score", "21": "coco.invalid_score"}


def _coco(tmp_path: Path, annotations: dict[int, Any], extra: list[dict] | None = None) -> tuple[Path, Path]:
    images = tmp_path / "images"
    images.mkdir(exist_ok=True)
    Image.new("RGB", (W, H), (10, 20, 30)).save(images / "a.png")
    Image.new("RGB", (W, H), (30, 20, 10)).save(images / "b.png")
    anns = [{"id": k, "image_id": 1, "category_id": 1, "iscrowd": 0, "segmentation": seg}
            for k, seg in annotations.items()]
    anns.append({"id": 100, "image_id": 2, "category_id": 1, "iscrowd": 0, "segmentation": GOOD})
    coco = {"images": [{"id": 1, "file_name": "a.png", "width": W, "height": H},
                       {"id": 2, "file_name": "b.png", "width": W, "height": H}],
            "categories": [{"id": 1, "name": "box"}], "annotations": anns + (extra or [])}
    path = tmp_path / "coco.json"
    path.write_text(json.dumps(coco))  # NaN / Infinity literals, as Python's json (and many tools) write them
    return path, images


def test_hostile_polygons_and_corrupt_rle_are_rejects_with_reasons_and_the_rest_goes_through(tmp_path: Path) -> None:
    bad_scores = [{"id": 20, "image_id": 1, "category_id": 1, "iscrowd": 0, "segmentation": GOOD, "score": "high"},
                  {"id": 21, "image_id": 1, "category_id": 1, "iscrowd": 0, "segmentation": GOOD,
                   "score": float("nan")}]
    path, images = _coco(tmp_path, _annotations(), bad_scores)
    res = import_coco(path, images)
    codes = {r["item_id"]: r["code"] for r in res.rejects.to_pylist()}
    assert codes == EXPECTED
    assert all(code in REASONS for code in codes.values())
    assert all(r["stage"] == "annotations" and r["detail"] for r in res.rejects.to_pylist())
    assert res.manifest.num_rows == 2 and res.quarantine.num_rows == 0
    # the valid polygon and the valid RLE of image a, and image b's polygon, went through
    assert res.instances.num_rows == 3 and res.counts["polygon.non_finite"] == 3


def test_vertex_path_and_instance_limits_are_configuration(tmp_path: Path) -> None:
    limits = IngestConfig(max_polygon_vertices=100, max_polygon_path=5.0, max_instances=3)
    path, images = _coco(tmp_path, {1: GOOD, 2: [_zigzag(101)], 3: [_zigzag(60)]})
    res = import_coco(path, images, limits=limits)
    codes = {r["item_id"]: r["code"] for r in res.rejects.to_pylist()}
    # 60 edges across a 64 px image: ~3900 px of edge > 5 perimeters (1120 px)
    assert codes == {"2": "polygon.too_many_vertices", "3": "polygon.too_long"}
    assert res.instances.num_rows == 2
    assert import_coco(path, images, limits=IngestConfig(max_polygon_path=50)).rejects.num_rows == 0

    crowded = {k: GOOD for k in range(1, 5)}  # 4 annotations > max_instances 3: all refused, a subset would miscount
    path, images = _coco(tmp_path, crowded)
    res = import_coco(path, images, limits=limits)
    assert {r["item_id"]: r["code"] for r in res.rejects.to_pylist()} == {str(k): "instance.too_many" for k in crowded}
    assert res.instances.num_rows == 1  # image b's instance


def test_annotations_shipped_with_a_run_are_checked_the_same_way(tmp_path: Path) -> None:
    path, images = _coco(tmp_path, _annotations())
    coco = json.loads(path.read_text())
    manifest = import_coco(path, images).manifest
    instances, rejects = match_coco_instances(coco, manifest, lambda uri: Path(uri).name,
                                              limits=IngestConfig(max_instances=100))
    codes = {r["item_id"]: r["code"] for r in rejects.to_pylist()}
    assert codes == SEGMENTATION_CODES
    assert instances.num_rows == 3
    assert to_table(instances.to_pylist(), "instances").num_rows == 3
