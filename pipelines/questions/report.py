"""Measures of a batch of questions, for the stage's stats, the bench and the dataset card.

* ``skeletons``: distinct program shapes (:func:`~pipelines.questions.program.skeleton`);
* ``both_kinds``: share of full questions with an instance-chain and a perception-level hop;
* ``zero_share``: share of answers equal to 0; ``answer_entropy``: Shannon entropy (bits) of the
  answer distribution;
* ``prior_accuracy``: the model-free language-prior baseline — the accuracy of answering every
  question with the most common answer of its program skeleton, estimated leave-one-out (lower is
  better: a high value means the shape of the question gives the answer away).
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Sequence
from typing import Any

from pipelines.questions import program as P


def prior_accuracy(rows: Sequence[tuple[str, str]], groups: Sequence[str] | None = None) -> float:
    """Accuracy of guessing each question's answer as the most common answer among the *other*
    questions of its skeleton (leave-one-out; the batch's most common answer when the question is
    its skeleton's only one), over ``(skeleton, answer)`` pairs. Leave-one-out, so that many small
    skeleton groups do not score their own answers. With ``groups`` (one per row, e.g. the image),
    the whole group is left out, not only the question: a split held out by group."""
    by: dict[str, Counter] = defaultdict(Counter)
    by_group: dict[tuple[str, str], Counter] = defaultdict(Counter)
    overall: Counter = Counter()
    keys = list(groups) if groups is not None else [str(i) for i in range(len(rows))]
    for (sk, ans), g in zip(rows, keys, strict=True):
        by[sk][ans] += 1
        by_group[(sk, g)][ans] += 1
        overall[ans] += 1
    if not rows:
        return 0.0
    fallback = overall.most_common(1)[0][0]
    hits = 0
    for (sk, ans), g in zip(rows, keys, strict=True):
        others = by[sk] - by_group[(sk, g)]
        guess = max(sorted(others), key=lambda a: others[a]) if others else fallback
        hits += guess == ans
    return hits / len(rows)


def entropy_bits(values: Sequence[str]) -> float:
    c = Counter(values)
    n = sum(c.values())
    return -sum(v / n * math.log2(v / n) for v in c.values()) if n else 0.0


def question_report(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Measures of questions given as contract rows (``hops`` JSON, ``answer``, ``variant``)."""
    full = [r for r in rows if (r.get("variant") or "full") == "full"]
    programs = [P.program_from_json(r["hops"]) for r in full]
    skeletons = [P.skeleton(h) for h in programs]
    answers = [str(r["answer"]) for r in full]
    n = len(full)
    return {
        "questions": n,
        "skeletons": len(set(skeletons)),
        "both_kinds": sum(P.has_both_kinds(h) for h in programs) / n if n else 0.0,
        "zero_share": answers.count("0") / n if n else 0.0,
        "answer_entropy": round(entropy_bits(answers), 3),
        "prior_accuracy": round(prior_accuracy(list(zip(skeletons, answers, strict=True))), 4),
        "by_num_hops": dict(sorted(Counter(len(h) for h in programs).items())),
        "ops": dict(Counter(h.op for prog in programs for h in prog).most_common()),
    }
