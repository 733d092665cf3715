"""``unique``: the only member of a set ("the bottle", "the red cup") — an added op."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from pipelines.questions.ops.spec import ExecutionError, Margins, OpDoc, OpSpec, Wording
from pipelines.questions.scene import Scene


def op_unique(s: np.ndarray) -> np.ndarray:
    if s.shape[0] != 1:
        raise ExecutionError("not_unique", f"the set has {s.shape[0]} members, not exactly one")
    return s


def _run(scene: Scene, ins: list[Any], args: Mapping[str, Any], m: Margins) -> np.ndarray:
    return op_unique(ins[0])


def _instance_phrase(r: Wording, i: int) -> str:
    return r.only_phrase(r.hops[i].inputs[0])  # the set's own op says how its only member is named


SPEC = OpSpec(
    name="unique",
    inputs=("set",),
    output="instance",
    args={},
    run=_run,
    reasons=("execution.not_unique",),
    doc=OpDoc(
        inputs="set S",
        args="—",
        yields=(
            'instance: the only member of S ("the bottle", "the red cup"); `execution.not_unique` unless S '
            "has exactly one member"
        ),
    ),
    writer_text=(
        '- unique       args {}                                      inputs [set]       -> its only member'
        " (the set must have exactly one)"
    ),
    order=30,
    narrows=True,
    instance_phrase=_instance_phrase,
)
