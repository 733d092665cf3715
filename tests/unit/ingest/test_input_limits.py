"""Issue 30 item 2: limits on inputs, checked before decoding; every violation a quarantine row (ingest) or a
reject (a stage reloading an image) with its reason, and the rest of the shard goes through.

Bombs and over-size files are built here, tiny on disk (a PNG header that declares 30000 x 30000 pixels; a
small configured ``max_bytes`` instead of a 1.5 GB file)."""

from __future__ import annotations

import io
import tracemalloc
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipelines.config import IngestConfig, params_from_dict
from pipelines.contracts import to_table
from pipelines.contracts.rejects import REASONS
from pipelines.ingest.decode import ImageRefused, decode_image
from pipelines.ingest.sources import ImageSource, folder_prefix, load_images
from pipelines.ingest.stage import ingest_shard, plan_shards, sha256_hex
from tests.unit.ingest.test_ingest_stage import _png_bomb

pytestmark = pytest.mark.unit


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def _noise_png(side: int, seed: int = 0) -> bytes:
    """A PNG that does not compress: about 3 * side^2 bytes."""
    rng = np.random.default_rng(seed)
    return _png(Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8)))


def _codes(result) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return {Path(r["uri"]).name: r["code"] for r in result.quarantine.to_pylist()}


# -- pixels: decompression bombs --------------------------------------------------------------------------
def test_a_bomb_header_is_quarantined_before_decoding_and_the_shard_goes_on(tmp_path: Path) -> None:
    bomb = _png_bomb(30_000, 30_000)
    assert len(bomb) < 100  # tiny on disk, 900 M pixels declared
    (tmp_path / "a_good.png").write_bytes(_png(Image.new("RGB", (16, 12), (10, 200, 30))))
    (tmp_path / "b_bomb.png").write_bytes(bomb)
    (tmp_path / "c_good.png").write_bytes(_png(Image.new("RGB", (12, 16), (200, 10, 30))))
    tracemalloc.start()
    result = ingest_shard(IngestConfig(), str(tmp_path), 0)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert _codes(result) == {"b_bomb.png": "too_many_pixels"}
    assert "900000000 pixels" in result.quarantine.to_pylist()[0]["detail"]  # Pillow's guard, as a refusal
    assert sorted(Path(u).name for u in result.manifest["uri"].to_pylist()) == ["a_good.png", "c_good.png"]
    assert peak < 20 * 2**20  # never decoded: 900 M pixels would be 900 MB at one byte each


@pytest.mark.parametrize(("size", "max_pixels"), [
    ((30_000, 30_000), 178_956_970),  # beyond Pillow's own guard: its DecompressionBombError
    ((12_000, 8_000), 89_478_485),  # between Pillow's warning and error: our limit
])
def test_pillow_bomb_warning_and_error_are_refusals_even_when_warnings_are_errors(
    size: tuple[int, int], max_pixels: int
) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a deployment running with -W error must not crash on a bomb
        with pytest.raises(ImageRefused) as err:
            decode_image(_png_bomb(*size), max_pixels=max_pixels)
    assert err.value.code == "too_many_pixels"


def test_max_pixels_is_configuration_capped_at_pillows_hard_guard() -> None:
    assert IngestConfig().max_pixels == Image.MAX_IMAGE_PIXELS == 89_478_485
    assert params_from_dict({"ingest": {"max_pixels": 1000}}).ingest.max_pixels == 1000
    with pytest.raises(ValueError, match="ingest.max_pixels"):
        params_from_dict({"ingest": {"max_pixels": 2 * Image.MAX_IMAGE_PIXELS + 1}})


# -- bytes: refused from the size, before reading --------------------------------------------------------
def test_an_over_size_file_is_refused_from_its_size_unread_and_the_shard_goes_on(tmp_path: Path) -> None:
    (tmp_path / "a_small.png").write_bytes(_png(Image.new("RGB", (8, 8))))
    big = _noise_png(64)
    assert len(big) > 10_000
    (tmp_path / "b_big.png").write_bytes(big)
    result = ingest_shard(IngestConfig(max_bytes=10_000), str(tmp_path), 0)
    assert _codes(result) == {"b_big.png": "too_many_bytes"}
    detail = result.quarantine.to_pylist()[0]["detail"]
    assert f"{len(big)} bytes > max_bytes 10000" in detail and "not read" in detail
    assert [Path(u).name for u in result.manifest["uri"].to_pylist()] == ["a_small.png"]


def test_reading_an_over_size_file_allocates_nothing_like_its_size(tmp_path: Path) -> None:
    sparse = tmp_path / "huge.jpg"
    with open(sparse, "wb") as fh:  # 200 MB stated, nothing on disk
        fh.truncate(200 * 2**20)
    tracemalloc.start()
    with pytest.raises(ImageRefused) as err:
        ImageSource().read(str(sparse), max_bytes=2**20, root=str(tmp_path))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert err.value.code == "too_many_bytes" and peak < 2**20


