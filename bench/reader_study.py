"""A reader study you can repeat: do careful readers give the program's answer?

    .venv/bin/python bench/reader_study.py packet --out DIR [--photos 30] [--shapes 20] [--seeds 0-9]
    .venv/bin/python bench/reader_study.py packet --perception noisy --out DIR [--photos 30] [--seeds 0-19]
        [--noise-seed 0]
    .venv/bin/python bench/reader_study.py score --out DIR ANSWERS.txt [ANSWERS.txt ...]
    .venv/bin/python bench/reader_study.py truth [--seeds 0-19] [--noise-seeds 3,4,5] [--no-recall]

``packet`` builds the demo samples (``hopchain-demo samples`` → ``import-coco`` → the questions stage,
over the seeds), samples ``--photos`` questions about the photographs and ``--shapes`` about the
rendered shapes (seeded; at most two per image and seed, no repeated text), and writes

* ``DIR/packet/`` — what a reader gets: the plain images (``img-NN.png``) and
  ``questions.md`` (numbered questions, each naming its image file, and the instructions from
  ``docs/annotators.md`` a reader needs). No programs, no answers, no masks.
* ``DIR/key.json`` — the program's answers (never shown to a reader).

``--perception noisy`` asks about the photos only, from what a detector would have made of them
(:mod:`hopchain_demo.perception_noise`, one noise draw per generator seed) through the real questions
stage with the stability check on, told the simulated detector's recall by size (``--no-recall``: not
told); the readers still see the plain photos. The key also records the
noise events touching each question's categories, and ``DIR/run.json`` the share refused as
``unstable.perception`` (noisy vs annotated photos) and how many refused and released questions a
noise event touched.

Give the packet to each reader (a person, or a helper session that sees only the packet folder)
and ask for one line per question, ``Q7: 3`` (or ``Q7: ?`` when the question cannot be answered).
``score`` compares each answer file with the key and prints, per reader and per group
(photos/shapes), the share of questions answered the program's way, plus the share on which
*all* readers gave the program's answer (what unanimity would accept), and lists the misses.

``truth`` needs no reader: every question the stage releases on simulated perception (each noise
seed x each generator seed) is re-executed on the annotated scene of its photo, and the bench prints how
many give the same answer there, by terminal (a count over one category or a named group, a rank,
arithmetic), and how many of the photo runs got a question. An answer that no longer executes within the margins on the truth counts as a
disagreement, so the figure is harsher than readers; it moves with the engine on hundreds of
questions where a packet has thirty.

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
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, replace
from functools import partial
from pathlib import Path
from typing import Any

import pyarrow as pa

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
    """``0-19`` (a range) or ``3,4,5`` (a list)."""
    if "-" in text:
        a, b = text.split("-")
        return list(range(int(a), int(b) + 1))
    return [int(x) for x in text.split(",")]


def build_packet(out: Path, photos: int, shapes: int, seeds: list[int], sample_seed: int,
                 perception: str = "annotations", noise_seed: int = 0, recall: bool = True) -> None:
    """Write ``out/packet/`` and ``out/key.json`` (see the module docstring)."""
    from hopchain_demo.samples import write_samples
    from pipelines.segment.annotations import import_coco

    work = out / "work"
    coco = write_samples(work, 24)
    imp = import_coco(coco, work / "images")
    names = {r["image_id"]: Path(r["uri"]) for r in imp.manifest.to_pylist()}
    if perception == "noisy":
        pool, report = _noisy_pool(imp.instances, imp.manifest, names, seeds, noise_seed, recall)
        shapes = 0
    else:
        pool, report = _annotated_pool(imp.instances, imp.manifest, names, seeds), {}
    rng = random.Random(sample_seed)
    chosen = rng.sample(pool["photo"], min(photos, len(pool["photo"]))) + rng.sample(
        pool["shapes"], min(shapes, len(pool["shapes"]))
    )
    rng.shuffle(chosen)
    key, n_images = _write_packet(out / "packet", chosen, names)
    meta = {"perception": perception, "seeds": seeds, "sample_seed": sample_seed,
            **({"recall": recall} if perception == "noisy" else {})}
    if perception == "noisy":
        meta |= {"noise_seed": noise_seed, "noise_rates": report.pop("rates")}
    (out / "key.json").write_text(json.dumps(key, indent=1))
    (out / "run.json").write_text(json.dumps({**meta, **report}, indent=1))
    counts = {g: sum(v["group"] == g for v in key.values()) for g in ("photo", "shapes")}
    print(f"packet: {out / 'packet'} ({len(key)} questions: {counts}, {n_images} images); key: {out / 'key.json'}")
    if report:
        _print_report(report, sum(bool(v["noise_events"]) for v in key.values()), len(key))


def _group(path: Path) -> str:
    return "shapes" if path.name.startswith("shapes-") else "photo"


def _take(pool: dict[str, list[dict]], seen_text: set[str], questions: list[dict], names: dict[str, Path],
          extra: Any = None) -> None:
    """Add one seed's questions to the pool: at most two per image, no repeated text."""
    per_image: dict[str, int] = {}
    for q in questions:
        if q["question"] in seen_text or per_image.get(q["image_id"], 0) >= 2:
            continue
        per_image[q["image_id"]] = per_image.get(q["image_id"], 0) + 1
        seen_text.add(q["question"])
        pool[_group(names[q["image_id"]])].append({**q, **(extra(q) if extra else {})})


