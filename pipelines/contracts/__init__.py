"""Data contracts between stages, as Arrow schemas (the column names are the contract).

Units and conventions, stated once:

* ``image_id`` is the sha256 hex digest of the image file's bytes.
* ``bbox`` is ``[x, y, w, h]`` in pixels, COCO convention (x, y = top-left corner).
* ``mask_rle`` is a COCO *compressed* RLE ``counts`` string (pycocotools), column-major,
  for a mask of ``mask_height`` x ``mask_width`` pixels; ``area`` is the mask's pixel count.
* ``answer`` columns hold canonical decimal strings (``"3"``, ``"2.5"``): see
  :func:`canonical_number`.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel

from pipelines.contracts.files import write_atomic
from pipelines.reward import canonical_number as canonical_number  # the one rule, kept importable here

MANIFEST = pa.schema(
    [
        ("image_id", pa.string()),
        ("uri", pa.string()),
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("format", pa.string()),
        ("shard", pa.int32()),
    ]
)

# why an input file was refused: ``code`` is one lowercase snake-case word (pipelines.contracts.rejects.Quarantined)
QUARANTINE = pa.schema([("uri", pa.string()), ("code", pa.string()), ("detail", pa.string())])

INSTANCES = pa.schema(
    [
        ("image_id", pa.string()),
        ("instance_id", pa.int32()),
        ("category", pa.string()),
        ("bbox", pa.list_(pa.float64(), 4)),
        ("area", pa.int64()),
        ("score", pa.float64()),
        ("mask_rle", pa.string()),
        ("mask_height", pa.int32()),
        ("mask_width", pa.int32()),
        ("source", pa.string()),
    ]
)

DETECTIONS = pa.schema(
    [
        ("image_id", pa.string()),
        ("category", pa.string()),
        ("bbox", pa.list_(pa.float64(), 4)),  # may be null when the detector gives categories only
        ("score", pa.float64()),
        ("source", pa.string()),
    ]
)

# one refused item per row, written from pipelines.contracts.rejects.Reject: ``code`` is a dotted machine code
# (``item.bad_box``), ``detail`` the human sentence, ``raw`` the offending input (<= rejects.MAX_RAW chars)
REJECTS = pa.schema(
    [
        ("stage", pa.string()),
        ("item_id", pa.string()),
        ("code", pa.string()),
        ("detail", pa.string()),
        ("raw", pa.string()),
    ]
)

QUESTIONS = pa.schema(
    [
        ("question_id", pa.string()),
        ("image_id", pa.string()),
        ("question", pa.string()),
        ("answer", pa.string()),
        ("num_hops", pa.int32()),
        ("hops", pa.string()),  # JSON list of hop objects
        ("generator", pa.string()),
        ("variant", pa.string()),
        ("pass_rate", pa.float64()),  # nullable: solver pass rate (0..1) when difficulty calibration ran
    ]
)

ANNOTATIONS = pa.schema(
    [
        ("question_id", pa.string()),
        ("annotator", pa.string()),
        ("answer", pa.string()),
        ("answerable", pa.bool_()),
        ("submitted_at", pa.timestamp("us", tz="UTC")),
    ]
)

CONSENSUS = pa.schema(
    [
        ("question_id", pa.string()),
        ("status", pa.string()),
        ("answers", pa.list_(pa.string())),
        ("agreed_answer", pa.string()),
        ("matches_generated", pa.bool_()),
        ("reason", pa.string()),  # the human sentence ("disagreement (3 vs 1: 1, 2)"); never parsed
        # the decision's code (pipelines.contracts.rejects.REASONS: decision.*); null: decided before it was recorded
        ("reason_code", pa.string()),
        # who gave the counted answers: "people", "simulated" or "mixed" (null: decided before it was recorded)
        ("answers_source", pa.string()),
    ]
)

#: ``consensus.answers_source``: who gave a decided question's counted answers (null: not recorded, decided
#: before issue 26). Answers from the simulation (``simulated``, or ``mixed`` with people) are never released
#: where the deployment forbids simulated annotators (:func:`pipelines.config.simulated_allowed`).
ANSWERS_SOURCES: tuple[str, ...] = ("people", "simulated", "mixed")
SIMULATED_SOURCES: frozenset[str] = frozenset({"simulated", "mixed"})

SCHEMAS: dict[str, pa.Schema] = {
    "manifest": MANIFEST,
    "quarantine": QUARANTINE,
    "instances": INSTANCES,
    "detections": DETECTIONS,
    "rejects": REJECTS,
    "questions": QUESTIONS,
    "annotations": ANNOTATIONS,
    "consensus": CONSENSUS,
}


def empty_table(name: str) -> pa.Table:
    return SCHEMAS[name].empty_table()


def to_table(rows: Sequence[Mapping[str, Any] | BaseModel], name: str) -> pa.Table:
    """Rows (dicts, or typed records such as :class:`pipelines.contracts.rejects.Reject`) → an Arrow table
    with the contract's schema (extra keys refused)."""
    schema = SCHEMAS[name]
    dicts = [r.model_dump() if isinstance(r, BaseModel) else dict(r) for r in rows]
    if dicts:
        extra = set().union(*(r.keys() for r in dicts)) - set(schema.names)
        if extra:
            raise ValueError(f"{name}: unknown columns {sorted(extra)}")
    return pa.Table.from_pylist(dicts, schema=schema)


