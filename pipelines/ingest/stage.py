"""The ingest stage: raw images → sharded manifest + quarantine (a source stage of :mod:`pipelines.runner`).

:class:`IngestStage` lists the input (a folder, ``s3://bucket/prefix``, or a folder of the platform
bucket's inputs), plans shards of ``ingest.shard_size`` sorted uris, checks each shard's images
(:func:`check_images`) and, across the shards of one call, collapses duplicates
(:func:`collapse_duplicates`: the first uri in shard order keeps the image). A refused input never
stops the shard: it becomes a quarantine row (:class:`~pipelines.contracts.rejects.Quarantined`: ``code`` one of
:data:`pipelines.ingest.decode.REFUSAL_CODES`, plus a ``detail`` sentence). The manifest and the
quarantine are checked (Great Expectations) before any later stage reads them.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from pipelines.config import IngestConfig
from pipelines.contracts import to_table
from pipelines.contracts.rejects import Quarantined, count_codes, quarantine_table
from pipelines.ingest.decode import DUPLICATE, UNREADABLE, ImageRefused, decode_image, sha256_hex
from pipelines.ingest.sources import ImageSource
from pipelines.runner import Check, RunEnv, Shard, ShardResult, StageBase

log = logging.getLogger(__name__)


@dataclass
class IngestResult:
    manifest: pa.Table
    quarantine: pa.Table
    counts: dict[str, int] = field(default_factory=dict)


def check_images(
    config: IngestConfig, source: ImageSource, shard: int, uris: Sequence[str], *, root: str = ""
) -> IngestResult:
    """Hash and decode-check every image of one shard (pure function of config, uris and bytes):
    manifest rows for the good ones, quarantine rows for the others; a duplicate inside the shard
    keeps the first uri in sorted order. Each file is read within ``config.max_bytes`` (refused by its
    size before it is read) and, for a local folder ``root`` (the listed source), only when its real
    path lies inside it (``outside_images_folder`` otherwise: a symlink out is never followed)."""
    manifest: list[dict] = []
    quarantine: list[Quarantined] = []
    seen: dict[str, str] = {}
    for uri in sorted(uris):
        try:
            data = source.read(uri, max_bytes=config.max_bytes, root=root)
        except OSError as err:
            quarantine.append(Quarantined(uri=uri, code=UNREADABLE, detail=str(err) or type(err).__name__))
            continue
        except ImageRefused as err:
            quarantine.append(Quarantined(uri=uri, code=err.code, detail=err.detail))
            continue
        image_id = sha256_hex(data)
        if image_id in seen:
            quarantine.append(Quarantined(uri=uri, code=DUPLICATE, detail=f"same bytes as {seen[image_id]}"))
            continue
        try:
            decoded = decode_image(data, max_pixels=config.max_pixels, max_bytes=config.max_bytes)
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


class IngestStage(StageBase):
    """Ingest as a source stage: ``source`` (a folder or ``s3://`` uri), or ``input_prefix`` (a folder of
    the platform bucket's inputs, what the nightly DAG passes); ``shard_size`` / ``max_images`` override
    ``ingest.shard_size`` / take only the first images of the sorted listing (0: off)."""

    name = "ingest"
    outputs = ("manifest", "quarantine")
    metrics = ("listed", "images", "quarantined")
    checks = (Check("manifest", "manifest"), Check("quarantine", "quarantine"))

    def __init__(self, source: str = "", *, input_prefix: str = "", shard_size: int = 0, max_images: int = 0):
        if bool(source) == bool(input_prefix):
            raise ValueError("IngestStage needs a source uri or an input prefix (one of them)")
        self.source_uri = source
        self.input_prefix = input_prefix
        self.shard_size = int(shard_size)
        self.max_images = int(max_images)
        self.listed = 0
        self.shipped: dict[str, Any] | None = None

    def setup(self, env: RunEnv) -> None:
        cfg = env.params.ingest
        self.config = cfg.model_copy(update={"shard_size": self.shard_size}) if self.shard_size else cfg
        self.images = env.images
        self.uri = self.source_uri or env.input_uri(self.input_prefix)
        from pipelines.segment.annotations import shipped_coco

        # the COCO instances shipped with the images, read once here and handed to each shard as its slice
        self.shipped = shipped_coco(env, self.uri)

    def plan(self) -> dict[int, list[str]]:
        from pipelines.ingest.sources import assign_shards

        uris = self.images.list(self.uri, self.config.extensions)
        if self.max_images:
            uris = uris[: self.max_images]
        self.listed = len(uris)
        if not uris:  # a night with nothing new is not an error
            log.info("ingest %s: no input images", self.uri)
        return dict(enumerate(assign_shards(uris, self.config.shard_size)))

    def process(self, shard: Shard) -> ShardResult:
        res = check_images(self.config, self.images, shard.number, shard.items, root=self.uri)
        return ShardResult({"manifest": res.manifest, "quarantine": res.quarantine}, None, res.counts)

    def merge(self, results: dict[int, ShardResult]) -> dict[int, ShardResult]:
        """Duplicates across the shards of this call go to quarantine (the lowest shard keeps the image)."""
        import pyarrow.compute as pc

        manifest, dupes = collapse_duplicates([r.tables["manifest"] for r in results.values()])
        merged: dict[int, ShardResult] = {}
        for n, res in sorted(results.items()):
            mine = res.tables["manifest"]
            part = manifest.filter(pc.equal(manifest["shard"], n))
            quarantine = pa.concat_tables([res.tables["quarantine"],
                                           dupes.filter(pc.is_in(dupes["uri"], value_set=mine["uri"]))])
            stats = {"listed": len(mine) + len(res.tables["quarantine"]), "images": len(part),
                     "quarantined": len(quarantine), **count_codes(quarantine)}
            merged[n] = ShardResult({"manifest": part, "quarantine": quarantine}, None, stats)
        if self.shipped is not None:
            from pipelines.segment.annotations import SHIPPED, shipped_slices

            slices = shipped_slices(self.shipped, self.uri, {n: r.tables["manifest"] for n, r in merged.items()})
            for n, doc in slices.items():
                merged[n].documents[SHIPPED] = doc
        images = sum(len(r.tables["manifest"]) for r in merged.values())
        if merged:
            log.info("ingest %s: %d images in %d shards, %d quarantined", self.uri, images, len(merged),
                     self.listed - images)
        return merged

    def record(self, results: dict[int, ShardResult]) -> dict[str, Any]:
        return {"input": self.uri, "images": sum(len(r.tables["manifest"]) for r in results.values()),
                "listed": self.listed}


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
    return check_images(config, source, shard, uris, root=source_uri)