def _annotated_pool(instances: Any, manifest: Any, names: dict[str, Path], seeds: list[int]) -> dict[str, list[dict]]:
    """Questions from the human annotations (the default study)."""
    from pipelines.config import QuestionsConfig
    from pipelines.questions.stage import run_questions

    pool: dict[str, list[dict]] = {"photo": [], "shapes": []}
    seen_text: set[str] = set()
    for seed in seeds:
        res = run_questions(instances, manifest, QuestionsConfig(seed=seed, per_image=6))
        _take(pool, seen_text, res.questions.to_pylist(), names)
    return pool


def _photos_and_detector(instances: Any, manifest: Any, names: dict[str, Path]) -> tuple[Any, Any, Any]:
    """The photos' (instances, manifest), and the simulated detector's rates with the questions
    stage's own score thresholds (what :func:`_noisy_pool` and :func:`truth_agreement` both perceive)."""
    import pyarrow.compute as pc

    from hopchain_demo.perception_noise import NoiseRates
    from pipelines.config import QuestionsConfig

    photo_ids = pa.array([i for i, p in names.items() if _group(p) == "photo"])
    cfg = QuestionsConfig()
    return (instances.filter(pc.is_in(instances["image_id"], photo_ids)),
            manifest.filter(pc.is_in(manifest["image_id"], photo_ids)),
            replace(NoiseRates(), min_score=cfg.min_score, shadow_score=cfg.shadow_score))


def detector_config(rates: Any, seed: int, recall: bool = True) -> Any:
    """The questions stage's configuration for the simulated detector's output: the demo's, with the
    stability check told the detector's recall by size (``recall``; else it assumes none is missed)."""
    from pipelines.config import QuestionsConfig, StabilityConfig

    st = StabilityConfig(recall_small=rates.recall_small, recall_medium=rates.recall_medium,
                         recall_large=rates.recall_large) if recall else StabilityConfig()
    return QuestionsConfig(seed=seed, per_image=6, stability=st)


