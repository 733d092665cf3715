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
segmentation (``coco.invalid_segmentation``, ``coco.empty_mask``), a score that is not a number in
0..1 (``coco.invalid_score``) and every annotation of a quarantined image (``coco.image_quarantined``).

Nothing from the file reaches pycocotools' rasteriser or decoder unchecked (the limits are
``ingest.*`` of :class:`~pipelines.config.IngestConfig`): an image with more than ``max_instances``
annotations has all of them refused (``instance.too_many``: a partial set would make every count
wrong); a polygon with more than ``max_polygon_vertices`` vertices (``polygon.too_many_vertices``), a
coordinate that is ``inf``/``NaN`` (``polygon.non_finite``) or outside the image by more than
``polygon_margin`` of its size (``polygon.out_of_bounds``), or a total edge length above
``max_polygon_path`` image perimeters (``polygon.too_long``: the rasteriser allocates per pixel of
edge) is refused before it is rasterised; an RLE whose stated size is not the image's, or whose runs do
not cover exactly height x width pixels, is ``mask.rle_size_mismatch``, and one that is not well-formed
``mask.rle_malformed`` (:func:`pipelines.segment.masks.rle_counts`: pycocotools decodes corrupt counts
into arbitrary pixels). A ``file_name`` that is absolute or resolves outside
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
import math
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
from pycocotools import mask as mask_utils

from pipelines.config import IngestConfig
from pipelines.contracts import to_table
from pipelines.contracts.rejects import Quarantined, Reject, count_codes, quarantine_table, rejects_table
from pipelines.detect.parser import normalize_label
from pipelines.ingest.decode import DUPLICATE, OUTSIDE_FOLDER, UNREADABLE, ImageRefused, decode_image, sha256_hex
from pipelines.ingest.sources import ImageSource
from pipelines.segment.masks import RLE_MALFORMED, RLE_SIZE_MISMATCH, EncodedMask, RLEError, from_rle, rle_counts
from pipelines.store.layout import BucketLayout

if TYPE_CHECKING:
    from pipelines.runner import RunEnv

log = logging.getLogger(__name__)
STAGE = "annotations"
SIZE_MISMATCH = "size_mismatch"  # quarantine code: the decoded image is not the annotated size
OUTSIDE_IMAGES_FOLDER = OUTSIDE_FOLDER  # quarantine code: file_name escapes the images folder
UNKNOWN_IMAGE = "coco.unknown_image"  # reject code: annotation of an image id the JSON does not list
INVALID_SEGMENTATION = "coco.invalid_segmentation"
TOO_MANY_INSTANCES = "instance.too_many"
POLYGON_NON_FINITE = "polygon.non_finite"
POLYGON_OUT_OF_BOUNDS = "polygon.out_of_bounds"
POLYGON_TOO_MANY_VERTICES = "polygon.too_many_vertices"
POLYGON_TOO_LONG = "polygon.too_long"
DEFAULT_LIMITS = IngestConfig()


class SegmentationRefused(ValueError):
    """A COCO ``segmentation`` refused before it is rasterised or decoded; ``code`` is its reject code."""

    def __init__(self, code: str, detail: str):
        super().__init__(detail)
        self.code = code


def _reject(item_id: str, code: str, detail: str, raw: Any) -> Reject:
    return Reject(stage=STAGE, item_id=item_id, code=code, detail=detail, raw=raw)


@dataclass
class CocoImport:
    manifest: pa.Table
    instances: pa.Table
    quarantine: pa.Table
    rejects: pa.Table
    counts: dict[str, int] = field(default_factory=dict)


