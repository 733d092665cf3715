"""Any text an annotator can type is data: every parser of human input returns a value or a reason.

Table-driven rules of :func:`pipelines.annotation.answers.parse_answer`, then property tests (hypothesis)
feeding random text and random JSON to each parser: none raises anything but its documented error.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipelines.annotation.answers import AMBIGUOUS, NON_NUMERIC, OUT_OF_RANGE, TOO_LONG, parse_answer
from pipelines.annotation.consensus import records_from_table
from pipelines.annotation.labeling import ANSWER_FIELD, COMMENT_FIELD, VERDICT_FIELD
from pipelines.annotation.validate import InvalidAnnotation, parse_result, parse_time, validate_task_annotations
from pipelines.reward import canonical_number

pytestmark = pytest.mark.unit
FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

CASES = [
    ("3", "3"), (" 7 ", "7"), ("\u00a07\u2009", "7"), (3, "3"), (2.5, "2.5"), ("3.0", "3"), ("+3", "3"), ("-0", "0"),
    ("2,5", "2.5"), ("0,75", "0.75"), ("1,000", "1000"), ("12,345.5", "12345.5"), ("1.234,5", "1234.5"),
    ("1 000", "1000"), ("1'000", "1000"), ("1\u202f000", "1000"),
    ("\u0663", "3"), ("\uff13", "3"), ("\u0969", "3"), ("\u22122", "-2"), ("\uff0d4", "-4"), ("\u0661\u0662", "12"),
    (".5", "0.5"), ("1e3", "1000"), (["4"], "4"),
    ("1e999999999", OUT_OF_RANGE), ("1e-999999999", OUT_OF_RANGE), (10**40, OUT_OF_RANGE),
    ("NaN", NON_NUMERIC), ("nan", NON_NUMERIC), ("inf", NON_NUMERIC), ("-Infinity", NON_NUMERIC),
    (float("nan"), NON_NUMERIC), (float("inf"), NON_NUMERIC), (True, NON_NUMERIC), (None, NON_NUMERIC),
    ("", NON_NUMERIC), ("three", NON_NUMERIC), ({"n": 3}, NON_NUMERIC), ([], NON_NUMERIC), (["1", "2"], NON_NUMERIC),
    ("1,2,3", AMBIGUOUS), ("1.2.3", AMBIGUOUS), ("1,2.3", AMBIGUOUS), ("1 00", AMBIGUOUS), ("1" * 10_000, TOO_LONG),
    # one comma + exactly three digits after a non-zero lead is thousands; any other single comma is decimal
    ("1,500", "1500"), ("1,5000", "1.5"), ("1,50", "1.5"), ("0,500", "0.5"), (",5", "0.5"), ("1.000", "1"),
    ("1.234.567,89", "1234567.89"), ("1 000,5", "1000.5"), ("1\u3000000", "1000"), ("-1'234.5", "-1234.5"),
    ("0.500,5", AMBIGUOUS), ("0 500", AMBIGUOUS), ("1 000'000", AMBIGUOUS), ("1,000 000", AMBIGUOUS),
    ("1,000,5", AMBIGUOUS), ("2,5e3", AMBIGUOUS), ("--3", AMBIGUOUS), ("5-3", AMBIGUOUS),
    # invisible marks around copied text, other spaces, dashes used as minus
    ("\u200f\u0663", "3"), ("\ufeff3", "3"), ("3\u200b", "3"), ("\u20023\u2003", "3"), ("\u20133", "-3"),
    ("\uff11\uff0c\uff15", "1.5"), ("\uff12\uff45\uff13", "2000"),
    # exponents are bounded; so are significant digits (never silently rounded)
    ("2.5E-2", "0.025"), ("1e14", "100000000000000"), ("1e15", OUT_OF_RANGE), ("1e-16", OUT_OF_RANGE),
    ("1" * 28, OUT_OF_RANGE), ("1234567890.123456789012345678", "1234567890.123456789012345678"),
    ("1234567890.1234567890123456789", OUT_OF_RANGE), ("1e999999999999999999999", OUT_OF_RANGE),
    (1e300, OUT_OF_RANGE), (5e-324, OUT_OF_RANGE), (0.1, "0.1"), (-0.0, "0"), (10**15 - 1, "999999999999999"),
    ("3 cups", NON_NUMERIC), ("\u00b2", NON_NUMERIC), ("e", NON_NUMERIC), ("-", NON_NUMERIC), ("\u200b", NON_NUMERIC),
]


@pytest.mark.parametrize("raw,want", CASES, ids=[repr(c[0])[:20] for c in CASES])
def test_rules(raw, want):
    got = parse_answer(raw)
    if want.startswith("result."):
        assert got.value is None and got.code == want and got.detail
    else:
        assert got.value == want and got.code is None


def test_the_measured_crash_and_misreading_are_gone():
    # 1e999999999 crashed every decision with decimal.Overflow; 2,5 was read as 25
    result = [{"from_name": ANSWER_FIELD, "to_name": "image", "type": "number", "value": {"number": "1e999999999"}}]
    with pytest.raises(InvalidAnnotation) as err:
        parse_result(result)
    assert err.value.code == OUT_OF_RANGE
    with pytest.raises(ValueError):
        canonical_number("1e999999999")
    assert parse_answer("2,5").value == "2.5"


@FAST
@given(st.text(max_size=80))
def test_random_text_is_a_value_or_a_reason(text):
    got = parse_answer(text)
    assert (got.value is None) != (got.code is None)
    if got.value is not None:
        assert parse_answer(got.value).value == got.value  # canonical values round-trip
        assert canonical_number(got.value) == got.value  # and agree with the release's rule


@FAST
@given(st.text(alphabet="0123456789,.'- eE+\u2212\u0663\uff13\u00a0\u2009\u200f", max_size=24))
def test_number_like_text_is_a_value_or_a_reason(text):
    # mostly digits and separators: exercises the grouping / decimal-comma rules far more than st.text()
    got = parse_answer(text)
    assert (got.value is None) != (got.code is None)
    if got.value is not None:
        assert parse_answer(got.value).value == got.value
        assert canonical_number(got.value) == got.value
    else:
        assert got.code in {NON_NUMERIC, AMBIGUOUS, OUT_OF_RANGE} and got.detail


@FAST
@given(st.decimals(min_value=-10**14, max_value=10**14, places=6, allow_nan=False, allow_infinity=False))
def test_plain_numbers_agree_with_canonical_number(d):
    assert parse_answer(str(d)).value == canonical_number(str(d))
    assert parse_answer(f"{d:,}").value == canonical_number(str(d))  # with thousands commas


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
                    lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=8), kids, max_size=3),
                    max_leaves=8)


@FAST
@given(JSON)
def test_random_json_answers(value):
    got = parse_answer(value)
    assert (got.value is None) != (got.code is None)


@FAST
@given(st.one_of(JSON, st.text(max_size=30), st.decimals(allow_nan=True, allow_infinity=True)))
def test_canonical_number_raises_only_value_error(value):
    try:
        out = canonical_number(value)
    except ValueError:
        return
    assert isinstance(out, str) and len(out) <= 120


def region(name, value):
    return {"from_name": name, "to_name": "image", "type": "x", "value": value}


RESULTS = st.lists(st.one_of(
    st.builds(region, st.sampled_from([ANSWER_FIELD, VERDICT_FIELD, COMMENT_FIELD, "other"]),
              st.one_of(JSON, st.fixed_dictionaries({"number": JSON}), st.fixed_dictionaries({"text": JSON}),
                        st.fixed_dictionaries({"choices": JSON}))),
    JSON), max_size=4)


@FAST
@given(st.one_of(RESULTS, JSON))
def test_parse_result_raises_only_invalid_annotation(result):
    try:
        answer, verdict, comment = parse_result(result)
    except InvalidAnnotation as err:
        assert err.code.startswith("result.") and err.detail
        return
    assert isinstance(verdict, str) and isinstance(comment, str) and len(comment) <= 2000
    assert answer is None or parse_answer(answer).value == answer


@FAST
@given(st.one_of(st.text(max_size=40), JSON, st.datetimes()))
def test_parse_time_raises_only_value_error(value):
    try:
        got = parse_time(value)
    except ValueError:
        return
    assert got.tzinfo is not None


ANNOTATION = st.one_of(JSON, st.fixed_dictionaries({
    "id": JSON, "completed_by": st.one_of(st.integers(1, 9), JSON), "was_cancelled": JSON,
    "created_at": st.one_of(st.just("2026-12-01T00:00:00Z"), st.text(max_size=12), JSON),
    "lead_time": st.one_of(st.floats(), JSON), "result": st.one_of(RESULTS, JSON)}))


@FAST
@given(st.lists(ANNOTATION, max_size=5))
def test_validate_task_annotations_never_raises(anns):
    records, rejects = validate_task_annotations([{"id": 1, "data": {"question_id": "q"}, "annotations": anns}])
    assert len(records) + len(rejects) == len(anns)
    for record in records:
        assert record.lead_time_s is None or (math.isfinite(record.lead_time_s) and record.lead_time_s >= 0)
    for reject in rejects:
        assert reject.code and reject.detail
        json.loads(reject.raw)


@pytest.mark.parametrize("lead", [float("nan"), float("inf"), -1.0, 10**400, "12", True, None])
def test_a_lead_time_that_is_no_duration_is_none(lead):
    ann = {"id": 1, "completed_by": 1, "created_at": "2026-12-01T00:00:00Z", "lead_time": lead,
           "result": [{"from_name": ANSWER_FIELD, "to_name": "image", "type": "number", "value": {"number": "2,5"}}]}
    records, rejects = validate_task_annotations([{"id": 1, "data": {"question_id": "q"}, "annotations": [ann]}])
    assert not rejects and records[0].lead_time_s is None and records[0].answer == "2.5"


ROW = st.fixed_dictionaries({
    "question_id": st.one_of(st.text(max_size=5), st.none()), "annotator": st.one_of(st.text(max_size=5), st.none()),
    "answer": st.one_of(st.text(max_size=12), st.none()), "answerable": st.one_of(st.booleans(), st.none()),
    "submitted_at": st.one_of(st.none(), st.datetimes(timezones=st.just(UTC))),
    "verdict": st.one_of(st.none(), st.text(max_size=12)), "lead_time_s": st.one_of(st.none(), st.floats()),
})


@FAST
@given(st.lists(ROW, max_size=6))
def test_records_from_table_never_raises(rows):
    table = pa.Table.from_pylist(rows, schema=pa.schema([
        ("question_id", pa.string()), ("annotator", pa.string()), ("answer", pa.string()),
        ("answerable", pa.bool_()), ("submitted_at", pa.timestamp("us", tz="UTC")), ("verdict", pa.string()),
        ("lead_time_s", pa.float64())]))
    records, rejects = records_from_table(table)
    assert len(records) + len(rejects) == len(rows)
    assert all(r.code for r in rejects)
    assert all(isinstance(r.submitted_at, datetime) for r in records)
    assert all(r.lead_time_s is None or math.isfinite(r.lead_time_s) for r in records)
    assert all(r.answer is None or parse_answer(r.answer).value == r.answer for r in records)
