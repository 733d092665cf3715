"""What a hop op is: its value types, the margins it is held to, the errors it raises, and
:class:`OpSpec`, the one declaration every part of the platform reads an op from.

An op is declared once, in its own module of this package (``pipelines/questions/ops/<op>.py``,
one module-level ``SPEC``): its semantics (the executor function), its arguments and their
allowed values, the margins and reason codes it can refuse with, its role in the chain rules
(hop kinds, reach), its wording, the lines the VLM writer is offered, the review overlay and
its row of the docs table. The executor (:mod:`pipelines.questions.program`), the text
(:mod:`pipelines.questions.templates`), the writer prompt, the review trace
(:mod:`pipelines.review`) and ``docs/hop-programs.md`` all read :data:`~pipelines.questions.ops.OPS`.

Units, once: positions are pixels of the image (x to the right, y down), ``cx, cy`` mask
centroids at pixel centres, ``x0, y0, x1, y1`` box edges (COCO ``[x, y, w, h]`` -> ``x0 = x``,
``x1 = x + w``). Inside an op function, sets and instances are sorted arrays of scene
*positions* (an instance is a 1-element array) and numbers are ``int``/``float``; the executor
turns positions into instance ids.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

if TYPE_CHECKING:
    import random

    from pipelines.questions.scene import Scene

Value = list[int] | int | float
ValueType = Literal["set", "instance", "number"]
Kind = Literal["perception", "instance_chain"]
Overlay = Literal["value", "inputs"]

#: the orderings a scene supports (``Scene.key``): mask area in pixels, centroid x, centroid y
KEYS = ("area", "cx", "cy")
ORDERS = ("max", "min")

#: the argument that holds a *named group*: a JSON list of 2..4 distinct category names whose
#: instances an op treats as one set ("the books, scissors and soap boxes"); every rule that reads a
#: hop's ``category`` reads each member of its group (:func:`hop_categories`)
GROUP_ARG = "categories"
GROUP_SIZES = (2, 4)


def hop_categories(args: Mapping[str, Any]) -> tuple[str, ...]:
    """The categories a hop names: its ``category``, or each member of its named group (in order)."""
    cat = args.get("category")
    if isinstance(cat, str):
        return (cat,)
    group = args.get(GROUP_ARG)
    if isinstance(group, (list, tuple)):
        return tuple(str(c) for c in group)
    return ()


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
    """One hop. ``value`` is ``None`` until executed; ``kind`` is derived (see
    :func:`pipelines.questions.program.hop_kinds`)."""

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


class Wording(Protocol):
    """What an op's wording functions may ask of the question renderer
    (:class:`pipelines.questions.templates.Renderer`); ``i`` is always a hop index."""

    hops: Sequence[Hop]
    rng: random.Random

    def pick(self, options: Sequence[str]) -> str: ...  # one of the options (seeded)
    def inst(self, i: int) -> str: ...  # how instance hop i is named ("the largest cup", or "A")
    def set_phrase(self, i: int) -> str: ...  # set hop i as a noun phrase ("the red cups")
    def only_phrase(self, i: int) -> str: ...  # the single member of set hop i ("the red cup")
    def number_noun(self, i: int) -> str: ...  # number hop i as a noun ("the number of cups")
    def cat_of(self, i: int) -> str: ...  # the category hop i is about
    def other(self, h: Hop) -> str: ...  # "other " when a set from A is of A's own category


Phrase = Callable[[Wording, int], str]
OpFunction = Callable[["Scene", list[Any], Mapping[str, Any], Margins], Any]


@dataclass(frozen=True)
class OpDoc:
    """The op's row of the docs table (markdown cells)."""

    inputs: str
    args: str
    yields: str
    margin: str = "—"