def polygon_rings(segmentation: list[Any], height: int, width: int,
                  limits: IngestConfig = DEFAULT_LIMITS) -> list[list[float]]:
    """The rings of a COCO polygon segmentation as float lists, checked for what pycocotools'
    rasteriser cannot survive: it casts coordinates to ``int`` (``inf``/``NaN`` is undefined
    behaviour, a segfault in practice) and allocates memory per pixel of edge length (a coordinate of
    1e12 is an out-of-memory kill). Raises :class:`SegmentationRefused` (``polygon.*`` codes,
    ``coco.invalid_segmentation``); the checks use only the numbers, never the rasteriser."""
    if not segmentation or any(not isinstance(p, list) or len(p) < 6 or len(p) % 2 for p in segmentation):
        raise SegmentationRefused(INVALID_SEGMENTATION, "polygon needs at least 3 points (6 numbers) per ring")
    vertices = sum(len(p) for p in segmentation) // 2
    if vertices > limits.max_polygon_vertices:
        raise SegmentationRefused(POLYGON_TOO_MANY_VERTICES,
                                  f"{vertices} vertices > max_polygon_vertices {limits.max_polygon_vertices}")
    try:
        rings = [np.asarray(p, dtype=np.float64).reshape(-1, 2) for p in segmentation]
    except OverflowError:
        raise SegmentationRefused(POLYGON_NON_FINITE, "a coordinate too large for a float") from None
    except (TypeError, ValueError) as err:
        raise SegmentationRefused(INVALID_SEGMENTATION, f"polygon coordinates are not numbers: {err}") from None
    points = np.concatenate(rings)
    if not np.isfinite(points).all():
        raise SegmentationRefused(POLYGON_NON_FINITE, "a polygon coordinate is inf or NaN")
    m = limits.polygon_margin
    lo, hi = points.min(axis=0), points.max(axis=0)
    if lo[0] < -m * width or lo[1] < -m * height or hi[0] > (1 + m) * width or hi[1] > (1 + m) * height:
        raise SegmentationRefused(
            POLYGON_OUT_OF_BOUNDS, f"coordinates span x {lo[0]:.6g}..{hi[0]:.6g}, y {lo[1]:.6g}..{hi[1]:.6g}: "
                                   f"outside the {width}x{height} image by more than polygon_margin {m}")
    # what the rasteriser walks: each edge (the ring closed) for max(|dx|, |dy|) pixels
    path = sum(float(np.abs(np.diff(r, axis=0, append=r[:1])).max(axis=1).sum()) for r in rings)
    budget = limits.max_polygon_path * 2 * (width + height)
    if path > budget:
        raise SegmentationRefused(POLYGON_TOO_LONG, f"edges {path:.0f} px long > max_polygon_path "
                                                    f"{limits.max_polygon_path} image perimeters ({budget:.0f} px)")
    return [r.reshape(-1).tolist() for r in rings]


def _rle_size(segmentation: dict[str, Any], height: int, width: int) -> None:
    try:
        size = [int(v) for v in segmentation["size"]]
    except (TypeError, ValueError) as err:
        raise SegmentationRefused(INVALID_SEGMENTATION, f"RLE size is not [height, width]: {err}") from None
    if size != [height, width]:
        raise SegmentationRefused(RLE_SIZE_MISMATCH, f"RLE size {size} != image size [{height}, {width}]")


def _uncompressed_counts(counts: list[Any], height: int, width: int) -> None:
    """Uncompressed RLE runs: non-negative integers covering exactly ``height`` x ``width`` pixels."""
    if not all(isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in counts):
        raise SegmentationRefused(RLE_MALFORMED, "uncompressed RLE counts must be non-negative integers")
    if sum(counts) != height * width:
        raise SegmentationRefused(RLE_SIZE_MISMATCH,
                                  f"RLE runs cover {sum(counts)} pixels, not {height}x{width} = {height * width}")


