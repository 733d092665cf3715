"""A *scene*: the instances of one image that hop programs may refer to.

Units and conventions (stated once, used everywhere in :mod:`pipelines.questions`):

* pixel coordinates, x to the right, y down, origin at the image's top-left corner;
* ``cx, cy`` is the mask centroid at pixel centres: mean column + 0.5, mean row + 0.5;
* ``x0, y0, x1, y1`` are the edges of the COCO box ``[x, y, w, h]``: ``x0 = x``, ``x1 = x + w``,
  ``y0 = y``, ``y1 = y + h``;
* ``area`` is the mask's pixel count;
* ``width``/``height`` are the image's size in pixels (from the manifest).

Only instances with ``score >= min_score`` and ``area >= min_area`` (defaults 0.5 and 32, part
of the contract) are in the scene; the others are left out with a reason.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

DEFAULT_MIN_SCORE = 0.5
DEFAULT_MIN_AREA = 32


@dataclass(frozen=True, eq=False)
class Scene:
    """The scene of one image, as parallel numpy arrays indexed by *position* ``0..n-1``.

    ``ids[p]`` is the contract's ``instance_id`` of position ``p``; positions are ordered by id.
    Hop values always speak in instance ids; positions are internal.
    """

    image_id: str
    width: int
    height: int
    ids: np.ndarray  # int64 (n,)
    categories: tuple[str, ...]
    area: np.ndarray  # float64 (n,), pixels
    cx: np.ndarray  # float64 (n,)
    cy: np.ndarray
    x0: np.ndarray
    y0: np.ndarray
    x1: np.ndarray
    y1: np.ndarray
    by_category: dict[str, np.ndarray] = field(repr=False)  # category -> positions (int64, sorted)
    position: dict[int, int] = field(repr=False)  # instance id -> position
    _dist: list[np.ndarray] = field(default_factory=list, repr=False)

    @property
    def n(self) -> int:
        return int(self.ids.shape[0])

    @property
    def dist(self) -> np.ndarray:
        """Pairwise centroid distances (n, n), computed once per scene on first use."""
        if not self._dist:
            dx = self.cx[:, None] - self.cx[None, :]
            dy = self.cy[:, None] - self.cy[None, :]
            self._dist.append(np.sqrt(dx * dx + dy * dy))
        return self._dist[0]

    def key(self, name: str) -> np.ndarray:
        """The per-instance array of an ordering key: ``area``, ``cx`` or ``cy``."""
        return {"area": self.area, "cx": self.cx, "cy": self.cy}[name]

    def ids_of(self, positions: Iterable[int]) -> list[int]:
        """Sorted instance ids of ``positions``."""
        return sorted(int(self.ids[p]) for p in positions)

    def table(self) -> list[dict[str, Any]]:
        """One dict per instance (id, category, box edges, area, centroid) for prompts and reports."""
        return [
            {
                "id": int(self.ids[p]),
                "category": self.categories[p],
                "box_xyxy": [round(float(v), 1) for v in (self.x0[p], self.y0[p], self.x1[p], self.y1[p])],
                "area": int(self.area[p]),
                "centroid": [round(float(self.cx[p]), 1), round(float(self.cy[p]), 1)],
            }
            for p in range(self.n)
        ]

    @classmethod
    def from_arrays(
        cls,
        image_id: str,
        width: int,
        height: int,
        ids: Sequence[int],
        categories: Sequence[str],
        bbox: Sequence[Sequence[float]] | np.ndarray,
        area: Sequence[float],
        cx: Sequence[float],
        cy: Sequence[float],
    ) -> Scene:
        """Build a scene from already-filtered per-instance values (``bbox`` as COCO ``[x, y, w, h]``)."""
        ids_a = np.asarray(ids, dtype=np.int64).reshape(-1)
        if len(set(ids_a.tolist())) != ids_a.shape[0]:
            raise ValueError(f"{image_id}: duplicate instance ids")
        order = np.argsort(ids_a, kind="stable")
        box = np.asarray(bbox, dtype=np.float64).reshape(-1, 4)[order]
        cats = tuple(str(categories[i]) for i in order)
        by_cat: dict[str, list[int]] = {}
        for p, c in enumerate(cats):
            by_cat.setdefault(c, []).append(p)
        ids_sorted = ids_a[order]
        return cls(
            image_id=image_id,
            width=int(width),
            height=int(height),
            ids=ids_sorted,
            categories=cats,
            area=np.asarray(area, dtype=np.float64).reshape(-1)[order],
            cx=np.asarray(cx, dtype=np.float64).reshape(-1)[order],
            cy=np.asarray(cy, dtype=np.float64).reshape(-1)[order],
            x0=box[:, 0].copy(),
            y0=box[:, 1].copy(),
            x1=box[:, 0] + box[:, 2],
            y1=box[:, 1] + box[:, 3],
            by_category={c: np.asarray(v, dtype=np.int64) for c, v in by_cat.items()},
            position={int(i): p for p, i in enumerate(ids_sorted.tolist())},
        )


@dataclass(frozen=True)
class SceneReject:
    """An instance or image left out of the scenes, with its reason (becomes a REJECTS row)."""

    item_id: str
    reason: str
    raw: str = ""


def mask_stats(rles: list[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Decode COCO RLEs (pycocotools) → (area, cx, cy) per mask; cx/cy are NaN for empty masks.

    Centroids are at pixel centres: mean column + 0.5, mean row + 0.5.
    """
    from pycocotools import mask as mask_utils

    n = len(rles)
    area = np.zeros(n)
    cx = np.full(n, np.nan)
    cy = np.full(n, np.nan)
    from pipelines.segment.masks import rle_is_valid

    for i, rle in enumerate(rles):
        h, w = rle["size"]
        if not rle_is_valid(rle["counts"], h, w):  # pycocotools decodes corrupt counts into garbage
            raise ValueError("corrupt RLE counts")
        m = mask_utils.decode(rle)  # (h, w) uint8, Fortran order
        cols = m.sum(axis=0, dtype=np.int64)
        rows = m.sum(axis=1, dtype=np.int64)
        a = int(cols.sum())
        area[i] = a
        if a:
            cx[i] = float(cols @ np.arange(cols.shape[0])) / a + 0.5
            cy[i] = float(rows @ np.arange(rows.shape[0])) / a + 0.5
    return area, cx, cy


