"""Tiny model fixtures shared with the segment tests."""

from tests.support.fixtures import *  # noqa: F403
