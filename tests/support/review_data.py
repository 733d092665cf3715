"""Synthetic ledger data for the review workspace (unit tests, the browser test's extra rows, the bench).

Writes what the nightly and annotation DAGs write for one or many batches: the manifest and the
instances of each shard (real COCO RLE masks of two rectangles per image), the questions (hop
programs with values), the decision (consensus, counted annotations with lead times) and the
ledger records. Question ``i`` of a batch is accepted, rejected or pending in turn (``STATUSES``).
"""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pyarrow as pa

from pipelines.config import StoreConfig
from pipelines.contracts import SCHEMAS, parquet_bytes
from pipelines.contracts.rejects import (
    DECISION_DISAGREEMENT,
    DECISION_NOT_ANSWERABLE,
    DECISION_PENDING,
    DECISION_UNANIMOUS,
)
from pipelines.store.ledger import BatchRecord, ConsensusRecord, Ledger, batch_id_for

W, H = 160, 120
#: the two instances of every image: id -> (category, [x, y, w, h])
BOXES = {1: ("cup", [10, 20, 50, 40]), 2: ("cup", [90, 50, 60, 60]), 3: ("bottle", [70, 5, 15, 30])}
STATUSES = ("accepted", "rejected", "pending", "accepted")
ANNOTATORS = ("ann@a", "ann@b", "ann@c", "careless@d")


def image_png(seed: int = 0) -> bytes:
    from PIL import Image

    rng = np.random.default_rng(seed)
    pixels = np.full((H, W, 3), 200, np.uint8)
    pixels += rng.integers(0, 20, (H, W, 3), dtype=np.uint8)
    for _, (_, (x, y, w, h)) in BOXES.items():
        pixels[y:y + h, x:x + w] = (40, 90, 40)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "PNG")
    return out.getvalue()


def rle(box: list[int]) -> str:
    from pycocotools import mask as mask_utils

    m = np.zeros((H, W), np.uint8, order="F")
    x, y, w, h = box
    m[y:y + h, x:x + w] = 1
    return str(mask_utils.encode(np.asfortranarray(m))["counts"].decode())


def hops(question_no: int) -> str:
    """find cup -> extreme(cx, max) -> count; the picked instance of hop 1 is #2 (the right cup)."""
    program: list[dict[str, Any]] = [
        {"op": "find", "args": {"category": "cup"}, "inputs": [], "kind": "perception", "value": [1, 2]},
        {"op": "extreme", "args": {"key": "cx", "order": "max"}, "inputs": [0], "kind": "perception",
         "value": [2]},
        {"op": "nearest", "args": {"category": "bottle"}, "inputs": [1], "kind": "instance_chain", "value": [3]},
        {"op": "relate", "args": {"relation": "left_of", "category": "cup"}, "inputs": [2],
         "kind": "instance_chain", "value": [1]},
        {"op": "count", "args": {}, "inputs": [3], "kind": "perception", "value": 1},
    ]
    if question_no % 5 == 4:  # some 4-hop programs, for the hop-count filter
        program = [program[0], program[1], program[2],
                   {"op": "rank", "args": {"key": "area", "order": "max"}, "inputs": [2, 0],
                    "kind": "perception", "value": 1}]
    return json.dumps(program)


def _table(rows: list[dict[str, Any]], schema: pa.Schema) -> bytes:
    return parquet_bytes(pa.Table.from_pylist(rows, schema=schema))


