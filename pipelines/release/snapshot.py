"""Gather a release's inputs into the DVC-tracked snapshot folder (``inputs/``).

A table source is a local Parquet file, a local folder of ``*.parquet`` shards, ``s3://bucket/key``
or ``s3://bucket/prefix/`` (every ``.parquet`` under it). Images are read from the manifest
``uri`` (``s3://bucket/key`` or a local path), from the object store (``images_from="s3"``: bare
keys go to the platform bucket), or from a local folder (``images_from=DIR``: ``DIR/<file name of
the uri>``, ``DIR/<uri>`` or ``DIR/<image_id>.<ext>``). Every image's bytes are checked against its
``image_id`` (sha256); a missing or altered image is a reject row, not an error — unless every
image fails, which means the source is wrong and raises :class:`SnapshotError`.

Only the images of accepted questions are packed (``IMAGE_PACK``, ``images_per_pack`` per file,
sorted by ``image_id``), and only their instances are kept.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipelines.config import ReleaseConfig
from pipelines.contracts import conform, to_table, write_parquet_atomic
from pipelines.files import replacing_folder
from pipelines.release.assemble import (
    IMAGE_PACK,
    IMAGES_DIR,
    INPUT_TABLES,
    PROVENANCE_FILE,
    REJECTS_FILE,
    image_file_name,
    reject,
)
from pipelines.store import ObjectStore, S3Credentials

_RUN_ID = re.compile(r"(?:^|/)runs/([^/]+)/")


class SnapshotError(RuntimeError):
    """The inputs cannot be gathered (unreadable table, every image unavailable, ...)."""


@dataclass(frozen=True)
class ReleaseSources:
    """Where a release's inputs come from (paths or ``s3://`` URIs)."""

    consensus: str
    questions: str
    instances: str
    manifest: str
    images_from: str | None = None  # None: the manifest uri; "s3": object store; else a folder
    run_ids: tuple[str, ...] = ()

    def tables(self) -> dict[str, str]:
        return {name: getattr(self, name) for name in INPUT_TABLES}

    def all_run_ids(self) -> list[str]:
        """Explicit run ids plus those named by ``runs/<run_id>/`` in the sources."""
        found = set(self.run_ids)
        for src in self.tables().values():
            found.update(_RUN_ID.findall(src.replace("\\", "/")))
        return sorted(found)


@dataclass
class SourceReader:
    """Reads tables and image bytes from local paths or the object store."""

    creds: S3Credentials | None = None
    default_bucket: str = "hopchain"
    _stores: dict[str, ObjectStore] = field(default_factory=dict)

    def store(self, bucket: str) -> ObjectStore:
        if self.creds is None:
            raise SnapshotError("an s3:// source needs object-store credentials (HOPCHAIN_S3_* or --s3-credentials)")
        if bucket not in self._stores:
            self._stores[bucket] = ObjectStore(self.creds, bucket)
        return self._stores[bucket]

    def read_table(self, src: str) -> pa.Table:
        if src.startswith("s3://"):
            u = urlparse(src)
            store, key = self.store(u.netloc), u.path.lstrip("/")
            keys = [key] if key.endswith(".parquet") else sorted(
                k for k in store.list(key.rstrip("/") + "/") if k.endswith(".parquet"))
            tables = [store.get_table(k) for k in keys]
        else:
            path = Path(src)
            files = [path] if path.is_file() else sorted(path.glob("*.parquet"))
            tables = [pq.read_table(f) for f in files]
        if not tables:
            raise SnapshotError(f"no Parquet data at {src}")
        return pa.concat_tables(tables, promote_options="default")

    def read_image(self, image_id: str, uri: str, fmt: str, images_from: str | None) -> bytes:
        """The bytes of one image; ``FileNotFoundError`` when it is not there."""
        if images_from not in (None, "s3"):
            folder = Path(images_from)
            rel = urlparse(uri).path.lstrip("/") if "://" in uri else uri.lstrip("/")
            for cand in (folder / Path(rel).name, folder / rel, folder / image_file_name(image_id, fmt),
                         folder / image_id):
                if cand.is_file():
                    return cand.read_bytes()
            raise FileNotFoundError(f"{image_id} not found in {folder}")
        if uri.startswith("s3://") or images_from == "s3":
            from minio.error import S3Error

            u = urlparse(uri)
            bucket, key = (u.netloc, u.path.lstrip("/")) if uri.startswith("s3://") else (self.default_bucket, uri)
            try:
                return self.store(bucket).get_bytes(key)
            except S3Error as err:
                if err.code in ("NoSuchKey", "NoSuchObject", "NotFound"):
                    raise FileNotFoundError(f"s3://{bucket}/{key}: {err.code}") from None
                raise
        path = Path(urlparse(uri).path if uri.startswith("file://") else uri)
        return path.read_bytes()


