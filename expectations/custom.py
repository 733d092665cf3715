"""Custom Great Expectations expectations for what GX has no expectation for.

Imported only inside functions (it imports great_expectations at module level, which is slow):
:func:`expectations.runner.validate` imports it before building a suite. Defining the classes
registers their metrics with GX (GX's own custom-expectation mechanism: a metric provider with a
``condition_partial`` per execution engine plus an ``Expectation`` subclass naming the metric).
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar, Literal

logging.getLogger("great_expectations").setLevel(logging.WARNING)

import pandas as pd  # noqa: E402
from great_expectations.execution_engine import PandasExecutionEngine  # noqa: E402
from great_expectations.expectations.expectation import MulticolumnMapExpectation  # noqa: E402
from great_expectations.expectations.metrics.map_metric_provider import (  # noqa: E402
    MulticolumnMapMetricProvider,
)
from great_expectations.expectations.metrics.map_metric_provider.multicolumn_condition_partial import (  # noqa: E402
    multicolumn_condition_partial,
)

from expectations.suites.common import rle_matches_declared  # noqa: E402


class RleMasksMatchDeclared(MulticolumnMapMetricProvider):
    """Row-wise metric: ``column_list`` = [mask_rle, mask_height, mask_width, area]."""

    condition_metric_name = "hopchain.rle_masks.match_declared"
    condition_domain_keys = (
        "batch_id",
        "table",
        "column_list",
        "row_condition",
        "condition_parser",
        "ignore_row_if",
    )
    condition_value_keys = ()

    @multicolumn_condition_partial(engine=PandasExecutionEngine)
    def _pandas(cls, column_list: pd.DataFrame, **kwargs: Any) -> pd.Series:
        ok = [rle_matches_declared(*row) for row in column_list.itertuples(index=False, name=None)]
        return pd.Series(ok, index=column_list.index, dtype=bool)


class ExpectRleMasksToDecodeToDeclaredSizeAndArea(MulticolumnMapExpectation):
    """Expect every COCO compressed RLE mask to decode to its declared size and pixel area.

    ``column_list`` is ``[counts, height, width, area]`` in that order (the instances contract:
    ``["mask_rle", "mask_height", "mask_width", "area"]``). Decoding uses pycocotools.
    """

    map_metric: ClassVar[str] = "hopchain.rle_masks.match_declared"
    success_keys: ClassVar[tuple[str, ...]] = ("mostly",)
    args_keys: ClassVar[tuple[str, ...]] = ("column_list",)
    ignore_row_if: Literal["all_values_are_missing", "any_value_is_missing", "never"] = "never"
    library_metadata: ClassVar[dict[str, Any]] = {
        "maturity": "experimental",
        "tags": ["hopchain", "coco", "rle"],
        "contributors": ["hopchain"],
        "requirements": ["pycocotools"],
    }
