"""Suites for the perception side: ``manifest``, ``quarantine``, ``instances``."""

from __future__ import annotations

import numpy as np
import pandas as pd

from expectations.checks import Check, References, SuiteSpec
from expectations.suites.common import SHA256_HEX, null_check, reasons, schema_checks
from pipelines.config import Params
from pipelines.contracts import INSTANCES, MANIFEST, QUARANTINE
from pipelines.contracts.rejects import QUARANTINE_CODE_PATTERN

# Lowercase noun phrase: words of lowercase letters/digits joined by single spaces, hyphens or '.
CATEGORY_PATTERN = r"^[a-z0-9]+(?:[ '\-][a-z0-9]+)*$"
# Box edges may sit on the image border; allow float rounding of a pixel-exact box.
BOX_TOLERANCE_PX = 1e-6


# -- manifest -------------------------------------------------------------------------------------
def manifest_checks(params: Params) -> list[Check]:
    s = "manifest"
    return [
        *schema_checks(s, MANIFEST),
        Check(f"{s}.image_id_unique", "uniqueness", "each image_id (sha256 of the bytes) appears once",
              lambda gxe, _c: gxe.ExpectColumnValuesToBeUnique(column="image_id")),
        Check(f"{s}.uri_unique", "uniqueness", "each source uri appears once",
              lambda gxe, _c: gxe.ExpectColumnValuesToBeUnique(column="uri")),
        Check(f"{s}.image_id_sha256", "range", "image_id is a lowercase sha256 hex digest",
              lambda gxe, _c: gxe.ExpectColumnValuesToMatchRegex(column="image_id", regex=SHA256_HEX)),
        Check(f"{s}.width_positive", "range", "width >= 1 pixel",
              lambda gxe, _c: gxe.ExpectColumnValuesToBeBetween(column="width", min_value=1)),
        Check(f"{s}.height_positive", "range", "height >= 1 pixel",
              lambda gxe, _c: gxe.ExpectColumnValuesToBeBetween(column="height", min_value=1)),
        Check(f"{s}.shard_non_negative", "range", "shard >= 0",
              lambda gxe, _c: gxe.ExpectColumnValuesToBeBetween(column="shard", min_value=0)),
    ]


def _no_prepare(frame: pd.DataFrame, refs: References, params: Params) -> pd.DataFrame:
    return frame


# -- quarantine -----------------------------------------------------------------------------------
def quarantine_checks(params: Params) -> list[Check]:
    s = "quarantine"
    return [
        *schema_checks(s, QUARANTINE),
        Check(f"{s}.uri_unique", "uniqueness", "each refused input is listed once",
              lambda gxe, _c: gxe.ExpectColumnValuesToBeUnique(column="uri")),
        Check(f"{s}.code_well_formed", "range", "every refused input has a refusal code (one snake-case word)",
              lambda gxe, _c: gxe.ExpectColumnValuesToMatchRegex(column="code", regex=QUARANTINE_CODE_PATTERN)),
        Check(f"{s}.detail_given", "range", "every refused input has a non-empty detail",
              lambda gxe, _c: gxe.ExpectColumnValueLengthsToBeBetween(column="detail", min_value=1)),
    ]


# -- instances ------------------------------------------------------------------------------------
def instances_checks(params: Params) -> list[Check]:
    s = "instances"
    v = params.validation
    return [
        *schema_checks(s, INSTANCES),
        Check(f"{s}.instance_id_unique", "uniqueness", "(image_id, instance_id) is unique",
              lambda gxe, _c: gxe.ExpectCompoundColumnsToBeUnique(column_list=["image_id", "instance_id"])),
        Check(f"{s}.instance_id_non_negative", "range", "instance_id >= 0",
              lambda gxe, _c: gxe.ExpectColumnValuesToBeBetween(column="instance_id", min_value=0)),
        Check(f"{s}.score_range", "range", "score is within 0..1",
              lambda gxe, _c: gxe.ExpectColumnValuesToBeBetween(column="score", min_value=0, max_value=1)),
        Check(f"{s}.area_positive", "range", "area >= 1 mask pixel",
              lambda gxe, _c: gxe.ExpectColumnValuesToBeBetween(column="area", min_value=1)),
        Check(f"{s}.category_lowercase", "range", "category is a lowercase noun phrase",
              lambda gxe, _c: gxe.ExpectColumnValuesToMatchRegex(column="category", regex=CATEGORY_PATTERN)),
        null_check(f"{s}.bbox_well_formed", "range",
                   "bbox is [x, y, w, h]: 4 finite numbers, x, y >= 0, w, h > 0", "_chk_bbox_well_formed"),
        Check(f"{s}.mask_rle_decodes", "range",
              "every RLE mask decodes (pycocotools) to mask_height x mask_width with `area` pixels",
              lambda _g, custom: custom.ExpectRleMasksToDecodeToDeclaredSizeAndArea(
                  column_list=["mask_rle", "mask_height", "mask_width", "area"])),
        null_check(f"{s}.image_in_manifest", "referential", "every instance's image is in the manifest",
                   "_chk_image_in_manifest", requires=["manifest"]),
        null_check(f"{s}.bbox_inside_image", "range",
                   "the box lies inside its image (manifest width/height)", "_chk_bbox_inside_image",
                   requires=["manifest"]),
        null_check(f"{s}.mask_size_matches_image", "referential",
                   "mask_height x mask_width equals the image's height x width", "_chk_mask_size",
                   requires=["manifest"]),
        null_check(f"{s}.category_counts", "distribution",
                   f"each category has >= {v.min_category_count} instances and <= "
                   f"{v.max_category_share:.0%} of all instances", "_chk_category_counts",
                   min_rows=v.distribution_min_rows),
    ]


