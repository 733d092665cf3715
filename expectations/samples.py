"""Small, valid, realistic tables of every contract — for tests, the bench and demos.

Images are fabricated (random sha256 ids, sizes 160x120 .. 640x480); instances are axis-aligned
rectangles whose masks are real pycocotools COCO RLE strings with exact areas; questions carry
connected hop programs (``find`` → ``extreme``/``relate``… → ``count``) naming instances of their
image; four annotators agree on each accepted question. Every table validates cleanly with the
default ``params.yaml`` (distribution checks included when there are enough rows).
"""

from __future__ import annotations

import hashlib
import json
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pyarrow as pa

from pipelines.contracts import canonical_number, to_table
from pipelines.contracts.rejects import DECISION_UNANIMOUS

CATEGORIES = ("cat", "dog", "cup", "traffic light", "person")


def rectangle_rle(height: int, width: int, x: int, y: int, w: int, h: int) -> tuple[str, int]:
    """COCO compressed RLE ``counts`` (str) and area of a filled rectangle mask."""
    from pycocotools import mask as mask_utils

    m = np.zeros((height, width), dtype=np.uint8, order="F")
    m[y : y + h, x : x + w] = 1
    rle = mask_utils.encode(m)
    return rle["counts"].decode("ascii"), int(m.sum())


def _image_id(i: int, seed: int) -> str:
    return hashlib.sha256(f"image-{seed}-{i}".encode()).hexdigest()


def _program(rng: random.Random, ids: list[int], by_cat: dict[str, list[int]], hops: int) -> list[dict[str, Any]]:
    """A connected chain: find → extreme/relate … relate → count; values are real instance ids."""
    cat = rng.choice(sorted(by_cat))
    program: list[dict[str, Any]] = [
        {"op": "find", "args": {"category": cat}, "inputs": [], "kind": "perception", "value": sorted(by_cat[cat])}
    ]
    for k in range(1, hops - 1):
        if k % 2 and k != hops - 2:
            program.append({"op": "extreme", "args": {"key": "area", "order": "max"}, "inputs": [k - 1],
                            "kind": "perception", "value": [rng.choice(ids)]})
        else:
            other = rng.choice(sorted(by_cat))
            program.append({"op": "relate", "args": {"relation": "left_of", "category": other}, "inputs": [k - 1],
                            "kind": "instance_chain", "value": sorted(rng.sample(ids, rng.randint(1, len(ids))))})
    answer = len(program[-1]["value"])
    program.append({"op": "count", "args": {}, "inputs": [hops - 2], "kind": "perception", "value": answer})
    return program


def sample_tables(n_images: int = 4, questions_per_image: int = 3, seed: int = 0) -> dict[str, pa.Table]:
    """Valid ``manifest``, ``quarantine``, ``instances``, ``questions``, ``annotations``,
    ``consensus`` and ``release`` tables (release = questions + ``split``, split by image)."""
    rng = random.Random(seed)
    manifest: list[dict[str, Any]] = []
    instances: list[dict[str, Any]] = []
    questions: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    consensus: list[dict[str, Any]] = []
    release: list[dict[str, Any]] = []
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    for i in range(n_images):
        image_id = _image_id(i, seed)
        width, height = rng.choice([(160, 120), (320, 240), (640, 480)])
        manifest.append({"image_id": image_id, "uri": f"s3://hopchain/inputs/img-{i:04d}.jpg", "width": width,
                         "height": height, "format": "JPEG", "shard": i // 2})
        by_cat: dict[str, list[int]] = {}
        for inst in range(rng.randint(4, 7)):
            w, h = rng.randint(8, width // 3), rng.randint(8, height // 3)
            x, y = rng.randint(0, width - w), rng.randint(0, height - h)
            counts, area = rectangle_rle(height, width, x, y, w, h)
            cat = CATEGORIES[inst % len(CATEGORIES)]
            by_cat.setdefault(cat, []).append(inst)
            instances.append({"image_id": image_id, "instance_id": inst, "category": cat,
                              "bbox": [float(x), float(y), float(w), float(h)], "area": area,
                              "score": round(rng.uniform(0.5, 1.0), 3), "mask_rle": counts,
                              "mask_height": height, "mask_width": width, "source": "annotations:coco"})
        ids = sorted(v for vs in by_cat.values() for v in vs)
        split = "eval" if i % 4 == 3 else "train"
        for q in range(questions_per_image):
            program = _program(rng, ids, by_cat, 3 + (i * questions_per_image + q) % 4)
            answer = canonical_number(program[-1]["value"])
            qid = hashlib.sha256(f"{image_id}:{json.dumps(program, sort_keys=True)}:{q}".encode()).hexdigest()[:24]
            row = {"question_id": qid, "image_id": image_id,
                   "question": f"Question {q} about the {program[0]['args']['category']} in image {i}?",
                   "answer": answer, "num_hops": len(program), "hops": json.dumps(program),
                   "generator": "program:v1", "variant": "full"}
            questions.append(row)
            release.append({**row, "split": split})
            for a in range(4):
                annotations.append({"question_id": qid, "annotator": f"annotator-{a}", "answer": answer,
                                    "answerable": True, "submitted_at": t0 + timedelta(minutes=len(annotations))})
            consensus.append({"question_id": qid, "status": "accepted", "answers": [answer] * 4,
                              "agreed_answer": answer, "matches_generated": True, "reason": None,
                              "reason_code": DECISION_UNANIMOUS})
    quarantine = [{"uri": "s3://hopchain/inputs/broken.jpg", "code": "truncated_or_corrupt",
                   "detail": "image file is truncated"}]
    from expectations.suites.questions import RELEASE_SCHEMA

    return {
        "manifest": to_table(manifest, "manifest"),
        "quarantine": to_table(quarantine, "quarantine"),
        "instances": to_table(instances, "instances"),
        "questions": to_table(questions, "questions"),
        "annotations": to_table(annotations, "annotations"),
        "consensus": to_table(consensus, "consensus"),
        "release": pa.Table.from_pylist(release, schema=RELEASE_SCHEMA),
    }
