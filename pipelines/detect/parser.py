"""A tolerant parser for Qwen3-VL grounding answers.

Qwen3-VL answers a grounding prompt with JSON like
``[{"bbox_2d": [x1, y1, x2, y2], "label": "cat"}, ...]`` where the coordinates are on a
**0..1000 relative grid** (0 = left/top edge, 1000 = right/bottom edge of the image), usually
inside a ```json fence and sometimes with prose around it, trailing commas, or cut off by the
token limit. A categories-only answer is a JSON list of strings (or of ``{"label": ...}``).

:func:`parse_grounding` returns pixel boxes ``[x, y, w, h]`` (COCO convention) clamped to the
image, labels normalised by :func:`normalize_label` (lowercase singular noun phrase), and exact or
near-exact duplicates merged. When nothing usable can be read it sets ``error`` (the caller then
makes one repair attempt and finally writes a reject row with the raw text). Each unusable item of
an otherwise readable answer is a :class:`DroppedItem` with its code (:data:`ITEM_CODES`), which the
caller writes as a reject row of its own.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Any, Final

GRID = 1000.0
NOT_AN_OBJECT: Final = "item.not_an_object"  # neither a JSON object nor a label string
NO_LABEL: Final = "item.no_label"  # no label left after normalisation
BAD_BOX: Final = "item.bad_box"  # bbox_2d is not 4 numbers
EMPTY_BOX: Final = "item.empty_box"  # zero width or height after clamping to the image
OVER_MAX_CATEGORIES: Final = "item.over_max_categories"  # a new category beyond max_categories
ITEM_CODES: Final = (NOT_AN_OBJECT, NO_LABEL, BAD_BOX, EMPTY_BOX, OVER_MAX_CATEGORIES)
_FENCE = re.compile(r"```(?:json|JSON)?\s*\n?(.*?)(?:```|$)", re.DOTALL)
_OBJECT = re.compile(r"\{[^{}\[\]]*(?:\[[^\[\]]*\][^{}\[\]]*)*\}")
_TRAILING_COMMA = re.compile(r",\s*([\]}])")
_ARTICLES = re.compile(r"^(?:a|an|the|some|several|many|two|three|four|five)\s+")
_NON_WORD = re.compile(r"[^a-z0-9\s\-]")

_IRREGULAR = {
    "people": "person", "persons": "person", "men": "man", "women": "woman", "children": "child",
    "mice": "mouse", "teeth": "tooth", "feet": "foot", "geese": "goose", "oxen": "ox", "dice": "die",
    "knives": "knife", "wives": "wife", "lives": "life", "leaves": "leaf", "loaves": "loaf",
    "shelves": "shelf", "wolves": "wolf", "halves": "half", "calves": "calf", "scarves": "scarf",
    "cacti": "cactus", "buses": "bus", "potatoes": "potato", "tomatoes": "tomato", "heroes": "hero",
}
_INVARIANT = {
    "sheep", "fish", "deer", "series", "species", "scissors", "pants", "jeans", "shorts",
    "aircraft", "clothes", "news", "trousers", "headphones", "binoculars", "tennis", "chess", "grass",
}


def _singular_word(word: str) -> str:
    if word in _INVARIANT or len(word) <= 3:
        return word
    if word in _IRREGULAR:
        return _IRREGULAR[word]
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith(("sses", "ches", "shes", "xes", "zes")):
        return word[:-2]
    if word.endswith(("ss", "us", "is", "ous")):
        return word
    if word.endswith("s"):
        return word[:-1]
    return word


def normalize_label(label: str) -> str:
    """``"  Two Red Apples. "`` → ``"red apple"``: lowercase, no articles/counts/punctuation,
    whitespace collapsed, the head noun (last word) made singular. Empty string if nothing is left."""
    text = _NON_WORD.sub(" ", str(label).lower().replace("_", " "))
    text = " ".join(text.split())
    text = _ARTICLES.sub("", text)
    words = text.split()
    if not words:
        return ""
    if words != ["glasses"]:  # eyewear alone; "wine glasses" → "wine glass"
        words[-1] = _singular_word(words[-1])
    return " ".join(words)


@dataclass(frozen=True)
class GroundedObject:
    """One parsed item: ``bbox`` is ``[x, y, w, h]`` pixels, or ``None`` for a category-only answer."""

    category: str
    bbox: tuple[float, float, float, float] | None


@dataclass(frozen=True)
class DroppedItem:
    """An item of a readable answer that cannot be used: ``index`` is its position in the answer's
    list, ``code`` one of :data:`ITEM_CODES`, ``raw`` the item as JSON text."""

    index: int
    code: str
    detail: str
    raw: str


class _ItemRefused(ValueError):
    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code


@dataclass
class ParsedAnswer:
    objects: list[GroundedObject] = field(default_factory=list)
    error: str | None = None  # set when the answer could not be read at all
    dropped: list[DroppedItem] = field(default_factory=list)  # unusable items of an otherwise usable answer

    @property
    def ok(self) -> bool:
        return self.error is None


def _candidates(text: str) -> list[str]:
    """JSON-looking snippets, most specific first: fenced blocks, then the outermost [...] / {...}."""
    out = [m.group(1).strip() for m in _FENCE.finditer(text) if m.group(1).strip()]
    for open_, close in (("[", "]"), ("{", "}")):
        start, end = text.find(open_), text.rfind(close)
        if start != -1 and end > start:
            out.append(text[start : end + 1])
    out.append(text.strip())
    return out


def _load_json(text: str) -> tuple[Any, bool]:
    """Parse the answer's JSON; returns (value, salvaged). Raises ValueError if nothing parses."""
    for snippet in _candidates(text):
        for attempt in (snippet, _TRAILING_COMMA.sub(r"\1", snippet)):
            try:
                return json.loads(attempt), attempt is not snippet
            except json.JSONDecodeError:
                continue
    # salvage: complete {...} objects from a truncated or otherwise broken list
    objects = []
    for m in _OBJECT.finditer(text):
        try:
            objects.append(json.loads(_TRAILING_COMMA.sub(r"\1", m.group(0))))
        except json.JSONDecodeError:
            continue
    if objects:
        return objects, True
    raise ValueError("no parseable JSON in the answer")


