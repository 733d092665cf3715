"""Leakage checks: the text must not give away a value, and every hop must need the image.

``check_text`` refuses a question whose text contains (as digits or as an English number word)
the answer or any intermediate value — a count, a rank, an arithmetic result, the size of any set
hop, or an instance id — and any reference to the set-of-mark numbers (``#3``, ``mark 3``,
``object 3``, ``instance 3``, ``id 3``), which a human or solver never sees. It also refuses text that
does not name every category the program uses (the text would not describe the program).

``check_needs_image`` refuses programs whose hops can be answered without looking — the named
patterns: ``rank`` of an instance by the same key that ``extreme`` used to pick it from the same
set (always 1 or n), ``arith`` of a hop with itself, repeated identical hops, a relation pointing
beyond the extreme member of the same category along the same axis (always empty), a count of a
set that is also narrowed to a unique instance (always 1), and the larger/smaller of a member's
rank and its set's size (always the size / the rank). Everything else that is constant whatever the
image shows is found generally by :mod:`pipelines.questions.degenerate`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from pipelines.contracts import canonical_number
from pipelines.questions.ops.spec import hop_categories
from pipelines.questions.program import Hop, LeakageError, hop_key
from pipelines.questions.templates import plural

_WORDS = [
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
    "twenty",
]
_NUMBER_RE = re.compile(r"(?<![\w.])-?\d+(?:\.\d+)?")
_WORD_RE = re.compile(r"\b(" + "|".join(_WORDS) + r")\b", re.IGNORECASE)
_MARK_RE = re.compile(
    r"(#\s*\d+|\b(?:mark|marker|object|instance|id|label|region|box)\s*#?\s*\d+)", re.IGNORECASE
)


def numbers_in_text(text: str) -> set[str]:
    """Canonical numbers written in ``text`` as digits or as number words (zero..twenty)."""
    found = {canonical_number(m.group(0)) for m in _NUMBER_RE.finditer(text)}
    found |= {str(_WORDS.index(m.group(1).lower())) for m in _WORD_RE.finditer(text)}
    return found


def secret_values(hops: Sequence[Hop]) -> set[str]:
    """Every value a question must not state: numbers, set sizes and instance ids of all hops."""
    out: set[str] = set()
    for h in hops:
        v = h.value
        if isinstance(v, list):
            out.add(str(len(v)))
            out.update(str(int(x)) for x in v)
        elif v is not None:
            out.add(canonical_number(v))
    return out


def check_text(text: str, hops: Sequence[Hop]) -> None:
    """Raise :class:`LeakageError` if ``text`` leaks a value or does not name the program's categories.

    ``hops`` must be executed (values filled)."""
    mark = _MARK_RE.search(text)
    if mark:
        raise LeakageError("mark_reference", f"text refers to a set-of-mark label {mark.group(0)!r}")
    leaked = numbers_in_text(text) & secret_values(hops)
    if leaked:
        answer = canonical_number(hops[-1].value)
        what = "answer" if answer in leaked else "intermediate value"
        raise LeakageError(f"{what.replace(' ', '_')}_in_text", f"text states {sorted(leaked)}")
    low = text.lower()
    for i, h in enumerate(hops):
        for cat in hop_categories(h.args):  # each category of a named group too
            if cat and cat.lower() not in low and plural(cat).lower() not in low:
                raise LeakageError("category_not_in_text", f"text never names {cat!r}", i)


# (key, order) of an extreme -> the relation that points beyond it along the same axis
_BEYOND = {("cx", "min"): "left_of", ("cx", "max"): "right_of", ("cy", "min"): "above", ("cy", "max"): "below"}


def check_needs_image(hops: Sequence[Hop]) -> None:
    """Raise :class:`LeakageError` if a hop's value follows from the program alone (named patterns)."""
    consumers: dict[int, list[Hop]] = {}
    for h in hops:
        for j in h.inputs:
            consumers.setdefault(j, []).append(h)
    for i, h in enumerate(hops):
        if "relation" in h.args:  # relate, relate_group (a named group: any of its categories)
            a = hops[h.inputs[0]]
            if a.op == "extreme" and hops[a.inputs[0]].op == "find":
                src = hops[a.inputs[0]]
                if (
                    src.args["category"] in hop_categories(h.args)
                    and _BEYOND.get((a.args["key"], a.args["order"])) == h.args["relation"]
                ):
                    raise LeakageError(
                        "relate_beyond_extreme", f"no {src.args['category']} lies beyond the extreme one", i
                    )
        if h.op == "count" and any(c.op == "unique" for c in consumers.get(h.inputs[0], [])):
            raise LeakageError("count_of_unique", "counts a set that is also its unique member", i)
        if h.op == "arith" and h.args["fn"] in ("max", "min"):
            ops = {hops[j].op for j in h.inputs}
            if ops == {"rank", "count"}:
                rank, count = (hops[j] for j in sorted(h.inputs, key=lambda j: hops[j].op != "rank"))
                if rank.inputs[1] == count.inputs[0]:
                    raise LeakageError("rank_vs_size", "a rank never exceeds its set's size", i)
    seen: dict[tuple, int] = {}
    for i, h in enumerate(hops):
        key = hop_key(h)
        if key in seen:
            raise LeakageError("repeated_hop", f"hop {i} repeats hop {seen[key]}", i)
        seen[key] = i
        if h.op == "arith" and h.inputs[0] == h.inputs[1]:
            raise LeakageError("arith_self", "arithmetic of a hop with itself", i)
        if h.op == "rank":
            x, s = hops[h.inputs[0]], h.inputs[1]
            if x.op == "extreme" and x.inputs[0] == s and x.args["key"] == h.args["key"]:
                raise LeakageError(
                    "rank_of_extreme",
                    f"rank by {h.args['key']} of the {h.args['key']}-extreme of the same set",
                    i,
                )
