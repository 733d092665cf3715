"""The program generator: seeded, deterministic multi-hop questions over scenes.

Programs are grown from a small grammar (docs/hop-programs.md, "Generator"):

    anchor   = find(c0) -> extreme(key, order)                      (instance A, from set c0)
    step     = nearest(c)                                           (1 hop)
             | relate(relation, c) -> extreme(key, order)           (2 hops)
    terminal = rank(key, order) of the current instance in its source set        (1 hop)
             | relate(relation, c) -> count                                       (2 hops)
             | arith(fn) of two of {rank, relate->count, count(c0)}               (1 + both)

A *perception* program has no step; an *instance-chain* program has at least one (A -> B -> C).
Each hop is filled by trying its options in a seeded random order and keeping the first that
executes within every margin, so the cost per image is bounded by (options x hops) and the only
per-scene quadratic work is the pairwise distance matrix.

Per image the RNG is seeded from (seed, image_id): an image's candidates do not depend on the
other images in the batch. Batch-level answer balancing is deterministic given the batch.
"""

from __future__ import annotations

import hashlib
import itertools
import random
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pipelines.questions import program as P
from pipelines.questions.leakage import check_needs_image, check_text
from pipelines.questions.program import Hop, Margins, ProgramError
from pipelines.questions.scene import Scene
from pipelines.questions.templates import render

GENERATOR_NAME = "program:v1"

# ------------------------------------------------------------------------------------ records


@dataclass(frozen=True)
class Question:
    """One row of the ``questions`` contract (hops executed, answer canonical)."""

    question_id: str
    image_id: str
    question: str
    answer: str
    hops: tuple[Hop, ...]
    generator: str = GENERATOR_NAME
    variant: str = "full"
    pass_rate: float | None = None

    @property
    def num_hops(self) -> int:
        return len(self.hops)

    @property
    def family(self) -> str:
        """``instance_chain`` if any hop is an instance-chain hop, else ``perception``."""
        return "instance_chain" if any(h.kind == "instance_chain" for h in self.hops) else "perception"

    def to_row(self) -> dict[str, Any]:
        return {
            "question_id": self.question_id,
            "image_id": self.image_id,
            "question": self.question,
            "answer": self.answer,
            "num_hops": self.num_hops,
            "hops": P.program_to_json(self.hops),
            "generator": self.generator,
            "variant": self.variant,
            "pass_rate": self.pass_rate,
        }

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Question:
        return cls(
            question_id=row["question_id"],
            image_id=row["image_id"],
            question=row["question"],
            answer=row["answer"],
            hops=tuple(P.program_from_json(row["hops"])),
            generator=row.get("generator") or GENERATOR_NAME,
            variant=row.get("variant") or "full",
            pass_rate=row.get("pass_rate"),
        )


def make_question(
    image_id: str, hops: Sequence[Hop], text: str, *, generator: str = GENERATOR_NAME, variant: str = "full"
) -> Question:
    """A :class:`Question` from executed hops (answer and id derived, never given)."""
    return Question(
        P.question_id(image_id, hops), image_id, text, P.answer_of(hops), tuple(hops), generator, variant
    )


@dataclass
class GenerationStats:
    """Counters of one generation run (what was tried, what was dropped and why)."""

    images: int = 0
    attempts: int = 0
    built: int = 0
    failed_plans: int = 0
    duplicates: int = 0
    leakage: int = 0
    candidates: int = 0
    selected: int = 0
    balanced_out: int = 0
    balance_unattainable: bool = False
    reasons: Counter = field(default_factory=Counter)


# ------------------------------------------------------------------------------------ plans

_COST = {"N": 1, "RE": 2, "K": 1, "RC": 2, "C0": 1}


def _terminal_cost(t: tuple[str, ...]) -> int:
    return 1 + _COST[t[1]] + _COST[t[2]] if t[0] == "A" else _COST[t[0]]


