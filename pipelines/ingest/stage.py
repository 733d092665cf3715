"""The ingest stage: one shard of uris → manifest rows + quarantine rows.

Life cycle (NeMo-Curator style): ``IngestStage(config).setup()`` / ``process(shard, uris)`` /
``teardown()``. A refused input never stops the shard: it becomes a quarantine row
(``reason = "<code>: <detail>"``, codes in :data:`pipelines.ingest.decode.REFUSAL_CODES`) and the
remaining images are processed. Duplicates (same sha256) inside a shard keep the first uri in
sorted order; :func:`collapse_duplicates` does the same across shards.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import pyarrow as pa

from pipelines.config import IngestConfig
from pipelines.contracts import to_table
from pipelines.ingest.decode import DUPLICATE, UNREADABLE, ImageRefused, decode_image
from pipelines.ingest.sources import ImageSource

log = logging.getLogger(__name__)


@dataclass
class IngestResult:
    manifest: pa.Table
    quarantine: pa.Table
    counts: dict[str, int] = field(default_factory=dict)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class IngestStage:
    """Decode-checks every image of a shard; pure function of (config, shard, uris, bytes)."""

    name = "ingest"

    def __init__(self, config: IngestConfig, source: ImageSource | None = None):
        self.config = config
        self.source = source or ImageSource()

    def setup(self) -> None:  # nothing to load: kept for the common stage life cycle
        return None

    def teardown(self) -> None:
        return None

    def process(self, shard: int, uris: Sequence[str]) -> IngestResult:
        manifest: list[dict] = []
        quarantine: list[dict] = []
        seen: dict[str, str] = {}
        for uri in sorted(uris):
            try:
                data = self.source.read(uri)
            except OSError as err:
                quarantine.append({"uri": uri, "reason": f"{UNREADABLE}: {err}"})
                continue
            image_id = sha256_hex(data)
            if image_id in seen:
                quarantine.append({"uri": uri, "reason": f"{DUPLICATE}: same bytes as {seen[image_id]}"})
                continue
            try:
                decoded = decode_image(data, max_pixels=self.config.max_pixels, max_bytes=self.config.max_bytes)
            except ImageRefused as err:
                quarantine.append({"uri": uri, "reason": err.reason})
                continue
            seen[image_id] = uri
            manifest.append(
                {
                    "image_id": image_id,
                    "uri": uri,
                    "width": decoded.width,
                    "height": decoded.height,
                    "format": decoded.format,
                    "shard": int(shard),
                }
            )
        counts: dict[str, int] = {"images": len(manifest), "quarantined": len(quarantine)}
        for row in quarantine:
            code = row["reason"].split(":", 1)[0]
            counts[code] = counts.get(code, 0) + 1
        log.info("ingest shard %d: %s", shard, counts)
        return IngestResult(to_table(manifest, "manifest"), to_table(quarantine, "quarantine"), counts)


def collapse_duplicates(manifests: Sequence[pa.Table]) -> tuple[pa.Table, pa.Table]:
    """Concatenate shard manifests keeping the first row per ``image_id`` (by shard, then uri);
    the others become quarantine rows with reason ``duplicate: ...``."""
    if not manifests:
        return to_table([], "manifest"), to_table([], "quarantine")
    rows = sorted(pa.concat_tables(manifests).to_pylist(), key=lambda r: (r["shard"], r["uri"]))
    kept: dict[str, dict] = {}
    dupes: list[dict] = []
    for row in rows:
        first = kept.get(row["image_id"])
        if first is None:
            kept[row["image_id"]] = row
        else:
            dupes.append({"uri": row["uri"], "reason": f"{DUPLICATE}: same bytes as {first['uri']}"})
    return to_table(list(kept.values()), "manifest"), to_table(dupes, "quarantine")


def plan_shards(config: IngestConfig, source_uri: str, source: ImageSource | None = None) -> list[int]:
    """The shard numbers of ``source_uri`` (what an Airflow task maps over): ``[0, 1, ...]``."""
    from pipelines.ingest.sources import num_shards

    uris = (source or ImageSource()).list(source_uri, config.extensions)
    return list(range(num_shards(len(uris), config.shard_size)))


def ingest_shard(
    config: IngestConfig, source_uri: str, shard: int, source: ImageSource | None = None
) -> IngestResult:
    """List ``source_uri``, take shard ``shard`` of :func:`assign_shards`, and process it.

    A shard number beyond the listing yields empty tables (the listing shrank between planning
    and running; nothing to do is not an error)."""
    from pipelines.ingest.sources import assign_shards

    source = source or ImageSource()
    shards = assign_shards(source.list(source_uri, config.extensions), config.shard_size)
    uris = shards[shard] if 0 <= shard < len(shards) else []
    stage = IngestStage(config, source)
    stage.setup()
    try:
        return stage.process(shard, uris)
    finally:
        stage.teardown()
