"""The rules behind the suites, without Great Expectations: fast and exhaustive."""

from __future__ import annotations

import json
import re

import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from expectations.samples import rectangle_rle
from expectations.suites import all_check_names
from expectations.suites.annotations import acceptance_errors
from expectations.suites.common import CANONICAL_DECIMAL, rle_matches_declared
from expectations.suites.questions import program_error
from pipelines.config import load_params
from pipelines.contracts import canonical_number

pytestmark = pytest.mark.unit
CANON = re.compile(CANONICAL_DECIMAL)


@given(st.one_of(st.integers(-10**12, 10**12), st.decimals(allow_nan=False, allow_infinity=False, places=4),
                 st.floats(allow_nan=False, allow_infinity=False, width=32)))
def test_canonical_numbers_match_the_regex(value: object) -> None:
    assert CANON.match(canonical_number(value))


@given(st.text(alphabet="0123456789-+.e ", max_size=8))
def test_regex_accepts_exactly_canonical_strings(text: str) -> None:
    try:
        canonical = canonical_number(text)
    except ValueError:
        canonical = None
    assert bool(CANON.match(text)) == (canonical == text)


@pytest.mark.parametrize("text", ["03", "3.0", "-0", "+3", "1e3", " 3", "2.50", ".5", "5.", ""])
def test_non_canonical_answers_are_refused(text: str) -> None:
    assert not CANON.match(text)


def test_rle_check_accepts_real_masks_and_refuses_broken_ones() -> None:
    counts, area = rectangle_rle(48, 64, 5, 6, 10, 12)
    assert rle_matches_declared(counts, 48, 64, area)
    assert not rle_matches_declared(counts, 48, 64, area + 1)  # wrong declared area
    assert not rle_matches_declared(counts[:-2], 48, 64, area)  # truncated
    assert not rle_matches_declared(counts, 10, 10, area)  # runs do not cover the declared size
    assert not rle_matches_declared("garbage!!", 48, 64, area)
    assert not rle_matches_declared(None, 48, 64, area)
    assert not rle_matches_declared(counts, None, 64, area)


def _hop(op: str, inputs: list[int], value: object, kind: str = "perception") -> dict:
    return {"op": op, "args": {}, "inputs": inputs, "kind": kind, "value": value}


GOOD = [_hop("find", [], [1, 3]), _hop("extreme", [0], [3]), _hop("relate", [1], [2, 5], "instance_chain"),
        _hop("count", [2], 2)]


def test_well_formed_program_passes() -> None:
    assert program_error(GOOD, 4) is None
    assert program_error(json.loads(json.dumps(GOOD)), 4) is None


@pytest.mark.parametrize(("program", "num_hops", "reason"), [
    (GOOD, 5, "num_hops is 5"),
    ([], 0, "non-empty"),
    ({"op": "find"}, 1, "non-empty JSON list"),
    ([*GOOD[:3], _hop("count", [], 2)], 4, "inputs must list earlier hops"),
    ([*GOOD[:3], _hop("count", [3], 2)], 4, "not an earlier hop"),
    ([GOOD[0], GOOD[1], _hop("relate", [0], [2]), _hop("count", [2], 1)], 4, "hop 1 is not used"),
    ([*GOOD[:3], _hop("count", [2], [1])], 4, "last hop does not yield a number"),
    ([_hop("find", [], [3, 1]), *GOOD[1:]], 4, "not sorted"),
    ([_hop("find", [], [1, 3], kind="vibes"), *GOOD[1:]], 4, "kind"),
    ([{"op": "find", "inputs": [], "kind": "perception", "value": [1]}, *GOOD[1:]], 4, "keys"),
    ([*GOOD[:3], _hop("count", [2], float("nan"))], 4, "neither"),
])
def test_malformed_programs_are_named(program: object, num_hops: int, reason: str) -> None:
    err = program_error(program, num_hops)
    assert err is not None and reason in err


def _annotations(rows: list[tuple[str, str, str | None, bool]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["question_id", "annotator", "answer", "answerable"])


def test_acceptance_rule() -> None:
    ann = _annotations(
        [("ok", f"a{i}", "3", True) for i in range(4)]
        + [("ok2", f"a{i}", v, True) for i, v in enumerate(["2.5", "2.50", "2.5", "+2.5"])]  # equal after normalising
        + [("three", f"a{i}", "3", True) for i in range(3)]
        + [("same_user", "a0", "3", True)] * 4
        + [("disagree", f"a{i}", str(i // 3), True) for i in range(4)]
        + [("unanswerable", f"a{i}", None if i == 0 else "3", i != 0) for i in range(4)]
        + [("wrong_agreed", f"a{i}", "4", True) for i in range(4)]
    )
    qids = pd.Series(["ok", "ok2", "three", "same_user", "disagree", "unanswerable", "wrong_agreed", "absent"])
    agreed = pd.Series(["3", "2.5", "3", "3", "0", "3", "5", "1"])
    errors = acceptance_errors(qids, agreed, ann, required=4).tolist()
    assert errors[0] is None and errors[1] is None
    assert "3 distinct annotators" in errors[2]
    assert "1 distinct annotators" in errors[3]
    assert "2 different answers" in errors[4]
    assert "unanswerable" in errors[5]
    assert "differs" in errors[6]
    assert "0 distinct annotators" in errors[7]
    only_some = acceptance_errors(qids, agreed, ann, 4, applies=pd.Series([True] + [False] * 7)).tolist()
    assert only_some == [None] * 8


def test_params_severity_names_are_real_expectations() -> None:
    params = load_params()
    names = all_check_names(params)
    assert set(params.validation.severity) <= names
    assert {"instances.mask_rle_decodes", "questions.hop_instances_exist", "consensus.acceptance_rule",
            "release.no_image_in_both_splits", "questions.answer_concentration"} <= names
