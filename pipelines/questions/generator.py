"""The program generator: seeded, deterministic multi-hop questions over scenes.

Every full program chains from one instance to another *and* has a perception-level hop
(docs/hop-programs.md, "Generator"). Programs are grown from a small grammar:

    anchor   = find(c0) -> extreme                         "the largest cup"          (X, 2 hops)
             | find(c0) -> unique                          "the bottle"               (U, 2)
             | find(c0) -> filter_color -> unique          "the red cup"              (CU, 3)
             | find(c0) -> filter_color -> extreme         "the largest red cup"      (CX, 3)
    step     = nearest(c)                                  "the dog nearest to A"     (N, 1)
             | relate(r, c) -> extreme | unique            (RE / RU, 2)
             | same_color(c) -> extreme | unique           (SE / SU, 2)
    terminal = rank of the current instance in a set holding it              (K, 1)
             | relate(r, c) -> count | same_color(c) -> count               (RC / SC, 2)
             | relate_group(r, [c1, .., ck]) -> count, 2 <= k <= 4          (G, 2)
             | arith(fn) of two of {K, RC, SC, count(c0), count(filter_color(c0))}, or of
               two ranks of the current instance by different keys         (1 + both)

with at least one step, 4..6 hops in all (3 hops cannot chain: the shortest chain is
find -> extreme -> nearest(c0) -> rank). ``G`` counts over a *named group* (any 2..4 categories),
so a scene of singletons and pairs still has counts among three or more candidates. An attempt
draws an arithmetic plan with probability :data:`ARITH_SHARE` when the scene has one (they are few
among the plans, and they reach the answers counts and ranks alone do not), until
:data:`ARITH_GIVE_UP` of them failed on the scene with none built.

Each hop is filled by trying its options in a seeded
random order and keeping the first that executes within every margin and reach rule, so the
cost per image is bounded by (options x hops); the only per-scene quadratic work is the pairwise
distance matrix (and the box overlaps of the scene build).

Per image the RNG is seeded from (seed, image_id): an image's candidates do not depend on the
other images in the batch. Batch-level answer balancing is deterministic given the batch.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import random
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from pipelines.questions import program as P
from pipelines.questions.candidates import MIN_CANDIDATES, check_candidates, few_candidates
from pipelines.questions.leakage import check_needs_image, check_text
from pipelines.questions.ops import OPS
from pipelines.questions.ops.spec import GROUP_ARG, GROUP_SIZES
from pipelines.questions.program import Hop, Margins, ProgramError
from pipelines.questions.scene import Scene
from pipelines.questions.shape_canon import check_not_degenerate
from pipelines.questions.stability import (
    Doubt,
    Perturbations,
    UnstableError,
    check_stable,
    missed_in_rank,
    missed_refusal,
)
from pipelines.questions.templates import render

GENERATOR_NAME = "program:v2"

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

    @functools.cached_property
    def skeleton(self) -> str:  # the balancer reads it in its inner loops: made once per question
        return P.skeleton(self.hops)

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
    same_answer: int = 0  # candidates not kept: their image had enough with that answer already
    unstable: int = 0  # candidates refused by the stability check
    checked: int = 0  # candidates the stability check ran on (with generate(): only those the balancer selected)
    balance_unattainable: bool = False
    answer_share_used: float = 0.0  # the share cap the balancer could meet (max_answer_share or above)
    # (question_id, why, image_id) of each candidate refused as unstable.perception: the stage's reject rows
    unstable_questions: list[tuple[str, str, str]] = field(default_factory=list)
    reasons: Counter = field(default_factory=Counter)  # refusals of built programs
    attempt_reasons: Counter = field(default_factory=Counter)  # why each failed attempt failed
    no_question: dict[str, Counter] = field(default_factory=dict)  # image -> reasons, images without one


# ------------------------------------------------------------------------------------ plans

ANCHORS = {"X": 2, "U": 2, "CU": 3, "CX": 3}
STEPS = {"N": 1, "RE": 2, "RU": 2, "SE": 2, "SU": 2}
TERMINALS = {"K": 1, "RC": 2, "SC": 2, "G": 2}
OPERANDS = {"K": 1, "RC": 2, "SC": 2, "C0": 1, "CF": 2}
#: operands that may appear twice in one arith (two ranks of one instance by different keys)
TWICE = ("K",)
#: the chance that an attempt draws an arithmetic plan (when the scene has any)
ARITH_SHARE = 0.7
ARITH_GIVE_UP = 4  # arithmetic plans that failed on a scene before it draws none (none built yet)
TERMINAL_GIVE_UP = 8  # the same for every other kind of terminal (K, RC, SC, G)
Plan = tuple[str, tuple[str, ...], tuple[str, ...]]


def _enumerate_plans() -> dict[int, list[Plan]]:
    """All (anchor, steps, terminal) plans by total length (4..6), each with at least one step."""
    terminals: list[tuple[tuple[str, ...], int]] = [((t,), c) for t, c in TERMINALS.items()]
    pairs = [*itertools.combinations(OPERANDS, 2), *((t, t) for t in TWICE)]
    for a, b in pairs:
        terminals.append((("A", a, b), 1 + OPERANDS[a] + OPERANDS[b]))
    plans: dict[int, list[Plan]] = {n: [] for n in range(3, 7)}
    for anchor, ca in ANCHORS.items():
        for k in (1, 2):
            for steps in itertools.product(STEPS, repeat=k):
                for t, ct in terminals:
                    n = ca + sum(STEPS[x] for x in steps) + ct
                    # a rank after a last `nearest` ranks in the anchor's category, which `U` names
                    # with one member: nearest(c0) has no candidate but the anchor itself
                    if n <= 6 and not (anchor == "U" and "K" in t and steps[-1] == "N"):
                        plans[n].append((anchor, steps, t))
    return plans


PLANS = _enumerate_plans()
GROUP_DRAWS = 3  # named groups drawn per group size
GROUP_TRIES = 12  # (relation, group) options tried per G terminal

# ------------------------------------------------------------------------------------ building


_SPECS = object()  # the memo's entry holding the registry's specs by name (memo keys are tuples otherwise)
#: a hop result the builder refuses: it names, counts or ranks among a doubtful member (see _Builder.doubtful)
DOUBTED = UnstableError("doubtful_member", "names, counts or ranks among a member the detector doubts")
#: a hop the missed-member rule refuses (stability.check_missed): a count or rank that has to assume too many
#: objects the detector likely missed, or a hop that depends on every member of a category likely hiding one
MISSES = UnstableError("missed_members", "depends on members the detector likely missed")
#: the ops whose result depends on every member of the set or category they read (stability.missed_refusal)
_DEPENDS_ON_ALL = frozenset({"nearest", "unique", "count", "rank", "extreme"})


def shuffled(rng: random.Random, items: Iterable[Any]) -> list[Any]:
    """``items`` as a list shuffled exactly as ``rng.shuffle`` would (same permutation, same draws from
    ``rng``: the generator's output depends on both), without ``Random``'s per-element method calls."""
    out = list(items)
    getrandbits = rng.getrandbits
    for i in range(len(out) - 1, 0, -1):  # Random.shuffle: j = _randbelow(i + 1) for i = n-1 .. 1
        n = i + 1
        k = n.bit_length()
        j = getrandbits(k)
        while j >= n:
            j = getrandbits(k)
        out[i], out[j] = out[j], out[i]
    return out


class _Draft(NamedTuple):
    """A hop while the builder grows the program (the fields of :class:`Hop` it reads): a tuple is made
    several times faster than the frozen dataclass, and most drafts are taken back."""

    op: str
    args: dict[str, Any]
    inputs: tuple[int, ...]


class _Builder:
    """Grows one program hop by hop, each hop executed (margins and reach checked) on the spot."""

    def __init__(
        self, scene: Scene, rng: random.Random, m: Margins, memo: dict | None = None, cats: list[str] | None = None,
        min_candidates: int = MIN_CANDIDATES, doubtful: np.ndarray | None = None,
        missed: np.ndarray | None = None, max_missed: float = 0.0, unreliable: dict[str, float] | None = None,
    ) -> None:
        self.scene, self.rng, self.m = scene, rng, m
        # positions a perturbation removes or merges (stability.Perturbations.doubtful): never named, nor
        # counted or ranked among (a perturbation that removes one changes, or may change, the hop's
        # result); None without the stability check
        self.doubtful = doubtful if doubtful is not None and doubtful.any() else None
        # per position, the objects like it the detector likely missed (stability.missed_weights): a count
        # or rank assuming more than max_missed of them is refused as the full check would; None: none
        self.missed = missed if missed is not None and missed.any() else None
        self.max_missed = max_missed
        # categories that likely hide members (stability.Perturbations.unreliable): found and narrowed,
        # but nothing may depend on all of their members (stability.missed_refusal); checked outside the
        # memo, since it depends on where a set came from, not only on its members
        self.unreliable = unreliable or {}
        self.min_candidates = min_candidates
        self.cats = cats if cats is not None else usable_categories(scene, m)
        # hop results by (op, args, input values), shared by the attempts on one scene: an op's
        # result, margins and reach (all but `revisit`) depend on nothing else
        self.memo: dict = memo if memo is not None else {}
        # the registry's specs by name, looked up once per scene (the memo lives as long as the scene's attempts)
        self.specs: dict[str, Any] = self.memo.get(_SPECS) or self.memo.setdefault(_SPECS, {s.name: s for s in OPS})
        self.hops: list[Any] = []  # _Draft records; Hop records only for the finished program
        self.res: list[Any] = []
        self.keys: list[Any] = []  # each result's memo key part (a set's positions as bytes), made once
        self.inst: list[int | None] = []  # the position an instance-valued hop names, else None
        self.named: set[int] = set()
        self.failures: Counter = Counter()  # why options were refused (the last failing hop's)
        self.c0 = ""

    # one hop ------------------------------------------------------------------------------------
    def run(self, op: str, args: dict[str, Any], inputs: tuple[int, ...]) -> Any:
        """Execute a candidate hop; its result, or ``None`` (reason counted)."""
        if not self.unreliable or op not in _DEPENDS_ON_ALL:
            return self._run(op, args, inputs)
        largest = op == "extreme" and args.get("key") == "area" and args.get("order") == "max"
        draft = [*self.hops, _Draft(op, args, inputs)]
        w = self.missed if self.missed is not None else np.zeros(self.scene.n)
        if not largest and missed_refusal(draft, len(self.hops), self.unreliable, w, self.max_missed) is not None:
            self.failures[MISSES.reason] += 1
            return None
        out = self._run(op, args, inputs)
        if out is not None and largest and missed_refusal(draft, len(self.hops), self.unreliable, w,
                                                          self.max_missed, int(out[0])) is not None:
            self.failures[MISSES.reason] += 1
            return None
        return out

    def _run(self, op: str, args: dict[str, Any], inputs: tuple[int, ...]) -> Any:
        # args in the builder's own order (another order only misses); sets by their positions' bytes
        keys = self.keys
        key = (op, tuple(args.items()), tuple([keys[j] for j in inputs]))
        hit = self.memo.get(key)
        if hit is None:
            spec = self.specs[op]
            ins = [self.res[j] for j in inputs]
            doubtful = self.doubtful
            missed = self.missed
            if doubtful is not None and (op == "count" or op == "rank") and doubtful[ins[op == "rank"]].any():
                hit = (DOUBTED, None)  # counts or ranks among a doubtful member: refused before it runs
            elif missed is not None and op == "count" and float(missed[ins[0]].sum()) > self.max_missed:
                hit = (MISSES, None)
            elif missed is not None and op == "rank" and missed_in_rank(
                    self.scene, missed, int(ins[0][0]), ins[1], args["key"], args["order"]) > self.max_missed:
                hit = (MISSES, None)
            else:
                try:
                    out = spec.run(self.scene, ins, args, self.m)  # P.run_op for a spec looked up once
                    P._check_reach(spec, args, ins, out, (), self.scene, self.m)
                    at = int(out[0]) if spec.output == "instance" else None
                    # an instance the detector doubts is never named
                    hit = (DOUBTED, None) if at is not None and doubtful is not None and doubtful[at] else (out, at)
                except ProgramError as err:
                    hit = (err.with_traceback(None), None)  # no frames kept alive (and no cycle) by the memo
            self.memo[key] = hit
        out, instance = hit
        if out.__class__ is np.ndarray or not isinstance(out, ProgramError):
            if instance is not None and instance in self.named:
                self.failures["reach.revisit"] += 1
                return None
            return out
        self.failures[out.reason] += 1
        return None

    def add(self, op: str, args: dict[str, Any], inputs: tuple[int, ...], result: Any) -> int:
        self.hops.append(_Draft(op, args, inputs))
        self.res.append(result)
        self.keys.append(result.tobytes() if isinstance(result, np.ndarray) else result)
        at = int(result[0]) if self.specs[op].output == "instance" else None
        self.inst.append(at)
        if at is not None:
            self.named.add(at)
        return len(self.hops) - 1

    def fair(self, i: int) -> bool:
        """Hop ``i`` (a count or rank) draws on enough candidates (:mod:`~pipelines.questions.candidates`);
        else it is removed and the refusal counted."""
        if few_candidates(self.hops, self.res, i, self.scene, self.min_candidates) is None:
            return True
        self.failures["reach.few_candidates"] += 1
        self.pop()
        return False

    def pop(self) -> None:
        self.hops.pop()
        self.res.pop()
        self.keys.pop()
        at = self.inst.pop()
        if at is not None:
            self.named.discard(at)

    def shuffled(self, items: Iterable[Any]) -> list[Any]:
        return shuffled(self.rng, items)

    def categories(self) -> list[str]:
        """The categories a hop may name (a copy: callers shuffle it)."""
        return list(self.cats)

    def colors_in(self, s: np.ndarray) -> list[str]:
        return sorted({self.scene.color[p] for p in s.tolist() if self.scene.color and self.scene.color[p]})

    # narrowing a set to one instance ------------------------------------------------------------
    def extreme(self, src: int) -> int | None:
        if self.res[src].shape[0] < 2:
            self.failures["plan.set_too_small"] += 1
            return None
        for key, order in self.shuffled((k, o) for k in P.KEYS for o in P.ORDERS):
            r = self.run("extreme", {"key": key, "order": order}, (src,))
            if r is not None:
                return self.add("extreme", {"key": key, "order": order}, (src,), r)
        return None

    def unique(self, src: int) -> int | None:
        r = self.run("unique", {}, (src,))
        return None if r is None else self.add("unique", {}, (src,), r)

    # anchors ------------------------------------------------------------------------------------
    def anchor(self, kind: str, need: int = 2) -> int | None:
        """Hops naming the first instance; ``need``: the members its category must have (not ``U``)."""
        sc = self.scene
        cats = self.categories()
        if kind == "U":
            cats = [c for c in cats if sc.by_category[c].shape[0] == 1]
        else:
            cats = [c for c in cats if sc.by_category[c].shape[0] >= need]
        if not cats:
            self.failures[f"plan.no_anchor_{kind.lower()}"] += 1
            return None
        for c0 in self.shuffled(cats)[:3]:
            self.c0 = c0
            self.add("find", {"category": c0}, (), sc.by_category[c0])
            if kind in ("X", "U"):
                x = self.extreme(0) if kind == "X" else self.unique(0)
                if x is not None:
                    return x
            else:
                for col in self.shuffled(self.colors_in(self.res[0])):
                    f = self.run("filter_color", {"color": col}, (0,))
                    if f is None or (kind == "CU") != (f.shape[0] == 1):
                        continue
                    fi = self.add("filter_color", {"color": col}, (0,), f)
                    x = self.unique(fi) if kind == "CU" else self.extreme(fi)
                    if x is not None:
                        return x
                    self.pop()
                self.failures["plan.no_color_anchor"] += 1
            while self.hops:
                self.pop()
        return None

    # steps --------------------------------------------------------------------------------------
    def step(self, kind: str, x: int, only: str | None = None) -> int | None:
        cats = self.categories() if only is None else [c for c in self.categories() if c == only]
        if kind == "N":
            pa = int(self.res[x][0])
            cats = [c for c in cats if self.scene.by_category[c].shape[0] > (self.scene.categories[pa] == c)]
            for cat in self.shuffled(cats):
                r = self.run("nearest", {"category": cat}, (x,))
                if r is not None:
                    return self.add("nearest", {"category": cat}, (x,), r)
            return None
        many = kind.endswith("E")
        if kind[0] == "R":
            options = [("relate", {"relation": rel, "category": c}) for rel in P.RELATIONS for c in cats]
        else:
            options = [("same_color", {"category": c}) for c in cats]
        for op, args in self.shuffled(options):
            r = self.run(op, args, (x,))
            if r is None or (r.shape[0] >= 2 if many else r.shape[0] == 1) is False:
                continue
            s = self.add(op, args, (x,), r)
            y = self.extreme(s) if many else self.unique(s)
            if y is not None:
                return y
            self.pop()
        return None

    # terminals ----------------------------------------------------------------------------------
    def rank(self, x: int) -> int | None:
        hx = self.hops[x]
        sets: list[tuple[int, str | None]] = []
        if hx.op == "extreme":
            sets.append((hx.inputs[0], hx.args["key"]))
        if self.scene.categories[int(self.res[x][0])] == self.c0 and all(s != 0 for s, _ in sets):
            sets.append((0, None))
        # a second rank of the instance (arith of two ranks) orders it by another key
        used = {h.args["key"] for h in self.hops if h.op == "rank" and h.inputs[0] == x}
        options = [(s, k, o) for s, avoid in sets for k in P.KEYS for o in P.ORDERS if k != avoid and k not in used]
        if options and all(self.res[s].shape[0] < self.min_candidates for s, _, _ in options):
            self.failures["reach.few_candidates"] += 1
            return None
        for s, key, order in self.shuffled(options):
            if self.res[s].shape[0] < max(2, self.min_candidates):
                continue
            r = self.run("rank", {"key": key, "order": order}, (x, s))
            if r is not None:
                k = self.add("rank", {"key": key, "order": order}, (x, s), r)
                if self.fair(k):
                    return k
        self.failures["plan.no_rank"] += 1
        return None

    def counted(self, op: str, x: int) -> int | None:
        # only categories with enough candidates besides the reference (pipelines.questions.candidates)
        ref_cat = self.scene.categories[int(self.res[x][0])]
        by = self.scene.by_category
        cats = [c for c in self.categories() if by[c].shape[0] - (c == ref_cat) >= self.min_candidates]
        if not cats:
            self.failures["reach.few_candidates"] += 1
            return None
        if op == "relate":
            options = [{"relation": rel, "category": c} for rel in P.RELATIONS for c in cats]
        else:
            options = [{"category": c} for c in cats]
        for args in self.shuffled(options):
            k = self.count_of(op, args, x)
            if k is not None:
                return k
        return None

    def count_of(self, op: str, args: dict[str, Any], x: int) -> int | None:
        """``op(args)`` on hop ``x`` (the reference instance, or a set to filter), then ``count`` over
        it, under the candidate rule; the count's hop, or ``None`` with both hops taken back."""
        r = self.run(op, args, (x,))
        if r is None:
            return None
        s = self.add(op, args, (x,), r)
        n = self.run("count", {}, (s,))
        if n is not None:
            k = self.add("count", {}, (s,), n)
            if self.fair(k):
                return k
        self.pop()
        return None

    def grouped(self, x: int) -> int | None:
        """``relate_group`` over a named group of 2..4 categories, then ``count``: enough candidates
        besides the reference in all (the candidate rule), no more than a person counts (``max_count``).
        The reference's own category may be in the group (a relation never holds the reference)."""
        sc = self.scene
        ref_cat = sc.categories[int(self.res[x][0])]
        cats = self.categories()
        size = {c: sc.by_category[c].shape[0] - (c == ref_cat) for c in cats}  # members besides the reference
        lo, hi = GROUP_SIZES
        groups: list[tuple[str, ...]] = []
        for k in range(lo, min(hi, len(cats)) + 1):
            for _ in range(GROUP_DRAWS):
                g = tuple(sorted(self.rng.sample(cats, k)))
                if g not in groups and self.min_candidates <= sum(size[c] for c in g) <= self.m.max_count:
                    groups.append(g)
        if not groups:
            self.failures["reach.few_candidates"] += 1
            return None
        # the groups with the most candidates first: larger counts, which counts over one category rarely reach
        options = sorted(self.shuffled([(rel, g) for g in groups for rel in P.RELATIONS]),
                         key=lambda o: -sum(size[c] for c in o[1]))
        for rel, g in options[:GROUP_TRIES]:
            args = {"relation": rel, GROUP_ARG: g}  # a tuple here (a memo key); a JSON list once built
            counted = self.count_of("relate_group", args, x)
            if counted is not None:
                return counted
        return None

    def terminal(self, t: str, x: int) -> int | None:
        if t == "K":
            return self.rank(x)
        if t == "G":
            return self.grouped(x)
        if t == "RC":
            return self.counted("relate", x)
        if t == "SC":
            return self.counted("same_color", x)
        if t in ("C0", "CF") and self.res[0].shape[0] < self.min_candidates:
            self.failures["reach.few_candidates"] += 1
            return None
        if t == "C0":
            n = self.run("count", {}, (0,))
            if n is None:
                return None
            k = self.add("count", {}, (0,), n)
            return k if self.fair(k) else None
        if t == "CF":
            for col in self.shuffled(self.colors_in(self.res[0])):
                counted = self.count_of("filter_color", {"color": col}, 0)
                if counted is not None:
                    return counted
            return None
        raise ValueError(t)

    def arith_fns(self, a: int, b: int) -> tuple[str, ...]:
        """The functions worth asking of numbers ``a`` and ``b``: a rank and the size of its own set only
        add (the larger is always the size, the smaller the rank: ``rank_vs_size``; and the size minus
        the rank is the rank in the opposite order, less one: a rank question in arithmetic dress)."""
        ha, hb = self.hops[a], self.hops[b]
        rank, count = (ha, hb) if ha.op == "rank" else (hb, ha)
        if rank.op == "rank" and count.op == "count" and rank.inputs[1] == count.inputs[0]:
            return ("add",)
        return P.ARITH_FNS

    def build(self, plan: Plan) -> list[Hop] | None:
        anchor, steps, terminal = plan
        # a rank in the anchor's set (after a last `nearest`) or its count: enough members for the
        # candidate rule, chosen up front rather than found out at the end
        in_c0 = ("K" in terminal and steps[-1] == "N") or "C0" in terminal
        x = self.anchor(anchor, max(2, self.min_candidates) if in_c0 else 2)
        if x is None:
            return None
        ranks = "K" in terminal
        for k, step in enumerate(steps):
            # a rank after `nearest` needs a set holding the instance: the anchor's category (hop 0)
            last_nearest = ranks and step == "N" and k == len(steps) - 1
            x = self.step(step, x, only=self.c0 if last_nearest else None)
            if x is None:
                return None
        if terminal[0] == "A":
            a = self.terminal(terminal[1], x)
            b = None if a is None else self.terminal(terminal[2], x)
            if a is None or b is None:
                return None
            fn = self.rng.choice(self.arith_fns(a, b))
            if fn == "sub" and self.res[a] < self.res[b]:
                a, b = b, a  # keep differences non-negative: "P minus Q" with P >= Q
            self.add("arith", {"fn": fn}, (a, b), P.op_arith(self.res[a], self.res[b], fn))
        elif self.terminal(terminal[0], x) is None:
            return None
        kinds = P.hop_kinds(self.hops)
        out = []
        ids = self.scene.ids
        for h, r, kind in zip(self.hops, self.res, kinds, strict=True):
            v = r if isinstance(r, (int, float)) else sorted(ids[r].tolist())
            args = {**h.args, GROUP_ARG: list(h.args[GROUP_ARG])} if GROUP_ARG in h.args else h.args
            out.append(Hop(h.op, args, h.inputs, kind, v))
        return out


def usable_categories(scene: Scene, m: Margins) -> list[str]:
    """The categories a hop may name: countable, with at most ``max_count`` instances."""
    return [c for c, ps in scene.by_category.items() if scene.countable(c) and ps.shape[0] <= m.max_count]


def image_rng(seed: int, image_id: str) -> random.Random:
    """The per-image RNG: a function of (seed, image_id) only."""
    return random.Random(int.from_bytes(hashlib.sha256(f"{seed}:{image_id}".encode()).digest()[:8], "big"))


def feasible_plans(scene: Scene, min_hops: int, max_hops: int, margins: Margins,
                   min_candidates: int = MIN_CANDIDATES) -> dict[int, list[Plan]]:
    """The plans (by length) whose anchor this scene can provide (an arithmetic plan ranks or counts in
    the anchor's category: only where one has ``min_candidates`` members)."""
    counts = {c: scene.by_category[c].shape[0] for c in usable_categories(scene, margins)}
    coloured = bool(scene.color) and any(
        n >= 2 and all(scene.color[p] for p in scene.by_category[c].tolist()) for c, n in counts.items()
    )
    ok = {"X": any(n >= 2 for n in counts.values()), "U": any(n == 1 for n in counts.values()),
          "CU": coloured, "CX": coloured}
    out: dict[int, list[Plan]] = {}
    for n in range(max(4, min_hops), max_hops + 1):
        plans = [p for p in PLANS.get(n, []) if ok[p[0]]]
        if not any(k >= max(2, min_candidates) for k in counts.values()):
            plans = [p for p in plans if p[2][0] != "A"]
        if not scene.color:
            plans = [p for p in plans if not any(x in ("SE", "SU", "SC", "CF") for x in (*p[1], *p[2]))]
        if plans:
            out[n] = plans
    return out


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
    min_candidates: int = MIN_CANDIDATES,
    doubt: Doubt | None = None,
    max_same_answer: int | None = None,
    attempt_budget: int | None = None,
    perturbations: Perturbations | None = None,
    verify: bool = True,
) -> list[Question]:
    """Up to ``n_wanted`` distinct, verified, leak-free full-variant questions for one scene.

    Distinct = neither the same program nor the same text as another candidate of this image.
    Every count and rank draws on at least ``min_candidates`` instances
    (:mod:`~pipelines.questions.candidates`); with ``doubt``, every candidate's answer survives the
    perturbations of :mod:`~pipelines.questions.stability`. At most ``max_same_answer`` candidates
    (default: a quarter of ``n_wanted``, at least 1) share an answer, and at most half as many are
    0 — rejection sampling as CLEVR does it, so the batch balancer has spread answers to choose
    from. When none results, ``stats.no_question[image_id]`` counts which rule stopped each attempt.

    Attempts: at most ``n_wanted * max_attempts_factor``; with ``attempt_budget``, the image stops
    once it has made that many attempts *and* has 3 candidates (an image with fewer keeps trying to
    the end: the budget never costs coverage). A kind of terminal that failed ``ARITH_GIVE_UP`` (A)
    or ``TERMINAL_GIVE_UP`` times with none built is drawn no more. Checks run cheapest per refusal
    first: the per-image answer caps, the structural ones, the stability check (it refuses most),
    then the wording and its leakage check — a refused program is never worded. With ``verify=False``
    the candidates are steered away from doubtful members but not yet checked for stability:
    :func:`generate` checks only the ones the balancer selects (``perturbations``: the scene's,
    shared with that check).
    """
    stats = stats if stats is not None else GenerationStats()
    rng = image_rng(seed, scene.image_id)
    why: Counter = Counter()
    plans = feasible_plans(scene, min_hops, max_hops, margins, min_candidates)
    out: list[Question] = []
    if not plans:
        why[_no_plan_reason(scene, margins)] += 1
    lengths = sorted(plans)
    arith = [p for n in lengths for p in plans[n] if p[2][0] == "A"]
    tries: Counter = Counter()  # attempts and builds per terminal kind (K, RC, SC, G, A)
    built: Counter = Counter()
    seen_prog: set[tuple] = set()
    seen_text: set[str] = set()
    memo: dict = {}
    cats = usable_categories(scene, margins)
    if perturbations is None and doubt is not None:
        perturbations = Perturbations(scene, doubt)
    doubtful = perturbations.doubtful if perturbations is not None else None
    missed = perturbations.missed if perturbations is not None else None
    unreliable = perturbations.unreliable if perturbations is not None else {}
    max_missed = perturbations.doubt.max_missed if perturbations is not None else 0.0
    same = max_same_answer if max_same_answer is not None else max(1, n_wanted // 4)
    per_answer: Counter = Counter()
    for tried in range(n_wanted * max_attempts_factor if plans else 0):
        if (not plans or len(out) >= n_wanted
                or (len(out) >= 3 and attempt_budget is not None and tried >= attempt_budget)):
            break
        stats.attempts += 1
        plan = _draw_plan(rng, plans, lengths, arith)
        builder = _Builder(scene, rng, margins, memo, cats, min_candidates, doubtful, missed, max_missed, unreliable)
        hops = builder.build(plan)
        t = plan[2][0]
        tries[t] += 1
        built[t] += hops is not None
        if not built[t] and tries[t] == (ARITH_GIVE_UP if t == "A" else TERMINAL_GIVE_UP):
            # this scene cannot fill this kind of terminal: spend the attempts elsewhere
            plans = {n: kept for n, ps in plans.items() if (kept := [p for p in ps if p[2][0] != t])}
            lengths = sorted(plans)
            if t == "A":
                arith = []
        if hops is None:
            stats.failed_plans += 1
            if builder.failures:
                why[builder.failures.most_common(1)[0][0]] += 1
            else:
                why["plan.no_option"] += 1
            continue
        stats.built += 1
        canon = tuple(P.hop_key(h) for h in hops)
        if canon in seen_prog:
            stats.duplicates += 1
            continue
        answer = P.answer_of(hops)
        if per_answer[answer] >= (max(1, same // 2) if answer == "0" else same):
            stats.same_answer += 1  # the image has enough with this answer: no check is worth running
            continue
        try:
            if not P.has_both_kinds(hops):
                raise P.StructureError("missing_hop_kind", "needs an instance-chain and a perception hop")
            check_needs_image(hops)
            check_not_degenerate(hops)
            check_candidates(hops, scene, min_candidates)
        except ProgramError as err:
            stats.leakage += 1
            stats.reasons[err.reason] += 1
            why[err.reason] += 1
            continue
        if perturbations is not None and verify:
            stats.checked += 1
            try:
                check_stable(hops, answer, perturbations, margins)
            except ProgramError as err:
                stats.unstable += 1
                stats.reasons[err.reason] += 1
                why[err.reason] += 1
                stats.unstable_questions.append((P.question_id(scene.image_id, hops), err.detail, scene.image_id))
                continue
        try:
            text = render(hops, rng)
            check_text(text, hops)
        except ProgramError as err:
            stats.leakage += 1
            stats.reasons[err.reason] += 1
            why[err.reason] += 1
            continue
        if text in seen_text:
            stats.duplicates += 1
            continue
        seen_prog.add(canon)
        seen_text.add(text)
        per_answer[answer] += 1
        out.append(make_question(scene.image_id, hops, text))
    stats.candidates += len(out)
    if not out:
        stats.no_question[scene.image_id] = why
    for r, n in why.items():
        stats.attempt_reasons[r] += n
    return out


def _draw_plan(rng: random.Random, plans: dict[int, list[Plan]], lengths: list[int], arith: list[Plan]) -> Plan:
    """An arithmetic plan with probability :data:`ARITH_SHARE` (when there is one), else a length
    uniformly, then a plan of that length uniformly."""
    if arith and rng.random() < ARITH_SHARE:
        return rng.choice(arith)
    return rng.choice(plans[rng.choice(lengths)])


def _no_plan_reason(scene: Scene, m: Margins) -> str:
    if scene.n == 0:
        return "plan.empty_scene"
    if all(not scene.countable(c) for c in scene.by_category):
        return "reach.uncountable_category"
    if all(ps.shape[0] > m.max_count for ps in scene.by_category.values()):
        return "reach.set_too_large"
    return "plan.no_anchor"


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


def _cap_per_skeleton(chosen: list[list[Question]], share: float, min_group: int = 4) -> list[Question]:
    """Drop questions so that, within every skeleton with at least ``min_group`` questions, no answer
    exceeds ``share`` of that skeleton's questions when attainable (X <= share * (others + X)):
    otherwise the skeleton alone predicts the answer. Surplus leaves the images holding most."""
    if share >= 1.0:
        return []
    groups: dict[str, Counter] = {}
    for qs in chosen:
        for q in qs:
            groups.setdefault(q.skeleton, Counter())[q.answer] += 1
    dropped: list[Question] = []
    for sk, answers in sorted(groups.items()):
        n = sum(answers.values())
        if n < min_group or len(answers) < 2:
            continue
        for value, m in answers.most_common():
            allowed = int(share * (n - m) / (1 - share) + 1e-9)
            while m > max(allowed, 1):
                img = max(
                    (i for i, qs in enumerate(chosen) if any(q.answer == value and q.skeleton == sk for q in qs)),
                    key=lambda i: (len(chosen[i]), -i),
                )
                j = max(k for k, q in enumerate(chosen[img]) if q.answer == value and q.skeleton == sk)
                dropped.append(chosen[img].pop(j))
                m -= 1
                n -= 1
                allowed = int(share * (n - m) / (1 - share) + 1e-9)
    return dropped


def _cap_zeros(chosen: list[list[Question]], share: float) -> list[Question]:
    """Drop answers 0 until they are at most ``share`` of the batch again: the per-skeleton cap runs
    last and drops only over-represented answers, which can lift the share of 0 over its cap.
    Surplus leaves the images holding most questions."""
    if share >= 1.0:
        return []
    total = sum(len(qs) for qs in chosen)
    zeros = sum(q.answer == "0" for qs in chosen for q in qs)
    dropped: list[Question] = []
    while zeros and zeros > share * total + 1e-9:
        img = max((i for i, qs in enumerate(chosen) if any(q.answer == "0" for q in qs)),
                  key=lambda i: (len(chosen[i]), -i))
        j = max(k for k, q in enumerate(chosen[img]) if q.answer == "0")
        dropped.append(chosen[img].pop(j))
        zeros -= 1
        total -= 1
    return dropped


def share_caps(counts: Counter, max_share: float, max_zero_share: float = 1.0) -> tuple[int, int, float] | None:
    """Per-answer caps ``(x, z, share)`` that keep the most questions of ``counts`` while no answer
    exceeds ``share`` of the kept ones and 0 not ``min(share, max_zero_share)``: ``x`` caps every
    nonzero answer, ``z`` the answer 0. ``share`` is ``max_share`` when that is attainable by dropping
    alone, else the smallest attainable share above it (too few distinct answers); ``None`` when
    there is nothing to balance."""
    if len(counts) < 2:
        return None
    nonzero = sorted((c for v, c in counts.items() if v != "0"), reverse=True)
    zeros = counts.get("0", 0)
    share = max_share
    while True:
        best: tuple[int, int, int] | None = None  # (kept, x, z)
        zs = min(share, max_zero_share)
        for x in range(1, (nonzero[0] if nonzero else 0) + 1):
            rest = sum(min(c, x) for c in nonzero)
            z = min(zeros, int(zs * rest / (1 - zs) + 1e-9)) if zs < 1 else zeros
            kept = rest + z
            if x <= share * kept + 1e-9 and (best is None or kept > best[0]):
                best = (kept, x, z)
        if best is not None or share >= 1.0:
            return (best[1], best[2], share) if best is not None else None
        share = min(1.0, share * 1.25)


def _swap_toward_rare(chosen: list[list[Question]], spare: list[list[Question]], counts: Counter,
                      by_shape: Counter) -> None:
    """Swap a chosen question for an unused one of the same image whose answer is rarer in the batch by
    at least two (and no more common within its skeleton), until none is left: the batch keeps its
    size, and every swap flattens the answer distribution (the entropy rises strictly) — the greedy
    pass spreads answers within each skeleton first, this pass across the batch."""
    for i in range(len(chosen)):
        changed = True
        while changed and spare[i] and chosen[i]:
            changed = False
            j = max(range(len(chosen[i])), key=lambda k: (counts[chosen[i][k].answer], -k))
            out = chosen[i][j]
            k = min(range(len(spare[i])), key=lambda k: (counts[spare[i][k].answer], k))
            new = spare[i][k]
            if (counts[out.answer] - counts[new.answer] >= 2
                    and by_shape[(new.skeleton, new.answer)] <= by_shape[(out.skeleton, out.answer)]):
                chosen[i][j], spare[i][k] = new, out
                counts[out.answer] -= 1
                counts[new.answer] += 1
                by_shape[(out.skeleton, out.answer)] -= 1
                by_shape[(new.skeleton, new.answer)] += 1
                changed = True


def select_balanced(
    per_image: Sequence[list[Question]],
    cap_per_image: int,
    max_share: float,
    stats: GenerationStats | None = None,
    max_skeleton_share: float = 1.0,
    max_zero_share: float = 1.0,
) -> tuple[list[Question], list[Question]]:
    """Pick up to ``cap_per_image`` questions per image so that no answer value exceeds
    ``max_share`` of the batch, and the answer 0 not ``max_zero_share``, whenever that is attainable.

    Greedy: each image takes, one at a time, its candidate whose answer is rarest so far among
    the batch's questions of the same skeleton (then in the whole batch) — so no skeleton gives its
    answer away; then over-represented answers are trimmed, the most over its share first (from the
    images holding the most questions), and freed slots are refilled from unused candidates that keep
    every share within its limit. Before the trim, an image swaps a chosen question for an unused one
    whose answer is rarer in the batch (:func:`_swap_toward_rare`). Last, within each skeleton no answer may exceed
    ``max_skeleton_share`` (when the skeleton has two or more answers). A share cap of ``p`` bounds
    the answer entropy from below by ``-log2(p)`` bits (3 bits at 0.125). Returns (selected,
    balanced_out) in a deterministic order.
    """
    stats = stats if stats is not None else GenerationStats()
    counts: Counter = Counter()
    by_shape: Counter = Counter()  # (skeleton, answer): keeps a skeleton's answers spread out
    chosen: list[list[Question]] = []
    spare: list[list[Question]] = []
    for cands in per_image:
        pool = list(cands)
        shapes = [q.skeleton for q in pool]
        mine: list[Question] = []
        while pool and len(mine) < cap_per_image:
            best = min(range(len(pool)),
                       key=lambda i: (by_shape[(shapes[i], pool[i].answer)], counts[pool[i].answer], i))
            q = pool.pop(best)
            by_shape[(shapes.pop(best), q.answer)] += 1
            mine.append(q)
            counts[q.answer] += 1
        chosen.append(mine)
        spare.append(pool)
    _swap_toward_rare(chosen, spare, counts, by_shape)

    dropped: list[Question] = []
    caps = share_caps(counts, max_share, max_zero_share)
    if caps is None:
        stats.balance_unattainable = len(counts) > 1
    else:
        x, z, used = caps
        stats.balance_unattainable = used > max_share + 1e-9
        stats.answer_share_used = max(stats.answer_share_used, used)
        for value in sorted(counts, key=lambda v: (-counts[v], v)):
            limit = z if value == "0" else x
            while counts[value] > limit:
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
                limit = z if q.answer == "0" else x
                share = min(used, max_zero_share) if q.answer == "0" else used
                if (len(chosen[i]) < cap_per_image and counts[q.answer] + 1 <= limit
                        and counts[q.answer] + 1 <= share * (total + 1) + 1e-9):
                    chosen[i].append(q)
                    counts[q.answer] += 1
                    total += 1
                else:
                    keep.append(q)
            spare[i] = keep
        refilled = {id(q) for qs in chosen for q in qs}
        dropped = [q for q in dropped if id(q) not in refilled]
    dropped += _cap_per_skeleton(chosen, max_skeleton_share)
    dropped += _cap_zeros(chosen, max_zero_share)
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
    max_skeleton_share: float = 1.0,
    max_zero_share: float = 1.0,
    min_candidates: int = MIN_CANDIDATES,
    doubt: Doubt | None = None,
    attempt_budget: int | None = None,
) -> GenerationResult:
    """Full-variant questions for a batch of scenes (deterministic for a given batch and seed)."""
    stats = GenerationStats(images=len(scenes))
    pert = {s.image_id: Perturbations(s, doubt) for s in scenes} if doubt is not None else {}
    per = [
        scene_candidates(
            s,
            per_image * oversample,
            seed=seed,
            min_hops=min_hops,
            max_hops=max_hops,
            margins=margins,
            stats=stats,
            min_candidates=min_candidates,
            doubt=doubt,
            attempt_budget=attempt_budget,
            perturbations=pert.get(s.image_id),
            verify=False,
        )
        for s in scenes
    ]
    if doubt is None:
        selected, dropped = select_balanced(per, per_image, max_share, stats, max_skeleton_share, max_zero_share)
    else:
        selected, dropped = _select_stable(per, pert, margins, stats, per_image, max_share, max_skeleton_share,
                                           max_zero_share)
    return GenerationResult(selected, dropped, stats)


def _select_stable(per: list[list[Question]], pert: dict[str, Perturbations], margins: Margins,
                   stats: GenerationStats, per_image: int, max_share: float, max_skeleton_share: float,
                   max_zero_share: float) -> tuple[list[Question], list[Question]]:
    """:func:`select_balanced` over candidates not yet checked for stability, checking only what it
    selects: a selected question the check refuses leaves the pool and the batch is balanced again,
    until every selected question is stable (each round removes at least one candidate). The result
    is the balancer's choice among the stable candidates it needed to look at; candidates it never
    selected are never checked (most of the check's cost, now that the builder steers away from
    doubtful members and most checks pass)."""
    verdict: dict[str, bool] = {}
    refused_by_image: Counter = Counter()
    while True:
        trial = GenerationStats()
        selected, dropped = select_balanced(per, per_image, max_share, trial, max_skeleton_share, max_zero_share)
        refused: set[int] = set()
        for q in selected:
            ok = verdict.get(q.question_id)
            if ok is None:
                try:
                    check_stable(q.hops, q.answer, pert[q.image_id], margins)
                    ok = True
                except ProgramError as err:
                    ok = False
                    stats.unstable += 1
                    stats.reasons[err.reason] += 1
                    stats.unstable_questions.append((q.question_id, err.detail, q.image_id))
                    refused_by_image[q.image_id] += 1
                verdict[q.question_id] = ok
            if not ok:
                refused.add(id(q))
        if not refused:
            break
        per = [[q for q in qs if id(q) not in refused] for qs in per]
    stats.checked += len(verdict)
    stats.candidates -= stats.unstable  # candidates = the stable ones and those never selected
    stats.selected += trial.selected
    stats.balanced_out += trial.balanced_out
    stats.balance_unattainable = trial.balance_unattainable
    stats.answer_share_used = max(stats.answer_share_used, trial.answer_share_used)
    kept = Counter(q.image_id for q in selected)
    for image_id, n in refused_by_image.items():
        if not kept[image_id]:  # every candidate the balancer wanted from it was unstable
            stats.no_question.setdefault(image_id, Counter())["unstable.perception"] += n
    return selected, dropped


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
