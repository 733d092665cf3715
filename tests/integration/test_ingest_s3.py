"""Ingest from an S3 prefix on the real local S3 server (SeaweedFS), run root on S3 too (the command's
``--out s3://…``: the run layout of the bucket)."""

from __future__ import annotations

import io
import uuid

import pytest
from PIL import Image

from pipelines.config import IngestConfig, load_params
from pipelines.ingest.sources import ImageSource, load_images
from pipelines.ingest.stage import IngestStage, plan_shards
from pipelines.runner import Runner, open_root

pytestmark = pytest.mark.integration


def _png(color: tuple[int, int, int], size: tuple[int, int]) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, "PNG")
    return buf.getvalue()


def test_ingest_s3_prefix_to_s3_run_root(object_store, s3_creds, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    prefix = f"inputs/test-{uuid.uuid4().hex[:8]}"
    object_store.put_bytes(f"{prefix}/a.png", _png((255, 0, 0), (30, 20)))
    object_store.put_bytes(f"{prefix}/b.png", _png((0, 255, 0), (20, 30)))
    object_store.put_bytes(f"{prefix}/c.jpg", b"")
    object_store.put_bytes(f"{prefix}/notes.txt", b"not listed")
    source = ImageSource(s3_creds)
    cfg = IngestConfig(shard_size=2)
    src = f"s3://hopchain/{prefix}/"
    assert plan_shards(cfg, src, source) == [0, 1]
    root = f"s3://hopchain/runs/{prefix.split('/')[-1]}"
    for name, value in (("ENDPOINT", s3_creds.endpoint), ("ACCESS_KEY", s3_creds.access_key),
                        ("SECRET_KEY", s3_creds.secret_key)):
        monkeypatch.setenv(f"HOPCHAIN_S3_{name}", value)
    run = open_root(root, load_params())
    assert run.keys.table("manifest", 0) == f"runs/{prefix.split('/')[-1]}/manifest/shard-00000.parquet"
    assert Runner(run, checks=False).run(IngestStage(src, shard_size=2)).shards == [0]  # shard 1: only c.jpg
    manifest, quarantine = run.read_all("manifest"), run.read_all("quarantine")
    assert manifest["uri"].to_pylist() == [f"{src}a.png", f"{src}b.png"]
    assert manifest["shard"].to_pylist() == [0, 0]
    assert quarantine.to_pylist() == [{"uri": f"{src}c.jpg", "code": "empty", "detail": "0 bytes"}]
    items, rejects = load_images(manifest, cfg.max_pixels, source)
    assert [i.image.size for i in items] == [(30, 20), (20, 30)] and rejects == []
    object_store.delete_prefix(prefix)
    object_store.delete_prefix(root.removeprefix("s3://hopchain/"))


def test_s3_prefix_is_a_folder_and_over_size_objects_are_refused_unread(object_store, s3_creds) -> None:  # type: ignore[no-untyped-def]
    """Issue 30 item 2 on the real S3 server: ``…/batch-1`` never lists ``…/batch-10/``, and an object
    over ``max_bytes`` is refused from its HEAD size (a ranged GET bounds the read anyway); the other
    images of the shard go through."""
    import numpy as np

    from pipelines.ingest.decode import ImageRefused
    from pipelines.ingest.stage import ingest_shard

    base = f"inputs/test-{uuid.uuid4().hex[:8]}"
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(noise).save(buf, "PNG")
    big = buf.getvalue()
    object_store.put_bytes(f"{base}/batch-1/a.png", _png((255, 0, 0), (30, 20)))
    object_store.put_bytes(f"{base}/batch-1/big.png", big)
    object_store.put_bytes(f"{base}/batch-10/sibling.png", _png((0, 255, 0), (20, 30)))
    object_store.put_bytes(f"{base}/batch-1x.png", _png((0, 0, 255), (20, 20)))
    source = ImageSource(s3_creds)
    try:
        src = f"s3://hopchain/{base}/batch-1"  # no trailing slash: still the folder batch-1/
        assert source.list(src, [".png"]) == [f"{src}/a.png", f"{src}/big.png"]
        result = ingest_shard(IngestConfig(max_bytes=10_000), src, 0, source)
        assert result.manifest["uri"].to_pylist() == [f"{src}/a.png"]
        rows = result.quarantine.to_pylist()
        assert [(r["uri"], r["code"]) for r in rows] == [(f"{src}/big.png", "too_many_bytes")]
        assert f"{len(big)} bytes > max_bytes 10000" in rows[0]["detail"] and "not read" in rows[0]["detail"]
        # within the limit the ranged read returns the whole object, byte for byte
        assert source.read(f"{src}/big.png", max_bytes=len(big)) == big
        with pytest.raises(ImageRefused):
            source.read(f"{src}/big.png", max_bytes=len(big) - 1)
    finally:
        object_store.delete_prefix(base + "/")
