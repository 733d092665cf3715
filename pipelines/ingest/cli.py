"""``hopchain ingest``: raw images → the manifest and quarantine shards of a run root.

A run root is a local folder or ``s3://bucket/<runs>/<run id>``, laid out as the DAGs' runs are in the
bucket (:class:`pipelines.store.ledger.RunKeys`): ``manifest/shard-NNNNN.parquet``, ``quarantine/…``,
``stats/ingest/…``, ``ingest/plan.json``; the later stages add their tables, ``rejects/<stage>/…`` and
``stats/<stage>/…``.
"""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    from pipelines.cli import add_run_options

    p = sub.add_parser("ingest", help="list, decode-check and shard raw images into a manifest + quarantine")
    p.add_argument("--source", required=True, help="image folder or s3://bucket/prefix")
    p.add_argument("--out", required=True, help="run root (folder or s3://bucket/prefix/<run id>)")
    p.add_argument("--shard", type=int, default=None, help="process only this shard (default: all)")
    p.add_argument("--plan", action="store_true", help="only print the shard numbers as JSON")
    add_run_options(p)
    p.set_defaults(handler=_ingest)


def _ingest(args: argparse.Namespace) -> int:
    from pipelines.cli import stage_runner
    from pipelines.ingest.stage import IngestStage

    runner = stage_runner(args, args.out)
    stage = IngestStage(args.source)
    if args.plan:
        print(json.dumps(runner.plan(stage)))
        return 0
    run = runner.run(stage, None if args.shard is None else [args.shard])
    print(json.dumps({"shards": run.shards, **run.totals}))
    return 0
