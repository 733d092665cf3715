"""Hop programs: the data model, the chain rules, the reach rules and the executor.

A program is a list of hops ``{"op", "args", "inputs", "kind", "value"}``;
``docs/hop-programs.md`` states every op and margin precisely. Each op — its semantics, arguments,
margins, reason codes and chain roles — is declared once in :mod:`pipelines.questions.ops`; this
module runs programs by reading that registry and knows no op by name. Values speak in
instance ids (a sorted list) or numbers. Positions in a :class:`~pipelines.questions.scene.Scene`
are internal and never leave the executor.

Every failure is a :class:`ProgramError` whose ``reason`` is a stable dotted code (``margin.extreme_area``,
``structure.dangling_hop``, ...) and whose ``hop`` is the index of the offending hop (or ``None``).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from pipelines.contracts import canonical_number
from pipelines.questions.ops import OPS
from pipelines.questions.ops.arith import ARITH_FNS, op_arith
from pipelines.questions.ops.count import op_count
from pipelines.questions.ops.extreme import op_extreme
from pipelines.questions.ops.filter_color import COLORS, op_filter_color
from pipelines.questions.ops.find import EMPTY, op_find
from pipelines.questions.ops.nearest import op_nearest
from pipelines.questions.ops.rank import op_rank
from pipelines.questions.ops.relate import RELATIONS, op_relate
from pipelines.questions.ops.same_color import op_same_color
from pipelines.questions.ops.spec import (
    DEFAULT_MARGINS,
    GROUP_ARG,
    GROUP_SIZES,
    KEYS,
    ORDERS,
    ArgumentError,
    ExecutionError,
    Hop,
    Kind,
    LeakageError,
    MarginError,
    Margins,
    OpSpec,
    ProgramError,
    ReachError,
    StructureError,
    Value,
    ValueType,
    hop_categories,
)
from pipelines.questions.ops.unique import op_unique
from pipelines.questions.scene import Scene


def margins_of(cfg: Any) -> Margins:
    """The executor's margins from a :class:`~pipelines.config.QuestionsConfig`."""
    return Margins(
        area_ratio=cfg.area_ratio,
        axis_gap=cfg.axis_gap,
        nearest_ratio=cfg.nearest_ratio,
        relate_gap=cfg.relate_gap,
        max_count=cfg.max_count,
    )


def spec_of(op: str, hop: int | None = None) -> OpSpec:
    """The registered op ``op``; :class:`ArgumentError` ``unknown_op`` if there is none."""
    spec = OPS.get(op)
    if spec is None:
        raise ArgumentError("unknown_op", f"{op!r} (known: {', '.join(OPS.names())})", hop)
    return spec


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
    return (h.op, tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in h.args.items())),
            tuple(h.inputs))


def question_id(image_id: str, hops: Sequence[Hop]) -> str:
    """Deterministic id: sha256 of ``image_id`` + canonical program JSON, 32 hex characters."""
    return hashlib.sha256(f"{image_id}\n{canonical_program(hops)}".encode()).hexdigest()[:32]


# ----------------------------------------------------------------------------------------- structure


def output_type(hop: Hop) -> ValueType:
    return OPS[hop.op].output


def check_structure(hops: Sequence[Hop], min_hops: int = 3, max_hops: int = 6) -> None:
    """The chain rules: hop 0 has no inputs, every later hop consumes earlier hops (of the right
    type), every hop but the last is consumed, the last yields a number, ``min_hops <= len <= max_hops``,
    and every op's args are exactly the allowed ones with allowed values."""
    n = len(hops)
    if not (min_hops <= n <= max_hops):
        raise StructureError("num_hops", f"{n} hops, expected {min_hops}..{max_hops}")
    consumed = [False] * n
    for i, h in enumerate(hops):
        spec = spec_of(h.op, i)
        in_types = spec.inputs
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
        _check_args(h, spec, i)
    for i in range(n - 1):
        if not consumed[i]:
            raise StructureError("dangling_hop", f"hop {i} ({hops[i].op}) is used by no later hop", i)
    if output_type(hops[-1]) != "number":
        raise StructureError(
            "last_not_number", f"last hop {hops[-1].op} yields a {output_type(hops[-1])}", n - 1
        )


