"""``count``: the size of a set (a DESIGN.md core op)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from pipelines.questions.english import plural
from pipelines.questions.ops.spec import MarginError, Margins, OpDoc, OpSpec, Wording
from pipelines.questions.scene import Scene


def op_count(s: np.ndarray, m: Margins) -> int:
    n = int(s.shape[0])
    if n > m.max_count:
        raise MarginError("count_too_large", f"{n} > {m.max_count}")
    return n


def _run(scene: Scene, ins: list[Any], args: Mapping[str, Any], m: Margins) -> int:
    return op_count(ins[0], m)


def _number_noun(r: Wording, i: int) -> str:
    h = r.hops[i]
    src = r.hops[h.inputs[0]]
    if src.op == "find":
        return f"the number of {plural(src.args['category'])} in the picture"
    return f"the number of {r.set_phrase(h.inputs[0])[4:]}"


def _question(r: Wording, i: int) -> str:
    h = r.hops[i]
    src = r.hops[h.inputs[0]]
    if src.op == "find":
        cat = plural(src.args["category"])
        return r.pick((f"How many {cat} are there in the picture?", f"How many {cat} can you see?"))
    noun = r.set_phrase(h.inputs[0])[4:]
    if src.op == "filter_color":
        return r.pick((f"How many {noun} are there in the picture?", f"What is the number of {noun}?"))
    short = noun.replace(" that are ", " are ", 1)
    return r.pick((f"How many {short}?", f"What is the number of {noun}?"))


SPEC = OpSpec(
    name="count",
    inputs=("set",),
    output="number",
    args={},
    run=_run,
    reasons=("margin.count_too_large",),
    doc=OpDoc(
        inputs="set",
        args="—",
        yields="number: its size",
        margin="`size <= 15` (`margin.count_too_large`; `questions.max_count`)",
    ),
    writer_text=(
        "- count        args {}                                      inputs [set]       -> its size (at most"
        " $max_count)"
    ),
    order=80,
    core=True,
    overlay="inputs",
    number_noun=_number_noun,
    question=_question,
)
