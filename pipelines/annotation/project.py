"""Idempotent bootstrap of the verification project (one project per pipeline)."""

from __future__ import annotations

import logging
from typing import Any

from pipelines.annotation.client import LabelStudioClient
from pipelines.annotation.labeling import project_settings

log = logging.getLogger(__name__)

# Settings whose drift bootstrap repairs (the label config is compared whitespace-insensitively).
_ENFORCED = (
    "maximum_annotations",
    "overlap_cohort_percentage",
    "show_skip_button",
    "show_annotation_history",
    "show_collab_predictions",
    "show_ground_truth_first",
    "enable_empty_annotation",
    "is_published",
)


def _norm(xml: str | None) -> str:
    return " ".join((xml or "").split())


def ensure_project(client: LabelStudioClient, title: str, annotators_required: int = 4) -> dict[str, Any]:
    """Return the project titled ``title``, creating it or repairing drifted settings.

    Calling it again changes nothing (no second project, no PATCH when settings already hold).
    """
    wanted = project_settings(title, annotators_required)
    project = client.find_project(title)
    if project is None:
        project = client.create_project(wanted)
        log.info("created Label Studio project %s (id %s)", title, project["id"])
        return project
    drift = {k: wanted[k] for k in _ENFORCED if project.get(k) != wanted[k]}
    if _norm(project.get("label_config")) != _norm(wanted["label_config"]):
        drift["label_config"] = wanted["label_config"]
    if drift:
        log.info("repairing project %s settings: %s", project["id"], sorted(drift))
        project = client.update_project(int(project["id"]), drift)
    return project
