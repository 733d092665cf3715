"""Ablation variants of a full program: ``half`` (a half-length chain) and ``single`` (one hop).

Definitions (docs/hop-programs.md, "Ablation variants"):

* ``half``: the longest *prefix closure* of the full program with between 3 and
  ``max(3, ceil(L / 2) + 1)`` hops, and strictly fewer than ``L``. A prefix closure keeps the
  first ``m`` hops and closes them with one numeric hop: a set-valued last hop is counted
  (``count``); an instance picked by ``extreme`` from a set is ranked in that set (``rank`` by a
  key other than the one ``extreme`` used, options tried in a fixed order); a number-valued last
  hop closes itself; an instance from ``nearest`` or ``unique`` cannot be closed (its rank would
  be constant). The closure must pass every structure rule, margin and leakage check.
  Programs of 3 hops have no half variant.
* ``single``: ``find(c0) -> count``, the number of instances of the full program's anchor
  category ``c0`` — one perception hop on the same image and the same category. It has 2 hops:
  the contract's 3..6 applies to ``full``; ``half`` has 3..5 hops and ``single`` exactly 2.

Variant text is rendered from the same templates (seeded by the full question's id).
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

from pipelines.questions import program as P
from pipelines.questions.degenerate import check_not_degenerate
from pipelines.questions.generator import Question, make_question
from pipelines.questions.leakage import check_needs_image, check_text
from pipelines.questions.program import Hop, Margins, ProgramError
from pipelines.questions.scene import Scene
from pipelines.questions.templates import render

VARIANT_HOPS = {"full": (3, 6), "half": (3, 5), "single": (2, 2)}


def _closures(hops: Sequence[Hop], m: int) -> list[list[Hop]]:
    prefix = [Hop(h.op, h.args, h.inputs) for h in hops[:m]]
    last = prefix[-1]
    kind = P.output_type(last)
    if kind == "number":
        return [prefix]
    if kind == "set":
        return [[*prefix, Hop("count", {}, (m - 1,))]]
    if last.op == "extreme":
        return [
            [*prefix, Hop("rank", {"key": k, "order": o}, (m - 1, last.inputs[0]))]
            for k in P.KEYS
            for o in P.ORDERS
            if k != last.args["key"]
        ]
    return []


def _finish(
    image_id: str, hops: list[Hop], scene: Scene, variant: str, rng: random.Random, m: Margins
) -> Question | None:
    lo, hi = VARIANT_HOPS[variant]
    try:
        done = P.execute(hops, scene, m, min_hops=lo, max_hops=hi)
        check_needs_image(done)
        check_not_degenerate(done)
        text = render(done, rng)
        check_text(text, done)
    except ProgramError:
        return None
    return make_question(image_id, done, text, variant=variant)


def half_variant(full: Question, scene: Scene, margins: Margins = P.DEFAULT_MARGINS) -> Question | None:
    """The ``half`` variant of ``full`` on ``scene``, or ``None`` if no valid closure exists."""
    n = len(full.hops)
    target = min(max(3, math.ceil(n / 2) + 1), n - 1)
    rng = random.Random(f"half:{full.question_id}")
    for m in range(target, 0, -1):
        for cand in _closures(full.hops, m):
            if 3 <= len(cand) <= target:
                q = _finish(full.image_id, cand, scene, "half", rng, margins)
                if q is not None:
                    return q
    return None


def single_variant(full: Question, scene: Scene, margins: Margins = P.DEFAULT_MARGINS) -> Question | None:
    """The ``single`` variant: how many instances of the anchor category (``None`` if > max_count)."""
    hops = [Hop("find", dict(full.hops[0].args), ()), Hop("count", {}, (0,))]
    return _finish(full.image_id, hops, scene, "single", random.Random(f"single:{full.question_id}"), margins)


def derive_variants(
    questions: Sequence[Question],
    scenes: dict[str, Scene],
    variants: Sequence[str],
    margins: Margins = P.DEFAULT_MARGINS,
) -> tuple[list[Question], int]:
    """Variants (besides ``full``) of every full question; duplicates (same question_id) are kept
    once. Returns (variant questions, number that could not be derived)."""
    out: list[Question] = []
    seen = {q.question_id for q in questions}
    missing = 0
    for q in questions:
        for v in variants:
            if v == "full":
                continue
            fn = half_variant if v == "half" else single_variant
            d = fn(q, scenes[q.image_id], margins)
            if d is None:
                missing += 1
            elif d.question_id not in seen:
                seen.add(d.question_id)
                out.append(d)
    return out, missing
