"""The ``build`` stage of ``dvc.yaml``: inputs snapshot → packed release folder.

``python -m pipelines.release.build --params params.yaml --inputs inputs --out release``

Writes (all paths relative to ``--out``; byte-for-byte deterministic for the same inputs and
parameters, so ``dvc repro`` reproduces the same hashes):

* ``data/{train,eval}-NNNNN-of-NNNNN.parquet`` — one row per released question with the image
  bytes (Hugging Face ``Image`` layout), question, human answer, hop program and variant;
* ``coco/instances_{train,eval}.json`` — COCO instances of the split's images only;
* ``chat/{train,eval}.jsonl`` — chat-format records for RL trainers;
* ``rejects.parquet`` — accepted questions that could not be released, with reasons;
* ``index.json`` — per split: shards, row and image counts.

The folder is assembled beside ``--out`` and renamed into place, so a failed build never leaves
a half-written release.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from pipelines.config import ReleaseConfig, params_from_dict
from pipelines.contracts import to_table, write_parquet_atomic
from pipelines.files import replacing_folder, write_atomic
from pipelines.release.assemble import (
    IMAGES_DIR,
    SPLITS,
    ImagePacks,
    ReleaseRow,
    category_ids,
    chat_record,
    coco_instances,
    plan_shards,
    read_input_table,
    select_rows,
    shard_name,
    shard_table,
)


def read_release_config(params_file: str | Path) -> ReleaseConfig:
    """The ``release`` section of a params file (its base section: profiles are not applied,
    because DVC tracks the base keys)."""
    raw = yaml.safe_load(Path(params_file).read_text(encoding="utf-8")) or {}
    raw.pop("profiles", None)
    return params_from_dict(raw, None, source=str(params_file)).release


def build_release(inputs: Path, out: Path, cfg: ReleaseConfig) -> dict[str, Any]:
    """Assemble the release folder ``out`` from the snapshot ``inputs``; returns ``index.json``."""
    inputs, out = Path(inputs), Path(out)
    consensus = read_input_table(inputs, "consensus")
    questions = read_input_table(inputs, "questions")
    manifest = read_input_table(inputs, "manifest")
    packs = ImagePacks(inputs / IMAGES_DIR)
    rows, rejects = select_rows(consensus, questions, manifest, packs.ids(),
                                salt=cfg.split_salt, eval_fraction=cfg.eval_fraction)
    released_images = {r.image_id for r in rows}
    instances = [r for r in read_input_table(inputs, "instances").to_pylist()
                 if r["image_id"] in released_images]
    categories = category_ids(instances)

    with replacing_folder(out) as tmp:
        index: dict[str, Any] = {"name": cfg.name, "splits": {}, "categories": len(categories),
                                 "rejected": len(rejects)}
        for split in SPLITS:
            split_rows: list[ReleaseRow] = [r for r in rows if r.split == split]
            plan = plan_shards(len(split_rows), cfg.rows_per_shard, cfg.max_shards)
            shards: list[str] = []
            chat_lines: list[str] = []
            for i, (start, end) in enumerate(plan):
                name = shard_name(split, i, len(plan))
                chunk = split_rows[start:end]
                write_parquet_atomic(shard_table(chunk, packs), tmp / name)
                shards.append(name)
                chat_lines.extend(json.dumps(chat_record(r, name, j), sort_keys=True)
                                  for j, r in enumerate(chunk))
            if split_rows:
                write_atomic(tmp / f"chat/{split}.jsonl", "\n".join(chat_lines) + "\n")
                coco = coco_instances(split_rows, instances, categories)
                write_atomic(tmp / f"coco/instances_{split}.json", json.dumps(coco, sort_keys=True))
            split_images = {r.image_id for r in split_rows}
            index["splits"][split] = {
                "shards": shards,
                "questions": len(split_rows),
                "images": len(split_images),
                "instances": sum(1 for r in instances if r["image_id"] in split_images),
            }
        write_parquet_atomic(to_table(rejects, "rejects"), tmp / "rejects.parquet")
        write_atomic(tmp / "index.json", json.dumps(index, indent=2, sort_keys=True) + "\n")
    return index


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines.release.build", description=__doc__.split("\n")[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--inputs", default="inputs")
    parser.add_argument("--out", default="release")
    args = parser.parse_args(argv)
    index = build_release(Path(args.inputs), Path(args.out), read_release_config(args.params))
    counts = {s: v["questions"] for s, v in index["splits"].items()}
    print(f"release built in {args.out}: {counts} questions, {index['rejected']} rejected")
    return 0


if __name__ == "__main__":
    sys.exit(main())
