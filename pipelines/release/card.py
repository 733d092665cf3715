"""The ``card`` stage of ``dvc.yaml``: release metrics and the dataset card.

``python -m pipelines.release.card --params params.yaml --data data --release release
--out card --readme README.md --metrics metrics.json``

* ``metrics.json`` (DVC metrics, committed to git): counts, ``acceptance_rate`` (accepted /
  decided, decided = accepted + rejected), ``generator_precision`` (share of accepted questions
  whose generated answer equals the human consensus: ``matches_generated``), mean hop count, and
  ``pass_rate_mean`` when the questions carry a ``pass_rate`` column (difficulty calibration), and
  ``annotation_cost``: counted ``annotations`` of the decided questions (from the consensus table's
  ``answers`` lists), ``annotations_per_accepted`` (that ÷ accepted; null when none) and
  ``annotations_saved`` (answers the early stop did not ask for: 4 − answers of each rejected
  question decided with fewer; the definition of :func:`pipelines.annotation.consensus.annotation_cost`,
  restated in :func:`annotation_cost_metrics` so the registry's ``card`` stage needs no annotation code),
  and ``answers_source``: released questions by who answered them (``people``, ``simulated``, ``mixed``;
  ``unrecorded`` for decisions made before it was recorded), which the card states in "Who answered" and,
  when any answer came from the simulation, under its first paragraph.
* ``README.md`` (the registry root's dataset card, whose ``configs:`` metadata makes
  ``datasets.load_dataset(<folder>)`` one call) plus PNG plots in ``card/`` (matplotlib, Agg):
  hop-length histogram, answer histogram, category frequencies, agreement statistics; model
  versions and source run ids of every part; the questions withdrawn after release.

Both are deterministic for the same inputs (PNG metadata carries no timestamp or version).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from pipelines.config import ReleaseConfig
from pipelines.contracts.files import replacing_folder, write_atomic
from pipelines.contracts.rejects import reason_label
from pipelines.release.assemble import PROVENANCE_FILE, REJECTS_FILE, SPLITS, read_meta_table, read_removals
from pipelines.release.build import read_release_config
from pipelines.reward import MIN_VERSIONS, REWARD_VERSION


def _released_rows(data: Path, index: dict[str, Any]) -> list[dict[str, Any]]:
    cols = ["question_id", "image_id", "answer", "num_hops", "hops", "variant", "generator"]
    rows: list[dict[str, Any]] = []
    for split in SPLITS:
        for shard in index["splits"].get(split, {}).get("shards", []):
            path = Path(data).parent / shard  # index paths are relative to the registry root
            for r in pq.read_table(path, columns=cols).to_pylist():
                rows.append({**r, "split": split})
    return rows


def _rate(num: int, den: int) -> float:
    return round(num / den, 6) if den else 0.0


#: what a text-only guesser must not be able to exploit (issue 29; docs/hop-programs.md, "Balanced answers")
BALANCE_TARGETS = {"zero_share": 0.10, "prior_accuracy": 0.25, "answer_entropy": 3.0}


def answer_balance(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Zero-answer share, answer entropy (bits) and the language-prior baseline of the released full
    questions, with their targets. The baseline is the accuracy of answering each question with the most
    common answer of the *other* questions of its program skeleton (ops and inputs, no arguments), the
    batch's most common answer for a skeleton's only question: the measure of
    ``pipelines.questions.report``, restated here on the contract's ``hops`` JSON so the card depends on
    no stage code."""
    full = [r for r in rows if (r.get("variant") or "full") == "full"]
    answers = [str(r["answer"]) for r in full]
    n = len(answers)
    counts = Counter(answers)
    entropy = -sum(c / n * math.log2(c / n) for c in counts.values()) if n else 0.0
    by: dict[str, Counter[str]] = {}
    for r, a in zip(full, answers, strict=True):
        by.setdefault(_skeleton(r.get("hops")), Counter())[a] += 1
    hits = 0
    fallback = counts.most_common(1)[0][0] if counts else ""
    for r, a in zip(full, answers, strict=True):
        others = by[_skeleton(r.get("hops"))].copy()
        others[a] -= 1
        others = +others
        hits += (max(sorted(others), key=lambda v: others[v]) if others else fallback) == a
    return {"zero_share": round(counts["0"] / n, 4) if n else 0.0, "answer_entropy": round(entropy, 3),
            "prior_accuracy": round(hits / n, 4) if n else 0.0, "targets": BALANCE_TARGETS}


