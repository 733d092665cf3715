"""Degenerate programs, found generally: execute a program on many randomised scenes with the same
categories and colours, and refuse it when a value never changes.

A question whose answer — or any hop's number — follows from the program's structure whatever the
image shows teaches a model nothing about looking ("the number of squares left of the leftmost
square" is 0; "the larger of A's rank among the cups and the number of cups" is the number of
cups). Named patterns (:func:`pipelines.questions.leakage.check_needs_image`) catch the known
ones cheaply; this check catches the rest (docs/hop-programs.md, "Degenerate programs"):

* ``leakage.constant_answer``: the final answer is the same on every randomised scene;
* ``leakage.constant_hop``: an earlier number hop is;
* ``leakage.arith_trivial``: an ``arith`` hop always equals one of its operands (``max`` of a
  rank and its set's size, ``sub`` of a zero, ...);
* ``leakage.predictable_answer``: one answer on at least 70% of 30+ randomised scenes (the rank,
  counting from the left, of the cup nearest to the leftmost cup is nearly always 2): the shape of
  the question nearly gives the answer away (the language-prior baseline guesses it).

Randomised scenes (one deterministic stream per number of categories and colours, drawn on demand
and kept for the process):
the program's categories plus one distractor, one instance 30% of the time, else 2..6,
centroids uniform in a 640x480 image, box sides log-uniform in 4%..30% of the shorter side,
colours uniform over the program's colours plus two others (20% without a clear colour), all
instances whole and visible. Programs run with zero margins (ties have probability zero), so
only the structure decides. A program is judged once it executed on ``PRIOR_RUNS`` (30) scenes
with every number hop having taken two values and every ``arith`` having differed from both
operands, or on ``ENOUGH_RUNS`` (40) (a value unchanged over them is constant); with fewer than 30
(but at least ``MIN_RUNS``, 10) executions in the whole pool, predictability is not judged. One that executes
on fewer than 3 of the first 50 scenes is run on a larger pool (``MORE_TRIALS``, 1500); one that
still executes on fewer than ``MIN_RUNS`` is refused too (``leakage.undetermined``): what cannot be
shown to depend on the picture is not asked. The verdict depends only on the program's shape with
its categories and colours renamed in order of appearance, and under the symmetries of the
randomised scenes (mirrors, swapped axes, reversed area order), so it is cached per shape.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from pipelines.questions import program as P
from pipelines.questions.ops.spec import GROUP_ARG, hop_categories
from pipelines.questions.program import Hop, LeakageError, Margins, ProgramError
from pipelines.questions.scene import Scene

MIN_RUNS = 10
PRIOR_RUNS = 30  # executions over which the most common answer's share is judged
PREDICTABLE_SHARE = 0.7
ENOUGH_RUNS = 40
MAX_TRIALS = 200
MORE_TRIALS = 1500  # a second, larger pool for programs that rarely execute
_FREE = Margins(area_ratio=1.0, axis_gap=0.0, nearest_ratio=1.0, relate_gap=0.0, max_count=10**6)


def shape_key(hops: Sequence[Hop]) -> str:
    """The program with categories and colours renamed in order of first appearance (c0, c1, ..)."""
    names: dict[tuple[str, str], str] = {}
    out = []
    for h in hops:
        args = dict(h.args)
        for field, prefix in (("category", "c"), ("color", "k")):
            if field in args:
                key = (field, args[field])
                names.setdefault(key, f"{prefix}{sum(1 for f, _ in names if f == field)}")
                args[field] = names[key]
        if GROUP_ARG in args:  # a named group is a set of categories: renamed in order, then sorted
            for c in args[GROUP_ARG]:
                names.setdefault(("category", c), f"c{sum(1 for f, _ in names if f == 'category')}")
            args[GROUP_ARG] = sorted(names[("category", c)] for c in args[GROUP_ARG])
        out.append({"op": h.op, "args": args, "inputs": list(h.inputs)})
    return json.dumps(out, sort_keys=True, separators=(",", ":"))


class _ScenePool:
    """Randomised scenes over categories ``c0..`` and the first ``n_colors`` chromatic colour terms,
    one deterministic stream per (number of categories, number of colours), drawn on demand and
    kept for the process: scene ``k`` is the same whoever asks first."""

    def __init__(self, n_categories: int, n_colors: int) -> None:
        self.rng = np.random.default_rng([n_categories, n_colors])
        self.cats = [f"c{i}" for i in range(n_categories)]
        self.colors = list(_CHROMATIC[:n_colors])
        self.scenes: list[Scene] = []

    def __getitem__(self, k: int) -> Scene:
        while len(self.scenes) <= k:
            self.scenes.append(_random_scene(self.rng, self.cats, self.colors))
        return self.scenes[k]


@functools.lru_cache(maxsize=64)
def _scene_pool(n_categories: int, n_colors: int) -> _ScenePool:
    return _ScenePool(n_categories, n_colors)


_CHROMATIC = tuple(c for c in P.COLORS if c not in ("black", "white", "gray"))


def _random_scene(rng: np.random.Generator, categories: list[str], colors: list[str]) -> Scene:
    cats = [*categories, "distractor"]
    palette = [*colors, *[c for c in _CHROMATIC if c not in colors][:2]]
    labels: list[str] = []
    for c in cats:  # one instance 30% of the time (programs naming a unique instance need it)
        labels += [c] * (1 if rng.random() < 0.3 else int(rng.integers(2, 7)))
    n = len(labels)
    w, h = 640, 480
    side = np.exp(rng.uniform(np.log(0.04), np.log(0.3), size=(n, 2))) * min(w, h)
    xy = rng.uniform(0, 1, size=(n, 2)) * ([w, h] - side)
    box = np.hstack([xy, side])
    cx = box[:, 0] + box[:, 2] * rng.uniform(0.3, 0.7, size=n)
    cy = box[:, 1] + box[:, 3] * rng.uniform(0.3, 0.7, size=n)
    area = box[:, 2] * box[:, 3] * rng.uniform(0.4, 0.9, size=n)
    col = [None if rng.random() < 0.2 else palette[int(rng.integers(len(palette)))] for _ in range(n)]
    scene = Scene.from_arrays("random", w, h, np.arange(1, n + 1), labels, box, area, cx, cy, colors=col,
                              visible_area_frac=0.0, occlusion_overlap=2.0)
    return scene


def _run(hops: Sequence[Hop], scene: Scene) -> list[float | None] | None:
    results: list = []
    named: set[int] = set()
    try:
        for h in hops:
            results.append(P.run_hop(h, results, scene, _FREE, named, reach=False))
            if P.output_type(h) == "instance":
                named.add(int(results[-1][0]))
    except ProgramError:
        return None
    return [float(r) if isinstance(r, (int, float)) else None for r in results]


def _concrete(key: str) -> tuple[list[Hop], list[str], list[str]]:
    """A shape key as runnable hops — colour placeholders k0, k1, .. become the first chromatic
    terms, in order — with its categories and colours."""
    hops = P.program_from_json(key)
    cats = list(dict.fromkeys(c for h in hops for c in hop_categories(h.args)))
    cols = list(dict.fromkeys(h.args["color"] for h in hops if "color" in h.args))
    real = dict(zip(cols, _CHROMATIC, strict=False))
    hops = [Hop(h.op, {**h.args, **({"color": real[h.args["color"]]} if "color" in h.args else {})}, h.inputs)
            for h in hops]
    return hops, cats, list(real.values())


@functools.lru_cache(maxsize=65536)
def _verdict(key: str) -> tuple[str, str] | None:
    """(reason, detail) for a degenerate program shape, ``("undetermined", ..)`` or ``None``."""
    hops, cats, cols = _concrete(key)
    numbers = [i for i, h in enumerate(hops) if P.output_type(h) == "number"]
    ariths = [i for i, h in enumerate(hops) if h.op == "arith"]
    seen: dict[int, set[float]] = {i: set() for i in numbers}
    answers: Counter = Counter()
    differs: dict[int, bool] = {i: False for i in ariths}
    runs = 0
    pool = _scene_pool(len(cats), len(cols))
    limit = MAX_TRIALS
    k = 0
    while k < limit:
        scene = pool[k]
        k += 1
        if k == 50 and runs < 3:
            limit = MORE_TRIALS  # rarely executes: look further
        vals = _run(hops, scene)
        if vals is None:
            continue
        runs += 1
        answers[vals[-1]] += 1
        for i in numbers:
            seen[i].add(vals[i])  # type: ignore[arg-type]
        for i in ariths:
            a, b = (vals[j] for j in hops[i].inputs)
            if vals[i] != a and vals[i] != b:
                differs[i] = True
        if runs >= PRIOR_RUNS and all(len(v) > 1 for v in seen.values()) and all(differs.values()):
            break
        if runs >= ENOUGH_RUNS:
            break
    if runs < MIN_RUNS:
        return ("undetermined", f"executed on only {runs} of {limit} randomised scenes")
    last = len(hops) - 1
    if len(seen[last]) == 1:
        return ("constant_answer", f"the answer is {next(iter(seen[last])):g} on every randomised scene")
    for i in numbers:
        if len(seen[i]) == 1:
            return ("constant_hop", f"hop {i} is {next(iter(seen[i])):g} on every randomised scene")
    for i in ariths:
        if not differs[i]:
            return ("arith_trivial", f"hop {i} ({hops[i].args['fn']}) always equals one of its operands")
    if predictable(answers):
        value, top = answers.most_common(1)[0]
        return ("predictable_answer", f"the answer is {value:g} on {top} of {runs} randomised scenes")
    return None


def predictable(answers: Counter) -> bool:
    """One answer on at least ``PREDICTABLE_SHARE`` of the executions, judged from ``PRIOR_RUNS`` on."""
    runs = sum(answers.values())
    return runs >= PRIOR_RUNS and answers.most_common(1)[0][1] >= PREDICTABLE_SHARE * runs - 1e-9


_SWAP_ORDER = {"max": "min", "min": "max"}
_TRANSPOSE_KEY = {"cx": "cy", "cy": "cx", "area": "area"}
_TRANSPOSE_REL = {"left_of": "above", "above": "left_of", "right_of": "below", "below": "right_of"}
_FLIP_REL = {"x": {"left_of": "right_of", "right_of": "left_of"}, "y": {"above": "below", "below": "above"}}
_AXIS_KEY = {"x": "cx", "y": "cy", "a": "area"}


def _transform(program: list[dict], flips: tuple[str, ...], transpose: bool) -> str:
    out = []
    for h in program:
        a = dict(h["args"])
        if transpose:
            if "key" in a:
                a["key"] = _TRANSPOSE_KEY[a["key"]]
            if "relation" in a:
                a["relation"] = _TRANSPOSE_REL[a["relation"]]
        for axis in flips:
            if a.get("key") == _AXIS_KEY[axis]:
                a["order"] = _SWAP_ORDER[a["order"]]
            if axis in _FLIP_REL and a.get("relation") in _FLIP_REL[axis]:
                a["relation"] = _FLIP_REL[axis][a["relation"]]
        out.append({**h, "args": a})
    return json.dumps(out, sort_keys=True, separators=(",", ":"))


@functools.lru_cache(maxsize=65536)
def canonical_shape(key: str) -> str:
    """The smallest of the program's 16 images under the symmetries of the randomised scenes
    (mirror left/right, mirror top/bottom, swap the axes, reverse the area order): a program and
    its mirror image are degenerate together, so they share one verdict."""
    program = json.loads(key)
    variants = []
    for transpose in (False, True):
        for flips in itertools.chain.from_iterable(itertools.combinations("xya", k) for k in range(4)):
            variants.append(_transform(program, flips, transpose))
    return min(variants)


Verdict = tuple[str, str] | None

_HERE = Path(__file__).resolve().parent
#: the shipped verdicts (see the module docstring)
TABLE_PATH = _HERE / "degenerate_verdicts.json"
#: the files a verdict depends on: the randomised scenes and the check (this module), the executor and
#: its reach rules, the scene, the colour terms and every op's executor
STAMP_SOURCES = ("degenerate.py", "program.py", "scene.py", "color.py", "ops/*.py")


def source_stamp() -> str:
    """sha256 of numpy's version and of every :data:`STAMP_SOURCES` file (path and bytes)."""
    digest = hashlib.sha256(f"numpy {np.__version__}\n".encode())
    for pattern in STAMP_SOURCES:
        for path in sorted(_HERE.glob(pattern)):
            digest.update(f"{path.relative_to(_HERE).as_posix()}\n".encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def table_key(canonical: str) -> str:
    """The table's key of a canonical shape: 24 hex digits of its sha256."""
    return hashlib.sha256(canonical.encode()).hexdigest()[:24]


@functools.cache
def shipped_verdicts() -> dict[str, Verdict]:
    """The shipped table (table key -> verdict); empty when absent or stale (its stamp is not the code's)."""
    try:
        data = json.loads(TABLE_PATH.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    if data.get("stamp") != source_stamp():
        return {}
    return {k: (str(v[0]), str(v[1])) if v else None for k, v in data["verdicts"].items()}


def verdict_of(canonical: str) -> Verdict:
    """The verdict of a canonical shape: from the shipped table, else judged (and cached) now."""
    table = shipped_verdicts()
    key = table_key(canonical)
    return table[key] if key in table else _verdict(canonical)


_BY_SHAPE: dict[tuple, Verdict] = {}  # the renamed program as a tuple -> verdict, a front cache
_BY_SHAPE_MAX = 65536


def _shape_tuple(hops: Sequence[Hop]) -> tuple:
    """What :func:`shape_key` encodes, as a tuple (categories and colours renamed in order of first
    appearance); equal tuples mean equal shape keys. Hashing it is much cheaper than the JSON."""
    names: dict[tuple[str, object], str] = {}
    n_cat = n_col = 0
    out = []
    for h in hops:
        args: list[tuple[str, str | tuple[str, ...]]] = []
        if any(i.__class__ is not int for i in h.inputs):
            raise TypeError("inputs other than ints")  # JSON would tell True from 1: take that path
        for name, value in sorted(h.args.items()):
            if name == GROUP_ARG and value.__class__ in (list, tuple):
                for c in value:  # as shape_key: the group's new categories named in its order, then sorted
                    if c.__class__ is not str:
                        raise TypeError("a group member other than a string")
                    if ("category", c) not in names:
                        names[("category", c)], n_cat = f"c{n_cat}", n_cat + 1
                args.append((name, tuple(sorted(names[("category", c)] for c in value))))
                continue
            if value.__class__ is not str:
                raise TypeError("an argument other than a string")
            if name == "category" or name == "color":
                renamed = names.get((name, value))
                if renamed is None:
                    if name == "category":
                        renamed, n_cat = f"c{n_cat}", n_cat + 1
                    else:
                        renamed, n_col = f"k{n_col}", n_col + 1
                    names[(name, value)] = renamed
                value = renamed
            args.append((name, value))
        out.append((h.op, tuple(args), tuple(h.inputs)))
    return tuple(out)


def clear_caches() -> None:
    """Forget every verdict this process has read or judged (benches measure a cold start with it)."""
    _BY_SHAPE.clear()
    _verdict.cache_clear()
    shipped_verdicts.cache_clear()


def check_not_degenerate(hops: Sequence[Hop]) -> None:
    """Raise :class:`LeakageError` if a value of the program never changes over randomised scenes
    — or if it could not be shown to change (``leakage.undetermined``: too few executions)."""
    try:
        key: tuple | None = _shape_tuple(hops)
        verdict = _BY_SHAPE[key]  # type: ignore[index]
    except TypeError:  # an unhashable argument value: only the JSON form can say what it is
        key, verdict = None, verdict_of(canonical_shape(shape_key(hops)))
    except KeyError:
        verdict = verdict_of(canonical_shape(shape_key(hops)))
        if len(_BY_SHAPE) >= _BY_SHAPE_MAX:
            _BY_SHAPE.clear()
        _BY_SHAPE[key] = verdict  # type: ignore[index]
    if verdict is not None:
        raise LeakageError(*verdict)


def answers_on_random_scenes(hops: Sequence[Hop], seed: int, max_scenes: int = 3000,
                             enough: int = 40) -> tuple[set, int]:
    """(answers seen, executions) of the program's shape on freshly drawn randomised scenes from the
    stream ``seed`` — independent of the cached pool — until two answers, ``enough`` executions or
    ``max_scenes`` scenes. For tests and benches that judge the generator from outside."""
    shape, cats, cols = _concrete(shape_key(hops))
    rng = np.random.default_rng(seed)
    seen: set = set()
    runs = 0
    for _ in range(max_scenes):
        vals = _run(shape, _random_scene(rng, cats, cols))
        if vals is not None:
            seen.add(vals[-1])
            runs += 1
            if len(seen) > 1 or runs >= enough:
                break
    return seen, runs
