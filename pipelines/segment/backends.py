"""Segmentation backends: one interface, three model families.

* :class:`Sam3Backend` — transformers ``Sam3Model`` + ``Sam3Processor``: one **text** prompt per
  category; the image is encoded once (``get_vision_features``) and its prompts run in batches of
  ``SegmentConfig.prompt_batch`` against those shared features; masks from the official
  ``post_process_instance_segmentation``.
* :class:`Sam2Backend` — the ``sam2`` package's ``SAM2ImagePredictor`` with **box** prompts (the
  detector's boxes), images batched with ``set_image_batch`` / ``predict_batch``.
* :class:`Sam2HFBackend` — transformers ``Sam2Model`` + ``Sam2Processor`` with box prompts,
  ``post_process_masks``.

Conventions: images are RGB PIL images; prompt boxes are ``[x, y, w, h]`` pixels (COCO) and are
converted to XYXY pixels for the models; every returned mask is a ``bool`` array ``(H, W)`` at
the image's own resolution. ``mask_threshold`` is a probability for every backend (SAM2 works on
logits, so it is converted with the logit function).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np
from PIL import Image

from pipelines.config import ModelRef, SegmentConfig
from pipelines.vlm.backends import load_pretrained, locate_model, resolve_device, resolve_dtype

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Prompt:
    """What to segment: a category name, and for box-prompted backends its ``[x, y, w, h]`` box."""

    category: str
    box: tuple[float, float, float, float] | None = None


@dataclass
class RawInstance:
    category: str
    score: float
    mask: Any  # bool (H, W): numpy array or torch tensor (possibly on the GPU; encoded there)


@runtime_checkable
class SegmentBackend(Protocol):
    name: str
    needs_boxes: bool

    def setup(self) -> None: ...

    def segment(self, images: Sequence[Image.Image], prompts: Sequence[Sequence[Prompt]]) -> list[list[RawInstance]]:
        """For each image, the instances its prompts produced (before thresholds/dedup by the stage)."""
        ...

    def teardown(self) -> None: ...


def _logit(p: float) -> float:
    p = min(max(p, 1e-6), 1 - 1e-6)
    return math.log(p / (1 - p))


def _xyxy(box: tuple[float, float, float, float]) -> list[float]:
    x, y, w, h = box
    return [x, y, x + w, y + h]


def _box_of(prompt: Prompt) -> list[float]:
    """The XYXY pixel box of a box prompt (callers pass only prompts that have one)."""
    assert prompt.box is not None, "a box-prompted backend got a prompt without a box"
    return _xyxy(prompt.box)


class _TransformersBackend:
    """Common life cycle of the transformers-based backends: the model and its official processor
    are loaded once in :meth:`setup` (device and dtype from the :class:`ModelRef`)."""

    kind = ""
    config_key = ""
    model_class = ""
    processor_class = ""

    def __init__(self, ref: ModelRef, *, mask_threshold: float = 0.5):
        if not ref.model:
            raise ValueError(f"{type(self).__name__} needs segment.{self.config_key}.model (a local path or model id)")
        self.ref = ref
        self.name = f"{self.kind}:{ref.model}"
        self.mask_threshold = mask_threshold
        self.model: Any = None
        self.processor: Any = None
        self.device = ""
        self.dtype: Any = None

    def setup(self) -> None:
        if self.model is not None:
            return
        locate_model(self.ref.model, key=f"segment.{self.config_key}.model")  # before importing transformers
        import transformers

        self.device = resolve_device(self.ref.device)
        self.dtype = resolve_dtype(self.ref.dtype, self.device)
        key = f"segment.{self.config_key}.model"
        self.processor = load_pretrained(getattr(transformers, self.processor_class), self.ref.model, key)
        model_cls = getattr(transformers, self.model_class)
        self.model = load_pretrained(model_cls, self.ref.model, key, dtype=self.dtype).to(self.device).eval()

    def teardown(self) -> None:
        self.model = None
        self.processor = None


def _float32_row(out: Any, row: int) -> Any:
    """Row ``row`` of a ``Sam3Model`` output, with the four tensors post-processing reads in float32.

    Why: ``post_process_instance_segmentation`` computes ``sigmoid`` and the bilinear resize in the
    tensors' own dtype and then binarises with ``> mask_threshold``. In bfloat16 (8 significant bits)
    every probability within ~0.002 of 0.5 rounds to exactly 0.5, so ``> 0.5`` is false for every pixel
    whose mask logit is small: a model in bfloat16 gave empty masks (0 instances after ``min_area``)
    where float32 gave masks. The logits themselves keep their sign in bfloat16; computing from them in
    float32 gives float32's masks (tests/unit/segment/test_sam3_bf16.py). One row at a time, so the
    float32 copy of the masks is one prompt's (queries x 288 x 288 at full size), not the batch's.
    """
    from transformers.models.sam3.modeling_sam3 import Sam3ImageSegmentationOutput

    def f32(t: Any) -> Any:
        return None if t is None else t[row : row + 1].float()

    return Sam3ImageSegmentationOutput(pred_masks=f32(out.pred_masks), pred_boxes=f32(out.pred_boxes),
                                       pred_logits=f32(out.pred_logits), presence_logits=f32(out.presence_logits))


class Sam3Backend(_TransformersBackend):
    needs_boxes = False
    kind, config_key, model_class, processor_class = "sam3", "sam3", "Sam3Model", "Sam3Processor"

    def __init__(self, ref: ModelRef, *, score_threshold: float = 0.5, mask_threshold: float = 0.5,
                 prompt_batch: int = 16):
        super().__init__(ref, mask_threshold=mask_threshold)
        self.score_threshold = score_threshold
        self.prompt_batch = prompt_batch

    def segment(self, images: Sequence[Image.Image], prompts: Sequence[Sequence[Prompt]]) -> list[list[RawInstance]]:
        import torch
        from transformers.models.sam3.modeling_sam3 import Sam3VisionEncoderOutput

        if self.model is None:
            raise RuntimeError("Sam3Backend.setup() was not called")
        results: list[list[RawInstance]] = [[] for _ in images]
        for start in range(0, len(images), self.ref.batch_size):
            chunk = list(range(start, min(start + self.ref.batch_size, len(images))))
            pixel = self.processor(images=[images[i] for i in chunk], return_tensors="pt")
            with torch.inference_mode():
                vision = self.model.get_vision_features(pixel_values=pixel.pixel_values.to(self.device, self.dtype))
            for row, i in enumerate(chunk):
                categories = list(dict.fromkeys(p.category for p in prompts[i]))
                h, w = images[i].height, images[i].width
                for p0 in range(0, len(categories), self.prompt_batch):
                    names = categories[p0 : p0 + self.prompt_batch]
                    n = len(names)
                    shared = Sam3VisionEncoderOutput(
                        fpn_hidden_states=tuple(
                            f[row : row + 1].expand(n, -1, -1, -1) for f in vision.fpn_hidden_states
                        ),
                        fpn_position_encoding=tuple(
                            f[row : row + 1].expand(n, -1, -1, -1) for f in vision.fpn_position_encoding
                        ),
                    )
                    text = self.processor(text=names, return_tensors="pt").to(self.device)
                    with torch.inference_mode():
                        out = self.model(vision_embeds=shared, input_ids=text.input_ids,
                                         attention_mask=text.attention_mask)
                    post = [
                        self.processor.post_process_instance_segmentation(
                            _float32_row(out, k), threshold=self.score_threshold,
                            mask_threshold=self.mask_threshold, target_sizes=[(h, w)],
                        )[0]
                        for k in range(n)
                    ]
                    for name, res in zip(names, post, strict=True):
                        masks = res["masks"].bool()  # stays on the device until RLE encoding
                        scores = res["scores"].float().cpu().numpy()
                        results[i].extend(RawInstance(name, float(s), m) for m, s in zip(masks, scores, strict=True))
        return results


class Sam2Backend:
    """The ``sam2`` package. ``ref.model`` is a ``{"model": state_dict}`` checkpoint path."""

    needs_boxes = True

    def __init__(self, ref: ModelRef, config_name: str, overrides: Sequence[str] = (), *, mask_threshold: float = 0.5):
        if not ref.model:
            raise ValueError("Sam2Backend needs segment.sam2.model (a checkpoint path)")
        self.ref = ref
        self.config_name = config_name
        self.overrides = list(overrides)
        self.mask_threshold = mask_threshold
        self.name = f"sam2:{ref.model}"
        self.predictor: Any = None
        self.device = ""
        self.dtype: Any = None

    def setup(self) -> None:
        if self.predictor is not None:
            return
        locate_model(self.ref.model, key="segment.sam2.model", single_file=True)  # a one-line error if absent
        from sam2.build_sam import build_sam2
        from sam2.sam2_image_predictor import SAM2ImagePredictor

        self.device = resolve_device(self.ref.device)
        self.dtype = resolve_dtype(self.ref.dtype, self.device)
        model = build_sam2(self.config_name, ckpt_path=self.ref.model, device=self.device,
                           hydra_overrides_extra=self.overrides)
        self.predictor = SAM2ImagePredictor(model, mask_threshold=_logit(self.mask_threshold))

    def teardown(self) -> None:
        self.predictor = None

    def segment(self, images: Sequence[Image.Image], prompts: Sequence[Sequence[Prompt]]) -> list[list[RawInstance]]:
        import torch

        if self.predictor is None:
            raise RuntimeError("Sam2Backend.setup() was not called")
        results: list[list[RawInstance]] = [[] for _ in images]
        todo = [i for i in range(len(images)) if any(p.box is not None for p in prompts[i])]
        autocast = torch.autocast(self.device.split(":")[0], dtype=self.dtype,
                                  enabled=self.device.startswith("cuda") and self.dtype != torch.float32)
        for start in range(0, len(todo), self.ref.batch_size):
            chunk = todo[start : start + self.ref.batch_size]
            boxed = [[p for p in prompts[i] if p.box is not None] for i in chunk]
            with torch.inference_mode(), autocast:
                self.predictor.set_image_batch([np.asarray(images[i].convert("RGB")) for i in chunk])
                masks, scores, _ = self.predictor.predict_batch(
                    box_batch=[np.array([_box_of(p) for p in ps], dtype=np.float32) for ps in boxed],
                    multimask_output=False,
                )
            for i, ps, m, s in zip(chunk, boxed, masks, scores, strict=True):
                h, w = images[i].height, images[i].width
                m = np.asarray(m).reshape(len(ps), h, w) > 0  # predictor already thresholded
                s = np.asarray(s, dtype=np.float64).reshape(len(ps))
                results[i].extend(RawInstance(p.category, float(sc), mk) for p, mk, sc in zip(ps, m, s, strict=True))
        return results


class Sam2HFBackend(_TransformersBackend):
    """transformers ``Sam2Model`` with box prompts."""

    needs_boxes = True
    kind, config_key, model_class, processor_class = "sam2_hf", "sam2_hf", "Sam2Model", "Sam2Processor"

    def segment(self, images: Sequence[Image.Image], prompts: Sequence[Sequence[Prompt]]) -> list[list[RawInstance]]:
        import torch

        if self.model is None:
            raise RuntimeError("Sam2HFBackend.setup() was not called")
        results: list[list[RawInstance]] = [[] for _ in images]
        todo = [i for i in range(len(images)) if any(p.box is not None for p in prompts[i])]
        for start in range(0, len(todo), self.ref.batch_size):
            chunk = todo[start : start + self.ref.batch_size]
            boxed = [[p for p in prompts[i] if p.box is not None] for i in chunk]
            # the processor cannot pad ragged box lists: repeat each image's last box, drop extras after
            most = max(len(ps) for ps in boxed)
            box_lists = [[_box_of(p) for p in ps] + [_box_of(ps[-1])] * (most - len(ps)) for ps in boxed]
            inputs = self.processor(
                images=[images[i] for i in chunk],
                input_boxes=box_lists,
                return_tensors="pt",
            ).to(self.device)
            inputs["pixel_values"] = inputs["pixel_values"].to(self.dtype)
            with torch.inference_mode():
                out = self.model(**inputs, multimask_output=False)
            masks = self.processor.post_process_masks(
                out.pred_masks.float().cpu(), inputs["original_sizes"].cpu(), mask_threshold=_logit(self.mask_threshold)
            )
            scores = out.iou_scores.float().cpu().numpy()
            for row, (i, ps) in enumerate(zip(chunk, boxed, strict=True)):
                m = masks[row][: len(ps), 0].bool()
                s = scores[row, : len(ps), 0]
                results[i].extend(RawInstance(p.category, float(sc), mk) for p, mk, sc in zip(ps, m, s, strict=True))
        return results


def make_segment_backend(config: SegmentConfig) -> SegmentBackend:
    if config.backend == "sam3":
        return Sam3Backend(config.sam3, score_threshold=config.score_threshold,
                           mask_threshold=config.mask_threshold, prompt_batch=config.prompt_batch)
    if config.backend == "sam2":
        return Sam2Backend(config.sam2, config.sam2_config, config.sam2_overrides, mask_threshold=config.mask_threshold)
    if config.backend == "sam2_hf":
        return Sam2HFBackend(config.sam2_hf, mask_threshold=config.mask_threshold)
    raise ValueError(f"segment.backend {config.backend!r} is not a model (use `hopchain import-coco`)")
