"""Hop programs: the data model, the op semantics, the unambiguity margins and the executor.

A program is a list of hops ``{"op", "args", "inputs", "kind", "value"}``;
``docs/hop-programs.md`` states every op and margin precisely. Values speak in
instance ids (a sorted list) or numbers. Positions in a :class:`~pipelines.questions.scene.Scene`
are internal and never leave this module.

Every failure is a :class:`ProgramError` whose ``reason`` is a stable dotted code (``margin.extreme_area``,
``structure.dangling_hop``, ...) and whose ``hop`` is the index of the offending hop (or ``None``).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np

from pipelines.contracts import canonical_number
from pipelines.questions.scene import Scene

Value = list[int] | int | float
ValueType = Literal["set", "instance", "number"]
Kind = Literal["perception", "instance_chain"]

KEYS = ("area", "cx", "cy")
ORDERS = ("max", "min")
RELATIONS = ("left_of", "right_of", "above", "below")
ARITH_FNS = ("add", "sub", "max", "min")
# the basic colour terms of pipelines.questions.color (kept literal here: no import cycle)
COLORS = ("black", "white", "gray", "red", "orange", "yellow", "green", "blue", "purple", "pink", "brown")

# op -> (input types, output type, allowed args)
SIGNATURES: dict[str, tuple[tuple[ValueType, ...], ValueType, tuple[str, ...]]] = {
    "find": ((), "set", ("category",)),
    "extreme": (("set",), "instance", ("key", "order")),
    "relate": (("instance",), "set", ("relation", "category")),
    "nearest": (("instance",), "instance", ("category",)),
    "count": (("set",), "number", ()),
    "rank": (("instance", "set"), "number", ("key", "order")),
    "arith": (("number", "number"), "number", ("fn",)),
    # added ops (docs/hop-programs.md): naming by uniqueness and by colour
    "unique": (("set",), "instance", ()),
    "filter_color": (("set",), "set", ("color",)),
    "same_color": (("instance",), "set", ("category",)),
}
INSTANCE_STEP_SOURCES = ("relate", "same_color")  # a set from another instance, narrowed to one


@dataclass(frozen=True)
class Margins:
    """The unambiguity margins (docs/hop-programs.md, "Ops"; set for a reader, not a program).

    ``area_ratio``: extreme/rank by area need winner >= ratio x runner-up.
    ``axis_gap``: extreme/rank by cx (cy) need a centroid gap >= this fraction of the image width
    (height), and the winner's leading box edge ahead by >= half of it.
    ``nearest_ratio``: nearest needs runner-up distance >= ratio x the nearest distance.
    ``relate_gap``: relate needs every candidate centroid >= this fraction of the image width
    (left_of/right_of) or height (above/below) outside the band between A's boundary edge and
    A's own centroid.
    ``max_count``: every count, rank and every set a person must count or order stays <= this.

    The first build used the design's minimums (1.2x / 3% / 1.2x / 2%); a reader study on real
    photographs showed those are a program's margins, not an eye's, so the defaults are wider.
    """

    area_ratio: float = 1.5
    axis_gap: float = 0.06
    nearest_ratio: float = 1.5
    relate_gap: float = 0.04
    max_count: int = 15


DEFAULT_MARGINS = Margins()


def margins_of(cfg: Any) -> Margins:
    """The executor's margins from a :class:`~pipelines.config.QuestionsConfig`."""
    return Margins(
        area_ratio=cfg.area_ratio,
        axis_gap=cfg.axis_gap,
        nearest_ratio=cfg.nearest_ratio,
        relate_gap=cfg.relate_gap,
        max_count=cfg.max_count,
    )


class ProgramError(ValueError):
    """A program that cannot be accepted; ``reason`` is a stable dotted code, ``hop`` an index."""

    family = "program"

    def __init__(self, reason: str, detail: str = "", hop: int | None = None) -> None:
        self.reason = f"{self.family}.{reason}"
        self.detail = detail
        self.hop = hop
        where = f" (hop {hop})" if hop is not None else ""
        super().__init__(f"{self.reason}{where}: {detail}" if detail else f"{self.reason}{where}")


