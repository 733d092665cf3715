"""What a typical open-vocabulary detector + segmenter would have made of an annotated photo.

No detector weights are available offline, so the reader study's "automatic perception" variant
(``bench/reader_study.py packet --perception noisy``) turns a photo's human annotations (the
contract's ``instances`` rows, score 1.0) into the rows a detector + segmenter would output, with
the errors such a pipeline makes. The model is seeded: the same rows, rates and seed give the same
output, byte for byte.

Per annotated instance (an *object*), in this order:

1. **Detected or not.** The chance of a kept detection is its size bin's recall (COCO bins: small
   ``area < 32²`` px, medium ``< 96²``, large above), times ``occluded_recall`` when it is
   *occluded* (another instance's box covers ``>= occlusion_overlap`` of its box, the scene's own
   definition). A missed object becomes a **near miss** (a detection with a score in
   ``[shadow_score, min_score)``: the scene's ``near_misses``) with probability ``near_miss_share``,
   otherwise it is gone.
2. **Score.** A kept detection scores ``min_score + (max_score - min_score) * d * v`` with ``d`` its
   detection chance and ``v ~ U(score_floor, 1)``: small and occluded objects score low (some under
   the stability check's ``doubt_score``), large whole ones high — a spread, as detectors give.
3. **Confusion.** With probability ``confusion`` a detection (kept or near miss) carries a sibling
   category (:data:`SIBLINGS`: horse -> cow, cup -> bowl, ...) or, for a category without a
   sibling, another category present in the image. With probability ``confusion_trace`` a confused
   kept detection also comes with its true label as a near miss on the same mask: an
   open-vocabulary detector scores every prompt, so the right one often scores just under the
   threshold.
4. **Merge / split.** Two touching kept detections of one category (their masks, grown by
   ``touch_px``, overlap) are merged into one mask with probability ``merge`` (per pair, each
   object merged at most once); a large kept detection is split into two halves across its longer
   side with probability ``split``.
5. **Edges.** Every mask is dilated by ``edge_px`` with probability ``edge_change``/2, eroded by
   ``edge_px`` with the same probability (an eroded mask that vanishes is a miss).

Every error of steps 1, 3 and 4 is a :class:`NoiseEvent` naming the categories it touches (both the
true and the reported one for a confusion); edge changes touch every mask a little and are not
events.

Defaults (:class:`NoiseRates`), and where they come from:

* recall by size 0.40 / 0.72 / 0.90 — close to a DETR-class detector's COCO val average recall by
  size (UP-DETR, 300 epochs: AR small 0.33, medium 0.65, large 0.82 over IoU .50:.95; the COCO
  size bins are from cocodataset.org "Detection Evaluation"); recall at the single IoU a reader
  cares about is higher, zero-shot open-vocabulary recall lower, so the AR values, rounded up a
  little, are a middle estimate. *Assumption*, anchored on published numbers.
* ``occluded_recall`` 0.8 — Hoiem et al., "Diagnosing Error in Object Detectors" (ECCV 2012):
  occlusion and size are among the most impactful characteristics; the factor is an *assumption*.
* ``confusion`` 0.05 — the same study finds confusion with similar categories among the most
  impactful false positives (e.g. dog detections confused with cat, horse, cow, sheep), and Borji &
  Iranmanesh (2020) find classification error the largest error share of modern detectors; the
  rate per detection is an *assumption*.
* ``near_miss_share`` 0.5, ``confusion_trace`` 0.5, ``merge`` 0.3, ``split`` 0.03, ``edge_px`` 1, ``edge_change`` 0.5,
  ``score_floor`` 0.2 — *assumptions* (no published per-instance rate found offline).
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
from PIL import Image, ImageFilter

from pipelines.contracts import to_table
from pipelines.segment.masks import decode_rle, encode_mask

SMALL_AREA = 32 * 32  # COCO size bins, pixels
MEDIUM_AREA = 96 * 96
# a detector's sibling confusions: visually close categories (PASCAL VOC / COCO names as the demo labels them)
SIBLINGS: dict[str, tuple[str, ...]] = {
    "horse": ("cow",), "cow": ("horse", "sheep"), "sheep": ("cow",), "dog": ("cat",), "cat": ("dog",),
    "cup": ("bowl",), "bowl": ("cup",), "bottle": ("cup",), "chair": ("sofa",), "sofa": ("chair",),
    "bicycle": ("motorbike",), "motorbike": ("bicycle",), "car": ("bus",), "bus": ("car",),
    "dining table": ("desk",), "tv monitor": ("laptop",), "potted plant": ("vase",), "person": ("mannequin",),
    "book": ("box",), "scissors": ("knife",),
}
EVENT_KINDS = ("miss", "near_miss", "confusion", "merge", "split")


@dataclass(frozen=True)
class NoiseRates:
    """The perception-noise model's rates (see the module docstring for their sources)."""

    recall_small: float = 0.40
    recall_medium: float = 0.72
    recall_large: float = 0.90
    occluded_recall: float = 0.8  # recall factor for an object another box covers >= occlusion_overlap of
    occlusion_overlap: float = 0.25
    near_miss_share: float = 0.5  # of the missed objects, the share reported just under the threshold
    confusion: float = 0.05  # per detection: reported as a sibling category
    confusion_trace: float = 0.5  # of the confused kept detections, the share whose true label also scores just under
    merge: float = 0.3  # per touching same-category pair of kept detections
    split: float = 0.03  # per large kept detection
    touch_px: int = 2
    edge_px: int = 1
    edge_change: float = 0.5  # share of masks whose edge moves by edge_px (half grown, half shrunk)
    score_floor: float = 0.2
    min_score: float = 0.5  # the questions stage's thresholds (params.questions)
    shadow_score: float = 0.3
    max_score: float = 0.99

    def recall(self, area: float, occluded: bool) -> float:
        """The chance that an object of ``area`` pixels is a kept detection."""
        base = self.recall_small if area < SMALL_AREA else self.recall_medium if area < MEDIUM_AREA \
            else self.recall_large
        return base * (self.occluded_recall if occluded else 1.0)


