"""Four-way verification against a real Label Studio 1.23 (session fixture ``label_studio``).

Each test works in its own project, so the tests are independent of each other's tasks.
"""

from __future__ import annotations

import io
import json
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from pipelines.annotation.annotators import AnnotatorExists, add_annotator, user_token
from pipelines.annotation.client import LabelStudioClient, LabelStudioCredentials
from pipelines.annotation.handout import reconcile_batches
from pipelines.annotation.labeling import AMBIGUOUS, NOT_ANSWERABLE
from pipelines.annotation.project import ensure_project
from pipelines.annotation.pull import pull_and_decide
from pipelines.annotation.push import presigned_image_urls, push_questions
from pipelines.annotation.simulated import answer_result, run_simulation, simulated_annotators
from tests.support.image_reader import image_reader
from tests.support.stack import annotator_accounts, register_annotators

pytestmark = pytest.mark.integration


def questions(n: int, prefix: str, answers: list[str] | None = None) -> list[dict]:
    return [
        {
            "question_id": f"{prefix}-{i:03d}",
            "image_id": f"img{i % 3}",
            "question": f"How many things #{i}?",
            "answer": (answers[i] if answers else str(i % 7)),
        }
        for i in range(n)
    ]


def fake_url(image_id: str) -> str:
    return f"http://127.0.0.1:9/{image_id}.png"


@pytest.fixture(scope="module")
def admin(label_studio):
    creds = LabelStudioCredentials.from_mapping(label_studio.credentials())
    with LabelStudioClient.from_credentials(creds) as client:
        yield client


@pytest.fixture(scope="module")
def people(admin):
    """Five annotator accounts created like `hopchain annotators add`, each with its own token."""
    out = annotator_accounts(admin, "annotator", 5)
    yield out
    for _, client in out:
        client.close()


def project(admin: LabelStudioClient) -> int:
    return int(ensure_project(admin, f"verify-{uuid.uuid4().hex[:8]}")["id"])


def test_bootstrap_is_idempotent_and_enforces_settings(admin):
    title = f"verify-{uuid.uuid4().hex[:8]}"
    first = ensure_project(admin, title)
    # drift: someone sets four annotations at once and the skip button in the UI
    admin.update_project(first["id"], {"maximum_annotations": 4, "show_overlap_first": False,
                                       "show_skip_button": True})
    second = ensure_project(admin, title)
    assert second["id"] == first["id"]
    assert [p["id"] for p in [admin.find_project(title)]] == [first["id"]]
    # a change made outside the platform is left for the guard to hold (issue 26), never repaired silently
    assert admin.get_project(first["id"])["maximum_annotations"] == 4
    ensure_project(admin, title, repair=True)  # what `hopchain project repair` does
    got = admin.get_project(first["id"])
    # the serial handout (default): one annotation per task at a time, answered tasks served first
    assert (got["maximum_annotations"], got["show_overlap_first"], got["overlap_cohort_percentage"]) == (1, True, 100)
    parallel = admin.get_project(ensure_project(admin, title, 4, handout="parallel", repair=True)["id"])
    assert (parallel["maximum_annotations"], parallel["show_overlap_first"]) == (4, False)
    assert got["show_skip_button"] is False and got["show_annotation_history"] is False
    for tag in (
        '<Image name="image"',
        '<Number name="answer"',
        '<Choices name="answerable"',
        "not answerable",
        "ambiguous",
        '<TextArea name="comment"',
        "$question",
    ):
        assert tag in got["label_config"]


