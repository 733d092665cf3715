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


#: the most pixels a mask may have for :func:`rle_counts_many` to vouch for it (sums of pixel indices
#: stay exact in float64 below it, so callers' float arithmetic matches the one-mask path bit for bit)
MANY_MAX_PIXELS = 1 << 26


def rle_counts_many(counts: Sequence[bytes | str], pixels: Sequence[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Run lengths of many COCO RLE strings in one numpy pass: ``(runs, offsets, clean)``.

    ``runs[offsets[i]:offsets[i + 1]]`` are string ``i``'s runs exactly as :func:`rle_counts` gives them
    when ``clean[i]``; ``pixels[i]`` is its mask's ``height * width``. A string that is not clean — not a
    ``str``/``bytes``, empty, malformed, not covering its pixels, or of a mask over
    :data:`MANY_MAX_PIXELS` — must go through :func:`rle_counts` (which says what is wrong with it);
    its runs here are meaningless. Decoding a table's masks one by one costs ~30 small numpy calls
    each; this costs about as many for all of them.
    """
    n = len(counts)
    raw = [c.encode("ascii") if isinstance(c, str) and c.isascii() else c if isinstance(c, bytes) else b""
           for c in counts]
    typed = np.fromiter((isinstance(c, (str, bytes)) and (not isinstance(c, str) or c.isascii()) for c in counts),
                        dtype=bool, count=n)
    lens = np.fromiter((len(b) for b in raw), dtype=np.int64, count=n)
    size = np.asarray(pixels, dtype=np.int64).reshape(n)
    clean = typed & (lens > 0) & (size <= MANY_MAX_PIXELS)
    c = np.frombuffer(b"".join(raw), dtype=np.uint8).astype(np.int64) - 48
    if c.shape[0] == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(n + 1, dtype=np.int64), np.zeros(n, dtype=bool)
    char_end = np.cumsum(lens)
    string_of_char = np.repeat(np.arange(n), lens)
    bad_char = (c < 0) | (c >= 64)
    more = (c & 0x20) != 0
    last_char = char_end[lens > 0] - 1
    clean[lens > 0] &= ~more[last_char]  # truncated: the last group never ends
    more[last_char] = False  # a group never runs into the next string
    clean &= np.bincount(string_of_char, weights=bad_char, minlength=n) == 0
    last = np.flatnonzero(~more)
    first = np.concatenate(([0], last[:-1] + 1))
    glen = last - first + 1
    string_of_group = string_of_char[first]
    too_long = glen > 12
    clean &= np.bincount(string_of_group, weights=too_long, minlength=n) == 0
    k = np.minimum(np.arange(c.shape[0]) - np.repeat(first, glen), 11)
    x = np.add.reduceat((c & 0x1F) << (5 * k), first)
    negative = (c[last] & 0x10) != 0
    x = np.where(negative, x - (np.int64(1) << (5 * np.minimum(glen, 12))), x)
    groups = np.bincount(string_of_group, minlength=n)
    offsets = np.concatenate(([0], np.cumsum(groups)))
    m = np.arange(x.shape[0]) - offsets[string_of_group]  # run index within its string
    runs = x.copy()
    for parity in (1, 0):  # runs m > 2 are deltas on run m - 2 (pycocotools' rleFrString)
        sel = (m % 2 == parity) & (m >= 1)
        vals = np.where(sel, x, 0)
        csum = np.cumsum(vals)
        base = np.zeros(n, dtype=np.int64)
        nonempty = groups > 0
        base[nonempty] = csum[offsets[:-1][nonempty]] - vals[offsets[:-1][nonempty]]
        runs = np.where(sel, csum - base[string_of_group], runs)
    has = groups > 0
    starts = offsets[:-1][has]
    total = np.zeros(n, dtype=np.int64)
    low = np.zeros(n, dtype=np.int64)
    high = np.zeros(n, dtype=np.int64)
    total[has] = np.add.reduceat(runs, starts)
    low[has] = np.minimum.reduceat(runs, starts)
    high[has] = np.maximum.reduceat(runs, starts)
    clean &= has & (low >= 0) & (high <= size) & (total == size)
    return runs, offsets, clean
