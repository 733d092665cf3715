"""Contract checks usable from any test or bench (raise AssertionError with a precise message)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from pipelines.contracts import INSTANCES
from pipelines.segment.masks import decode_rle


def check_instances(table: pa.Table, sizes: dict[str, tuple[int, int]] | None = None) -> None:
    """Every row meets the instances contract: ``mask_rle`` decodes (pycocotools) to
    ``mask_height`` x ``mask_width`` with exactly ``area`` pixels, ``bbox`` is the mask's tight box,
    ``instance_id`` is unique per image, scores in 0..1, categories lowercase.
    ``sizes`` (image_id → (height, width)) additionally pins each mask to its image's size."""
    assert table.schema == INSTANCES, f"schema differs from INSTANCES: {table.schema}"
    seen: set[tuple[str, int]] = set()
    for row in table.to_pylist():
        key = (row["image_id"], row["instance_id"])
        assert key not in seen, f"duplicate instance_id {key}"
        seen.add(key)
        if sizes is not None:
            assert (row["mask_height"], row["mask_width"]) == sizes[row["image_id"]], f"mask size of {key}"
        mask = decode_rle(row["mask_rle"], row["mask_height"], row["mask_width"])
        assert mask.shape == (row["mask_height"], row["mask_width"]), f"decoded shape of {key}"
        assert int(mask.sum()) == row["area"], f"area of {key}: {int(mask.sum())} != {row['area']}"
        if row["area"]:
            ys, xs = np.nonzero(mask)
            box = [float(xs.min()), float(ys.min()), float(xs.max() - xs.min() + 1), float(ys.max() - ys.min() + 1)]
            assert list(row["bbox"]) == box, f"bbox of {key}: {row['bbox']} != {box}"
        assert 0.0 <= row["score"] <= 1.0, f"score of {key}"
        assert row["category"] == row["category"].strip().lower() and row["category"], f"category of {key}"