def _skeleton(hops: str | None) -> str:
    try:
        prog = json.loads(hops or "[]")
        return ">".join(f"{h['op']}({','.join(map(str, h['inputs']))})" if h.get("inputs") else h["op"] for h in prog)
    except (ValueError, TypeError, KeyError):
        return ""


def _balance_line(b: dict[str, Any] | None) -> str:
    if not b:
        return ""
    t = b["targets"]

    def mark(ok: bool) -> str:
        return "meets" if ok else "misses"

    return (f"Answer balance: zero answers {b['zero_share']:.1%} ({mark(b['zero_share'] <= t['zero_share'])} "
            f"≤ {t['zero_share']:.0%}); language-prior baseline {b['prior_accuracy']:.1%} "
            f"({mark(b['prior_accuracy'] <= t['prior_accuracy'])} ≤ {t['prior_accuracy']:.0%}); answer entropy "
            f"{b['answer_entropy']:.2f} bits ({mark(b['answer_entropy'] >= t['answer_entropy'])} ≥ "
            f"{t['answer_entropy']:g}).")


def annotation_cost_metrics(consensus: Sequence[dict[str, Any]], required: int = 4) -> dict[str, Any]:
    """Counted ``annotations`` of the decided questions, ``annotations_per_accepted`` (None when none
    was accepted) and ``annotations_saved`` (``required`` − answers of each rejected question decided
    with fewer: stopped at its first disagreement), from consensus rows (``status``, ``answers``)."""
    decided = [c for c in consensus if c["status"] in ("accepted", "rejected")]
    annotations = sum(len(c["answers"] or []) for c in decided)
    accepted = sum(c["status"] == "accepted" for c in decided)
    saved = sum(required - len(c["answers"] or []) for c in decided
                if c["status"] == "rejected" and len(c["answers"] or []) < required)
    return {"annotations": annotations,
            "annotations_per_accepted": round(annotations / accepted, 4) if accepted else None,
            "annotations_saved": saved}