def _noisy_pool(instances: Any, manifest: Any, names: dict[str, Path], seeds: list[int],
                noise_seed: int, recall: bool = True) -> tuple[dict[str, list[dict]], dict[str, Any]]:
    """Questions about the photos from what a detector would have made of them
    (:mod:`hopchain_demo.perception_noise`), through the real questions stage with the stability check on.

    Generator seed ``s`` meets its own draw of the detector's errors (noise seed ``1000 * noise_seed + s``),
    so the photos are seen through as many detector outputs as there are seeds. Each question carries the
    noise events that touch a category it names; the report counts the stability check's refusals on the
    noisy and, for comparison, on the annotated photos.
    """
    from hopchain_demo.perception_noise import perceive, touching
    from pipelines.questions.program import program_from_json
    from pipelines.questions.stability import named_categories

    instances, manifest, rates = _photos_and_detector(instances, manifest, names)
    pool: dict[str, list[dict]] = {"photo": [], "shapes": []}
    seen_text: set[str] = set()
    tally: Counter[str] = Counter()
    event_kinds: Counter[str] = Counter()
    for seed in seeds:
        noisy = perceive(instances, rates, seed=1000 * noise_seed + seed)
        event_kinds.update(e.kind for e in noisy.events)
        qcfg = detector_config(rates, seed, recall)
        res = _stage(noisy.instances, manifest, qcfg)
        clean = _stage(instances, manifest, qcfg)
        for name, r in (("noisy", res), ("annotated", clean)):
            tally[f"{name}_checked"] += r.stats["stability"]["checked"]
            tally[f"{name}_refused"] += r.stats["stability"]["refused"]
            tally[f"{name}_released"] += len(r.questions)
        tally["noisy_instances"] += len(noisy.instances)
        tally["annotated_instances"] += len(instances)
        for q in res.questions.to_pylist():
            hit = touching(noisy.events, q["image_id"], named_categories(program_from_json(q["hops"])))
            tally["released_touched" if hit else "released_untouched"] += 1
        for image_id, refused_cat in _refusals_by_image(res.rejects):
            hit = touching(noisy.events, image_id, [refused_cat])
            tally["refused_touched" if hit else "refused_other"] += 1

        def events_of(q: dict, events: list = noisy.events, s: int = seed) -> dict:
            cats = named_categories(program_from_json(q["hops"]))
            return {"seed": s, "noise_events": [e.to_dict() for e in touching(events, q["image_id"], cats)]}

        _take(pool, seen_text, res.questions.to_pylist(), names, events_of)
    report = {"rates": asdict(rates), "events": dict(event_kinds), **dict(tally)}
    return pool, report


def _stage(instances: Any, manifest: Any, cfg: Any) -> Any:
    from pipelines.questions.stage import run_questions

    return run_questions(instances, manifest, cfg)


_REFUSED_CAT = re.compile(r"^\w+ of '([^']*)'")


def _refusals_by_image(rejects: Any) -> list[tuple[str, str]]:
    """(image, category whose perturbation changed the answer) of every ``unstable.perception``
    refusal of the batch: the reject row's ``raw`` is the image, its detail names the category."""
    from pipelines.questions.stability import UNSTABLE

    out = []
    for r in rejects.to_pylist():
        m = _REFUSED_CAT.match(r["detail"]) if r["code"] == UNSTABLE else None
        if m:
            out.append((r["raw"], m.group(1)))
    return out


def _print_report(r: dict[str, Any], touched_in_packet: int, in_packet: int) -> None:
    def share(a: int, b: int) -> str:
        return f"{a}/{b} ({100 * a / max(1, b):.1f}%)"

    print(f"noise events over all seeds: {r['events']}; detections {r['noisy_instances']} "
          f"from {r['annotated_instances']} annotated instances")
    print("refused as unstable.perception: noisy photos "
          f"{share(r['noisy_refused'], r['noisy_checked'])}, annotated photos "
          f"{share(r['annotated_refused'], r['annotated_checked'])} of the candidates checked")
    refused = r.get("refused_touched", 0) + r.get("refused_other", 0)
    print(f"refusals whose perturbed category a noise event touched: {share(r.get('refused_touched', 0), refused)}"
          f" ({refused} refusals)")
    print(f"released questions naming a category a noise event touched: "
          f"{share(r.get('released_touched', 0), r['noisy_released'])}; in the packet: "
          f"{share(touched_in_packet, in_packet)}")