def seed_batch(store: Any, layout: StoreConfig, run_id: str, shard: int, n_questions: int, at: datetime,
               images: int = 4, texts: dict[int, str] | None = None, decide: bool = True) -> BatchRecord:
    """One run shard pushed as one batch (and decided, unless ``decide`` is False)."""
    from pipelines.annotation.consensus import ANNOTATOR_STATS
    from pipelines.annotation.pull import DETAIL

    ledger = Ledger(store, layout)
    keys = ledger.run(run_id)
    manifest, instances = [], []
    for i in range(images):
        image_id = f"{run_id}-{shard}-img{i}".ljust(64, "0")
        key = f"{layout.inputs_prefix}/review/{image_id}.png"
        store.put_bytes(key, image_png(i), "image/png")
        manifest.append({"image_id": image_id, "uri": f"s3://{store.bucket}/{key}", "width": W, "height": H,
                         "format": "PNG", "shard": shard})
        for iid, (cat, box) in BOXES.items():
            instances.append({"image_id": image_id, "instance_id": iid, "category": cat,
                              "bbox": [float(v) for v in box], "area": box[2] * box[3], "score": 0.9,
                              "mask_rle": rle(box), "mask_height": H, "mask_width": W, "source": "synthetic"})
    store.put_bytes(keys.table("manifest", shard), _table(manifest, SCHEMAS["manifest"]))
    store.put_bytes(keys.table("instances", shard), _table(instances, SCHEMAS["instances"]))
    questions, consensus, detail = [], [], []
    for n in range(n_questions):
        qid = f"q-{run_id}-{shard}-{n:06d}"
        program = hops(n)
        text = (texts or {}).get(n, f"How many cups are left of the cup nearest the bottle? (#{n})")
        questions.append({"question_id": qid, "image_id": manifest[n % images]["image_id"], "question": text,
                          "answer": "1", "num_hops": len(json.loads(program)), "hops": program,
                          "generator": "template", "variant": "full", "pass_rate": None})
        status = STATUSES[n % len(STATUSES)]
        answers = ["1", "1", "1", "1"] if status == "accepted" else ["1", "1", "1", "2"]
        if status == "pending":
            answers = answers[:2]
        reason, code = {"accepted": ("unanimous", DECISION_UNANIMOUS),
                        "pending": ("2 of 4 annotators so far", DECISION_PENDING)}.get(
            status, ("disagreement (3 vs 1: 1, 2)", DECISION_DISAGREEMENT) if n % 3
            else ("not answerable (1 of 4)", DECISION_NOT_ANSWERABLE))
        consensus.append({"question_id": qid, "status": status, "answers": answers,
                          "agreed_answer": "1" if status == "accepted" else None,
                          "matches_generated": status == "accepted", "reason": reason, "reason_code": code})
        for k, (who, answer) in enumerate(zip(ANNOTATORS, answers, strict=False)):
            detail.append({"question_id": qid, "annotator": who, "answer": answer, "answerable": True,
                           "submitted_at": at + timedelta(seconds=n * 10 + k), "verdict": "answerable",
                           "lead_time_s": 5.0 + k, "annotation_id": n * 10 + k, "task_id": n})
    batch_id = batch_id_for(run_id, shard)
    qkey = keys.table("questions", shard)
    store.put_bytes(qkey, _table(questions, SCHEMAS["questions"]))
    batch = BatchRecord(batch_id=batch_id, run_id=run_id, shard=shard, questions=n_questions, project_id=1,
                        status="closed" if decide else "open", pushed_at=at, deadline=at + timedelta(days=1),
                        questions_key=qkey)
    ledger.put_batch(batch)
    if decide:
        tables = {"consensus": _table(consensus, SCHEMAS["consensus"]), "annotations_detail": _table(detail, DETAIL),
                  "annotator_stats": _table([], ANNOTATOR_STATS)}
        ckeys = {}
        for name, data in tables.items():
            ckeys[name] = ledger.consensus_table_key(batch_id, name)
            store.put_bytes(ckeys[name], data)
        counts = {s: sum(c["status"] == s for c in consensus) for s in ("accepted", "rejected", "pending")}
        ledger.put_consensus(ConsensusRecord(
            batch_id=batch_id, run_id=run_id, decided_by=f"annotations-{run_id}", annotations_rejected=0,
            agreement_rate=round(counts["accepted"] / max(1, n_questions), 4),
            decided_at=at + timedelta(hours=1), keys=ckeys, **counts))
    return batch


def seed_runs(store: Any, layout: StoreConfig, runs: int, shards: int, per_batch: int,
              start: datetime | None = None, images: int = 4) -> list[BatchRecord]:
    """``runs`` runs of ``shards`` decided batches of ``per_batch`` questions each, a day apart."""
    start = start or datetime(2026, 11, 1, tzinfo=UTC)
    return [seed_batch(store, layout, f"run{r:03d}", s, per_batch, start + timedelta(days=r, minutes=s),
                       images=images) for r in range(runs) for s in range(shards)]
