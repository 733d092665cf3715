"""The project stays as the platform set it: labeling config, settings and webhooks, compared at every pass.

In Label Studio Community Edition every account of the organisation, annotators included, can change a
project's labeling config and instructions (what an annotator is shown and which fields an answer has),
its settings (how many people a task goes to, whether annotators see each other's results, the order
tasks are served in) and its webhooks (where every answer is sent); it can also delete the project.
Answers given under a changed project are not the answers the platform asked for, so the platform does
not repair such a change silently: :func:`check_project` compares the project with
:func:`expected_state` at every tend pass and every decision, and a difference **holds** the project's
batches (no decision, no release) with a one-line reason (:func:`hold_reason`) until an operator looks
and runs ``hopchain project repair`` (:func:`repair_project`), which puts everything back.

What is compared (:data:`TEXTS`, :data:`ENFORCED`, webhooks):

* the labeling config and the instructions, with whitespace normalised (:func:`norm_text`: Label Studio
  and editors reformat them; a change of whitespace alone is not a change);
* the settings in :data:`ENFORCED`, exactly;
* webhooks: the platform registers none, so every webhook of the project, and every organisation-wide
  one (``project`` null: it receives the events of every project), is a change. Webhooks of the
  organisation's other projects are not this project's business.

Not compared: the title (the platform finds its project by title, so a rename shows as a new project at
the next push; batches already pushed keep their project id and are still checked), and cosmetic
fields (description, colour).

A project that no longer exists is not a change: :func:`check_project` then returns the single
``Drift("project", "present", "missing")`` (:data:`MISSING`), and the caller decides the project's
batches from the annotation journal instead of holding them.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from pipelines.annotation.client import LabelStudioError
from pipelines.annotation.labeling import project_settings

#: Project settings the platform relies on, compared exactly (why each has its value:
#: :func:`~pipelines.annotation.labeling.project_settings`).
ENFORCED = (
    "maximum_annotations",
    "overlap_cohort_percentage",
    "show_overlap_first",
    "show_skip_button",
    "show_annotation_history",
    "show_collab_predictions",
    "show_ground_truth_first",
    "enable_empty_annotation",
    "is_published",
    "sampling",
    "show_instruction",
)
#: Project texts the platform sets, compared with whitespace normalised.
TEXTS = ("label_config", "expert_instruction")
#: ``Drift.actual`` of the ``project`` field when the project is gone.
MISSING = "missing"
#: The longest :func:`hold_reason` line, in characters.
MAX_REASON = 400
_PART = 160  # the longest description of one difference (so that one always fits in MAX_REASON)


def norm_text(text: str | None) -> str:
    """A labeling config (or instructions) with its whitespace normalised (runs of whitespace become one
    space; none is kept between two tags): what Label Studio and editors may reformat."""
    return re.sub(r">\s+<", "><", " ".join((text or "").split()))


@dataclass(frozen=True)
class ProjectState:
    """What the platform set on its project: ``texts`` (compared with :func:`norm_text`), ``settings``
    (compared exactly) and the URLs of the webhooks it registered (none: every webhook is a change)."""

    texts: Mapping[str, str]
    settings: Mapping[str, Any]
    webhooks: tuple[str, ...] = ()

    @property
    def label_config(self) -> str:
        return self.texts["label_config"]

    def payload(self) -> dict[str, Any]:
        """The project PATCH that puts every compared field back."""
        return {**self.texts, **self.settings}


def expected_state(title: str, annotators_required: int = 4, handout: str = "serial") -> ProjectState:
    """What :func:`~pipelines.annotation.project.ensure_project` sets on a new project titled ``title``
    (the title itself is not compared: see the module doc)."""
    wanted = project_settings(title, annotators_required, handout)
    return ProjectState(texts={k: wanted[k] for k in TEXTS}, settings={k: wanted[k] for k in ENFORCED})


@dataclass(frozen=True)
class Drift:
    """One difference between the project and what the platform set (JSON-able: :meth:`as_dict`).

    ``field`` is a setting of :data:`ENFORCED`, a text of :data:`TEXTS` (``expected`` / ``actual``
    whitespace-normalised), ``webhook`` (``expected`` None, ``actual`` ``{"id", "url", "project"}``;
    ``project`` None: organisation-wide) or ``project`` (``actual`` :data:`MISSING`: the project is gone)."""

    field: str
    expected: Any
    actual: Any

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Drift:
        return cls(str(data["field"]), data.get("expected"), data.get("actual"))

    def describe(self) -> str:
        """This difference in a few words, e.g. ``maximum_annotations 1 -> 4``, ``label_config (+<Header
        value="Tip"/>)``, ``webhook added (id 3, url http://...)``."""
        if self.field in TEXTS:
            return _clip(f"{self.field} ({text_diff(str(self.expected or ''), str(self.actual or ''))})", 0, _PART)
        if self.field == "webhook":
            hook = self.actual if isinstance(self.actual, Mapping) else {}
            scope = "organisation-wide webhook" if hook.get("project") is None else "webhook"
            return f"{scope} added (id {hook.get('id')}, url {_clip(str(hook.get('url')), 0, 80)})"
        if self.field == "project" and self.actual == MISSING:
            return "missing in Label Studio"
        return _clip(f"{self.field} {json.dumps(self.expected)} -> {json.dumps(self.actual)}", 0, _PART)


def _clip(text: str, at: int, width: int) -> str:
    """``width`` characters of ``text`` from a little before ``at``, with ``…`` where cut."""
    start = max(0, min(at - width // 4, len(text) - width))
    out = text[start:start + width]
    return ("…" if start > 0 else "") + out + ("…" if start + width < len(text) else "")


_TOKEN = re.compile(r"<[^>]*>|[^<]+")


def text_diff(expected: str, actual: str) -> str:
    """The first difference between two XML/HTML texts, tag by tag: ``-<removed> +<added>`` (bounded),
    plus how many other places differ; ``whitespace only`` when only whitespace differs."""
    exp = [t.strip() for t in _TOKEN.findall(norm_text(expected)) if t.strip()]
    act = [t.strip() for t in _TOKEN.findall(norm_text(actual)) if t.strip()]
    ops = [op for op in difflib.SequenceMatcher(a=exp, b=act, autojunk=False).get_opcodes() if op[0] != "equal"]
    if not ops:
        return "whitespace only"
    _, i1, i2, j1, j2 = ops[0]
    old, new = " ".join(exp[i1:i2]), " ".join(act[j1:j2])
    at = next((k for k, (a, b) in enumerate(zip(old, new, strict=False)) if a != b), min(len(old), len(new)))
    parts = ([f"-{_clip(old, at, 50)}"] if old else []) + ([f"+{_clip(new, at, 50)}"] if new else [])
    more = f", {len(ops) - 1} more" if len(ops) > 1 else ""
    return " ".join(parts) + more


class ProjectReader(Protocol):
    """What :func:`check_project` calls (:class:`~pipelines.annotation.client.LabelStudioClient` has it)."""

    def get_project(self, project_id: int) -> dict[str, Any]: ...

    def webhooks(self, project_id: int | None) -> list[dict[str, Any]]: ...


class AsyncProjectReader(Protocol):
    """What :func:`check_project_async` calls (:class:`~pipelines.annotation.client.AsyncLabelStudioClient`)."""

    async def get_project(self, project_id: int) -> dict[str, Any]: ...

    async def webhooks(self, project_id: int | None) -> list[dict[str, Any]]: ...


class ProjectWriter(ProjectReader, Protocol):
    """What :func:`repair_project` calls besides :class:`ProjectReader`."""

    def update_project(self, project_id: int, payload: dict[str, Any]) -> dict[str, Any]: ...

    def delete_webhook(self, webhook_id: int) -> None: ...


def check_project(client: ProjectReader, project_id: int, expected: ProjectState) -> list[Drift]:
    """Every difference between project ``project_id`` and ``expected``, one :class:`Drift` each, in a
    stable order (texts, settings, webhooks by id); empty: the project is as the platform set it.

    A project that is gone (HTTP 404) gives ``[Drift("project", "present", MISSING)]``: not a hold, the
    caller decides its batches from the journal. Every other failure of Label Studio is raised
    (:class:`~pipelines.annotation.client.LabelStudioError`, ``httpx`` errors): nothing was compared.
    Two requests: the project, and the organisation's webhooks.
    """
    try:
        project = client.get_project(int(project_id))
    except LabelStudioError as err:
        if err.status_code == 404:
            return [Drift("project", "present", MISSING)]
        raise
    return compare_project(project, client.webhooks(None), project_id, expected)


async def check_project_async(client: AsyncProjectReader, project_id: int, expected: ProjectState) -> list[Drift]:
    """:func:`check_project` on an asynchronous client
    (:class:`~pipelines.annotation.client.AsyncLabelStudioClient`), for an async caller."""
    try:
        project = await client.get_project(int(project_id))
    except LabelStudioError as err:
        if err.status_code == 404:
            return [Drift("project", "present", MISSING)]
        raise
    return compare_project(project, await client.webhooks(None), project_id, expected)


def compare_project(project: Mapping[str, Any], webhooks: Sequence[Mapping[str, Any]], project_id: int,
                    expected: ProjectState) -> list[Drift]:
    """The differences between a project's JSON (``GET /api/projects/<id>``), the organisation's webhooks
    (``GET /api/webhooks/``: only those of ``project_id`` and the organisation-wide ones count) and
    ``expected`` (what :func:`check_project` returns for a project that exists)."""
    drifts: list[Drift] = []
    for key, text in expected.texts.items():
        want, got = norm_text(text), norm_text(project.get(key))
        if want != got:
            drifts.append(Drift(key, want, got))
    for key, value in expected.settings.items():
        if project.get(key) != value:
            drifts.append(Drift(key, value, project.get(key)))
    hooks = sorted((h for h in webhooks if h.get("project") in (None, int(project_id))),
                   key=lambda h: int(h.get("id") or 0))
    for hook in hooks:
        if hook.get("url") not in expected.webhooks:
            drifts.append(Drift("webhook", None, {"id": hook.get("id"), "url": hook.get("url"),
                                                  "project": hook.get("project")}))
    return drifts


def hold_reason(drifts: Sequence[Drift], project_id: int | None = None) -> str:
    """One line (at most :data:`MAX_REASON` characters) naming every difference, e.g. ``project 12 changed
    outside the platform: label_config (+<Header value="Tip"/>), maximum_annotations 1 -> 4, webhook added
    (id 3, url http://...)``; differences that do not fit are counted (``and 2 more``)."""
    where = f"project {project_id}" if project_id is not None else "the project"
    if [d.field for d in drifts] == ["project"] and drifts[0].actual == MISSING:
        return f"{where} is missing in Label Studio"
    parts = [" ".join(d.describe().split()) for d in drifts]
    shown = len(parts)
    while True:
        more = f", and {len(parts) - shown} more (hopchain project check)" if shown < len(parts) else ""
        line = f"{where} changed outside the platform: " + ", ".join(parts[:shown]) + more
        if len(line) <= MAX_REASON or shown <= 1:
            return line[:MAX_REASON]
        shown -= 1


class ProjectMissing(LookupError):
    """The project to repair does not exist (any more) in Label Studio."""


def repair_project(client: ProjectWriter, project_id: int, expected: ProjectState) -> list[Drift]:
    """Put project ``project_id`` back as the platform set it: one PATCH of the changed texts and
    settings (the platform's own values, not the normalised ones), then every webhook the platform did
    not set deleted. Returns what was changed (empty: nothing was).

    Raises :class:`ProjectMissing` when the project is gone, and
    :class:`~pipelines.annotation.client.LabelStudioError` when Label Studio refuses the PATCH (it
    refuses a labeling config that the project's existing annotations do not fit; nothing is then
    changed).
    """
    drifts = check_project(client, project_id, expected)
    if any(d.field == "project" for d in drifts):
        raise ProjectMissing(f"project {project_id} is missing in Label Studio")
    wanted = expected.payload()
    patch = {d.field: wanted[d.field] for d in drifts if d.field in wanted}
    if patch:
        client.update_project(int(project_id), patch)
    for d in drifts:
        if d.field == "webhook":
            client.delete_webhook(int(d.actual["id"]))
    return drifts

