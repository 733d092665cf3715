"""The ``annotations`` backend: existing COCO instance annotations ↔ manifest + instances.

:func:`import_coco` reads a COCO instances JSON (segmentations as polygons, uncompressed RLE or
compressed RLE) plus the image folder it refers to, and returns the same tables the model
stages produce. Masks are never altered: a compressed RLE is kept verbatim (after checking it
decodes to the image's size), polygons and uncompressed RLE are encoded once with pycocotools.
``area`` and ``bbox`` are recomputed from the mask (COCO's polygon ``area`` differs from the mask
pixel count the contract uses). Crowd regions (``iscrowd=1``) are not instances: reject rows.

:func:`export_coco` writes instances back as a COCO JSON (compressed RLE segmentations), which
the release packs; importing an exported file gives back identical masks.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
from pycocotools import mask as mask_utils

from pipelines.contracts import to_table
from pipelines.detect.parser import normalize_label
from pipelines.ingest.decode import DUPLICATE, ImageRefused, decode_image
from pipelines.ingest.stage import sha256_hex
from pipelines.segment.masks import EncodedMask, from_rle

log = logging.getLogger(__name__)
SIZE_MISMATCH = "size_mismatch"


@dataclass
class CocoImport:
    manifest: pa.Table
    instances: pa.Table
    quarantine: pa.Table
    rejects: pa.Table
    counts: dict[str, int] = field(default_factory=dict)


def segmentation_to_mask(segmentation: Any, height: int, width: int) -> EncodedMask:
    """A COCO ``segmentation`` (polygon list, uncompressed or compressed RLE) → EncodedMask.

    Compressed ``counts`` strings are kept as given; raises ValueError when the segmentation does
    not describe a ``height`` x ``width`` mask."""
    if isinstance(segmentation, list):
        if not segmentation or any(len(p) < 6 or len(p) % 2 for p in segmentation):
            raise ValueError("polygon needs at least 3 points (6 numbers) per ring")
        rles = mask_utils.frPyObjects([list(map(float, p)) for p in segmentation], height, width)
        return from_rle(mask_utils.merge(rles))
    if isinstance(segmentation, dict) and "counts" in segmentation and "size" in segmentation:
        if [int(v) for v in segmentation["size"]] != [height, width]:
            raise ValueError(f"RLE size {segmentation['size']} != image size [{height}, {width}]")
        counts = segmentation["counts"]
        if isinstance(counts, list):
            rle = mask_utils.frPyObjects(segmentation, height, width)
        else:
            rle = {"size": [height, width], "counts": counts.encode("ascii") if isinstance(counts, str) else counts}
            decoded = mask_utils.decode(rle)  # validates the string
            if decoded.shape != (height, width):
                raise ValueError("RLE does not decode to the image size")
        return from_rle(rle)
    raise ValueError(f"unsupported segmentation: {type(segmentation).__name__}")


def image_instances(
    annotations: list[dict[str, Any]], categories: dict[Any, str], image_id: str, height: int, width: int,
    source: str,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """One image's COCO annotations → INSTANCES rows (ids 1..n in annotation-id order) and REJECTS rows.

    Crowd regions, unknown categories, invalid or empty segmentations are rejects with their reason.
    """
    rows: list[dict[str, Any]] = []
    rejects: list[dict[str, Any]] = []
    for ann in sorted(annotations, key=lambda a: a.get("id", 0)):
        reason = None
        category = categories.get(ann.get("category_id"), "")
        if ann.get("iscrowd", 0):
            reason = "crowd region (iscrowd=1) is not an instance"
        elif not category:
            reason = f"unknown category_id {ann.get('category_id')!r}"
        else:
            try:
                enc = segmentation_to_mask(ann.get("segmentation"), height, width)
                if enc.area == 0:
                    reason = "empty mask"
            except (ValueError, TypeError) as err:
                reason = f"invalid segmentation: {err}"
        if reason:
            rejects.append({"stage": "annotations", "item_id": str(ann.get("id")), "reason": reason,
                            "raw": json.dumps(ann)[:2000]})
            continue
        rows.append({
            "image_id": image_id, "instance_id": len(rows) + 1, "category": category, "bbox": list(enc.bbox),
            "area": enc.area, "score": float(ann.get("score", 1.0)), "mask_rle": enc.counts,
            "mask_height": enc.height, "mask_width": enc.width, "source": source,
        })
    return rows, rejects


def import_coco(
    coco_path: str | Path, images_dir: str | Path, *, shard_size: int = 200, max_pixels: int = 89_478_485,
    source: str | None = None,
) -> CocoImport:
    """COCO JSON + image folder → manifest, instances, quarantine and rejects tables.

    Images are sorted by file name and sharded by ``shard_size``; ``image_id`` is the sha256 of
    each file; ``source`` defaults to ``annotations:<json file name>``; ``score`` is the
    annotation's ``score`` if present, else 1.0 (human annotations)."""
    coco = json.loads(Path(coco_path).read_text())
    images_dir = Path(images_dir)
    source = source or f"annotations:{Path(coco_path).name}"
    categories = {c["id"]: normalize_label(c["name"]) for c in coco.get("categories", [])}
    anns_by_image: dict[Any, list[dict]] = defaultdict(list)
    for ann in coco.get("annotations", []):
        anns_by_image[ann["image_id"]].append(ann)

    manifest: list[dict] = []
    quarantine: list[dict] = []
    instances: list[dict] = []
    rejects: list[dict] = []
    seen: dict[str, str] = {}
    images = sorted(coco.get("images", []), key=lambda im: im["file_name"])
    for index, im in enumerate(images):
        path = (images_dir / im["file_name"]).resolve()
        uri = str(path)
        try:
            data = path.read_bytes()
            image_id = sha256_hex(data)
            if image_id in seen:
                raise ImageRefused(DUPLICATE, f"same bytes as {seen[image_id]}")
            decoded = decode_image(data, max_pixels=max_pixels)
            if (decoded.width, decoded.height) != (int(im["width"]), int(im["height"])):
                raise ImageRefused(
                    SIZE_MISMATCH,
                    f"decoded {decoded.width}x{decoded.height} != annotated {im['width']}x{im['height']}",
                )
        except OSError as err:
            quarantine.append({"uri": uri, "reason": f"unreadable: {err}"})
            continue
        except ImageRefused as err:
            quarantine.append({"uri": uri, "reason": err.reason})
            for ann in anns_by_image.get(im["id"], []):
                rejects.append({"stage": "annotations", "item_id": str(ann.get("id")),
                                "reason": f"image quarantined ({err.code})", "raw": json.dumps(ann)[:2000]})
            continue
        seen[image_id] = uri
        manifest.append({"image_id": image_id, "uri": uri, "width": decoded.width, "height": decoded.height,
                         "format": decoded.format, "shard": index // shard_size})
        rows, bad = image_instances(anns_by_image.get(im["id"], []), categories, image_id, decoded.height,
                                    decoded.width, source)
        instances += rows
        rejects += bad
    counts = {"images": len(manifest), "instances": len(instances), "quarantined": len(quarantine),
              "rejected": len(rejects)}
    log.info("import-coco %s: %s", coco_path, counts)
    return CocoImport(to_table(manifest, "manifest"), to_table(instances, "instances"),
                      to_table(quarantine, "quarantine"), to_table(rejects, "rejects"), counts)


def export_coco(manifest: pa.Table, instances: pa.Table) -> dict[str, Any]:
    """manifest + instances → a COCO instances dict (compressed RLE segmentations).

    Image ids are 1..n in manifest order, ``file_name`` is the uri's base name and
    ``hopchain_image_id`` keeps the sha256; category ids are 1..k in name order."""
    images = manifest.to_pylist()
    coco_id = {row["image_id"]: k for k, row in enumerate(images, start=1)}
    names = sorted(set(instances.column("category").to_pylist())) if instances.num_rows else []
    cat_id = {n: k for k, n in enumerate(names, start=1)}
    annotations = []
    for k, row in enumerate(
        sorted(instances.to_pylist(), key=lambda r: (coco_id.get(r["image_id"], 0), r["instance_id"])), start=1
    ):
        if row["image_id"] not in coco_id:
            raise ValueError(f"instance of image {row['image_id']} not in the manifest")
        annotations.append({
            "id": k, "image_id": coco_id[row["image_id"]], "category_id": cat_id[row["category"]],
            "segmentation": {"size": [row["mask_height"], row["mask_width"]], "counts": row["mask_rle"]},
            "area": row["area"], "bbox": list(row["bbox"]), "iscrowd": 0, "score": row["score"],
            "hopchain_instance_id": row["instance_id"], "source": row["source"],
        })
    return {
        "info": {"description": "HopChain instances", "version": "1"},
        "images": [{"id": coco_id[r["image_id"]], "file_name": Path(r["uri"]).name, "width": r["width"],
                    "height": r["height"], "hopchain_image_id": r["image_id"]} for r in images],
        "categories": [{"id": cat_id[n], "name": n, "supercategory": ""} for n in names],
        "annotations": annotations,
    }
