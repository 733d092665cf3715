"""Natural question text for hop programs, from varied templates.

The text names categories, relations and orderings — never a hop's value, an instance id or the
answer. Two styles: *nested* referring expressions ("How many dogs are to the right of the bottle
nearest to the largest cup?") and *stepwise* ("Let A be the largest cup. Let B be the bottle
nearest to A. How many dogs are to the right of B?"). Stepwise is used whenever an instance is
referred to twice.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from pipelines.questions.program import Hop

_IRREGULAR = {
    "person": "people",
    "man": "men",
    "woman": "women",
    "child": "children",
    "mouse": "mice",
    "foot": "feet",
    "tooth": "teeth",
    "goose": "geese",
    "sheep": "sheep",
    "fish": "fish",
    "deer": "deer",
    "knife": "knives",
    "leaf": "leaves",
    "shelf": "shelves",
    "scissors": "scissors",
    "glasses": "glasses",
    "skis": "skis",
    "bus": "buses",
    "tv": "tvs",
    "potted plant": "potted plants",
}


def plural(noun: str) -> str:
    """English plural of a (lowercase, singular) category noun phrase; inflects the last word."""
    if noun in _IRREGULAR:
        return _IRREGULAR[noun]
    head, _, last = noun.rpartition(" ")
    if last in _IRREGULAR:
        word = _IRREGULAR[last]
    elif last.endswith(("s", "x", "z", "ch", "sh")):
        word = last + "es"
    elif last.endswith("y") and len(last) > 1 and last[-2] not in "aeiou":
        word = last[:-1] + "ies"
    else:
        word = last + "s"
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
    ("area", "max"): ("that covers the most area",),
    ("area", "min"): ("that covers the least area",),
    ("cx", "min"): ("furthest to the left", "closest to the left edge of the image"),
    ("cx", "max"): ("furthest to the right", "closest to the right edge of the image"),
    ("cy", "min"): ("closest to the top of the image", "highest up in the picture"),
    ("cy", "max"): ("closest to the bottom of the image", "lowest down in the picture"),
}
RELATION = {
    "left_of": ("to the left of", "left of"),
    "right_of": ("to the right of", "right of"),
    "above": ("above",),
    "below": ("below", "beneath"),
}
NEAREST = ("nearest to", "closest to")
RANK_ORDER = {
    ("cx", "min"): "counting from the left",
    ("cx", "max"): "counting from the right",
    ("cy", "min"): "counting from the top",
    ("cy", "max"): "counting from the bottom",
    ("area", "max"): "ranked from largest to smallest",
    ("area", "min"): "ranked from smallest to largest",
}
LETTERS = "ABCDEFGH"


class _Renderer:
    def __init__(self, hops: Sequence[Hop], rng: random.Random, stepwise: bool) -> None:
        self.hops = hops
        self.rng = rng
        self.stepwise = stepwise
        self.letter: dict[int, str] = {}
        self.steps: list[str] = []

    def pick(self, options: Sequence[str]) -> str:
        return options[self.rng.randrange(len(options))] if len(options) > 1 else options[0]

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
            self.pick(("Let {L} be {p}.", "Find {p}; call it {L}.", "Take {p} and call it {L}.")).format(
                L=letter, p=phrase
            )
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
            # extreme over a relate set: the <sup> <cat> <rel> <anchor>
            anchor = self.inst(src.inputs[0])
            return f"the {self.pick(SUPERLATIVE[k])} {src.args['category']} {self.pick(RELATION[src.args['relation']])} {anchor}"
        if h.op == "nearest":
            return f"the {h.args['category']} {self.pick(NEAREST)} {self.inst(h.inputs[0])}"
        raise ValueError(f"hop {i} ({h.op}) does not yield an instance")

    # set-valued hops ----------------------------------------------------------------------------
    def set_phrase(self, i: int) -> str:
        h = self.hops[i]
        if h.op == "find":
            return f"the {plural(h.args['category'])}"
        if h.op == "relate":
            return f"the {plural(h.args['category'])} {self.pick(RELATION[h.args['relation']])} {self.inst(h.inputs[0])}"
        raise ValueError(f"hop {i} ({h.op}) does not yield a set")

    # number-valued hops -------------------------------------------------------------------------
    def number_noun(self, i: int) -> str:
        h = self.hops[i]
        if h.op == "count":
            src = self.hops[h.inputs[0]]
            if src.op == "find":
                return f"the number of {plural(src.args['category'])}"
            return f"the number of {self.set_phrase(h.inputs[0])[4:]}"
        if h.op == "rank":
            order = RANK_ORDER[(h.args["key"], h.args["order"])]
            return f"the position of {self.inst(h.inputs[0])} among {self.set_phrase(h.inputs[1])} ({order})"
        if h.op == "arith":
            a, b = self.number_noun(h.inputs[0]), self.number_noun(h.inputs[1])
            return {
                "add": f"the sum of {a} and {b}",
                "sub": f"{a} minus {b}",
                "max": f"the larger of {a} and {b}",
                "min": f"the smaller of {a} and {b}",
            }[h.args["fn"]]
        raise ValueError(f"hop {i} ({h.op}) does not yield a number")

    def question(self, i: int) -> str:
        h = self.hops[i]
        if h.op == "count":
            src = self.hops[h.inputs[0]]
            if src.op == "find":
                cat = plural(src.args["category"])
                return self.pick(
                    (
                        f"How many {cat} are there in the image?",
                        f"How many {cat} can you see?",
                        f"Count the {cat}. How many are there?",
                    )
                )
            rel = self.pick(RELATION[src.args["relation"]])
            cat, anchor = plural(src.args["category"]), self.inst(src.inputs[0])
            return self.pick(
                (
                    f"How many {cat} are {rel} {anchor}?",
                    f"Count the {cat} that are {rel} {anchor}.",
                    f"What is the number of {cat} {rel} {anchor}?",
                )
            )
        if h.op == "rank":
            order = RANK_ORDER[(h.args["key"], h.args["order"])]
            x, s = self.inst(h.inputs[0]), self.set_phrase(h.inputs[1])
            return self.pick(
                (
                    f"{order.capitalize()}, what position does {x} hold among {s}?",
                    f"Among {s}, {order}, at which position is {x}?",
                )
            )
        if h.op == "arith":
            a, b = self.number_noun(h.inputs[0]), self.number_noun(h.inputs[1])
            fn = h.args["fn"]
            forms = {
                "add": (f"What is {a} plus {b}?", f"Add {a} and {b}. What is the total?"),
                "sub": (f"What is {a} minus {b}?", f"Subtract {b} from {a}. What is the result?"),
                "max": (
                    f"Which is greater, {a} or {b}? Answer with that number.",
                    f"Take the larger of {a} and {b}. What is it?",
                ),
                "min": (
                    f"Which is smaller, {a} or {b}? Answer with that number.",
                    f"Take the smaller of {a} and {b}. What is it?",
                ),
            }[fn]
            return self.pick(forms)
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
    reused = any(n > 1 and hops[j].op in ("extreme", "nearest", "relate") for j, n in uses.items())
    if style is None:
        style = "stepwise" if reused or rng.random() < 0.4 else "nested"
    r = _Renderer(hops, rng, stepwise=(style == "stepwise"))
    q = r.question(len(hops) - 1)
    text = " ".join([*r.steps, q]) if r.steps else q
    return text[0].upper() + text[1:]