@dataclass(frozen=True)
class OpSpec:
    """One hop op, declared once.

    Semantics: ``run(scene, inputs, args, margins)`` gets the earlier hops' results in ``inputs``
    order (sets/instances as position arrays, numbers) and returns the hop's result, raising
    :class:`ExecutionError` / :class:`MarginError` (``hop=None``: the executor fills the index in)
    with a code listed in ``reasons``. ``args`` maps each argument to its allowed values, or to
    ``None`` for a category name (a non-empty string; under :data:`GROUP_ARG`, a named group: a list
    of 2..4 distinct category names).

    Chain roles (read by the structure, hop-kind and reach rules):
    ``chain_step`` — the hop steps from one instance to another (an ``instance_chain`` hop itself);
    ``narrows`` — it narrows a set to one instance (``instance_chain``, with that set, when the set
    comes from a ``from_reference`` hop); ``from_reference`` — it yields the instances of its
    ``category`` other than a reference instance A (reach ``no_candidate`` when there are none);
    ``compares_size`` — the index of the input set whose members' sizes it compares when
    ``key == "area"`` (reach ``size_not_whole``); ``perceives`` — it counts as a perception-level
    hop for :func:`~pipelines.questions.program.has_both_kinds` (``find`` only names a category).

    Wording (``Phrase(renderer, hop index)``, only those its output type allows):
    ``instance_phrase`` (instance ops), ``set_phrase`` and ``only_phrase`` (set ops; ``only_phrase``
    names the single member of the set, for ``unique``), ``number_noun`` and ``question`` (number
    ops; ``question`` words the whole question when the op is the last hop).

    Offered to the VLM writer: ``writer_text``, the op's lines of the prompt's op list
    (``$max_count`` is filled in). Review: ``overlay`` — ``"value"`` draws the instances the hop
    yields, ``"inputs"`` those of the hops it reads. ``order`` places the op in every listing
    (prompt, docs table, messages); ``core`` marks the ops whose semantics DESIGN.md fixes.
    """

    name: str
    inputs: tuple[ValueType, ...]
    output: ValueType
    args: Mapping[str, tuple[str, ...] | None]
    run: OpFunction
    reasons: tuple[str, ...]
    doc: OpDoc
    writer_text: str
    order: int
    core: bool = False
    overlay: Overlay = "value"
    chain_step: bool = False
    narrows: bool = False
    from_reference: bool = False
    compares_size: int | None = None
    perceives: bool = True
    instance_phrase: Phrase | None = None
    set_phrase: Phrase | None = None
    only_phrase: Phrase | None = None
    number_noun: Phrase | None = None
    question: Phrase | None = None

    def __post_init__(self) -> None:
        wording = {
            "instance": ("instance_phrase",),
            "set": ("set_phrase",),
            "number": ("number_noun", "question"),
        }[self.output]
        foreign = [n for n in ("instance_phrase", "set_phrase", "only_phrase", "number_noun", "question")
                   if getattr(self, n) is not None and n not in wording and n != "only_phrase"]
        if foreign or (self.only_phrase is not None and self.output != "set"):
            raise ValueError(f"op {self.name!r} yields a {self.output}: it cannot declare {foreign or ['only_phrase']}")
        if self.compares_size is not None and not (0 <= self.compares_size < len(self.inputs)):
            raise ValueError(f"op {self.name!r}: compares_size {self.compares_size} is not an input")
        bad = [r for r in self.reasons if r.split(".")[0] not in ("execution", "margin")]
        if bad:
            raise ValueError(f"op {self.name!r}: an op raises execution.* and margin.* codes, not {bad}")


class Registry:
    """The ops by name, listed in ``order``. :data:`pipelines.questions.ops.OPS` is the platform's;
    :meth:`register` / :meth:`unregister` exist for tests (a new op is a new module, not a call)."""

    def __init__(self, specs: Sequence[OpSpec] = ()) -> None:
        self._ops: dict[str, OpSpec] = {}
        for s in specs:
            self.register(s)

    def register(self, spec: OpSpec) -> OpSpec:
        if spec.name in self._ops:
            raise ValueError(f"op {spec.name!r} is already registered")
        self._ops[spec.name] = spec
        self._ops = dict(sorted(self._ops.items(), key=lambda kv: (kv[1].order, kv[0])))
        return spec

    def unregister(self, name: str) -> None:
        del self._ops[name]

    def get(self, name: str) -> OpSpec | None:
        return self._ops.get(name)

    def __getitem__(self, name: str) -> OpSpec:
        return self._ops[name]

    def __contains__(self, name: object) -> bool:
        return name in self._ops

    def __iter__(self) -> Iterator[OpSpec]:
        return iter(list(self._ops.values()))

    def __len__(self) -> int:
        return len(self._ops)

    def names(self) -> list[str]:
        return list(self._ops)
