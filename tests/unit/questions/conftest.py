"""Tiny model fixtures (shared with detect/segment: the same session folders)."""

from tests.support.fixtures import *  # noqa: F403
