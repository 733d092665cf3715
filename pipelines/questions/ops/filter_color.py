"""``filter_color``: the members of a set whose main colour is a given term ("the red cups") — an added op."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from pipelines.questions.color import COLOR_TERMS
from pipelines.questions.english import plural
from pipelines.questions.ops.spec import MarginError, Margins, OpDoc, OpSpec, Wording
from pipelines.questions.scene import Scene

COLORS = COLOR_TERMS  # the eleven basic colour terms (pipelines.questions.color)


def require_colors(scene: Scene, positions: np.ndarray, what: str) -> None:
    """``margin.color_unclear`` unless every instance at ``positions`` has a clear colour."""
    if not scene.color:
        raise MarginError("color_unclear", "the scene has no colours (no image was read)")
    unclear = [int(scene.ids[p]) for p in positions.tolist() if scene.color[p] is None]
    if unclear:
        raise MarginError("color_unclear", f"{what}: {len(unclear)} instance(s) without a clear colour")


def op_filter_color(scene: Scene, s: np.ndarray, color: str) -> np.ndarray:
    require_colors(scene, s, "filter_color")
    return s[np.asarray([scene.color[p] == color for p in s.tolist()], dtype=bool)] if s.shape[0] else s


def _run(scene: Scene, ins: list[Any], args: Mapping[str, Any], m: Margins) -> np.ndarray:
    return op_filter_color(scene, ins[0], args["color"])


def _set_phrase(r: Wording, i: int) -> str:
    return f"the {r.hops[i].args['color']} {plural(r.cat_of(i))}"


def _only_phrase(r: Wording, i: int) -> str:
    return f"the {r.hops[i].args['color']} {r.cat_of(i)}"


SPEC = OpSpec(
    name="filter_color",
    inputs=("set",),
    output="set",
    args={"color": COLORS},
    run=_run,
    reasons=("margin.color_unclear",),
    doc=OpDoc(
        inputs="set S",
        args="`color` ∈ the eleven terms",
        yields='set: the members of S whose colour is `color` ("the red cups")',
        margin="every member of S has a colour (`margin.color_unclear`)",
    ),
    writer_text=(
        f'- filter_color args {{"color": one of {", ".join(COLORS)}}}  inputs [set]\n'
        '               -> the members of that main colour ("the red cups"; every member must have a clear colour)'
    ),
    order=40,
    set_phrase=_set_phrase,
    only_phrase=_only_phrase,
)
