"""Binary masks ↔ COCO compressed RLE (pycocotools), and duplicate suppression by mask IoU.

Conventions, stated once: a mask is a ``bool``/``uint8`` array of shape ``(H, W)`` (row-major
numpy); its RLE is pycocotools' column-major compressed ``counts`` string for ``size = [H, W]``;
``area`` is the number of foreground pixels; ``bbox`` is ``[x, y, w, h]`` in pixels, the tight box
of the foreground pixels (``x + w`` is one past the right-most foreground column).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

RLE_MALFORMED = "mask.rle_malformed"  # reject code: counts that are not a well-formed compressed RLE
RLE_SIZE_MISMATCH = "mask.rle_size_mismatch"  # reject code: runs that do not cover exactly height x width


class RLEError(ValueError):
    """A mask RLE that cannot be trusted; ``code`` is :data:`RLE_MALFORMED` or :data:`RLE_SIZE_MISMATCH`."""

    def __init__(self, code: str, detail: str):
        super().__init__(detail)
        self.code = code


@dataclass(frozen=True)
class EncodedMask:
    counts: str
    height: int
    width: int
    area: int
    bbox: tuple[float, float, float, float]  # x, y, w, h pixels

    @property
    def rle(self) -> dict:
        return {"size": [self.height, self.width], "counts": self.counts.encode("ascii")}


def encode_mask(mask: np.ndarray) -> EncodedMask:
    """Encode one ``(H, W)`` mask. Area and bbox come from the mask itself."""
    if mask.ndim != 2:
        raise ValueError(f"mask must be 2-D (H, W), got shape {mask.shape}")
    m = np.asfortranarray(mask.astype(np.uint8, copy=False))
    rle = mask_utils.encode(m)
    return from_rle(rle)


def encode_masks(masks: Any) -> list[EncodedMask]:
    """Encode a stack ``(N, H, W)`` (numpy or torch, bool/uint8) in one pycocotools call.

    pycocotools wants column-major ``(H, W, N)``, which is exactly the memory of a C-contiguous
    ``(N, W, H)`` array; so the transpose is done where the masks live (on the GPU for torch
    tensors, where it is nearly free) before the host copy, and the view handed to pycocotools
    needs no further copy.
    """
    if masks.ndim != 3:
        raise ValueError(f"masks must be (N, H, W), got shape {tuple(masks.shape)}")
    if masks.shape[0] == 0:
        return []
    if hasattr(masks, "permute"):  # torch.Tensor
        nwh = masks.transpose(1, 2).contiguous().cpu().numpy()
    else:
        nwh = np.ascontiguousarray(np.asarray(masks).transpose(0, 2, 1))
    if nwh.dtype != np.uint8:
        nwh = nwh.view(np.uint8) if nwh.dtype == np.bool_ else (nwh != 0).view(np.uint8)
    return [from_rle(r) for r in mask_utils.encode(nwh.transpose(2, 1, 0))]


def from_rle(rle: dict) -> EncodedMask:
    """A pycocotools RLE dict (``counts`` bytes or str) → EncodedMask (area, bbox from pycocotools)."""
    h, w = (int(v) for v in rle["size"])
    area = int(mask_utils.area(rle))
    x, y, bw, bh = (float(v) for v in mask_utils.toBbox(rle))
    counts = rle["counts"].decode("ascii") if isinstance(rle["counts"], bytes) else rle["counts"]
    return EncodedMask(counts=counts, height=h, width=w, area=area, bbox=(x, y, bw, bh))


def rle_from_counts(counts: str, height: int, width: int) -> dict:
    return {"size": [int(height), int(width)], "counts": counts.encode("ascii")}


def decode_rle(counts: str, height: int, width: int) -> np.ndarray:
    """``counts`` string → ``(H, W)`` uint8 mask."""
    return mask_utils.decode(rle_from_counts(counts, height, width))


def suppress_duplicates(encoded: Sequence[EncodedMask], scores: Sequence[float], iou_threshold: float) -> list[int]:
    """Greedy non-maximum suppression on masks: indices kept, highest score first.

    A mask whose IoU with an already kept mask is >= ``iou_threshold`` is dropped, whatever its
    category (two prompts that found the same pixels found one instance).
    """
    if not encoded:
        return []
    order = sorted(range(len(encoded)), key=lambda i: (-float(scores[i]), i))
    rles = [encoded[i].rle for i in order]
    iou = mask_utils.iou(rles, rles, [0] * len(rles))
    iou = np.asarray(iou, dtype=np.float64).reshape(len(rles), len(rles))
    kept: list[int] = []
    for pos in range(len(order)):
        if all(iou[pos, k] < iou_threshold for k in kept):
            kept.append(pos)
    return [order[p] for p in kept]


def rle_counts(counts: bytes | str, height: int, width: int) -> np.ndarray:
    """Run lengths of a COCO compressed RLE ``counts`` string (the format of pycocotools'
    ``rleFrString``), decoded with numpy (int64 array).

    Runs alternate background / foreground, starting with background, in column-major pixel
    order. Raises :class:`RLEError` (a ``ValueError``) on a truncated or malformed string
    (:data:`RLE_MALFORMED`), or one that does not cover exactly ``height x width`` pixels
    (:data:`RLE_SIZE_MISMATCH`): pycocotools itself does not validate — it decodes a corrupt
    string into arbitrary (even non-deterministic) pixels — so every mask read from outside is
    checked with this first.
    """
    raw = counts.encode("ascii") if isinstance(counts, str) else bytes(counts)
    c = np.frombuffer(raw, dtype=np.uint8).astype(np.int64) - 48
    if c.shape[0] == 0:
        if height * width == 0:
            return np.zeros(0, dtype=np.int64)
        raise RLEError(RLE_MALFORMED, "empty RLE counts")
    if c.min() < 0 or c.max() >= 64:
        raise RLEError(RLE_MALFORMED, "invalid character in RLE counts")
    more = (c & 0x20) != 0
    if more[-1]:
        raise RLEError(RLE_MALFORMED, "truncated RLE counts")
    last = np.flatnonzero(~more)
    first = np.concatenate(([0], last[:-1] + 1))
    group = np.repeat(np.arange(first.shape[0]), last - first + 1)
    k = np.arange(c.shape[0]) - first[group]
    if k.max() > 11:
        raise RLEError(RLE_MALFORMED, "RLE count out of range")
    x = np.add.reduceat((c & 0x1F) << (5 * k), first)
    negative = (c[last] & 0x10) != 0
    x = np.where(negative, x - (np.int64(1) << (5 * (last - first + 1))), x)
    runs = x.copy()
    runs[1::2] = np.cumsum(x[1::2])
    runs[2::2] = np.cumsum(x[2::2])
    if runs.min() < 0:
        raise RLEError(RLE_MALFORMED, "negative run in RLE counts")
    if int(runs.sum()) != height * width:
        raise RLEError(RLE_SIZE_MISMATCH,
                       f"RLE runs cover {int(runs.sum())} pixels, not {height}x{width} = {height * width}")
    return runs


def rle_is_valid(counts: str | bytes, height: int, width: int) -> bool:
    """True when ``counts`` is a well-formed RLE of exactly ``height`` x ``width`` pixels."""
    try:
        rle_counts(counts, height, width)
    except ValueError:
        return False
    return True
