"""Question text for hop programs: worded so that a literal reading gives the program's answer.

The text names categories, colours, relations and orderings — never a hop's value, an instance id
or the answer (docs/hop-programs.md, "Question text"). Relations are worded by what they compute:
``left_of`` is "further left than A" (not "beneath", which a reader takes to mean *under* A),
``below`` is "lower down in the picture than A". Arithmetic always names its two numbers
separately ("Let P be the number of circles in the picture, and Q the number of squares that
are higher up in the picture than A. What is P plus Q?"), so the scope of a relation never
spans both operands. Instances are named nested ("the bottle nearest to the largest cup") or
stepwise ("Let A be the largest cup. Let B be the bottle nearest to A. ..."); stepwise whenever
an instance is used twice. Plurals come from ``inflect``.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Sequence
from typing import Any

from pipelines.questions.program import Hop


@functools.cache
def _inflect() -> Any:
    import inflect

    engine = inflect.engine()
    engine.classical(ancient=True)  # nucleus -> nuclei, cactus -> cacti; person -> people stays
    return engine


@functools.lru_cache(maxsize=4096)
def plural(noun: str) -> str:
    """English plural of a (lowercase, singular) category noun phrase (``inflect``)."""
    head, _, last = noun.rpartition(" ")
    word = _inflect().plural_noun(last) or last
    if last.endswith("s") and word == last + "s":  # already plural: glasses, skis, jeans
        word = last
    return f"{head} {word}" if head else word


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
RELATION = {
    "left_of": ("further left than", "further to the left than"),
    "right_of": ("further right than", "further to the right than"),
    "above": ("higher up in the picture than",),
    "below": ("lower down in the picture than",),
}
NEAREST = ("nearest to", "closest to")
RANK_ORDER = {
    ("cx", "min"): ("counting from the left", "the leftmost is first"),
    ("cx", "max"): ("counting from the right", "the rightmost is first"),
    ("cy", "min"): ("counting from the top", "the highest is first"),
    ("cy", "max"): ("counting from the bottom", "the lowest is first"),
    ("area", "max"): ("ordered from largest to smallest", "the largest is first"),
    ("area", "min"): ("ordered from smallest to largest", "the smallest is first"),
}
LETTERS = "ABCDEFGH"
NUMBER_LETTERS = "PQRS"


class _Renderer:
    def __init__(self, hops: Sequence[Hop], rng: random.Random, stepwise: bool) -> None:
        self.hops = hops
        self.rng = rng
        self.stepwise = stepwise
        self.letter: dict[int, str] = {}
        self.steps: list[str] = []

    def pick(self, options: Sequence[str]) -> str:
        return options[self.rng.randrange(len(options))] if len(options) > 1 else options[0]

    def cat_of(self, i: int) -> str:
        """The category of the instances hop ``i`` is about."""
        h = self.hops[i]
        if "category" in h.args:
            return str(h.args["category"])
        return self.cat_of(h.inputs[0])

    # instance-valued hops -----------------------------------------------------------------------
    def inst(self, i: int) -> str:
        if i in self.letter:
            return self.letter[i]
        phrase = self._inst_phrase(i)
        if not self.stepwise:
            return phrase
        letter = LETTERS[len(self.letter)]
        self.letter[i] = letter
        self.steps.append(
            self.pick(("Let {L} be {p}.", "Find {p}; call it {L}.")).format(L=letter, p=phrase)
        )
        return letter

    def _inst_phrase(self, i: int) -> str:
        h = self.hops[i]
        if h.op == "extreme":
            src = self.hops[h.inputs[0]]
            k = (h.args["key"], h.args["order"])
            if src.op == "find":
                cat = src.args["category"]
                if self.rng.random() < 0.65:
                    return f"the {self.pick(SUPERLATIVE[k])} {cat}"
                return f"the {cat} {self.pick(POSTFIX[k])}"
            if src.op == "filter_color":
                cat = self.cat_of(h.inputs[0])
                return f"the {self.pick(SUPERLATIVE[k])} {src.args['color']} {cat}"
            return f"the {self.pick(SUPERLATIVE[k])} of {self.set_phrase(h.inputs[0])}"
        if h.op == "unique":
            src = self.hops[h.inputs[0]]
            cat = self.cat_of(h.inputs[0])
            if src.op == "find":
                return f"the {cat}"
            if src.op == "filter_color":
                return f"the {src.args['color']} {cat}"
            if src.op == "relate":
                rel = self.pick(RELATION[src.args["relation"]])
                return f"the only {cat} that is {rel} {self.inst(src.inputs[0])}"
            if src.op == "same_color":
                return f"the only {self._other(src)}{cat} that is the same colour as {self.inst(src.inputs[0])}"
        if h.op == "nearest":
            return f"the {h.args['category']} {self.pick(NEAREST)} {self.inst(h.inputs[0])}"
        raise ValueError(f"hop {i} ({h.op}) does not yield an instance")

    def _other(self, h: Hop) -> str:
        """"other " when a set from instance A is of A's own category (A itself is never in it)."""
        return "other " if self.cat_of(h.inputs[0]) == h.args["category"] else ""

    # set-valued hops ----------------------------------------------------------------------------
    def set_phrase(self, i: int) -> str:
        h = self.hops[i]
        if h.op == "find":
            return f"the {plural(h.args['category'])}"
        if h.op == "filter_color":
            return f"the {h.args['color']} {plural(self.cat_of(i))}"
        if h.op == "relate":
            rel = self.pick(RELATION[h.args["relation"]])
            return f"the {plural(h.args['category'])} that are {rel} {self.inst(h.inputs[0])}"
        if h.op == "same_color":
            return (f"the {self._other(h)}{plural(h.args['category'])} that are the same colour as "
                    f"{self.inst(h.inputs[0])}")
        raise ValueError(f"hop {i} ({h.op}) does not yield a set")

    # number-valued hops -------------------------------------------------------------------------
    def number_noun(self, i: int) -> str:
        h = self.hops[i]
        if h.op == "count":
            src = self.hops[h.inputs[0]]
            if src.op == "find":
                return f"the number of {plural(src.args['category'])} in the picture"
            return f"the number of {self.set_phrase(h.inputs[0])[4:]}"
        if h.op == "rank":
            order, key = RANK_ORDER[(h.args["key"], h.args["order"])]
            return f"the position of {self.inst(h.inputs[0])} among {self.set_phrase(h.inputs[1])}, {order} ({key})"
        raise ValueError(f"hop {i} ({h.op}) does not yield a number phrase")

    def question(self, i: int) -> str:
        h = self.hops[i]
        if h.op == "count":
            src = self.hops[h.inputs[0]]
            if src.op == "find":
                cat = plural(src.args["category"])
                return self.pick((f"How many {cat} are there in the picture?", f"How many {cat} can you see?"))
            noun = self.set_phrase(h.inputs[0])[4:]
            if src.op == "filter_color":
                return self.pick((f"How many {noun} are there in the picture?", f"What is the number of {noun}?"))
            short = noun.replace(" that are ", " are ", 1)
            return self.pick((f"How many {short}?", f"What is the number of {noun}?"))
        if h.op == "rank":
            order, key = RANK_ORDER[(h.args["key"], h.args["order"])]
            x, s = self.inst(h.inputs[0]), self.set_phrase(h.inputs[1])
            return self.pick(
                (
                    f"{order.capitalize()} ({key}), what position does {x} hold among {s}?",
                    f"Among {s}, {order} ({key}), at which position is {x}?",
                )
            )
        if h.op == "arith":
            a, b = self.number_noun(h.inputs[0]), self.number_noun(h.inputs[1])
            p, q = NUMBER_LETTERS[0], NUMBER_LETTERS[1]
            setup = f"Let {p} be {a}, and {q} be {b}."
            ask = {
                "add": (f"What is {p} plus {q}?", f"What is {p} + {q}?"),
                "sub": (f"What is {p} minus {q}?", f"What is {p} - {q}?"),
                "max": (f"What is the larger of {p} and {q}?",),
                "min": (f"What is the smaller of {p} and {q}?",),
            }[h.args["fn"]]
            return f"{setup} {self.pick(ask)}"
        raise ValueError(f"last hop ({h.op}) does not yield a number")


def render(hops: Sequence[Hop], rng: random.Random, style: str | None = None) -> str:
    """Question text for ``hops`` (executed or not; values are never read).

    ``style`` is ``"nested"``, ``"stepwise"`` or ``None`` (chosen by ``rng``; stepwise whenever
    an instance hop is consumed twice).
    """
    uses: dict[int, int] = {}
    for h in hops:
        for j in h.inputs:
            uses[j] = uses.get(j, 0) + 1
    reused = any(n > 1 and hops[j].op in ("extreme", "nearest", "unique") for j, n in uses.items())
    if style is None:
        style = "stepwise" if reused or rng.random() < 0.5 else "nested"
    r = _Renderer(hops, rng, stepwise=(style == "stepwise"))
    q = r.question(len(hops) - 1)
    text = " ".join([*r.steps, q]) if r.steps else q
    return text[0].upper() + text[1:]