def test_a_source_of_unknown_size_is_cut_at_the_limit() -> None:
    """``/dev/zero`` states size 0 and never ends: the read stops at max_bytes + 1 and refuses."""
    with pytest.raises(ImageRefused) as err:
        ImageSource().read("/dev/zero", max_bytes=4096)
    assert err.value.code == "too_many_bytes" and "read stopped" in err.value.detail


def test_a_stage_reloading_an_image_refuses_it_by_size_with_a_reason(tmp_path: Path) -> None:
    small, big = _png(Image.new("RGB", (8, 8))), _noise_png(64)
    (tmp_path / "small.png").write_bytes(small)
    (tmp_path / "big.png").write_bytes(big)
    manifest = to_table([{"image_id": sha256_hex(d), "uri": str(tmp_path / n), "width": w, "height": w,
                          "format": "PNG", "shard": 0} for n, d, w in (("small.png", small, 8), ("big.png", big, 64))],
                        "manifest")
    items, rejects = load_images(manifest, 10**6, stage="detect", max_bytes=10_000)
    assert [i.image_id for i in items] == [sha256_hex(small)]
    assert [(r.stage, r.item_id, r.code) for r in rejects] == [("detect", sha256_hex(big), "image.too_many_bytes")]
    assert rejects[0].code in REASONS


# -- paths: symlinks out of the folder, prefixes as folders ----------------------------------------------
def test_a_symlink_out_of_the_input_folder_is_quarantined_not_followed(tmp_path: Path) -> None:
    folder, outside = tmp_path / "batch", tmp_path / "outside"
    folder.mkdir()
    outside.mkdir()
    secret = _png(Image.new("RGB", (9, 9), (1, 2, 3)))
    (outside / "secret.png").write_bytes(secret)
    good = _png(Image.new("RGB", (8, 8), (4, 5, 6)))
    (folder / "a_good.png").write_bytes(good)
    (folder / "b_link_out.png").symlink_to(outside / "secret.png")
    (folder / "c_link_in.png").symlink_to(folder / "a_good.png")  # inside: read (and a duplicate)
    (folder / "d_dir_out").symlink_to(outside, target_is_directory=True)  # a folder link is not walked
    result = ingest_shard(IngestConfig(), str(folder), 0)
    assert _codes(result) == {"b_link_out.png": "outside_images_folder", "c_link_in.png": "duplicate"}
    detail = {Path(r["uri"]).name: r["detail"] for r in result.quarantine.to_pylist()}["b_link_out.png"]
    assert "symlink" in detail and "outside the input folder" in detail
    assert result.manifest["image_id"].to_pylist() == [sha256_hex(good)]  # the secret's bytes never entered
    assert sha256_hex(secret) not in result.manifest["image_id"].to_pylist()


def test_a_local_prefix_is_a_folder_never_its_siblings(tmp_path: Path) -> None:
    for name, color in (("batch-1", (255, 0, 0)), ("batch-10", (0, 255, 0)), ("batch-1x", (0, 0, 255))):
        (tmp_path / name).mkdir()
        (tmp_path / name / f"{name}.png").write_bytes(_png(Image.new("RGB", (8, 8), color)))
    cfg = IngestConfig()
    result = ingest_shard(cfg, str(tmp_path / "batch-1"), 0)
    assert [Path(u).name for u in result.manifest["uri"].to_pylist()] == ["batch-1.png"]
    assert plan_shards(cfg, str(tmp_path / "batch-1")) == [0]


class _PrefixStore:
    """An S3 listing as the server does it: every key that *starts with* the prefix."""

    def __init__(self, keys: list[str]):
        self.keys = keys
        self.asked: list[str] = []

    def list(self, prefix: str, recursive: bool = True) -> Iterator[str]:
        self.asked.append(prefix)
        return iter(k for k in self.keys if k.startswith(prefix))


def test_an_s3_prefix_is_listed_as_a_folder_never_its_siblings() -> None:
    store = _PrefixStore(["inputs/batch-1/a.png", "inputs/batch-10/b.png", "inputs/batch-1.png"])
    source = ImageSource()
    source._stores["b"] = store  # type: ignore[assignment]
    assert source.list("s3://b/inputs/batch-1", [".png"]) == ["s3://b/inputs/batch-1/a.png"]
    assert source.list("s3://b/inputs/batch-1/", [".png"]) == ["s3://b/inputs/batch-1/a.png"]
    assert store.asked == ["inputs/batch-1/", "inputs/batch-1/"]
    assert folder_prefix("") == "" and folder_prefix("a/b") == "a/b/" and folder_prefix("a/b/") == "a/b/"
