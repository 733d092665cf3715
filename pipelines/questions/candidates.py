"""The candidate rule: no count or rank is a yes/no question in disguise.

"How many bottles are higher up than B?" in a photo with one other bottle can only be 0 or 1: a
reader (and a policy) answers it by a coin toss, not by looking. So every counted set is drawn from
at least :data:`MIN_CANDIDATES` candidate instances, the members a person has to check:

* ``count(find(c))`` and ``count(filter_color(find(c)))``: the instances of ``c``;
* ``count(relate(r, c)(A))``, ``count(same_color(c)(A))``: the instances of ``c`` other than ``A``;
* ``count(relate_group(r, [c1, c2, ..])(A))``: the instances of every category of the named group
  other than ``A`` (a shelf of single objects is counted over several of them);

and every ranked set holds at least :data:`MIN_CANDIDATES` members (a rank among two is "first or
second"). A program that breaks the rule is refused as ``reach.few_candidates``
(docs/hop-programs.md, "The candidate rule"). The rule reads only the registry's chain roles
(``from_reference``, set-valued hops with a ``category`` or a named group), never an op's name.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from pipelines.questions.ops import OPS
from pipelines.questions.ops.spec import Hop, ReachError, hop_categories
from pipelines.questions.scene import Scene

MIN_CANDIDATES = 3
FEW_CANDIDATES = "reach.few_candidates"


def candidate_pool(hops: Sequence[Hop], results: Sequence[Any], j: int, scene: Scene) -> int:
    """How many instances a person checks to build the set of hop ``j`` (``results``: positions)."""
    h = hops[j]
    spec = OPS[h.op]
    cats = hop_categories(h.args)
    if cats:  # a category, or each category of a named group
        parts = [scene.by_category[c] for c in cats if c in scene.by_category]
        if not parts:
            return 0
        members = np.concatenate(parts)
        if spec.from_reference and h.inputs:
            ref = results[h.inputs[0]]
            return int((members != int(np.asarray(ref).reshape(-1)[0])).sum())
        return int(members.shape[0])
    for k, t in zip(h.inputs, spec.inputs, strict=False):
        if t == "set":
            return candidate_pool(hops, results, k, scene)
    return int(np.asarray(results[j]).reshape(-1).shape[0])


def few_candidates(hops: Sequence[Hop], results: Sequence[Any], i: int, scene: Scene,
                   minimum: int = MIN_CANDIDATES) -> str | None:
    """Why hop ``i`` breaks the rule (a sentence), or ``None``: a ``count`` over a pool of fewer than
    ``minimum`` candidates, a ``rank`` in a set of fewer than ``minimum`` members."""
    h = hops[i]
    spec = OPS[h.op]
    if spec.output != "number" or not h.inputs:
        return None
    sets = [k for k, t in zip(h.inputs, spec.inputs, strict=False) if t == "set"]
    if not sets:
        return None
    if "instance" in spec.inputs:  # rank: the ranked set itself is what a person orders
        n = int(np.asarray(results[sets[0]]).reshape(-1).shape[0])
        return None if n >= minimum else f"{h.op} in a set of {n} < {minimum} members"
    n = candidate_pool(hops, results, sets[0], scene)
    return None if n >= minimum else f"{h.op} over {n} < {minimum} candidate instances"


def check_candidates(hops: Sequence[Hop], scene: Scene, minimum: int = MIN_CANDIDATES) -> None:
    """Raise ``ReachError`` ``few_candidates`` if an executed program (values = instance ids) counts
    or ranks among fewer than ``minimum`` candidates."""
    results = [_positions(h.value, scene) for h in hops]
    for i in range(len(hops)):
        why = few_candidates(hops, results, i, scene, minimum)
        if why is not None:
            raise ReachError("few_candidates", why, i)


def _positions(value: Any, scene: Scene) -> Any:
    return scene.positions_of(value) if isinstance(value, list) else value


__all__ = ["FEW_CANDIDATES", "MIN_CANDIDATES", "candidate_pool", "check_candidates", "few_candidates"]