def _write_packet(packet: Path, chosen: list[dict], names: dict[str, Path]) -> tuple[dict[str, dict], int]:
    """The reader's folder (plain images + questions.md) and the key (never in the folder)."""
    from PIL import Image

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
        lines.append(f"Q{k} (image {image_names[q['image_id']]}): {q['question']}")
        key[f"Q{k}"] = {"answer": q["answer"], "group": _group(src), "question": q["question"],
                        "image": image_names[q["image_id"]], "source": src.name, "hops": q["hops"],
                        **({"seed": q["seed"], "noise_events": q["noise_events"]} if "noise_events" in q else {})}
    (packet / "questions.md").write_text("\n".join(lines) + "\n")
    return key, len(image_names)


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
    """Per reader and group, the share answered the program's way; all readers at once; the mean over
    reader pairs of "both gave it" (what a two-reader study measures, whatever the number of readers);
    on a noisy packet, the program's answer on the annotated scene (the truth proxy) per question."""
    from itertools import combinations

    key = json.loads((out / "key.json").read_text())
    readers = {f.stem: read_answers(f) for f in files}
    groups = ("photo", "shapes")

    def row(name: str, right: Callable[[str], bool]) -> None:
        cells = []
        for g in (*groups, None):
            qs = [q for q, v in key.items() if g is None or v["group"] == g]
            ok = sum(right(q) for q in qs)
            cells.append(f"{ok}/{len(qs)} {100 * ok / max(1, len(qs)):5.1f}%")
        print(f"{name:<22}" + "".join(f"{c:>16}" for c in cells))

    print(f"{'reader':<22}" + "".join(f"{g:>16}" for g in groups) + f"{'all':>16}")
    for name, ans in readers.items():
        row(name, partial(_all_gave_program_answer, key, [ans]))
    row("all readers agree", partial(_all_gave_program_answer, key, list(readers.values())))
    pairs = list(combinations(readers.values(), 2))
    if len(pairs) > 1:
        both = [sum(a.get(q) == key[q]["answer"] == b.get(q) for q in key) for a, b in pairs]
        print(f"{'pairs, both (mean)':<22}{'':>32}{sum(both) / len(pairs):>10.2f}/{len(key)} "
              f"{100 * sum(both) / len(pairs) / max(1, len(key)):5.1f}%  (pairs: {both})")
    truth: dict[str, str | None] = {}
    if any("noise_events" in v for v in key.values()):
        import tempfile

        with tempfile.TemporaryDirectory(prefix="reader-score-") as tmp:
            t = _Truth(Path(tmp))
            truth = {q: t.answer(t.by_source[v["source"]], v["hops"]) for q, v in key.items()}
        row("program = annotations", lambda q: truth[q] == key[q]["answer"])
    print("\nmisses (question: program | readers):")
    for q, v in key.items():
        got = {n: a.get(q, "-") for n, a in readers.items()}
        if any(x != v["answer"] for x in got.values()):
            print(f"  {q} [{v['group']}, {v['source']}] {v['question']}\n      program {v['answer']}"
                  + (f" (annotations {truth[q]})" if truth else "") + " | "
                  + ", ".join(f"{n} {x}" for n, x in got.items()))


def _all_gave_program_answer(key: dict[str, Any], readers: list[dict[str, str]], q: str) -> bool:
    return all(a.get(q) == key[q]["answer"] for a in readers)


class _Truth:
    """The sample photos' annotated scenes (the truth the simulated detector perturbs) and a program's
    answer on them: what ``truth`` measures over many draws and ``score`` shows per packet question."""

    def __init__(self, work: Path) -> None:
        import numpy as np
        from PIL import Image

        from hopchain_demo.samples import write_samples
        from pipelines.config import QuestionsConfig
        from pipelines.questions import program as P
        from pipelines.questions.scene import scenes_from_tables
        from pipelines.questions.stability import trusting_stability
        from pipelines.segment.annotations import import_coco

        imp = import_coco(write_samples(work, 24), work / "images")
        self.names = {r["image_id"]: Path(r["uri"]) for r in imp.manifest.to_pylist()}
        self.instances, self.manifest, self.rates = _photos_and_detector(imp.instances, imp.manifest, self.names)
        pixels = {i: np.asarray(Image.open(self.names[i]).convert("RGB"))
                  for i in self.manifest.column("image_id").to_pylist()}
        self.scenes = {s.image_id: trusting_stability(s) for s in
                       scenes_from_tables(self.instances, self.manifest, images=lambda i: pixels[i])[0]}
        self.by_source = {p.name: i for i, p in self.names.items()}
        self._margins = P.margins_of(QuestionsConfig())

    def answer(self, image_id: str, hops_json: str) -> str | None:
        """The program re-executed on the annotated scene (None: it fails there, e.g. a margin)."""
        from pipelines.questions import program as P

        hops = [replace(h, value=None) for h in P.program_from_json(hops_json)]
        try:
            return P.answer_of(P.execute(hops, self.scenes[image_id], self._margins, min_hops=1,
                                         max_hops=len(hops)))
        except P.ProgramError:
            return None