class StructureError(ProgramError):
    """The chain is malformed: wrong inputs, dangling hops, wrong length, last hop not a number."""

    family = "structure"


class ArgumentError(ProgramError):
    """An unknown op, an unknown or missing argument, or a wrongly typed input."""

    family = "args"


class ExecutionError(ProgramError):
    """The program is well-formed but cannot run on this scene (empty set, no candidate, ...)."""

    family = "execution"


class MarginError(ProgramError):
    """The program runs but one hop breaks an unambiguity margin."""

    family = "margin"


class LeakageError(ProgramError):
    """The question text gives away a value, or a hop does not need the image."""

    family = "leakage"


class ReachError(ProgramError):
    """The program asks more than a person can do reliably: count or order too many things, count a
    category a reader cannot enumerate, compare sizes of cut or hidden instances, or return to an
    instance already named."""

    family = "reach"


@dataclass(frozen=True)
class Hop:
    """One hop. ``value`` is ``None`` until executed; ``kind`` is derived (see :func:`hop_kinds`)."""

    op: str
    args: dict[str, Any] = field(default_factory=dict)
    inputs: tuple[int, ...] = ()
    kind: Kind = "perception"
    value: Value | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "op": self.op,
            "args": dict(self.args),
            "inputs": list(self.inputs),
            "kind": self.kind,
            "value": self.value,
        }


def program_from_json(data: str | Sequence[Any]) -> list[Hop]:
    """Parse a hops JSON list (string or already-loaded); raises :class:`ArgumentError`."""
    if isinstance(data, str):
        try:
            data = json.loads(data)
        except json.JSONDecodeError as err:
            raise ArgumentError("bad_json", str(err)) from None
    if not isinstance(data, list) or not data:
        raise ArgumentError("not_a_list", "hops must be a non-empty JSON list")
    hops: list[Hop] = []
    for i, h in enumerate(data):
        if not isinstance(h, dict) or not isinstance(h.get("op"), str):
            raise ArgumentError("bad_hop", f"hop must be an object with an 'op' string: {h!r}", i)
        args = h.get("args") or {}
        inputs = h.get("inputs") or []
        if not isinstance(args, dict):
            raise ArgumentError("bad_args", f"args must be an object: {args!r}", i)
        if not isinstance(inputs, list) or not all(
            isinstance(x, int) and not isinstance(x, bool) for x in inputs
        ):
            raise ArgumentError("bad_inputs", f"inputs must be a list of hop indices: {inputs!r}", i)
        kind = h.get("kind", "perception")
        hops.append(
            Hop(
                h["op"],
                dict(args),
                tuple(inputs),
                kind if kind in ("perception", "instance_chain") else "perception",
                h.get("value"),
            )
        )
    return hops


def program_to_json(hops: Sequence[Hop]) -> str:
    """The contract's ``hops`` column: a JSON list of hop objects (values included)."""
    return json.dumps([h.to_dict() for h in hops], separators=(",", ":"), sort_keys=True)


def canonical_program(hops: Sequence[Hop]) -> str:
    """Canonical JSON of what the program *is* (op, args, inputs): values and kinds excluded."""
    return json.dumps(
        [{"op": h.op, "args": h.args, "inputs": list(h.inputs)} for h in hops],
        separators=(",", ":"),
        sort_keys=True,
    )


def hop_key(h: Hop) -> tuple:
    """A hashable identity of one hop (op, args, inputs) — cheaper than JSON for dedupe."""
    return (h.op, tuple(sorted(h.args.items())), tuple(h.inputs))


def question_id(image_id: str, hops: Sequence[Hop]) -> str:
    """Deterministic id: sha256 of ``image_id`` + canonical program JSON, 32 hex characters."""
    return hashlib.sha256(f"{image_id}\n{canonical_program(hops)}".encode()).hexdigest()[:32]


