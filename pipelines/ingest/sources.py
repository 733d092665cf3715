"""Where images come from: a local folder or an S3 prefix (``s3://bucket/prefix``).

A *uri* is either an absolute local path or ``s3://bucket/key``. Listing is sorted, so shard
assignment (:func:`assign_shards`) is deterministic: Airflow maps over ``range(num_shards)`` and
each task recomputes the same listing and takes its own slice.

A source is a *folder*: ``s3://bucket/inputs/batch-1`` lists ``inputs/batch-1/…`` and never
``inputs/batch-10/…`` (:func:`folder_prefix`), and a local file is read only when its real path
(symlinks resolved) lies inside the folder that was listed (:meth:`ImageSource.read` with ``root``).
Sizes are checked from the file's ``stat`` or the object's ``HEAD`` before a byte is read.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from pipelines.ingest.decode import OUTSIDE_FOLDER, TOO_MANY_BYTES, ImageItem, ImageRefused
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


def folder_prefix(key: str) -> str:
    """An S3 key prefix as a folder: ``inputs/batch-1`` → ``inputs/batch-1/`` (so that a listing never
    takes the sibling ``inputs/batch-10/``); ``""`` (the whole bucket) stays ``""``."""
    return key if not key or key.endswith("/") else key + "/"


def _too_many_bytes(uri: str, size: int | None, max_bytes: int) -> ImageRefused:
    """``size``: the size the file system or server states (refused unread); None: the read ran past the limit."""
    if size is None:
        return ImageRefused(TOO_MANY_BYTES, f"more than max_bytes {max_bytes} bytes read from {uri}; read stopped")
    return ImageRefused(TOO_MANY_BYTES, f"{size} bytes > max_bytes {max_bytes}; {uri} not read")


def read_at_most(read: Callable[[int], bytes], limit: int, stated: int | None) -> bytes:
    """At most ``limit + 1`` bytes from ``read`` (a file's or an HTTP body's ``read(n)``), in chunks: the
    first asks for the ``stated`` size and one byte more, so no buffer of the limit's size is allocated
    for a small file (``read(n)`` preallocates ``n`` bytes); more than ``limit`` bytes means refuse."""
    chunks: list[bytes] = []
    got = 0
    want = min(limit, stated or 0) + 1
    while got <= limit:
        chunk = read(min(want, limit + 1 - got))
        if not chunk:
            break
        chunks.append(chunk)
        got += len(chunk)
        want = _CHUNK
    return b"".join(chunks)


_CHUNK = 1 << 20


def inside_folder(uri: str, root: str) -> Path:
    """The real path of the local file ``uri`` (symlinks resolved), refused with
    :class:`ImageRefused` (``outside_images_folder``) when it is not inside the folder ``root``:
    a symlink that points out, or ``..`` segments, are never followed to their target."""
    folder = Path(root).resolve()
    real = Path(uri).resolve()
    if not real.is_relative_to(folder) or real == folder:
        link = " (a symlink)" if Path(uri).is_symlink() else ""
        raise ImageRefused(OUTSIDE_FOLDER, f"{uri}{link} resolves to {real}, outside the input folder {folder}")
    return real


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
        """All uris under the folder ``source`` whose name ends with one of ``extensions``
        (case-insensitive), sorted. Other files are skipped (and counted in the log), not quarantined.

        ``source`` is a folder (:func:`folder_prefix`). Local symlinks are listed as they are named in
        the folder (their targets are checked when they are read, see :meth:`read`); symlinked
        folders are not walked into."""
        exts = tuple(e.lower() for e in extensions)
        if source.startswith("s3://"):
            bucket, prefix = parse_s3_uri(source)
            names = [f"s3://{bucket}/{k}" for k in self.store(bucket).list(folder_prefix(prefix))]
        else:
            root = Path(source).resolve()
            if not root.is_dir():
                raise FileNotFoundError(f"image folder not found: {source}")
            names = [str(p) for p in root.rglob("*") if p.is_symlink() or p.is_file()]
        kept = sorted(n for n in names if n.lower().endswith(exts))
        if len(kept) != len(names):
            log.info("listing %s: %d files skipped (extension not in %s)", source, len(names) - len(kept), exts)
        return kept

    def read(self, uri: str, *, max_bytes: int | None = None, root: str = "") -> bytes:
        """The bytes of ``uri``.

        ``max_bytes``: an object larger than this is refused (:class:`ImageRefused`, ``too_many_bytes``)
        from its size (the file's ``fstat``, the object's ``HEAD``) before any byte is read, and the
        read itself stops at ``max_bytes + 1`` bytes (a file that grows, a size the server misstates),
        so memory stays bounded by the limit whatever the input. ``root``: a local ``uri`` must resolve
        inside this folder (:func:`inside_folder`). ``OSError`` (and the S3 SDK's errors) when the
        object cannot be read."""
        if uri.startswith("s3://"):
            bucket, key = parse_s3_uri(uri)
            if max_bytes is None:
                return self.store(bucket).get_bytes(key)
            return self._read_s3_bounded(uri, bucket, key, max_bytes)
        path = inside_folder(uri, root) if root and not root.startswith("s3://") else Path(uri)
        with open(os.fspath(path), "rb") as fh:
            if max_bytes is None:
                return fh.read()
            size = os.fstat(fh.fileno()).st_size
            if size > max_bytes:
                raise _too_many_bytes(uri, size, max_bytes)
            data = read_at_most(fh.read, max_bytes, size)
        if len(data) > max_bytes:
            raise _too_many_bytes(uri, None, max_bytes)
        return data

    def _read_s3_bounded(self, uri: str, bucket: str, key: str, max_bytes: int) -> bytes:
        """HEAD, refuse by size, then a ranged GET of at most ``max_bytes + 1`` bytes."""
        client = self.store(bucket).client
        size = client.stat_object(bucket, key).size
        if size is not None and size > max_bytes:
            raise _too_many_bytes(uri, size, max_bytes)
        if size == 0:
            return b""  # a range of an empty object is unsatisfiable (HTTP 416)
        resp = client.get_object(bucket, key, offset=0, length=max_bytes + 1)
        try:
            data = read_at_most(resp.read, max_bytes, size)
        finally:
            resp.close()
            resp.release_conn()
        if len(data) > max_bytes:
            raise _too_many_bytes(uri, None, max_bytes)
        return data


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
    manifest: pa.Table, max_pixels: int, source: ImageSource | None = None, stage: str = "load",
    *, max_bytes: int | None = None,
) -> tuple[list[ImageItem], list[Reject]]:
    """Decode every manifest image (as ingest did) → ImageItems, and rejects for images that can
    no longer be read (``image.unreadable``), decoded or read within the limits (``image.<refusal
    code>``, e.g. ``image.truncated_or_corrupt``, ``image.too_many_bytes``) or that changed size since
    ingest (``image.changed``). ``max_bytes`` (``ingest.max_bytes``) bounds each read; None: unbounded."""
    from pipelines.contracts.rejects import Reject
    from pipelines.ingest.decode import UNREADABLE, decode_image

    source = source or ImageSource()
    items: list[ImageItem] = []
    rejects: list[Reject] = []
    for row in manifest.to_pylist():
        try:
            decoded = decode_image(source.read(row["uri"], max_bytes=max_bytes), max_pixels=max_pixels)
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