def _enumerate_plans() -> dict[int, dict[str, list[tuple[tuple[str, ...], tuple[str, ...]]]]]:
    """All (steps, terminal) plans by total length (3..6) and family."""
    terminals: list[tuple[str, ...]] = [("K",), ("RC",)]
    for a in ("K", "RC", "C0"):
        for b in ("K", "RC", "C0"):
            if a != b:
                terminals.append(("A", a, b))
    step_seqs = [seq for k in range(3) for seq in itertools.product(("N", "RE"), repeat=k)]
    plans: dict[int, dict[str, list]] = {n: {"perception": [], "instance_chain": []} for n in range(3, 7)}
    for steps in step_seqs:
        for t in terminals:
            uses_k = "K" in t
            if uses_k and steps and steps[-1] == "N":
                continue  # an instance found by `nearest` has no source set to be ranked in
            if t[0] == "A" and steps:
                continue  # keep arithmetic to perception programs: chains are long enough already
            n = 2 + sum(_COST[s] for s in steps) + _terminal_cost(t)
            if 3 <= n <= 6:
                plans[n]["instance_chain" if steps else "perception"].append((steps, t))
    return plans


PLANS = _enumerate_plans()

# ------------------------------------------------------------------------------------ building


class _Builder:
    """Grows one program hop by hop, each hop executed on the spot (positions internally)."""

    def __init__(self, scene: Scene, rng: random.Random, m: Margins) -> None:
        self.scene, self.rng, self.m = scene, rng, m
        self.hops: list[Hop] = []
        self.res: list[Any] = []

    def add(self, op: str, args: dict[str, Any], inputs: tuple[int, ...], result: Any) -> int:
        self.hops.append(Hop(op, args, inputs))
        self.res.append(result)
        return len(self.hops) - 1

    def shuffled(self, items: Iterable[Any]) -> list[Any]:
        out = list(items)
        self.rng.shuffle(out)
        return out

    def extreme(self, src: int, avoid_key: str | None = None) -> int | None:
        s = self.res[src]
        if s.shape[0] < 2:
            return None
        for key, order in self.shuffled((k, o) for k in P.KEYS for o in P.ORDERS):
            try:
                r = P.op_extreme(self.scene, s, key, order, self.m)
            except ProgramError:
                continue
            return self.add("extreme", {"key": key, "order": order}, (src,), r)
        return None

    def relate(self, a: int, *, min_size: int) -> int | None:
        sc = self.scene
        pa = int(self.res[a][0])
        cats = [c for c, ps in sc.by_category.items() if ps.shape[0] > (1 if sc.categories[pa] == c else 0)]
        for rel, cat in self.shuffled((r, c) for r in P.RELATIONS for c in cats):
            try:
                r = P.op_relate(sc, self.res[a], rel, cat, self.m)
            except ProgramError:
                continue
            if r.shape[0] < min_size or r.shape[0] > self.m.max_count:
                continue
            return self.add("relate", {"relation": rel, "category": cat}, (a,), r)
        return None

    def nearest(self, a: int) -> int | None:
        sc = self.scene
        pa = int(self.res[a][0])
        cats = [c for c, ps in sc.by_category.items() if ps.shape[0] > (1 if sc.categories[pa] == c else 0)]
        for cat in self.shuffled(cats):
            try:
                r = P.op_nearest(sc, self.res[a], cat, self.m)
            except ProgramError:
                continue
            return self.add("nearest", {"category": cat}, (a,), r)
        return None

    def rank(self, x: int) -> int | None:
        hx = self.hops[x]
        if hx.op != "extreme":
            return None
        src = hx.inputs[0]
        for key, order in self.shuffled((k, o) for k in P.KEYS for o in P.ORDERS if k != hx.args["key"]):
            try:
                r = P.op_rank(self.scene, self.res[x], self.res[src], key, order, self.m)
            except ProgramError:
                continue
            return self.add("rank", {"key": key, "order": order}, (x, src), r)
        return None

    def count(self, s: int) -> int | None:
        try:
            n = P.op_count(self.res[s], self.m)
        except ProgramError:
            return None
        return self.add("count", {}, (s,), n)

    def terminal(self, t: str, x: int) -> int | None:
        if t == "K":
            return self.rank(x)
        if t == "RC":
            s = self.relate(x, min_size=0)
            return None if s is None else self.count(s)
        if t == "C0":
            return self.count(0)
        raise ValueError(t)

    def build(self, category: str, steps: tuple[str, ...], terminal: tuple[str, ...]) -> list[Hop] | None:
        self.add("find", {"category": category}, (), self.scene.by_category[category])
        x = self.extreme(0)
        if x is None:
            return None
        for step in steps:
            if step == "N":
                x = self.nearest(x)
            else:
                s = self.relate(x, min_size=2)
                x = None if s is None else self.extreme(s)
            if x is None:
                return None
        if terminal[0] == "A":
            a = self.terminal(terminal[1], x)
            b = None if a is None else self.terminal(terminal[2], x)
            if a is None or b is None:
                return None
            fn = self.rng.choice(P.ARITH_FNS)
            if fn == "sub" and self.res[a] < self.res[b]:
                a, b = b, a  # keep differences non-negative: "A minus B" with A >= B
            self.add("arith", {"fn": fn}, (a, b), P.op_arith(self.res[a], self.res[b], fn))
        elif self.terminal(terminal[0], x) is None:
            return None
        kinds = P.hop_kinds(self.hops)
        out = []
        ids = self.scene.ids
        for h, r, k in zip(self.hops, self.res, kinds, strict=True):
            v = r if isinstance(r, (int, float)) else sorted(ids[r].tolist())
            out.append(Hop(h.op, h.args, h.inputs, k, v))
        return out