# ----------------------------------------------------------------------------------------- structure


def output_type(hop: Hop) -> ValueType:
    return SIGNATURES[hop.op][1]


def check_structure(hops: Sequence[Hop], min_hops: int = 3, max_hops: int = 6) -> None:
    """The chain rules: hop 0 has no inputs, every later hop consumes earlier hops (of the right
    type), every hop but the last is consumed, the last yields a number, ``min_hops <= len <= max_hops``,
    and every op's args are exactly the allowed ones with allowed values."""
    n = len(hops)
    if not (min_hops <= n <= max_hops):
        raise StructureError("num_hops", f"{n} hops, expected {min_hops}..{max_hops}")
    consumed = [False] * n
    for i, h in enumerate(hops):
        if h.op not in SIGNATURES:
            raise ArgumentError("unknown_op", f"{h.op!r} (known: {', '.join(SIGNATURES)})", i)
        in_types, _, allowed = SIGNATURES[h.op]
        if i == 0 and h.inputs:
            raise StructureError("first_hop_has_inputs", f"inputs {list(h.inputs)}", 0)
        if i > 0 and not h.inputs:
            raise StructureError("no_inputs", f"{h.op} takes no earlier hop", i)
        if len(h.inputs) != len(in_types):
            raise ArgumentError("arity", f"{h.op} takes {len(in_types)} input(s), got {len(h.inputs)}", i)
        for j, (src, want) in enumerate(zip(h.inputs, in_types, strict=True)):
            if not (0 <= src < i):
                raise StructureError("input_not_earlier", f"input {src} of hop {i}", i)
            got = output_type(hops[src])
            if got != want:
                raise ArgumentError(
                    "input_type", f"{h.op} input {j} must be a {want}, hop {src} yields a {got}", i
                )
            consumed[src] = True
        _check_args(h, allowed, i)
    for i in range(n - 1):
        if not consumed[i]:
            raise StructureError("dangling_hop", f"hop {i} ({hops[i].op}) is used by no later hop", i)
    if output_type(hops[-1]) != "number":
        raise StructureError(
            "last_not_number", f"last hop {hops[-1].op} yields a {output_type(hops[-1])}", n - 1
        )


def _check_args(h: Hop, allowed: tuple[str, ...], i: int) -> None:
    extra = set(h.args) - set(allowed)
    missing = set(allowed) - set(h.args)
    if extra or missing:
        raise ArgumentError(
            "args",
            f"{h.op} args must be {sorted(allowed)}; missing {sorted(missing)}, unknown {sorted(extra)}",
            i,
        )
    a = h.args
    choices = {"key": KEYS, "order": ORDERS, "relation": RELATIONS, "fn": ARITH_FNS, "color": COLORS}
    for name, options in choices.items():
        if name in a and a[name] not in options:
            raise ArgumentError(f"bad_{name}", f"{a[name]!r} not in {options}", i)
    if "category" in a and (not isinstance(a["category"], str) or not a["category"].strip()):
        raise ArgumentError("bad_category", f"{a['category']!r}", i)


def hop_kinds(hops: Sequence[Hop]) -> list[Kind]:
    """Each hop's kind (docs/hop-programs.md, "Hop kinds"):

    ``instance_chain`` for a step from one instance to another — ``nearest``; a ``relate`` or
    ``same_color`` whose set is narrowed by ``extreme``/``unique`` to the next instance; that
    narrowing hop. Everything else (finding, single-object attributes, multi-object relations
    that are counted or ranked, counts, ranks, arithmetic) is ``perception``.
    """
    kinds: list[Kind] = ["perception"] * len(hops)
    for i, h in enumerate(hops):
        if h.op == "nearest":
            kinds[i] = "instance_chain"
        elif h.op in ("extreme", "unique") and h.inputs and hops[h.inputs[0]].op in INSTANCE_STEP_SOURCES:
            kinds[i] = "instance_chain"
            kinds[h.inputs[0]] = "instance_chain"
    return kinds


