"""SAM3 in bfloat16 finds the instances float32 finds (issue 31, item 4).

The defect: with the model in bfloat16, ``post_process_instance_segmentation`` took ``sigmoid`` of the
mask logits in bfloat16, where every probability within ~0.002 of 0.5 rounds to exactly 0.5, and then
binarised with ``> 0.5``: masks came back empty and the stage kept 0 instances (``min_area``) where
float32 kept some. Random weights make it stark (every mask logit is within ±0.003 of 0), real weights
lose the pixels near each mask's boundary. Compared here on the CPU (always: bfloat16 runs there too)
and on CUDA where present (``gpu``: skipped with a reason elsewhere).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from PIL import Image

from pipelines.config import ModelRef, SegmentConfig
from pipelines.contracts import to_table
from pipelines.detect.stage import ImageItem
from pipelines.segment.backends import Prompt, RawInstance, Sam3Backend
from pipelines.segment.stage import Segmenter

pytestmark = pytest.mark.unit
DEVICES = [pytest.param("cpu", id="cpu"), pytest.param("cuda", id="cuda", marks=pytest.mark.gpu)]


def _images() -> list[Image.Image]:
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 255, (90, 160, 3), dtype=np.uint8)),
            Image.fromarray(rng.integers(0, 255, (150, 70, 3), dtype=np.uint8))]


PROMPTS = [[Prompt("cup"), Prompt("red ball")], [Prompt("person")]]


def _segment(model: Path, device: str, dtype: str) -> list[list[RawInstance]]:
    backend = Sam3Backend(ModelRef(model=str(model), device=device, dtype=dtype), score_threshold=0.0)
    backend.setup()
    try:
        return backend.segment(_images(), PROMPTS)
    finally:
        backend.teardown()


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


@pytest.mark.parametrize("device", DEVICES)
def test_bf16_masks_match_fp32_masks(tiny_sam3: Path, device: str) -> None:
    """Same queries, same scores to bfloat16's precision, and masks that overlap float32's (IoU ≥ 0.9)."""
    reference = _segment(tiny_sam3, "cpu", "float32")
    half = _segment(tiny_sam3, device, "bfloat16")
    for ref_image, half_image in zip(reference, half, strict=True):
        assert [r.category for r in half_image] == [r.category for r in ref_image]
        for r, h in zip(ref_image, half_image, strict=True):
            assert abs(r.score - h.score) < 0.01
            ref_mask, half_mask = np.asarray(r.mask.cpu()), np.asarray(h.mask.cpu())
            assert half_mask.sum() > 0 or ref_mask.sum() == 0, "a bfloat16 mask came back empty"
            assert _iou(ref_mask, half_mask) >= 0.9


def _stage_instances(model: Path, device: str, dtype: str) -> pa.Table:
    cfg = SegmentConfig(backend="sam3", sam3=ModelRef(model=str(model), device=device, dtype=dtype),
                        score_threshold=0.0, min_area=32, dedup_iou=0.99)
    items = [ImageItem(f"img{k}", image) for k, image in enumerate(_images())]
    detections = to_table([{"image_id": "img0", "category": "cup", "bbox": None, "score": 1.0, "source": "t"},
                           {"image_id": "img1", "category": "person", "bbox": None, "score": 1.0, "source": "t"}],
                          "detections")
    stage = Segmenter(cfg)
    stage.setup()
    try:
        return stage.process(items, detections).instances
    finally:
        stage.teardown()


@pytest.mark.parametrize("device", DEVICES)
def test_segment_stage_keeps_as_many_instances_in_bf16_as_in_fp32(tiny_sam3: Path, device: str) -> None:
    """What the issue saw: the stage's instance count in bfloat16 was 0 where float32's was not."""
    fp32 = _stage_instances(tiny_sam3, "cpu", "float32")
    bf16 = _stage_instances(tiny_sam3, device, "bfloat16")
    assert fp32.num_rows > 0
    assert bf16.num_rows == fp32.num_rows
    assert bf16.column("image_id").to_pylist() == fp32.column("image_id").to_pylist()
