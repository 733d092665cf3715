"""The degeneracy verdict of a generated program, with its canonical shape written by hand.

:func:`pipelines.questions.degenerate.check_not_degenerate` looks each new program shape up by its
canonical form: the smallest JSON text of the shape's 16 mirror images
(:func:`~pipelines.questions.degenerate.canonical_shape`), built with a ``json.dumps`` per image —
about 0.3 ms per shape, which the generator pays for every shape not seen before in the process
(hundreds per batch of 100 images). :func:`canonical_of_shape` writes the same 16 texts directly from
the renamed shape tuple (no parse, no dict copies, no encoder): the same string, character for
character (tests/unit/questions/test_shape_canon.py checks it on every shape the generator emits).

This module is not part of the verdict table's source stamp (it decides no verdict: it only names
the table's key faster), so the shipped table stays valid.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Sequence
from json.encoder import encode_basestring_ascii as _quote
from typing import Any

from pipelines.questions import degenerate as D
from pipelines.questions.ops.spec import Hop, LeakageError

#: the 8 flip sets of the randomised scenes' symmetries, in canonical_shape's order
_FLIPS = tuple(itertools.chain.from_iterable(itertools.combinations("xya", k) for k in range(4)))

Shape = tuple  # degenerate._shape_tuple: ((op, ((arg, value), ...) sorted, inputs), ...)


@functools.lru_cache(maxsize=16384)
def _args_json(args: tuple[tuple[str, str | tuple[str, ...]], ...], flips: tuple[str, ...], transpose: bool) -> str:
    """``json.dumps`` of one hop's args after ``degenerate._transform``'s rewrite (keys sorted); a
    program's args are drawn from a few hundred renamed values, so this is a dict lookup after warm-up."""
    a: dict[str, Any] = dict(args)  # key/order/relation are strings; only a group's names are a tuple
    if transpose:
        if "key" in a:
            a["key"] = D._TRANSPOSE_KEY[a["key"]]
        if "relation" in a:
            a["relation"] = D._TRANSPOSE_REL[a["relation"]]
    for axis in flips:
        if a.get("key") == D._AXIS_KEY[axis]:
            a["order"] = D._SWAP_ORDER[a["order"]]
        if axis in D._FLIP_REL and a.get("relation") in D._FLIP_REL[axis]:
            a["relation"] = D._FLIP_REL[axis][a["relation"]]
    return "{" + ",".join(f"{_quote(k)}:{_json_value(a[k])}" for k, _ in args) + "}"


def _json_value(v: str | tuple[str, ...]) -> str:
    """A renamed argument as ``json.dumps`` writes it: a string, or a named group's sorted names."""
    return _quote(v) if isinstance(v, str) else "[" + ",".join(_quote(c) for c in v) + "]"


def canonical_of_shape(shape: Shape) -> str:
    """``canonical_shape(shape_key(hops))`` for the hops whose ``_shape_tuple`` is ``shape``."""
    tails = [f',"inputs":[{",".join(str(i) for i in inputs)}],"op":{_quote(op)}}}' for op, _, inputs in shape]
    hops = [(a, t) for (_, a, _), t in zip(shape, tails, strict=True)]
    return min("[" + ",".join(['{"args":' + _args_json(a, flips, transpose) + t for a, t in hops]) + "]"
               for transpose in (False, True) for flips in _FLIPS)


def check_not_degenerate(hops: Sequence[Hop]) -> None:
    """:func:`pipelines.questions.degenerate.check_not_degenerate`, the same verdicts and the same
    front cache, with the canonical shape of a new shape written by :func:`canonical_of_shape`."""
    try:
        key = D._shape_tuple(hops)
    except TypeError:  # an argument JSON alone can name: the original path
        D.check_not_degenerate(hops)
        return
    if key in D._BY_SHAPE:
        verdict = D._BY_SHAPE[key]
    else:
        verdict = D.verdict_of(canonical_of_shape(key))
        if len(D._BY_SHAPE) >= D._BY_SHAPE_MAX:
            D._BY_SHAPE.clear()
        D._BY_SHAPE[key] = verdict
    if verdict is not None:
        raise LeakageError(*verdict)

__all__ = ["canonical_of_shape", "check_not_degenerate"]
