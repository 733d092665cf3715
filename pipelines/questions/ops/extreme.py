"""``extreme``: the one member of a set with the largest/smallest area, cx or cy (a DESIGN.md core op)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from pipelines.questions.ops.spec import (
    KEYS,
    ORDERS,
    ExecutionError,
    MarginError,
    Margins,
    OpDoc,
    OpSpec,
    Wording,
)
from pipelines.questions.scene import Scene

# the box edge that leads along an axis ordering: (key, order) -> edge array name
LEADING_EDGE = {("cx", "min"): "x0", ("cx", "max"): "x1", ("cy", "min"): "y0", ("cy", "max"): "y1"}

SUPERLATIVE = {
    ("area", "max"): ("largest", "biggest"),
    ("area", "min"): ("smallest",),
    ("cx", "min"): ("leftmost",),
    ("cx", "max"): ("rightmost",),
    ("cy", "min"): ("topmost", "highest"),
    ("cy", "max"): ("bottommost", "lowest"),
}
POSTFIX = {
    ("area", "max"): ("that looks largest",),
    ("area", "min"): ("that looks smallest",),
    ("cx", "min"): ("furthest to the left",),
    ("cx", "max"): ("furthest to the right",),
    ("cy", "min"): ("highest up in the picture",),
    ("cy", "max"): ("lowest down in the picture",),
}


def ranked_gap_ok(key: str, order: str, winner: float, runner: float, scene: Scene, m: Margins) -> bool:
    """Whether ``winner`` beats ``runner`` on ``key`` by the margin (area ratio, or axis gap)."""
    if key == "area":
        big, small = (winner, runner) if order == "max" else (runner, winner)
        return big >= m.area_ratio * small and big > small
    size = scene.width if key == "cx" else scene.height
    return abs(winner - runner) >= m.axis_gap * size


def op_extreme(scene: Scene, s: np.ndarray, key: str, order: str, m: Margins) -> np.ndarray:
    if s.shape[0] == 0:
        raise ExecutionError("empty_set", f"extreme {key} {order} of an empty set")
    v = scene.key(key)[s]
    if s.shape[0] == 1:
        return s
    idx = np.argsort(-v if order == "max" else v, kind="stable")
    w, r = v[idx[0]], v[idx[1]]
    if not ranked_gap_ok(key, order, float(w), float(r), scene, m):
        raise MarginError(f"extreme_{key}", f"{order} {key}: winner {w:.2f} vs runner-up {r:.2f} too close")
    if key != "area":
        # a reader may judge "leftmost" by the left edge: the winner must lead on it too
        edge = getattr(scene, LEADING_EDGE[(key, order)])[s]
        lead = edge[idx[0]] - edge[idx[1:]]
        lead = -lead if order == "min" else lead
        half = 0.5 * m.axis_gap * (scene.width if key == "cx" else scene.height)
        if lead.min() <= 0 or lead.min() < half:
            raise MarginError(f"extreme_{key}", f"{order} {key}: the winner's box edge leads by {lead.min():.2f}px")
    return s[idx[:1]]


def _run(scene: Scene, ins: list[Any], args: Mapping[str, Any], m: Margins) -> np.ndarray:
    return op_extreme(scene, ins[0], args["key"], args["order"], m)


def _instance_phrase(r: Wording, i: int) -> str:
    h = r.hops[i]
    src = r.hops[h.inputs[0]]
    k = (h.args["key"], h.args["order"])
    if src.op == "find":
        cat = src.args["category"]
        if r.rng.random() < 0.65:
            return f"the {r.pick(SUPERLATIVE[k])} {cat}"
        return f"the {cat} {r.pick(POSTFIX[k])}"
    if src.op == "filter_color":
        cat = r.cat_of(h.inputs[0])
        return f"the {r.pick(SUPERLATIVE[k])} {src.args['color']} {cat}"
    return f"the {r.pick(SUPERLATIVE[k])} of {r.set_phrase(h.inputs[0])}"


SPEC = OpSpec(
    name="extreme",
    inputs=("set",),
    output="instance",
    args={"key": KEYS, "order": ORDERS},
    run=_run,
    reasons=("execution.empty_set", "margin.extreme_area", "margin.extreme_cx", "margin.extreme_cy"),
    doc=OpDoc(
        inputs="set S (non-empty, else `execution.empty_set`)",
        args="`key` ∈ area, cx, cy; `order` ∈ max, min",
        yields="instance: the member with the largest (`max`) / smallest (`min`) key",
        margin=(
            "with ≥ 2 members, winner w vs runner-up r: area: `big >= 1.5 * small` and `big > small` where "
            "(big, small) = (w, r) for max, (r, w) for min (`margin.extreme_area`); cx: `|w - r| >= 0.06 W`, "
            "and the winner's leading box edge (x0 for min, x1 for max) ahead of every other member's by "
            "`>= 0.03 W` — a reader may judge \"leftmost\" by the edge (`margin.extreme_cx`); cy: the same "
            "with H, y0/y1 (`margin.extreme_cy`)"
        ),
    ),
    writer_text=(
        '- extreme      args {"key": "area"|"cx"|"cy", "order": "max"|"min"}  inputs [set] -> the one instance'
        " with the largest/smallest key"
    ),
    order=20,
    core=True,
    narrows=True,
    compares_size=0,
    instance_phrase=_instance_phrase,
)