@dataclass(frozen=True)
class NoiseEvent:
    """One perception error: ``kind`` (:data:`EVENT_KINDS`), the categories it touches, the objects
    (instance ids of the annotation rows) it concerns, and a short description."""

    image_id: str
    kind: str
    categories: tuple[str, ...]
    objects: tuple[int, ...]
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "categories": list(self.categories), "objects": list(self.objects)}


@dataclass
class _Detection:
    category: str
    mask: np.ndarray  # bool (H, W)
    score: float
    objects: tuple[int, ...]


@dataclass
class NoisyPerception:
    """The detector's rows (contract ``instances``) and the events that made them."""

    instances: pa.Table
    events: list[NoiseEvent] = field(default_factory=list)


def image_rng(seed: int, image_id: str) -> np.random.Generator:
    """One generator per (seed, image): an image's noise does not depend on the other images."""
    return np.random.default_rng([seed, zlib.crc32(image_id.encode())])


def perceive(instances: pa.Table, rates: NoiseRates = NoiseRates(), seed: int = 0) -> NoisyPerception:
    """The rows a detector + segmenter would output for the annotated ``instances`` (see the module
    docstring), with ``source = "noise:<seed>"`` and instance ids 1..n per image."""
    by_image: dict[str, list[dict[str, Any]]] = {}
    for r in instances.to_pylist():
        by_image.setdefault(r["image_id"], []).append(r)
    rows: list[dict[str, Any]] = []
    events: list[NoiseEvent] = []
    for image_id in sorted(by_image):
        dets, evs = perceive_image(image_id, by_image[image_id], rates, image_rng(seed, image_id))
        events += evs
        for k, d in enumerate(dets, start=1):
            enc = encode_mask(d.mask)
            rows.append({"image_id": image_id, "instance_id": k, "category": d.category, "bbox": list(enc.bbox),
                         "area": enc.area, "score": round(d.score, 4), "mask_rle": enc.counts,
                         "mask_height": enc.height, "mask_width": enc.width, "source": f"noise:{seed}"})
    return NoisyPerception(to_table(rows, "instances"), events)


