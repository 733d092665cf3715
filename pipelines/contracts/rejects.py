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

Every code a report or a page shows has one entry in :data:`REASONS`: its ``family`` (what counts,
filters and plots group by) and its human ``label``. :func:`reason_label` is the one way to read
them; nothing parses a ``detail`` or a consensus ``reason`` sentence back into a kind.

A :class:`Quarantined` is one row of the ``quarantine`` contract: an input file refused before it
became an image of the manifest, with its refusal ``code`` (one lowercase snake-case word such as
``truncated_or_corrupt``, see :data:`pipelines.ingest.decode.REFUSAL_CODES`) and ``detail``.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Final

import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field, field_validator

from pipelines.contracts import QUARANTINE, REJECTS

MAX_RAW: Final = 4000  # characters of offending input kept in a reject row
CODE_PATTERN: Final = r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)+$"
QUARANTINE_CODE_PATTERN: Final = r"^[a-z][a-z0-9_]*$"


@dataclass(frozen=True)
class ReasonLabel:
    """How a code reads on a page or a card: ``family`` (what reports group by) and ``label``."""

    family: str
    label: str


#: consensus decisions (``consensus.reason_code``, :func:`pipelines.annotation.consensus.decide`)
DECISION_UNANIMOUS: Final = "decision.unanimous"
DECISION_PENDING: Final = "decision.pending"
DECISION_NOT_ANSWERABLE: Final = "decision.not_answerable"
DECISION_AMBIGUOUS: Final = "decision.ambiguous"
DECISION_DISAGREEMENT: Final = "decision.disagreement"
#: the family of a rejected question decided before ``reason_code`` was recorded (no code to read)
UNRECORDED: Final = ReasonLabel("unrecorded", "decided before reason codes were recorded")

DECISION_CODES: Final = (DECISION_UNANIMOUS, DECISION_PENDING, DECISION_NOT_ANSWERABLE, DECISION_AMBIGUOUS,
                         DECISION_DISAGREEMENT)
#: code -> (family, human label): the one table pages, cards and reports read codes through.
REASONS: Final[MappingProxyType[str, ReasonLabel]] = MappingProxyType({
    DECISION_UNANIMOUS: ReasonLabel("unanimous", "every annotator gave the same answer"),
    DECISION_PENDING: ReasonLabel("pending", "waiting for more annotators"),
    DECISION_NOT_ANSWERABLE: ReasonLabel("not answerable", "an annotator found it not answerable"),
    DECISION_AMBIGUOUS: ReasonLabel("ambiguous", "an annotator found it ambiguous"),
    DECISION_DISAGREEMENT: ReasonLabel("disagreement", "annotators gave different answers"),
    # answers not counted (pipelines.annotation.integrity)
    "integrity.unregistered_annotator": ReasonLabel("integrity", "from an unregistered account"),
    "integrity.platform_account": ReasonLabel("integrity", "from a platform account"),
    "integrity.changed_by_other": ReasonLabel("integrity", "changed by another account"),
    "integrity.changed_after_seen": ReasonLabel("integrity", "changed after it was seen"),
    # accepted questions the release drops or withdraws (pipelines.release)
    "release.duplicate_consensus": ReasonLabel("release", "duplicate accepted consensus row"),
    "release.question_missing": ReasonLabel("release", "question missing"),
    "release.answer_not_numeric": ReasonLabel("release", "agreed answer is not a number"),
    "release.image_not_in_manifest": ReasonLabel("release", "image missing from the manifest"),
    "release.image_unavailable": ReasonLabel("release", "image unavailable"),
    "release.image_altered": ReasonLabel("release", "image bytes changed"),
    "release.withdrawn_decision": ReasonLabel("release", "decision changed after release"),
    "release.withdrawn_image": ReasonLabel("release", "image withdrawn"),
    # inputs over a limit or out of shape (ingest.* limits; docs/security.md, "Inputs: size, shape and paths");
    # an image a stage reloads is refused as image.<quarantine code> (pipelines.ingest.sources.load_images)
    "image.too_many_bytes": ReasonLabel("image", "image file larger than ingest.max_bytes"),
    "image.too_many_pixels": ReasonLabel("image", "image larger than ingest.max_pixels (decompression bomb)"),
    "image.outside_images_folder": ReasonLabel("image", "image path resolves outside its input folder"),
    "instance.too_many": ReasonLabel("instance", "more instances on the image than ingest.max_instances"),
    "polygon.non_finite": ReasonLabel("polygon", "polygon coordinate is inf or NaN"),
    "polygon.out_of_bounds": ReasonLabel("polygon", "polygon coordinate far outside the image"),
    "polygon.too_many_vertices": ReasonLabel("polygon", "polygon with more vertices than ingest.max_polygon_vertices"),
    "polygon.too_long": ReasonLabel("polygon", "polygon edges longer than ingest.max_polygon_path"),
    "mask.rle_size_mismatch": ReasonLabel("mask", "RLE mask does not cover the image's size"),
    "mask.rle_malformed": ReasonLabel("mask", "RLE mask counts are malformed"),
    "coco.invalid_score": ReasonLabel("coco", "annotation score is not a number in 0..1"),
    # questions the engine refuses (pipelines.questions: candidates, stability)
    "reach.few_candidates": ReasonLabel("reach", "counts or ranks among fewer than three candidates"),
    "unstable.perception": ReasonLabel("unstable", "answer changes under the detector's doubt"),
})
#: the families a rejected question can have (the review page's reason filter), in the table's order
REJECTION_FAMILIES: Final = tuple(REASONS[c].family for c in (
    DECISION_NOT_ANSWERABLE, DECISION_AMBIGUOUS, DECISION_DISAGREEMENT))


def reason_label(code: str | None) -> ReasonLabel:
    """The family and label of ``code`` from :data:`REASONS`. A code the table does not name yet reads
    as its own family (the part before the first dot, by the code grammar) with the code as label;
    no code (a record older than its codes) is :data:`UNRECORDED`."""
    if not code:
        return UNRECORDED
    found = REASONS.get(code)
    return found if found is not None else ReasonLabel(code.partition(".")[0], code)


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
