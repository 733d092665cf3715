"""``arith``: add, sub, max or min of two numbers (a DESIGN.md core op)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pipelines.questions.ops.spec import Margins, OpDoc, OpSpec, Wording
from pipelines.questions.scene import Scene

ARITH_FNS = ("add", "sub", "max", "min")
NUMBER_LETTERS = "PQRS"


def op_arith(a: float, b: float, fn: str) -> int | float:
    out = {"add": a + b, "sub": a - b, "max": max(a, b), "min": min(a, b)}[fn]
    return int(out) if float(out).is_integer() else float(out)


def _run(scene: Scene, ins: list[Any], args: Mapping[str, Any], m: Margins) -> int | float:
    return op_arith(ins[0], ins[1], args["fn"])


def _question(r: Wording, i: int) -> str:
    # the two numbers are named separately, so a relation's scope never spans both operands
    h = r.hops[i]
    a, b = r.number_noun(h.inputs[0]), r.number_noun(h.inputs[1])
    p, q = NUMBER_LETTERS[0], NUMBER_LETTERS[1]
    setup = f"Let {p} be {a}, and {q} be {b}."
    ask = {
        "add": (f"What is {p} plus {q}?", f"What is {p} + {q}?"),
        "sub": (f"What is {p} minus {q}?", f"What is {p} - {q}?"),
        "max": (f"What is the larger of {p} and {q}?",),
        "min": (f"What is the smaller of {p} and {q}?",),
    }[h.args["fn"]]
    return f"{setup} {r.pick(ask)}"


SPEC = OpSpec(
    name="arith",
    inputs=("number", "number"),
    output="number",
    args={"fn": ARITH_FNS},
    run=_run,
    reasons=(),
    doc=OpDoc(
        inputs="number a, number b",
        args="`fn` ∈ add, sub, max, min",
        yields="number: a + b, a − b, max(a, b), min(a, b)",
    ),
    writer_text=(
        '- arith        args {"fn": "add"|"sub"|"max"|"min"}         inputs [number, number] -> the number'
    ),
    order=100,
    core=True,
    overlay="inputs",
    question=_question,
)