def has_both_kinds(hops: Sequence[Hop]) -> bool:
    """True when the program has an instance-chain step and a perception-level hop other than
    ``find`` (an attribute, a relation that is counted, a count, a rank, arithmetic)."""
    kinds = hop_kinds(hops)
    return "instance_chain" in kinds and any(
        k == "perception" and h.op != "find" for h, k in zip(hops, kinds, strict=True)
    )


def skeleton(hops: Sequence[Hop]) -> str:
    """The program's shape without its arguments: ``find>extreme(0)>nearest(1)>...``."""
    return ">".join(f"{h.op}({','.join(map(str, h.inputs))})" if h.inputs else h.op for h in hops)


# ----------------------------------------------------------------------------------------- ops
# Every op works on scene *positions* (np.int64 arrays); sets are sorted position arrays, an
# instance is a 1-element array. They raise ExecutionError / MarginError with hop=None; the
# executor fills the hop index in.

_EMPTY = np.zeros(0, dtype=np.int64)
# the box edge that leads along an axis ordering: (key, order) -> edge array name
_LEADING_EDGE = {("cx", "min"): "x0", ("cx", "max"): "x1", ("cy", "min"): "y0", ("cy", "max"): "y1"}


def op_find(scene: Scene, category: str) -> np.ndarray:
    return scene.by_category.get(category, _EMPTY)


def _ranked_gap_ok(key: str, order: str, winner: float, runner: float, scene: Scene, m: Margins) -> bool:
    if key == "area":
        big, small = (winner, runner) if order == "max" else (runner, winner)
        return big >= m.area_ratio * small and big > small
    size = scene.width if key == "cx" else scene.height
    return abs(winner - runner) >= m.axis_gap * size


def op_extreme(scene: Scene, s: np.ndarray, key: str, order: str, m: Margins) -> np.ndarray:
    if s.shape[0] == 0:
        raise ExecutionError("empty_set", f"extreme {key} {order} of an empty set")
    v = scene.key(key)[s]
    if s.shape[0] == 1:
        return s
    idx = np.argsort(-v if order == "max" else v, kind="stable")
    w, r = v[idx[0]], v[idx[1]]
    if not _ranked_gap_ok(key, order, float(w), float(r), scene, m):
        raise MarginError(f"extreme_{key}", f"{order} {key}: winner {w:.2f} vs runner-up {r:.2f} too close")
    if key != "area":
        # a reader may judge "leftmost" by the left edge: the winner must lead on it too
        edge = getattr(scene, _LEADING_EDGE[(key, order)])[s]
        lead = edge[idx[0]] - edge[idx[1:]]
        lead = -lead if order == "min" else lead
        half = 0.5 * m.axis_gap * (scene.width if key == "cx" else scene.height)
        if lead.min() <= 0 or lead.min() < half:
            raise MarginError(f"extreme_{key}", f"{order} {key}: the winner's box edge leads by {lead.min():.2f}px")
    return s[idx[:1]]


def _relate_band(scene: Scene, pa: int, relation: str, m: Margins) -> tuple[np.ndarray, float, float, float]:
    """(candidate coordinate array, boundary, band low, band high) of a relation from ``pa``."""
    if relation in ("left_of", "right_of"):
        coord, g = scene.cx, m.relate_gap * scene.width
        edge, centre = (scene.x0[pa], scene.cx[pa]) if relation == "left_of" else (scene.x1[pa], scene.cx[pa])
    else:
        coord, g = scene.cy, m.relate_gap * scene.height
        edge, centre = (scene.y0[pa], scene.cy[pa]) if relation == "above" else (scene.y1[pa], scene.cy[pa])
    lo, hi = (edge - g, centre + g) if relation in ("left_of", "above") else (centre - g, edge + g)
    return coord, float(edge), float(lo), float(hi)


