"""One shard runner for the GPU stages, used by the CLI (``hopchain detect`` / ``segment``, through
:func:`run_on_root`) and by the Airflow tasks (:class:`pipelines.flow.Flow`).

A stage object follows the life cycle ``setup()`` (load the model once per worker) →
``process(batch)`` per batch → ``teardown()``; the caller owns that life cycle, so one loaded
model serves every shard of a CLI call. :func:`run_detect` / :func:`run_segment` do one manifest
shard: decode its images (unreadable or changed images become reject rows), feed the stage
batches of :func:`batch_size` images, and concatenate outputs, rejects and counts.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

import pyarrow as pa
import pyarrow.compute as pc

from pipelines.config import Params
from pipelines.contracts import empty_table
from pipelines.ingest.decode import ImageItem
from pipelines.layout import SHARD_GLOB, shard_of
from pipelines.rejects import rejects_table

T = TypeVar("T")


def batch_size(params: Params, stage: Literal["detect", "segment"]) -> int:
    """Images per ``process`` call — the one rule for both callers.

    detect: the VLM's batch (``vlm.qwen3vl.batch_size``, or ``vlm.openai.concurrency`` requests
    in flight); segment: the backend's ``batch_size`` (``segment.<backend>.batch_size``).
    """
    if stage == "detect":
        return max(1, params.vlm.batch_size)
    seg = params.segment
    return max(1, getattr(seg, seg.backend).batch_size) if seg.backend != "annotations" else 1


def batches(items: Sequence[T], size: int) -> list[Sequence[T]]:
    """``items`` cut into consecutive batches of at most ``size``."""
    size = max(1, int(size))
    return [items[i: i + size] for i in range(0, len(items), size)]


@dataclass
class ShardOutput:
    """What one stage made of one shard: its table, every reject, and summed counts."""

    table: pa.Table
    rejects: pa.Table
    counts: dict[str, float] = field(default_factory=dict)


def _sum_counts(parts: Sequence[dict[str, Any]]) -> dict[str, float]:
    out: dict[str, float] = {}
    for counts in parts:
        for k, v in counts.items():
            if isinstance(v, int | float) and not isinstance(v, bool):
                out[k] = out.get(k, 0) + v
    return {k: round(v, 3) if isinstance(v, float) else v for k, v in out.items()}


def _processed(advance: Callable[[int], None] | None, n: int) -> None:
    if advance is not None and n:
        advance(n)


def run_detect(stage: Any, manifest: pa.Table, params: Params,
               load: Callable[[pa.Table, str], tuple[list[ImageItem], list[Any]]],
               advance: Callable[[int], None] | None = None) -> ShardOutput:
    """Detections of one manifest shard. ``stage`` is a set-up :class:`~pipelines.detect.stage.DetectStage`;
    ``load(manifest, stage_name)`` decodes the images (→ items, reject records); ``advance(n)`` is
    told of every ``n`` images done (progress), unreadable ones included."""
    items, load_rejects = load(manifest, "detect")
    _processed(advance, len(load_rejects))
    parts = []
    for chunk in batches(items, batch_size(params, "detect")):
        parts.append(stage.process(chunk))
        _processed(advance, len(chunk))
    table = pa.concat_tables([p.detections for p in parts]) if parts else empty_table("detections")
    rejects = pa.concat_tables([rejects_table(load_rejects), *[p.rejects for p in parts]])
    counts = _sum_counts([p.counts for p in parts])
    return ShardOutput(table, rejects, {**counts, "images": len(manifest), "detections": len(table),
                                        "rejected": len(rejects)})


def run_segment(stage: Any, manifest: pa.Table, detections: pa.Table, params: Params,
                load: Callable[[pa.Table, str], tuple[list[ImageItem], list[Any]]],
                advance: Callable[[int], None] | None = None) -> ShardOutput:
    """Instances of one manifest shard from its detections. ``stage`` is a set-up
    :class:`~pipelines.segment.stage.SegmentStage`; each batch gets the detections of its images;
    ``advance(n)`` as for :func:`run_detect`."""
    items, load_rejects = load(manifest, "segment")
    _processed(advance, len(load_rejects))
    parts = []
    for chunk in batches(items, batch_size(params, "segment")):
        ids = pa.array([it.image_id for it in chunk], type=pa.string())
        parts.append(stage.process(chunk, detections.filter(pc.is_in(detections["image_id"], value_set=ids))))
        _processed(advance, len(chunk))
    table = pa.concat_tables([p.instances for p in parts]) if parts else empty_table("instances")
    rejects = pa.concat_tables([rejects_table(load_rejects), *[p.rejects for p in parts]])
    counts = _sum_counts([{**p.counts, **p.timings} for p in parts])
    return ShardOutput(table, rejects, {**counts, "images": len(manifest), "instances": len(table),
                                        "rejected": len(rejects)})


# -- run roots (the CLI's folders or s3:// prefixes of shards) ---------------------------------------
def shard_numbers(root: str, table: str) -> list[int]:
    """Shard numbers present under ``<root>/<table>/`` (local or s3)."""
    from pathlib import Path

    from pipelines.ingest.sources import ImageSource, parse_s3_uri

    base = f"{root.rstrip('/')}/{table}"
    if base.startswith("s3://"):
        bucket, prefix = parse_s3_uri(base)
        names = list(ImageSource().store(bucket).list(prefix + "/"))
    else:
        names = [p.name for p in Path(base).glob(SHARD_GLOB)]
    found = {n for name in names if name.endswith(".parquet") and (n := shard_of(name)) is not None}
    return sorted(found)


def read_shard(root: str, table: str, shard: int, contract: str) -> pa.Table:
    from pipelines.contracts import read_parquet
    from pipelines.ingest.sources import ImageSource, parse_s3_uri, shard_path

    path = shard_path(root, table, shard)
    if path.startswith("s3://"):
        bucket, key = parse_s3_uri(path)
        return ImageSource().store(bucket).get_table(key, contract)
    return read_parquet(path, contract)


def run_on_root(stage_name: Literal["detect", "segment"], root: str, params: Params,
                shard: int | None = None) -> dict[str, Any]:
    """Every manifest shard of a run root (or only ``shard``) through one loaded model: detect
    writes ``detections/`` + ``detect_rejects/``, segment ``instances/`` + ``segment_rejects/``.
    Returns the shard numbers and summed counts.

    Progress: a bar over the images of every shard on a terminal, else one log line per shard
    (:class:`pipelines.progress.ItemProgress`). A run root without a manifest is an input error.
    """
    from pipelines.config import ConfigError
    from pipelines.ingest.sources import ImageSource, load_images, save_table
    from pipelines.progress import ItemProgress

    shards = shard_numbers(root, "manifest") if shard is None else [shard]
    if not shards:
        raise FileNotFoundError(2, "no manifest shards (run `hopchain ingest --out` on this root first)",
                                f"{root}/manifest")
    no_model = params.detect.backend != "vlm" if stage_name == "detect" else params.segment.backend == "annotations"
    if no_model:
        key = "detect.backend" if stage_name == "detect" else "segment.backend"
        raise ConfigError(f"{key} is 'annotations' in profile {params.profile!r}: `hopchain {stage_name}` needs a "
                          "model (select a profile with one, e.g. --profile gpu; annotated images go through "
                          "`hopchain import-coco`)")
    source = ImageSource()
    manifests = {n: read_shard(root, "manifest", n, "manifest") for n in shards}

    def load(manifest: pa.Table, stage: str) -> tuple[list[ImageItem], list[Any]]:
        return load_images(manifest, params.ingest.max_pixels, source, stage=stage)

    stage: Any
    if stage_name == "detect":
        from pipelines.detect.stage import DetectStage

        stage, table, contract = DetectStage(params.detect, params.vlm), "detections", "detections"
    else:
        from pipelines.segment.stage import SegmentStage

        stage, table, contract = SegmentStage(params.segment), "instances", "instances"
    totals: dict[str, float] = {}
    detections = ({n: read_shard(root, "detections", n, "detections") for n in shards}
                  if stage_name == "segment" else {})
    stage.setup()
    try:
        with ItemProgress(stage_name, sum(len(m) for m in manifests.values())) as progress:
            for n in shards:
                progress.describe(f"{stage_name} shard {n}")
                manifest = manifests[n]
                out = (run_detect(stage, manifest, params, load, progress.advance) if stage_name == "detect" else
                       run_segment(stage, manifest, detections[n], params, load, progress.advance))
                save_table(out.table, root, table, n, contract, source)
                save_table(out.rejects, root, f"{stage_name}_rejects", n, "rejects", source)
                totals = _sum_counts([totals, out.counts])
                progress.shard_done(n, out.counts)
    finally:
        stage.teardown()
    return {"shards": shards, **totals}
