"""The typed reject record and its table (the ``rejects`` contract)."""

from __future__ import annotations

import pyarrow as pa
import pytest
from pydantic import ValidationError

from pipelines.contracts import QUARANTINE, REJECTS, conform, to_table
from pipelines.contracts.rejects import (
    MAX_RAW,
    Quarantined,
    Reject,
    count_codes,
    quarantine_table,
    rejects_from_table,
    rejects_table,
)

pytestmark = pytest.mark.unit


def test_a_reject_is_one_contract_row_with_the_code_as_its_own_column() -> None:
    r = Reject(stage="detect", item_id="abc#item2", code="item.bad_box", detail="bbox_2d must be 4 numbers",
               raw='{"bbox_2d": [1, 2, 3]}')
    table = rejects_table([r])
    assert table.schema == REJECTS
    assert table.to_pylist() == [{"stage": "detect", "item_id": "abc#item2", "code": "item.bad_box",
                                  "detail": "bbox_2d must be 4 numbers", "raw": '{"bbox_2d": [1, 2, 3]}'}]


@pytest.mark.parametrize("code", ["item.bad_box", "no_question.reach.set_too_large", "leakage.blind_solvable",
                                  "coco.unknown_image", "scene.low_score2"])
def test_dotted_codes_are_accepted(code: str) -> None:
    assert Reject(stage="s", item_id="i", code=code, detail="d").code == code


@pytest.mark.parametrize("code", ["", "bad_box", "item.", ".bad", "Item.bad_box", "item.bad box",
                                  "item: bad", "unparseable answer: no json"])
def test_codes_that_are_not_dotted_machine_codes_are_refused(code: str) -> None:
    with pytest.raises(ValidationError):
        Reject(stage="s", item_id="i", code=code, detail="d")


def test_detail_and_stage_are_required_and_the_record_is_frozen() -> None:
    with pytest.raises(ValidationError):
        Reject(stage="s", item_id="i", code="a.b", detail="")
    with pytest.raises(ValidationError):
        Reject(stage="", item_id="i", code="a.b", detail="d")
    with pytest.raises(ValidationError):
        Reject(stage="s", item_id="i", code="a.b")  # type: ignore[call-arg]
    with pytest.raises(ValidationError):
        Reject(stage="s", item_id="i", code="a.b", detail="d", reason="x")  # type: ignore[call-arg]
    r = Reject(stage="s", item_id="i", code="a.b", detail="d")
    with pytest.raises(ValidationError):
        r.code = "c.d"  # type: ignore[misc]


def test_raw_is_truncated_to_the_documented_maximum_and_non_text_is_json() -> None:
    long = Reject(stage="s", item_id="i", code="a.b", detail="d", raw="x" * (MAX_RAW + 500))
    assert long.raw == "x" * MAX_RAW
    assert Reject(stage="s", item_id="i", code="a.b", detail="d", raw={"b": 1, "a": [2]}).raw == '{"a": [2], "b": 1}'
    assert Reject(stage="s", item_id="i", code="a.b", detail="d", raw=None).raw == ""


def test_table_round_trip_through_the_contract() -> None:
    records = [Reject(stage="questions", item_id=f"q{k}", code=code, detail=f"why {k}", raw=f"raw {k}")
               for k, code in enumerate(["scene.low_score", "parse.no_json", "scene.low_score"])]
    table = conform(rejects_table(records), "rejects")
    assert rejects_from_table(table) == records
    assert to_table(records, "rejects").equals(table)  # typed records are accepted where rows are
    assert count_codes(records) == count_codes(table) == {"scene.low_score": 2, "parse.no_json": 1}
    assert rejects_table([]).schema == REJECTS and rejects_table([]).num_rows == 0


def test_a_table_with_an_old_or_malformed_code_does_not_read_back() -> None:
    bad = pa.Table.from_pylist([{"stage": "s", "item_id": "i", "code": "unparseable answer", "detail": "d",
                                 "raw": ""}], schema=REJECTS)
    with pytest.raises(ValidationError):
        rejects_from_table(bad)


def test_quarantine_rows_split_code_and_detail() -> None:
    q = Quarantined(uri="s3://b/in/x.jpg", code="truncated_or_corrupt", detail="image file is truncated")
    table = quarantine_table([q])
    assert table.schema == QUARANTINE
    assert table.to_pylist() == [{"uri": "s3://b/in/x.jpg", "code": "truncated_or_corrupt",
                                  "detail": "image file is truncated"}]
    assert count_codes(table) == {"truncated_or_corrupt": 1}
    for bad in ({"code": "Not A Code"}, {"detail": ""}, {"uri": ""}):
        with pytest.raises(ValidationError):
            Quarantined(**{"uri": "u", "code": "empty", "detail": "0 bytes", **bad})


# -- the code table (issue 28: typed reasons end to end) ---------------------------------------------------
def test_every_code_of_the_table_is_well_formed_and_every_decision_code_has_a_label() -> None:
    import re

    from pipelines.contracts.rejects import CODE_PATTERN, DECISION_CODES, REASONS, REJECTION_FAMILIES, reason_label

    assert all(re.fullmatch(CODE_PATTERN, code) for code in REASONS)
    assert set(DECISION_CODES) <= set(REASONS)
    assert REJECTION_FAMILIES == ("not answerable", "ambiguous", "disagreement")
    assert reason_label("integrity.changed_by_other").label == "changed by another account"
    # a code the table does not name yet reads as its own family, labelled by itself; no code: unrecorded
    assert (reason_label("scene.new_kind").family, reason_label("scene.new_kind").label) == ("scene", "scene.new_kind")
    assert reason_label(None).family == reason_label("").family == "unrecorded"


def test_the_integrity_codes_of_the_annotation_stage_are_all_labelled() -> None:
    from pipelines.annotation.integrity import CODES
    from pipelines.contracts.rejects import REASONS

    assert {REASONS[c].family for c in CODES} == {"integrity"}
