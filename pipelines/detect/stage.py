"""The detect stage: a manifest shard → detections (category, optional pixel box) + reject rows.

:class:`DetectStage` is the stage contract (:mod:`pipelines.runner`): per shard it decodes the images
(unreadable or changed ones become ``image.*`` rejects) and feeds the :class:`Detector` batches of
:func:`batch_size` images; with ``detect.backend: annotations`` the detections are the COCO instances
shipped with the input images (:class:`pipelines.segment.annotations.ShippedInstances`).

``Detector(config, vlm)`` → ``setup()`` loads the VLM once per worker → ``process(items)`` for each
batch → ``teardown()``. Per image: one grounding prompt; an unreadable answer gets **one** repair
request (the model sees its own answer and is asked for valid JSON only); if that is unreadable
too, a reject row (code :data:`UNPARSEABLE`) keeps both raw answers. A request a served model could not
answer after its retries (:class:`pipelines.vlm.VLMFailure`) is a reject row (:data:`REQUEST_FAILED`)
with the reason; the other images of the batch keep their answers. A readable empty list means
"no objects". Each unusable item of a readable answer (no label, a bad box, ...) is a reject row of
its own, ``item_id = "<image_id>#item<k>"`` (k = its index in the answer), with its ``item.*`` code
(:data:`pipelines.detect.parser.ITEM_CODES`) and the item as ``raw``.

Detections carry ``score = 1.0``: a VLM's grounding answer has no calibrated confidence; SAM's
mask scores are what the thresholds in ``segment`` apply to.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from pipelines.config import DetectConfig, Params, VLMConfig
from pipelines.contracts import empty_table, to_table
from pipelines.contracts.rejects import Reject, rejects_table
from pipelines.detect.parser import ParsedAnswer, parse_grounding
from pipelines.ingest.decode import ImageItem
from pipelines.runner import RunEnv, Shard, ShardResult, StageBase
from pipelines.vlm import VLMBackend, VLMFailure, VLMRequest, generate_outcomes

__all__ = ["DetectResult", "DetectStage", "Detector", "ImageItem", "batch_size", "batches", "detect_shard"]
log = logging.getLogger(__name__)
UNPARSEABLE = "answer.unparseable"  # no JSON could be read, even after the repair request
REQUEST_FAILED = "answer.request_failed"  # the model server did not answer, even after its retries

GROUNDING_PROMPT = (
    "Locate every distinct object in the image. Output a JSON list with one entry per object "
    'instance: {"bbox_2d": [x1, y1, x2, y2], "label": "<category>"}, with coordinates on a 0-1000 '
    "grid relative to the image and each label a short singular noun phrase."
)
CATEGORIES_PROMPT = (
    "List the categories of the objects visible in the image as a JSON list of short singular noun "
    'phrases, e.g. ["person", "red car"].'
)
REPAIR_PROMPT = (
    "Your previous answer could not be parsed as JSON:\n{answer}\n\n"
    "Answer again with only the JSON list, in the same format, and nothing else."
)


@dataclass
class DetectResult:
    detections: pa.Table
    rejects: pa.Table
    counts: dict[str, int] = field(default_factory=dict)


class Detector:
    """The VLM grounding step over a batch of decoded images (see the module docstring)."""

    name = "detect"

    def __init__(self, config: DetectConfig, vlm: VLMConfig | None = None, backend: VLMBackend | None = None):
        """``vlm`` names the model loaded by :meth:`setup`; or pass a ready ``backend``."""
        if vlm is None and backend is None:
            raise ValueError("Detector needs the VLM configuration (params.vlm) or a backend")
        self.config = config
        self.vlm = vlm
        self._backend = backend

    @property
    def backend(self) -> VLMBackend:
        if self._backend is None:
            raise RuntimeError("Detector.setup() was not called")
        return self._backend

    def setup(self) -> None:
        if self._backend is None:
            from pipelines.vlm.backends import make_vlm_backend

            assert self.vlm is not None
            self._backend = make_vlm_backend(self.vlm)
        self._backend.setup()

    def teardown(self) -> None:
        if self._backend is not None:
            self._backend.teardown()

    def _parse(self, text: str, item: ImageItem) -> ParsedAnswer:
        return parse_grounding(
            text, item.image.width, item.image.height, max_categories=self.config.max_categories
        )

    def process(self, items: Sequence[ImageItem]) -> DetectResult:
        prompt = GROUNDING_PROMPT if self.config.boxes else CATEGORIES_PROMPT
        first = generate_outcomes(self.backend, [VLMRequest(i.image, prompt) for i in items],
                                  max_new_tokens=self.config.max_new_tokens)
        failed: dict[int, tuple[VLMFailure, str]] = {
            k: (o, "") for k, o in enumerate(first) if isinstance(o, VLMFailure)}
        answers = ["" if isinstance(o, VLMFailure) else o[0] for o in first]
        parsed = [self._parse(a, i) for a, i in zip(answers, items, strict=True)]
        broken = [k for k, p in enumerate(parsed) if not p.ok and k not in failed]
        repaired: dict[int, tuple[str, ParsedAnswer]] = {}
        if broken:
            repair_requests = [
                VLMRequest(items[k].image, prompt + "\n\n" + REPAIR_PROMPT.format(answer=answers[k][:4000]))
                for k in broken
            ]
            second = generate_outcomes(self.backend, repair_requests, max_new_tokens=self.config.max_new_tokens)
            for k, samples in zip(broken, second, strict=True):
                if isinstance(samples, VLMFailure):
                    failed[k] = (samples, answers[k])
                else:
                    repaired[k] = (samples[0], self._parse(samples[0], items[k]))
        rows: list[dict] = []
        rejects: list[Reject] = []
        counts = {"images": len(items), "repaired": 0, "rejected": 0, "dropped_items": 0, "request_failed": 0}
        for k, item in enumerate(items):
            result = parsed[k]
            if k in failed:
                failure, raw = failed[k]
                counts["rejected"] += 1
                counts["request_failed"] += 1
                rejects.append(Reject(stage=self.name, item_id=item.image_id, code=REQUEST_FAILED,
                                      detail=failure.detail, raw=raw))
                continue
            if k in repaired:
                text2, result = repaired[k]
                if not result.ok:
                    counts["rejected"] += 1
                    rejects.append(
                        Reject(
                            stage=self.name,
                            item_id=item.image_id,
                            code=UNPARSEABLE,
                            detail=f"unparseable answer after one repair attempt: {result.error}",
                            raw=f"{answers[k]}\n--- repair answer ---\n{text2}",
                        )
                    )
                    continue
                counts["repaired"] += 1
            counts["dropped_items"] += len(result.dropped)
            rejects += [
                Reject(stage=self.name, item_id=f"{item.image_id}#item{d.index}", code=d.code, detail=d.detail,
                       raw=d.raw)
                for d in result.dropped
            ]
            for obj in result.objects:
                rows.append(
                    {
                        "image_id": item.image_id,
                        "category": obj.category,
                        "bbox": list(obj.bbox) if obj.bbox is not None else None,
                        "score": 1.0,
                        "source": self.backend.name,
                    }
                )
        counts["detections"] = len(rows)
        log.info("detect: %s", counts)
        return DetectResult(to_table(rows, "detections"), rejects_table(rejects), counts)


# -- the shard stage ---------------------------------------------------------------------------------
ImageLoader = Callable[[pa.Table, str], tuple[list[ImageItem], list[Reject]]]


def image_loader(env: RunEnv) -> ImageLoader:
    """How a model stage (detect, segment) decodes a shard's images: as ingest did, with the run's image
    source and its pixel and byte limits."""
    from pipelines.ingest.sources import load_images

    images, max_pixels, max_bytes = env.images, env.params.ingest.max_pixels, env.params.ingest.max_bytes
    return lambda manifest, stage: load_images(manifest, max_pixels, images, stage=stage, max_bytes=max_bytes)


def batch_size(params: Params, stage: str) -> int:
    """Images per model call — the one rule for detect and segment.

    detect: the VLM's batch (``vlm.qwen3vl.batch_size``), or for a served model four rounds of its
    ``vlm.openai.concurrency`` (so its pool stays full between calls); segment: the backend's
    ``batch_size`` (``segment.<backend>.batch_size``).
    """
    if stage == "detect":
        vlm = params.vlm
        return max(1, vlm.openai.requests_per_call if vlm.backend == "openai" else vlm.batch_size)
    seg = params.segment
    return max(1, getattr(seg, seg.backend).batch_size) if seg.backend != "annotations" else 1


def batches(items: Sequence[Any], size: int) -> list[Sequence[Any]]:
    """``items`` cut into consecutive batches of at most ``size``."""
    size = max(1, int(size))
    return [items[i: i + size] for i in range(0, len(items), size)]


def sum_counts(parts: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Numeric counts of several batches summed (floats rounded to 3 places)."""
    out: dict[str, float] = {}
    for counts in parts:
        for k, v in counts.items():
            if isinstance(v, int | float) and not isinstance(v, bool):
                out[k] = out.get(k, 0) + v
    return {k: round(v, 3) if isinstance(v, float) else v for k, v in out.items()}


