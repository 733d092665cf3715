"""Ingest: every awkward input is normalised or quarantined with its reason; the shard goes on."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipelines.config import IngestConfig
from pipelines.ingest.decode import ImageRefused, decode_image
from pipelines.ingest.sources import ImageSource, assign_shards, num_shards
from pipelines.ingest.stage import collapse_duplicates, ingest_shard, plan_shards, sha256_hex

pytestmark = pytest.mark.unit


def _jpeg(img: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=95, **kw)
    return buf.getvalue()


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def _png_bomb(width: int, height: int) -> bytes:
    """A tiny valid-looking PNG whose header claims ``width`` x ``height`` pixels."""
    raw = bytearray(_png(Image.new("L", (1, 1))))
    ihdr = struct.pack(">II", width, height) + bytes(raw[24:29])
    raw[16:29] = ihdr
    raw[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + ihdr) & 0xFFFFFFFF)
    return bytes(raw)


def _two_tone(w: int = 40, h: int = 20) -> Image.Image:
    """Left half red, right half blue."""
    arr = np.zeros((h, w, 3), np.uint8)
    arr[:, : w // 2] = (255, 0, 0)
    arr[:, w // 2 :] = (0, 0, 255)
    return Image.fromarray(arr)


@pytest.fixture()
def awkward_folder(tmp_path: Path) -> Path:
    good = _jpeg(_two_tone())
    (tmp_path / "a_good.jpg").write_bytes(good)
    (tmp_path / "b_truncated.jpg").write_bytes(good[: len(good) // 2])
    (tmp_path / "c_text.jpg").write_bytes(b"this is not an image, just text\n")
    (tmp_path / "d_empty.jpg").write_bytes(b"")
    (tmp_path / "e_bomb.png").write_bytes(_png_bomb(100_000, 100_000))
    (tmp_path / "f_cmyk.jpg").write_bytes(_jpeg(_two_tone().convert("CMYK")))
    sixteen = Image.fromarray((np.arange(64 * 32, dtype=np.uint16).reshape(32, 64) * 30).astype(np.uint16))
    (tmp_path / "g_16bit.png").write_bytes(_png(sixteen))
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90° clockwise for display
    (tmp_path / "h_exif_rotated.jpg").write_bytes(_jpeg(_two_tone(), exif=exif.tobytes()))
    (tmp_path / "i_duplicate.jpg").write_bytes(good)
    (tmp_path / "j_lab.tif").write_bytes(_tiff_lab())
    (tmp_path / "notes.txt").write_text("skipped by extension")
    return tmp_path


def _tiff_lab() -> bytes:
    buf = io.BytesIO()
    Image.new("LAB", (8, 8), (50, 0, 0)).save(buf, "TIFF")
    return buf.getvalue()


def test_shard_with_every_kind_of_bad_input(awkward_folder: Path) -> None:
    cfg = IngestConfig(shard_size=50)
    result = ingest_shard(cfg, str(awkward_folder), 0)
    codes = {Path(r["uri"]).name: r["code"] for r in result.quarantine.to_pylist()}
    details = {Path(r["uri"]).name: r["detail"] for r in result.quarantine.to_pylist()}
    assert codes == {"b_truncated.jpg": "truncated_or_corrupt", "c_text.jpg": "not_an_image", "d_empty.jpg": "empty",
                     "e_bomb.png": "too_many_pixels", "i_duplicate.jpg": "duplicate", "j_lab.tif": "unsupported_mode"}
    assert "a_good.jpg" in details["i_duplicate.jpg"] and all(details.values())
    assert result.counts["quarantined"] == 6 and result.counts["too_many_pixels"] == 1
    rows = {Path(r["uri"]).name: r for r in result.manifest.to_pylist()}
    assert set(rows) == {"a_good.jpg", "f_cmyk.jpg", "g_16bit.png", "h_exif_rotated.jpg"}
    assert all(r["shard"] == 0 for r in rows.values())
    assert rows["a_good.jpg"]["image_id"] == sha256_hex((awkward_folder / "a_good.jpg").read_bytes())
    assert (rows["h_exif_rotated.jpg"]["width"], rows["h_exif_rotated.jpg"]["height"]) == (20, 40)
    assert (rows["g_16bit.png"]["width"], rows["g_16bit.png"]["format"]) == (64, "PNG")
    assert result.counts["images"] == 4 and result.counts["quarantined"] == 6


def test_cmyk_and_16bit_are_normalised_to_faithful_rgb(awkward_folder: Path) -> None:
    cmyk = decode_image((awkward_folder / "f_cmyk.jpg").read_bytes(), max_pixels=10**6).image
    assert cmyk.mode == "RGB"
    left, right = np.asarray(cmyk)[10, 5].astype(int), np.asarray(cmyk)[10, 35].astype(int)
    assert left[0] > 200 and left[2] < 60 and right[2] > 200 and right[0] < 60
    gray = np.asarray(decode_image((awkward_folder / "g_16bit.png").read_bytes(), max_pixels=10**6).image)
    assert gray.dtype == np.uint8 and gray.shape == (32, 64, 3)
    # 16-bit values map monotonically onto 0..255 (not clipped to white)
    assert gray[0, 0, 0] == 0 and gray[-1, -1, 0] == (64 * 32 - 1) * 30 >> 8
    assert len(np.unique(gray[..., 0])) > 100


def test_exif_orientation_is_applied(awkward_folder: Path) -> None:
    img = np.asarray(decode_image((awkward_folder / "h_exif_rotated.jpg").read_bytes(), max_pixels=10**6).image)
    assert img.shape == (40, 20, 3)
    # rotated 90° clockwise: the left (red) half is now on top
    assert img[5, 10, 0] > 200 and img[35, 10, 2] > 200


def test_pixel_limit_is_per_call_and_global_limit_untouched() -> None:
    before = Image.MAX_IMAGE_PIXELS
    data = _png(Image.new("RGB", (200, 200)))
    with pytest.raises(ImageRefused) as err:
        decode_image(data, max_pixels=10_000)
    assert err.value.code == "too_many_pixels" and "40000" in err.value.detail
    assert decode_image(data, max_pixels=40_000).width == 200
    assert Image.MAX_IMAGE_PIXELS == before


def test_alpha_is_composited_on_white() -> None:
    rgba = Image.new("RGBA", (4, 4), (255, 0, 0, 0))
    out = np.asarray(decode_image(_png(rgba), max_pixels=100).image)
    assert (out == 255).all()


def test_sharding_is_deterministic_and_covers_everything(awkward_folder: Path) -> None:
    uris = [f"s3://b/img-{i:03d}.jpg" for i in range(11)]
    shards = assign_shards(list(reversed(uris)), 4)
    assert [len(s) for s in shards] == [4, 4, 3] and sum(shards, []) == uris
    assert num_shards(11, 4) == 3 and num_shards(0, 4) == 0
    cfg = IngestConfig(shard_size=3)
    assert plan_shards(cfg, str(awkward_folder)) == [0, 1, 2, 3]  # 10 image files, notes.txt skipped
    all_rows = [ingest_shard(cfg, str(awkward_folder), s) for s in plan_shards(cfg, str(awkward_folder))]
    assert sum(r.manifest.num_rows + r.quarantine.num_rows for r in all_rows) == 10
    assert ingest_shard(cfg, str(awkward_folder), 99).manifest.num_rows == 0


def test_duplicates_across_shards_are_collapsed(tmp_path: Path) -> None:
    data = _png(Image.new("RGB", (8, 8), (1, 2, 3)))
    for name in ("a.png", "b.png", "c.png"):
        (tmp_path / name).write_bytes(data)
    cfg = IngestConfig(shard_size=1)
    results = [ingest_shard(cfg, str(tmp_path), s) for s in range(3)]
    manifest, dupes = collapse_duplicates([r.manifest for r in results])
    assert manifest.column("uri").to_pylist() == [str((tmp_path / "a.png").resolve())]
    assert dupes.column("code").to_pylist() == ["duplicate", "duplicate"]
    assert all("a.png" in d for d in dupes.column("detail").to_pylist())


def test_unreadable_file_is_quarantined(tmp_path: Path) -> None:
    class Flaky(ImageSource):
        def read(self, uri: str, *, max_bytes: int | None = None, root: str = "") -> bytes:
            if uri.endswith("b.png"):
                raise OSError("connection reset")
            return super().read(uri, max_bytes=max_bytes, root=root)

    (tmp_path / "a.png").write_bytes(_png(Image.new("RGB", (8, 8))))
    (tmp_path / "b.png").write_bytes(_png(Image.new("RGB", (9, 9))))
    res = ingest_shard(IngestConfig(), str(tmp_path), 0, Flaky())
    assert res.manifest.num_rows == 1
    assert res.quarantine.to_pylist()[0] == {"uri": str((tmp_path / "b.png").resolve()), "code": "unreadable",
                                             "detail": "connection reset"}
