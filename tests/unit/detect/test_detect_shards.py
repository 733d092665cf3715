"""The shard loop of detect and segment (the stages' ``process``): one batch-size rule, every reject kept, counts summed."""

from __future__ import annotations

from dataclasses import dataclass, field

import pyarrow as pa
import pytest
from PIL import Image

from pipelines.config import ModelRef, OpenAIEndpoint, Params, SegmentConfig, VLMConfig
from pipelines.contracts import to_table
from pipelines.contracts.rejects import Reject
from pipelines.detect.stage import batch_size, detect_shard
from pipelines.ingest.decode import ImageItem
from pipelines.segment.stage import segment_shard

pytestmark = pytest.mark.unit


def _params(vlm_batch: int = 3, seg_batch: int = 2) -> Params:
    return Params(
        vlm=VLMConfig(backend="qwen3vl", qwen3vl=ModelRef(model="/m", batch_size=vlm_batch)),
        segment=SegmentConfig(backend="sam3", sam3=ModelRef(model="/s", batch_size=seg_batch)),
    )


def _manifest(n: int) -> pa.Table:
    return pa.table({"image_id": [f"img{i}" for i in range(n)]})


def _load(manifest: pa.Table, stage: str) -> tuple[list[ImageItem], list[Reject]]:
    """Every image loads except the last, which has changed since ingest."""
    ids = manifest["image_id"].to_pylist()
    items = [ImageItem(i, Image.new("RGB", (8, 8))) for i in ids[:-1]]
    return items, [Reject(stage=stage, item_id=ids[-1], code="image.changed", detail="changed since ingest")]


@dataclass
class Result:
    detections: pa.Table
    rejects: pa.Table
    counts: dict = field(default_factory=dict)
    instances: pa.Table | None = None
    timings: dict = field(default_factory=dict)


class RecordingStage:
    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.detections_seen: list[list[str]] = []

    def process(self, items, detections=None):  # type: ignore[no-untyped-def]
        ids = [it.image_id for it in items]
        self.batches.append(ids)
        rows = [{"image_id": i, "category": "cup", "bbox": [0.0, 0.0, 1.0, 1.0], "score": 1.0, "source": "t"}
                for i in ids]
        if detections is not None:
            self.detections_seen.append(detections["image_id"].to_pylist())
        bad = [Reject(stage="detect", item_id=ids[0], code="model.unparseable", detail="no JSON").row()]
        return Result(to_table(rows, "detections"), to_table(bad, "rejects"), {"repaired": 1},
                      instances=to_table([], "instances"), timings={"model_s": 0.25})


def test_one_batch_size_rule_for_both_stages() -> None:
    assert batch_size(_params(vlm_batch=3), "detect") == 3
    assert batch_size(_params(seg_batch=2), "segment") == 2
    endpoint = Params(vlm=VLMConfig(backend="openai", openai=OpenAIEndpoint(base_url="http://h", model="m",
                                                                            concurrency=7)))
    assert batch_size(endpoint, "detect") == 4 * 7  # four rounds of the requests in flight: the pool stays full


def test_detect_shard_runs_in_batches_and_keeps_every_reject() -> None:
    stage = RecordingStage()
    table, rejects, counts = detect_shard(stage, _manifest(8), batch_size(_params(vlm_batch=3), "detect"), _load)
    assert stage.batches == [["img0", "img1", "img2"], ["img3", "img4", "img5"], ["img6"]]
    assert len(table) == 7
    codes = rejects["code"].to_pylist()
    assert codes.count("image.changed") == 1 and codes.count("model.unparseable") == 3
    assert counts == {"repaired": 3, "images": 8, "detections": 7, "rejected": 4}


def test_segment_shard_gives_each_batch_only_its_images_detections() -> None:
    stage = RecordingStage()
    detections = to_table([{"image_id": f"img{i}", "category": "cup", "bbox": None, "score": 1.0, "source": "t"}
                           for i in range(5)], "detections")
    table, rejects, counts = segment_shard(stage, _manifest(5), detections, batch_size(_params(seg_batch=2), "segment"), _load)
    assert stage.batches == [["img0", "img1"], ["img2", "img3"]]
    assert stage.detections_seen == [["img0", "img1"], ["img2", "img3"]]
    assert counts["images"] == 5 and counts["model_s"] == 0.5 and counts["rejected"] == 3


def test_an_empty_shard_makes_empty_tables_of_the_contract() -> None:
    table, rejects, _ = detect_shard(RecordingStage(), _manifest(1), batch_size(_params(), "detect"), _load)  # its one image is refused
    assert len(table) == 0 and table.schema == to_table([], "detections").schema
    assert rejects["code"].to_pylist() == ["image.changed"]
