"""The project stays as the platform set it (:mod:`pipelines.annotation.guard`), on a fake Label Studio that
answers with the project JSON and webhook list the real server sends: what counts as a change, the one-line
hold reason, the repair, ``ensure_project`` no longer repairing silently, and ``hopchain project check|repair``."""

from __future__ import annotations

import asyncio
import json
import logging
import re
from typing import Any

import pytest

from pipelines.annotation.client import LabelStudioError
from pipelines.annotation.guard import (
    ENFORCED,
    MAX_REASON,
    MISSING,
    Drift,
    ProjectMissing,
    check_project,
    check_project_async,
    expected_state,
    hold_reason,
    repair_project,
)
from pipelines.annotation.labeling import project_settings
from pipelines.annotation.project import ensure_project

pytestmark = pytest.mark.unit

PID = 12
TITLE = "HopChain verification"


class FakeLabelStudio:
    """One project (as the server returns it after the platform created it) and the organisation's webhooks."""

    def __init__(self, handout: str = "serial") -> None:
        self.project: dict[str, Any] | None = {
            **project_settings(TITLE, 4, handout), "id": PID, "color": "#FFFFFF", "task_number": 8,
            "created_by": {"id": 1, "email": "admin@hopchain.local"},
        }
        # the server returns the config without the trailing newline the platform sent
        self.project["label_config"] = self.project["label_config"].strip()
        self.hooks: list[dict[str, Any]] = []
        self.patches: list[dict[str, Any]] = []
        self.deleted: list[int] = []
        self.refuse_patch = False

    # -- what the guard and ensure_project call ------------------------------------------------
    def find_project(self, title: str) -> dict[str, Any] | None:
        return dict(self.project) if self.project and self.project["title"] == title else None

    def create_project(self, payload: dict[str, Any]) -> dict[str, Any]:
        raise AssertionError("no project is created when one exists")

    def get_project(self, project_id: int) -> dict[str, Any]:
        if self.project is None or project_id != PID:
            raise LabelStudioError(status_code=404, body={"detail": "No Project matches the given query."})
        return dict(self.project)

    def webhooks(self, project_id: int | None) -> list[dict[str, Any]]:
        return [dict(h) for h in self.hooks if project_id is None or h["project"] == project_id]

    def update_project(self, project_id: int, payload: dict[str, Any]) -> dict[str, Any]:
        if self.refuse_patch:
            raise LabelStudioError(status_code=400, body={  # what Label Studio 1.23 answers
                "status_code": 400, "detail": "Validation error",
                "validation_errors": {"label_config": ["Created annotations are incompatible\n"
                                                       "with provided labeling schema"]}})
        assert self.project is not None
        self.patches.append(payload)
        self.project.update(payload)
        return dict(self.project)

    def delete_webhook(self, webhook_id: int) -> None:
        self.deleted.append(webhook_id)
        self.hooks = [h for h in self.hooks if h["id"] != webhook_id]

    # -- what an annotator account does -------------------------------------------------------
    def add_hook(self, hook_id: int, url: str, project: int | None = PID) -> None:
        self.hooks.append({"id": hook_id, "organization": 1, "project": project, "url": url, "send_payload": True,
                           "send_for_all_actions": True, "headers": {}, "is_active": True, "actions": []})

    def __enter__(self) -> FakeLabelStudio:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


@pytest.fixture
def ls() -> FakeLabelStudio:
    return FakeLabelStudio()


EXPECTED = expected_state(TITLE, 4, "serial")


def test_a_project_as_the_platform_created_it_has_no_drift(ls):
    assert check_project(ls, PID, EXPECTED) == []
    parallel = FakeLabelStudio("parallel")
    assert check_project(parallel, PID, expected_state(TITLE, 4, "parallel")) == []


def test_the_settings_the_platform_relies_on_are_compared(ls):
    # what the hand-out, independence and the labeling stream depend on, plus the texts annotators read
    assert {"maximum_annotations", "overlap_cohort_percentage", "show_overlap_first", "show_skip_button",
            "show_annotation_history", "show_collab_predictions", "enable_empty_annotation", "is_published",
            "sampling", "show_instruction"} <= set(ENFORCED)
    assert set(EXPECTED.texts) == {"label_config", "expert_instruction"}


