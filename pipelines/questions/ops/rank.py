"""``rank``: the position of an instance X in a set S holding it, ordered by a key — an added op."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from pipelines.questions.ops.extreme import ranked_gap_ok
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

# (key, order) -> (the ordering in words, which member is first)
RANK_ORDER = {
    ("cx", "min"): ("counting from the left", "the leftmost is first"),
    ("cx", "max"): ("counting from the right", "the rightmost is first"),
    ("cy", "min"): ("counting from the top", "the highest is first"),
    ("cy", "max"): ("counting from the bottom", "the lowest is first"),
    ("area", "max"): ("ordered from largest to smallest", "the largest is first"),
    ("area", "min"): ("ordered from smallest to largest", "the smallest is first"),
}


def op_rank(scene: Scene, x: np.ndarray, s: np.ndarray, key: str, order: str, m: Margins) -> int:
    px = int(x[0])
    if not np.any(s == px):
        raise ExecutionError("rank_not_member", "the ranked instance is not in the set")
    v = scene.key(key)
    others = s[s != px]
    vx = float(v[px])
    for o in v[others].tolist():
        if not ranked_gap_ok(key, "max", max(vx, o), min(vx, o), scene, m):
            raise MarginError(f"rank_{key}", f"{key} {vx:.2f} vs {o:.2f} too close to rank")
    if key != "area" and others.shape[0]:
        lo, hi = (scene.x0, scene.x1) if key == "cx" else (scene.y0, scene.y1)
        side = np.sign(v[others] - vx)
        if not (np.all(np.sign(lo[others] - lo[px]) == side) and np.all(np.sign(hi[others] - hi[px]) == side)):
            raise MarginError(f"rank_{key}", f"box edges and centres order the {key} ranking differently")
    before = v[others] > vx if order == "max" else v[others] < vx
    return 1 + int(before.sum())


def _run(scene: Scene, ins: list[Any], args: Mapping[str, Any], m: Margins) -> int:
    return op_rank(scene, ins[0], ins[1], args["key"], args["order"], m)


def _number_noun(r: Wording, i: int) -> str:
    h = r.hops[i]
    order, key = RANK_ORDER[(h.args["key"], h.args["order"])]
    return f"the position of {r.inst(h.inputs[0])} among {r.set_phrase(h.inputs[1])}, {order} ({key})"


def _question(r: Wording, i: int) -> str:
    h = r.hops[i]
    order, key = RANK_ORDER[(h.args["key"], h.args["order"])]
    x, s = r.inst(h.inputs[0]), r.set_phrase(h.inputs[1])
    return r.pick(
        (
            f"{order.capitalize()} ({key}), what position does {x} hold among {s}?",
            f"Among {s}, {order} ({key}), at which position is {x}?",
        )
    )


SPEC = OpSpec(
    name="rank",
    inputs=("instance", "set"),
    output="number",
    args={"key": KEYS, "order": ORDERS},
    run=_run,
    reasons=("execution.rank_not_member", "margin.rank_area", "margin.rank_cx", "margin.rank_cy"),
    doc=OpDoc(
        inputs="instance X, set S with X ∈ S (else `execution.rank_not_member`)",
        args="`key` ∈ area, cx, cy; `order` ∈ max, min",
        yields=(
            "number: `1 + #{s ∈ S, s ≠ X : key(s) > key(X)}` for max (`<` for min) — X's position when S is "
            "ordered by key, largest first (max) or smallest first (min)"
        ),
        margin=(
            "X against **every** other member s: area: `max >= 1.5 * min` and `max > min`; cx: `|Δ| >= 0.06 W` "
            "and both box edges (x0 and x1) in the same order as the centres; cy likewise (`margin.rank_<key>`)"
        ),
    ),
    writer_text=(
        '- rank         args {"key": ..., "order": "max"|"min"}      inputs [instance X, set S containing X] -> 1 +'
        " members of S ranked before X"
    ),
    order=90,
    overlay="inputs",
    compares_size=1,
    number_noun=_number_noun,
    question=_question,
)