def compute_metrics(data: Path, release: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(metrics, details)``: ``metrics`` is ``metrics.json``; ``details`` feeds the card.

    Decisions count once per question, with the newest one (a question decided again in a later
    part replaces its earlier decision)."""
    data = Path(data)
    index = json.loads((release / "index.json").read_text())
    consensus = read_meta_table(data, "consensus", latest_by=["question_id"]).to_pylist()
    questions_raw = read_meta_table(data, "questions", latest_by=["question_id"])
    instances = read_meta_table(data, "instances", latest_by=["image_id", "instance_id"]).to_pylist()
    rows = _released_rows(data, index)
    status = Counter(c["status"] for c in consensus)
    accepted = [c for c in consensus if c["status"] == "accepted"]
    decided = status["accepted"] + status["rejected"]
    matches = sum(1 for c in accepted if c["matches_generated"])
    released_images = {r["image_id"] for r in rows}
    rel_instances = [i for i in instances if i["image_id"] in released_images]
    dropped = Counter(pq.read_table(release / REJECTS_FILE, columns=["code"]).column("code").to_pylist())
    removals = read_removals(data)
    removed = Counter(removals.column("code").to_pylist())
    splits = index["splits"]
    metrics: dict[str, Any] = {
        "questions_generated": questions_raw.num_rows,
        "consensus": {"accepted": status["accepted"], "rejected": status["rejected"],
                      "pending": status["pending"], "total": len(consensus)},
        "acceptance_rate": _rate(status["accepted"], decided),
        "generator_precision": _rate(matches, len(accepted)),
        "released": {
            "questions": len(rows),
            "images": len(released_images),
            "instances": len(rel_instances),
            "categories": index["categories"],
            "shards": sum(len(s["shards"]) for s in splits.values()),
            **{f"{s}_questions": splits[s]["questions"] for s in SPLITS},
            **{f"{s}_images": splits[s]["images"] for s in SPLITS},
        },
        "dropped": sum(dropped.values()),
        "withdrawn": removals.num_rows,
        "parts": len(index.get("parts", [])),
        "mean_hops": round(sum(r["num_hops"] for r in rows) / len(rows), 6) if rows else 0.0,
    }
    if "pass_rate" in questions_raw.column_names:
        ids = {r["question_id"] for r in rows}
        rates = [q["pass_rate"] for q in questions_raw.select(["question_id", "pass_rate"]).to_pylist()
                 if q["question_id"] in ids and q["pass_rate"] is not None]
        if rates:
            metrics["pass_rate_mean"] = round(sum(rates) / len(rates), 6)
    metrics["answer_balance"] = answer_balance(rows)
    metrics["annotation_cost"] = annotation_cost_metrics(consensus)
    metrics["integrity"] = integrity_metrics(data)
    released_ids = {r["question_id"] for r in rows}
    metrics["answers_source"] = dict(sorted(Counter(
        c.get("answers_source") or "unrecorded" for c in accepted if c["question_id"] in released_ids).items()))
    distinct_answers = Counter(len(set(c["answers"] or [])) for c in consensus if c["status"] != "pending")
    provenance: dict[str, Any] = {"run_ids": [], "sources": {}}
    for f in sorted(data.glob("meta/part-*/" + PROVENANCE_FILE)):
        p = json.loads(f.read_text())
        provenance["run_ids"] = sorted(set(provenance["run_ids"]) | set(p.get("run_ids", [])))
        provenance["sources"].update({f"{k} ({f.parent.name})": v for k, v in p.get("sources", {}).items()})
    details = {
        "index": index,
        "rows": rows,
        "categories": Counter(i["category"] for i in rel_instances),
        # by the decision's code, read through the one code table (never by the reason sentence)
        "reject_reasons": Counter(reason_label(c.get("reason_code")).label for c in consensus
                                  if c["status"] == "rejected"),
        "distinct_answers": distinct_answers,
        "dropped": dropped,
        "generators": Counter(r["generator"] for r in rows),
        "instance_sources": Counter(i["source"] for i in rel_instances),
        "provenance": provenance,
        "removed": removed,
        "reward_version": REWARD_VERSION,
    }
    return metrics, details


def _bar(path: Path, labels: list[str], values: list[int], title: str, xlabel: str, horizontal: bool = False) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5 if not horizontal else max(2.5, 0.25 * len(labels) + 1)))
    if horizontal:
        ax.barh(labels[::-1], values[::-1], color="#4c72b0")
        ax.set_xlabel("count")
        ax.set_ylabel(xlabel)
    else:
        ax.bar(labels, values, color="#4c72b0")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("count")
        if len(labels) > 12:
            ax.tick_params(axis="x", labelrotation=90)
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=80, metadata={"Software": None})
    plt.close(fig)


def _plots(out: Path, details: dict[str, Any], metrics: dict[str, Any]) -> None:
    rows = details["rows"]
    hops = Counter(r["num_hops"] for r in rows)
    keys = list(range(3, 7)) + sorted(k for k in hops if not 3 <= k <= 6)
    _bar(out / "hop_lengths.png", [str(k) for k in keys], [hops[k] for k in keys],
         "Hop-length histogram (released questions)", "hops")
    answers = Counter(r["answer"] for r in rows)
    top = sorted(answers, key=lambda a: (float(a), a))[:40]
    _bar(out / "answers.png", top, [answers[a] for a in top], "Answer histogram", "answer")
    cats = details["categories"].most_common(30)
    _bar(out / "categories.png", [c for c, _ in cats], [n for _, n in cats],
         "Category frequencies (instances in released images)", "category", horizontal=True)
    c = metrics["consensus"]
    da = details["distinct_answers"]
    labels = ["accepted", "rejected", "pending"] + [f"{k} distinct" for k in sorted(da)]
    values = [c["accepted"], c["rejected"], c["pending"]] + [da[k] for k in sorted(da)]
    _bar(out / "agreement.png", labels, values, "Agreement: status and distinct answers per question", "")


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(v) for v in r) + " |" for r in rows]
    return "\n".join(lines)


def _labelled(counts: Counter[str]) -> list[tuple[str, str, int]]:
    """``(code, label, n)`` rows, most frequent first: a code with its label from
    :data:`pipelines.contracts.rejects.REASONS`."""
    return [(code, reason_label(code).label, n) for code, n in counts.most_common()]


def integrity_metrics(data: Path) -> dict[str, Any]:
    """Who answered and what did not count, over every part's ``audit.parquet`` / ``uncounted.parquet``
    (parts released before they existed have neither): counted answers on record, distinct annotator
    pseudonyms, answers by source (person / simulated), and answers not counted by reason code."""
    audit = [pq.read_table(f, columns=["annotator", "source"]).to_pylist()
             for f in sorted(Path(data).glob("meta/part-*/audit.parquet"))]
    rows = [r for part in audit for r in part]
    uncounted: Counter[str] = Counter()
    for f in sorted(Path(data).glob("meta/part-*/uncounted.parquet")):
        uncounted.update(pq.read_table(f, columns=["code"]).column("code").to_pylist())
    return {"audited_answers": len(rows), "annotators": len({r["annotator"] for r in rows}),
            "answers_by_source": dict(sorted(Counter(r["source"] for r in rows).items())),
            "uncounted": dict(sorted(uncounted.items())), "parts_audited": len(audit)}


def _source_line(sources: dict[str, int] | None) -> str:
    """Who gave the released answers (``metrics["answers_source"]``): people and simulated annotators are
    always both stated, partly simulated (``mixed``) and not recorded (decided before it was) when present."""
    if sources is None:
        return ""
    line = (f"Answers: {sources.get('people', 0):,} questions answered by people; "
            f"{sources.get('simulated', 0):,} by simulated annotators")
    if sources.get("mixed"):
        line += f"; {sources['mixed']:,} partly by simulated annotators"
    if sources.get("unrecorded"):
        line += f"; {sources['unrecorded']:,} decided before who answered was recorded"
    return line + " (`answers_source` in `data/meta/part-NNNNN/consensus.parquet`)."


def _simulation_notice(sources: dict[str, int] | None) -> list[str]:
    """A warning under the card's first paragraph when any released answer came from the simulation."""
    n = sum((sources or {}).get(k, 0) for k in ("simulated", "mixed"))
    if not n:
        return []
    return [f"> **Simulated answers.** {n:,} released questions were answered, wholly or partly, by simulated "
            "annotators of a demo deployment, not by people: they are not human-verified.", ""]


def _integrity_lines(found: dict[str, Any] | None) -> list[str]:
    if not found or not found.get("parts_audited"):
        return ["No audit table in this release's parts (decided before answers were journaled)."]
    by = ", ".join(f"{n} by {k}" for k, n in found["answers_by_source"].items()) or "none"
    lines = [f"{found['audited_answers']} counted answers of decided questions are on record in "
             f"`data/meta/part-NNNNN/audit.parquet` ({by}), from {found['annotators']} annotators "
             "(pseudonyms: a keyed hash of the account, the same in every release), each with its answer, time and "
             "the journal snapshot it was counted from. Only registered annotators count, and only answers "
             "that their author handed in and nobody changed afterwards.", ""]
    if found["uncounted"]:
        lines += ["Answers not counted (the question went back for a fresh answer):", "",
                  _table(["code", "reason", "answers"],
                         [(code, reason_label(code).label, n) for code, n in sorted(found["uncounted"].items())])]
    else:
        lines.append("No answer had to be set aside (none changed by another account or after it was seen, none "
                     "from an unregistered account).")
    return lines


def _cost_line(cost: dict[str, Any] | None) -> str:
    if not cost:
        return ""
    per = cost.get("annotations_per_accepted")
    return (f"Annotation cost: {cost['annotations']} counted annotations, "
            f"**{per:.2f}** per accepted question" if per is not None else
            f"Annotation cost: {cost['annotations']} counted annotations, no accepted question") + (
        f"; {cost['annotations_saved']} annotations saved by stopping questions at their first "
        "disagreement.")


def render_card(cfg: ReleaseConfig, metrics: dict[str, Any], details: dict[str, Any]) -> str:
    """The Markdown dataset card (YAML front matter in the Hugging Face card layout)."""
    splits = details["index"]["splits"]
    present = [s for s in SPLITS if splits[s]["shards"]]
    front = ["---", f"pretty_name: {cfg.name}", "configs:", "- config_name: default", "  data_files:"]
    front += [f"  - split: {s}\n    path: data/{s}/*.parquet" for s in present]
    front += ["---", ""]
    rel, con = metrics["released"], metrics["consensus"]
    prov = details["provenance"]
    parts = [
        f"# {cfg.name} — multi-hop visual reasoning dataset",
        "",
        "Questions chain 3–6 hops over the instances of one image and end in one number. Only questions "
        "that four annotators answered identically are released; the released answer is that human "
        "consensus.",
        "",
        *_simulation_notice(metrics.get("answers_source")),
        "## Contents",
        _table(["", "train", "eval", "total"], [
            ["questions", rel["train_questions"], rel["eval_questions"], rel["questions"]],
            ["images", rel["train_images"], rel["eval_images"], rel["images"]],
        ]),
        "",
        f"Instances in released images: {rel['instances']}; categories: {rel['categories']}; "
        f"Parquet shards: {rel['shards']}; mean hops: {metrics['mean_hops']}.",
        "The split is by image (no image is in both splits).",
        "",
        "## Agreement statistics",
        _table(["status", "questions"], [[k, con[k]] for k in ("accepted", "rejected", "pending", "total")]),
        "",
        f"Acceptance rate (accepted / decided): **{metrics['acceptance_rate']:.3f}**. "
        f"Generator precision (generated answer = human consensus, over accepted): "
        f"**{metrics['generator_precision']:.3f}**."
        + (f" Mean reference-model pass rate: {metrics['pass_rate_mean']:.3f}." if "pass_rate_mean" in metrics else ""),
        "",
        _cost_line(metrics.get("annotation_cost")),
        "",
        _table(["distinct answers per decided question", "questions"],
               sorted(details["distinct_answers"].items())) if details["distinct_answers"] else "",
        "",
        _table(["rejection reason", "questions"], details["reject_reasons"].most_common())
        if details["reject_reasons"] else "No rejected questions.",
        "",
        "## Who answered",
        _source_line(metrics.get("answers_source")),
        "",
        *_integrity_lines(metrics.get("integrity")),
        "",
        "![agreement](card/agreement.png)",
        "",
        "## Hop lengths",
        "![hop lengths](card/hop_lengths.png)",
        "",
        "## Answers",
        _balance_line(metrics.get("answer_balance")),
        "",
        "![answers](card/answers.png)",
        "",
        "## Categories",
        "![categories](card/categories.png)",
        "",
        "## Model versions",
        _table(["question generator", "released questions"], sorted(details["generators"].items())),
        "",
        _table(["instance source", "instances"], sorted(details["instance_sources"].items())),
        "",
        "## Source runs",
        ("Run ids: " + ", ".join(f"`{r}`" for r in prov.get("run_ids", []))) if prov.get("run_ids")
        else "Run ids: none recorded.",
        "",
        _table(["input", "source"], sorted(prov.get("sources", {}).items())) if prov.get("sources") else "",
        "",
        "## Withdrawn after release",
        _table(["code", "reason", "questions"], _labelled(details["removed"])) if details["removed"]
        else "No released question has been withdrawn.",
        "(`data/removals.parquet` lists them; the shards of this tag no longer hold them.)",
        "",
        "## Dropped",
        _table(["code", "reason", "questions"], _labelled(details["dropped"])) if details["dropped"]
        else "No accepted question was dropped.",
        "",
        "## Files",
        "- `data/<split>/part-NNNNN-MMMMM[-rNNNNN].parquet`: one row per question with the image bytes "
        "(`image` = {bytes, path}), `question`, `answer` (canonical decimal string), `answer_value`, "
        "`num_hops`, `hops` (JSON hop program), `variant`, `generator`. Each release adds a part; earlier "
        "files never change (a withdrawal replaces only the shard that held the question).",
        "- `data/removals.parquet`: questions withdrawn after release; `data/meta/part-NNNNN/`: the "
        "part's contract tables (decisions, questions, instances, manifest), `audit.parquet` (per counted "
        "answer: annotator pseudonym, person or simulated, answer, time, journal snapshot) and "
        "`uncounted.parquet` (answers not counted, by reason code).",
        "- `release/coco/<split>/part-NNNNN.json`: COCO instances (compressed RLE masks) of the part's images.",
        "- `metrics.json`: the numbers above (`dvc metrics diff` compares releases).",
        "",
        "## Usage",
        "```bash",
        "git clone <registry> && cd <registry> && git checkout <tag>",
        "AWS_ACCESS_KEY_ID=... AWS_SECRET_ACCESS_KEY=... dvc pull",
        "```",
        "```python",
        "import datasets, os",
        'ds = datasets.load_dataset(os.getcwd())  # this card\'s configs: ' + ", ".join(present),
        "```",
        "",
        "Every row is ready for TRL's `GRPOTrainer` (`prompt` + `images`, reward "
        "`pipelines.reward.trl_reward`) and for verl (`data.prompt_key=verl_prompt`, `data.image_key=images`, "
        "`reward.custom_reward_function.path=pipelines/reward.py`, `name=compute_score`); the platform's "
        "`docs/releases.md` has both commands. Needs " + ", ".join(
            f"{dist} >= {'.'.join(map(str, v))}" for dist, v in MIN_VERSIONS.items()) + ".",
        "",
        f"**Reward: `{details.get('reward_version', '')}`** (`pipelines/reward.py` at this tag, standard library "
        "only; its docstring states the rules): the last explicit final answer outside any `<think>` block "
        "(`Answer: n`, `\\boxed{n}`, \"the answer is n\"), exactly one number in it, compared exactly; no "
        "explicit answer scores 0 unless the completion is only a number. Each row's "
        "`extra_info.reward_version` is the version current when its part was published; score every row "
        "with this tag's file.",
        "",
    ]
    return "\n".join(front + parts)


def write_card(data: Path, release: Path, out: Path, metrics_file: Path, cfg: ReleaseConfig,
               readme: Path | None = None) -> dict[str, Any]:
    """Write ``metrics_file``, the plots folder ``out`` (replaced atomically) and the card ``readme``
    (default ``<out>/../README.md``); returns the metrics."""
    metrics, details = compute_metrics(Path(data), Path(release))
    out = Path(out)
    with replacing_folder(out) as tmp:
        _plots(tmp, details, metrics)
    write_atomic(Path(readme) if readme else out.parent / "README.md", render_card(cfg, metrics, details))
    write_atomic(Path(metrics_file), json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    return metrics


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines.release.card", description=__doc__.split("\n")[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--data", default="data")
    parser.add_argument("--release", default="release")
    parser.add_argument("--out", default="card")
    parser.add_argument("--readme", default="README.md")
    parser.add_argument("--metrics", default="metrics.json")
    args = parser.parse_args(argv)
    metrics = write_card(Path(args.data), Path(args.release), Path(args.out), Path(args.metrics),
                         read_release_config(args.params), Path(args.readme))
    print(f"card written to {args.out}: {metrics['released']['questions']} questions released")
    return 0


if __name__ == "__main__":
    sys.exit(main())
