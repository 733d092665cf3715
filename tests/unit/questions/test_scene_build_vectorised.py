"""The vectorised scene build (every mask of an image decoded and measured in one numpy pass) gives the
scenes and rejects of the one-mask-at-a-time path bit for bit: on the demo samples, on synthetic
tables, and on malformed, truncated, empty and foreign masks (which it hands to the one-mask path)."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from pipelines.questions import scene as S
from pipelines.questions.synthetic import synthetic_tables
from pipelines.segment.masks import rle_counts, rle_counts_many

pytestmark = pytest.mark.unit


def _one_by_one(counts: list, h: int, w: int, want: bool) -> list:
    out = []
    for c in counts:
        try:
            out.append(S._rle_geometry(c, h, w, want))
        except (ValueError, TypeError, AttributeError, UnicodeEncodeError) as err:
            out.append(err)
    return out


def _same(a: S.Geometry, b: S.Geometry) -> bool:
    floats = all(np.float64(x).tobytes() == np.float64(y).tobytes() for x, y in zip(a[1:3], b[1:3], strict=True))
    return a[0] == b[0] and floats and a[3].dtype == b[3].dtype and np.array_equal(a[3], b[3])


def _corrupted(counts: list[str], h: int, w: int, n: int = 400) -> list:
    rng = random.Random(29)
    out: list = ["", "0", "a", "~~", "ä", None, 17, b"", counts[0][:-1], counts[0] + "1", counts[0][:3] + "\x7f",
                 counts[1].encode("ascii"), "o" * 13 + "0", "P",
                 mask_utils.encode(np.asfortranarray(np.ones((h, w), np.uint8)))["counts"].decode(),
                 mask_utils.encode(np.asfortranarray(np.zeros((h, w), np.uint8)))["counts"].decode()]
    for _ in range(n):
        c = list(rng.choice(counts))
        for _ in range(rng.choice((1, 1, 2))):
            c[rng.randrange(len(c))] = chr(rng.randrange(48, 112))
        out.append("".join(c))
    return out


@pytest.mark.parametrize("want_sample", [False, True])
def test_many_masks_measure_exactly_like_one_mask(want_sample: bool) -> None:
    inst, _ = synthetic_tables(7, 12, 20, width=96, height=64)
    counts = [r["mask_rle"] for r in inst.to_pylist()]
    everything = counts + _corrupted(counts, 64, 96)
    many = S._rle_geometry_many(everything, 64, 96, want_sample)
    one = _one_by_one(everything, 64, 96, want_sample)
    vouched = 0
    for c, m, o in zip(everything, many, one, strict=True):
        if m is None:
            assert isinstance(o, Exception) or c in ("",), c  # handed on only what the one path refuses
            continue
        vouched += 1
        assert not isinstance(o, Exception) and _same(m, o), c
    assert vouched >= len(counts) + 2  # every good mask (and the full and empty ones) done in the pass


def test_many_runs_equal_one_string_runs() -> None:
    inst, _ = synthetic_tables(3, 6, 10, width=50, height=40)
    counts = [r["mask_rle"] for r in inst.to_pylist()]
    runs, offsets, clean = rle_counts_many(counts, [2000] * len(counts))
    assert clean.all()
    for i, c in enumerate(counts):
        assert np.array_equal(runs[offsets[i]:offsets[i + 1]], rle_counts(c, 40, 50))
    assert not rle_counts_many(counts[:1], [1999])[2][0]  # the wrong size is not vouched for


def _scenes_one_by_one(monkeypatch: pytest.MonkeyPatch, *args, **kwargs):  # type: ignore[no-untyped-def]
    with monkeypatch.context() as m:
        m.setattr(S, "_rle_geometry_many", lambda counts, h, w, want: [None] * len(counts))
        return S.scenes_from_tables(*args, **kwargs)


def _assert_same_scenes(a: list[S.Scene], b: list[S.Scene]) -> None:
    assert [s.image_id for s in a] == [s.image_id for s in b]
    for x, y in zip(a, b, strict=True):
        for name, value in vars(x).items():
            other = vars(y)[name]
            if isinstance(value, np.ndarray):
                assert value.dtype == other.dtype and value.tobytes() == other.tobytes(), name
            elif isinstance(value, dict):
                assert value.keys() == other.keys(), name
                for k in value:
                    v, w = value[k], other[k]
                    assert (v.tobytes() == w.tobytes()) if isinstance(v, np.ndarray) else v == w, (name, k)
            elif name != "_dist":
                assert value == other, name


def test_scenes_from_synthetic_tables_with_bad_masks_are_unchanged(monkeypatch: pytest.MonkeyPatch,
                                                                     tmp_path: Path) -> None:
    from PIL import Image

    inst, man = synthetic_tables(11, 8, 20, width=160, height=120, image_dir=tmp_path)
    rows = inst.to_pylist()
    for k, r in enumerate(rows[:40]):  # malformed, truncated and repeated masks among good ones
        if k % 4 == 0:
            r["mask_rle"] = r["mask_rle"][:-2]
        elif k % 4 == 1:
            r["mask_rle"] = r["mask_rle"][:4] + "~" + r["mask_rle"][5:]
        elif k % 4 == 2:
            r["instance_id"] = rows[k - 1]["instance_id"]
    import pyarrow as pa

    inst = pa.Table.from_pylist(rows, schema=inst.schema)
    pics = {r["image_id"]: np.asarray(Image.open(r["uri"]).convert("RGB")) for r in man.to_pylist()}
    for images in (None, pics.get):
        new, new_rejects = S.scenes_from_tables(inst, man, images=images)
        old, old_rejects = _scenes_one_by_one(monkeypatch, inst, man, images=images)
        _assert_same_scenes(new, old)
        assert new_rejects == old_rejects
        assert {r.code for r in new_rejects} >= {"scene.bad_mask", "scene.duplicate_instance_id", "scene.low_score"}


def test_scenes_of_the_demo_samples_are_unchanged(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from PIL import Image

    from hopchain_demo.samples import write_samples
    from pipelines.segment.annotations import import_coco

    imp = import_coco(write_samples(tmp_path, 24), tmp_path / "images")
    pics = {r["image_id"]: np.asarray(Image.open(r["uri"]).convert("RGB")) for r in imp.manifest.to_pylist()}
    new, new_rejects = S.scenes_from_tables(imp.instances, imp.manifest, images=pics.get)
    old, old_rejects = _scenes_one_by_one(monkeypatch, imp.instances, imp.manifest, images=pics.get)
    _assert_same_scenes(new, old)
    assert new_rejects == old_rejects
    assert sum(s.n for s in new) > 50 and any(c for s in new for c in s.color)
