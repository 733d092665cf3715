"""The project stays as the platform set it, against a real Label Studio 1.23 and S3 server: an annotator
account (not the admin) changes the labeling config, a setting and adds a webhook; the platform's tend and
decision hold the batch (no decision) with a one-line reason, ``hopchain project check`` exits 1, and
``hopchain project repair`` puts everything back, after which the batch is decided."""

from __future__ import annotations

import uuid

import pytest

from pipelines.annotation.client import LabelStudioClient
from pipelines.annotation.guard import check_project, expected_state
from pipelines.annotation.simulated import answer_result
from pipelines.config import AnnotationConfig, Params, StoreConfig
from pipelines.flow import Flow
from tests.support.stack import annotator_accounts, register_annotators

pytestmark = pytest.mark.integration


def test_a_changed_project_holds_its_batches_until_repaired(label_studio, object_store, monkeypatch, capsys):
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
    flow = Flow(params, object_store, f"nightly-{tag}", label_studio=lambda: LabelStudioClient(admin.url, admin.token))
    tables = sample_tables(n_images=2, questions_per_image=2, seed=3)
    import pyarrow as pa

    flow.put("manifest", 0, pa.Table.from_pylist([{**r, "uri": f"s3://{object_store.bucket}/g-{tag}/{r['image_id']}.jpg",
                                                   "shard": 0} for r in tables["manifest"].to_pylist()]))
    flow.put("questions", 0, tables["questions"])
    batch = flow.push(0)
    pid = int(batch.project_id)  # type: ignore[arg-type]
    expected = expected_state(params.annotation.project_title, 4, "parallel")
    assert check_project(admin, pid, expected) == []

    people = annotator_accounts(admin, f"guard{tag}-", 4)
    register_annotators(flow, [c for _, c in people])
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

    tended = flow.tend()
    assert batch.batch_id in tended.held and tended.opened == 0  # journaled, not acted on
    assert tended.journaled == 4 * len(truth)
    decided = flow.decide(flow.open_batches())
    reason = decided.held[batch.batch_id]
    assert decided.batches == [] and flow.ledger.decision(batch.batch_id) is None  # no decision
    assert reason.startswith(f"project {pid} changed outside the platform: label_config (")
    assert "show_annotation_history false -> true" in reason and "webhook added" in reason and "\n" not in reason
    held = flow.ledger.batch(batch.batch_id)
    assert held is not None and held.held == reason and held.status == "open"

    monkeypatch.setenv("HOPCHAIN_LS_URL", admin.url)
    monkeypatch.setenv("HOPCHAIN_LS_TOKEN", admin.token)
    args = ["--profile", "base"]
    from pipelines import config as config_module

    real_load = config_module.load_params

    def load(path=None, profile=None):  # type: ignore[no-untyped-def]
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

    decided = flow.decide(flow.open_batches())
    assert decided.batches == [batch.batch_id] and decided.accepted == len(truth) and not decided.held
    assert flow.ledger.batch(batch.batch_id).held is None  # type: ignore[union-attr]
    for _, c in people:
        c.close()
    admin.close()
