"""``hopchain detect``: the manifest shards of a run root → detections (+ rejects/detect, stats/detect)."""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    from pipelines.cli import add_run_options

    p = sub.add_parser("detect", help="category identification (Qwen3-VL in-process or an OpenAI-compatible endpoint)")
    p.add_argument("--root", required=True, help="run root holding manifest/ (folder or s3://bucket/prefix/<run id>)")
    p.add_argument("--shard", type=int, default=None, help="process only this shard (default: all)")
    add_run_options(p)
    p.set_defaults(handler=_detect)


def _detect(args: argparse.Namespace) -> int:
    from pipelines.cli import root_shards, stage_runner
    from pipelines.config import ConfigError
    from pipelines.detect.stage import DetectStage

    runner = stage_runner(args, args.root)
    shards = root_shards(runner, args.shard)
    params = runner.env.params
    if params.detect.backend != "vlm":
        raise ConfigError(f"detect.backend is {params.detect.backend!r} in profile {params.profile!r}: `hopchain "
                          "detect` needs a model (select a profile with one, e.g. --profile gpu; annotated images go "
                          "through `hopchain import-coco`)")
    run = runner.run(DetectStage(), shards)
    print(json.dumps({"shards": run.shards, **run.totals}))
    return 0
