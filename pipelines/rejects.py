"""Rejects are data: one typed record for everything a stage refuses.

A :class:`Reject` is one row of the ``rejects`` contract (:data:`pipelines.contracts.REJECTS`):

* ``stage`` — the stage that refused the item (``detect``, ``segment``, ``annotations``,
  ``questions``, ``annotation``, ``release``, ...);
* ``item_id`` — what was refused: an image id, ``<image_id>#<instance_id>``, ``<image_id>#item<k>``
  (the k-th item of a model answer), a question id, ``<question_id>/annotation-<id>``, a COCO
  annotation id;
* ``code`` — a stable dotted machine code, ``<family>.<what>`` in lowercase snake case
  (``item.bad_box``, ``coco.unknown_image``, ``leakage.blind_solvable``); counts and reports group
  by this column, never by parsing ``detail``;
* ``detail`` — the human sentence (never empty);
* ``raw`` — the offending input as text (model output, annotation JSON, uri), at most
  :data:`MAX_RAW` characters (longer input is cut; non-text input is serialised as JSON).

A :class:`Quarantined` is one row of the ``quarantine`` contract: an input file refused before it
became an image of the manifest, with its refusal ``code`` (one lowercase snake-case word such as
``truncated_or_corrupt``, see :data:`pipelines.ingest.decode.REFUSAL_CODES`) and ``detail``.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from typing import Any, Final

import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field, field_validator

from pipelines.contracts import QUARANTINE, REJECTS

MAX_RAW: Final = 4000  # characters of offending input kept in a reject row
CODE_PATTERN: Final = r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)+$"
QUARANTINE_CODE_PATTERN: Final = r"^[a-z][a-z0-9_]*$"


def raw_text(value: Any) -> str:
    """Offending input → text of at most :data:`MAX_RAW` characters (``None`` → ``""``)."""
    if value is None:
        return ""
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    return text[:MAX_RAW]


class Reject(BaseModel):
    """One refused item (a row of the ``rejects`` contract); see the module docstring."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    stage: str = Field(min_length=1)
    item_id: str
    code: str = Field(pattern=CODE_PATTERN)
    detail: str = Field(min_length=1)
    raw: str = ""

    @field_validator("raw", mode="before")
    @classmethod
    def _truncate(cls, value: Any) -> str:
        return raw_text(value)

    def row(self) -> dict[str, str]:
        """The contract row."""
        return self.model_dump()


class Quarantined(BaseModel):
    """One refused input file (a row of the ``quarantine`` contract)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    uri: str = Field(min_length=1)
    code: str = Field(pattern=QUARANTINE_CODE_PATTERN)
    detail: str = Field(min_length=1)

    def row(self) -> dict[str, str]:
        return self.model_dump()


def rejects_table(records: Iterable[Reject]) -> pa.Table:
    """Reject records → the Arrow table of the ``rejects`` contract (same order)."""
    return pa.Table.from_pylist([r.row() for r in records], schema=REJECTS)


def rejects_from_table(table: pa.Table) -> list[Reject]:
    """A ``rejects`` table → records (validated: a row with a malformed code is an error)."""
    return [Reject(**row) for row in table.select(["stage", "item_id", "code", "detail", "raw"]).to_pylist()]


def quarantine_table(records: Iterable[Quarantined]) -> pa.Table:
    """Quarantine records → the Arrow table of the ``quarantine`` contract (same order)."""
    return pa.Table.from_pylist([r.row() for r in records], schema=QUARANTINE)


def count_codes(records: Iterable[Reject | Quarantined] | pa.Table) -> dict[str, int]:
    """How many records per ``code`` (records, or a ``rejects``/``quarantine`` table)."""
    codes = records.column("code").to_pylist() if isinstance(records, pa.Table) else [r.code for r in records]
    return dict(Counter(codes))
