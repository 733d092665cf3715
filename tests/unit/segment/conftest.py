"""Tiny model fixtures shared with the segment tests."""

from pipelines.testing.fixtures import *  # noqa: F403