def test_push_50_twice_creates_no_duplicates_and_images_are_presigned(admin, object_store):
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 10, 10)).save(buf, format="PNG")
    prefix = f"tests/annotation/{uuid.uuid4().hex[:8]}"
    uris = {}
    for i in range(3):
        key = object_store.put_bytes(f"{prefix}/img{i}.png", buf.getvalue(), "image/png")
        uris[f"img{i}"] = f"s3://{object_store.bucket}/{key}"
    pid = project(admin)
    qs = questions(50, "push")
    url_of = presigned_image_urls(object_store, uris, expires_s=3600)
    first = push_questions(admin, pid, qs, url_of, batch="run-1", batch_size=20)
    assert (first.created, first.already_present, first.requests) == (50, 0, 3)
    again = push_questions(admin, pid, qs + qs[:5], url_of, batch="run-2", batch_size=20)
    assert (again.created, again.already_present, again.duplicates_in_input, again.requests) == (0, 50, 5, 0)
    assert set(again.held_elsewhere.values()) == {"run-1"} and len(again.held_elsewhere) == 50
    tasks = list(admin.iter_tasks(pid, fields="task_only", page_size=7))  # several pages
    assert sorted(t["data"]["question_id"] for t in tasks) == sorted(q["question_id"] for q in qs)
    assert len(list(admin.iter_tasks(pid, batch="run-1"))) == 50
    assert list(admin.iter_tasks(pid, batch="run-2")) == []
    image = tasks[0]["data"]["image"]
    assert image.startswith(object_store.creds.url) and "X-Amz-Signature" in image
    assert "answer" not in tasks[0]["data"]  # annotators never see the generated answer
    assert httpx.get(image, timeout=10).content == buf.getvalue()  # the URL Label Studio shows works
    with pytest.raises(ValueError, match="not an object in bucket"):
        presigned_image_urls(object_store, {"x": "file:///etc/passwd"})("x")


def test_parallel_annotators_consensus_with_wrong_counters(admin, people):
    pid = project(admin)
    qs = questions(6, "mix", answers=["3", "4", "2", "5", "1", "6"])
    push_questions(admin, pid, qs, fake_url, batch="b")
    task_of = {t["data"]["question_id"]: int(t["id"]) for t in admin.iter_tasks(pid, fields="task_only")}
    # what each of the four annotators answers, per question
    plan = {
        "mix-000": [3, "3.0", " 3 ", 3],  # unanimous after normalisation
        "mix-001": [4, 4, 4, 4],  # unanimous
        "mix-002": [2, 2, 2, 7],  # 3 vs 1
        "mix-003": [5, 9, 5, 5],  # 3 vs 1
        "mix-004": [1, 1, (None, NOT_ANSWERABLE), 1],  # not answerable
        "mix-005": [6, (None, AMBIGUOUS), 6, 6],  # ambiguous
    }

    def annotate(k: int) -> int:
        _, client = people[k]
        for qid, answers in plan.items():
            a = answers[k]
            answer, verdict = a if isinstance(a, tuple) else (a, "answerable")
            client.create_annotation(task_of[qid], answer_result(answer, verdict), lead_time_s=10.0 + k)
        return len(plan)

    with ThreadPoolExecutor(4) as pool:  # four annotators submit in parallel
        assert list(pool.map(annotate, range(4))) == [6] * 4
    # Label Studio's API does not enforce the limits: a fifth annotator and a second answer are stored
    fifth = people[4][1].create_annotation(task_of["mix-001"], answer_result(9))
    second = people[0][1].create_annotation(task_of["mix-002"], answer_result(7))
    # and its stored counters can be wrong: make them wrong on purpose
    for qid in ("mix-000", "mix-003"):
        admin.sdk.tasks.update(str(task_of[qid]), is_labeled=False, total_annotations=0)
    assert admin.get_task(task_of["mix-000"])["total_annotations"] == 0

    result = pull_and_decide(admin, pid, qs)
    rows = {r["question_id"]: r for r in result.consensus.consensus}
    assert {q: (r["status"], r["reason"].split(" (")[0]) for q, r in rows.items()} == {
        "mix-000": ("accepted", "unanimous"),
        "mix-001": ("accepted", "unanimous"),
        "mix-002": ("rejected", "disagreement"),
        "mix-003": ("rejected", "disagreement"),
        "mix-004": ("rejected", "not answerable"),
        "mix-005": ("rejected", "ambiguous"),
    }
    assert rows["mix-000"]["agreed_answer"] == "3" and rows["mix-000"]["matches_generated"] is True
    assert rows["mix-002"]["reason"] == "disagreement (3 vs 1: 2, 7)"
    ignored = {r.item_id: (r.code, r.detail) for r in result.consensus.ignored}
    assert ignored == {
        f"mix-001/annotation-{fifth['id']}": ("consensus.beyond_required",
                                              "annotator beyond the first 4 distinct ignored"),
        f"mix-002/annotation-{second['id']}": ("consensus.repeat_annotation",
                                               "second annotation by the same annotator ignored"),
    }
    tables = result.tables()
    assert tables["annotations"].num_rows == 24 and tables["rejects"].num_rows == 2
    assert set(tables["annotations"].column("annotator").to_pylist()) == {p[0].email for p in people[:4]}
    stats = {s["annotator"]: s for s in result.consensus.stats}
    a3 = stats[people[3][0].email]  # answered 7 on the 3-vs-1 of mix-002
    assert a3["compared"] == 6 and a3["agreed"] == 5 and a3["median_lead_time_s"] == 13.0


