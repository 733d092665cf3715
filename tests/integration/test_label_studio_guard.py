"""The project stays as the platform set it, against a real Label Studio 1.23: an annotator account (not the
admin) can change the labeling config, the instructions, every setting the platform relies on, add a webhook
and even delete the project; :func:`~pipelines.annotation.guard.check_project` reports each change, the push's
``ensure_project`` no longer repairs silently, ``hopchain project check`` exits 1 and ``hopchain project
repair`` puts everything back. End to end with the env: the tend pass and the decision hold the batch (no
decision) with a one-line reason until the repair, after which the batch is decided."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from pipelines.annotation import tasks as annotation_tasks
from pipelines.annotation.client import AsyncLabelStudioClient, LabelStudioClient, LabelStudioError
from pipelines.annotation.guard import (
    ENFORCED,
    MISSING,
    Drift,
    ProjectState,
    check_project,
    check_project_async,
    expected_state,
    hold_reason,
    norm_text,
)
from pipelines.annotation.labeling import LABEL_CONFIG
from pipelines.annotation.project import ensure_project
from pipelines.annotation.simulated import answer_result
from pipelines.config import AnnotationConfig, Params, StoreConfig
from pipelines.runner import RunEnv
from tests.support.image_reader import image_reader
from tests.support.stack import annotator_accounts, register_annotators

pytestmark = pytest.mark.integration

TIP = '<Header value="Tip: the answer is usually 3"/>'


@pytest.fixture(scope="module")
def accounts(label_studio):
    """The admin (the platform's token) and one annotator account on its own token."""
    creds = label_studio.credentials()
    admin = LabelStudioClient(creds["url"], creds["token"])
    ((_, mallory),) = annotator_accounts(admin, "guard-mallory", 1)
    assert mallory.whoami()["id"] != admin.whoami()["id"]
    yield admin, mallory
    mallory.close()
    admin.close()


def _project(admin: LabelStudioClient) -> tuple[int, str]:
    """A project as the push creates it, with the settings of the base profile (what the CLI compares with)."""
    from pipelines.config import load_params

    cfg = load_params(None, "base").annotation
    title = f"guarded-{uuid.uuid4().hex[:8]}"
    pid = int(ensure_project(admin, title, cfg.annotators_required, cfg.handout)["id"])
    return pid, title


async def _check_async(admin: LabelStudioClient, pid: int, expected: ProjectState) -> list[Drift]:
    async with AsyncLabelStudioClient(admin.url, admin.token) as client:
        return await check_project_async(client, pid, expected)


def test_an_annotator_changes_config_setting_and_webhook_and_the_guard_reports_each(accounts, monkeypatch, capsys):
    from pipelines.cli import main
    from pipelines.config import load_params

    admin, mallory = accounts
    pid, title = _project(admin)
    cfg = load_params(None, "base").annotation
    expected = expected_state(title, cfg.annotators_required, cfg.handout)
    assert check_project(admin, pid, expected) == []

    config = mallory.get_project(pid)["label_config"]
    mallory.update_project(pid, {"label_config": config.replace('<Header value="$question"/>',
                                                                '<Header value="$question"/>' + TIP)})
    assert [d.field for d in check_project(admin, pid, expected)] == ["label_config"]

    mallory.update_project(pid, {"maximum_annotations": 4})
    assert [d.field for d in check_project(admin, pid, expected)] == ["label_config", "maximum_annotations"]

    # Webhooks: Label Studio checks the target (SSRF guard): a name that does not resolve is refused, and so is
    # an organisation-wide webhook (no project) through the API, even for the admin; loopback is accepted
    # here only because the local stack lifts the loopback ban (any public address is accepted anywhere).
    with pytest.raises(LabelStudioError) as unresolvable:
        mallory.sdk.webhooks.create(url="http://example.invalid/hook", project=pid)
    assert "Can't resolve hostname" in str(unresolvable.value.body)
    with pytest.raises(LabelStudioError) as org_wide:
        mallory.sdk.webhooks.create(url="http://127.0.0.1:9/all")
    assert org_wide.value.status_code == 404
    hook = mallory.sdk.webhooks.create(url="http://127.0.0.1:9/hook", project=pid)  # nothing listens there
    drifts = check_project(admin, pid, expected)
    assert drifts[-1] == Drift("webhook", None, {"id": hook.id, "url": "http://127.0.0.1:9/hook", "project": pid})
    assert asyncio.run(_check_async(admin, pid, expected)) == drifts  # what the trigger's loop sees
    assert hold_reason(drifts, pid) == (
        f"project {pid} changed outside the platform: label_config (+{TIP}), maximum_annotations 1 -> 4, "
        f"webhook added (id {hook.id}, url http://127.0.0.1:9/hook)")

    # the push's bootstrap no longer repairs silently: the change stays for the guard to hold
    ensure_project(admin, title, cfg.annotators_required, cfg.handout)
    assert len(check_project(admin, pid, expected)) == 3

    monkeypatch.setenv("HOPCHAIN_LS_URL", admin.url)
    monkeypatch.setenv("HOPCHAIN_LS_TOKEN", admin.token)
    assert main(["--profile", "base", "project", "check", "--project", str(pid)]) == 1
    assert capsys.readouterr().out.splitlines() == [
        f"project {pid}: label_config (+{TIP})", f"project {pid}: maximum_annotations 1 -> 4",
        f"project {pid}: webhook added (id {hook.id}, url http://127.0.0.1:9/hook)"]
    assert main(["--profile", "base", "project", "repair", "--project", str(pid)]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == (
        f"project {pid}: as the platform set it; its held batches go on at the next pass")
    assert check_project(admin, pid, expected) == []
    got = admin.get_project(pid)
    assert norm_text(got["label_config"]) == norm_text(LABEL_CONFIG) and got["maximum_annotations"] == 1
    assert admin.webhooks(pid) == []
    assert main(["--profile", "base", "project", "check", "--project", str(pid)]) == 0


def test_an_annotator_can_change_every_setting_the_platform_relies_on_and_repair_undoes_all(accounts):
    admin, mallory = accounts
    pid, title = _project(admin)
    expected = expected_state(title, 4, "serial")
    before = admin.get_project(pid)
    changed = {k: ("Sequential sampling" if k == "sampling" else not v if isinstance(v, bool) else v + 1)
               for k, v in ((k, before[k]) for k in ENFORCED)}
    changed["expert_instruction"] = "<p>The answer is usually 3.</p>"
    mallory.update_project(pid, changed)  # one PATCH by the annotator's own token: all accepted
    drifts = check_project(admin, pid, expected)
    assert {d.field: d.actual for d in drifts} == changed
    assert len(hold_reason(drifts, pid)) <= 400

    ensure_project(admin, title, 4, "serial", repair=True)  # what `hopchain project repair` does
    assert check_project(admin, pid, expected) == []
    after = admin.get_project(pid)
    assert {k: after[k] for k in (*ENFORCED, "expert_instruction")} == {
        k: before[k] for k in (*ENFORCED, "expert_instruction")}


def test_an_annotator_can_delete_the_project_which_is_reported_as_missing_not_as_a_change(accounts):
    admin, mallory = accounts
    pid, title = _project(admin)
    mallory.delete_project(pid)
    assert check_project(admin, pid, expected_state(title)) == [Drift("project", "present", MISSING)]
    assert asyncio.run(_check_async(admin, pid, expected_state(title))) == [Drift("project", "present", MISSING)]


def test_a_changed_project_holds_its_batches_until_repaired(label_studio, object_store, s3_server, monkeypatch,
                                                            capsys):
    from expectations.samples import sample_tables
    from pipelines.cli import main

    creds = label_studio.credentials()
    admin = LabelStudioClient(creds["url"], creds["token"])
    tag = uuid.uuid4().hex[:8]
    params = Params(
        store=StoreConfig(runs_prefix=f"g-{tag}/runs", batches_prefix=f"g-{tag}/batches",
                          consensus_prefix=f"g-{tag}/consensus", releases_prefix=f"g-{tag}/releases",
                          journal_prefix=f"g-{tag}/journal", annotators_prefix=f"g-{tag}/annotators"),
        annotation=AnnotationConfig(project_title=f"guard-{tag}", handout="parallel"),
    )
    env = RunEnv(params, object_store, f"nightly-{tag}", label_studio=lambda: LabelStudioClient(admin.url, admin.token),
                 image_reader=image_reader(s3_server))
    tables = sample_tables(n_images=2, questions_per_image=2, seed=3)
    import pyarrow as pa

    env.write_table("manifest", 0, pa.Table.from_pylist([{**r, "uri": f"s3://{object_store.bucket}/g-{tag}/{r['image_id']}.jpg",
                                                   "shard": 0} for r in tables["manifest"].to_pylist()]))
    env.write_table("questions", 0, tables["questions"])
    batch = annotation_tasks.push(env, 0)
    pid = int(batch.project_id)  # type: ignore[arg-type]
    expected = expected_state(params.annotation.project_title, 4, "parallel")
    assert check_project(admin, pid, expected) == []

    people = annotator_accounts(admin, f"guard{tag}-", 4)
    register_annotators(env, [c for _, c in people])
    truth = {q["question_id"]: q["answer"] for q in tables["questions"].to_pylist()}
    for t in admin.iter_tasks(pid, batch=batch.batch_id, fields="task_only"):
        for _, c in people:
            c.create_annotation(int(t["id"]), answer_result(truth[t["data"]["question_id"]]))

    # one annotator account changes what the platform set: what every annotator is shown, a setting, a
    # webhook (Label Studio refuses a config that breaks the existing annotations, e.g. renaming the answer
    # field; adding text is accepted)
    mallory = people[0][1]
    project = mallory.get_project(pid)
    primed = project["label_config"].replace("<View>", '<View><Header value="Tip: the answer is usually 3"/>', 1)
    assert primed != project["label_config"]
    mallory.update_project(pid, {"label_config": primed, "show_annotation_history": True})
    hook = mallory.sdk.webhooks.create(url="http://127.0.0.1:9/hook", project=pid)  # loopback: nothing listens
    found = {d.field for d in check_project(admin, pid, expected)}
    assert found == {"label_config", "show_annotation_history", "webhook"}

    tended = annotation_tasks.tend(env)
    assert batch.batch_id in tended.held and tended.opened == 0  # journaled, not acted on
    assert tended.journaled == 4 * len(truth)
    decided = annotation_tasks.decide(env, annotation_tasks.open_batches(env))
    reason = decided.held[batch.batch_id]
    assert decided.batches == [] and env.ledger.decision(batch.batch_id) is None  # no decision
    assert reason.startswith(f"project {pid} changed outside the platform: label_config (")
    assert "show_annotation_history false -> true" in reason and "webhook added" in reason and "\n" not in reason
    held = env.ledger.batch(batch.batch_id)
    assert held is not None and held.held == reason and held.status == "open"
    # the next night's push into the changed project is refused (no new questions go to it), one line
    from pipelines.config import Refused

    env.write_table("manifest", 1, env.read_table("manifest", 0))
    env.write_table("questions", 1, tables["questions"])
    with pytest.raises(Refused, match=f"push refused: project {pid} changed outside the platform"):
        annotation_tasks.push(env, 1)
    from pipelines.store.ledger import batch_id_for

    assert env.ledger.batch(batch_id_for(env.run_id, 1)) is None  # nothing recorded as pushed

    monkeypatch.setenv("HOPCHAIN_LS_URL", admin.url)
    monkeypatch.setenv("HOPCHAIN_LS_TOKEN", admin.token)
    args = ["--profile", "base"]
    from pipelines import config as config_module

    real_load = config_module.load_params

    def load(path=None, profile=None):
        p = real_load(path, profile)
        return p.model_copy(update={"annotation": p.annotation.model_copy(update={
            "project_title": params.annotation.project_title, "handout": "parallel"})})

    monkeypatch.setattr(config_module, "load_params", load)
    assert main([*args, "project", "check"]) == 1
    assert "label_config" in capsys.readouterr().out
    assert main([*args, "project", "repair"]) == 0
    assert check_project(admin, pid, expected) == []
    assert all(h.get("id") != hook.id for h in admin.webhooks(pid))
    assert main([*args, "project", "check"]) == 0

    decided = annotation_tasks.decide(env, annotation_tasks.open_batches(env))
    assert decided.batches == [batch.batch_id] and decided.accepted == len(truth) and not decided.held
    assert env.ledger.batch(batch.batch_id).held is None  # type: ignore[union-attr]
    for _, c in people:
        c.close()
    admin.close()