def segmentation_to_mask(segmentation: Any, height: int, width: int,
                         limits: IngestConfig = DEFAULT_LIMITS) -> EncodedMask:
    """A COCO ``segmentation`` (polygon list, uncompressed or compressed RLE) → EncodedMask.

    Compressed ``counts`` strings are kept as given. Every segmentation is checked before pycocotools
    sees it (polygons: :func:`polygon_rings`; RLE: stated size == the image's, runs covering exactly
    ``height`` x ``width`` pixels). Raises :class:`SegmentationRefused` (a ``ValueError``) with the reject
    code when the segmentation does not describe a ``height`` x ``width`` mask within ``limits``."""
    if isinstance(segmentation, list):
        rles = mask_utils.frPyObjects(polygon_rings(segmentation, height, width, limits), height, width)
        return from_rle(mask_utils.merge(rles))
    if isinstance(segmentation, dict) and "counts" in segmentation and "size" in segmentation:
        _rle_size(segmentation, height, width)
        counts = segmentation["counts"]
        if isinstance(counts, list):
            _uncompressed_counts(counts, height, width)
            return from_rle(mask_utils.frPyObjects({"size": [height, width], "counts": counts}, height, width))
        if not isinstance(counts, (str, bytes)):
            raise SegmentationRefused(RLE_MALFORMED, f"RLE counts of type {type(counts).__name__}")
        try:
            rle_counts(counts, height, width)
            raw = counts.encode("ascii") if isinstance(counts, str) else counts
        except RLEError as err:
            raise SegmentationRefused(err.code, str(err)) from None
        except UnicodeEncodeError:
            raise SegmentationRefused(RLE_MALFORMED, "RLE counts are not ASCII") from None
        return from_rle({"size": [height, width], "counts": raw})
    raise SegmentationRefused(INVALID_SEGMENTATION, f"unsupported segmentation: {type(segmentation).__name__}")


def _score(ann: dict[str, Any]) -> float:
    try:
        score = float(ann.get("score", 1.0))
    except (TypeError, ValueError, OverflowError):
        score = math.nan
    if not 0.0 <= score <= 1.0:  # NaN fails too
        raise SegmentationRefused("coco.invalid_score", f"score {ann.get('score')!r} is not a number in 0..1")
    return score


def image_instances(
    annotations: list[dict[str, Any]], categories: dict[Any, str], image_id: str, height: int, width: int,
    source: str, limits: IngestConfig = DEFAULT_LIMITS,
) -> tuple[list[dict[str, Any]], list[Reject]]:
    """One image's COCO annotations → INSTANCES rows (ids 1..n in annotation-id order) and rejects.

    Crowd regions (``coco.crowd_region``), unknown categories (``coco.unknown_category``), invalid
    (``coco.invalid_segmentation``) or empty (``coco.empty_mask``) segmentations, bad scores and the
    limits of :func:`segmentation_to_mask` are rejects; more than ``limits.max_instances``
    annotations refuse all of them (``instance.too_many``).
    """
    ordered = sorted(annotations, key=lambda a: a.get("id", 0))
    if len(ordered) > limits.max_instances:
        detail = f"{len(ordered)} annotations on the image > max_instances {limits.max_instances}"
        return [], [_reject(str(a.get("id")), TOO_MANY_INSTANCES, detail, a) for a in ordered]
    rows: list[dict[str, Any]] = []
    rejects: list[Reject] = []
    for ann in ordered:
        refusal: tuple[str, str] | None = None
        category = categories.get(ann.get("category_id"), "")
        if ann.get("iscrowd", 0):
            refusal = ("coco.crowd_region", "crowd region (iscrowd=1) is not an instance")
        elif not category:
            refusal = ("coco.unknown_category", f"unknown category_id {ann.get('category_id')!r}")
        else:
            try:
                score = _score(ann)
                enc = segmentation_to_mask(ann.get("segmentation"), height, width, limits)
                if enc.area == 0:
                    refusal = ("coco.empty_mask", "empty mask")
            except SegmentationRefused as err:
                refusal = (err.code, f"invalid segmentation: {err}")
            except (ValueError, TypeError) as err:
                refusal = (INVALID_SEGMENTATION, f"invalid segmentation: {err}")
        if refusal:
            rejects.append(_reject(str(ann.get("id")), *refusal, ann))
            continue
        rows.append({
            "image_id": image_id, "instance_id": len(rows) + 1, "category": category, "bbox": list(enc.bbox),
            "area": enc.area, "score": score, "mask_rle": enc.counts,
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
    coco_path: str | Path, images_dir: str | Path, *, shard_size: int = 200, max_pixels: int | None = None,
    source: str | None = None, limits: IngestConfig = DEFAULT_LIMITS,
) -> CocoImport:
    """COCO JSON + image folder → manifest, instances, quarantine and rejects tables.

    Images are sorted by file name and sharded by ``shard_size``; ``image_id`` is the sha256 of
    each file; ``source`` defaults to ``annotations:<json file name>``; ``score`` is the
    annotation's ``score`` if present, else 1.0 (human annotations). Only files inside
    ``images_dir`` are read (see :func:`image_path`), each within ``limits.max_bytes`` (refused by its
    size, unread) and ``max_pixels`` (default ``limits.max_pixels``); the annotations are checked against
    ``limits`` (see the module doc). ``counts`` holds the totals and the number of quarantine rows and
    rejects per code."""
    max_pixels = limits.max_pixels if max_pixels is None else max_pixels
    reader = ImageSource()
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
                data = reader.read(str(path), max_bytes=limits.max_bytes)
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
                                    decoded.width, source, limits)
        instances += rows
        rejects += bad
    counts = {"images": len(manifest), "instances": len(instances), "quarantined": len(quarantine),
              "rejected": len(rejects), **count_codes(quarantine), **count_codes(rejects)}
    log.info("import-coco %s: %s", coco_path, counts)
    return CocoImport(to_table(manifest, "manifest"), to_table(instances, "instances"),
                      quarantine_table(quarantine), rejects_table(rejects), counts)