def truth_agreement(seeds: list[int], noise_seeds: list[int], recall: bool = True) -> dict[str, Any]:
    """(see the module docstring) ``{"questions", "agree", "by_terminal": {terminal: [agree, n]}}``."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="reader-truth-") as tmp:  # the samples are written, read, removed
        return _truth_agreement(Path(tmp), seeds, noise_seeds, recall)


def _truth_agreement(work: Path, seeds: list[int], noise_seeds: list[int], recall: bool) -> dict[str, Any]:
    from hopchain_demo.perception_noise import perceive
    from pipelines.questions import program as P
    from pipelines.questions.stage import run_questions

    t = _Truth(work)
    names, instances, manifest, rates = t.names, t.instances, t.manifest, t.rates
    photos = manifest.column("image_id")
    by: dict[str, list[int]] = {}
    covered: Counter[str] = Counter()  # per photo: the runs (noise seed x seed) it got a question in
    for ns in noise_seeds:
        for seed in seeds:
            noisy = perceive(instances, rates, seed=1000 * ns + seed)
            res = run_questions(noisy.instances, manifest, detector_config(rates, seed, recall))
            covered.update({q["image_id"] for q in res.questions.to_pylist()})
            for q in res.questions.to_pylist():
                hops = P.program_from_json(q["hops"])
                last = hops[-1]
                term = f"count<{hops[last.inputs[0]].op}" if last.op == "count" else last.op
                got = t.answer(q["image_id"], q["hops"])
                tally = by.setdefault(term, [0, 0])
                tally[0] += got == q["answer"]
                tally[1] += 1
    agree, n = sum(a for a, _ in by.values()), sum(m for _, m in by.values())
    print(f"released on simulated perception: {n} questions (noise seeds {noise_seeds}, seeds "
          f"{seeds[0]}..{seeds[-1]}); the same answer on the annotated scene: {agree}/{n} "
          f"({100 * agree / max(1, n):.1f}%)")
    for term, (a, m) in sorted(by.items()):
        print(f"  {term:<22} {a}/{m} ({100 * a / max(1, m):.1f}%)")
    runs = len(noise_seeds) * len(seeds)
    print(f"photos with a question: {sum(covered.values())}/{runs * len(photos)} runs; per photo: "
          + ", ".join(f"{names[i].name} {covered[i]}/{runs}" for i in sorted(photos.to_pylist(), key=lambda i: names[i].name)))
    return {"questions": n, "agree": agree, "by_terminal": by, "covered": dict(covered), "runs": runs}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("packet")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--photos", type=int, default=30)
    p.add_argument("--shapes", type=int, default=20)
    p.add_argument("--seeds", default="0-9")
    p.add_argument("--sample-seed", type=int, default=0)
    p.add_argument("--perception", choices=("annotations", "noisy"), default="annotations",
                   help="questions from the human annotations, or from a simulated detector's output (photos only)")
    p.add_argument("--noise-seed", type=int, default=0)
    s = sub.add_parser("score")
    s.add_argument("--out", type=Path, required=True)
    s.add_argument("answers", type=Path, nargs="+")
    t = sub.add_parser("truth")
    for a in (p, t):
        a.add_argument("--no-recall", dest="recall", action="store_false",
                       help="noisy: do not tell the stability check the detector's recall (the missed-member "
                            "rule off)")
    t.add_argument("--seeds", default="0-19")
    t.add_argument("--noise-seeds", default="3,4,5")
    args = ap.parse_args()
    if args.cmd == "packet":
        build_packet(args.out, args.photos, args.shapes, _parse_seeds(args.seeds), args.sample_seed,
                     args.perception, args.noise_seed, args.recall)
    elif args.cmd == "truth":
        truth_agreement(_parse_seeds(args.seeds), _parse_seeds(args.noise_seeds), args.recall)
    else:
        score(args.out, args.answers)


if __name__ == "__main__":
    main()