def test_bad_annotations_are_rejected_and_the_rest_decided(admin, people):
    pid = project(admin)
    qs = questions(3, "bad", answers=["2", "2", "2"])
    push_questions(admin, pid, qs, fake_url, batch="b")
    task_of = {t["data"]["question_id"]: int(t["id"]) for t in admin.iter_tasks(pid, fields="task_only")}
    for k in range(4):
        client = people[k][1]
        for qid in task_of:
            result = answer_result(2)
            if qid == "bad-000" and k == 0:
                result = answer_result("two")
            if qid == "bad-001" and k == 1:
                result = answer_result(
                    2,
                    extra=[
                        {
                            "from_name": "bbox",
                            "to_name": "image",
                            "type": "rectangle",
                            "value": {"x": 1, "y": 1, "width": 2, "height": 2},
                        }
                    ],
                )
            client.create_annotation(task_of[qid], result)
    client.create_annotation(task_of["bad-002"], answer_result(2), was_cancelled=True)
    result = pull_and_decide(admin, pid, qs)
    reasons = sorted((r.code, r.detail) for r in result.invalid)
    assert reasons == [
        ("annotation.cancelled", "cancelled (skipped) annotation ignored"),
        ("result.non_numeric_answer", "non-numeric answer 'two'"),
        ("result.unknown_field", "unknown field 'bbox'"),
    ]
    status = {r["question_id"]: r["status"] for r in result.consensus.consensus}
    assert status == {"bad-000": "pending", "bad-001": "pending", "bad-002": "accepted"}
    rejects = result.tables()["rejects"].to_pylist()
    assert len(rejects) == 3 and all(r["stage"] == "annotation" and r["raw"] for r in rejects)


def test_simulated_annotators_through_the_labeling_stream(admin, label_studio):
    """Five simulated accounts work the /next stream while the handout reconciles (what the wait's
    trigger does): each task gets exactly four annotators."""
    pid = project(admin)
    qs = questions(5, "sim")
    push_questions(admin, pid, qs, fake_url, batch="b")
    token = label_studio.credentials()["token"]
    sims = simulated_annotators(admin, token, 5)
    assert sims[0].email.startswith("simulated-annotator-")
    done = run_simulation(sims, pid, {q["question_id"]: q["answer"] for q in qs}, error_rate=0.0, seed=3,
                          handout=lambda: reconcile_batches(admin, pid, ["b"]).all_complete)
    total = sum(done.values())
    # 5 tasks x 4: the stream hands a task to one annotator at a time, four in all. Under load, two concurrent /next
    # calls can both get a task's last open slot (Label Studio's lock race: about 1 run in 3 on this
    # loaded 2-core machine): the consensus then counts the first four and reports the fifth.
    assert 20 <= total <= 21, done
    result = pull_and_decide(admin, pid, qs)
    assert result.consensus.status_counts() == {"accepted": 5, "rejected": 0, "pending": 0}
    assert [r.code for r in result.consensus.ignored] == ["consensus.beyond_required"] * (total - 20)
    assert all(r["matches_generated"] for r in result.consensus.consensus)
    with pytest.raises(AnnotatorExists):  # reusing an email never overwrites an account
        add_annotator(admin, sims[0].email)
    again = simulated_annotators(admin, token, 1)  # accounts are reused across runs
    assert again[0].email == sims[0].email


