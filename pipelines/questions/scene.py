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

Besides geometry, a scene knows what a *person* can do with each instance (docs/hop-programs.md,
"Within a person's reach"):

* ``color``: the instance's basic colour term from its mask's pixels, or ``None`` when no term
  clearly dominates (:mod:`pipelines.questions.color`) or no image was given;
* ``whole``: the instance is neither cut by the image border (its box is at least
  ``border_px`` = 2 px from every edge) nor possibly hidden (no other instance's box covers
  ``>= occlusion_overlap`` = 25% of its box) — only whole instances are compared by size;
* ``visible``: its mask covers ``>= visible_area_frac`` = 0.1% of the image;
* ``uncountable``: categories a reader cannot enumerate reliably — with a member that is not
  visible, or with a near-threshold detection (``shadow_score <= score < min_score``) that a
  reader may count although the scene does not. No hop ever names them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pipelines.contracts.rejects import Reject

DEFAULT_MIN_SCORE = 0.5
DEFAULT_MIN_AREA = 32
DEFAULT_SHADOW_SCORE = 0.3
VISIBLE_AREA_FRAC = 0.001
OCCLUSION_OVERLAP = 0.25
BORDER_PX = 2.0
STAGE = "questions"  # the ``stage`` of every reject the questions modules write


def question_reject(item_id: str, code: str, detail: str, raw: Any = "") -> Reject:
    """A reject of the questions stage (``code`` dotted, e.g. ``scene.low_score``)."""
    return Reject(stage=STAGE, item_id=item_id, code=code, detail=detail, raw=raw)


