"""The ``build`` stage of ``dvc.yaml``: the data folder → the derived release files.

``python -m pipelines.release.build --params params.yaml --data data --out release``

The released rows themselves are the DVC-tracked ``data/<split>/part-*.parquet`` shards (appended
by each publish, :mod:`pipelines.release.snapshot`). This stage derives, per part and split, files
that depend only on that part — so they stay byte-identical when later parts are added:

* ``coco/<split>/part-NNNNN.json`` — COCO instances of the part's images in that split (category
  ids 1.. in sorted name order within the file);

and two small whole-release files: ``index.json`` (per split: shards, row and image counts) and
``rejects.parquet`` (every accepted question that could not be released, with its code). Byte-for-
byte deterministic for the same data folder and parameters, so ``dvc repro`` reproduces the hashes.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import yaml

from pipelines.config import ReleaseConfig, params_from_dict
from pipelines.contracts import read_parquet, write_parquet_atomic
from pipelines.contracts.files import replacing_folder, write_atomic
from pipelines.release.assemble import (
    META_DIR,
    SPLITS,
    ReleaseRow,
    category_ids,
    coco_instances,
    data_shards,
    part_name,
    part_numbers,
    part_of_shard,
    read_meta_table,
    read_removals,
)


def read_release_config(params_file: str | Path) -> ReleaseConfig:
    """The ``release`` section of a params file (its base section: profiles are not applied,
    because DVC tracks the base keys)."""
    raw = yaml.safe_load(Path(params_file).read_text(encoding="utf-8")) or {}
    raw.pop("profiles", None)
    return params_from_dict(raw, None, source=str(params_file)).release


def build_release(data: Path, out: Path, cfg: ReleaseConfig) -> dict[str, Any]:
    """Derive the release folder ``out`` from the data folder ``data``; returns ``index.json``."""
    data, out = Path(data), Path(out)
    instances_by_part: dict[int, list[dict[str, Any]]] = {}
    for f in sorted(data.glob(f"{META_DIR}/part-*/instances.parquet")):
        instances_by_part[int(f.parent.name.split("-")[1])] = read_parquet(f, "instances").to_pylist()
    manifest = read_meta_table(data, "manifest", latest_by=["image_id"])
    formats = dict(zip(manifest["image_id"].to_pylist(), manifest["format"].to_pylist(), strict=True))
    shards = data_shards(data)
    cols = ["question_id", "image_id", "width", "height", "question", "answer", "answer_value", "num_hops",
            "hops", "variant", "generator"]
    with replacing_folder(out) as tmp:
        index: dict[str, Any] = {"name": cfg.name, "splits": {}, "parts": part_numbers(data),
                                 "removed": read_removals(data).num_rows}
        categories: set[str] = set()
        for split in SPLITS:
            by_part: dict[int, list[tuple[str, int, ReleaseRow]]] = {}
            for name in shards[split]:
                table = pq.read_table(data / name, columns=cols)
                for j, r in enumerate(table.to_pylist()):
                    row = ReleaseRow(split=split, format=formats.get(r["image_id"]) or "", **r)
                    by_part.setdefault(part_of_shard(name), []).append((name, j, row))
            n_images: set[str] = set()
            n_instances = 0
            for part, entries in sorted(by_part.items()):
                rows = [row for _, _, row in entries]
                images = {r.image_id for r in rows}
                insts = [i for i in instances_by_part.get(part, []) if i["image_id"] in images]
                cats = category_ids(insts)
                categories |= set(cats)
                coco = coco_instances(rows, insts, cats)
                write_atomic(tmp / f"coco/{split}/{part_name(part)}.json", json.dumps(coco, sort_keys=True))
                n_images |= images
                n_instances += len(insts)
            index["splits"][split] = {
                "shards": [f"data/{name}" for name in shards[split]],
                "questions": sum(len(v) for v in by_part.values()),
                "images": len(n_images),
                "instances": n_instances,
            }
        index["categories"] = len(categories)
        rejects = read_meta_table(data, "rejects")
        index["rejected"] = rejects.num_rows
        write_parquet_atomic(rejects, tmp / "rejects.parquet")
        write_atomic(tmp / "index.json", json.dumps(index, indent=2, sort_keys=True) + "\n")
    return index


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines.release.build", description=__doc__.split("\n")[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--data", default="data")
    parser.add_argument("--out", default="release")
    args = parser.parse_args(argv)
    index = build_release(Path(args.data), Path(args.out), read_release_config(args.params))
    counts = {s: v["questions"] for s, v in index["splits"].items()}
    print(f"release built in {args.out}: {counts} questions, {index['rejected']} rejected")
    return 0


if __name__ == "__main__":
    sys.exit(main())