def detect_shard(detector: Any, manifest: pa.Table, size: int, load: ImageLoader
                 ) -> tuple[pa.Table, pa.Table, dict[str, Any]]:
    """Detections of one manifest shard: ``load(manifest, "detect")`` decodes the images (→ items, reject
    records), ``detector`` (set up) gets batches of ``size``; every reject is kept, counts are summed."""
    items, load_rejects = load(manifest, "detect")
    parts = [detector.process(chunk) for chunk in batches(items, size)]
    table = pa.concat_tables([p.detections for p in parts]) if parts else empty_table("detections")
    rejects = pa.concat_tables([rejects_table(load_rejects), *[p.rejects for p in parts]])
    counts = sum_counts([p.counts for p in parts])
    return table, rejects, {**counts, "images": len(manifest), "detections": len(table), "rejected": len(rejects)}


class DetectStage(StageBase):
    """manifest → detections (+ rejects), on the VLM or, with ``detect.backend: annotations``, from the
    COCO instances shipped with the images. ``detector``: a ready :class:`Detector` (tests)."""

    name = "detect"
    inputs = ("manifest",)
    outputs = ("detections",)
    rejects = ("answer", "item", "image", "coco")
    metrics = ("images", "detections", "rejected")

    def __init__(self, detector: Detector | None = None) -> None:
        self._given = detector
        self.detector: Detector | None = None

    def setup(self, env: RunEnv) -> None:
        self.backend = env.params.detect.backend
        self.batch = batch_size(env.params, "detect")
        self.load = image_loader(env)
        if self.backend == "annotations":
            from pipelines.segment.annotations import ShippedInstances

            self.shipped = ShippedInstances(env)
            return
        self.detector = self._given or Detector(env.params.detect, env.params.vlm)
        self.detector.setup()

    def process(self, shard: Shard) -> ShardResult:
        manifest = shard.tables["manifest"]
        if self.backend == "annotations":
            instances, rejects = self.shipped.match(manifest, shard.number)
            dets = instances.select(["image_id", "category", "bbox", "score", "source"])
            stats: dict[str, Any] = {"images": len(manifest), "detections": len(dets), "rejected": len(rejects)}
        else:
            dets, rejects, stats = detect_shard(self.detector, manifest, self.batch, self.load)
        stats["backend"] = self.backend
        return ShardResult({"detections": dets}, rejects, stats)

    def teardown(self) -> None:
        if self.detector is not None:
            self.detector.teardown()
