"""Issue 29 item 5: an image's instance colours named in one pass give the names one instance at a time gives."""

from __future__ import annotations

import numpy as np
import pytest

from pipelines.questions.color import COLOR_TERMS, color_of_pixels, colors_of_samples, colors_of_terms, pixel_terms

pytestmark = pytest.mark.unit


def test_colours_of_many_instances_at_once_equal_each_instance_alone() -> None:
    rng = np.random.default_rng(0)
    named = 0
    for _ in range(200):
        groups = []
        for _ in range(int(rng.integers(0, 12))):
            n = int(rng.choice([0, 1, 2, 5, 40, 512]))
            base = rng.integers(0, 256, size=3)  # mostly one colour, with noise: some named, some not
            noise = rng.integers(-60, 61, size=(n, 3)) * (rng.random() < 0.5)
            groups.append(np.clip(base + noise, 0, 255).astype(np.uint8))
        want = [color_of_pixels(g) if len(g) else None for g in groups]
        assert colors_of_samples(groups) == want
        sizes = np.asarray([len(g) for g in groups], dtype=np.int64)
        terms = pixel_terms(np.concatenate(groups)) if groups else np.zeros(0, dtype=np.int64)
        assert colors_of_terms(terms, sizes) == want
        named += sum(w is not None for w in want)
    assert named > 100


def test_a_tie_between_two_terms_names_no_colour() -> None:
    white, black = np.array([[255, 255, 255]], np.uint8), np.array([[0, 0, 0]], np.uint8)
    half = np.concatenate([white] * 5 + [black] * 5)
    assert colors_of_samples([half, white]) == [None, "white"]
    assert "white" in COLOR_TERMS
