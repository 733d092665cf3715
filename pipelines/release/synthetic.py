"""Synthetic release inputs (images, manifest, instances, questions, consensus) for tests and benches.

Images are small PIL drawings (coloured rectangles on noise) so their bytes differ; instances are the
rectangles (COCO RLE via pycocotools); each question counts two categories and adds the counts
(a 5-hop ``find/count/find/count/arith`` program), so its answer is right by construction.
Consensus: ``accept_rate`` of the questions accepted (four equal answers), the rest rejected or
pending; ``mismatch_rate`` of the accepted ones disagree with the generator (``matches_generated``
false, the human answer is the released one).
"""

from __future__ import annotations

import hashlib
import io
import json
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipelines.contracts import to_table, write_parquet_atomic
from pipelines.contracts.rejects import DECISION_DISAGREEMENT, DECISION_PENDING, DECISION_UNANIMOUS

CATEGORIES = ("cup", "book", "chair", "bottle", "plant", "lamp")


@dataclass(frozen=True)
class SyntheticInputs:
    folder: Path
    consensus: Path
    questions: Path
    instances: Path
    manifest: Path
    images: Path  # folder of <name>.jpg files (the manifest uri points at them)
    accepted: int
    image_ids: tuple[str, ...]


def _image(rng: random.Random, width: int, height: int, boxes: list[tuple[int, int, int, int, tuple[int, int, int]]],
           fmt: str) -> bytes:
    from PIL import Image, ImageDraw

    noise = np.random.default_rng(rng.getrandbits(32)).integers(0, 255, (height, width, 3), dtype=np.uint8)
    img = Image.fromarray(noise, "RGB")
    draw = ImageDraw.Draw(img)
    for x, y, w, h, colour in boxes:
        draw.rectangle([x, y, x + w - 1, y + h - 1], fill=colour)
    buf = io.BytesIO()
    img.save(buf, format="JPEG" if fmt == "jpeg" else "PNG", quality=90)
    return buf.getvalue()


def make_inputs(
    folder: Path,
    *,
    n_images: int = 6,
    questions_per_image: int = 3,
    seed: int = 0,
    size: tuple[int, int] = (64, 48),
    accept_rate: float = 0.75,
    mismatch_rate: float = 0.1,
    fmt: str = "jpeg",
    run_id: str = "synthetic-run",
    answers_source: str | None = "people",
) -> SyntheticInputs:
    """Write a complete, consistent set of release inputs under ``folder`` (every decision's
    ``answers_source`` is ``answers_source``: None writes decisions made before it was recorded)."""
    from pycocotools import mask as mask_utils

    rng = random.Random(seed)
    folder = Path(folder)
    img_dir = folder / "images"
    img_dir.mkdir(parents=True, exist_ok=True)
    width, height = size
    manifest, instances, questions, consensus = [], [], [], []
    image_ids = []
    for i in range(n_images):
        boxes = []
        for _ in range(rng.randint(3, 6)):
            w, h = rng.randint(6, width // 3), rng.randint(6, height // 3)
            x, y = rng.randint(0, width - w), rng.randint(0, height - h)
            boxes.append((x, y, w, h, (rng.randrange(256), rng.randrange(256), rng.randrange(256))))
        data = _image(rng, width, height, boxes, fmt)
        image_id = hashlib.sha256(data).hexdigest()
        image_ids.append(image_id)
        name = f"img-{seed}-{i:05d}.{'jpg' if fmt == 'jpeg' else 'png'}"
        (img_dir / name).write_bytes(data)
        manifest.append({"image_id": image_id, "uri": str(img_dir / name), "width": width, "height": height,
                         "format": fmt, "shard": i // 100})
        cats = []
        for j, (x, y, w, h, _) in enumerate(boxes):
            m = np.zeros((height, width), dtype=np.uint8, order="F")
            m[y:y + h, x:x + w] = 1
            rle = mask_utils.encode(np.asfortranarray(m))
            cat = rng.choice(CATEGORIES)
            cats.append(cat)
            instances.append({"image_id": image_id, "instance_id": j, "category": cat,
                              "bbox": [float(x), float(y), float(w), float(h)], "area": int(m.sum()),
                              "score": 0.9, "mask_rle": rle["counts"].decode(), "mask_height": height,
                              "mask_width": width, "source": "annotations:synthetic-v1"})
        for k in range(questions_per_image):
            a, b = rng.choice(cats), rng.choice(CATEGORIES)
            na, nb = cats.count(a), cats.count(b)
            hops = [
                {"op": "find", "args": {"category": a}, "inputs": [], "kind": "perception",
                 "value": [j for j, c in enumerate(cats) if c == a]},
                {"op": "count", "args": {}, "inputs": [0], "kind": "perception", "value": na},
                {"op": "find", "args": {"category": b}, "inputs": [], "kind": "perception",
                 "value": [j for j, c in enumerate(cats) if c == b]},
                {"op": "count", "args": {}, "inputs": [2], "kind": "perception", "value": nb},
                {"op": "arith", "args": {"fn": "add"}, "inputs": [1, 3], "kind": "instance_chain",
                 "value": na + nb},
            ]
            qid = hashlib.sha256(f"{image_id}:{k}:{a}:{b}".encode()).hexdigest()[:24]
            answer = str(na + nb)
            questions.append({"question_id": qid, "image_id": image_id,
                              "question": f"How many {a}s and {b}s are there in total? (q{k})",
                              "answer": answer, "num_hops": len(hops), "hops": json.dumps(hops),
                              "generator": "program:v1", "variant": "full"})
            roll = rng.random()
            if roll < accept_rate:
                human = answer if rng.random() >= mismatch_rate else str(na + nb + 1)
                consensus.append({"question_id": qid, "status": "accepted", "answers": [human] * 4,
                                  "agreed_answer": human, "matches_generated": human == answer,
                                  "reason": None, "reason_code": DECISION_UNANIMOUS})
            elif roll < accept_rate + (1 - accept_rate) / 2:
                consensus.append({"question_id": qid, "status": "rejected", "answers": [answer, answer, answer,
                                  str(na + nb + 2)], "agreed_answer": None, "matches_generated": None,
                                  "reason": "annotators disagree", "reason_code": DECISION_DISAGREEMENT})
            else:
                consensus.append({"question_id": qid, "status": "pending", "answers": [answer],
                                  "agreed_answer": None, "matches_generated": None, "reason": "2 of 4 answered",
                                  "reason_code": DECISION_PENDING})
    for c in consensus:
        c["answers_source"] = answers_source
    runs = folder / "runs" / run_id
    paths = {}
    for name, rows in (("consensus", consensus), ("questions", questions), ("instances", instances),
                       ("manifest", manifest)):
        paths[name] = write_parquet_atomic(to_table(rows, name), runs / name / "shard-00000.parquet")
    return SyntheticInputs(folder, paths["consensus"], paths["questions"], paths["instances"], paths["manifest"],
                           img_dir, sum(1 for c in consensus if c["status"] == "accepted"), tuple(image_ids))