@pytest.mark.parametrize("key", ENFORCED)
def test_each_changed_setting_is_one_drift_naming_both_values(ls, key):
    was = ls.project[key]
    changed = {bool: lambda v: not v, int: lambda v: v + 3, str: lambda v: "Sequential sampling"}[type(was)](was)
    ls.project[key] = changed
    drifts = check_project(ls, PID, EXPECTED)
    assert drifts == [Drift(key, was, changed)]
    assert f"{key} {json.dumps(was)} -> {json.dumps(changed)}" in hold_reason(drifts, PID)


def test_a_setting_the_server_no_longer_returns_is_a_drift(ls):
    del ls.project["show_skip_button"]
    assert check_project(ls, PID, EXPECTED) == [Drift("show_skip_button", False, None)]


def test_a_changed_labeling_config_names_the_first_changed_tag(ls):
    ls.project["label_config"] = ls.project["label_config"].replace(
        '<Header value="$question"/>', '<Header value="$question"/><Header value="Tip: the answer is usually 3"/>')
    (drift,) = check_project(ls, PID, EXPECTED)
    assert drift.field == "label_config"
    reason = hold_reason([drift], PID)
    assert reason == (f'project {PID} changed outside the platform: '
                      f'label_config (+<Header value="Tip: the answer is usually 3"/>)')


def test_a_changed_attribute_deep_in_the_config_is_shown_where_it_changed(ls):
    ls.project["label_config"] = ls.project["label_config"].replace('step="any"', 'step="1"')
    (drift,) = check_project(ls, PID, EXPECTED)
    assert 'label_config (-<Number name="answer" toName="image" step="any"/> ' in drift.describe()
    assert '+<Number name="answer" toName="image" step="1"/>' in drift.describe()


def test_whitespace_only_config_change_is_not_drift(ls):
    ls.project["label_config"] = "\n\n" + ls.project["label_config"].replace("  ", "\t").replace("/>", "/>\n\n")
    assert check_project(ls, PID, EXPECTED) == []
    ls.project["label_config"] = re.sub(r">\s+<", "><", ls.project["label_config"])  # no space between tags
    ls.project["expert_instruction"] = "  " + ls.project["expert_instruction"].replace(" ", "\n ") + "\n"
    assert check_project(ls, PID, EXPECTED) == []


def test_changed_instructions_are_drift(ls):
    ls.project["expert_instruction"] = "<p>The answer is usually 3.</p>"
    (drift,) = check_project(ls, PID, EXPECTED)
    assert drift.field == "expert_instruction" and "+The answer is usually 3." in drift.describe()


def test_any_webhook_of_the_project_or_the_organisation_is_drift(ls):
    ls.add_hook(3, "http://collector.example.org/answers")
    ls.add_hook(4, "https://org-wide.example.org/all", project=None)
    ls.add_hook(5, "https://other.example.org/x", project=PID + 1)  # another project of the organisation
    drifts = check_project(ls, PID, EXPECTED)
    assert drifts == [Drift("webhook", None, {"id": 3, "url": "http://collector.example.org/answers", "project": PID}),
                      Drift("webhook", None, {"id": 4, "url": "https://org-wide.example.org/all", "project": None})]
    reason = hold_reason(drifts, PID)
    assert "webhook added (id 3, url http://collector.example.org/answers)" in reason
    assert "organisation-wide webhook added (id 4, url https://org-wide.example.org/all)" in reason


def test_drifts_are_json_and_come_back(ls):
    ls.project["maximum_annotations"] = 4
    ls.add_hook(3, "http://collector.example.org/answers")
    drifts = check_project(ls, PID, EXPECTED)
    again = [Drift.from_dict(d) for d in json.loads(json.dumps([d.as_dict() for d in drifts]))]
    assert again == drifts


