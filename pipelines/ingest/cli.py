"""``hopchain ingest``.

Layout of a run root (a local folder or ``s3://bucket/prefix``, e.g. ``s3://hopchain/runs/<run_id>``):
``<root>/<table>/shard-NNNNN.parquet`` with ``<table>`` one of manifest, quarantine, detections,
detect_rejects, instances, segment_rejects.
"""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ingest", help="list, decode-check and shard raw images into a manifest + quarantine")
    p.add_argument("--source", required=True, help="image folder or s3://bucket/prefix")
    p.add_argument("--out", required=True, help="run root (folder or s3://bucket/prefix)")
    p.add_argument("--shard", type=int, default=None, help="process only this shard (default: all)")
    p.add_argument("--plan", action="store_true", help="only print the shard numbers as JSON")
    p.set_defaults(handler=_ingest)


def _ingest(args: argparse.Namespace) -> int:
    from pipelines.config import load_params
    from pipelines.ingest.sources import ImageSource, save_table
    from pipelines.ingest.stage import collapse_duplicates, ingest_shard, plan_shards
    from pipelines.rejects import count_codes

    cfg = load_params(args.params, args.profile).ingest
    source = ImageSource()
    shards = plan_shards(cfg, args.source, source)
    if args.plan:
        print(json.dumps(shards))
        return 0
    todo = shards if args.shard is None else [args.shard]
    from pipelines.progress import ItemProgress

    results = {}
    with ItemProgress("ingest", len(todo), unit="shards") as progress:
        for s in todo:
            results[s] = ingest_shard(cfg, args.source, s, source)
            progress.advance()  # the stage logs its own line per shard
    if args.shard is None and len(results) > 1:
        # a whole run also collapses duplicates across shards (the lowest shard keeps the image)
        import pyarrow as pa
        import pyarrow.compute as pc

        manifest, dupes = collapse_duplicates([r.manifest for r in results.values()])
        for s, r in results.items():
            held = dupes.filter(pc.is_in(dupes["uri"], value_set=r.manifest["uri"]))
            r.manifest = manifest.filter(pc.equal(manifest["shard"], s))
            r.quarantine = pa.concat_tables([r.quarantine, held])
    totals: dict[str, int] = {"images": 0, "quarantined": 0}
    for s, r in results.items():
        save_table(r.manifest, args.out, "manifest", s, "manifest", source)
        save_table(r.quarantine, args.out, "quarantine", s, "quarantine", source)
        totals["images"] += r.manifest.num_rows
        totals["quarantined"] += r.quarantine.num_rows
        for code, n in count_codes(r.quarantine).items():
            totals[code] = totals.get(code, 0) + n
    print(json.dumps({"shards": sorted(results), **totals}))
    return 0