def test_annotators_add_command_creates_an_account_that_can_log_in(admin, label_studio, s3_creds, monkeypatch,
                                                                   capsys):
    from pipelines.cli import main

    creds = label_studio.credentials()
    monkeypatch.setenv("HOPCHAIN_LS_URL", creds["url"])
    monkeypatch.setenv("HOPCHAIN_LS_TOKEN", creds["token"])
    email = f"new-{uuid.uuid4().hex[:6]}@example.org"
    # without the object store the account could not be registered: nothing is created
    for var in ("HOPCHAIN_S3_ENDPOINT", "HOPCHAIN_S3_ACCESS_KEY", "HOPCHAIN_S3_SECRET_KEY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOPCHAIN_HOME", "/nonexistent/hopchain-stack")  # and no local stack to fall back on
    assert main(["annotators", "add", email]) != 0
    assert "object store: no credentials" in capsys.readouterr().err
    assert all(u.get("email") != email for u in admin.users())
    monkeypatch.setenv("HOPCHAIN_S3_ENDPOINT", s3_creds.url)
    monkeypatch.setenv("HOPCHAIN_S3_ACCESS_KEY", s3_creds.access_key)
    monkeypatch.setenv("HOPCHAIN_S3_SECRET_KEY", s3_creds.secret_key)
    assert main(["annotators", "add", email]) == 0
    out = capsys.readouterr().out
    lines = {
        line.split(":", 1)[0].strip(): line.split(":", 1)[1].strip()
        for line in out.splitlines()
        if " : " in line
    }
    assert lines["log in at"] == f"{creds['url']}/user/login/" and lines["email"] == email
    password = lines["password"].split()[0]
    token = user_token(creds["url"], email, password)  # the printed password really logs in
    with LabelStudioClient(creds["url"], token) as me:
        assert me.whoami()["email"] == email
    assert email in {u["email"] for u in admin.users()}  # a member of the organisation
    assert main(["annotators", "add", email]) == 3  # exists: refused, password untouched
    assert "already exists" in capsys.readouterr().err
    assert main(["annotators", "list"]) == 0  # the account the platform created counts: registered
    assert any(email in line and "person" in line and "active" in line for line in capsys.readouterr().out.splitlines())


class CountingTransport(httpx.HTTPTransport):
    """Counts the task-list requests sent to the real Label Studio and the tasks its answers carried."""

    def __init__(self) -> None:
        super().__init__()
        self.task_lists = 0
        self.tasks = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = super().handle_request(request)
        if request.method == "GET" and request.url.path.rstrip("/").endswith("/api/tasks"):
            body = response.read()
            self.task_lists += 1  # the SDK's pager also asks for the page after the last one (a 404)
            if response.status_code == 200:
                self.tasks += len(json.loads(body)["tasks"])
            headers = [(k, v) for k, v in response.headers.items()
                       if k.lower() not in ("content-encoding", "content-length", "transfer-encoding")]
            return httpx.Response(response.status_code, headers=headers, content=body, request=request)
        return response


def filler(admin: LabelStudioClient, pid: int, batches: int, per_batch: int) -> None:
    """``batches`` closed batches of ``per_batch`` tasks each (other images), imported directly."""
    for b in range(batches):
        tasks = [{"data": {"image": fake_url("old"), "question": "q", "question_id": f"old-{b}-{i}",
                           "image_id": f"old-image-{b}-{i // 4}", "batch": f"old-{b}"}} for i in range(per_batch)]
        admin.import_tasks(pid, tasks)


def test_push_into_a_large_project_reads_only_the_tasks_of_its_images(admin):
    pid = project(admin)
    filler(admin, pid, batches=3, per_batch=1000)  # 3,000 tasks already there
    counter = CountingTransport()
    with LabelStudioClient(admin.url, admin.token, transport=counter) as client:
        first = push_questions(client, pid, questions(50, "big"), fake_url, batch="run-1", batch_size=20)
        assert (first.created, first.already_present, first.tasks_fetched, first.lookups) == (50, 0, 0, 1)
        assert counter.tasks == 0 and counter.task_lists <= 2  # one lookup for 3 images, nothing transferred
        # a retry of the same batch finds its own 50 tasks; a later run re-generating 10 of them adds 5
        retry = push_questions(client, pid, questions(50, "big"), fake_url, batch="run-1")
        later = push_questions(client, pid, questions(10, "big") + questions(5, "new"), fake_url, batch="run-2")
    assert (retry.created, retry.already_present, retry.held_elsewhere, retry.tasks_fetched) == (0, 50, {}, 50)
    assert (later.created, later.already_present) == (5, 10)
    assert later.held_elsewhere == {f"big-{i:03d}": "run-1" for i in range(10)}
    assert later.tasks_fetched == 50 and counter.tasks == 100  # the tasks of img0..2 only, never the 3,000
    assert len(list(admin.iter_tasks(pid, batch="run-2", fields="task_only"))) == 5