@dataclass(frozen=True)
class NearMiss:
    """A detection just under the score threshold: not in the scene, but a reader may see it."""

    category: str
    bbox: tuple[float, float, float, float]  # COCO [x, y, w, h]
    area: float
    cx: float
    cy: float
    score: float


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
    color: tuple[str | None, ...] = ()  # basic colour term per position, None = not clear-cut
    whole: np.ndarray = field(default_factory=lambda: np.zeros(0, bool), repr=False)
    visible: np.ndarray = field(default_factory=lambda: np.zeros(0, bool), repr=False)
    uncountable: frozenset[str] = frozenset()
    # the detector's confidence per position (empty: all 1.0, as for annotations)
    score: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False)
    # near-threshold detections left out of the scene (shadow_score <= score < min_score), which a
    # reader may see: what the stability check adds back (pipelines.questions.stability)
    near_misses: tuple[NearMiss, ...] = ()
    _dist: list[np.ndarray] = field(default_factory=list, repr=False)
    # per (reference, relation, gap): which positions lie in the boundary band and which beyond it
    # (pipelines.questions.ops.relate); geometry only, so a scene replaced with other flags shares it
    _bands: dict[tuple[int, str, float], tuple[np.ndarray, np.ndarray]] = field(default_factory=dict, repr=False)

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

    def countable(self, category: str) -> bool:
        """True when a reader can enumerate every instance of ``category`` (see the module doc)."""
        return category in self.by_category and category not in self.uncountable

    def score_of(self, p: int) -> float:
        return float(self.score[p]) if self.score.shape[0] else 1.0

    def bbox(self) -> np.ndarray:
        """COCO boxes ``[x, y, w, h]`` (n, 4) by position."""
        return np.stack([self.x0, self.y0, self.x1 - self.x0, self.y1 - self.y0], axis=1).reshape(-1, 4)

    def color_of(self, p: int) -> str | None:
        return self.color[p] if self.color else None

    def ids_of(self, positions: Iterable[int]) -> list[int]:
        """Sorted instance ids of ``positions``."""
        return sorted(int(self.ids[p]) for p in positions)

    def positions_of(self, ids: Iterable[int]) -> np.ndarray:
        """The positions of instance ``ids`` (an executed hop's value), in their order; ids the scene
        does not hold are left out."""
        return np.asarray([self.position[int(i)] for i in ids if int(i) in self.position], dtype=np.int64)

    def table(self) -> list[dict[str, Any]]:
        """One dict per instance (id, category, box edges, area, centroid, colour or None, whole)
        for prompts and reports."""
        return [
            {
                "id": int(self.ids[p]),
                "category": self.categories[p],
                "box_xyxy": [round(float(v), 1) for v in (self.x0[p], self.y0[p], self.x1[p], self.y1[p])],
                "area": int(self.area[p]),
                "centroid": [round(float(self.cx[p]), 1), round(float(self.cy[p]), 1)],
                "color": self.color_of(p),
                "whole": bool(self.whole[p]) if self.whole.shape[0] else True,
            }
            for p in range(self.n)
        ]

    @classmethod
    def from_arrays(
        cls,
        image_id: str,
        width: int,
        height: int,
        ids: Sequence[int] | np.ndarray,
        categories: Sequence[str],
        bbox: Sequence[Sequence[float]] | np.ndarray,
        area: Sequence[float] | np.ndarray,
        cx: Sequence[float] | np.ndarray,
        cy: Sequence[float] | np.ndarray,
        *,
        colors: Sequence[str | None] | None = None,
        shadow: Iterable[str] = (),
        visible_area_frac: float = VISIBLE_AREA_FRAC,
        occlusion_overlap: float = OCCLUSION_OVERLAP,
        scores: Sequence[float] | np.ndarray | None = None,
        near_misses: Sequence[NearMiss] = (),
    ) -> Scene:
        """Build a scene from already-filtered per-instance values (``bbox`` as COCO ``[x, y, w, h]``).

        ``colors``: colour term per instance (``None`` entries: not clear-cut; ``None``: unknown);
        ``shadow``: categories with a near-threshold detection left out of the scene (uncountable);
        ``scores``: the detector's confidence per instance (``None``: all 1.0); ``near_misses``: the
        near-threshold detections themselves (for the stability check).
        """
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
        n = ids_a.shape[0]
        area_a = np.asarray(area, dtype=np.float64).reshape(-1)[order]
        x0, y0 = box[:, 0], box[:, 1]
        x1, y1 = box[:, 0] + box[:, 2], box[:, 1] + box[:, 3]
        inside = (x0 >= BORDER_PX) & (y0 >= BORDER_PX) & (x1 <= width - BORDER_PX) & (y1 <= height - BORDER_PX)
        if n > 1:
            iw = np.clip(np.minimum(x1[:, None], x1[None, :]) - np.maximum(x0[:, None], x0[None, :]), 0, None)
            ih = np.clip(np.minimum(y1[:, None], y1[None, :]) - np.maximum(y0[:, None], y0[None, :]), 0, None)
            inter = iw * ih
            np.fill_diagonal(inter, 0.0)
            own = np.maximum(box[:, 2] * box[:, 3], 1e-9)
            covered = (inter / own[:, None]).max(axis=1) < occlusion_overlap
        else:
            covered = np.ones(n, bool)
        visible = area_a >= visible_area_frac * width * height
        uncountable = {c for c in by_cat if not visible[by_cat[c]].all()} | (set(shadow) & set(by_cat))
        cols: tuple[str | None, ...] = tuple(colors[i] for i in order) if colors is not None else ()
        return cls(
            image_id=image_id,
            width=int(width),
            height=int(height),
            ids=ids_sorted,
            categories=cats,
            area=area_a,
            cx=np.asarray(cx, dtype=np.float64).reshape(-1)[order],
            cy=np.asarray(cy, dtype=np.float64).reshape(-1)[order],
            x0=x0.copy(),
            y0=y0.copy(),
            x1=x1,
            y1=y1,
            by_category={c: np.asarray(v, dtype=np.int64) for c, v in by_cat.items()},
            position={int(i): p for p, i in enumerate(ids_sorted.tolist())},
            color=cols,
            whole=inside & covered,
            visible=visible,
            uncountable=frozenset(uncountable),
            score=np.asarray(scores, dtype=np.float64).reshape(-1)[order] if scores is not None else np.zeros(0),
            near_misses=tuple(near_misses),
        )


