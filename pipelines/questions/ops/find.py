"""``find``: all instances of a category (a DESIGN.md core op)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from pipelines.questions.english import plural
from pipelines.questions.ops.spec import Margins, OpDoc, OpSpec, Wording
from pipelines.questions.scene import Scene

EMPTY = np.zeros(0, dtype=np.int64)


def op_find(scene: Scene, category: str) -> np.ndarray:
    return scene.by_category.get(category, EMPTY)


def _run(scene: Scene, ins: list[Any], args: Mapping[str, Any], m: Margins) -> np.ndarray:
    return op_find(scene, args["category"])


def _set_phrase(r: Wording, i: int) -> str:
    return f"the {plural(r.hops[i].args['category'])}"


def _only_phrase(r: Wording, i: int) -> str:
    return f"the {r.cat_of(i)}"


SPEC = OpSpec(
    name="find",
    inputs=(),
    output="set",
    args={"category": None},
    run=_run,
    reasons=(),
    doc=OpDoc(inputs="—", args="`category`", yields="set: all instances of that category"),
    writer_text='- find         args {"category": C}                         inputs []          -> all instances of C',
    order=10,
    core=True,
    perceives=False,
    set_phrase=_set_phrase,
    only_phrase=_only_phrase,
)
