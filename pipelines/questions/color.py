"""Colour naming of an instance from its mask's pixels (the ``color`` attribute of a scene).

A fixed, documented naming (docs/hop-programs.md, "Colour"): every sampled mask pixel gets one of
the eleven basic colour terms from its HSV coordinates (H in degrees 0..360, S and V in 0..1):

* ``black`` when V < 0.22; otherwise ``white`` when S < 0.18 and V >= 0.75, ``gray`` when S < 0.18;
* otherwise by hue: red [345, 15), orange [15, 42), yellow [42, 70), green [70, 170),
  blue [170, 255), purple [255, 295), pink [295, 345); then red/orange/yellow with V < 0.55
  are ``brown``, and red with S < 0.45 and V >= 0.7 is ``pink``.

An instance's colour is the most frequent term among its pixels, **defined only when it clearly
dominates**: its share of the pixels is >= ``DOMINANT_SHARE`` (0.6) and >= ``DOMINANT_RATIO`` (3)
times the share of the second most frequent term. Otherwise the instance has no colour and is
never referred to by colour. At most ``SAMPLE_PIXELS`` (512) pixels, evenly spaced along the mask's
runs, are classified (a share to within about 4 points at 95%); pixels are classified through a table of
RGB quantised to 5 bits per channel, evaluated at each cell's centre.
"""

from __future__ import annotations

import functools

import numpy as np

COLOR_TERMS = (
    "black",
    "white",
    "gray",
    "red",
    "orange",
    "yellow",
    "green",
    "blue",
    "purple",
    "pink",
    "brown",
)
DOMINANT_SHARE = 0.6
DOMINANT_RATIO = 3.0
SAMPLE_PIXELS = 512

_T = {name: i for i, name in enumerate(COLOR_TERMS)}
# hue bin upper edges (degrees) and the term of each bin, starting at 0
_HUE_EDGES = np.array([15.0, 42.0, 70.0, 170.0, 255.0, 295.0, 345.0, 360.0001])
_HUE_TERMS = np.array(
    [_T["red"], _T["orange"], _T["yellow"], _T["green"], _T["blue"], _T["purple"], _T["pink"], _T["red"]]
)


def pixel_terms(rgb: np.ndarray) -> np.ndarray:
    """The basic colour term index (into :data:`COLOR_TERMS`) of each pixel of ``rgb`` (N, 3) uint8.

    Pixels are looked up in a table of the rule below evaluated at the centre of each cell of RGB
    quantised to 5 bits per channel (32,768 cells, built once).
    """
    q = np.asarray(rgb, dtype=np.uint8).reshape(-1, 3) >> 3
    idx = (q[:, 0].astype(np.int32) << 10) | (q[:, 1].astype(np.int32) << 5) | q[:, 2]
    return _lut()[idx]


@functools.cache
def _lut() -> np.ndarray:
    levels = (np.arange(32) * 8 + 4).astype(np.uint8)
    r, g, b = np.meshgrid(levels, levels, levels, indexing="ij")
    return _classify(np.stack([r.ravel(), g.ravel(), b.ravel()], axis=1))


def _classify(rgb: np.ndarray) -> np.ndarray:
    """The naming rule of the module docstring on (N, 3) uint8 pixels."""
    x = np.asarray(rgb, dtype=np.float32).reshape(-1, 3) / 255.0
    mx = x.max(axis=1)
    mn = x.min(axis=1)
    chroma = mx - mn
    v = mx
    s = np.where(mx > 0, chroma / np.maximum(mx, 1e-6), 0.0)
    r, g, b = x[:, 0], x[:, 1], x[:, 2]
    c = np.maximum(chroma, 1e-6)
    h = np.where(
        mx == r,
        ((g - b) / c) % 6.0,
        np.where(mx == g, (b - r) / c + 2.0, (r - g) / c + 4.0),
    ) * 60.0
    terms = _HUE_TERMS[np.searchsorted(_HUE_EDGES, h, side="right").clip(0, len(_HUE_TERMS) - 1)]
    warm = (terms == _T["red"]) | (terms == _T["orange"]) | (terms == _T["yellow"])
    terms = np.where(warm & (v < 0.55), _T["brown"], terms)
    terms = np.where((terms == _T["red"]) & (s < 0.45) & (v >= 0.7), _T["pink"], terms)
    achromatic = s < 0.18
    terms = np.where(achromatic, np.where(v >= 0.75, _T["white"], _T["gray"]), terms)
    terms = np.where(v < 0.22, _T["black"], terms)
    return terms.astype(np.int64)


def term_shares(rgb: np.ndarray) -> np.ndarray:
    """Share of each colour term among the pixels ``rgb`` (N, 3): an array of len(COLOR_TERMS)."""
    t = pixel_terms(rgb)
    if t.shape[0] == 0:
        return np.zeros(len(COLOR_TERMS))
    return np.bincount(t, minlength=len(COLOR_TERMS)) / t.shape[0]


def dominant_color(shares: np.ndarray) -> str | None:
    """The colour name when one term clearly dominates (see the module docstring), else ``None``."""
    if shares.sum() <= 0:
        return None
    order = np.argsort(-shares, kind="stable")
    first, second = float(shares[order[0]]), float(shares[order[1]])
    if first >= DOMINANT_SHARE - 1e-9 and first >= DOMINANT_RATIO * second - 1e-9:  # inclusive margins
        return COLOR_TERMS[int(order[0])]
    return None


def color_of_pixels(rgb: np.ndarray) -> str | None:
    """Colour name of a set of pixels (N, 3) uint8, or ``None`` when no term dominates."""
    return dominant_color(term_shares(rgb))


def colors_of_samples(samples: list[np.ndarray]) -> list[str | None]:
    """Colour names of several instances at once: ``samples[i]`` is (N_i, 3) uint8 pixels of instance i."""
    if not samples:
        return []
    sizes = np.asarray([len(x) for x in samples], dtype=np.int64)
    terms = pixel_terms(np.concatenate(samples)) if int(sizes.sum()) else np.zeros(0, dtype=np.int64)
    return colors_of_terms(terms, sizes)


def colors_of_terms(terms: np.ndarray, sizes: np.ndarray) -> list[str | None]:
    """:func:`dominant_color` of consecutive groups of pixel terms (``sizes[i]`` terms of instance ``i``,
    in order) in one pass: the same shares, the same margins, the same names."""
    n, k = sizes.shape[0], len(COLOR_TERMS)
    if n == 0:
        return []
    owner = np.repeat(np.arange(n), sizes)
    counts = np.bincount(owner * k + terms, minlength=n * k).reshape(n, k)
    shares = counts / np.maximum(sizes, 1)[:, None]
    order = np.argsort(-shares, axis=1, kind="stable")
    rows = np.arange(n)
    first, second = shares[rows, order[:, 0]], shares[rows, order[:, 1]]
    named = (sizes > 0) & (first >= DOMINANT_SHARE - 1e-9) & (first >= DOMINANT_RATIO * second - 1e-9)
    return [COLOR_TERMS[int(t)] if ok else None for t, ok in zip(order[:, 0].tolist(), named.tolist(), strict=True)]
