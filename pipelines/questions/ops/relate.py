"""``relate``: the instances of a category (not A) clearly left of / right of / above / below A
(a DESIGN.md core op)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from pipelines.questions.english import plural
from pipelines.questions.ops.find import EMPTY
from pipelines.questions.ops.spec import MarginError, Margins, OpDoc, OpSpec, Wording
from pipelines.questions.scene import Scene

RELATIONS = ("left_of", "right_of", "above", "below")

# worded by what it computes: "further left than A", never "beneath" (read as *under* A)
RELATION = {
    "left_of": ("further left than", "further to the left than"),
    "right_of": ("further right than", "further to the right than"),
    "above": ("higher up in the picture than",),
    "below": ("lower down in the picture than",),
}


def relate_band(scene: Scene, pa: int, relation: str, m: Margins) -> tuple[np.ndarray, float, float, float]:
    """(candidate coordinate array, boundary, band low, band high) of a relation from ``pa``."""
    if relation in ("left_of", "right_of"):
        coord, g = scene.cx, m.relate_gap * scene.width
        edge, centre = (scene.x0[pa], scene.cx[pa]) if relation == "left_of" else (scene.x1[pa], scene.cx[pa])
    else:
        coord, g = scene.cy, m.relate_gap * scene.height
        edge, centre = (scene.y0[pa], scene.cy[pa]) if relation == "above" else (scene.y1[pa], scene.cy[pa])
    lo, hi = (edge - g, centre + g) if relation in ("left_of", "above") else (centre - g, edge + g)
    return coord, float(edge), float(lo), float(hi)


def op_relate(scene: Scene, a: np.ndarray, relation: str, category: str, m: Margins) -> np.ndarray:
    return relate_among(scene, a, relation, scene.by_category.get(category, EMPTY), category, m)


def relate_among(scene: Scene, a: np.ndarray, relation: str, cand: np.ndarray, category: str,
                 m: Margins) -> np.ndarray:
    """The members of ``cand`` (positions; A excluded here) beyond A's edge, under the boundary margin
    (``category``: how the candidates are named in the margin's message)."""
    pa = int(a[0])
    cand = cand[cand != pa]
    key = (pa, relation, m.relate_gap)
    band = scene._bands.get(key)
    if band is None:  # every position's side of A, once per (A, relation): options differ only in cand
        coord, bound, lo, hi = relate_band(scene, pa, relation, m)
        beyond = coord < bound if relation in ("left_of", "above") else coord > bound
        band = scene._bands[key] = ((coord > lo) & (coord < hi), beyond)
    inside, beyond = band
    if cand.shape[0] and inside[cand].any():
        raise MarginError(
            "relate_boundary",
            f"a {category} centroid lies between the {relation} boundary and the reference's centre",
        )
    return cand[beyond[cand]]


def _run(scene: Scene, ins: list[Any], args: Mapping[str, Any], m: Margins) -> np.ndarray:
    return op_relate(scene, ins[0], args["relation"], args["category"], m)


def _set_phrase(r: Wording, i: int) -> str:
    h = r.hops[i]
    rel = r.pick(RELATION[h.args["relation"]])
    return f"the {plural(h.args['category'])} that are {rel} {r.inst(h.inputs[0])}"


def _only_phrase(r: Wording, i: int) -> str:
    h = r.hops[i]
    rel = r.pick(RELATION[h.args["relation"]])
    return f"the only {r.cat_of(i)} that is {rel} {r.inst(h.inputs[0])}"


SPEC = OpSpec(
    name="relate",
    inputs=("instance",),
    output="set",
    args={"relation": RELATIONS, "category": None},
    run=_run,
    reasons=("margin.relate_boundary",),
    doc=OpDoc(
        inputs="instance A",
        args="`relation` ∈ left_of, right_of, above, below; `category`",
        yields=(
            "set: instances B ≠ A of the category with `cx < x0(A)` / `cx > x1(A)` / `cy < y0(A)` / "
            "`cy > y1(A)`"
        ),
        margin=(
            "no candidate (every B ≠ A of the category) has its coordinate strictly inside the band between "
            "A's boundary edge widened by g and A's own centre widened by g: left_of `(x0 - g, cx(A) + g)`, "
            "right_of `(cx(A) - g, x1 + g)`, above `(y0 - g, cy(A) + g)`, below `(cy(A) - g, y1 + g)`, "
            "g = 0.04 W (left/right) or 0.04 H (above/below) (`margin.relate_boundary`): every candidate is "
            "clearly beyond A's edge or clearly on the other side of A's centre"
        ),
    ),
    writer_text=(
        '- relate       args {"relation": "left_of"|"right_of"|"above"|"below", "category": C}  inputs [instance A]\n'
        "               -> instances of C (not A) whose centroid is left of A's box left edge / right of its right"
        " edge / above its top / below its bottom"
    ),
    order=60,
    core=True,
    from_reference=True,
    set_phrase=_set_phrase,
    only_phrase=_only_phrase,
)
