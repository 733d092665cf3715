"""Question text for hop programs: worded so that a literal reading gives the program's answer.

The text names categories, colours, relations and orderings — never a hop's value, an instance id
or the answer (docs/hop-programs.md, "Question text"). Relations are worded by what they compute:
``left_of`` is "further left than A" (not "beneath", which a reader takes to mean *under* A),
``below`` is "lower down in the picture than A". Arithmetic always names its two numbers
separately ("Let P be the number of circles in the picture, and Q the number of squares that
are higher up in the picture than A. What is P plus Q?"), so the scope of a relation never
spans both operands. Instances are named nested ("the bottle nearest to the largest cup") or
stepwise ("Let A be the largest cup. Let B be the bottle nearest to A. ..."); stepwise whenever
an instance is used twice. Plurals come from ``inflect``. Each op's own words (its phrases
for instances, sets, numbers and whole questions) live in its module of
:mod:`pipelines.questions.ops`; this module composes them.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from pipelines.questions.english import listing, plural
from pipelines.questions.ops import OPS
from pipelines.questions.ops.spec import GROUP_ARG, Hop

LETTERS = "ABCDEFGH"


class Renderer:
    """Words one program; each op's phrases come from its :class:`~pipelines.questions.ops.spec.OpSpec`
    (this class is the :class:`~pipelines.questions.ops.spec.Wording` they are given)."""

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
        if GROUP_ARG in h.args:  # a named group: "book or cup"
            return listing(list(h.args[GROUP_ARG]), "or")
        return self.cat_of(h.inputs[0])

    # instance-valued hops -----------------------------------------------------------------------
    def inst(self, i: int) -> str:
        if i in self.letter:
            return self.letter[i]
        phrase = self._phrase(i, "instance_phrase", "an instance")
        if not self.stepwise:
            return phrase
        letter = LETTERS[len(self.letter)]
        self.letter[i] = letter
        self.steps.append(
            self.pick(("Let {L} be {p}.", "Find {p}; call it {L}.")).format(L=letter, p=phrase)
        )
        return letter

    def other(self, h: Hop) -> str:
        """"other " when a set from instance A is of A's own category (A itself is never in it)."""
        return "other " if self.cat_of(h.inputs[0]) == h.args.get("category") else ""

    # each op words itself (its module in pipelines.questions.ops) ---------------------------------
    def _phrase(self, i: int, kind: str, what: str) -> str:
        h = self.hops[i]
        spec = OPS.get(h.op)
        phrase = getattr(spec, kind, None) if spec is not None else None
        if phrase is None:
            raise ValueError(f"hop {i} ({h.op}) does not yield {what}")
        return str(phrase(self, i))

    def set_phrase(self, i: int) -> str:
        return self._phrase(i, "set_phrase", "a set")

    def only_phrase(self, i: int) -> str:
        return self._phrase(i, "only_phrase", "a set with an only member")

    def number_noun(self, i: int) -> str:
        return self._phrase(i, "number_noun", "a number phrase")

    def question(self, i: int) -> str:
        spec = OPS.get(self.hops[i].op)
        if spec is None or spec.question is None:
            raise ValueError(f"last hop ({self.hops[i].op}) does not yield a number")
        return spec.question(self, i)


def render(hops: Sequence[Hop], rng: random.Random, style: str | None = None) -> str:
    """Question text for ``hops`` (executed or not; values are never read).

    ``style`` is ``"nested"``, ``"stepwise"`` or ``None`` (chosen by ``rng``; stepwise whenever
    an instance hop is consumed twice).
    """
    uses: dict[int, int] = {}
    for h in hops:
        for j in h.inputs:
            uses[j] = uses.get(j, 0) + 1
    reused = any(n > 1 and getattr(OPS.get(hops[j].op), "output", None) == "instance" for j, n in uses.items())
    if style is None:
        style = "stepwise" if reused or rng.random() < 0.5 else "nested"
    r = Renderer(hops, rng, stepwise=(style == "stepwise"))
    q = r.question(len(hops) - 1)
    text = " ".join([*r.steps, q]) if r.steps else q
    return text[0].upper() + text[1:]


__all__ = ["LETTERS", "Renderer", "plural", "render"]
