"""``hopchain detect``: manifest shards of a run root → detections (+ detect_rejects)."""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("detect", help="category identification (Qwen3-VL in-process or an OpenAI-compatible endpoint)")
    p.add_argument("--root", required=True, help="run root holding manifest/ (folder or s3://bucket/prefix)")
    p.add_argument("--shard", type=int, default=None, help="process only this shard (default: all)")
    p.set_defaults(handler=_detect)


def _detect(args: argparse.Namespace) -> int:
    from pipelines.config import load_params
    from pipelines.shards import run_on_root

    totals = run_on_root("detect", args.root, load_params(args.params, args.profile), args.shard)
    print(json.dumps(totals))
    return 0
