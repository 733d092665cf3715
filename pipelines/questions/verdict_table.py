"""The shipped degeneracy verdicts (``degenerate_verdicts.json``): every program shape the generator's
grammar can produce, judged ahead so that no image waits tens of milliseconds for a new shape.

    python -m pipelines.questions.verdict_table --write   # judge every shape, rewrite the table (~2 min)
    python -m pipelines.questions.verdict_table --check   # exit 1 unless the table is exactly that

The shapes are enumerated from :data:`pipelines.questions.generator.PLANS` the way
:class:`~pipelines.questions.generator._Builder` fills each plan — every choice of key, order,
relation, arithmetic function, and every way the named categories and colours can repeat or be new
— and reduced to canonical shapes (:func:`~pipelines.questions.degenerate.canonical_shape`). The
enumeration is a superset of what the builder can reach; a shape outside it (a grammar that grew
without this module) is judged on the spot, so a missing entry costs time, never a verdict, and a
unit test runs the generator and fails when one is missing. The table carries the
:func:`~pipelines.questions.degenerate.source_stamp` it was judged under; a stale table is ignored.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from collections.abc import Iterator
from pathlib import Path

from pipelines.questions import degenerate as D
from pipelines.questions.generator import PLANS
from pipelines.questions.ops.spec import GROUP_ARG, GROUP_SIZES
from pipelines.questions.program import ARITH_FNS, KEYS, ORDERS, RELATIONS, Hop

EXTREMES = tuple((k, o) for k in KEYS for o in ORDERS)
#: (hops so far, categories named, colours named, index of the current instance hop, its category)
State = tuple[tuple[Hop, ...], int, int, int, str]


def _names(prefix: str, used: int) -> list[tuple[str, int]]:
    """Each name a slot may take: one already used, or the next new one (with the new count)."""
    return [(f"{prefix}{i}", used) for i in range(used)] + [(f"{prefix}{used}", used + 1)]


def _anchors(kind: str) -> Iterator[State]:
    h0 = Hop("find", {"category": "c0"})
    if kind == "U":
        yield (h0, Hop("unique", {}, (0,))), 1, 0, 1, "c0"
    elif kind == "X":
        for k, o in EXTREMES:
            yield (h0, Hop("extreme", {"key": k, "order": o}, (0,))), 1, 0, 1, "c0"
    else:
        f = Hop("filter_color", {"color": "k0"}, (0,))
        if kind == "CU":
            yield (h0, f, Hop("unique", {}, (1,))), 1, 1, 2, "c0"
        else:
            for k, o in EXTREMES:
                yield (h0, f, Hop("extreme", {"key": k, "order": o}, (1,))), 1, 1, 2, "c0"


def _steps(kind: str, st: State, only_c0: bool) -> Iterator[State]:
    hops, n_cat, n_col, x, _ = st
    n = len(hops)
    if kind == "N":
        for c, n_cat2 in _names("c", n_cat):
            if not only_c0 or c == "c0":
                yield (*hops, Hop("nearest", {"category": c}, (x,))), n_cat2, n_col, n, c
        return
    for c, n_cat2 in _names("c", n_cat):
        sets = ([Hop("relate", {"relation": r, "category": c}, (x,)) for r in RELATIONS] if kind[0] == "R"
                else [Hop("same_color", {"category": c}, (x,))])
        for s in sets:
            if kind[1] == "E":
                for k, o in EXTREMES:
                    yield (*hops, s, Hop("extreme", {"key": k, "order": o}, (n,))), n_cat2, n_col, n + 1, c
            else:
                yield (*hops, s, Hop("unique", {}, (n,))), n_cat2, n_col, n + 1, c


def _groups(used: int) -> Iterator[tuple[list[str], int]]:
    """Each named group a ``G`` terminal may take (with the new category count): any 2..4 categories,
    some already named, the rest new (named in order)."""
    lo, hi = GROUP_SIZES
    old = [f"c{i}" for i in range(used)]
    for k in range(lo, hi + 1):
        for n_old in range(0, min(k, len(old)) + 1):
            new = [f"c{used + i}" for i in range(k - n_old)]
            for subset in itertools.combinations(old, n_old):
                yield sorted([*subset, *new]), used + len(new)


def _terminals(kind: str, st: State) -> Iterator[tuple[tuple[Hop, ...], int, int, int]]:
    """(hops, categories, colours, index of the number hop) for each way to fill a terminal."""
    hops, n_cat, n_col, x, x_cat = st
    n = len(hops)
    if kind == "K":
        hx = hops[x]
        sets: list[tuple[int, str | None]] = []
        if hx.op == "extreme":
            sets.append((hx.inputs[0], hx.args["key"]))
        if x_cat == "c0" and all(s != 0 for s, _ in sets):
            sets.append((0, None))
        used = {h.args["key"] for h in hops if h.op == "rank" and h.inputs[0] == x}  # a second rank: another key
        for s, avoid in sets:
            for k, o in EXTREMES:
                if k != avoid and k not in used:
                    yield (*hops, Hop("rank", {"key": k, "order": o}, (x, s))), n_cat, n_col, n
    elif kind in ("RC", "SC"):
        for c, n_cat2 in _names("c", n_cat):
            counted = ([Hop("relate", {"relation": r, "category": c}, (x,)) for r in RELATIONS] if kind == "RC"
                       else [Hop("same_color", {"category": c}, (x,))])
            for h in counted:
                yield (*hops, h, Hop("count", {}, (n,))), n_cat2, n_col, n + 1
    elif kind == "G":
        for group, n_cat2 in _groups(n_cat):
            for r in RELATIONS:
                h = Hop("relate_group", {"relation": r, GROUP_ARG: group}, (x,))
                yield (*hops, h, Hop("count", {}, (n,))), n_cat2, n_col, n + 1
    elif kind == "C0":
        yield (*hops, Hop("count", {}, (0,))), n_cat, n_col, n
    elif kind == "CF":
        for k, n_col2 in _names("k", n_col):
            yield (*hops, Hop("filter_color", {"color": k}, (0,)), Hop("count", {}, (n,))), n_cat, n_col2, n + 1
    else:
        raise ValueError(f"unknown terminal {kind!r}")


def grammar_programs() -> Iterator[list[Hop]]:
    """Every program the generator's plans can be filled into (categories c0.., colours k0..)."""
    for n in sorted(PLANS):
        for anchor, steps, terminal in PLANS[n]:
            states = list(_anchors(anchor))
            for k, step in enumerate(steps):
                only_c0 = "K" in terminal and step == "N" and k == len(steps) - 1
                states = [s2 for st in states for s2 in _steps(step, st, only_c0)]
            for st in states:
                if terminal[0] != "A":
                    for hops, *_ in _terminals(terminal[0], st):
                        yield list(hops)
                    continue
                for h1, c1, k1, a in _terminals(terminal[1], st):
                    for h2, _, _, b in _terminals(terminal[2], (h1, c1, k1, st[3], st[4])):
                        for fn in ARITH_FNS:  # `sub` may swap its operands (keeps differences >= 0)
                            for ab in ((a, b), (b, a)) if fn == "sub" else ((a, b),):
                                yield [*h2, Hop("arith", {"fn": fn}, ab)]