def _check_args(h: Hop, spec: OpSpec, i: int) -> None:
    allowed = tuple(spec.args)
    extra = set(h.args) - set(allowed)
    missing = set(allowed) - set(h.args)
    if extra or missing:
        raise ArgumentError(
            "args",
            f"{h.op} args must be {sorted(allowed)}; missing {sorted(missing)}, unknown {sorted(extra)}",
            i,
        )
    a = h.args
    for name, options in spec.args.items():  # closed choices first, then category names
        if options is not None and a[name] not in options:
            raise ArgumentError(f"bad_{name}", f"{a[name]!r} not in {options}", i)
    for name, options in spec.args.items():
        if options is None and name == GROUP_ARG:
            _check_group(a[name], i)
        elif options is None and (not isinstance(a[name], str) or not a[name].strip()):
            raise ArgumentError(f"bad_{name}", f"{a[name]!r}", i)


def _check_group(group: Any, i: int) -> None:
    """A named group: a list of 2..4 distinct, non-empty category names."""
    lo, hi = GROUP_SIZES
    if (not isinstance(group, (list, tuple)) or not lo <= len(group) <= hi
            or not all(isinstance(c, str) and c.strip() for c in group) or len(set(group)) != len(group)):
        raise ArgumentError(f"bad_{GROUP_ARG}", f"{group!r}: a named group is {lo}..{hi} distinct category names", i)


def hop_kinds(hops: Sequence[Hop]) -> list[Kind]:
    """Each hop's kind (docs/hop-programs.md, "Hop kinds"):

    ``instance_chain`` for a step from one instance to another — a ``chain_step`` op (``nearest``);
    a ``from_reference`` set (``relate``, ``same_color``) narrowed by a ``narrows`` op
    (``extreme``, ``unique``) to the next instance; that narrowing hop. Everything else (finding,
    single-object attributes, multi-object relations that are counted or ranked, counts, ranks,
    arithmetic) is ``perception``.
    """
    kinds: list[Kind] = ["perception"] * len(hops)
    for i, h in enumerate(hops):
        spec = OPS.get(h.op)
        if spec is None:
            continue
        if spec.chain_step:
            kinds[i] = "instance_chain"
        elif spec.narrows and h.inputs and getattr(OPS.get(hops[h.inputs[0]].op), "from_reference", False):
            kinds[i] = "instance_chain"
            kinds[h.inputs[0]] = "instance_chain"
    return kinds


def has_both_kinds(hops: Sequence[Hop]) -> bool:
    """True when the program has an instance-chain step and a perception-level hop other than
    one that only names a category (``find``): an attribute, a relation that is counted, a count,
    a rank, arithmetic."""
    kinds = hop_kinds(hops)
    return "instance_chain" in kinds and any(
        k == "perception" and getattr(OPS.get(h.op), "perceives", True) for h, k in zip(hops, kinds, strict=True)
    )


def skeleton(hops: Sequence[Hop]) -> str:
    """The program's shape without its arguments: ``find>extreme(0)>nearest(1)>...``."""
    return ">".join(f"{h.op}({','.join(map(str, h.inputs))})" if h.inputs else h.op for h in hops)


# ----------------------------------------------------------------------------------------- reach


def _alone(args: Mapping[str, Any], ins: list[Any], scene: Scene) -> bool:
    """A ``from_reference`` hop over a category with no instance besides its reference A."""
    a = int(ins[0][0])
    if GROUP_ARG in args:
        return all(p == a for c in args[GROUP_ARG] for p in scene.by_category.get(c, EMPTY).tolist())
    members = scene.by_category.get(args["category"], EMPTY)
    return all(p == a for p in members.tolist())  # plain ints: a category holds a handful of members


def check_reach(h: Hop, ins: list[Any], result: Any, named: Collection[int], scene: Scene, m: Margins) -> None:
    """Raise :class:`ReachError` if hop ``h`` asks more than a person can do reliably
    (docs/hop-programs.md, "Within a person's reach"):

    * ``uncountable_category``: it names a category a reader cannot enumerate;
    * ``set_too_large``: it names a category (or a named group, all its categories together) with
      more than ``max_count`` instances, or its set has more than ``max_count`` members (every set
      is one a person counts, orders or scans); each category of a named group is held to
      ``uncountable_category`` too;
    * ``size_not_whole``: it compares sizes (an op's ``compares_size`` set, by ``key == "area"``:
      ``extreme``/``rank``) in a set holding an instance cut by the border or possibly hidden;
    * ``revisit``: it yields an instance that an earlier instance-valued hop already named
      (``named`` holds their positions);
    * ``no_candidate``: a ``from_reference`` op (``relate``/``same_color``) over a category with no
      instance besides A (its set is empty whatever the picture shows).
    """
    _check_reach(OPS[h.op], h.args, ins, result, named, scene, m)