def test_the_async_check_for_the_trigger_reports_the_same(ls):
    class AsyncFake:
        async def get_project(self, project_id: int) -> dict[str, Any]:
            return ls.get_project(project_id)

        async def webhooks(self, project_id: int | None) -> list[dict[str, Any]]:
            return ls.webhooks(project_id)

    assert asyncio.run(check_project_async(AsyncFake(), PID, EXPECTED)) == []
    ls.project["show_overlap_first"] = False
    ls.add_hook(3, "http://collector.example.org/answers", project=None)
    assert asyncio.run(check_project_async(AsyncFake(), PID, EXPECTED)) == check_project(ls, PID, EXPECTED) != []
    ls.project = None
    assert asyncio.run(check_project_async(AsyncFake(), PID, EXPECTED)) == [Drift("project", "present", MISSING)]


def test_a_missing_project_is_its_own_result_not_a_change(ls):
    ls.project = None
    assert check_project(ls, PID, EXPECTED) == [Drift("project", "present", MISSING)]
    assert hold_reason(check_project(ls, PID, EXPECTED), PID) == f"project {PID} is missing in Label Studio"
    with pytest.raises(ProjectMissing):
        repair_project(ls, PID, EXPECTED)


def test_other_label_studio_failures_are_raised_not_read_as_no_drift(ls):
    def refused(_: int) -> dict[str, Any]:
        raise LabelStudioError(status_code=401, body={"detail": "Invalid token."})

    ls.get_project = refused
    with pytest.raises(LabelStudioError):
        check_project(ls, PID, EXPECTED)


def test_the_reason_is_one_bounded_line_however_much_changed(ls):
    for key in ENFORCED:
        ls.project[key] = "x" * 500
    ls.project["label_config"] = "<View>" + "<Header value='" + "y" * 2000 + "'/>\n" * 5 + "</View>"
    ls.project["expert_instruction"] = "z" * 3000
    for i in range(20):
        ls.add_hook(i, "http://collector.example.org/" + "p" * 300)
    drifts = check_project(ls, PID, EXPECTED)
    assert len(drifts) == len(ENFORCED) + 2 + 20
    reason = hold_reason(drifts, PID)
    assert "\n" not in reason and len(reason) <= MAX_REASON
    assert reason.startswith(f"project {PID} changed outside the platform: label_config (")
    assert reason.endswith("more (hopchain project check)")
    assert all(len(d.describe()) <= 161 for d in drifts)


def test_repair_puts_everything_back_in_one_patch_and_deletes_webhooks(ls):
    original = dict(ls.project)
    ls.project.update(maximum_annotations=4, show_annotation_history=True,
                      label_config=ls.project["label_config"].replace("<View>", '<View><Header value="3"/>'))
    ls.add_hook(3, "http://collector.example.org/answers")
    ls.add_hook(4, "https://other.example.org/x", project=PID + 1)
    changed = repair_project(ls, PID, EXPECTED)
    assert {d.field for d in changed} == {"label_config", "maximum_annotations", "show_annotation_history", "webhook"}
    assert ls.patches == [{"label_config": EXPECTED.label_config, "maximum_annotations": 1,
                           "show_annotation_history": False}]  # the platform's own config text, not a normalised one
    assert ls.deleted == [3]  # another project's webhook is left alone
    assert check_project(ls, PID, EXPECTED) == []
    assert {k: ls.project[k] for k in ENFORCED} == {k: original[k] for k in ENFORCED}
    assert repair_project(ls, PID, EXPECTED) == [] and len(ls.patches) == 1  # nothing more to do


def test_ensure_project_no_longer_repairs_silently(ls, caplog):
    ls.project["maximum_annotations"] = 4
    ls.add_hook(3, "http://collector.example.org/answers")
    with caplog.at_level(logging.WARNING, logger="pipelines.annotation.project"):
        got = ensure_project(ls, TITLE, 4, "serial")
    assert got["id"] == PID and got["maximum_annotations"] == 4
    assert ls.patches == [] and ls.deleted == []  # left for the guard to report
    (record,) = caplog.records
    assert "maximum_annotations 1 -> 4" in record.getMessage() and "webhook added (id 3" in record.getMessage()
    assert "hopchain project repair" in record.getMessage()

    got = ensure_project(ls, TITLE, 4, "serial", repair=True)
    assert got["maximum_annotations"] == 1 and ls.deleted == [3]
    assert check_project(ls, PID, EXPECTED) == []


