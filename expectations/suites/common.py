"""Building blocks shared by the suites: contract schema checks, reason columns, shares."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from expectations.checks import Check, Family, Reference

# The strings pipelines.contracts.canonical_number returns, and only those: no sign on zero, no
# leading zeros, no trailing fractional zeros, no exponent, no "+", no spaces. A property test
# (tests/unit/expectations/test_canonical_regex.py) checks it against canonical_number itself.
CANONICAL_DECIMAL = r"^(?!-0$)-?(?:0|[1-9][0-9]*)(?:\.[0-9]*[1-9])?$"
SHA256_HEX = r"^[0-9a-f]{64}$"
log = logging.getLogger(__name__)



def _expect(build: Callable[..., Any]) -> Callable[[Any, Any], Any]:
    """A check's ``expect(gxe, custom)`` from a builder that needs only ``gxe``."""
    return lambda gxe, _custom: build(gxe)

def pandas_dtype_name(arrow_type: pa.DataType) -> str:
    """The pandas dtype name a column of ``arrow_type`` has after :func:`expectations.runner.to_frame`:
    ``str``, ``Int32``/``Int64`` and ``boolean`` (nullable), ``float64``, ``datetime64[us, UTC]``,
    ``object`` for lists."""
    if pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type):
        return "str"
    if pa.types.is_timestamp(arrow_type):
        tz = f", {arrow_type.tz}" if arrow_type.tz else ""
        return f"datetime64[{arrow_type.unit}{tz}]"
    if pa.types.is_list(arrow_type) or pa.types.is_fixed_size_list(arrow_type) or pa.types.is_struct(arrow_type):
        return "object"
    if pa.types.is_boolean(arrow_type):
        return "boolean"
    if pa.types.is_signed_integer(arrow_type):
        return f"Int{arrow_type.bit_width}"
    return np.dtype(arrow_type.to_pandas_dtype()).name  # float64, ...


def schema_checks(suite: str, schema: pa.Schema, nullable: Iterable[str] = ()) -> list[Check]:
    """``<suite>.columns`` (every contract column present), ``<suite>.type_<col>`` per column and
    ``<suite>.not_null_<col>`` per non-nullable column."""
    nullable = set(nullable)
    names = list(schema.names)
    checks = [
        Check(
            f"{suite}.columns",
            "schema",
            f"the {suite} contract's columns are all present: {', '.join(names)}",
            _expect(lambda gxe: gxe.ExpectTableColumnsToMatchSet(column_set=names, exact_match=False)),
        )
    ]
    for f in schema:
        dtype = pandas_dtype_name(f.type)
        checks.append(
            Check(
                f"{suite}.type_{f.name}",
                "schema",
                f"column {f.name} has type {f.type} (pandas {dtype})",
                _expect(lambda gxe, col=f.name, dtype=dtype: gxe.ExpectColumnTypeToBe(column=col, type_=dtype)),
            )
        )
        if f.name not in nullable:
            checks.append(
                Check(
                    f"{suite}.not_null_{f.name}",
                    "schema",
                    f"column {f.name} has no nulls",
                    _expect(lambda gxe, col=f.name: gxe.ExpectColumnValuesToNotBeNull(column=col)),
                )
            )
    return checks


def null_check(
    name: str,
    family: Family,
    description: str,
    column: str,
    requires: Iterable[Reference] = (),
    min_rows: int = 0,
) -> Check:
    """A check on a computed reason column: every row's reason must be null."""
    return Check(
        name,
        family,
        description,
        lambda gxe, _c: gxe.ExpectColumnValuesToBeNull(column=column),
        frozenset(requires),
        min_rows,
        computed=column,
    )


def reasons(bad: np.ndarray | pd.Series, text: pd.Series | str, index: pd.Index) -> pd.Series:
    """An object column: ``text`` where ``bad`` is true, ``None`` elsewhere (the "good" value)."""
    bad = np.asarray(bad, dtype=bool)
    out = pd.Series(None, index=index, dtype=object)
    if bad.any():
        if isinstance(text, str):
            out[bad] = text
        else:
            out[bad] = np.asarray(text, dtype=object)[bad]
    return out


def share_reasons(values: pd.Series, max_share: float, what: str, mask: pd.Series | None = None) -> pd.Series:
    """Reason for every row whose value (among rows where ``mask``) exceeds ``max_share`` of them."""
    index = values.index
    considered = values if mask is None else values[mask]
    n = len(considered)
    out = pd.Series(None, index=index, dtype=object)
    if n == 0:
        return out
    shares = considered.value_counts(normalize=True, dropna=True)
    over = shares[shares > max_share]
    if over.empty:
        return out
    text = {v: f"{what} {v!r} is {s:.1%} of {n} rows (max {max_share:.0%})" for v, s in over.items()}
    hit = considered.map(text)
    out.loc[hit.index] = hit.astype(object).where(hit.notna(), None)
    return out


def rle_matches_declared(counts: Any, height: Any, width: Any, area: Any) -> bool:
    """True when ``counts`` is a COCO compressed RLE of a ``height`` x ``width`` mask with ``area`` pixels.

    Decoding with pycocotools and re-encoding must give back the same ``counts`` string: a string
    whose runs do not add up to ``height * width`` pixels (truncated, corrupt, or made for another
    size) re-encodes differently. Anything unparsable is ``False``, never an exception.
    """
    from pycocotools import mask as mask_utils

    if not isinstance(counts, str) or not counts:
        return False
    try:
        h, w, a = int(height), int(width), int(area)
    except (TypeError, ValueError):
        return False
    if h <= 0 or w <= 0:
        return False
    from pipelines.segment.masks import rle_is_valid

    if not rle_is_valid(counts.encode("ascii", errors="replace"), h, w):  # pycocotools would read garbage
        return False
    rle = {"size": [h, w], "counts": counts.encode("ascii", errors="replace")}
    try:
        decoded = mask_utils.decode(rle)
        again = mask_utils.encode(np.asfortranarray(decoded))
    except (ValueError, TypeError, OverflowError) as err:  # pycocotools raises on unparsable input
        log.debug("RLE does not decode: %s", err)
        return False
    return decoded.shape == (h, w) and again["counts"] == rle["counts"] and int(decoded.sum()) == a
