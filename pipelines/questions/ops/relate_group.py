"""``relate_group``: the instances of a *named group* of categories (not A) clearly left of / right of /
above / below A — an added op.

A scene of singletons or pairs (eight single objects on a shelf; at most two of each shape) has no
category whose count is more than a yes/no ("how many books are left of the tray?" over one book). A
named group counts over the members of two to four named categories at once — "How many books,
scissors and soap boxes are further left than the tray?" — so the reader checks every one of them:
the candidate rule (:mod:`pipelines.questions.candidates`) counts the group's members besides A. The
group is a JSON list under ``categories`` (:data:`~pipelines.questions.ops.spec.GROUP_ARG`); every rule
that reads a hop's category (reach, the candidate rule, stability, the degeneracy check, the text
check) reads each of its members. Semantics and margin are ``relate``'s over the union.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from pipelines.questions.english import listing, plural
from pipelines.questions.ops.find import EMPTY
from pipelines.questions.ops.relate import RELATION, RELATIONS, relate_among
from pipelines.questions.ops.spec import GROUP_ARG, Margins, OpDoc, OpSpec, Wording
from pipelines.questions.scene import Scene


def group_members(scene: Scene, categories: Sequence[str]) -> np.ndarray:
    """The sorted positions of every instance of the group's categories."""
    parts = [scene.by_category.get(c, EMPTY) for c in categories]
    return np.sort(np.concatenate(parts)) if parts else EMPTY


def op_relate_group(scene: Scene, a: np.ndarray, relation: str, categories: Sequence[str], m: Margins) -> np.ndarray:
    return relate_among(scene, a, relation, group_members(scene, categories), " or ".join(categories), m)


def _run(scene: Scene, ins: list[Any], args: Mapping[str, Any], m: Margins) -> np.ndarray:
    return op_relate_group(scene, ins[0], args["relation"], args[GROUP_ARG], m)


def _set_phrase(r: Wording, i: int) -> str:
    h = r.hops[i]
    rel = r.pick(RELATION[h.args["relation"]])
    names = listing([plural(c) for c in h.args[GROUP_ARG]])
    return f"the {names} that are {rel} {r.inst(h.inputs[0])}"


def _only_phrase(r: Wording, i: int) -> str:
    h = r.hops[i]
    rel = r.pick(RELATION[h.args["relation"]])
    return f"the only {listing(list(h.args[GROUP_ARG]), 'or')} that is {rel} {r.inst(h.inputs[0])}"


SPEC = OpSpec(
    name="relate_group",
    inputs=("instance",),
    output="set",
    args={"relation": RELATIONS, GROUP_ARG: None},
    run=_run,
    reasons=("margin.relate_boundary",),
    doc=OpDoc(
        inputs="instance A",
        args="`relation` ∈ left_of, right_of, above, below; `categories`: a named group, 2..4 distinct categories",
        yields=(
            "set: instances B ≠ A of any of the group's categories beyond A, as `relate` "
            '("the books, scissors and soap boxes further left than A")'
        ),
        margin="`relate`'s band, over every B ≠ A of the group (`margin.relate_boundary`)",
    ),
    writer_text=(
        '- relate_group args {"relation": ..., "categories": [C1, C2, ...]}  inputs [instance A]\n'
        "               -> as relate, over the instances of 2 to 4 named categories at once (not A)"
    ),
    order=65,
    from_reference=True,
    set_phrase=_set_phrase,
    only_phrase=_only_phrase,
)
