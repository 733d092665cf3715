"""English word forms for question text: category plurals (``inflect``)."""

from __future__ import annotations

import functools
from typing import Any


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