def rle_stats(
    counts: bytes | str, height: int, width: int, image: np.ndarray | None = None
) -> tuple[int, float, float, str | None]:
    """(area, cx, cy, colour) of one COCO RLE mask without decoding it to pixels.

    Area and centroid come from the foreground runs in closed form (column-major pixel index
    ``p``: column ``p // height``, row ``p % height``; centroids at pixel centres). The colour is
    named from at most :data:`~pipelines.questions.color.SAMPLE_PIXELS` pixels of ``image``
    ((height, width, 3) uint8), evenly spaced along the runs; ``None`` without an image.
    """
    from pipelines.questions.color import colors_of_samples

    area, cx, cy, sample = _rle_geometry(counts, height, width, image is not None)
    color = colors_of_samples([image[sample % height, sample // height]])[0] if image is not None else None
    return area, cx, cy, color


def _rle_geometry(
    counts: bytes | str, height: int, width: int, want_sample: bool
) -> tuple[int, float, float, np.ndarray]:
    """(area, cx, cy, column-major indices of up to SAMPLE_PIXELS evenly spaced mask pixels)."""
    from pipelines.questions.color import SAMPLE_PIXELS
    from pipelines.segment.masks import rle_counts

    runs = rle_counts(counts, height, width)
    ends = np.cumsum(runs)
    fg_len = runs[1::2]
    fg_start = (ends - runs)[1::2]
    keep = fg_len > 0
    fg_start, fg_len = fg_start[keep], fg_len[keep]
    area = int(fg_len.sum())
    if area == 0:
        return 0, float("nan"), float("nan"), _EMPTY_I64
    s = fg_start.astype(np.float64)
    e = s + fg_len
    sum_p = float(((s + e - 1) * fg_len).sum()) / 2

    def cols_before(n: np.ndarray) -> np.ndarray:  # sum of floor(p / height) for p < n
        q, r = n // height, n % height
        return height * q * (q - 1) / 2 + r * q

    sum_col = float((cols_before(fg_start + fg_len) - cols_before(fg_start)).sum())
    sum_row = sum_p - height * sum_col
    sample = _EMPTY_I64
    if want_sample:
        m = min(area, SAMPLE_PIXELS)
        t = ((np.arange(m) + 0.5) * (area / m)).astype(np.int64)
        inclusive = np.cumsum(fg_len)
        run = np.searchsorted(inclusive, t, side="right")
        sample = fg_start[run] + t - (inclusive[run] - fg_len[run])
    return area, sum_col / area + 0.5, sum_row / area + 0.5, sample


_EMPTY_I64 = np.zeros(0, dtype=np.int64)
Geometry = tuple[int, float, float, np.ndarray]


def _rle_geometry_many(counts: Sequence[Any], height: int, width: int, want_sample: bool) -> list[Geometry | None]:
    """:func:`_rle_geometry` of many masks of one ``height x width`` image in one vectorised pass.

    Entry ``i`` equals ``_rle_geometry(counts[i], ...)`` bit for bit, or is ``None`` where mask ``i``
    needs the one-mask path (undecodable, or one that path would refuse: it raises the reason). The
    sums are exact integers (in int64 here, exact in float64 there), so the floats come out the same.
    """
    from pipelines.questions.color import SAMPLE_PIXELS
    from pipelines.segment.masks import rle_counts_many

    n = len(counts)
    if n == 0:
        return []
    h = int(height)
    runs, offsets, clean = rle_counts_many(counts, [h * int(width)] * n)
    string = np.repeat(np.arange(n), np.diff(offsets))
    local = np.arange(runs.shape[0]) - offsets[string]
    csum = np.cumsum(runs)
    ends = csum - np.concatenate(([0], csum))[offsets[string]]  # cumulative within each mask
    fg = (local % 2 == 1) & (runs > 0) & clean[string]
    fg_len = runs[fg]
    fg_start = (ends - runs)[fg]
    fg_end = fg_start + fg_len
    owner = string[fg]

    def cols_before(p: np.ndarray) -> np.ndarray:  # sum of floor(q / h) for q < p, exactly
        q, r = p // h, p % h
        return h * q * (q - 1) // 2 + r * q

    area = np.zeros(n, dtype=np.int64)
    np.add.at(area, owner, fg_len)
    sum_p2 = np.zeros(n, dtype=np.int64)  # twice the sum of the pixel indices
    np.add.at(sum_p2, owner, (fg_start + fg_end - 1) * fg_len)
    sum_col = np.zeros(n, dtype=np.int64)
    np.add.at(sum_col, owner, cols_before(fg_end) - cols_before(fg_start))
    samples: list[np.ndarray] = [_EMPTY_I64] * n
    if want_sample:
        m = np.minimum(area, SAMPLE_PIXELS)
        inclusive = np.cumsum(fg_len)
        before = np.zeros(n, dtype=np.int64)  # mask pixels of the masks before each mask
        before[1:] = np.cumsum(area)[:-1]
        pick = np.repeat(np.arange(n), m)
        k = np.arange(pick.shape[0]) - np.repeat(np.cumsum(m) - m, m)
        ratio = np.where(m > 0, area / np.maximum(m, 1), 0.0)
        t = ((k + 0.5) * ratio[pick]).astype(np.int64)
        run = np.searchsorted(inclusive, t + before[pick], side="right")
        flat = fg_start[run] + t + before[pick] - (inclusive[run] - fg_len[run])
        bounds = np.concatenate(([0], np.cumsum(m)))
        samples = [flat[bounds[i]:bounds[i + 1]] for i in range(n)]
    out: list[Geometry | None] = []
    for i in range(n):
        if not clean[i]:
            out.append(None)
        elif area[i] == 0:
            out.append((0, float("nan"), float("nan"), _EMPTY_I64))
        else:
            a, sc = int(area[i]), int(sum_col[i])
            sum_row = sum_p2[i] // 2 - h * sc
            out.append((a, float(sc) / a + 0.5, float(sum_row) / a + 0.5, samples[i]))
    return out


ImageArrays = Callable[[str], "np.ndarray | None"]


def scenes_from_tables(
    instances: Any,
    manifest: Any,
    *,
    min_score: float = DEFAULT_MIN_SCORE,
    min_area: int = DEFAULT_MIN_AREA,
    shadow_score: float = DEFAULT_SHADOW_SCORE,
    images: ImageArrays | None = None,
    visible_area_frac: float = VISIBLE_AREA_FRAC,
    occlusion_overlap: float = OCCLUSION_OVERLAP,
) -> tuple[list[Scene], list[Reject]]:
    """Scenes for every manifest image from the contract's ``instances`` and ``manifest`` tables.

    Both arguments are pyarrow tables (or anything with ``to_pylist()``). Area and centroid come
    from the RLE runs (:func:`rle_stats`); the mask's own pixel count is the instance's area.
    ``images(image_id)`` gives the image as an (H, W, 3) uint8 array (or ``None``) for colour
    naming; without it no instance has a colour. Left out, each with a
    :class:`~pipelines.contracts.rejects.Reject` of code: instances with ``score < min_score``
    (``scene.low_score``; those with ``score >= shadow_score`` make their category uncountable) or
    ``area < min_area`` (``scene.small_area``), masks whose size differs from the image
    (``scene.mask_size_mismatch``), undecodable masks (``scene.bad_mask``), repeated instance ids
    (``scene.duplicate_instance_id``), instances of images missing from the manifest
    (``scene.unknown_image``). Images without any instance still get a (empty)
    scene, so every image is accounted for.
    """
    images_by_id = {r["image_id"]: r for r in manifest.to_pylist()}
    rows_by_image: dict[str, list[dict[str, Any]]] = {i: [] for i in images_by_id}
    shadow: dict[str, set[str]] = {i: set() for i in images_by_id}
    near_rows: dict[str, list[dict[str, Any]]] = {i: [] for i in images_by_id}
    rejects: list[Reject] = []
    for r in instances.to_pylist():
        iid = r["image_id"]
        item = f"{iid}#{r['instance_id']}"
        if iid not in rows_by_image:
            rejects.append(question_reject(item, "scene.unknown_image", "image_id not in the manifest"))
            continue
        if r["score"] is None or r["score"] < min_score:
            rejects.append(question_reject(item, "scene.low_score", f"score {r['score']} < {min_score}"))
            if r["score"] is not None and r["score"] >= shadow_score:
                shadow[iid].add(str(r["category"]).strip().lower())
                near_rows[iid].append(r)
            continue
        img = images_by_id[iid]
        if (r["mask_height"], r["mask_width"]) != (img["height"], img["width"]):
            rejects.append(
                question_reject(
                    item,
                    "scene.mask_size_mismatch",
                    f"mask {r['mask_height']}x{r['mask_width']} "
                    f"!= image {img['height']}x{img['width']}",
                )
            )
            continue
        rows_by_image[iid].append(r)

    geometry_of = _batch_geometry(rows_by_image, images_by_id, images is not None)
    scenes: list[Scene] = []
    for iid, rows in rows_by_image.items():
        img = images_by_id[iid]
        pixels = images(iid) if (images is not None and rows) else None
        if pixels is not None and pixels.shape[:2] != (img["height"], img["width"]):
            pixels = None  # a resized image cannot be sampled through the masks
        kept: list[dict[str, Any]] = []
        stats: list[tuple[int, float, float, np.ndarray]] = []
        seen: set[int] = set()
        for r in rows:
            geometry = geometry_of[id(r)]
            item = f"{iid}#{r['instance_id']}"
            if r["instance_id"] in seen:
                rejects.append(question_reject(item, "scene.duplicate_instance_id",
                                               f"instance_id {r['instance_id']} repeated in the image"))
                continue
            seen.add(r["instance_id"])
            try:
                st = geometry or _rle_geometry(r["mask_rle"], int(r["mask_height"]), int(r["mask_width"]),
                                               pixels is not None)
            except (ValueError, TypeError, AttributeError, UnicodeEncodeError) as err:
                rejects.append(question_reject(item, "scene.bad_mask", f"mask not decodable: {err}"))
                continue
            if st[0] < max(min_area, 1):
                rejects.append(question_reject(item, "scene.small_area",
                                               f"area {int(st[0])} < {max(min_area, 1)} pixels"))
                continue
            kept.append(r)
            stats.append(st)
        colors = None
        if pixels is not None:
            from pipelines.questions.color import colors_of_terms, pixel_terms

            flat = pixels.reshape(-1, pixels.shape[-1])[:, :3]
            samples = [st[3] for st in stats]
            sizes = np.asarray([p.shape[0] for p in samples], dtype=np.int64)
            p = np.concatenate(samples) if samples else _EMPTY_I64
            # column-major mask index p -> row-major image index (p % h) * w + p // h, every mask at once
            h, w = int(img["height"]), int(img["width"])
            colors = colors_of_terms(pixel_terms(np.take(flat, (p % h) * w + p // h, axis=0)), sizes)
        scenes.append(
            Scene.from_arrays(
                iid,
                img["width"],
                img["height"],
                [r["instance_id"] for r in kept],
                [r["category"].strip().lower() for r in kept],
                np.asarray([r["bbox"] for r in kept], dtype=np.float64).reshape(-1, 4),
                [st[0] for st in stats],
                [st[1] for st in stats],
                [st[2] for st in stats],
                colors=colors,
                shadow=shadow[iid],
                visible_area_frac=visible_area_frac,
                occlusion_overlap=occlusion_overlap,
                scores=[float(r["score"]) for r in kept],
                near_misses=_near_misses(near_rows[iid], img),
            )
        )
    return scenes, rejects


#: masks decoded per vectorised pass (its arrays hold about 600 bytes per mask, and 4 KB of pixel samples)
BATCH_MASKS = 4096


def _batch_geometry(rows_by_image: dict[str, list[dict[str, Any]]], images_by_id: dict[str, dict[str, Any]],
                    want_sample: bool) -> dict[int, Geometry | None]:
    """:func:`_rle_geometry_many` of every mask of the batch, by ``id(row)``: the masks of all images of
    one size in passes of up to :data:`BATCH_MASKS` (one image's 20 masks cost a pass's fixed ~40 numpy
    calls as much as 4,000 do). ``None``: the mask takes the one-mask path."""
    by_size: dict[tuple[int, int], list[dict[str, Any]]] = {}
    for iid, rows in rows_by_image.items():
        img = images_by_id[iid]
        by_size.setdefault((int(img["height"]), int(img["width"])), []).extend(rows)
    out: dict[int, Geometry | None] = {}
    for (h, w), rows in by_size.items():
        for at in range(0, len(rows), BATCH_MASKS):
            part = rows[at:at + BATCH_MASKS]
            for r, g in zip(part, _rle_geometry_many([r["mask_rle"] for r in part], h, w, want_sample), strict=True):
                out[id(r)] = g
    return out


def _near_misses(rows: list[dict[str, Any]], img: dict[str, Any]) -> list[NearMiss]:
    """The near-threshold detections of one image with their geometry (one whose mask does not fit
    the image or does not decode is only left out: it was refused as ``scene.low_score`` already)."""
    out: list[NearMiss] = []
    for r in rows:
        if (r["mask_height"], r["mask_width"]) != (img["height"], img["width"]):
            continue
        try:
            area, cx, cy, _ = _rle_geometry(r["mask_rle"], int(r["mask_height"]), int(r["mask_width"]), False)
        except (ValueError, TypeError, AttributeError, UnicodeEncodeError):
            continue
        if area <= 0:
            continue
        x, y, w, h = (float(v) for v in r["bbox"])
        out.append(NearMiss(str(r["category"]).strip().lower(), (x, y, w, h), float(area), cx, cy, float(r["score"])))
    return out