def match_coco_instances(
    coco: dict[str, Any], manifest: pa.Table, relative_path: Callable[[str], str],
    *, source: str = "annotations:instances.json", limits: IngestConfig = DEFAULT_LIMITS,
) -> tuple[pa.Table, pa.Table]:
    """Instances of a manifest shard's images from a loaded COCO instances dict → (INSTANCES, REJECTS).

    Each manifest image is matched to a COCO image by ``relative_path(uri)`` (its path relative to
    the folder the JSON describes), else by its base name. An image with no entry is a reject
    (``coco.image_not_listed``), as is one whose annotated size differs from the manifest's
    (``coco.size_mismatch``); the matched images' annotations go through :func:`image_instances`
    (within ``limits``)."""
    cats = {c["id"]: normalize_label(c["name"]) for c in coco.get("categories", [])}
    by_file = {im["file_name"]: im for im in coco.get("images", [])}
    anns: dict[Any, list[dict]] = {}
    for a in coco.get("annotations", []):
        anns.setdefault(a["image_id"], []).append(a)
    rows: list[dict[str, Any]] = []
    rejects: list[Reject] = []
    for m in manifest.to_pylist():
        im = _listed(by_file, relative_path(m["uri"]))
        if im is None:
            rejects.append(_reject(m["image_id"], "coco.image_not_listed", "image has no entry in instances.json",
                                   m["uri"]))
            continue
        if (int(im["width"]), int(im["height"])) != (m["width"], m["height"]):
            rejects.append(_reject(m["image_id"], "coco.size_mismatch",
                                   f"annotated size {im['width']}x{im['height']} != image {m['width']}x{m['height']}",
                                   m["uri"]))
            continue
        got, bad = image_instances(anns.get(im["id"], []), cats, m["image_id"], m["height"], m["width"], source,
                                   limits)
        rows += got
        rejects += bad
    return to_table(rows, "instances"), rejects_table(rejects)