def scenes_from_tables(
    instances: Any,
    manifest: Any,
    *,
    min_score: float = DEFAULT_MIN_SCORE,
    min_area: int = DEFAULT_MIN_AREA,
) -> tuple[list[Scene], list[SceneReject]]:
    """Scenes for every manifest image from the contract's ``instances`` and ``manifest`` tables.

    Both arguments are pyarrow tables (or anything with ``to_pylist()``). Masks are decoded with
    pycocotools; the mask's own pixel count is the instance's area (the contract's ``area``
    column states the same number). Left out, each with a :class:`SceneReject`:
    instances with ``score < min_score`` (``low_score``) or ``area < min_area`` (``small_area``),
    masks whose size differs from the image (``mask_size_mismatch``), undecodable masks
    (``bad_mask``), instances of images missing from the manifest (``unknown_image``).
    Images without any instance still get a (empty) scene, so every image is accounted for.
    """
    images = {r["image_id"]: r for r in manifest.to_pylist()}
    rows_by_image: dict[str, list[dict[str, Any]]] = {i: [] for i in images}
    rejects: list[SceneReject] = []
    for r in instances.to_pylist():
        iid = r["image_id"]
        item = f"{iid}#{r['instance_id']}"
        if iid not in rows_by_image:
            rejects.append(SceneReject(item, "unknown_image: image_id not in the manifest"))
            continue
        if r["score"] is None or r["score"] < min_score:
            rejects.append(SceneReject(item, f"low_score: {r['score']} < {min_score}"))
            continue
        img = images[iid]
        if (r["mask_height"], r["mask_width"]) != (img["height"], img["width"]):
            rejects.append(
                SceneReject(
                    item,
                    f"mask_size_mismatch: mask {r['mask_height']}x{r['mask_width']} "
                    f"!= image {img['height']}x{img['width']}",
                )
            )
            continue
        rows_by_image[iid].append(r)

    scenes: list[Scene] = []
    for iid, rows in rows_by_image.items():
        img = images[iid]
        kept: list[dict[str, Any]] = []
        rles: list[dict[str, Any]] = []
        seen: set[int] = set()
        for r in rows:
            if r["instance_id"] in seen:
                rejects.append(SceneReject(f"{iid}#{r['instance_id']}", "duplicate_instance_id"))
                continue
            seen.add(r["instance_id"])
            kept.append(r)
            rles.append(
                {
                    "size": [int(r["mask_height"]), int(r["mask_width"])],
                    "counts": r["mask_rle"].encode("ascii"),
                }
            )
        area = np.zeros(len(kept))
        cx = np.full(len(kept), np.nan)
        cy = np.full(len(kept), np.nan)
        good: list[int] = []
        for i, rle in enumerate(rles):
            try:
                a, x, y = mask_stats([rle])
                area[i], cx[i], cy[i] = a[0], x[0], y[0]
            except Exception as err:  # noqa: BLE001 - an undecodable mask is kept as a reject with its reason
                area[i] = -1
                rejects.append(SceneReject(f"{iid}#{kept[i]['instance_id']}", f"bad_mask: {err}"))
        for i, r in enumerate(kept):
            if area[i] < 0:
                continue
            if area[i] < max(min_area, 1):
                rejects.append(
                    SceneReject(
                        f"{iid}#{r['instance_id']}", f"small_area: {int(area[i])} < {max(min_area, 1)}"
                    )
                )
                continue
            good.append(i)
        scenes.append(
            Scene.from_arrays(
                iid,
                img["width"],
                img["height"],
                [kept[i]["instance_id"] for i in good],
                [kept[i]["category"].strip().lower() for i in good],
                np.asarray([kept[i]["bbox"] for i in good], dtype=np.float64).reshape(-1, 4),
                area[good],
                cx[good],
                cy[good],
            )
        )
    return scenes, rejects
