"""``same_color``: the instances of a category (not A) whose main colour is A's — an added op."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from pipelines.questions.english import plural
from pipelines.questions.ops.filter_color import require_colors
from pipelines.questions.ops.find import EMPTY
from pipelines.questions.ops.spec import Margins, OpDoc, OpSpec, Wording
from pipelines.questions.scene import Scene


def op_same_color(scene: Scene, a: np.ndarray, category: str) -> np.ndarray:
    pa = int(a[0])
    cand = scene.by_category.get(category, EMPTY)
    cand = cand[cand != pa]
    require_colors(scene, np.concatenate([a, cand]), "same_color")
    want = scene.color[pa]
    return cand[np.asarray([scene.color[p] == want for p in cand.tolist()], dtype=bool)] if cand.shape[0] else cand


def _run(scene: Scene, ins: list[Any], args: Mapping[str, Any], m: Margins) -> np.ndarray:
    return op_same_color(scene, ins[0], args["category"])


def _set_phrase(r: Wording, i: int) -> str:
    h = r.hops[i]
    return (f"the {r.other(h)}{plural(h.args['category'])} that are the same colour as "
            f"{r.inst(h.inputs[0])}")


def _only_phrase(r: Wording, i: int) -> str:
    h = r.hops[i]
    return f"the only {r.other(h)}{r.cat_of(i)} that is the same colour as {r.inst(h.inputs[0])}"


SPEC = OpSpec(
    name="same_color",
    inputs=("instance",),
    output="set",
    args={"category": None},
    run=_run,
    reasons=("margin.color_unclear",),
    doc=OpDoc(
        inputs="instance A",
        args="`category`",
        yields='set: instances B ≠ A of the category whose colour equals A\'s ("the cups of the same colour as A")',
        margin="A and every candidate have a colour (`margin.color_unclear`)",
    ),
    writer_text=(
        '- same_color   args {"category": C}                         inputs [instance A] -> the C (not A) of'
        " A's main colour"
    ),
    order=50,
    from_reference=True,
    set_phrase=_set_phrase,
    only_phrase=_only_phrase,
)
