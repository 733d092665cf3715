"""``hopchain segment``, ``hopchain import-coco`` and ``hopchain export-coco``, on run roots (the layout of
the DAGs' runs: :func:`pipelines.runner.open_root`)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    from pipelines.cli import add_run_options

    p = sub.add_parser("segment", help="instance segmentation (SAM3 text prompts / SAM2 box prompts)")
    p.add_argument("--root", required=True, help="run root holding manifest/ and detections/")
    p.add_argument("--shard", type=int, default=None, help="process only this shard (default: all)")
    add_run_options(p)
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
    from pipelines.cli import root_shards, stage_runner
    from pipelines.config import ConfigError
    from pipelines.segment.stage import SegmentStage

    runner = stage_runner(args, args.root)
    shards = root_shards(runner, args.shard)
    params = runner.env.params
    if params.segment.backend == "annotations":
        raise ConfigError(f"segment.backend is 'annotations' in profile {params.profile!r}: `hopchain segment` "
                          "needs a model (select a profile with one, e.g. --profile gpu; annotated images go "
                          "through `hopchain import-coco`)")
    run = runner.run(SegmentStage(), shards)
    print(json.dumps({"shards": run.shards, **run.totals}))
    return 0


def _import_coco(args: argparse.Namespace) -> int:
    import pyarrow.compute as pc

    from pipelines.cli import InputError
    from pipelines.config import load_params
    from pipelines.runner import open_root
    from pipelines.segment.annotations import import_coco

    params = load_params(args.params, args.profile)
    env = open_root(args.out, params)
    if not Path(args.images).is_dir():
        raise InputError(args.images, "no such image folder", "--images is the folder the JSON's file_name "
                         "entries are relative to")
    try:
        res = import_coco(args.coco, args.images, shard_size=params.ingest.shard_size, limits=params.ingest)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise InputError(args.coco, f"not a COCO JSON file ({err})", "give the instances JSON") from None
    except AttributeError as err:  # a JSON that is not an object with images/annotations
        raise InputError(args.coco, f"not COCO instances ({err})", "give the instances JSON") from None
    shards = sorted(set(res.manifest.column("shard").to_pylist())) or [0]
    for shard in shards:
        manifest = res.manifest.filter(pc.equal(res.manifest["shard"], shard))
        instances = res.instances.filter(pc.is_in(res.instances["image_id"], value_set=manifest["image_id"]))
        env.write_table("manifest", shard, manifest)
        env.write_table("instances", shard, instances)
    # refusals are not tied to a shard of accepted images: they go with shard 0
    env.write_table("quarantine", 0, res.quarantine)
    env.store.put_table(env.keys.rejects("segment", 0), res.rejects, "rejects")
    print(json.dumps({"shards": shards, **res.counts}))
    return 0


def _export_coco(args: argparse.Namespace) -> int:
    from pipelines.config import load_params
    from pipelines.contracts.files import write_atomic
    from pipelines.runner import open_root
    from pipelines.segment.annotations import export_coco

    env = open_root(args.root, load_params(args.params, args.profile))
    if not env.shard_numbers("manifest"):
        raise FileNotFoundError(2, "no manifest shards (give a run root written by ingest or import-coco)",
                                env.where("manifest"))
    coco = export_coco(env.read_all("manifest"), env.read_all("instances"))
    write_atomic(args.coco, json.dumps(coco))
    print(json.dumps({"images": len(coco["images"]), "annotations": len(coco["annotations"])}))
    return 0
