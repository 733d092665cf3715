"""Segment through the real models (tiny random weights) and official post-processing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from PIL import Image

from pipelines.config import ModelRef, SegmentConfig
from pipelines.contracts import to_table
from pipelines.detect.stage import ImageItem
from pipelines.segment.stage import Segmenter
from tests.support.checks import check_instances
from tests.support.tiny_models import Sam2Checkpoint

pytestmark = pytest.mark.unit


def _items() -> list[ImageItem]:
    rng = np.random.default_rng(0)
    return [
        ImageItem("wide", Image.fromarray(rng.integers(0, 255, (90, 160, 3), dtype=np.uint8))),
        ImageItem("tall", Image.fromarray(rng.integers(0, 255, (150, 70, 3), dtype=np.uint8))),
        ImageItem("nothing", Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8))),
    ]


def _detections() -> pa.Table:
    rows = [
        {"image_id": "wide", "category": "cup", "bbox": [10.0, 10.0, 60.0, 50.0], "score": 1.0, "source": "t"},
        {"image_id": "wide", "category": "red ball", "bbox": [80.0, 20.0, 70.0, 60.0], "score": 1.0, "source": "t"},
        {"image_id": "wide", "category": "cup", "bbox": [12.0, 11.0, 58.0, 49.0], "score": 1.0, "source": "t"},
        {"image_id": "tall", "category": "person", "bbox": [0.0, 0.0, 70.0, 150.0], "score": 1.0, "source": "t"},
    ]
    return to_table(rows, "detections")


def assert_valid_instances(table: pa.Table, items: list[ImageItem]) -> None:
    check_instances(table, {i.image_id: (i.image.height, i.image.width) for i in items})
    for image_id in set(table.column("image_id").to_pylist()):
        ids = sorted(r["instance_id"] for r in table.to_pylist() if r["image_id"] == image_id)
        assert ids == list(range(1, len(ids) + 1))


def _run(cfg: SegmentConfig) -> tuple[pa.Table, dict]:
    stage = Segmenter(cfg)
    stage.setup()
    try:
        result = stage.process(_items(), _detections())
    finally:
        stage.teardown()
    assert_valid_instances(result.instances, _items())
    return result.instances, result.counts


def test_sam3_text_prompts_to_instances(tiny_sam3: Path) -> None:
    # random weights score ~0.25 everywhere: the threshold is lowered to see masks at all
    cfg = SegmentConfig(backend="sam3", sam3=ModelRef(model=str(tiny_sam3), device="cpu"),
                        score_threshold=0.0, min_area=1, dedup_iou=0.99, prompt_batch=2)
    table, counts = _run(cfg)
    assert counts["raw"] == 3 * 10  # 3 distinct (image, category) prompts x 10 queries
    assert table.num_rows > 0 and set(table.column("source").to_pylist()) == {f"sam3:{tiny_sam3}"}
    assert set(table.column("category").to_pylist()) <= {"cup", "red ball", "person"}
    assert "nothing" not in table.column("image_id").to_pylist()


def test_sam3_score_threshold_from_params(tiny_sam3: Path) -> None:
    cfg = SegmentConfig(backend="sam3", sam3=ModelRef(model=str(tiny_sam3), device="cpu"), score_threshold=0.9)
    table, _ = _run(cfg)
    assert table.num_rows == 0


def test_sam2_package_box_prompts(tiny_sam2_checkpoint: Sam2Checkpoint) -> None:
    ck = tiny_sam2_checkpoint
    cfg = SegmentConfig(backend="sam2", sam2=ModelRef(model=str(ck.path), device="cpu", batch_size=2),
                        sam2_config=ck.config, sam2_overrides=ck.overrides,
                        score_threshold=0.0, mask_threshold=0.5, min_area=1, dedup_iou=0.7)
    table, counts = _run(cfg)
    assert counts["raw"] == 4  # one mask per box
    assert counts["raw"] == counts["instances"] + counts["below_area"] + counts["duplicates"]
    assert table.num_rows >= 1 and table.column("source")[0].as_py() == f"sam2:{ck.path}"


def test_sam2_transformers_box_prompts(tiny_sam2_hf: Path) -> None:
    cfg = SegmentConfig(backend="sam2_hf", sam2_hf=ModelRef(model=str(tiny_sam2_hf), device="cpu", batch_size=2),
                        score_threshold=0.0, min_area=1, dedup_iou=0.7)
    table, counts = _run(cfg)
    assert counts["raw"] == 4
    assert table.num_rows >= 1


def test_box_backend_rejects_boxless_detections(tiny_sam2_hf: Path) -> None:
    dets = to_table([{"image_id": "wide", "category": "cup", "bbox": None, "score": 1.0, "source": "t"}], "detections")
    stage = Segmenter(SegmentConfig(backend="sam2_hf", sam2_hf=ModelRef(model=str(tiny_sam2_hf), device="cpu")))
    stage.setup()
    result = stage.process(_items()[:1], dets)
    assert result.instances.num_rows == 0
    assert result.rejects.to_pylist()[0]["item_id"] == "wide"
