"""The ingest stage: one shard of uris → manifest rows + quarantine rows.

Life cycle (NeMo-Curator style): ``IngestStage(config).setup()`` / ``process(shard, uris)`` /
``teardown()``. A refused input never stops the shard: it becomes a quarantine row
(:class:`~pipelines.rejects.Quarantined`: ``code`` one of
:data:`pipelines.ingest.decode.REFUSAL_CODES`, plus a ``detail`` sentence) and the remaining images
are processed. Duplicates (same sha256) inside a shard keep the first uri in sorted order;
:func:`collapse_duplicates` does the same across shards.
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
from pipelines.rejects import Quarantined, count_codes, quarantine_table

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
        quarantine: list[Quarantined] = []
        seen: dict[str, str] = {}
        for uri in sorted(uris):
            try:
                data = self.source.read(uri)
            except OSError as err:
                quarantine.append(Quarantined(uri=uri, code=UNREADABLE, detail=str(err) or type(err).__name__))
                continue
            image_id = sha256_hex(data)
            if image_id in seen:
                quarantine.append(Quarantined(uri=uri, code=DUPLICATE, detail=f"same bytes as {seen[image_id]}"))
                continue
            try:
                decoded = decode_image(data, max_pixels=self.config.max_pixels, max_bytes=self.config.max_bytes)
            except ImageRefused as err:
                quarantine.append(Quarantined(uri=uri, code=err.code, detail=err.detail))
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
        counts: dict[str, int] = {
            "images": len(manifest), "quarantined": len(quarantine), **count_codes(quarantine)
        }
        log.info("ingest shard %d: %s", shard, counts)
        return IngestResult(to_table(manifest, "manifest"), quarantine_table(quarantine), counts)


def collapse_duplicates(manifests: Sequence[pa.Table]) -> tuple[pa.Table, pa.Table]:
    """Concatenate shard manifests keeping the first row per ``image_id`` (by shard, then uri);
    the others become quarantine rows with code ``duplicate``."""
    if not manifests:
        return to_table([], "manifest"), quarantine_table([])
    rows = sorted(pa.concat_tables(manifests).to_pylist(), key=lambda r: (r["shard"], r["uri"]))
    kept: dict[str, dict] = {}
    dupes: list[Quarantined] = []
    for row in rows:
        first = kept.get(row["image_id"])
        if first is None:
            kept[row["image_id"]] = row
        else:
            dupes.append(Quarantined(uri=row["uri"], code=DUPLICATE, detail=f"same bytes as {first['uri']}"))
    return to_table(list(kept.values()), "manifest"), quarantine_table(dupes)


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