def test_decide_on_a_project_of_many_closed_batches_fetches_only_the_open_batch(admin, people, object_store,
                                                                              s3_server):
    """The decision task (:func:`pipelines.annotation.tasks.decide`) against the real Label Studio and S3 server: 2,000 tasks of ten closed batches in the
    project, one open batch of 12 questions (one of them already held by a closed batch)."""
    import pyarrow as pa

    from expectations.samples import sample_tables
    from pipelines.annotation import tasks as annotation_tasks
    from pipelines.config import AnnotationConfig, Params, StoreConfig
    from pipelines.runner import RunEnv
    from pipelines.store.ledger import BatchRecord, utc_now

    tag = uuid.uuid4().hex[:8]
    params = Params(
        store=StoreConfig(runs_prefix=f"t-{tag}/runs", batches_prefix=f"t-{tag}/batches",
                          consensus_prefix=f"t-{tag}/consensus", releases_prefix=f"t-{tag}/releases",
                          journal_prefix=f"t-{tag}/journal", annotators_prefix=f"t-{tag}/annotators"),
        annotation=AnnotationConfig(project_title=f"decide-{tag}"),
    )
    pid = int(ensure_project(admin, params.annotation.project_title)["id"])
    counter = CountingTransport()
    env = RunEnv(params, object_store, f"nightly-{tag}",
                 label_studio=lambda: LabelStudioClient(admin.url, admin.token, transport=counter),
                 image_reader=image_reader(s3_server))
    tables = sample_tables(n_images=4, questions_per_image=3, seed=7)
    questions_rows = tables["questions"].to_pylist()
    filler(admin, pid, batches=10, per_batch=200)
    held = questions_rows[0]  # an earlier run's batch already holds this question (same image and program)
    push_questions(admin, pid, [held], fake_url, batch="old-earlier")
    for i in range(10):
        object_store.put_json(env.ledger.batch_key(f"old-{i}"), BatchRecord(
            batch_id=f"old-{i}", run_id="old", shard=i, questions=200, project_id=pid, status="closed",
            pushed_at=utc_now(), deadline=utc_now(), questions_key="unused").to_json())
    manifest = pa.Table.from_pylist([{**r, "uri": f"s3://{object_store.bucket}/t-{tag}/{r['image_id']}.jpg",
                                      "shard": 0} for r in tables["manifest"].to_pylist()])
    env.write_table("manifest", 0, manifest)
    env.write_table("questions", 0, tables["questions"])
    batch = annotation_tasks.push(env, 0)
    assert (batch.created_tasks, batch.already_present, batch.tasks_fetched) == (11, 1, 1)
    assert [b.batch_id for b in env.ledger.open_batches()] == [batch.batch_id]
    truth = {q["question_id"]: q["answer"] for q in questions_rows}
    tasks = list(admin.iter_tasks(pid, batch=batch.batch_id, fields="task_only"))
    assert batch.first_task_id == min(int(t["id"]) for t in tasks)  # the record's id bound: its lowest task
    register_annotators(env, [client for _, client in people[:4]])
    for _, client in people[:4]:
        for t in tasks:
            client.create_annotation(int(t["id"]), answer_result(truth[t["data"]["question_id"]]))

    counter.task_lists = counter.tasks = 0
    decided = annotation_tasks.decide(env, annotation_tasks.open_batches(env))
    assert (decided.accepted, decided.pending, decided.held_elsewhere) == (11, 0, 1)
    # the open batch's 11 tasks and the one held question's task; never the project's 2,013
    assert decided.tasks_fetched == 12 and counter.tasks == 12 and counter.task_lists <= 4
    record = env.ledger.decision(batch.batch_id)
    assert record is not None and record.agreement_rate == 1.0 and record.tasks_fetched == 12
    consensus = object_store.get_table(record.keys["consensus"])
    assert held["question_id"] not in consensus["question_id"].to_pylist() and consensus.num_rows == 11
    assert env.ledger.open_batches() == []  # decided: closed, and out of the open index


