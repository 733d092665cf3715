"""The platform's cumulative release: the accepted-set fingerprint decides whether a new tag is needed."""

from __future__ import annotations

import pytest

from pipelines.contracts import to_table
from pipelines.release.platform import accepted_digest

pytestmark = pytest.mark.unit


def _consensus(rows):
    return to_table([{"question_id": q, "status": st, "answers": [], "agreed_answer": a,
                      "matches_generated": True, "reason": None} for q, st, a in rows], "consensus")


def test_digest_depends_only_on_the_accepted_set() -> None:
    a = _consensus([("q1", "accepted", "3"), ("q2", "rejected", None), ("q3", "accepted", "2.5")])
    b = _consensus([("q3", "accepted", "2.5"), ("q1", "accepted", "3"), ("q4", "pending", None)])
    assert accepted_digest(a) == accepted_digest(b)  # order, rejects and pending items do not matter
    c = _consensus([("q1", "accepted", "4"), ("q3", "accepted", "2.5")])
    assert accepted_digest(c) != accepted_digest(a)  # a changed answer is a new release
    d = _consensus([("q1", "accepted", "3"), ("q3", "accepted", "2.5"), ("q5", "accepted", "1")])
    assert accepted_digest(d) != accepted_digest(a)  # a newly accepted question is a new release
