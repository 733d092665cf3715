"""Ingest from an S3 prefix on the real local S3 server (SeaweedFS), run root on S3 too."""

from __future__ import annotations

import io
import uuid

import pytest
from PIL import Image

from pipelines.config import IngestConfig
from pipelines.ingest.sources import ImageSource, load_images, load_tables, save_table
from pipelines.ingest.stage import ingest_shard, plan_shards

pytestmark = pytest.mark.integration


def _png(color: tuple[int, int, int], size: tuple[int, int]) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, "PNG")
    return buf.getvalue()


def test_ingest_s3_prefix_to_s3_run_root(object_store, s3_creds) -> None:  # type: ignore[no-untyped-def]
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
    for shard in (0, 1):
        res = ingest_shard(cfg, src, shard, source)
        save_table(res.manifest, root, "manifest", shard, "manifest", source)
        save_table(res.quarantine, root, "quarantine", shard, "quarantine", source)
    manifest = load_tables(root, "manifest", "manifest", source)
    quarantine = load_tables(root, "quarantine", "quarantine", source)
    assert manifest["uri"].to_pylist() == [f"{src}a.png", f"{src}b.png"]
    assert manifest["shard"].to_pylist() == [0, 0]
    assert quarantine.to_pylist() == [{"uri": f"{src}c.jpg", "code": "empty", "detail": "0 bytes"}]
    items, rejects = load_images(manifest, cfg.max_pixels, source)
    assert [i.image.size for i in items] == [(30, 20), (20, 30)] and rejects == []
    object_store.delete_prefix(prefix)
    object_store.delete_prefix(root.removeprefix("s3://hopchain/"))
