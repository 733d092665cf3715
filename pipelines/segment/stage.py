"""The segment stage: a manifest shard + its detections → instances (COCO RLE masks) + reject rows.

:class:`SegmentStage` is the stage contract (:mod:`pipelines.runner`): per shard it decodes the images
(unreadable or changed ones become ``image.*`` rejects) and feeds the :class:`Segmenter` batches with the
detections of their images; with ``segment.backend: annotations`` the instances are the COCO instances
shipped with the input images. The instances are checked (Great Expectations, against the manifest)
before the questions stage reads them.

:class:`Segmenter`, per image: prompts from its detections (SAM3: one text prompt per distinct category; SAM2: one
box prompt per detection), the backend's masks, then — in this order — the score threshold
(``segment.score_threshold``), RLE encoding (pycocotools), the minimum area
(``segment.min_area`` pixels), and suppression of duplicates across prompts by mask IoU
(``segment.dedup_iou``, highest score kept). ``instance_id`` is 1..n per image in descending score
order; ``bbox`` and ``area`` are computed from the encoded mask, so they always agree with it.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipelines.config import SegmentConfig
from pipelines.contracts import empty_table, to_table
from pipelines.contracts.rejects import Reject, rejects_table
from pipelines.detect.stage import ImageItem, ImageLoader, batch_size, batches, image_loader, sum_counts
from pipelines.runner import Check, RunEnv, Shard, ShardResult, StageBase
from pipelines.segment.backends import Prompt, SegmentBackend, make_segment_backend
from pipelines.segment.masks import encode_masks, suppress_duplicates

log = logging.getLogger(__name__)


@dataclass
class SegmentResult:
    instances: pa.Table
    rejects: pa.Table
    counts: dict[str, int] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)  # seconds: model, encode, total


def prompts_from_detections(
    detections: pa.Table, needs_boxes: bool
) -> tuple[dict[str, list[Prompt]], list[Reject]]:
    """Group detections by image into prompts; box-less detections for a box backend are rejects
    (``prompt.no_box``)."""
    prompts: dict[str, list[Prompt]] = defaultdict(list)
    rejects: list[Reject] = []
    for row in detections.to_pylist():
        box = tuple(row["bbox"]) if row["bbox"] is not None else None
        if needs_boxes and box is None:
            rejects.append(Reject(stage="segment", item_id=row["image_id"], code="prompt.no_box",
                                  detail=f"box-prompted backend got a detection without a box: {row['category']}",
                                  raw=row["category"]))
            continue
        prompts[row["image_id"]].append(Prompt(row["category"], box))
    return prompts, rejects


def _stack(masks: list) -> object:
    """Stack (H, W) masks into (N, H, W), keeping torch tensors on their device."""
    if hasattr(masks[0], "permute"):
        import torch

        return torch.stack(masks)
    return np.stack(masks)


class Segmenter:
    """The mask step over a batch of decoded images and their detections (see the module docstring)."""

    name = "segment"

    def __init__(self, config: SegmentConfig, backend: SegmentBackend | None = None):
        self.config = config
        self._backend = backend

    @property
    def backend(self) -> SegmentBackend:
        if self._backend is None:
            raise RuntimeError("Segmenter.setup() was not called")
        return self._backend

    def setup(self) -> None:
        if self._backend is None:
            self._backend = make_segment_backend(self.config)
        self._backend.setup()

    def teardown(self) -> None:
        if self._backend is not None:
            self._backend.teardown()

    def process(self, items: Sequence[ImageItem], detections: pa.Table) -> SegmentResult:
        t0 = time.perf_counter()
        prompts, rejects = prompts_from_detections(detections, self.backend.needs_boxes)
        per_image = [prompts.get(item.image_id, []) for item in items]
        raw = self.backend.segment([i.image for i in items], per_image)
        t_model = time.perf_counter() - t0
        cfg = self.config
        rows: list[dict] = []
        counts = {"images": len(items), "raw": 0, "below_score": 0, "below_area": 0, "duplicates": 0}
        t_encode = 0.0
        for item, found in zip(items, raw, strict=True):
            counts["raw"] += len(found)
            kept = [r for r in found if r.score >= cfg.score_threshold]
            counts["below_score"] += len(found) - len(kept)
            if not kept:
                continue
            t1 = time.perf_counter()

            encoded = encode_masks(_stack([r.mask for r in kept]))
            t_encode += time.perf_counter() - t1
            big = [k for k, e in enumerate(encoded) if e.area >= cfg.min_area]
            counts["below_area"] += len(kept) - len(big)
            order = suppress_duplicates([encoded[k] for k in big], [kept[k].score for k in big], cfg.dedup_iou)
            counts["duplicates"] += len(big) - len(order)
            for instance_id, pos in enumerate(order, start=1):
                k = big[pos]
                enc = encoded[k]
                rows.append(
                    {
                        "image_id": item.image_id,
                        "instance_id": instance_id,
                        "category": kept[k].category,
                        "bbox": list(enc.bbox),
                        "area": enc.area,
                        "score": min(max(float(kept[k].score), 0.0), 1.0),
                        "mask_rle": enc.counts,
                        "mask_height": enc.height,
                        "mask_width": enc.width,
                        "source": self.backend.name,
                    }
                )
        counts["instances"] = len(rows)
        counts["rejected"] = len(rejects)
        timings = {"model_s": t_model, "encode_s": t_encode, "total_s": time.perf_counter() - t0}
        log.info("segment: %s", counts)
        return SegmentResult(to_table(rows, "instances"), rejects_table(rejects), counts, timings)


# -- the shard stage ---------------------------------------------------------------------------------
def segment_shard(segmenter: Any, manifest: pa.Table, detections: pa.Table, size: int, load: ImageLoader
                  ) -> tuple[pa.Table, pa.Table, dict[str, Any]]:
    """Instances of one manifest shard from its detections: each batch of ``size`` decoded images gets the
    detections of its images; every reject is kept, counts and timings are summed."""
    items, load_rejects = load(manifest, "segment")
    parts = []
    for chunk in batches(items, size):
        ids = pa.array([it.image_id for it in chunk], type=pa.string())
        parts.append(segmenter.process(chunk, detections.filter(pc.is_in(detections["image_id"], value_set=ids))))
    table = pa.concat_tables([p.instances for p in parts]) if parts else empty_table("instances")
    rejects = pa.concat_tables([rejects_table(load_rejects), *[p.rejects for p in parts]])
    counts = sum_counts([{**p.counts, **p.timings} for p in parts])
    return table, rejects, {**counts, "images": len(manifest), "instances": len(table), "rejected": len(rejects)}


class SegmentStage(StageBase):
    """manifest + detections → instances (+ rejects), on SAM3/SAM2 or, with ``segment.backend:
    annotations``, from the COCO instances shipped with the images. ``segmenter``: a ready
    :class:`Segmenter` (tests)."""

    name = "segment"
    inputs = ("manifest", "detections")
    outputs = ("instances",)
    rejects = ("prompt", "image", "coco")
    metrics = ("images", "instances", "rejected")
    checks = (Check("instances", "instances", ("manifest",)),)

    def __init__(self, segmenter: Segmenter | None = None) -> None:
        self._given = segmenter
        self.segmenter: Segmenter | None = None

    def setup(self, env: RunEnv) -> None:
        self.backend = env.params.segment.backend
        self.batch = batch_size(env.params, "segment")
        self.load = image_loader(env)
        if self.backend == "annotations":
            from pipelines.segment.annotations import ShippedInstances

            self.shipped = ShippedInstances(env)
            return
        self.segmenter = self._given or Segmenter(env.params.segment)
        self.segmenter.setup()

    def process(self, shard: Shard) -> ShardResult:
        manifest = shard.tables["manifest"]
        if self.backend == "annotations":
            instances, rejects = self.shipped.match(manifest, shard.number)
            stats: dict[str, Any] = {"images": len(manifest), "instances": len(instances), "rejected": len(rejects)}
        else:
            instances, rejects, stats = segment_shard(self.segmenter, manifest, shard.tables["detections"],
                                                      self.batch, self.load)
        stats["backend"] = self.backend
        return ShardResult({"instances": instances}, rejects, stats)

    def teardown(self) -> None:
        if self.segmenter is not None:
            self.segmenter.teardown()
