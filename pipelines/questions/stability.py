"""Stable under the detector's doubt: a question is kept only if its answer survives every
plausible misreading of the scene.

The engine cannot see an object the detector missed, but it can see where the detector doubted.
Each program is re-executed on perturbed copies of its scene, one per kind of doubt and per
category the program names (a perturbation of a category the program never names cannot change
its answer: every op is scoped by the categories it names):

* ``add_near_misses``: the detections of the category just under the score threshold
  (``shadow_score <= score < min_score``) added back — a reader may see them;
* ``drop_least_confident``: its lowest-scored member removed, when that score is below
  ``doubt_score`` — a reader may not see it (annotations score 1.0: never doubted);
* ``drop_smallest``: its smallest member removed, when that member covers less than
  ``small_area_frac`` of the image — at the visible-size limit a reader may miss it;
* ``drop_invisible``: all its members below the visible size (``visible_area_frac``) removed at
  once — what a reader of a crowd counts;
* ``drop_fragmented``: all its members whose mask fills less than ``min_fill`` of their box removed
  at once — a mask broken up by occluders (chairs behind a crowd: a few legs and a back rail) is
  one a reader may not see as an object at all (the demo's VOC photo: readers counted one chair
  fewer than the annotation on 6 of 10 misses);
* ``drop_contested``: its members that a near miss of *another* category covers (box IoU at least
  ``merge_iou``) removed — the detector hesitated over the label (an open-vocabulary detector scores
  every prompt: "cow" 0.7 and "horse" 0.4 on one white horse), and a reader may see the other
  object ("the cow" does not exist for a reader);
* ``merge_overlapping``: its two most overlapping members (box IoU at least ``merge_iou``) merged
  into one — a reader may see one object where the detector reported two (and a split is the same
  pair seen the other way).

No perturbation shows an object the detector never reported, but the detector's recall says how many
to expect (``recall_small`` / ``_medium`` / ``_large``, by COCO size bin; 1.0, the default, turns this
off): each detection of recall ``r`` stands for ``(1 - r) / r`` missed objects like it (the
Horvitz-Thompson estimate, :func:`missed_weights`). A program that depends on every member of a
category whose members add up to more than ``max_missed_category`` (:func:`missed_refusal`: it may still
serve through its largest member), or counts or ranks where more than ``max_missed`` would change the
answer, is refused (:func:`check_missed`; the detail starts ``missed_members of``). Annotations (score
1.0) miss nothing.

Any change — another answer, or a program that no longer executes within its margins and reach
rules — refuses the question as ``unstable.perception`` (the detail names the perturbation and the
category). The same check runs for programs the VLM writer states, with the detector's own scores.
Perturbed scenes are built once per (scene, category, kind) and shared by every program of the
image; the cost per program is at most (named categories x kinds) re-executions.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from pipelines.questions import program as P
from pipelines.questions.ops.spec import Hop, Margins, ProgramError, ReachError, hop_categories
from pipelines.questions.scene import Scene

UNSTABLE = "unstable.perception"
KINDS = ("add_near_misses", "drop_least_confident", "drop_smallest", "drop_invisible", "drop_fragmented",
         "drop_contested", "merge_overlapping")


class UnstableError(ProgramError):
    """The answer changes under a plausible misreading of the scene (``unstable.perception``)."""

    family = "unstable"


@dataclass(frozen=True)
class Doubt:
    """The thresholds of the perturbations (``questions.stability`` in params.yaml)."""

    doubt_score: float = 0.6
    small_area_frac: float = 0.0015
    visible_area_frac: float = 0.001
    merge_iou: float = 0.5
    occlusion_overlap: float = 0.25
    min_fill: float = 0.1
    # the detector's recall by COCO size bin (pixels: small < 32², medium < 96², large above; 1.0: it
    # misses nothing, the rule is off), the most missed objects a count or rank may have to assume, and
    # the most a category may hide before nothing may depend on all its members (see check_missed)
    recall_small: float = 1.0
    recall_medium: float = 1.0
    recall_large: float = 1.0
    max_missed: float = 0.5
    max_missed_category: float = 0.5


SMALL_AREA = 32 * 32  # COCO's size bins ("Detection Evaluation"), pixels
MEDIUM_AREA = 96 * 96
MISSED = "missed_members"  # the detail's kind for a count or rank that likely misses members


def missed_weights(scene: Scene, d: Doubt) -> np.ndarray:
    """Per scene position, how many objects like it the detector is expected to have missed:
    ``(1 - r) / r`` with ``r`` the detector's recall for its size bin (``recall_small`` / ``_medium``
    / ``_large``). Each found object of recall ``r`` stands for ``1 / r`` objects (the
    Horvitz-Thompson estimate), so the sum over a counted set is the expected number of objects the
    count leaves out. Annotations (score 1.0, or no scores) miss nothing: 0."""
    w = np.zeros(scene.n)
    if not scene.score.shape[0] or not scene.n:
        return w
    area = scene.area
    r = np.where(area < SMALL_AREA, d.recall_small, np.where(area < MEDIUM_AREA, d.recall_medium, d.recall_large))
    detected = scene.score < 1.0
    w[detected] = (1.0 - r[detected]) / np.maximum(r[detected], 1e-9)
    return w


def missed_in_rank(scene: Scene, weights: np.ndarray, x: int, s: np.ndarray, key: str, order: str) -> float:
    """The expected number of missed objects that would move instance ``x``'s rank in ``s``: those
    like the members ranked before it, and like ``x`` itself (a missed twin of ``x`` may rank before)."""
    v = scene.key(key)
    before = v[s] > v[x] if order == "max" else v[s] < v[x]
    return float(weights[s[before]].sum() + weights[x])


def source_categories(hops: Sequence[Any], i: int) -> tuple[str, ...]:
    """The categories hop ``i``'s result is drawn from: those its arguments name (``find``, ``relate``,
    ``relate_group``, ``nearest``, ``same_color``), else those of the set it narrows (``filter_color``,
    ``extreme``, ``unique``). ``hops`` are :class:`Hop` records or anything with ``op``, ``args`` and
    ``inputs``."""
    h = hops[i]
    cats = hop_categories(h.args)
    if cats or not h.inputs:
        return cats
    return source_categories(hops, h.inputs[0])


def missed_refusal(hops: Sequence[Any], i: int, unreliable: Mapping[str, float], weights: np.ndarray,
                   limit: float, winner: int | None = None) -> str | None:
    """Why hop ``i`` may not use a category that likely hides members (``unreliable``), or ``None``.

    Such a category may be found and narrowed (``find``, ``relate``, ``filter_color``), but nothing may
    depend on all of its members being there: no ``nearest`` among it, no ``unique``, ``count`` or
    ``rank`` over a set drawn from it, and no ``extreme`` but the largest (``key`` area, ``order`` max),
    and that only when the winner itself (position ``winner``) stands for at most ``limit`` missed
    objects: a missed object like the smaller members cannot be the largest ("the largest kite" in a
    crowd of small kites)."""
    h = hops[i]
    op = h.op
    if op == "nearest":
        hit = [c for c in hop_categories(h.args) if c in unreliable]
    elif op in ("unique", "count", "rank", "extreme"):
        hit = [c for c in source_categories(hops, h.inputs[-1]) if c in unreliable]
        if hit and op == "extreme" and h.args.get("key") == "area" and h.args.get("order") == "max" \
                and winner is not None and weights[winner] <= limit:
            return None
    else:
        return None
    if not hit:
        return None
    return (f"{MISSED} of {hit[0]!r}: the detector likely missed about {unreliable[hit[0]]:.2f} of its members, "
            f"and the {op} depends on all of them")


def check_missed(hops: Sequence[Hop], perturbations: Perturbations) -> None:
    """Raise :class:`UnstableError` if executed ``hops`` (values: instance ids) depend on every member
    of a category that likely hides more than ``max_missed_category`` objects the detector missed (the
    sum of :func:`missed_weights` over its members; :func:`missed_refusal`), or count or rank where more
    than ``max_missed`` would change the answer (the sum over the counted set; over the members ranked
    before the instance and the instance itself): a reader counts the people the detector never reported."""
    w = perturbations.missed
    if not w.any():
        return
    scene, limit = perturbations.scene, perturbations.doubt.max_missed
    unreliable = perturbations.unreliable
    for i, h in enumerate(hops):
        if unreliable:
            at = _positions(scene, h.value) if h.op == "extreme" else None
            why = missed_refusal(hops, i, unreliable, w, limit, int(at[0]) if at is not None and at.shape[0] else None)
            if why is not None:
                raise UnstableError("perception", why)
        if h.op == "count":
            pos = _positions(scene, hops[h.inputs[0]].value)
            lam = float(w[pos].sum())
        elif h.op == "rank":
            pos = _positions(scene, hops[h.inputs[1]].value)
            x = _positions(scene, hops[h.inputs[0]].value)
            lam = missed_in_rank(scene, w, int(x[0]), pos, h.args["key"], h.args["order"]) if x.shape[0] else 0.0
        else:
            continue
        if lam > limit:
            share: dict[str, float] = {}
            for p in pos.tolist():
                share[scene.categories[p]] = share.get(scene.categories[p], 0.0) + float(w[p])
            cat = max(share, key=lambda c: (share[c], c)) if share else ""
            raise UnstableError("perception", f"{MISSED} of {cat!r}: the {h.op} assumes about {lam:.2f} objects "
                                f"the detector likely missed (> {limit})")


def _positions(scene: Scene, value: Any) -> np.ndarray:
    return scene.positions_of(value if isinstance(value, list) else [value])


@dataclass
class Perturbations:
    """The perturbed scenes of one scene, built on first use and shared by its programs."""

    scene: Scene
    doubt: Doubt = Doubt()
    _cache: dict[tuple[str, str], Scene | None] = field(default_factory=dict)
    _memos: dict[tuple[str, str], dict] = field(default_factory=dict)
    _selected: list[dict[tuple[str, str], list[int]]] = field(default_factory=list)
    _doubtful: list[np.ndarray] = field(default_factory=list)
    _missed: list[np.ndarray] = field(default_factory=list)
    _unreliable: list[dict[str, float]] = field(default_factory=list)

    @property
    def missed(self) -> np.ndarray:
        """:func:`missed_weights` of the scene, computed once."""
        if not self._missed:
            self._missed.append(missed_weights(self.scene, self.doubt))
        return self._missed[0]

    @property
    def unreliable(self) -> dict[str, float]:
        """The categories whose members the detector likely missed more than ``max_missed_category``
        of (the sum of :attr:`missed` over the category), with that sum: nothing may depend on all of
        their members (:func:`missed_refusal`)."""
        if not self._unreliable:
            w = self.missed
            hidden = {c: float(w[m].sum()) for c, m in self.scene.by_category.items()}
            self._unreliable.append({c: x for c, x in hidden.items() if x > self.doubt.max_missed_category})
        return self._unreliable[0]

    def touched(self, category: str, kind: str) -> list[int]:
        """What perturbation ``kind`` (not ``add_near_misses``) removes or merges in ``category``."""
        if not self._selected:
            self._selected.append(_selections(self.scene, self.doubt))
        return self._selected[0].get((category, kind), [])

    @property
    def doubtful(self) -> np.ndarray:
        """A boolean per scene position: the members some perturbation removes or merges (the
        lowest-scored member under ``doubt_score``, the smallest under ``small_area_frac``, the
        invisible, fragmented and contested ones, a merged pair). A question that names one,
        counts a set holding one or ranks among one changes its answer when the perturbation
        applies, so the generator does not build it (``unstable.doubtful_member``); the full
        check still runs on what it builds (near misses added back, merges that move a box)."""
        if not self._doubtful:
            out = np.zeros(self.scene.n, dtype=bool)
            self.touched("", "")  # every selection of the scene, made once
            for positions in self._selected[0].values():
                out[positions] = True
            self._doubtful.append(out)
        return self._doubtful[0]

    def memo(self, category: str, kind: str) -> dict:
        """The hop-result memo of one perturbed scene (see :func:`_answer_on`)."""
        return self._memos.setdefault((category, kind), {})

    def of(self, category: str) -> Iterator[tuple[str, Scene]]:
        """(kind, perturbed scene) for every perturbation that applies to ``category``."""
        for kind in KINDS:
            key = (category, kind)
            if key not in self._cache:
                if kind == "add_near_misses":
                    self._cache[key] = _perturb(self.scene, category, kind, self.doubt)
                else:  # the same scene _perturb builds, from the selection the doubtful set shares
                    t = self.touched(category, kind)
                    self._cache[key] = (None if not t else _merged(self.scene, t, self.doubt)
                                        if kind == "merge_overlapping" else _without(self.scene, t, self.doubt))
            s = self._cache[key]
            if s is not None:
                yield kind, s


def named_categories(hops: Sequence[Hop]) -> list[str]:
    """The categories a program names, in order of first mention."""
    out: list[str] = []
    for h in hops:
        for c in hop_categories(h.args):  # each category of a named group too
            if c not in out:
                out.append(c)
    return out


def check_stable(hops: Sequence[Hop], answer: str, perturbations: Perturbations, margins: Margins) -> None:
    """Raise :class:`UnstableError` unless ``hops`` executes to ``answer`` on every perturbed scene.

    Equivalent to ``P.answer_of(P.execute(hops, s, margins, min_hops=1, max_hops=len(hops)))`` on
    each perturbed scene ``s`` (tests/unit/questions/test_stability_fast.py compares the two on
    random scenes), but cheaper where it cannot matter: the structure, which no scene changes, is
    checked once; the hops run without building executed :class:`Hop` records (only the last value,
    the answer, is read); and each hop's result on a perturbed scene is memoised by (op, args, input
    positions) across the programs of the image, as the generator memoises on the scene itself.
    The first perturbation (in the same order as before) that changes the answer stops the check.
    """
    cats = named_categories(hops)
    if not cats:
        return
    check_missed(hops, perturbations)
    try:
        P.check_structure(hops, 1, len(hops))
        broken: ProgramError | None = None
    except ProgramError as err:  # no scene repairs the structure: every perturbation "no longer executes"
        broken = err
    # each hop's memo key part and whether it names an instance: the same on every perturbed scene
    plan = [(P.hop_key(h)[:2], P.OPS[h.op].output == "instance") for h in hops] if broken is None else []
    for cat in cats:
        for kind, s in perturbations.of(cat):
            got = broken if broken is not None else _answer_on(hops, s, margins, perturbations.memo(cat, kind), plan)
            if isinstance(got, ProgramError):
                raise UnstableError("perception", f"{kind} of {cat!r}: no longer executes ({got.reason})")
            if got != answer:
                raise UnstableError("perception", f"{kind} of {cat!r}: the answer becomes {got}, not {answer}")


def _answer_on(hops: Sequence[Hop], scene: Scene, m: Margins, memo: dict,
               plan: Sequence[tuple[tuple, bool]] | None = None) -> str | ProgramError:
    """The canonical answer of structurally valid ``hops`` executed on ``scene`` with every margin and
    reach rule (what :func:`pipelines.questions.program.execute` checks hop by hop), or the
    :class:`ProgramError` of the first hop that fails (returned, not raised: the memo shares it).
    ``memo`` holds (result or error) by (op, args, input values) on this scene: an op's result,
    margins and reach other than ``revisit`` depend on nothing else."""
    results: list[Any] = []
    named: set[int] = set()
    if plan is None:
        plan = [(P.hop_key(h)[:2], P.OPS[h.op].output == "instance") for h in hops]
    for h, (hop, names) in zip(hops, plan, strict=True):
        ins = [results[j] for j in h.inputs]
        key = (hop, tuple(r.tobytes() if isinstance(r, np.ndarray) else r for r in ins))
        hit = memo.get(key)
        if hit is None:
            try:
                hit = P.run_op(h.op, h.args, ins, scene, m)
            except ProgramError as err:
                hit = err.with_traceback(None)  # no frames kept alive (and no cycle) by the memo
            memo[key] = hit
        if isinstance(hit, ProgramError):
            return hit
        if names:
            a = int(hit[0])
            if a in named:
                return ReachError("revisit", "the step returns to an instance already named")
            named.add(a)
        results.append(hit)
    r = results[-1]
    value = r if isinstance(r, (int, float)) else scene.ids_of(r.tolist())
    try:
        return P.answer_of([replace(hops[-1], value=value)])
    except ProgramError as err:
        return err.with_traceback(None)


# ------------------------------------------------------------------------------------ perturbing


def _perturb(scene: Scene, cat: str, kind: str, d: Doubt) -> Scene | None:
    """The scene with one doubt about ``cat`` resolved the other way, or ``None`` if it has none."""
    members = scene.by_category.get(cat)
    if members is None:
        members = np.zeros(0, dtype=np.int64)
    if kind == "add_near_misses":
        first = int(scene.ids.max()) + 1 if scene.n else 1  # near misses get fresh ids; no colour is known
        extra = [_Extra(first + k, m.category, m.bbox, m.area, m.cx, m.cy, None, m.score)
                 for k, m in enumerate(m for m in scene.near_misses if m.category == cat)]
        return _rebuild(scene, np.arange(scene.n), extra=extra, d=d) if extra else None
    touched = _selections(scene, d).get((cat, kind), []) if members.shape[0] else []
    if not touched:
        return None
    return _merged(scene, touched, d) if kind == "merge_overlapping" else _without(scene, touched, d)


def _selections(scene: Scene, d: Doubt) -> dict[tuple[str, str], list[int]]:
    """``(category, kind) -> positions`` for every kind but ``add_near_misses`` that applies: what it
    removes from the category, or the pair it merges (in that order: the merged instance keeps the
    first one's id). All categories at once; within a category, ties go to the first position."""
    n = scene.n
    out: dict[tuple[str, str], list[int]] = {}
    if n == 0:
        return out
    names = list(scene.by_category)
    groups = [scene.by_category[c] for c in names]
    cat_of = np.empty(n, dtype=np.int64)
    for k, members in enumerate(groups):
        cat_of[members] = k
    pos = np.arange(n)
    image = scene.width * scene.height

    def leads(values: np.ndarray) -> np.ndarray:  # each category's first minimum
        first = np.lexsort((pos, values, cat_of))
        return first[np.r_[True, cat_of[first][1:] != cat_of[first][:-1]]]

    if scene.score.shape[0]:  # the lowest-scored member, under doubt_score
        for p in leads(scene.score).tolist():
            if scene.score[p] < d.doubt_score:
                out[(names[cat_of[p]], "drop_least_confident")] = [p]
    for p in leads(scene.area).tolist():  # the smallest member, when small
        if scene.area[p] < d.small_area_frac * image:
            out[(names[cat_of[p]], "drop_smallest")] = [p]
    tiny = scene.area < d.visible_area_frac * image
    fragmented = scene.area < d.min_fill * ((scene.x1 - scene.x0) * (scene.y1 - scene.y0))
    iou = np.zeros((0, 0))
    if n >= 2:
        box = np.stack([scene.x0, scene.y0, scene.x1, scene.y1], axis=1)
        iou = _box_iou(box, box)
        np.fill_diagonal(iou, 0.0)
    for c, members in zip(names, groups, strict=True):
        small = members[tiny[members]]
        if small.shape[0] >= 2:  # one tiny member is drop_smallest's case already
            out[(c, "drop_invisible")] = small.tolist()
        broken = members[fragmented[members]]
        if broken.shape[0]:
            out[(c, "drop_fragmented")] = broken.tolist()
        contested = _contested(scene, members, d)
        if contested:
            out[(c, "drop_contested")] = contested
        if members.shape[0] >= 2:  # its two most overlapping members, when their IoU reaches merge_iou
            sub = iou[np.ix_(members, members)]
            a, b = np.unravel_index(int(np.argmax(sub)), sub.shape)
            if sub[a, b] >= d.merge_iou:
                out[(c, "merge_overlapping")] = [int(members[a]), int(members[b])]
    return out


def _without(scene: Scene, drop: Sequence[int], d: Doubt) -> Scene:
    keep = np.setdiff1d(np.arange(scene.n), np.asarray(drop, dtype=np.int64))
    return _rebuild(scene, keep, d=d)


def _box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box of ``a`` with every box of ``b``, both (k, 4) as ``x0, y0, x1, y1``."""
    iw = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    ih = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = iw * ih
    own_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    own_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / np.maximum(own_a[:, None] + own_b[None, :] - inter, 1e-9)


def _contested(scene: Scene, members: np.ndarray, d: Doubt) -> list[int]:
    """The members (of one category) that a near miss of another category covers."""
    if not scene.near_misses:
        return []
    cat = scene.categories[int(members[0])]
    rivals = [m.bbox for m in scene.near_misses if m.category != cat]
    if not rivals:
        return []
    r = np.asarray(rivals, dtype=np.float64).reshape(-1, 4)
    r[:, 2:] += r[:, :2]  # x, y, w, h -> x0, y0, x1, y1
    own = np.stack([scene.x0[members], scene.y0[members], scene.x1[members], scene.y1[members]], axis=1)
    return members[(_box_iou(own, r) >= d.merge_iou).any(axis=1)].tolist()


def _merged(scene: Scene, pair: list[int], d: Doubt) -> Scene:
    """The scene with the two positions of ``pair`` merged into one instance."""
    pa, pb = pair
    keep = np.setdiff1d(np.arange(scene.n), np.asarray([pa, pb]))
    area = float(max(scene.area[pa], scene.area[pb]))  # the union's pixels are unknown: at least the larger
    wa, wb = scene.area[pa], scene.area[pb]
    cx = float((scene.cx[pa] * wa + scene.cx[pb] * wb) / (wa + wb))
    cy = float((scene.cy[pa] * wa + scene.cy[pb] * wb) / (wa + wb))
    bx0, by0 = float(min(scene.x0[pa], scene.x0[pb])), float(min(scene.y0[pa], scene.y0[pb]))
    bx1, by1 = float(max(scene.x1[pa], scene.x1[pb])), float(max(scene.y1[pa], scene.y1[pb]))
    merged = _Extra(int(scene.ids[pa]), scene.categories[pa], (bx0, by0, bx1 - bx0, by1 - by0), area, cx, cy,
                    scene.color_of(pa) if scene.color_of(pa) == scene.color_of(pb) else None,
                    min(scene.score_of(pa), scene.score_of(pb)))
    return _rebuild(scene, keep, extra=[merged], d=d)


@dataclass(frozen=True)
class _Extra:
    """An instance a perturbed scene has that the scene had not: a merged pair, or a near miss."""

    id: int
    category: str
    bbox: tuple[float, float, float, float]
    area: float
    cx: float
    cy: float
    color: str | None
    score: float


def _rebuild(scene: Scene, keep: np.ndarray, *, extra: Sequence[_Extra] = (), d: Doubt) -> Scene:
    """A new scene of the positions ``keep`` plus ``extra`` instances (the arrays handed over as
    arrays: the values ``Scene.from_arrays`` reads are the same float64/int64 numbers either way)."""
    kept = keep.tolist()

    def joined(a: np.ndarray, more: list[Any], dtype: type) -> np.ndarray:
        return np.concatenate([a[keep].astype(dtype, copy=False), np.asarray(more, dtype=dtype)]) if more else a[keep]

    ids = joined(scene.ids, [e.id for e in extra], np.int64)
    cats = [scene.categories[p] for p in kept] + [e.category for e in extra]
    box = scene.bbox()[keep]
    if extra:
        box = np.concatenate([box, np.asarray([e.bbox for e in extra], dtype=np.float64).reshape(-1, 4)])
    area = joined(scene.area, [e.area for e in extra], np.float64)
    cx = joined(scene.cx, [e.cx for e in extra], np.float64)
    cy = joined(scene.cy, [e.cy for e in extra], np.float64)
    colors = [scene.color_of(p) for p in kept] + [e.color for e in extra]
    own = scene.score if scene.score.shape[0] else np.ones(scene.n)
    scores = joined(own, [e.score for e in extra], np.float64)
    s = Scene.from_arrays(
        scene.image_id, scene.width, scene.height, ids, cats, box,
        area, cx, cy, colors=colors if scene.color else None, visible_area_frac=d.visible_area_frac,
        occlusion_overlap=d.occlusion_overlap, scores=scores,
    )
    # the perturbed scene reads its categories as the scene does (see trusting_stability)
    return replace(s, uncountable=scene.uncountable & frozenset(s.by_category), _dist=[])


def trusting_stability(scene: Scene) -> Scene:
    """The scene with no category closed to hops for its tiny or near-threshold members: with the
    stability check on, a question about such a category is kept only when those members cannot
    change its answer ("the largest kite" in a crowd of kites; never "how many kites")."""
    return replace(scene, uncountable=frozenset(), _dist=[]) if scene.uncountable else scene


__all__ = ["KINDS", "MISSED", "UNSTABLE", "Doubt", "Perturbations", "UnstableError", "check_missed", "check_stable",
           "missed_in_rank", "missed_refusal", "missed_weights", "named_categories", "source_categories",
           "trusting_stability"]
