"""CUDA paths of the perception stages (bf16, batched) with the tiny real-architecture models.

Marked ``gpu``: skipped with a visible reason on machines without CUDA (this 2-core CI machine);
run on a GPU machine with ``pytest -m gpu``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipelines.config import ModelRef, SegmentConfig
from pipelines.contracts import to_table
from pipelines.detect.stage import ImageItem
from pipelines.segment.stage import Segmenter
from pipelines.vlm import VLMRequest
from tests.support.checks import check_instances

pytestmark = [pytest.mark.gpu, pytest.mark.unit]


def _items() -> list[ImageItem]:
    rng = np.random.default_rng(1)
    return [ImageItem(f"img{k}", Image.fromarray(rng.integers(0, 255, (96, 128, 3), dtype=np.uint8)))
            for k in range(4)]


def test_qwen3vl_generates_in_bf16_on_cuda(tiny_qwen3vl: Path) -> None:
    from pipelines.vlm.backends import Qwen3VLBackend

    backend = Qwen3VLBackend(ModelRef(model=str(tiny_qwen3vl), device="cuda", dtype="bfloat16", batch_size=4))
    backend.setup()
    try:
        out = backend.generate([VLMRequest(i.image, "List the objects.") for i in _items()], max_new_tokens=8)
    finally:
        backend.teardown()
    assert len(out) == 4 and all(len(s) == 1 and isinstance(s[0], str) for s in out)


def test_sam3_segments_on_cuda_to_valid_instances(tiny_sam3: Path) -> None:
    items = _items()
    dets = to_table([{"image_id": i.image_id, "category": "cup", "bbox": None, "score": 1.0, "source": "t"}
                     for i in items], "detections")
    stage = Segmenter(SegmentConfig(backend="sam3", sam3=ModelRef(model=str(tiny_sam3), device="cuda",
                                                                     dtype="bfloat16"),
                                       score_threshold=0.0, min_area=1, dedup_iou=0.99))
    stage.setup()
    try:
        result = stage.process(items, dets)
    finally:
        stage.teardown()
    check_instances(result.instances, {i.image_id: (i.image.height, i.image.width) for i in items})
    assert result.instances.num_rows > 0