def _check_reach(spec: OpSpec, args: Mapping[str, Any], ins: list[Any], result: Any, named: Collection[int],
                 scene: Scene, m: Margins) -> None:
    """:func:`check_reach` for an op already looked up (the generator runs this tens of thousands of times)."""
    cat = args.get("category")
    if cat is not None:
        if cat in scene.uncountable:
            raise ReachError("uncountable_category", f"{cat!r} has instances a reader cannot enumerate")
        if scene.by_category.get(cat, EMPTY).shape[0] > m.max_count:
            raise ReachError("set_too_large", f"{scene.by_category[cat].shape[0]} {cat} > {m.max_count}")
    elif GROUP_ARG in args:  # a named group: each category as above, and all its members together
        group = hop_categories(args)
        for c in group:
            if c in scene.uncountable:
                raise ReachError("uncountable_category", f"{c!r} has instances a reader cannot enumerate")
        total = sum(scene.by_category.get(c, EMPTY).shape[0] for c in group)
        if total > m.max_count:
            raise ReachError("set_too_large", f"{total} members of the group {list(group)} > {m.max_count}")
    if isinstance(result, np.ndarray) and spec.output == "set" and result.shape[0] > m.max_count:
        raise ReachError("set_too_large", f"a set of {result.shape[0]} > {m.max_count}")
    if spec.compares_size is not None and args.get("key") == "area":
        s = ins[spec.compares_size]
        if s.shape[0] > 1 and not scene.whole[s].all():
            raise ReachError("size_not_whole", "sizes compared with an instance cut by the border or hidden")
    if spec.from_reference and _alone(args, ins, scene):
        raise ReachError("no_candidate", f"no {' or '.join(hop_categories(args))} other than the reference")
    if spec.output == "instance" and int(result[0]) in named:
        raise ReachError("revisit", "the step returns to an instance already named")


# ----------------------------------------------------------------------------------------- executor


def run_hop(
    h: Hop, results: list[Any], scene: Scene, m: Margins, named: Collection[int] = (), *, reach: bool = True
) -> Any:
    """Run one hop on the earlier hops' ``results`` (positions / numbers) with its op's registered
    function, and check its margins and reach (``named``: positions earlier instance-valued hops
    yielded; ``reach=False`` checks only ``revisit`` and ``no_candidate``, for the randomised scenes
    of the degeneracy check); raises a :class:`ProgramError` (with ``hop=None``)."""
    if reach:
        return run_op(h.op, h.args, [results[j] for j in h.inputs], scene, m, named)
    spec = OPS.get(h.op)
    if spec is None:
        raise ArgumentError("unknown_op", h.op)
    ins = [results[j] for j in h.inputs]
    out = spec.run(scene, ins, h.args, m)
    if spec.output == "instance" and int(out[0]) in named:
        raise ReachError("revisit", "the step returns to an instance already named")
    if spec.from_reference and _alone(h.args, ins, scene):
        raise ReachError("no_candidate", f"no {' or '.join(hop_categories(h.args))} other than the reference")
    return out


def run_op(
    op: str, args: Mapping[str, Any], ins: list[Any], scene: Scene, m: Margins, named: Collection[int] = ()
) -> Any:
    """:func:`run_hop` (reach checked) for a hop given as its op, args and input values: what the
    generator calls for every candidate hop, without building a :class:`Hop` first."""
    spec = OPS.get(op)
    if spec is None:
        raise ArgumentError("unknown_op", op)
    out = spec.run(scene, ins, args, m)
    _check_reach(spec, args, ins, out, named, scene, m)
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


__all__ = [
    "ARITH_FNS",
    "COLORS",
    "DEFAULT_MARGINS",
    "KEYS",
    "ORDERS",
    "RELATIONS",
    "ArgumentError",
    "ExecutionError",
    "Hop",
    "Kind",
    "LeakageError",
    "MarginError",
    "Margins",
    "ProgramError",
    "ReachError",
    "StructureError",
    "Value",
    "ValueType",
    "answer_of",
    "canonical_program",
    "check_reach",
    "check_structure",
    "execute",
    "has_both_kinds",
    "hop_key",
    "hop_kinds",
    "margins_of",
    "op_arith",
    "op_count",
    "op_extreme",
    "op_filter_color",
    "op_find",
    "op_nearest",
    "op_rank",
    "op_relate",
    "op_same_color",
    "op_unique",
    "output_type",
    "program_from_json",
    "program_to_json",
    "question_id",
    "run_hop",
    "run_op",
    "skeleton",
    "spec_of",
    "verify",
]
