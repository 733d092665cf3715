"""``hopchain detect``: manifest shards of a run root → detections (+ detect_rejects)."""

from __future__ import annotations

import argparse
import json


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


def read_shard(root: str, table: str, shard: int, contract: str):  # type: ignore[no-untyped-def]
    from pipelines.contracts import read_parquet
    from pipelines.ingest.sources import ImageSource, parse_s3_uri, shard_path

    path = shard_path(root, table, shard)
    if path.startswith("s3://"):
        bucket, key = parse_s3_uri(path)
        return ImageSource().store(bucket).get_table(key, contract)
    return read_parquet(path, contract)


def _detect(args: argparse.Namespace) -> int:
    import pyarrow as pa

    from pipelines.config import load_params
    from pipelines.contracts import to_table
    from pipelines.detect.stage import DetectStage
    from pipelines.ingest.sources import ImageSource, load_images, save_table

    params = load_params(args.params, args.profile)
    shards = shard_numbers(args.root, "manifest") if args.shard is None else [args.shard]
    source = ImageSource()
    stage = DetectStage(params.detect)
    stage.setup()
    totals: dict[str, int] = {}
    try:
        for shard in shards:
            manifest = read_shard(args.root, "manifest", shard, "manifest")
            items, load_rejects = load_images(manifest, params.ingest.max_pixels, source, stage="detect")
            batch = params.detect.qwen3vl.batch_size if params.detect.backend == "qwen3vl" else len(items) or 1
            dets, rejects = [], [to_table(load_rejects, "rejects")]
            for start in range(0, len(items), batch):
                res = stage.process(items[start : start + batch])
                dets.append(res.detections)
                rejects.append(res.rejects)
                for k, v in res.counts.items():
                    totals[k] = totals.get(k, 0) + v
            save_table(pa.concat_tables(dets) if dets else to_table([], "detections"), args.root, "detections",
                       shard, "detections", source)
            save_table(pa.concat_tables(rejects), args.root, "detect_rejects", shard, "rejects", source)
    finally:
        stage.teardown()
    print(json.dumps({"shards": shards, **totals}))
    return 0
