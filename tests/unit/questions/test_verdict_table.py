"""The shipped degeneracy verdicts: judged under today's code, equal to verdicts judged now, complete
for what the generator asks, ignored when stale; and the front cache keys shapes exactly as the JSON
shape key does."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest

from pipelines.questions import degenerate as D
from pipelines.questions import verdict_table as V
from pipelines.questions.generator import scene_candidates
from pipelines.questions.program import Hop, LeakageError
from pipelines.questions.synthetic import random_scene

pytestmark = pytest.mark.unit


def _shipped() -> dict:
    return json.loads(D.TABLE_PATH.read_text(encoding="utf-8"))


def test_the_shipped_table_was_judged_under_todays_code() -> None:
    """Any edit to a file a verdict depends on changes the stamp: rerun
    ``python -m pipelines.questions.verdict_table --write`` (CI fails here until then)."""
    data = _shipped()
    assert data["stamp"] == D.source_stamp(), "stale: python -m pipelines.questions.verdict_table --write"
    assert data["shapes"] == len(data["verdicts"]) > 1000
    assert D.shipped_verdicts()  # read, not ignored


def test_shipped_verdicts_equal_verdicts_judged_now() -> None:
    table = D.shipped_verdicts()
    programs = list(itertools.islice(V.grammar_programs(), 0, None, 997))  # ~28 spread over the grammar
    degenerate_seen = 0
    for hops in programs:
        shape = D.canonical_shape(D.shape_key(hops))
        judged = D._verdict.__wrapped__(shape)
        assert table[D.table_key(shape)] == judged, shape
        degenerate_seen += judged is not None
    assert degenerate_seen >= 3  # the sample holds refused shapes too


def test_the_generator_judges_no_shape_on_the_spot() -> None:
    """Every shape the generator checks on varied scenes is in the table (a grammar that grows without
    ``verdict_table`` learning it fails here)."""
    D.clear_caches()
    try:
        for n, seed in itertools.product((4, 8, 20, 60), range(6)):
            scene_candidates(random_scene(seed, n, image_id=f"s{n}-{seed}"), 12, seed=seed)
        assert D._verdict.cache_info().currsize == 0
    finally:
        D.clear_caches()


def test_a_stale_or_missing_table_is_ignored_and_verdicts_stay_the_same(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    squares = [Hop("find", {"category": "square"}), Hop("extreme", {"key": "cx", "order": "min"}, (0,)),
               Hop("nearest", {"category": "circle"}, (1,)),
               Hop("relate", {"relation": "left_of", "category": "square"}, (1,)), Hop("count", {}, (3,))]
    shape = D.canonical_shape(D.shape_key(squares))
    stale = _shipped()
    stale["stamp"] = "0" * 64
    stale["verdicts"][D.table_key(shape)] = None  # a wrong verdict a stale table could hold
    path = tmp_path / "verdicts.json"
    path.write_text(json.dumps(stale), encoding="utf-8")
    for where in (path, tmp_path / "absent.json"):
        monkeypatch.setattr(D, "TABLE_PATH", where)
        D.clear_caches()
        try:
            assert D.shipped_verdicts() == {}
            with pytest.raises(LeakageError, match="constant_answer"):
                D.check_not_degenerate(squares)
        finally:
            D.clear_caches()


def test_the_front_cache_key_is_the_shape_key() -> None:
    """Two programs share a tuple key exactly when they share the JSON shape key."""
    by_tuple: dict[tuple, str] = {}
    by_key: dict[str, tuple] = {}
    programs = list(itertools.islice(V.grammar_programs(), 0, None, 7))
    renamed = [[Hop(h.op, {k: (f"cat{v}" if k == "category" else v) for k, v in h.args.items()}, h.inputs)
                for h in hops] for hops in programs[:300]]
    for hops in programs + renamed:
        t, k = D._shape_tuple(hops), D.shape_key(hops)
        assert by_tuple.setdefault(t, k) == k
        assert by_key.setdefault(k, t) == t
    with pytest.raises(TypeError):  # not a string: only the JSON says what it is
        D._shape_tuple([Hop("find", {"category": 1})])