def op_relate(scene: Scene, a: np.ndarray, relation: str, category: str, m: Margins) -> np.ndarray:
    pa = int(a[0])
    cand = scene.by_category.get(category, _EMPTY)
    cand = cand[cand != pa]
    coord, bound, lo, hi = _relate_band(scene, pa, relation, m)
    c = coord[cand]
    if cand.shape[0]:
        inside = (c > lo) & (c < hi)
        if inside.any():
            raise MarginError(
                "relate_boundary",
                f"a {category} centroid lies between the {relation} boundary and the reference's centre",
            )
    keep = c < bound if relation in ("left_of", "above") else c > bound
    return cand[keep]


def op_nearest(scene: Scene, a: np.ndarray, category: str, m: Margins) -> np.ndarray:
    pa = int(a[0])
    cand = scene.by_category.get(category, _EMPTY)
    cand = cand[cand != pa]
    if cand.shape[0] == 0:
        raise ExecutionError("no_candidate", f"no other {category} to be nearest")
    d = scene.dist[pa, cand]
    if cand.shape[0] == 1:
        return cand
    two = np.argpartition(d, 1)[:2]
    i1, i2 = (two[0], two[1]) if d[two[0]] <= d[two[1]] else (two[1], two[0])
    if not (d[i2] >= m.nearest_ratio * d[i1] and d[i2] > d[i1]):
        raise MarginError("nearest_ratio", f"runner-up {d[i2]:.2f}px vs nearest {d[i1]:.2f}px")
    return cand[i1 : i1 + 1]


def op_count(s: np.ndarray, m: Margins) -> int:
    n = int(s.shape[0])
    if n > m.max_count:
        raise MarginError("count_too_large", f"{n} > {m.max_count}")
    return n


def op_rank(scene: Scene, x: np.ndarray, s: np.ndarray, key: str, order: str, m: Margins) -> int:
    px = int(x[0])
    if not np.any(s == px):
        raise ExecutionError("rank_not_member", "the ranked instance is not in the set")
    v = scene.key(key)
    others = s[s != px]
    vx = float(v[px])
    for o in v[others].tolist():
        if not _ranked_gap_ok(key, "max", max(vx, o), min(vx, o), scene, m):
            raise MarginError(f"rank_{key}", f"{key} {vx:.2f} vs {o:.2f} too close to rank")
    if key != "area" and others.shape[0]:
        lo, hi = (scene.x0, scene.x1) if key == "cx" else (scene.y0, scene.y1)
        side = np.sign(v[others] - vx)
        if not (np.all(np.sign(lo[others] - lo[px]) == side) and np.all(np.sign(hi[others] - hi[px]) == side)):
            raise MarginError(f"rank_{key}", f"box edges and centres order the {key} ranking differently")
    before = v[others] > vx if order == "max" else v[others] < vx
    return 1 + int(before.sum())


def op_arith(a: float, b: float, fn: str) -> int | float:
    out = {"add": a + b, "sub": a - b, "max": max(a, b), "min": min(a, b)}[fn]
    return int(out) if float(out).is_integer() else float(out)


def op_unique(s: np.ndarray) -> np.ndarray:
    if s.shape[0] != 1:
        raise ExecutionError("not_unique", f"the set has {s.shape[0]} members, not exactly one")
    return s


def _require_colors(scene: Scene, positions: np.ndarray, what: str) -> None:
    if not scene.color:
        raise MarginError("color_unclear", "the scene has no colours (no image was read)")
    unclear = [int(scene.ids[p]) for p in positions.tolist() if scene.color[p] is None]
    if unclear:
        raise MarginError("color_unclear", f"{what}: {len(unclear)} instance(s) without a clear colour")