def _items(value: Any) -> list[Any]:
    if isinstance(value, list):
        return value
    if isinstance(value, dict):
        for key in ("objects", "detections", "categories", "labels", "results"):
            if isinstance(value.get(key), list):
                return value[key]
        return [value]
    raise ValueError(f"expected a JSON list, got {type(value).__name__}")


def _box_to_pixels(raw: Any, width: int, height: int) -> tuple[float, float, float, float]:
    if not isinstance(raw, (list, tuple)) or len(raw) != 4:
        raise _ItemRefused(BAD_BOX, f"bbox_2d must be 4 numbers, got {raw!r}")
    try:
        x1, y1, x2, y2 = (float(v) for v in raw)
    except (TypeError, ValueError):
        raise _ItemRefused(BAD_BOX, f"bbox_2d must be 4 numbers, got {raw!r}") from None
    if not all(math.isfinite(v) for v in (x1, y1, x2, y2)):
        raise _ItemRefused(BAD_BOX, f"bbox_2d must be 4 finite numbers, got {raw!r}")
    x1, x2 = sorted((x1, x2))
    y1, y2 = sorted((y1, y2))

    def cx(v: float) -> float:
        return min(max(v / GRID * width, 0.0), float(width))

    def cy(v: float) -> float:
        return min(max(v / GRID * height, 0.0), float(height))

    px1, px2, py1, py2 = cx(x1), cx(x2), cy(y1), cy(y2)
    if px2 - px1 <= 0 or py2 - py1 <= 0:
        raise _ItemRefused(EMPTY_BOX, f"empty box after clamping: {raw!r}")
    return (px1, py1, px2 - px1, py2 - py1)


def _box_iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    ix = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


def parse_grounding(
    text: str, width: int, height: int, *, max_categories: int | None = None, merge_iou: float = 0.95
) -> ParsedAnswer:
    """Parse a Qwen3-VL answer for an image of ``width`` x ``height`` pixels.

    Items that cannot be used (no label, a bad box) are listed in ``dropped``, each with its code; the answer is an
    error only when no JSON can be read at all. An empty list is a valid answer (no objects).
    Boxes of the same category with IoU >= ``merge_iou`` are merged (the first is kept).
    At most ``max_categories`` distinct categories are kept, in order of first appearance.
    """
    result = ParsedAnswer()
    try:
        value, _ = _load_json(text)
        items = _items(value)
    except ValueError as err:
        result.error = str(err)
        return result
    categories: list[str] = []
    for index, item in enumerate(items):

        def drop(code: str, detail: str, item: Any = item, index: int = index) -> None:
            raw = json.dumps(item, default=str) if not isinstance(item, str) else item
            result.dropped.append(DroppedItem(index, code, detail, raw))

        label: Any
        raw_box: Any
        if isinstance(item, str):
            label, raw_box = item, None
        elif isinstance(item, dict):
            label = item.get("label", item.get("category", item.get("name", "")))
            raw_box = item.get("bbox_2d", item.get("bbox"))
        else:
            drop(NOT_AN_OBJECT, f"not an object: {item!r}")
            continue
        category = normalize_label(label if isinstance(label, str) else "")
        if not category:
            drop(NO_LABEL, f"no label: {item!r}")
            continue
        box = None
        if raw_box is not None:
            try:
                box = _box_to_pixels(raw_box, width, height)
            except _ItemRefused as err:
                drop(err.code, str(err))
                continue
        if category not in categories:
            if max_categories is not None and len(categories) >= max_categories:
                drop(OVER_MAX_CATEGORIES, f"over max_categories ({max_categories}): {category}")
                continue
            categories.append(category)
        duplicate = any(
            o.category == category
            and ((o.bbox is None and box is None) or (o.bbox and box and _box_iou(o.bbox, box) >= merge_iou))
            for o in result.objects
        )
        if not duplicate:
            result.objects.append(GroundedObject(category, box))
    return result