def image_rng(seed: int, image_id: str) -> random.Random:
    """The per-image RNG: a function of (seed, image_id) only."""
    return random.Random(int.from_bytes(hashlib.sha256(f"{seed}:{image_id}".encode()).digest()[:8], "big"))


def scene_candidates(
    scene: Scene,
    n_wanted: int,
    *,
    seed: int = 0,
    min_hops: int = 3,
    max_hops: int = 6,
    margins: Margins = P.DEFAULT_MARGINS,
    stats: GenerationStats | None = None,
    max_attempts_factor: int = 4,
) -> list[Question]:
    """Up to ``n_wanted`` distinct, verified, leak-free full-variant questions for one scene.

    Distinct = neither the same program nor the same text as another candidate of this image.
    """
    stats = stats if stats is not None else GenerationStats()
    rng = image_rng(seed, scene.image_id)
    anchors = sorted(c for c, ps in scene.by_category.items() if ps.shape[0] >= 2)
    if not anchors:
        stats.reasons["no_category_with_two_instances"] += 1
        return []
    by_family: dict[str, list[int]] = {}
    for n in range(min_hops, max_hops + 1):
        for fam, plans in PLANS[n].items():
            if plans:
                by_family.setdefault(fam, []).append(n)
    families = sorted(by_family)
    out: list[Question] = []
    seen_prog: set[tuple] = set()
    seen_text: set[str] = set()
    for _ in range(n_wanted * max_attempts_factor):
        if len(out) >= n_wanted:
            break
        stats.attempts += 1
        family = rng.choice(families)  # both families equally often, then a length within it
        n = rng.choice(by_family[family])
        steps, terminal = rng.choice(PLANS[n][family])
        hops = _Builder(scene, rng, margins).build(rng.choice(anchors), steps, terminal)
        if hops is None:
            stats.failed_plans += 1
            continue
        stats.built += 1
        canon = tuple(P.hop_key(h) for h in hops)
        if canon in seen_prog:
            stats.duplicates += 1
            continue
        text = render(hops, rng)
        if text in seen_text:
            stats.duplicates += 1
            continue
        try:
            check_needs_image(hops)
            check_text(text, hops)
        except ProgramError as err:
            stats.leakage += 1
            stats.reasons[err.reason] += 1
            continue
        seen_prog.add(canon)
        seen_text.add(text)
        out.append(make_question(scene.image_id, hops, text))
    stats.candidates += len(out)
    return out


# ------------------------------------------------------------------------------------ balancing


def answer_cap(counts: Counter, max_share: float) -> int | None:
    """The largest per-answer cap X with X <= max_share * sum(min(c, X)); None if none exists
    (fewer than 1/max_share distinct answers: the share cannot be met by dropping alone)."""
    if not counts:
        return None
    best = None
    for x in range(1, max(counts.values()) + 1):
        if x <= max_share * sum(min(c, x) for c in counts.values()) + 1e-9:
            best = x
    return best