def test_changing_the_handout_in_the_configuration_is_a_difference_the_repair_applies(ls):
    parallel = expected_state(TITLE, 4, "parallel")
    assert {d.field for d in check_project(ls, PID, parallel)} == {"maximum_annotations", "show_overlap_first"}
    ensure_project(ls, TITLE, 4, "parallel", repair=True)
    assert (ls.project["maximum_annotations"], ls.project["show_overlap_first"]) == (4, False)


# -- hopchain project check | repair ------------------------------------------------------------------------
@pytest.fixture
def cli(ls, monkeypatch):
    import pipelines.annotation.cli as annotation_cli
    from pipelines.cli import main

    monkeypatch.setattr(annotation_cli, "_client", lambda args: ls)
    monkeypatch.setenv("HOPCHAIN_PROFILE", "base")

    def run(*argv: str) -> int:
        return main(["project", *argv])

    return run


def _title(monkeypatch) -> None:
    from pipelines import config as config_module

    real = config_module.load_params

    def load(path=None, profile=None):
        p = real(path, profile)
        return p.model_copy(update={"annotation": p.annotation.model_copy(
            update={"project_title": TITLE, "annotators_required": 4, "handout": "serial"})})

    monkeypatch.setattr(config_module, "load_params", load)


def test_check_prints_one_line_per_drift_and_exits_1(ls, cli, monkeypatch, capsys):
    _title(monkeypatch)
    assert cli("check") == 0
    assert capsys.readouterr().out == f"project {PID}: as the platform set it\n"
    ls.project["maximum_annotations"] = 4
    ls.add_hook(3, "http://collector.example.org/answers")
    assert cli("check") == 1
    assert capsys.readouterr().out.splitlines() == [
        f"project {PID}: maximum_annotations 1 -> 4",
        f"project {PID}: webhook added (id 3, url http://collector.example.org/answers)",
    ]
    assert ls.patches == [] and ls.deleted == []  # check changes nothing


def test_repair_prints_what_it_undid(ls, cli, monkeypatch, capsys):
    _title(monkeypatch)
    ls.project["show_skip_button"] = True
    assert cli("repair") == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [f"project {PID}: undone: show_skip_button false -> true",
                   f"project {PID}: as the platform set it; its held batches go on at the next pass"]
    assert cli("repair") == 0
    assert capsys.readouterr().out == f"project {PID}: as the platform set it\n"
    assert cli("check") == 0


def test_project_by_id_and_the_expected_failures_are_one_line(ls, cli, monkeypatch, capsys):
    _title(monkeypatch)
    ls.project["title"] = "renamed by someone"
    assert cli("check") == 1
    err = capsys.readouterr().err.strip()
    assert err == (f"error: project '{TITLE}': no such project in Label Studio (the first push creates it; if it "
                   "was renamed, give its id: --project ID)")
    assert cli("check", "--project", str(PID)) == 0  # the title is not compared
    capsys.readouterr()
    assert cli("check", "--project", "99") == 1
    assert capsys.readouterr().err.startswith("error: project 99: missing in Label Studio (")

    ls.project["label_config"] = ls.project["label_config"].replace("<View>", '<View><Header value="3"/>')
    ls.refuse_patch = True
    assert cli("repair", "--project", str(PID)) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(
        f"error: project {PID}: Label Studio refused the repair: Created annotations are incompatible with provided "
        "labeling schema (")


def test_the_instructions_template_renders_the_text_projects_already_hold() -> None:
    """Label Studio stores the instructions and the guard compares them: the template must give the exact
    string the platform set before it was a template (else every project reads as changed)."""
    from pipelines.annotation.labeling import CONVENTIONS, instructions

    assert instructions() == (
        "<p>Answer the question about the image with <b>one number</b>. Work it out yourself from the "
        "image; nothing is highlighted on purpose. If the question cannot be answered from the image, "
        "choose <i>not answerable</i>; if it has more than one reasonable answer, choose "
        "<i>ambiguous</i>, and say why in the comment.</p>"
        f"<p><b>Conventions.</b> {CONVENTIONS}</p>")
