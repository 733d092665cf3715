"""``hopchain detect``: manifest shards of a run root → detections (+ detect_rejects)."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pyarrow as pa


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("detect", help="category identification (Qwen3-VL in-process or an OpenAI-compatible endpoint)")
    p.add_argument("--root", required=True, help="run root holding manifest/ (folder or s3://bucket/prefix)")
    p.add_argument("--shard", type=int, default=None, help="process only this shard (default: all)")
    p.set_defaults(handler=_detect)


def shard_numbers(root: str, table: str) -> list[int]:
    """Shard numbers present under ``<root>/<table>/`` (local or s3)."""
    import re
    from pathlib import Path

    from pipelines.ingest.sources import ImageSource, parse_s3_uri

    base = f"{root.rstrip('/')}/{table}"
    if base.startswith("s3://"):
        bucket, prefix = parse_s3_uri(base)
        names = list(ImageSource().store(bucket).list(prefix + "/"))
    else:
        names = [p.name for p in Path(base).glob("shard-*.parquet")]
    found = {int(m.group(1)) for n in names if (m := re.search(r"shard-(\d+)\.parquet$", n))}
    return sorted(found)


def read_shard(root: str, table: str, shard: int, contract: str) -> pa.Table:
    from pipelines.contracts import read_parquet
    from pipelines.ingest.sources import ImageSource, parse_s3_uri, shard_path

    path = shard_path(root, table, shard)
    if path.startswith("s3://"):
        bucket, key = parse_s3_uri(path)
        return ImageSource().store(bucket).get_table(key, contract)
    return read_parquet(path, contract)


def _detect(args: argparse.Namespace) -> int:
    from pipelines.config import load_params
    from pipelines.detect.stage import DetectStage
    from pipelines.ingest.sources import ImageSource, load_images, save_table
    from pipelines.shards import run_detect

    params = load_params(args.params, args.profile)
    shards = shard_numbers(args.root, "manifest") if args.shard is None else [args.shard]
    source = ImageSource()

    def load(manifest: pa.Table, stage: str) -> tuple[list[Any], list[Any]]:
        return load_images(manifest, params.ingest.max_pixels, source, stage=stage)

    stage = DetectStage(params.detect, params.vlm)
    stage.setup()
    totals: dict[str, float] = {}
    try:
        for shard in shards:
            out = run_detect(stage, read_shard(args.root, "manifest", shard, "manifest"), params, load)
            save_table(out.table, args.root, "detections", shard, "detections", source)
            save_table(out.rejects, args.root, "detect_rejects", shard, "rejects", source)
            for k, v in out.counts.items():
                totals[k] = totals.get(k, 0) + v
    finally:
        stage.teardown()
    print(json.dumps({"shards": shards, **totals}))
    return 0