def grammar_shapes() -> list[str]:
    """The distinct canonical shapes of :func:`grammar_programs`, sorted."""
    return sorted({D.canonical_shape(D.shape_key(hops)) for hops in grammar_programs()})


def judge_all(shapes: list[str], progress: bool = False) -> dict[str, D.Verdict]:
    """Table key -> verdict of each shape, judged now (never read from a table or cache)."""
    out: dict[str, D.Verdict] = {}
    for i, shape in enumerate(shapes):
        out[D.table_key(shape)] = D._verdict.__wrapped__(shape)
        if progress and (i + 1) % 250 == 0:
            print(f"  judged {i + 1}/{len(shapes)}", file=sys.stderr, flush=True)
    return out


def table_text(verdicts: dict[str, D.Verdict]) -> str:
    """The table file: the stamp, then one line per shape (sorted), small diffs when verdicts change."""
    lines = [f'{{"stamp": "{D.source_stamp()}", "shapes": {len(verdicts)}, "verdicts": {{']
    items = sorted(verdicts.items())
    for i, (k, v) in enumerate(items):
        sep = "," if i < len(items) - 1 else ""
        lines.append(f"{json.dumps(k)}: {json.dumps(list(v) if v else None)}{sep}")
    lines.append("}}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines.questions.verdict_table", description=__doc__)
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--write", action="store_true", help="judge every grammar shape, rewrite the table")
    what.add_argument("--check", action="store_true", help="exit 1 unless the table is the one --write writes")
    parser.add_argument("--path", type=Path, default=D.TABLE_PATH, help="the table (default: %(default)s)")
    args = parser.parse_args(argv)
    shapes = grammar_shapes()
    print(f"{len(shapes)} canonical shapes in the grammar; judging them", file=sys.stderr)
    text = table_text(judge_all(shapes, progress=True))
    if args.write:
        args.path.write_text(text, encoding="utf-8")
        print(f"{args.path}: {len(shapes)} verdicts written")
        return 0
    current = args.path.read_text(encoding="utf-8") if args.path.exists() else ""
    if current == text:
        print(f"{args.path}: current ({len(shapes)} verdicts)")
        return 0
    print(f"{args.path}: stale; run python -m pipelines.questions.verdict_table --write", file=sys.stderr)
    return 1


if __name__ == "__main__":
    raise SystemExit(main())
