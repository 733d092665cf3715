"""The ``annotations`` backend: existing COCO instance annotations ↔ manifest + instances.

:func:`import_coco` reads a COCO instances JSON (segmentations as polygons, uncompressed RLE or
compressed RLE) plus the image folder it refers to, and returns the same tables the model
stages produce. Masks are never altered: a compressed RLE is kept verbatim (after checking it
decodes to the image's size), polygons and uncompressed RLE are encoded once with pycocotools.
``area`` and ``bbox`` are recomputed from the mask (COCO's polygon ``area`` differs from the mask
pixel count the contract uses). Crowd regions (``iscrowd=1``) are not instances: reject rows.

Refusals are data (:class:`~pipelines.contracts.rejects.Reject`, stage ``annotations``; quarantine rows for
image files): an annotation of an image id the JSON does not list (``coco.unknown_image``), a crowd
region (``coco.crowd_region``), an unknown category (``coco.unknown_category``), an invalid or empty
segmentation (``coco.invalid_segmentation``, ``coco.empty_mask``) and every annotation of a
quarantined image (``coco.image_quarantined``). A ``file_name`` that is absolute or resolves outside
the images folder (``../../etc/hostname``, a symlink that points out) is quarantined with code
:data:`OUTSIDE_IMAGES_FOLDER` and never opened.

:func:`match_coco_instances` matches a COCO dict to the images of a manifest shard; the detect and
segment stages' ``annotations`` backend (:class:`ShippedInstances`) uses it with the JSON that ships
next to the run's input images.

:func:`export_coco` writes instances back as a COCO JSON (compressed RLE segmentations), which
the release packs; importing an exported file gives back identical masks.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
from pycocotools import mask as mask_utils

from pipelines.contracts import to_table
from pipelines.contracts.rejects import Quarantined, Reject, count_codes, quarantine_table, rejects_table
from pipelines.detect.parser import normalize_label
from pipelines.ingest.decode import DUPLICATE, UNREADABLE, ImageRefused, decode_image
from pipelines.ingest.stage import sha256_hex
from pipelines.segment.masks import EncodedMask, from_rle
from pipelines.store.layout import BucketLayout

if TYPE_CHECKING:
    from pipelines.runner import RunEnv

log = logging.getLogger(__name__)
STAGE = "annotations"
SIZE_MISMATCH = "size_mismatch"  # quarantine code: the decoded image is not the annotated size
OUTSIDE_IMAGES_FOLDER = "outside_images_folder"  # quarantine code: file_name escapes the images folder
UNKNOWN_IMAGE = "coco.unknown_image"  # reject code: annotation of an image id the JSON does not list


def _reject(item_id: str, code: str, detail: str, raw: Any) -> Reject:
    return Reject(stage=STAGE, item_id=item_id, code=code, detail=detail, raw=raw)


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
) -> tuple[list[dict[str, Any]], list[Reject]]:
    """One image's COCO annotations → INSTANCES rows (ids 1..n in annotation-id order) and rejects.

    Crowd regions (``coco.crowd_region``), unknown categories (``coco.unknown_category``), invalid
    (``coco.invalid_segmentation``) or empty (``coco.empty_mask``) segmentations are rejects.
    """
    rows: list[dict[str, Any]] = []
    rejects: list[Reject] = []
    for ann in sorted(annotations, key=lambda a: a.get("id", 0)):
        refusal: tuple[str, str] | None = None
        category = categories.get(ann.get("category_id"), "")
        if ann.get("iscrowd", 0):
            refusal = ("coco.crowd_region", "crowd region (iscrowd=1) is not an instance")
        elif not category:
            refusal = ("coco.unknown_category", f"unknown category_id {ann.get('category_id')!r}")
        else:
            try:
                enc = segmentation_to_mask(ann.get("segmentation"), height, width)
                if enc.area == 0:
                    refusal = ("coco.empty_mask", "empty mask")
            except (ValueError, TypeError) as err:
                refusal = ("coco.invalid_segmentation", f"invalid segmentation: {err}")
        if refusal:
            rejects.append(_reject(str(ann.get("id")), *refusal, ann))
            continue
        rows.append({
            "image_id": image_id, "instance_id": len(rows) + 1, "category": category, "bbox": list(enc.bbox),
            "area": enc.area, "score": float(ann.get("score", 1.0)), "mask_rle": enc.counts,
            "mask_height": enc.height, "mask_width": enc.width, "source": source,
        })
    return rows, rejects


def image_path(images_dir: Path, file_name: Any) -> Path:
    """The file a COCO ``file_name`` names inside ``images_dir`` (symlinks resolved).

    Raises :class:`~pipelines.ingest.decode.ImageRefused` with code :data:`OUTSIDE_IMAGES_FOLDER`
    when the name is not a relative path that stays inside the folder (absolute, ``..`` out of it,
    or a symlink pointing out); nothing is opened."""
    if not isinstance(file_name, str) or not file_name.strip():
        raise ImageRefused(OUTSIDE_IMAGES_FOLDER, f"file_name is not a relative path: {file_name!r}")
    if Path(file_name).is_absolute():
        raise ImageRefused(OUTSIDE_IMAGES_FOLDER, f"absolute file_name {file_name!r}")
    root = images_dir.resolve()
    path = (root / file_name).resolve()
    if not path.is_relative_to(root):
        raise ImageRefused(OUTSIDE_IMAGES_FOLDER, f"file_name {file_name!r} resolves outside {root}")
    return path


def import_coco(
    coco_path: str | Path, images_dir: str | Path, *, shard_size: int = 200, max_pixels: int = 89_478_485,
    source: str | None = None,
) -> CocoImport:
    """COCO JSON + image folder → manifest, instances, quarantine and rejects tables.

    Images are sorted by file name and sharded by ``shard_size``; ``image_id`` is the sha256 of
    each file; ``source`` defaults to ``annotations:<json file name>``; ``score`` is the
    annotation's ``score`` if present, else 1.0 (human annotations). Only files inside
    ``images_dir`` are read (see :func:`image_path`). ``counts`` holds the totals and the number of
    quarantine rows and rejects per code."""
    coco = json.loads(Path(coco_path).read_text())
    images_dir = Path(images_dir)
    source = source or f"annotations:{Path(coco_path).name}"
    categories = {c["id"]: normalize_label(c["name"]) for c in coco.get("categories", [])}
    images = sorted(coco.get("images", []), key=lambda im: str(im.get("file_name", "")))
    image_ids = {im.get("id") for im in images}
    anns_by_image: dict[Any, list[dict]] = defaultdict(list)
    rejects: list[Reject] = []
    for ann in coco.get("annotations", []):
        if ann.get("image_id") not in image_ids:
            rejects.append(_reject(str(ann.get("id")), UNKNOWN_IMAGE,
                                   f"image_id {ann.get('image_id')!r} is not among the JSON's images", ann))
            continue
        anns_by_image[ann["image_id"]].append(ann)

    manifest: list[dict] = []
    quarantine: list[Quarantined] = []
    instances: list[dict] = []
    seen: dict[str, str] = {}
    for index, im in enumerate(images):
        uri = str(images_dir / str(im.get("file_name", "")))
        try:
            path = image_path(images_dir, im.get("file_name"))
            uri = str(path)
            try:
                data = path.read_bytes()
            except OSError as err:
                raise ImageRefused(UNREADABLE, str(err) or type(err).__name__) from None
            image_id = sha256_hex(data)
            if image_id in seen:
                raise ImageRefused(DUPLICATE, f"same bytes as {seen[image_id]}")
            decoded = decode_image(data, max_pixels=max_pixels)
            if (decoded.width, decoded.height) != (int(im["width"]), int(im["height"])):
                raise ImageRefused(
                    SIZE_MISMATCH,
                    f"decoded {decoded.width}x{decoded.height} != annotated {im['width']}x{im['height']}",
                )
        except ImageRefused as err:
            quarantine.append(Quarantined(uri=uri, code=err.code, detail=err.detail))
            rejects += [
                _reject(str(ann.get("id")), "coco.image_quarantined", f"image {uri} quarantined ({err.code})", ann)
                for ann in anns_by_image.get(im.get("id"), [])
            ]
            continue
        seen[image_id] = uri
        manifest.append({"image_id": image_id, "uri": uri, "width": decoded.width, "height": decoded.height,
                         "format": decoded.format, "shard": index // shard_size})
        rows, bad = image_instances(anns_by_image.get(im["id"], []), categories, image_id, decoded.height,
                                    decoded.width, source)
        instances += rows
        rejects += bad
    counts = {"images": len(manifest), "instances": len(instances), "quarantined": len(quarantine),
              "rejected": len(rejects), **count_codes(quarantine), **count_codes(rejects)}
    log.info("import-coco %s: %s", coco_path, counts)
    return CocoImport(to_table(manifest, "manifest"), to_table(instances, "instances"),
                      quarantine_table(quarantine), rejects_table(rejects), counts)


def match_coco_instances(
    coco: dict[str, Any], manifest: pa.Table, relative_path: Callable[[str], str],
    *, source: str = "annotations:instances.json",
) -> tuple[pa.Table, pa.Table]:
    """Instances of a manifest shard's images from a loaded COCO instances dict → (INSTANCES, REJECTS).

    Each manifest image is matched to a COCO image by ``relative_path(uri)`` (its path relative to
    the folder the JSON describes), else by its base name. An image with no entry is a reject
    (``coco.image_not_listed``), as is one whose annotated size differs from the manifest's
    (``coco.size_mismatch``); the matched images' annotations go through :func:`image_instances`."""
    cats = {c["id"]: normalize_label(c["name"]) for c in coco.get("categories", [])}
    by_file = {im["file_name"]: im for im in coco.get("images", [])}
    anns: dict[Any, list[dict]] = {}
    for a in coco.get("annotations", []):
        anns.setdefault(a["image_id"], []).append(a)
    rows: list[dict[str, Any]] = []
    rejects: list[Reject] = []
    for m in manifest.to_pylist():
        rel = relative_path(m["uri"])
        im = by_file.get(rel) or by_file.get(rel.rsplit("/", 1)[-1])
        if im is None:
            rejects.append(_reject(m["image_id"], "coco.image_not_listed", "image has no entry in instances.json",
                                   m["uri"]))
            continue
        if (int(im["width"]), int(im["height"])) != (m["width"], m["height"]):
            rejects.append(_reject(m["image_id"], "coco.size_mismatch",
                                   f"annotated size {im['width']}x{im['height']} != image {m['width']}x{m['height']}",
                                   m["uri"]))
            continue
        got, bad = image_instances(anns.get(im["id"], []), cats, m["image_id"], m["height"], m["width"], source)
        rows += got
        rejects += bad
    return to_table(rows, "instances"), rejects_table(rejects)


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


class ShippedInstances:
    """The ``annotations`` backend of a run: ``instances.json`` beside the run's input images (the input
    its ingest recorded in the run's plan), read once, matched to each manifest shard."""

    def __init__(self, env: RunEnv) -> None:
        self.env = env
        self._coco: dict[str, Any] | None = None
        self._input = ""

    def match(self, manifest: pa.Table) -> tuple[pa.Table, pa.Table]:
        """(instances, rejects) of the shard's images, as :func:`match_coco_instances` gives them."""
        if self._coco is None:
            self._input = str(self.env.store.get_json(self.env.keys.plan())["input"]).rstrip("/")
            self._coco = json.loads(self.env.images.read(BucketLayout.coco_instances(self._input)))
        base = self._input + "/"
        return match_coco_instances(self._coco, manifest, lambda uri: uri.removeprefix(base))
