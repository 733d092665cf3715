"""Tiny model fixtures (shared with detect/segment: the same session folders)."""

from pipelines.testing.fixtures import *
