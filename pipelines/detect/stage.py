"""The detect stage: images → detections (category, optional pixel box) + reject rows.

``DetectStage(config)`` → ``setup()`` loads the VLM once per worker → ``process(items)`` for each
batch → ``teardown()``. Per image: one grounding prompt; an unreadable answer gets **one** repair
request (the model sees its own answer and is asked for valid JSON only); if that is unreadable
too, a reject row (code :data:`UNPARSEABLE`) keeps both raw answers. A readable empty list means
"no objects". Each unusable item of a readable answer (no label, a bad box, ...) is a reject row of
its own, ``item_id = "<image_id>#item<k>"`` (k = its index in the answer), with its ``item.*`` code
(:data:`pipelines.detect.parser.ITEM_CODES`) and the item as ``raw``.

Detections carry ``score = 1.0``: a VLM's grounding answer has no calibrated confidence; SAM's
mask scores are what the thresholds in ``segment`` apply to.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import pyarrow as pa

from pipelines.config import DetectConfig, VLMConfig
from pipelines.contracts import to_table
from pipelines.detect.parser import ParsedAnswer, parse_grounding
from pipelines.ingest.decode import ImageItem
from pipelines.rejects import Reject, rejects_table
from pipelines.vlm import VLMBackend, VLMRequest

__all__ = ["DetectResult", "DetectStage", "ImageItem"]
log = logging.getLogger(__name__)
UNPARSEABLE = "answer.unparseable"  # no JSON could be read, even after the repair request

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


class DetectStage:
    name = "detect"

    def __init__(self, config: DetectConfig, vlm: VLMConfig | None = None, backend: VLMBackend | None = None):
        """``vlm`` names the model loaded by :meth:`setup`; or pass a ready ``backend``."""
        if vlm is None and backend is None:
            raise ValueError("DetectStage needs the VLM configuration (params.vlm) or a backend")
        self.config = config
        self.vlm = vlm
        self._backend = backend

    @property
    def backend(self) -> VLMBackend:
        if self._backend is None:
            raise RuntimeError("DetectStage.setup() was not called")
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
        answers = [
            s[0]
            for s in self.backend.generate(
                [VLMRequest(i.image, prompt) for i in items], max_new_tokens=self.config.max_new_tokens
            )
        ]
        parsed = [self._parse(a, i) for a, i in zip(answers, items, strict=True)]
        broken = [k for k, p in enumerate(parsed) if not p.ok]
        repaired: dict[int, tuple[str, ParsedAnswer]] = {}
        if broken:
            repair_requests = [
                VLMRequest(items[k].image, prompt + "\n\n" + REPAIR_PROMPT.format(answer=answers[k][:4000]))
                for k in broken
            ]
            second = self.backend.generate(repair_requests, max_new_tokens=self.config.max_new_tokens)
            for k, samples in zip(broken, second, strict=True):
                repaired[k] = (samples[0], self._parse(samples[0], items[k]))
        rows: list[dict] = []
        rejects: list[Reject] = []
        counts = {"images": len(items), "repaired": 0, "rejected": 0, "dropped_items": 0}
        for k, item in enumerate(items):
            result = parsed[k]
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
