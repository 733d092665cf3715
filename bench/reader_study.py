"""A reader study you can repeat: do careful readers give the program's answer?

    .venv/bin/python bench/reader_study.py packet --out DIR [--photos 30] [--shapes 20] [--seeds 0-9]
    .venv/bin/python bench/reader_study.py score --out DIR ANSWERS.txt [ANSWERS.txt ...]

``packet`` builds the demo samples (``hopchain-demo samples`` → ``import-coco`` → the questions stage,
over the seeds), samples ``--photos`` questions about the photographs and ``--shapes`` about the
rendered shapes (seeded; at most two per image and seed, no repeated text), and writes

* ``DIR/packet/`` — what a reader gets: the plain images (``img-NN.png``) and
  ``questions.md`` (numbered questions, each naming its image file, and the instructions from
  ``docs/annotators.md`` a reader needs). No programs, no answers, no masks.
* ``DIR/key.json`` — the program's answers (never shown to a reader).

Give the packet to each reader (a person, or a helper session that sees only the packet folder)
and ask for one line per question, ``Q7: 3`` (or ``Q7: ?`` when the question cannot be answered).
``score`` compares each answer file with the key and prints, per reader and per group
(photos/shapes), the share of questions answered the program's way, plus the share on which
*all* readers gave the program's answer (what unanimity would accept), and lists the misses.

Protocol (docs/annotators.md, "Reader study"): readers work independently, see only the
packet, answer every question, and are told nothing about how questions are made.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

def instructions() -> str:
    """What a reader is told: the labeling screen's conventions, and how to answer."""
    from pipelines.annotation.labeling import CONVENTIONS

    return (
        "Answer each question about its image with one number.\n\n"
        f"Conventions: {CONVENTIONS}\n\n"
        "If you cannot answer (an object the question needs does not exist, or the question is genuinely "
        "ambiguous), write `?`.\n\nWrite one line per question: `Q7: 3`.\n"
    )


def _parse_seeds(text: str) -> list[int]:
    if "-" in text:
        a, b = text.split("-")
        return list(range(int(a), int(b) + 1))
    return [int(x) for x in text.split(",")]


def build_packet(out: Path, photos: int, shapes: int, seeds: list[int], sample_seed: int) -> None:
    from PIL import Image

    from hopchain_demo.samples import write_samples
    from pipelines.config import QuestionsConfig
    from pipelines.questions.stage import run_questions
    from pipelines.segment.annotations import import_coco

    work = out / "work"
    coco = write_samples(work, 24)
    imp = import_coco(coco, work / "images")
    names = {r["image_id"]: Path(r["uri"]) for r in imp.manifest.to_pylist()}
    pool: dict[str, list[dict]] = {"photo": [], "shapes": []}
    seen_text: set[str] = set()
    for seed in seeds:
        res = run_questions(imp.instances, imp.manifest, QuestionsConfig(seed=seed, per_image=6))
        per_image: dict[str, int] = {}
        for q in res.questions.to_pylist():
            if q["question"] in seen_text or per_image.get(q["image_id"], 0) >= 2:
                continue
            per_image[q["image_id"]] = per_image.get(q["image_id"], 0) + 1
            seen_text.add(q["question"])
            group = "shapes" if names[q["image_id"]].name.startswith("shapes-") else "photo"
            pool[group].append(q)
    rng = random.Random(sample_seed)
    chosen = rng.sample(pool["photo"], min(photos, len(pool["photo"]))) + rng.sample(
        pool["shapes"], min(shapes, len(pool["shapes"]))
    )
    rng.shuffle(chosen)
    packet = out / "packet"
    if packet.exists():
        shutil.rmtree(packet)
    packet.mkdir(parents=True)
    image_names: dict[str, str] = {}
    key, lines = {}, ["# Questions", "", instructions(), ""]
    for k, q in enumerate(chosen, start=1):
        src = names[q["image_id"]]
        if q["image_id"] not in image_names:
            # PNG for every image: lossless, and every viewer shows it
            image_names[q["image_id"]] = f"img-{len(image_names) + 1:02d}.png"
            Image.open(src).convert("RGB").save(packet / image_names[q["image_id"]], "PNG")
        group = "shapes" if src.name.startswith("shapes-") else "photo"
        lines.append(f"Q{k} (image {image_names[q['image_id']]}): {q['question']}")
        key[f"Q{k}"] = {"answer": q["answer"], "group": group, "question": q["question"],
                        "image": image_names[q["image_id"]], "source": src.name, "hops": q["hops"]}
    (packet / "questions.md").write_text("\n".join(lines) + "\n")
    (out / "key.json").write_text(json.dumps(key, indent=1))
    counts = {g: sum(v["group"] == g for v in key.values()) for g in ("photo", "shapes")}
    print(f"packet: {packet} ({len(key)} questions: {counts}, {len(image_names)} images); key: {out / 'key.json'}")


_LINE = re.compile(r"^\s*\**\s*Q(\d+)\s*\**\s*[:=.)-]\s*\**\s*([^\s*]+)", re.IGNORECASE)


def read_answers(path: Path) -> dict[str, str]:
    from pipelines.contracts import canonical_number

    out = {}
    for line in path.read_text().splitlines():
        m = _LINE.match(line)
        if not m:
            continue
        raw = m.group(2).strip().rstrip(".,;")
        try:
            out[f"Q{int(m.group(1))}"] = canonical_number(raw)
        except ValueError:
            out[f"Q{int(m.group(1))}"] = "?"
    return out


def score(out: Path, files: list[Path]) -> None:
    key = json.loads((out / "key.json").read_text())
    readers = {f.stem: read_answers(f) for f in files}
    groups = ("photo", "shapes")
    print(f"{'reader':<22}" + "".join(f"{g:>16}" for g in groups) + f"{'all':>16}")
    for name, ans in readers.items():
        cells = []
        for g in (*groups, None):
            qs = [q for q, v in key.items() if g is None or v["group"] == g]
            ok = sum(ans.get(q) == key[q]["answer"] for q in qs)
            cells.append(f"{ok}/{len(qs)} {100 * ok / max(1, len(qs)):5.1f}%")
        print(f"{name:<22}" + "".join(f"{c:>16}" for c in cells))
    cells = []
    for g in (*groups, None):
        qs = [q for q, v in key.items() if g is None or v["group"] == g]
        ok = sum(all(a.get(q) == key[q]["answer"] for a in readers.values()) for q in qs)
        cells.append(f"{ok}/{len(qs)} {100 * ok / max(1, len(qs)):5.1f}%")
    print(f"{'all readers agree':<22}" + "".join(f"{c:>16}" for c in cells))
    print("\nmisses (question: program | readers):")
    for q, v in key.items():
        got = {n: a.get(q, "-") for n, a in readers.items()}
        if any(x != v["answer"] for x in got.values()):
            print(f"  {q} [{v['group']}, {v['source']}] {v['question']}\n      program {v['answer']} | "
                  + ", ".join(f"{n} {x}" for n, x in got.items()))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("packet")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--photos", type=int, default=30)
    p.add_argument("--shapes", type=int, default=20)
    p.add_argument("--seeds", default="0-9")
    p.add_argument("--sample-seed", type=int, default=0)
    s = sub.add_parser("score")
    s.add_argument("--out", type=Path, required=True)
    s.add_argument("answers", type=Path, nargs="+")
    args = ap.parse_args()
    if args.cmd == "packet":
        build_packet(args.out, args.photos, args.shapes, _parse_seeds(args.seeds), args.sample_seed)
    else:
        score(args.out, args.answers)


if __name__ == "__main__":
    main()