def _bbox_array(bbox: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """(n, 4) float array of boxes (NaN rows where malformed) and the well-formed mask."""
    n = len(bbox)
    arr = np.full((n, 4), np.nan)
    lengths = np.fromiter((len(b) if b is not None and hasattr(b, "__len__") else -1 for b in bbox), int, n)
    four = lengths == 4
    if four.any():
        try:
            arr[four] = np.asarray([np.asarray(b, dtype=float) for b in bbox[four]], dtype=float)
        except (TypeError, ValueError):  # non-numeric entries: convert row by row
            for i in np.flatnonzero(four):
                try:
                    arr[i] = np.asarray(bbox.iloc[i], dtype=float)
                except (TypeError, ValueError):
                    four[i] = False
    x, y, w, h = arr.T
    ok = four & np.isfinite(arr).all(axis=1) & (x >= 0) & (y >= 0) & (w > 0) & (h > 0)
    return arr, ok


def prepare_instances(frame: pd.DataFrame, refs: References, params: Params) -> pd.DataFrame:
    out = frame.copy()
    idx = out.index
    if "bbox" in out:
        boxes, ok = _bbox_array(out["bbox"])
    else:
        boxes, ok = np.full((len(out), 4), np.nan), np.zeros(len(out), bool)
    out["_chk_bbox_well_formed"] = reasons(~ok, "bbox is not [x, y, w, h] with finite x, y >= 0 and w, h > 0", idx)

    if refs.manifest is not None and {"image_id", "width", "height"} <= set(refs.manifest.columns):
        sizes = refs.manifest.drop_duplicates("image_id").set_index("image_id")[["width", "height"]]
        width = out["image_id"].map(sizes["width"]).to_numpy(dtype=float)
        height = out["image_id"].map(sizes["height"]).to_numpy(dtype=float)
        known = ~np.isnan(width)
        out["_chk_image_in_manifest"] = reasons(~known, "image_id not in the manifest", idx)
        x, y, w, h = boxes.T
        inside = (x + w <= width + BOX_TOLERANCE_PX) & (y + h <= height + BOX_TOLERANCE_PX)
        outside = known & ok & ~inside
        text = pd.Series(
            [f"box [{a:g}, {b:g}, {c:g}, {d:g}] exceeds image {int(wi)}x{int(he)}" if bad else None
             for a, b, c, d, wi, he, bad in zip(x, y, w, h, width, height, outside, strict=True)]
            if outside.any() else [None] * len(out), index=idx, dtype=object)
        out["_chk_bbox_inside_image"] = reasons(outside, text, idx)
        mh = pd.to_numeric(out["mask_height"], errors="coerce").to_numpy(dtype=float)
        mw = pd.to_numeric(out["mask_width"], errors="coerce").to_numpy(dtype=float)
        wrong = known & ((mh != height) | (mw != width))
        out["_chk_mask_size"] = reasons(wrong, "mask size differs from the image size in the manifest", idx)

    v = params.validation
    counts = out["category"].map(out["category"].value_counts())
    share = counts / max(len(out), 1)
    too_few = (counts < v.min_category_count).to_numpy()
    too_many = (share > v.max_category_share).to_numpy()
    text = [
        (f"category {c!r} has {n} instances (min {v.min_category_count})" if few else
         f"category {c!r} is {s:.1%} of {len(out)} instances (max {v.max_category_share:.0%})")
        if few or many else None
        for c, n, s, few, many in zip(out["category"], counts, share, too_few, too_many, strict=True)
    ] if (too_few | too_many).any() else None
    out["_chk_category_counts"] = reasons(too_few | too_many, pd.Series(text, index=idx, dtype=object)
                                          if text else "", idx)
    return out


SUITES = [
    SuiteSpec("manifest", manifest_checks, _no_prepare, ("image_id",), MANIFEST),
    SuiteSpec("quarantine", quarantine_checks, _no_prepare, ("uri",), QUARANTINE),
    SuiteSpec("instances", instances_checks, prepare_instances, ("image_id", "instance_id"), INSTANCES),
]
