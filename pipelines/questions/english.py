"""English word forms for question text: category plurals (``inflect``)."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any


@functools.cache
def _inflect() -> Any:
    import inflect

    engine = inflect.engine()
    engine.classical(ancient=True)  # nucleus -> nuclei, cactus -> cacti; person -> people stays
    return engine


@functools.cache
def known_plurals() -> dict[str, str]:
    """``inflect``'s plural of common category words (``plurals.json``; a unit test checks every entry
    against ``inflect``): importing ``inflect`` costs ~2 s of CPU (typeguard instruments it), more than
    a hundred images' questions, so a process needs it only for a word outside the list."""
    return dict(json.loads(Path(__file__).with_name("plurals.json").read_text(encoding="utf-8")))


@functools.lru_cache(maxsize=4096)
def plural(noun: str) -> str:
    """English plural of a (lowercase, singular) category noun phrase (``inflect``)."""
    head, _, last = noun.rpartition(" ")
    word = known_plurals().get(last) or _inflect().plural_noun(last) or last
    if last.endswith("s") and word == last + "s":  # already plural: glasses, skis, jeans
        word = last
    return f"{head} {word}" if head else word


def listing(words: list[str] | tuple[str, ...], conjunction: str = "and") -> str:
    """Words as an English list: "books", "books and cups", "books, cups and plates" (no serial comma,
    as the rest of the question text)."""
    if len(words) <= 1:
        return "".join(words)
    return f"{', '.join(words[:-1])} {conjunction} {words[-1]}"