def perceive_image(image_id: str, rows: Sequence[dict[str, Any]], rates: NoiseRates,
                   rng: np.random.Generator) -> tuple[list[_Detection], list[NoiseEvent]]:
    """One image's detections (kept, then near misses) and noise events."""
    rows = sorted(rows, key=lambda r: r["instance_id"])
    masks = [decode_rle(r["mask_rle"], r["mask_height"], r["mask_width"]).astype(bool) for r in rows]
    cats = [str(r["category"]) for r in rows]
    occluded = _occluded([r["bbox"] for r in rows], rates.occlusion_overlap)
    present = sorted(set(cats))
    kept: list[_Detection] = []
    near: list[_Detection] = []
    events: list[NoiseEvent] = []
    for r, m, c, occ in zip(rows, masks, cats, occluded, strict=True):
        oid = int(r["instance_id"])
        d = rates.recall(float(m.sum()), bool(occ))
        u, v = rng.random(), rng.uniform(rates.score_floor, 1.0)
        confused, other = rng.random() < rates.confusion, rng.random()
        label = _sibling(c, present, other) if confused else c
        if u < d:
            score = rates.min_score + (rates.max_score - rates.min_score) * d * v
            kept.append(_Detection(label, m, score, (oid,)))
            if label != c and rng.random() < rates.confusion_trace:  # the true label's own, lower score
                second = rates.shadow_score + (rates.min_score - rates.shadow_score) * rng.random() * 0.999
                near.append(_Detection(c, m, second, (oid,)))
        elif rng.random() < rates.near_miss_share:
            score = rates.shadow_score + (rates.min_score - rates.shadow_score) * v * 0.999
            near.append(_Detection(label, m, score, (oid,)))
            events.append(NoiseEvent(image_id, "near_miss", (c,), (oid,),
                                     f"{c} #{oid} only just under the threshold ({score:.2f})"))
        else:
            events.append(NoiseEvent(image_id, "miss", (c,), (oid,), f"{c} #{oid} not detected"))
            continue
        if label != c:
            events.append(NoiseEvent(image_id, "confusion", (c, label), (oid,), f"{c} #{oid} reported as {label}"))
    kept, merge_events = _merge_touching(image_id, kept, rates, rng)
    kept, split_events = _split_large(image_id, kept, rates, rng)
    events += merge_events + split_events
    out: list[_Detection] = []
    for det in kept + near:
        mask = _edge(det.mask, rates, rng)
        if mask.any():
            out.append(_Detection(det.category, mask, det.score, det.objects))
        else:
            events.append(NoiseEvent(image_id, "miss", (det.category,), det.objects,
                                     f"{det.category} mask eroded away"))
    return out, events


def _sibling(category: str, present: Sequence[str], draw: float) -> str:
    """The category a confused detection reports: a sibling, else another category of the image."""
    options = list(SIBLINGS.get(category, ())) or [c for c in present if c != category]
    return options[int(draw * len(options))] if options else category


def _occluded(boxes: Sequence[Sequence[float]], overlap: float) -> np.ndarray:
    """Per object: another object's box covers at least ``overlap`` of its box."""
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    n = b.shape[0]
    if n < 2:
        return np.zeros(n, bool)
    x0, y0, x1, y1 = b[:, 0], b[:, 1], b[:, 0] + b[:, 2], b[:, 1] + b[:, 3]
    iw = np.clip(np.minimum(x1[:, None], x1[None, :]) - np.maximum(x0[:, None], x0[None, :]), 0, None)
    ih = np.clip(np.minimum(y1[:, None], y1[None, :]) - np.maximum(y0[:, None], y0[None, :]), 0, None)
    inter = iw * ih
    np.fill_diagonal(inter, 0.0)
    own = np.maximum(b[:, 2] * b[:, 3], 1e-9)
    return np.asarray((inter / own[:, None]).max(axis=1) >= overlap)