def op_filter_color(scene: Scene, s: np.ndarray, color: str) -> np.ndarray:
    _require_colors(scene, s, "filter_color")
    return s[np.asarray([scene.color[p] == color for p in s.tolist()], dtype=bool)] if s.shape[0] else s


def op_same_color(scene: Scene, a: np.ndarray, category: str) -> np.ndarray:
    pa = int(a[0])
    cand = scene.by_category.get(category, _EMPTY)
    cand = cand[cand != pa]
    _require_colors(scene, np.concatenate([a, cand]), "same_color")
    want = scene.color[pa]
    return cand[np.asarray([scene.color[p] == want for p in cand.tolist()], dtype=bool)] if cand.shape[0] else cand


# ----------------------------------------------------------------------------------------- reach


def check_reach(h: Hop, ins: list[Any], result: Any, named: Collection[int], scene: Scene, m: Margins) -> None:
    """Raise :class:`ReachError` if hop ``h`` asks more than a person can do reliably
    (docs/hop-programs.md, "Within a person's reach"):

    * ``uncountable_category``: it names a category a reader cannot enumerate;
    * ``set_too_large``: it names a category with more than ``max_count`` instances, or its set
      has more than ``max_count`` members (every set is one a person counts, orders or scans);
    * ``size_not_whole``: it compares sizes (``extreme``/``rank`` by area) in a set holding an
      instance cut by the border or possibly hidden;
    * ``revisit``: it yields an instance that an earlier instance-valued hop already named
      (``named`` holds their positions);
    * ``no_candidate``: a ``relate``/``same_color`` over a category with no instance besides A
      (its set is empty whatever the picture shows).
    """
    cat = h.args.get("category")
    if cat is not None:
        if cat in scene.uncountable:
            raise ReachError("uncountable_category", f"{cat!r} has instances a reader cannot enumerate")
        if scene.by_category.get(cat, _EMPTY).shape[0] > m.max_count:
            raise ReachError("set_too_large", f"{scene.by_category[cat].shape[0]} {cat} > {m.max_count}")
    if isinstance(result, np.ndarray) and output_type(h) == "set" and result.shape[0] > m.max_count:
        raise ReachError("set_too_large", f"a set of {result.shape[0]} > {m.max_count}")
    if h.op in ("extreme", "rank") and h.args.get("key") == "area":
        s = ins[0] if h.op == "extreme" else ins[1]
        if s.shape[0] > 1 and not scene.whole[s].all():
            raise ReachError("size_not_whole", "sizes compared with an instance cut by the border or hidden")
    if h.op in ("relate", "same_color"):
        members = scene.by_category.get(h.args["category"], _EMPTY)
        if not (members != int(ins[0][0])).any():
            raise ReachError("no_candidate", f"no {h.args['category']} other than the reference")
    if output_type(h) == "instance" and int(result[0]) in named:
        raise ReachError("revisit", "the step returns to an instance already named")


# ----------------------------------------------------------------------------------------- executor


def run_hop(
    h: Hop, results: list[Any], scene: Scene, m: Margins, named: Collection[int] = (), *, reach: bool = True
) -> Any:
    """Run one hop on the earlier hops' ``results`` (positions / numbers) and check its margins and
    reach (``named``: positions earlier instance-valued hops yielded; ``reach=False`` checks only
    ``revisit``, for the randomised scenes of the degeneracy check); raises a :class:`ProgramError`
    (with ``hop=None``)."""
    a, ins = h.args, [results[j] for j in h.inputs]
    if h.op == "find":
        out: Any = op_find(scene, a["category"])
    elif h.op == "extreme":
        out = op_extreme(scene, ins[0], a["key"], a["order"], m)
    elif h.op == "relate":
        out = op_relate(scene, ins[0], a["relation"], a["category"], m)
    elif h.op == "nearest":
        out = op_nearest(scene, ins[0], a["category"], m)
    elif h.op == "count":
        out = op_count(ins[0], m)
    elif h.op == "rank":
        out = op_rank(scene, ins[0], ins[1], a["key"], a["order"], m)
    elif h.op == "arith":
        out = op_arith(ins[0], ins[1], a["fn"])
    elif h.op == "unique":
        out = op_unique(ins[0])
    elif h.op == "filter_color":
        out = op_filter_color(scene, ins[0], a["color"])
    elif h.op == "same_color":
        out = op_same_color(scene, ins[0], a["category"])
    else:
        raise ArgumentError("unknown_op", h.op)
    if reach:
        check_reach(h, ins, out, named, scene, m)
    elif output_type(h) == "instance" and int(out[0]) in named:
        raise ReachError("revisit", "the step returns to an instance already named")
    elif (h.op in ("relate", "same_color")
          and not (scene.by_category.get(a["category"], _EMPTY) != int(ins[0][0])).any()):
        raise ReachError("no_candidate", f"no {a['category']} other than the reference")
    return out