class FailingImports(LabelStudioClient):
    """A client whose imports after the first ``ok`` raise: the push dies mid-way, what landed stays."""

    def __init__(self, url: str, token: str, ok: int) -> None:
        super().__init__(url, token)
        self.ok = ok

    def import_tasks(self, project_id, tasks):
        if self.ok == 0:
            raise httpx.ConnectError("Label Studio went away")
        self.ok -= 1
        return super().import_tasks(project_id, tasks)


def test_every_reader_bounded_by_the_first_task_id_reads_the_whole_batch(admin):
    """A batch pushed in two tries, with another batch pushed between them, three of its questions held by
    an earlier batch, and 600 older tasks in the project: the push's ``first_task_id`` is the lowest id of
    the batch's tasks (the first try's), and each reader, bounded by it (one ``and`` query on the real
    Label Studio), gets exactly the batch's tasks: handout, tend, completion, pull and the wait's poll."""
    import asyncio
    from datetime import UTC, datetime, timedelta

    from hopchain_airflow.triggers.annotation import AnnotationCompleteTrigger
    from pipelines.annotation.client import AsyncLabelStudioClient
    from pipelines.annotation.completion import batch_progress
    from pipelines.annotation.pull import decide_batch
    from pipelines.annotation.tend import BatchRef, Tending, tend

    pid = project(admin)
    filler(admin, pid, batches=2, per_batch=300)
    push_questions(admin, pid, questions(3, "mine"), fake_url, batch="night-0")  # mine-000..002: held there
    with FailingImports(admin.url, admin.token, ok=1) as dying, pytest.raises(httpx.ConnectError):
        push_questions(dying, pid, questions(30, "mine"), fake_url, batch="night-1", batch_size=10)
    between = push_questions(admin, pid, questions(12, "other"), fake_url, batch="night-2")
    retry = push_questions(admin, pid, questions(30, "mine"), fake_url, batch="night-1", batch_size=10)
    assert (retry.created, retry.already_present, len(retry.held_elsewhere)) == (17, 13, 3)

    whole = {int(t["id"]) for t in admin.iter_tasks(pid, batch="night-1", fields="task_only")}  # unbounded
    first = retry.first_task_id
    assert len(whole) == 27 and first == min(whole)
    assert between.first_task_id is not None and first < between.first_task_id < max(whole)  # ids interleave
    bounded = {int(t["id"]) for t in admin.iter_tasks(pid, batch="night-1", fields="task_only", first_task_id=first)}
    assert bounded == whole
    # the server applies both items: the id item alone, and the batch item alone, would each read more
    assert [int(t["id"]) for t in admin.iter_tasks(pid, batch="night-1", first_task_id=max(whole))] == [max(whole)]
    assert list(admin.iter_tasks(pid, batch="night-1", first_task_id=max(whole) + 1000)) == []

    assert reconcile_batches(admin, pid, ["night-1"], first_task_ids={"night-1": first}).total == 27
    assert tend(admin, Tending([BatchRef(pid, "night-1", first)])).tasks == 27
    assert sum(batch_progress(admin, pid, "night-1", 4, first).values()) == 27
    decided = decide_batch(admin, pid, "night-1", questions(30, "mine"), 4, {}, first_task_id=first)
    assert set(decided.held_elsewhere) == {"mine-000", "mine-001", "mine-002"} and decided.tasks_fetched == 30
    assert decided.consensus.status_counts().get("pending") == 27  # every own question found, none answered

    async def poll() -> int:
        trigger = AnnotationCompleteTrigger(pid, "night-1", (datetime.now(UTC) + timedelta(hours=1)).isoformat(),
                                            conn_id="unused")
        async with AsyncLabelStudioClient(admin.url, admin.token) as client:
            return (await trigger.poll_batch(client, pid, "night-1", first)).total

    assert asyncio.run(poll()) == 27
