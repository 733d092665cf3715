"""Release assembly, pure: accepted questions + instances + image bytes → release records.

Conventions, stated once:

* The **data folder** (``data/`` in the registry working copy, DVC-tracked) is append-only: each
  publish adds one **part** ``part-NNNNN`` (1, 2, ...) and never changes the files of earlier
  parts. A part holds the released rows ``data/<split>/part-NNNNN-MMMMM.parquet`` (Hugging Face
  layout, image bytes inline: the only copy of the image bytes) and its contract tables
  ``data/meta/part-NNNNN/{consensus,questions,instances,manifest,rejects}.parquet`` plus
  ``provenance.json`` (no image bytes). A question withdrawn after release is listed in
  ``data/removals.parquet``, and the shard holding it is replaced by ``...-rNNNNN.parquet`` (the
  part that withdrew it) without that row: only the shards holding withdrawn questions change.
  ``hopchain release --compact`` rewrites everything into one part, on purpose.
* A question is released when its consensus ``status`` is ``accepted``; the released ``answer`` is
  the human ``agreed_answer`` (canonical decimal string), never the generator's answer.
* The split is by **image**: ``eval`` iff ``sha256(salt + image_id)`` read as a fraction of 2**256
  is below ``eval_fraction``. Every question of an image lands in the same split, so no image is in
  both; the assignment of an image never depends on the other images in the release.
* Every accepted question that cannot be released is returned as a reject row
  (``contracts.REJECTS``: stage ``release``) with its reason.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.contracts import canonical_number, read_parquet
from pipelines.contracts.rejects import Reject

Split = Literal["train", "eval"]
SPLITS: tuple[Split, ...] = ("train", "eval")

INPUT_TABLES = ("consensus", "questions", "instances", "manifest")
META_DIR = "meta"
REJECTS_FILE = "rejects.parquet"
PROVENANCE_FILE = "provenance.json"
REMOVALS_FILE = "removals.parquet"

#: Questions withdrawn after release: readers of raw files drop these ids; the shards of the
#: current tag no longer hold them.
REMOVALS = pa.schema(
    [
        ("question_id", pa.string()),
        ("image_id", pa.string()),
        ("code", pa.string()),  # release.withdrawn_decision | release.withdrawn_image
        ("detail", pa.string()),
        ("part", pa.int32()),  # the part (publish) that withdrew it
    ]
)

_STR = pa.string()
_PART = pa.struct([("type", _STR), ("text", _STR)])

#: One released question per row, in one layout that ``datasets``, TRL and verl all read as it is:
#: ``images`` (a list of one Hugging Face ``Image``: TRL's and verl's image column), ``prompt`` (TRL's
#: conversational prompt: the image, then the question with the answer format), ``verl_prompt`` (the
#: same turn as verl writes it: ``<image>`` placeholder in a text content; ``data.prompt_key``),
#: ``data_source`` / ``ability`` / ``reward_model`` / ``extra_info`` (verl's reward fields), and the
#: answer (``answer``: canonical decimal string, the human consensus) that
#: :mod:`pipelines.reward` scores completions against.
SHARD_SCHEMA = pa.schema(
    [
        ("question_id", _STR),
        ("image_id", _STR),
        ("images", pa.list_(pa.struct([("bytes", pa.binary()), ("path", _STR)]))),
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("question", _STR),
        ("answer", _STR),
        ("answer_value", pa.float64()),
        ("num_hops", pa.int32()),
        ("hops", _STR),
        ("variant", _STR),
        ("generator", _STR),
        ("prompt", pa.list_(pa.struct([("role", _STR), ("content", pa.list_(_PART))]))),
        ("verl_prompt", pa.list_(pa.struct([("role", _STR), ("content", _STR)]))),
        ("data_source", _STR),
        ("ability", _STR),
        ("reward_model", pa.struct([("style", _STR), ("ground_truth", _STR)])),
        ("extra_info", pa.struct([("question_id", _STR), ("image_id", _STR), ("split", _STR),
                                  ("num_hops", pa.int32()), ("reward_version", _STR)])),
    ]
)
DATA_SOURCE = "hopchain"
ABILITY = "visual-multi-hop-reasoning"


def _value(dtype: str) -> dict[str, str]:
    return {"dtype": dtype, "_type": "Value"}


def _list(feature: Any) -> list[Any]:
    """A variable-length list of ``feature``, in the list shorthand ``[feature]``: the one spelling that
    ``datasets`` 3.x and 4.x+ both read as a list of that feature (``{"_type": "List"}`` exists only
    from 4.0 on; ``Sequence`` of a dict means a dict of lists in 3.x, not the list of structs stored)."""
    return [feature]


#: ``datasets`` reads these features from the Parquet schema metadata key ``huggingface``, so
#: ``load_dataset`` decodes ``images`` to PIL images (``datasets`` >= 3.0; checked with 3.6 and 5.x in
#: ``tests/integration/test_trainer_datasets.py``).
HF_FEATURES: dict[str, Any] = {
    "question_id": _value("string"),
    "image_id": _value("string"),
    "images": _list({"_type": "Image"}),
    "width": _value("int32"),
    "height": _value("int32"),
    "question": _value("string"),
    "answer": _value("string"),
    "answer_value": _value("float64"),
    "num_hops": _value("int32"),
    "hops": _value("string"),
    "variant": _value("string"),
    "generator": _value("string"),
    "prompt": _list({"role": _value("string"), "content": _list({"type": _value("string"),
                                                                 "text": _value("string")})}),
    "verl_prompt": _list({"role": _value("string"), "content": _value("string")}),
    "data_source": _value("string"),
    "ability": _value("string"),
    "reward_model": {"style": _value("string"), "ground_truth": _value("string")},
    "extra_info": {"question_id": _value("string"), "image_id": _value("string"), "split": _value("string"),
                   "num_hops": _value("int32"), "reward_version": _value("string")},
}


def shard_schema() -> pa.Schema:
    """:data:`SHARD_SCHEMA` with the ``huggingface`` features metadata attached."""
    meta = {b"huggingface": json.dumps({"info": {"features": HF_FEATURES}}, sort_keys=True).encode()}
    return SHARD_SCHEMA.with_metadata(meta)


def split_of(image_id: str, salt: str, eval_fraction: float) -> Split:
    """The split of an image: stable, independent of every other image (see module doc)."""
    digest = hashlib.sha256((salt + image_id).encode()).digest()
    return "eval" if int.from_bytes(digest, "big") / 2.0**256 < eval_fraction else "train"


@dataclass(frozen=True)
class ReleaseRow:
    """A released question without its image bytes (those come from the packs)."""

    question_id: str
    image_id: str
    split: Split
    width: int
    height: int
    format: str
    question: str
    answer: str  # canonical decimal string: the human consensus answer
    answer_value: float
    num_hops: int
    hops: str  # JSON list of hop objects
    variant: str
    generator: str

    @property
    def image_name(self) -> str:
        return image_file_name(self.image_id, self.format)


def image_file_name(image_id: str, fmt: str) -> str:
    ext = {"jpeg": "jpg"}.get((fmt or "").lower(), (fmt or "bin").lower())
    return f"{image_id}.{ext}"


def reject(item_id: str, code: str, detail: str, raw: Any = None) -> Reject:
    """A reject of the release stage (``code`` is ``release.*``)."""
    return Reject(stage="release", item_id=item_id, code=code, detail=detail, raw=raw)


def select_rows(
    consensus: pa.Table,
    questions: pa.Table,
    manifest: pa.Table,
    available_images: set[str],
    *,
    salt: str,
    eval_fraction: float,
) -> tuple[list[ReleaseRow], list[Reject]]:
    """Accepted questions that can be released, sorted by (split, image_id, question_id).

    Returns ``(rows, rejects)``; every accepted question is in exactly one of the two. Reject codes:
    ``release.duplicate_consensus``, ``release.question_missing``, ``release.answer_not_numeric``,
    ``release.image_not_in_manifest``, ``release.image_unavailable``.
    """
    qs: dict[str, dict[str, Any]] = {}
    for q in questions.to_pylist():
        qs.setdefault(q["question_id"], q)  # question ids are deterministic: a repeat is the same
    images = {m["image_id"]: m for m in manifest.to_pylist()}
    rows: list[ReleaseRow] = []
    rejects: list[Reject] = []
    seen: set[str] = set()
    for c in consensus.to_pylist():
        if c["status"] != "accepted":
            continue
        qid = c["question_id"]
        if qid in seen:
            rejects.append(reject(qid, "release.duplicate_consensus", "duplicate accepted consensus row"))
            continue
        seen.add(qid)
        q = qs.get(qid)
        if q is None:
            rejects.append(reject(qid, "release.question_missing",
                                  "accepted question missing from the questions table"))
            continue
        try:
            answer = canonical_number(c["agreed_answer"])
        except ValueError:
            rejects.append(reject(qid, "release.answer_not_numeric", "agreed_answer is not a number",
                                  c["agreed_answer"]))
            continue
        m = images.get(q["image_id"])
        if m is None:
            rejects.append(reject(qid, "release.image_not_in_manifest", "image missing from the manifest",
                                  q["image_id"]))
            continue
        if q["image_id"] not in available_images:
            rejects.append(reject(qid, "release.image_unavailable", "image bytes unavailable in the snapshot",
                                  q["image_id"]))
            continue
        rows.append(
            ReleaseRow(
                question_id=qid, image_id=q["image_id"],
                split=split_of(q["image_id"], salt, eval_fraction),
                width=int(m["width"]), height=int(m["height"]), format=str(m["format"] or ""),
                question=q["question"], answer=answer, answer_value=float(answer),
                num_hops=int(q["num_hops"]), hops=q["hops"], variant=q["variant"] or "full",
                generator=q["generator"] or "",
            )
        )
    rows.sort(key=lambda r: (SPLITS.index(r.split), r.image_id, r.question_id))
    return rows, rejects


def plan_shards(n_rows: int, rows_per_shard: int, max_shards: int) -> list[tuple[int, int]]:
    """``[start, end)`` row ranges: ``rows_per_shard`` each, grown so there are ≤ ``max_shards``."""
    if n_rows == 0:
        return []
    per = max(rows_per_shard, math.ceil(n_rows / max_shards))
    return [(s, min(s + per, n_rows)) for s in range(0, n_rows, per)]


def part_name(part: int) -> str:
    return f"part-{part:05d}"


def shard_name(split: Split, part: int, index: int, revision: int | None = None) -> str:
    """``data/<split>/part-NNNNN-MMMMM[-rNNNNN].parquet``: no shard total in the name, so adding a
    part never renames another file (``datasets`` globs ``data/<split>/*.parquet``)."""
    rev = f"-r{revision:05d}" if revision else ""
    return f"{split}/{part_name(part)}-{index:05d}{rev}.parquet"


def part_of_shard(name: str) -> int:
    """The part a shard file belongs to (from its name)."""
    return int(Path(name).name.split("-")[1])


def shard_table(rows: Sequence[ReleaseRow], images: Mapping[str, bytes]) -> pa.Table:
    """The Parquet table of one shard (image bytes included; layout :data:`SHARD_SCHEMA`)."""
    from pipelines.reward import ANSWER_FORMAT, REWARD_VERSION

    records = []
    for r in rows:
        text = f"{r.question}\n{ANSWER_FORMAT}"
        records.append({
            "question_id": r.question_id, "image_id": r.image_id,
            "images": [{"bytes": images[r.image_id], "path": r.image_name}],
            "width": r.width, "height": r.height, "question": r.question, "answer": r.answer,
            "answer_value": r.answer_value, "num_hops": r.num_hops, "hops": r.hops, "variant": r.variant,
            "generator": r.generator,
            "prompt": [{"role": "user", "content": [{"type": "image", "text": None}, {"type": "text", "text": text}]}],
            "verl_prompt": [{"role": "user", "content": f"<image>{text}"}],
            "data_source": DATA_SOURCE, "ability": ABILITY,
            "reward_model": {"style": "rule", "ground_truth": r.answer},
            "extra_info": {"question_id": r.question_id, "image_id": r.image_id, "split": r.split,
                           "num_hops": r.num_hops, "reward_version": REWARD_VERSION},
        })
    return pa.Table.from_pylist(records, schema=shard_schema())


def data_shards(data: Path) -> dict[Split, list[str]]:
    """The current shard files per split, relative to ``data`` (sorted: part, then index)."""
    return {split: sorted(p.relative_to(data).as_posix() for p in (Path(data) / split).glob("*.parquet"))
            for split in SPLITS}


def part_numbers(data: Path) -> list[int]:
    return sorted(int(p.name.split("-")[1]) for p in (Path(data) / META_DIR).glob("part-*") if p.is_dir())


def category_ids(instances: Iterable[dict[str, Any]]) -> dict[str, int]:
    """COCO category ids: 1.. in sorted category-name order."""
    return {name: i + 1 for i, name in enumerate(sorted({r["category"] for r in instances}))}


def coco_instances(
    rows: Sequence[ReleaseRow], instances: Sequence[dict[str, Any]], categories: dict[str, int]
) -> dict[str, Any]:
    """A COCO instances file for the images of ``rows`` (and only those).

    Image ids are 1.. in ``image_id`` order; ``segmentation`` is the compressed RLE of the
    instances contract (``{"size": [h, w], "counts": ...}``), ``bbox`` is ``[x, y, w, h]`` pixels.
    """
    images: dict[str, ReleaseRow] = {}
    for r in rows:
        images.setdefault(r.image_id, r)
    order = sorted(images)
    coco_id = {image_id: i + 1 for i, image_id in enumerate(order)}
    by_image: dict[str, list[dict[str, Any]]] = {}
    for inst in instances:
        if inst["image_id"] in coco_id:
            by_image.setdefault(inst["image_id"], []).append(inst)
    annotations: list[dict[str, Any]] = []
    for image_id in order:
        for inst in sorted(by_image.get(image_id, []), key=lambda r: r["instance_id"]):
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": coco_id[image_id],
                    "category_id": categories[inst["category"]],
                    "bbox": [float(v) for v in inst["bbox"]],
                    "area": int(inst["area"]),
                    "iscrowd": 0,
                    "segmentation": {"size": [int(inst["mask_height"]), int(inst["mask_width"])],
                                     "counts": inst["mask_rle"]},
                    "score": float(inst["score"]),
                    "hopchain_instance_id": int(inst["instance_id"]),
                    "source": inst["source"],
                }
            )
    return {
        "info": {"description": "HopChain release instances"},
        "images": [
            {"id": coco_id[i], "file_name": images[i].image_name, "width": images[i].width,
             "height": images[i].height, "hopchain_image_id": i}
            for i in order
        ],
        "categories": [{"id": cid, "name": name, "supercategory": ""} for name, cid in categories.items()],
        "annotations": annotations,
    }


def read_meta_table(data: Path, name: str, latest_by: Sequence[str] | None = None) -> pa.Table:
    """A contract table over every part of ``data/meta`` (in part order), conformed to its schema.

    With ``latest_by`` (key columns), a key present in several parts keeps its row from the latest
    part: a question decided again later (re-annotation) counts once, with its newest decision.
    """
    files = sorted(Path(data).glob(f"{META_DIR}/part-*/{name}.parquet"))
    tables = [read_parquet(f, name) for f in files]
    if not tables:
        from pipelines.contracts import empty_table

        return empty_table(name)
    table = pa.concat_tables(tables)
    if latest_by and table.num_rows:
        last: dict[tuple[Any, ...], int] = {}
        cols = [table.column(k).to_pylist() for k in latest_by]
        for i, key in enumerate(zip(*cols, strict=True)):
            last[key] = i
        table = table.take(pa.array(sorted(last.values()), type=pa.int64()))
    return table


def read_removals(data: Path) -> pa.Table:
    path = Path(data) / REMOVALS_FILE
    return pq.read_table(path, schema=REMOVALS) if path.exists() else REMOVALS.empty_table()