#: Columns a table may leave out (read as nulls): set only by an optional stage.
OPTIONAL: dict[str, frozenset[str]] = {"questions": frozenset({"pass_rate"}),
                                       # decisions made before issue 26 did not record who answered
                                       # and before issue 28 did not record a reason code
                                       "consensus": frozenset({"answers_source", "reason_code"})}


class ContractError(ValueError):
    """A table breaks its contract: a required column is missing, or a value cannot be read as the
    contract's type. The message names the column."""


def _kind(t: pa.DataType) -> str:
    for kind, test in (("integer", pa.types.is_integer), ("float", pa.types.is_floating),
                       ("string", lambda x: pa.types.is_string(x) or pa.types.is_large_string(x)),
                       ("binary", lambda x: pa.types.is_binary(x) or pa.types.is_large_binary(x)),
                       ("list", lambda x: pa.types.is_list(x) or pa.types.is_large_list(x)
                        or pa.types.is_fixed_size_list(x)),
                       ("timestamp", pa.types.is_timestamp), ("boolean", pa.types.is_boolean),
                       ("struct", pa.types.is_struct), ("null", pa.types.is_null)):
        if test(t):
            return kind
    return str(t)


def _same_kind(src: pa.DataType, dst: pa.DataType) -> bool:
    """A physical variant of the contract's type (width, offsets), or an all-null column."""
    return _kind(src) in (_kind(dst), "null") or (_kind(src) == "integer" and _kind(dst) == "float")


def conform(table: pa.Table, name: str) -> pa.Table:
    """``table`` as the contract's exact schema (column order and types).

    The contract is the columns and the meaning of their values, not physical types: integers of
    any width, strings or large strings, dictionary-encoded columns are all read (casts are checked:
    a value that does not fit is an error); optional columns (:data:`OPTIONAL`) may be absent and
    read as nulls; extra columns are dropped. A missing required column, or a column whose values
    cannot be read as the contract's type, raises :class:`ContractError` naming it.
    """
    schema = SCHEMAS[name]
    optional = OPTIONAL.get(name, frozenset())
    missing = [n for n in schema.names if n not in table.column_names and n not in optional]
    if missing:
        raise ContractError(f"{name}: missing required column(s) {missing}")
    columns = []
    for field in schema:
        if field.name not in table.column_names:
            columns.append(pa.nulls(table.num_rows, field.type))
            continue
        column = table.column(field.name)
        if pa.types.is_dictionary(column.type):
            column = column.cast(column.type.value_type)
        if not _same_kind(column.type, field.type):
            raise ContractError(f"{name}.{field.name}: {column.type} is not a {field.type} column")
        try:
            columns.append(column.cast(field.type, safe=True))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as err:
            raise ContractError(f"{name}.{field.name}: {column.type} values cannot be read as {field.type} "
                                f"({str(err).splitlines()[0]})") from None
    return pa.Table.from_arrays(columns, schema=schema)


def parquet_bytes(table: pa.Table) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    return buf.getvalue()


def write_parquet_atomic(table: pa.Table, path: str | Path) -> Path:
    """Write ``table`` as zstd Parquet to ``path`` atomically (:func:`pipelines.contracts.files.write_atomic`)."""
    return write_atomic(path, parquet_bytes(table))


def read_parquet(path: str | Path, name: str | None = None) -> pa.Table:
    table = pq.read_table(path)
    return conform(table, name) if name else table
