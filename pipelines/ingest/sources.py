"""Where images come from: a local folder or an S3 prefix (``s3://bucket/prefix``).

A *uri* is either an absolute local path or ``s3://bucket/key``. Listing is sorted, so shard
assignment (:func:`assign_shards`) is deterministic: Airflow maps over ``range(num_shards)`` and
each task recomputes the same listing and takes its own slice.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from pipelines.ingest.decode import ImageItem
from pipelines.store import ObjectStore, S3Credentials

if TYPE_CHECKING:
    import pyarrow as pa

    from pipelines.contracts.rejects import Reject

log = logging.getLogger(__name__)


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/key`` → ``(bucket, key)``."""
    if not uri.startswith("s3://"):
        raise ValueError(f"not an s3 uri: {uri!r}")
    bucket, _, key = uri[5:].partition("/")
    if not bucket:
        raise ValueError(f"s3 uri without bucket: {uri!r}")
    return bucket, key


class ImageSource:
    """Reads image bytes by uri; S3 access goes through :class:`ObjectStore` (minio SDK).

    ``creds`` defaults to ``HOPCHAIN_S3_*`` from the environment, needed only for ``s3://`` uris.
    """

    def __init__(self, creds: S3Credentials | None = None):
        self._creds = creds
        self._stores: dict[str, ObjectStore] = {}

    def store(self, bucket: str) -> ObjectStore:
        if bucket not in self._stores:
            creds = self._creds or S3Credentials.from_env()
            if creds is None:
                raise RuntimeError("s3:// input needs credentials: set HOPCHAIN_S3_ENDPOINT/_ACCESS_KEY/_SECRET_KEY")
            self._stores[bucket] = ObjectStore(creds, bucket)
        return self._stores[bucket]

    def list(self, source: str, extensions: Sequence[str]) -> list[str]:
        """All uris under ``source`` whose name ends with one of ``extensions`` (case-insensitive),
        sorted. Other files are skipped (and counted in the log), not quarantined."""
        exts = tuple(e.lower() for e in extensions)
        if source.startswith("s3://"):
            bucket, prefix = parse_s3_uri(source)
            names = [f"s3://{bucket}/{k}" for k in self.store(bucket).list(prefix)]
        else:
            root = Path(source).resolve()
            if not root.is_dir():
                raise FileNotFoundError(f"image folder not found: {source}")
            names = [str(p) for p in root.rglob("*") if p.is_file()]
        kept = sorted(n for n in names if n.lower().endswith(exts))
        if len(kept) != len(names):
            log.info("listing %s: %d files skipped (extension not in %s)", source, len(names) - len(kept), exts)
        return kept

    def read(self, uri: str) -> bytes:
        if uri.startswith("s3://"):
            bucket, key = parse_s3_uri(uri)
            return self.store(bucket).get_bytes(key)
        with open(os.fspath(uri), "rb") as fh:
            return fh.read()


def num_shards(num_items: int, shard_size: int) -> int:
    """How many shards ``num_items`` make at ``shard_size`` per shard (0 items → 0 shards)."""
    if shard_size < 1:
        raise ValueError("shard_size must be >= 1")
    return -(-num_items // shard_size)


def assign_shards(uris: Sequence[str], shard_size: int) -> list[list[str]]:
    """Deterministic sharding: sort, then consecutive slices of ``shard_size``.

    Shard ``i`` holds ``sorted(uris)[i*shard_size:(i+1)*shard_size]``.
    """
    ordered = sorted(uris)
    return [ordered[i : i + shard_size] for i in range(0, len(ordered), shard_size)]


def load_images(
    manifest: pa.Table, max_pixels: int, source: ImageSource | None = None, stage: str = "load"
) -> tuple[list[ImageItem], list[Reject]]:
    """Decode every manifest image (as ingest did) → ImageItems, and rejects for images that can
    no longer be read (``image.unreadable``), decoded (``image.<refusal code>``, e.g.
    ``image.truncated_or_corrupt``) or that changed size since ingest (``image.changed``)."""
    from pipelines.contracts.rejects import Reject
    from pipelines.ingest.decode import UNREADABLE, ImageRefused, decode_image

    source = source or ImageSource()
    items: list[ImageItem] = []
    rejects: list[Reject] = []
    for row in manifest.to_pylist():
        try:
            decoded = decode_image(source.read(row["uri"]), max_pixels=max_pixels)
        except OSError as err:
            rejects.append(Reject(stage=stage, item_id=row["image_id"], code=f"image.{UNREADABLE}",
                                  detail=f"image not loadable: {err}", raw=row["uri"]))
            continue
        except ImageRefused as err:
            rejects.append(Reject(stage=stage, item_id=row["image_id"], code=f"image.{err.code}",
                                  detail=f"image not loadable: {err.detail}", raw=row["uri"]))
            continue
        if (decoded.width, decoded.height) != (row["width"], row["height"]):
            rejects.append(Reject(stage=stage, item_id=row["image_id"], code="image.changed", raw=row["uri"],
                                  detail=f"image changed since ingest: {decoded.width}x{decoded.height} "
                                         f"!= {row['width']}x{row['height']}"))
            continue
        items.append(ImageItem(row["image_id"], decoded.image))
    return items, rejects