def execute(
    hops: Sequence[Hop],
    scene: Scene,
    margins: Margins = DEFAULT_MARGINS,
    *,
    min_hops: int = 3,
    max_hops: int = 6,
) -> list[Hop]:
    """Check the structure, run every hop on ``scene``, check every margin and reach rule.

    Returns new hops with ``value`` (sorted instance ids, or a number) and ``kind`` filled.
    Raises :class:`StructureError`, :class:`ArgumentError`, :class:`ExecutionError`,
    :class:`MarginError` or :class:`ReachError`, each naming the hop.
    """
    check_structure(hops, min_hops, max_hops)
    results: list[Any] = []
    named: set[int] = set()
    for i, h in enumerate(hops):
        try:
            results.append(run_hop(h, results, scene, margins, named))
            if output_type(h) == "instance":
                named.add(int(results[-1][0]))
        except ProgramError as err:
            raise type(err)(err.reason.split(".", 1)[1], err.detail, i) from None
    kinds = hop_kinds(hops)
    out: list[Hop] = []
    for h, r, k in zip(hops, results, kinds, strict=True):
        value: Value = r if isinstance(r, (int, float)) else scene.ids_of(r.tolist())
        out.append(replace(h, kind=k, value=value))
    return out


def answer_of(hops: Sequence[Hop]) -> str:
    """The canonical answer string of an executed program (its last hop's value)."""
    v = hops[-1].value
    if (
        not isinstance(v, (int, float))
        or isinstance(v, bool)
        or (isinstance(v, float) and not math.isfinite(v))
    ):
        raise StructureError("last_not_number", f"last value {v!r}")
    return canonical_number(v)


def verify(
    hops: Sequence[Hop],
    scene: Scene,
    answer: str | None = None,
    margins: Margins = DEFAULT_MARGINS,
    *,
    min_hops: int = 3,
    max_hops: int = 6,
) -> list[Hop]:
    """Re-execute; if stored values / ``answer`` are given they must be reproduced exactly.

    Raises :class:`ExecutionError` ``value_mismatch`` / ``answer_mismatch`` on disagreement.
    """
    done = execute(hops, scene, margins, min_hops=min_hops, max_hops=max_hops)
    for i, (old, new) in enumerate(zip(hops, done, strict=True)):
        if old.value is not None and _norm(old.value) != _norm(new.value):
            raise ExecutionError("value_mismatch", f"stated {old.value!r}, executes to {new.value!r}", i)
    if answer is not None:
        try:
            stated = canonical_number(answer)
        except ValueError:
            raise ExecutionError("answer_not_a_number", f"{answer!r}", len(hops) - 1) from None
        got = answer_of(done)
        if stated != got:
            raise ExecutionError("answer_mismatch", f"stated {stated}, program gives {got}", len(hops) - 1)
    return done


def _norm(v: Any) -> Any:
    if isinstance(v, list):
        try:
            return sorted(int(x) for x in v)
        except (TypeError, ValueError):
            return v
    try:
        return canonical_number(v)
    except ValueError:
        return v
