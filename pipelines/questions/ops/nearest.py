"""``nearest``: the instance of a category (not A) with the nearest centroid to A (a DESIGN.md core op)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from pipelines.questions.ops.find import EMPTY
from pipelines.questions.ops.spec import ExecutionError, MarginError, Margins, OpDoc, OpSpec, Wording
from pipelines.questions.scene import Scene

NEAREST = ("nearest to", "closest to")


def op_nearest(scene: Scene, a: np.ndarray, category: str, m: Margins) -> np.ndarray:
    pa = int(a[0])
    cand = scene.by_category.get(category, EMPTY)
    cand = cand[cand != pa]
    if cand.shape[0] == 0:
        raise ExecutionError("no_candidate", f"no other {category} to be nearest")
    d = scene.dist[pa, cand]
    if cand.shape[0] == 1:
        return cand
    two = np.argpartition(d, 1)[:2]
    i1, i2 = (two[0], two[1]) if d[two[0]] <= d[two[1]] else (two[1], two[0])
    if not (d[i2] >= m.nearest_ratio * d[i1] and d[i2] > d[i1]):
        raise MarginError("nearest_ratio", f"runner-up {d[i2]:.2f}px vs nearest {d[i1]:.2f}px")
    return cand[i1 : i1 + 1]


def _run(scene: Scene, ins: list[Any], args: Mapping[str, Any], m: Margins) -> np.ndarray:
    return op_nearest(scene, ins[0], args["category"], m)


def _instance_phrase(r: Wording, i: int) -> str:
    h = r.hops[i]
    return f"the {h.args['category']} {r.pick(NEAREST)} {r.inst(h.inputs[0])}"


SPEC = OpSpec(
    name="nearest",
    inputs=("instance",),
    output="instance",
    args={"category": None},
    run=_run,
    reasons=("execution.no_candidate", "margin.nearest_ratio"),
    doc=OpDoc(
        inputs="instance A",
        args="`category`",
        yields=(
            "instance: the B ≠ A of the category with the smallest centroid distance (Euclidean, pixels); "
            "no candidate: `execution.no_candidate`"
        ),
        margin="with ≥ 2 candidates: `d2 >= 1.5 * d1` and `d2 > d1` (`margin.nearest_ratio`)",
    ),
    writer_text=(
        '- nearest      args {"category": C}                         inputs [instance A] -> the C (not A) with'
        " the nearest centroid"
    ),
    order=70,
    core=True,
    chain_step=True,
    instance_phrase=_instance_phrase,
)
