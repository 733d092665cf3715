"""The shipped plurals (``pipelines/questions/plurals.json``) are exactly ``inflect``'s, so the question
text is the same whether or not a process ever imports ``inflect``."""

from __future__ import annotations

import json

import pytest

from pipelines.questions import english

pytestmark = pytest.mark.unit


def test_every_known_plural_is_inflects() -> None:
    engine = english._inflect()
    known = english.known_plurals()
    assert len(known) >= 80 and {"cup", "person", "knife", "scissors", "light"} <= set(known)
    wrong = {w: engine.plural_noun(w) or w for w, p in known.items() if p != (engine.plural_noun(w) or w)}
    assert not wrong, f"fix plurals.json: {json.dumps(wrong)}"


def test_phrases_read_the_same_with_and_without_the_list(monkeypatch: pytest.MonkeyPatch) -> None:
    phrases = ["cup", "traffic light", "person", "scissors", "skis", "dining table", "knife", "tree"]
    with_list = [english.plural.__wrapped__(p) for p in phrases]
    monkeypatch.setattr(english, "known_plurals", lambda: {})
    assert [english.plural.__wrapped__(p) for p in phrases] == with_list
    assert with_list[:4] == ["cups", "traffic lights", "people", "scissors"]
