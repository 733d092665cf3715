"""The suites, by name. Importing this package does not import great_expectations."""

from __future__ import annotations

import expectations.suites.annotations as annotation_suites  # a from-import would get __future__.annotations
from expectations.checks import Check, SuiteSpec
from expectations.suites import images, questions
from pipelines.config import Params

SUITES: dict[str, SuiteSpec] = {s.name: s for s in (*images.SUITES, *questions.SUITES, *annotation_suites.SUITES)}


def get_suite(name: str) -> SuiteSpec:
    """The suite called ``name``; ``KeyError`` naming the known suites otherwise."""
    try:
        return SUITES[name]
    except KeyError:
        raise KeyError(f"unknown suite {name!r} (known: {', '.join(sorted(SUITES))})") from None


def all_check_names(params: Params) -> set[str]:
    """Every stable expectation name of every suite (for checking ``validation.severity`` keys)."""
    return {c.name for spec in SUITES.values() for c in spec.checks(params)}


__all__ = ["SUITES", "Check", "SuiteSpec", "all_check_names", "get_suite"]