def _listed(by_file: dict[str, dict], rel: str) -> dict | None:
    """The COCO image entry of an image at ``rel`` (its path relative to the JSON's folder), else the one
    of its base name, else ``None`` (what :func:`match_coco_instances` and :func:`coco_slice` both read)."""
    return by_file.get(rel) or by_file.get(rel.rsplit("/", 1)[-1])


def coco_slice(coco: dict[str, Any], uris: list[str], relative_path: Callable[[str], str]) -> dict[str, Any]:
    """The part of a COCO instances dict that :func:`match_coco_instances` reads for images ``uris``: their
    image entries and annotations, and every category. Matching a shard against its slice gives what
    matching it against the whole dict gives, at the cost of the shard instead of the whole input."""
    by_file = {im["file_name"]: im for im in coco.get("images", [])}
    images: dict[Any, dict] = {}
    for uri in uris:
        im = _listed(by_file, relative_path(uri))
        if im is not None:
            images[im["id"]] = im
    return {"categories": coco.get("categories", []), "images": list(images.values()),
            "annotations": [a for a in coco.get("annotations", []) if a.get("image_id") in images]}


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


#: the name of ingest's per-shard document holding the shard's slice of ``instances.json``
SHIPPED = "shipped"


def shipped_coco(env: RunEnv, input_uri: str) -> dict[str, Any] | None:
    """The COCO instances shipped with ``input_uri`` when detect or segment reads them (their
    ``annotations`` backend) and the input has them; else ``None``."""
    p = env.params
    if "annotations" not in (p.detect.backend, p.segment.backend):
        return None
    from minio.error import S3Error

    key = BucketLayout.coco_instances(input_uri.rstrip("/"))
    try:
        return dict(json.loads(env.images.read(key)))
    except FileNotFoundError:
        return None
    except S3Error as err:  # the object store's "not found"; any other failure is raised
        if err.code in ("NoSuchKey", "NoSuchObject", "NotFound"):
            return None
        raise


def shipped_slices(coco: dict[str, Any], input_uri: str, manifests: dict[int, pa.Table]) -> dict[int, dict[str, Any]]:
    """Each shard's :func:`coco_slice` of the shipped instances (ingest hands them on as documents)."""
    base = input_uri.rstrip("/") + "/"
    return {n: coco_slice(coco, m.column("uri").to_pylist(), lambda uri: uri.removeprefix(base))
            for n, m in manifests.items()}


class ShippedInstances:
    """The ``annotations`` backend of a run: ``instances.json`` beside the run's input images (the input
    its ingest recorded in the run's plan), matched to each manifest shard.

    A shard reads its own slice, which ingest wrote beside the plan (``ingest/shipped/shard-NNNNN.json``):
    reading the whole file in every shard task made a night's cost grow with the square of its size
    (bench/scale.py: detect and segment per image x2.0 and x1.8 from 1,000 to 7,000 images). A run
    ingested without slices (an older run resumed) reads the whole file once per process."""

    def __init__(self, env: RunEnv) -> None:
        self.env = env
        self._coco: dict[str, Any] | None = None
        self._input = ""

    def match(self, manifest: pa.Table, shard: int | None = None) -> tuple[pa.Table, pa.Table]:
        """(instances, rejects) of the shard's images, as :func:`match_coco_instances` gives them."""
        if not self._input:
            self._input = str(self.env.store.get_json(self.env.keys.plan())["input"]).rstrip("/")
        coco = None
        if shard is not None:
            key = self.env.keys.shard_document("ingest", SHIPPED, shard)
            if self.env.store.exists(key):
                coco = self.env.store.get_json(key)
        if coco is None:
            if self._coco is None:
                self._coco = json.loads(self.env.images.read(BucketLayout.coco_instances(self._input)))
            coco = self._coco
        base = self._input + "/"
        return match_coco_instances(coco, manifest, lambda uri: uri.removeprefix(base),
                                    limits=self.env.params.ingest)