def _read_contract(reader: SourceReader, name: str, src: str) -> pa.Table:
    raw = reader.read_table(src)
    try:
        table = conform(raw, name)
    except (ValueError, pa.ArrowInvalid) as err:
        raise SnapshotError(f"{name} table at {src} does not match the contract: {err}") from None
    return table


def snapshot_inputs(
    sources: ReleaseSources,
    out: Path,
    cfg: ReleaseConfig,
    reader: SourceReader,
    *,
    workers: int = 8,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Write the snapshot folder ``out`` (replaced atomically); returns a summary of counts."""
    say = progress or (lambda _msg: None)
    tables = {name: _read_contract(reader, name, src) for name, src in sources.tables().items()}
    consensus, questions, manifest = tables["consensus"], tables["questions"], tables["manifest"]
    accepted = set(pc.filter(consensus.column("question_id"),
                             pc.equal(consensus.column("status"), "accepted")).to_pylist())
    wanted = {q["image_id"] for q in questions.select(["question_id", "image_id"]).to_pylist()
              if q["question_id"] in accepted}
    images = sorted((m for m in manifest.to_pylist() if m["image_id"] in wanted), key=lambda m: m["image_id"])
    say(f"snapshot: {len(accepted)} accepted questions over {len(images)} images")

    def fetch(m: dict[str, Any]) -> tuple[dict[str, Any], bytes | None, tuple[str, str] | None]:
        try:
            data = reader.read_image(m["image_id"], m["uri"], m["format"], sources.images_from)
        except FileNotFoundError as err:
            return m, None, ("release.image_unavailable", f"image unavailable: {err}")
        if hashlib.sha256(data).hexdigest() != m["image_id"]:
            return m, None, ("release.image_altered", "image bytes do not match image_id (sha256)")
        return m, data, None

    with ThreadPoolExecutor(max_workers=workers) as pool:
        fetched = list(pool.map(fetch, images))
    rejects = [reject(m["image_id"], *why, m["uri"]) for m, _, why in fetched if why]
    good = [(m, data) for m, data, why in fetched if data is not None]
    if images and not good:
        raise SnapshotError(f"none of the {len(images)} images could be read "
                            f"(first: {rejects[0].code}: {rejects[0].detail}); check --images-from")

    with replacing_folder(out) as tmp:
        (tmp / IMAGES_DIR).mkdir()
        for name, table in tables.items():
            if name == "instances":
                keep = {m["image_id"] for m, _ in good}
                table = table.filter(pc.is_in(table.column("image_id"), pa.array(sorted(keep), pa.string())))
            write_parquet_atomic(table, tmp / f"{name}.parquet")
        per = cfg.images_per_pack
        for p, start in enumerate(range(0, len(good), per)):
            chunk = good[start:start + per]
            pack = pa.table(
                {"image_id": [m["image_id"] for m, _ in chunk], "format": [m["format"] for m, _ in chunk],
                 "width": [m["width"] for m, _ in chunk], "height": [m["height"] for m, _ in chunk],
                 "bytes": [d for _, d in chunk]},
                schema=IMAGE_PACK,
            )
            # Image bytes are already compressed: store them uncompressed (faster, same size).
            path = tmp / IMAGES_DIR / f"images-{p:05d}.parquet"
            pq.write_table(pack, path, compression="none")
        write_parquet_atomic(to_table(rejects, "rejects"), tmp / REJECTS_FILE)
        provenance = {"sources": sources.tables() | {"images_from": sources.images_from or "manifest uri"},
                      "run_ids": sources.all_run_ids()}
        (tmp / PROVENANCE_FILE).write_text(json.dumps(provenance, indent=2, sort_keys=True) + "\n")
    summary = {"accepted": len(accepted), "images": len(good), "image_rejects": len(rejects)}
    say(f"snapshot: {summary}")
    return summary


__all__ = ["ReleaseSources", "SnapshotError", "SourceReader", "snapshot_inputs"]