def select_balanced(
    per_image: Sequence[list[Question]],
    cap_per_image: int,
    max_share: float,
    stats: GenerationStats | None = None,
) -> tuple[list[Question], list[Question]]:
    """Pick up to ``cap_per_image`` questions per image so that no answer value exceeds
    ``max_share`` of the batch whenever that is attainable.

    Greedy: each image takes, one at a time, its candidate whose answer is rarest so far in the
    batch; then over-represented answers are trimmed to the cap (from the images holding the most
    questions) and freed slots are refilled from unused candidates that keep every share within
    the limit. Returns (selected, balanced_out) in a deterministic order.
    """
    stats = stats if stats is not None else GenerationStats()
    counts: Counter = Counter()
    chosen: list[list[Question]] = []
    spare: list[list[Question]] = []
    for cands in per_image:
        pool = list(cands)
        mine: list[Question] = []
        while pool and len(mine) < cap_per_image:
            best = min(range(len(pool)), key=lambda i: (counts[pool[i].answer], i))
            q = pool.pop(best)
            mine.append(q)
            counts[q.answer] += 1
        chosen.append(mine)
        spare.append(pool)
    dropped: list[Question] = []
    cap = answer_cap(counts, max_share)
    if cap is None:
        stats.balance_unattainable = len(counts) > 1
    else:
        for value in sorted(counts, key=lambda v: (-counts[v], v)):
            while counts[value] > cap:
                img = max(
                    (i for i, qs in enumerate(chosen) if any(q.answer == value for q in qs)),
                    key=lambda i: (len(chosen[i]), -i),
                )
                j = max(k for k, q in enumerate(chosen[img]) if q.answer == value)
                dropped.append(chosen[img].pop(j))
                counts[value] -= 1
        total = sum(counts.values())
        for i, pool in enumerate(spare):
            keep: list[Question] = []
            for q in pool:
                if (
                    len(chosen[i]) < cap_per_image
                    and counts[q.answer] + 1 <= max_share * (total + 1)
                    and (max(counts.values(), default=0) <= max_share * (total + 1))
                ):
                    chosen[i].append(q)
                    counts[q.answer] += 1
                    total += 1
                else:
                    keep.append(q)
            spare[i] = keep
        refilled = {id(q) for qs in chosen for q in qs}
        dropped = [q for q in dropped if id(q) not in refilled]
    selected = [q for qs in chosen for q in qs]
    stats.selected += len(selected)
    stats.balanced_out += len(dropped)
    return selected, dropped


@dataclass
class GenerationResult:
    questions: list[Question]
    balanced_out: list[Question]
    stats: GenerationStats


def generate(
    scenes: Sequence[Scene],
    *,
    seed: int = 0,
    per_image: int = 6,
    min_hops: int = 3,
    max_hops: int = 6,
    max_share: float = 0.35,
    margins: Margins = P.DEFAULT_MARGINS,
    oversample: int = 2,
) -> GenerationResult:
    """Full-variant questions for a batch of scenes (deterministic for a given batch and seed)."""
    stats = GenerationStats(images=len(scenes))
    per = [
        scene_candidates(
            s,
            per_image * oversample,
            seed=seed,
            min_hops=min_hops,
            max_hops=max_hops,
            margins=margins,
            stats=stats,
        )
        for s in scenes
    ]
    selected, dropped = select_balanced(per, per_image, max_share, stats)
    return GenerationResult(selected, dropped, stats)


def answer_shares(questions: Iterable[Question]) -> dict[str, float]:
    """Share of each answer value in ``questions`` (for reports and tests)."""
    c = Counter(q.answer for q in questions)
    total = sum(c.values())
    return {k: v / total for k, v in c.most_common()} if total else {}


__all__ = [
    "GENERATOR_NAME",
    "PLANS",
    "GenerationResult",
    "GenerationStats",
    "Question",
    "answer_cap",
    "answer_shares",
    "generate",
    "image_rng",
    "make_question",
    "scene_candidates",
    "select_balanced",
]
