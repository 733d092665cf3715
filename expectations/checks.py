"""The vocabulary of the suites: a named check, the reference tables it may need, a suite spec.

A :class:`Check` is one Great Expectations expectation with a *stable name*
(``<suite>.<what>``, e.g. ``instances.mask_rle_decodes``) that ``params.yaml`` uses to set its
severity, and a *family* (schema, uniqueness, range, referential, acceptance, distribution,
leakage). The GX object is built lazily (``expect(gxe, custom)``) so listing a suite's checks
never imports great_expectations.

Cross-table and structural checks are *computed columns*: a suite's ``prepare`` adds columns
named ``_chk_<what>`` holding ``None`` for a good row and a human-readable reason for a bad one,
and the check expects that column to be null. They are vectorised (pandas/numpy) except where
a row must be parsed (hop programs), which is one pass of plain Python per row.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

    from pipelines.config import Params

Family = Literal["schema", "uniqueness", "range", "referential", "acceptance", "distribution", "leakage"]
Reference = Literal["manifest", "instances", "questions", "annotations"]
REFERENCES: tuple[Reference, ...] = ("manifest", "instances", "questions", "annotations")


@dataclass(frozen=True)
class Check:
    """One named expectation.

    ``expect(gxe, custom)`` returns the GX expectation, given the ``great_expectations.expectations``
    module and :mod:`expectations.custom`. ``requires`` names reference tables without which the
    check cannot be evaluated; ``min_rows`` (distribution checks) is the batch size below which the
    check is not meaningful. Both cases are reported as *skipped*, never silently dropped.
    """

    name: str
    family: Family
    description: str
    expect: Callable[[Any, Any], Any]
    requires: frozenset[Reference] = frozenset()
    min_rows: int = 0
    computed: str | None = None  # the ``_chk_*`` column this check reads, if any


@dataclass(frozen=True)
class References:
    """Tables a suite joins against (pandas DataFrames with the contracts' columns), all optional."""

    manifest: pd.DataFrame | None = None
    instances: pd.DataFrame | None = None
    questions: pd.DataFrame | None = None
    annotations: pd.DataFrame | None = None

    def available(self) -> frozenset[Reference]:
        return frozenset(r for r in REFERENCES if getattr(self, r) is not None)


@dataclass(frozen=True)
class SuiteSpec:
    """A suite: its checks (from the configuration), how to add computed columns, its id columns.

    ``id_columns`` identify a row in failure reports (GX ``unexpected_index_column_names``).
    ``prepare(frame, refs, params)`` returns a copy of ``frame`` with the ``_chk_*`` columns the
    checks read; it must not drop or reorder rows. It may assume every ``schema`` column exists
    (the runner fills absent ones with nulls for ``prepare`` only; the schema checks still see
    them missing).
    """

    name: str
    checks: Callable[[Params], list[Check]]
    prepare: Callable[[pd.DataFrame, References, Params], pd.DataFrame]
    id_columns: tuple[str, ...] = field(default_factory=tuple)
    schema: pa.Schema | None = None  # the table's contract (pipelines.contracts) or the suite's own
