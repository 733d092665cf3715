"""Synthetic scenes and contract tables for tests and benchmarks (deterministic from a seed).

``random_scene`` builds a :class:`Scene` directly (fast, for property tests and the generator
bench). ``synthetic_tables`` builds real contract tables — instances with pycocotools RLE masks
(filled ellipses inside their boxes) and a manifest — and, with ``image_dir``, writes matching
PNG images so the VLM writer can draw set-of-mark images from them.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np

from pipelines.questions.scene import Scene

VOCAB = (
    "cup",
    "bottle",
    "dog",
    "person",
    "chair",
    "car",
    "book",
    "apple",
    "bird",
    "traffic light",
    "bus",
    "knife",
    "bench",
    "umbrella",
    "clock",
    "potted plant",
)


def _layout(rng: np.random.Generator, n: int, width: int, height: int, n_categories: int | None):
    k = n_categories or max(2, min(len(VOCAB), int(np.ceil(n / 3))))
    cats = rng.choice(len(VOCAB), size=k, replace=False)
    weights = rng.dirichlet(np.full(k, 1.5))
    labels = [VOCAB[cats[i]] for i in rng.choice(k, size=n, p=weights)]
    side = np.exp(rng.uniform(np.log(0.04), np.log(0.3), size=(n, 1))) * min(width, height)
    aspect = np.exp(rng.uniform(-0.6, 0.6, size=(n, 1)))
    wh = np.hstack([side * aspect, side / aspect])
    wh = np.minimum(np.maximum(wh, 8.0), [width - 2, height - 2])
    xy = rng.uniform(0, 1, size=(n, 2)) * ([width, height] - wh)
    return np.floor(np.hstack([xy, wh])), labels


def random_scene(
    seed: int,
    n_instances: int,
    *,
    width: int = 640,
    height: int = 480,
    n_categories: int | None = None,
    image_id: str | None = None,
    colors: bool = True,
) -> Scene:
    """A random scene of ``n_instances`` boxes; centroids jittered inside each box, areas
    ``w * h * fill`` with fill in [0.5, 0.8] (a filled ellipse covers ~0.785); with ``colors``,
    each instance gets one of four colour terms (15% none)."""
    rng = np.random.default_rng(seed)
    box, labels = _layout(rng, n_instances, width, height, n_categories)
    jitter = rng.uniform(0.35, 0.65, size=(n_instances, 2))
    cx = box[:, 0] + box[:, 2] * jitter[:, 0]
    cy = box[:, 1] + box[:, 3] * jitter[:, 1]
    area = np.round(box[:, 2] * box[:, 3] * rng.uniform(0.5, 0.8, size=n_instances))
    iid = image_id or hashlib.sha256(f"synthetic:{seed}:{n_instances}".encode()).hexdigest()
    palette = ("red", "blue", "green", "yellow")
    cols = (
        [None if rng.random() < 0.15 else palette[int(rng.integers(len(palette)))] for _ in range(n_instances)]
        if colors
        else None
    )
    return Scene.from_arrays(
        iid, width, height, np.arange(1, n_instances + 1), labels, box, area, cx, cy, colors=cols
    )


def ellipse_mask(box: np.ndarray, width: int, height: int) -> np.ndarray:
    """A filled ellipse inscribed in the COCO box ``[x, y, w, h]``, as an (height, width) uint8 mask."""
    x, y, w, h = (float(v) for v in box)
    rows = np.arange(height)[:, None] + 0.5
    cols = np.arange(width)[None, :] + 0.5
    inside = ((cols - (x + w / 2)) / (w / 2)) ** 2 + ((rows - (y + h / 2)) / (h / 2)) ** 2 <= 1.0
    return inside.astype(np.uint8)


def synthetic_tables(
    seed: int,
    n_images: int,
    n_instances: int,
    *,
    width: int = 320,
    height: int = 240,
    image_dir: str | Path | None = None,
):
    """(instances, manifest) pyarrow tables in the contract's schemas.

    Each image gets ``n_instances`` ellipse masks; scores are in [0.55, 1.0] except that every
    fifth instance gets score 0.1 (below the near-threshold band; it must be left out of the scene).
    With ``image_dir``, a PNG
    per image is written (ellipses drawn in per-category colours) and ``image_id`` is its sha256.
    """
    from PIL import Image, ImageDraw
    from pycocotools import mask as mask_utils

    from pipelines.contracts import to_table

    inst_rows, man_rows = [], []
    for k in range(n_images):
        rng = np.random.default_rng([seed, k])
        box, labels = _layout(rng, n_instances, width, height, None)
        img = Image.new("RGB", (width, height), tuple(int(v) for v in rng.integers(40, 90, 3)))
        draw = ImageDraw.Draw(img)
        for b, lab in zip(box, labels, strict=True):
            colour = tuple(hashlib.sha256(lab.encode()).digest()[:3])
            draw.ellipse([b[0], b[1], b[0] + b[2] - 1, b[1] + b[3] - 1], fill=colour)
        buf = io.BytesIO()
        img.save(buf, format="PNG")
        data = buf.getvalue()
        image_id = hashlib.sha256(data).hexdigest()
        uri = f"synthetic://{seed}/{k}.png"
        if image_dir is not None:
            path = Path(image_dir) / f"{image_id[:16]}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            uri = str(path)
        man_rows.append(
            {"image_id": image_id, "uri": uri, "width": width, "height": height, "format": "PNG", "shard": 0}
        )
        for i, (b, lab) in enumerate(zip(box, labels, strict=True)):
            m = ellipse_mask(b, width, height)
            rle = mask_utils.encode(np.asfortranarray(m))
            inst_rows.append(
                {
                    "image_id": image_id,
                    "instance_id": i + 1,
                    "category": lab,
                    "bbox": [float(v) for v in b],
                    "area": int(m.sum()),
                    "score": 0.1 if i % 5 == 4 else float(rng.uniform(0.55, 1.0)),
                    "mask_rle": rle["counts"].decode("ascii"),
                    "mask_height": height,
                    "mask_width": width,
                    "source": "synthetic:ellipses",
                }
            )
    return to_table(inst_rows, "instances"), to_table(man_rows, "manifest")
