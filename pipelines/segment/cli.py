"""``hopchain segment``, ``hopchain import-coco`` and ``hopchain export-coco``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("segment", help="instance segmentation (SAM3 text prompts / SAM2 box prompts)")
    p.add_argument("--root", required=True, help="run root holding manifest/ and detections/")
    p.add_argument("--shard", type=int, default=None, help="process only this shard (default: all)")
    p.set_defaults(handler=_segment)

    c = sub.add_parser("import-coco", help="COCO instance annotations + images → manifest + instances")
    c.add_argument("--coco", required=True, help="COCO instances JSON (polygon or RLE segmentations)")
    c.add_argument("--images", required=True, help="folder the JSON's file_name entries are relative to")
    c.add_argument("--out", required=True, help="run root to write manifest/, instances/, quarantine/ into")
    c.set_defaults(handler=_import_coco)

    e = sub.add_parser("export-coco", help="manifest + instances of a run root → COCO instances JSON")
    e.add_argument("--root", required=True)
    e.add_argument("--coco", required=True, help="output JSON path")
    e.set_defaults(handler=_export_coco)


def _segment(args: argparse.Namespace) -> int:
    from pipelines.config import load_params
    from pipelines.shards import run_on_root

    totals = run_on_root("segment", args.root, load_params(args.params, args.profile), args.shard)
    print(json.dumps(totals))
    return 0


def _import_coco(args: argparse.Namespace) -> int:
    import pyarrow.compute as pc

    from pipelines.cli import InputError
    from pipelines.config import load_params
    from pipelines.ingest.sources import save_table
    from pipelines.segment.annotations import import_coco

    params = load_params(args.params, args.profile)
    if not Path(args.images).is_dir():
        raise InputError(args.images, "no such image folder", "--images is the folder the JSON's file_name "
                         "entries are relative to")
    try:
        res = import_coco(args.coco, args.images, shard_size=params.ingest.shard_size,
                          max_pixels=params.ingest.max_pixels)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise InputError(args.coco, f"not a COCO JSON file ({err})", "give the instances JSON") from None
    except AttributeError as err:  # a JSON that is not an object with images/annotations
        raise InputError(args.coco, f"not COCO instances ({err})", "give the instances JSON") from None
    shards = sorted(set(res.manifest.column("shard").to_pylist())) or [0]
    for shard in shards:
        manifest = res.manifest.filter(pc.equal(res.manifest["shard"], shard))
        instances = res.instances.filter(pc.is_in(res.instances["image_id"], value_set=manifest["image_id"]))
        save_table(manifest, args.out, "manifest", shard, "manifest")
        save_table(instances, args.out, "instances", shard, "instances")
    # refusals are not tied to a shard of accepted images: they go with shard 0
    save_table(res.quarantine, args.out, "quarantine", 0, "quarantine")
    save_table(res.rejects, args.out, "segment_rejects", 0, "rejects")
    print(json.dumps({"shards": shards, **res.counts}))
    return 0


def _export_coco(args: argparse.Namespace) -> int:
    from pipelines.files import write_atomic
    from pipelines.ingest.sources import load_tables
    from pipelines.segment.annotations import export_coco

    if not args.root.startswith("s3://") and not any(Path(args.root, "manifest").glob("shard-*.parquet")):
        raise FileNotFoundError(2, "no manifest shards (give a run root written by ingest or import-coco)",
                                f"{args.root}/manifest")
    coco = export_coco(load_tables(args.root, "manifest", "manifest"), load_tables(args.root, "instances", "instances"))
    write_atomic(args.coco, json.dumps(coco))
    print(json.dumps({"images": len(coco["images"]), "annotations": len(coco["annotations"])}))
    return 0
