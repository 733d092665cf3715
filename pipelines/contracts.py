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

from pipelines.files import write_atomic
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

# why an input file was refused: ``code`` is one lowercase snake-case word (pipelines.rejects.Quarantined)
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

# one refused item per row, written from pipelines.rejects.Reject: ``code`` is a dotted machine code
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
        ("reason", pa.string()),
    ]
)

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
    """Rows (dicts, or typed records such as :class:`pipelines.rejects.Reject`) → an Arrow table
    with the contract's schema (extra keys refused)."""
    schema = SCHEMAS[name]
    dicts = [r.model_dump() if isinstance(r, BaseModel) else dict(r) for r in rows]
    if dicts:
        extra = set().union(*(r.keys() for r in dicts)) - set(schema.names)
        if extra:
            raise ValueError(f"{name}: unknown columns {sorted(extra)}")
    return pa.Table.from_pylist(dicts, schema=schema)


def conform(table: pa.Table, name: str) -> pa.Table:
    """Cast/reorder ``table`` to the contract; missing columns are an error."""
    schema = SCHEMAS[name]
    missing = [n for n in schema.names if n not in table.column_names]
    if missing:
        raise ValueError(f"{name}: missing columns {missing}")
    return table.select(schema.names).cast(schema)


def parquet_bytes(table: pa.Table) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    return buf.getvalue()


def write_parquet_atomic(table: pa.Table, path: str | Path) -> Path:
    """Write ``table`` as zstd Parquet to ``path`` atomically (:func:`pipelines.files.write_atomic`)."""
    return write_atomic(path, parquet_bytes(table))


def read_parquet(path: str | Path, name: str | None = None) -> pa.Table:
    table = pq.read_table(path)
    return conform(table, name) if name else table