def _grow(mask: np.ndarray, px: int) -> np.ndarray:
    img = Image.fromarray(mask.astype(np.uint8) * 255)
    return np.asarray(img.filter(ImageFilter.MaxFilter(2 * px + 1))) > 0


def _shrink(mask: np.ndarray, px: int) -> np.ndarray:
    img = Image.fromarray(mask.astype(np.uint8) * 255)
    return np.asarray(img.filter(ImageFilter.MinFilter(2 * px + 1))) > 0


def _merge_touching(image_id: str, kept: list[_Detection], rates: NoiseRates,
                    rng: np.random.Generator) -> tuple[list[_Detection], list[NoiseEvent]]:
    """Touching same-category pairs merged into one mask with probability ``rates.merge``."""
    grown = [_grow(d.mask, rates.touch_px) for d in kept]
    merged_into: dict[int, int] = {}
    events: list[NoiseEvent] = []
    for i in range(len(kept)):
        for j in range(i + 1, len(kept)):
            if i in merged_into or j in merged_into or kept[i].category != kept[j].category:
                continue
            if not (grown[i] & kept[j].mask).any():
                continue
            if rng.random() < rates.merge:
                a, b = kept[i], kept[j]
                kept[i] = _Detection(a.category, a.mask | b.mask, min(a.score, b.score), a.objects + b.objects)
                merged_into[j] = i
                events.append(NoiseEvent(image_id, "merge", (a.category,), kept[i].objects,
                                         f"two touching {a.category} reported as one"))
    return [d for k, d in enumerate(kept) if k not in merged_into], events


def _split_large(image_id: str, kept: list[_Detection], rates: NoiseRates,
                 rng: np.random.Generator) -> tuple[list[_Detection], list[NoiseEvent]]:
    """Large detections cut in two across their longer side with probability ``rates.split``."""
    out: list[_Detection] = []
    events: list[NoiseEvent] = []
    for d in kept:
        if d.mask.sum() < MEDIUM_AREA or rng.random() >= rates.split:
            out.append(d)
            continue
        ys, xs = np.nonzero(d.mask)
        first = np.zeros_like(d.mask)
        if xs.max() - xs.min() >= ys.max() - ys.min():
            cut = int(np.median(xs))
            first[:, :cut] = True
        else:
            cut = int(np.median(ys))
            first[:cut, :] = True
        halves = [d.mask & first, d.mask & ~first]
        out += [_Detection(d.category, h, d.score * 0.9, d.objects) for h in halves if h.any()]
        events.append(NoiseEvent(image_id, "split", (d.category,), d.objects, f"one {d.category} reported as two"))
    return out, events


def _edge(mask: np.ndarray, rates: NoiseRates, rng: np.random.Generator) -> np.ndarray:
    """The mask with its edge moved by ``rates.edge_px`` (grown or shrunk) or unchanged."""
    u = rng.random()
    if rates.edge_px <= 0 or u >= rates.edge_change:
        return mask
    return _grow(mask, rates.edge_px) if u < rates.edge_change / 2 else _shrink(mask, rates.edge_px)


def touching(events: Sequence[NoiseEvent], image_id: str, categories: Sequence[str]) -> list[NoiseEvent]:
    """The events of ``image_id`` that touch any of ``categories``."""
    want = set(categories)
    return [e for e in events if e.image_id == image_id and want & set(e.categories)]


__all__ = ["EVENT_KINDS", "SIBLINGS", "NoiseEvent", "NoiseRates", "NoisyPerception", "image_rng", "perceive",
           "perceive_image", "touching"]
