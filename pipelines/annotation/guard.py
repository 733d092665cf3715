"""The project stays as the platform set it: labeling config, settings and webhooks, compared at every pass.

In Label Studio Community Edition every account of the organisation can change a project's labeling
config (what an annotator is asked and which fields an answer has), its settings (how many people a
task goes to, whether annotators see each other's results) and its webhooks (where every answer is
sent). Answers given under a changed project are not the answers the platform asked for, so the
platform does not repair such a change silently: :func:`check_project` compares the project with
:func:`expected_state` at every tend pass and every decision, and a difference **holds** the project's
batches (no decision, no release) with a one-line reason (:func:`hold_reason`) until an operator
looks and runs ``hopchain project repair`` (:func:`repair_project`), which puts everything back.

The platform registers no webhook, so every webhook of the project, and every organisation-wide one
(no project), is a change. A project that no longer exists (Label Studio's database lost) is not a
change: :func:`check_project` reports it as the field ``project`` with ``actual="missing"``, and the
platform decides its batches from the annotation journal.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import asdict, dataclass
from typing import Any

from pipelines.annotation.client import LabelStudioError
from pipelines.annotation.labeling import project_settings

#: The project settings the platform relies on (the label config is compared whitespace-insensitively).
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
)
MISSING = "missing"
MAX_REASON = 400


def norm_config(xml: str | None) -> str:
    """A labeling config with its whitespace normalised (what Label Studio may reformat)."""
    return " ".join((xml or "").split())


@dataclass(frozen=True)
class ProjectState:
    """What the platform set on its project."""

    label_config: str
    settings: dict[str, Any]
    webhooks: tuple[str, ...] = ()  # the platform registers none


def expected_state(title: str, annotators_required: int = 4, handout: str = "serial") -> ProjectState:
    wanted = project_settings(title, annotators_required, handout)
    return ProjectState(wanted["label_config"], {k: wanted[k] for k in ENFORCED})


@dataclass(frozen=True)
class Drift:
    """One difference between the project and what the platform set."""

    field: str
    expected: Any
    actual: Any

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _config_diff(expected: str, actual: str) -> str:
    exp = expected.replace("><", ">\n<").splitlines()
    act = actual.replace("><", ">\n<").splitlines()
    changed = [ln for ln in difflib.unified_diff(exp, act, lineterm="", n=0)
               if ln[:1] in "+-" and not ln.startswith(("+++", "---"))]
    return " ".join(changed)[:160] or "reformatted"


def _webhooks(client: Any, project_id: int) -> list[dict[str, Any]]:
    own = client.webhooks(project_id)
    org = [w for w in client.webhooks(None) if w.get("project") in (None, project_id)]
    seen: dict[Any, dict[str, Any]] = {}
    for w in own + org:
        seen[w.get("id")] = w
    return list(seen.values())


def check_project(client: Any, project_id: int, expected: ProjectState) -> list[Drift]:
    """Every difference between project ``project_id`` and ``expected`` (empty: as the platform set it)."""
    try:
        project = client.get_project(int(project_id))
    except LabelStudioError as err:
        if err.status_code == 404:
            return [Drift("project", "present", MISSING)]
        raise
    drifts: list[Drift] = []
    if norm_config(project.get("label_config")) != norm_config(expected.label_config):
        drifts.append(Drift("label_config", norm_config(expected.label_config),
                            norm_config(project.get("label_config"))))
    for key, want in expected.settings.items():
        if project.get(key) != want:
            drifts.append(Drift(key, want, project.get(key)))
    for hook in _webhooks(client, project_id):
        drifts.append(Drift("webhook", None, {"id": hook.get("id"), "url": hook.get("url"),
                                              "project": hook.get("project")}))
    return drifts


def hold_reason(drifts: list[Drift], project_id: int | None = None) -> str:
    """One line naming every difference (bounded length)."""
    parts = []
    for d in drifts:
        if d.field == "label_config":
            parts.append(f"label_config ({_config_diff(str(d.expected), str(d.actual))})")
        elif d.field == "webhook":
            parts.append(f"webhook added ({json.dumps(d.actual, sort_keys=True)})")
        else:
            parts.append(f"{d.field} {json.dumps(d.expected)} -> {json.dumps(d.actual)}")
    where = f"project {project_id}" if project_id is not None else "the project"
    line = f"{where} changed outside the platform: " + "; ".join(parts)
    line = " ".join(line.split())
    return line if len(line) <= MAX_REASON else line[: MAX_REASON - 1] + "…"


def repair_project(client: Any, project_id: int, expected: ProjectState) -> list[Drift]:
    """Put project ``project_id`` back as the platform set it (settings, config; webhooks deleted);
    returns what was changed."""
    drifts = [d for d in check_project(client, project_id, expected) if d.field != "project"]
    patch = {d.field: d.expected for d in drifts if d.field in expected.settings}
    if any(d.field == "label_config" for d in drifts):
        patch["label_config"] = expected.label_config
    if patch:
        client.update_project(int(project_id), patch)
    for d in drifts:
        if d.field == "webhook":
            client.delete_webhook(int(d.actual["id"]))
    return drifts
