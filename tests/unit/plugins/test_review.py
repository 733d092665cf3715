"""The review workspace: question browser (filters, bounded pages, hop overlays), annotators, trends,
access control and escaping, against an in-memory ledger."""

from __future__ import annotations

import io
from datetime import UTC, datetime

import numpy as np
import pytest

from pipelines.config import Params
from pipelines.review import OVERLAY_ALPHA, PALETTE, Cursor, QuestionFilter, Review, render_overlay
from pipelines.store.ledger import Ledger
from tests.support.memory_store import MemoryStore
from tests.support.review_data import BOXES, image_png, seed_batch, seed_runs

pytestmark = pytest.mark.unit


@pytest.fixture
def seeded() -> tuple[MemoryStore, Params]:
    params = Params()
    store = MemoryStore()
    seed_runs(store, params.store, runs=3, shards=2, per_batch=12)
    return store, params


def _review(store: MemoryStore, params: Params) -> Review:
    return Review(Ledger(store, params.store))  # type: ignore[arg-type]


def test_pages_come_newest_batch_first_and_the_cursor_continues_where_the_page_stopped(seeded) -> None:  # type: ignore[no-untyped-def]
    review = _review(*seeded)
    first = review.questions(QuestionFilter(), per_page=10)
    assert len(first.questions) == 10 and first.next is not None
    assert {q.run_id for q in first.questions} == {"run002"}
    seen = [q.question_id for q in first.questions]
    cursor = first.next
    while cursor is not None:
        page = review.questions(QuestionFilter(), Cursor.parse(cursor.text()), per_page=10)
        seen += [q.question_id for q in page.questions]
        cursor = page.next
    assert len(seen) == len(set(seen)) == 3 * 2 * 12  # every question exactly once


def test_filters_narrow_the_list(seeded) -> None:  # type: ignore[no-untyped-def]
    review = _review(*seeded)
    every = review.questions(QuestionFilter(run="run001"), per_page=100).questions
    assert len(every) == 24
    rejected = review.questions(QuestionFilter(run="run001", status="rejected"), per_page=100).questions
    assert 0 < len(rejected) < len(every) and {q.status for q in rejected} == {"rejected"}
    not_answerable = review.questions(QuestionFilter(run="run001", status="rejected", reason="not answerable"),
                                      per_page=100).questions
    assert 0 < len(not_answerable) < len(rejected)
    assert {q.reason_code for q in not_answerable} == {"decision.not_answerable"}
    four = review.questions(QuestionFilter(hops=4), per_page=100).questions
    assert four and all(q.num_hops == 4 for q in four)
    skel = four[0].skeleton
    assert review.questions(QuestionFilter(skeleton=skel), per_page=100).questions[0].skeleton == skel
    assert review.questions(QuestionFilter(category="bottle"), per_page=5).questions
    assert review.questions(QuestionFilter(category="giraffe"), per_page=5).questions == []
    batch = review.questions(QuestionFilter(batch="run000.shard-00001"), per_page=100).questions
    assert len(batch) == 12 and {q.batch_id for q in batch} == {"run000.shard-00001"}


def test_a_question_carries_its_four_answers_and_hop_values() -> None:
    params, store = Params(), MemoryStore()
    seed_batch(store, params.store, "r1", 0, 4, datetime(2026, 11, 2, tzinfo=UTC))
    q = _review(store, params).question("r1.shard-00000", "q-r1-0-000000")
    assert q is not None and q.status == "accepted" and q.answer == "1"
    assert [a.annotator for a in q.answers] == ["ann@a", "ann@b", "ann@c", "careless@d"]
    assert [a.lead_time_s for a in q.answers] == [5.0, 6.0, 7.0, 8.0]
    assert [h.value for h in q.hops] == [[1, 2], [2], [3], [1], 1]
    assert [h.picked for h in q.hops] == [[1, 2], [2], [3], [1], [1]]  # count shows what it counted
    assert q.skeleton == "find>extreme(0)>nearest(1)>relate(2)>count(3)"


def test_a_page_reads_the_same_number_of_batches_whatever_the_ledger_holds() -> None:
    params = Params()
    costs = []
    for runs in (4, 20):
        store = MemoryStore()
        seed_runs(store, params.store, runs=runs, shards=1, per_batch=8, images=1)
        _review(store, params).questions(QuestionFilter(), per_page=1)  # the first read builds the indexes
        review = _review(store, params)
        store.listings.clear()
        page = review.questions(QuestionFilter(status="accepted"), per_page=8)
        costs.append((page.batches_read, len(store.listings)))
    assert costs[0] == costs[1]


def test_the_overlay_is_drawn_on_the_picked_instance_only() -> None:
    params, store = Params(), MemoryStore()
    seed_batch(store, params.store, "r1", 0, 4, datetime(2026, 11, 2, tzinfo=UTC))
    review = _review(store, params)
    q = review.question("r1.shard-00000", "q-r1-0-000000")
    assert q is not None
    from PIL import Image

    png = review.overlay(q, 1, max_side=160)  # hop 1: extreme -> the right cup, #2
    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)
    plain = np.asarray(Image.open(io.BytesIO(image_png(0))).convert("RGB")).astype(int)
    x, y, w, h = BOXES[2][1]
    inside = pixels[y + h // 2, x + w // 2]
    expected = plain[y + h // 2, x + w // 2] * (1 - OVERLAY_ALPHA) + np.array(PALETTE[0]) * OVERLAY_ALPHA
    assert np.abs(inside - expected).max() <= 2
    x1, y1, w1, h1 = BOXES[1][1]  # the other cup is not drawn
    assert np.abs(pixels[y1 + h1 // 2, x1 + w1 // 2] - plain[y1 + h1 // 2, x1 + w1 // 2]).max() <= 1
    assert review.overlay(q, 1, max_side=160) is not None  # cached: same bytes again
    assert render_overlay(image_png(0), [], [], 80)[:8] == b"\x89PNG\r\n\x1a\n"


def test_images_outside_the_platform_bucket_prefixes_are_refused() -> None:
    from pipelines.review import ImageRefused

    review = _review(MemoryStore(), Params())
    assert review.allowed_key("s3://memory/inputs/a/b.png") == "inputs/a/b.png"
    assert review.allowed_key("s3://memory/runs/r/x.png") == "runs/r/x.png"
    for uri in ("s3://other/inputs/a.png", "s3://memory/batches/b.json", "s3://memory/inputs/../consensus/x",
                "file:///etc/passwd", "http://example.com/x.png", ""):
        with pytest.raises(ImageRefused):
            review.allowed_key(uri)


def test_annotators_far_below_the_others_are_flagged(seeded) -> None:  # type: ignore[no-untyped-def]
    rows = {r.annotator: r for r in _review(*seeded).annotators()}
    assert set(rows) == {"ann@a", "ann@b", "ann@c", "careless@d"}
    assert rows["careless@d"].flagged and not rows["ann@a"].flagged
    assert rows["ann@a"].agreement == 1.0 and rows["careless@d"].agreement is not None
    assert rows["careless@d"].agreement < 0.8
    assert rows["ann@a"].generator_agreement == 1.0 and rows["ann@a"].median_lead_time_s == 5.0


def test_trends_per_run_and_the_cost_fields_when_present(seeded) -> None:  # type: ignore[no-untyped-def]
    runs, releases = _review(*seeded).trends()
    assert [r.label for r in runs] == ["run000", "run001", "run002"]
    r = runs[0]
    assert r.accepted == 12 and r.rejected == 6 and r.pending == 6
    assert r.acceptance_rate == pytest.approx(12 / 18) and r.generator_precision == 1.0
    assert sum(r.reasons.values()) == 6 and set(r.reasons) <= {"not answerable", "disagreement"}
    assert r.annotations_per_accepted is None and releases == []


# -- the pages -------------------------------------------------------------------------------------
@pytest.fixture
def client_for(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    from fastapi.testclient import TestClient

    from hopchain_airflow.ui import app as ui
    from hopchain_airflow.ui.security import require_hopchain_read

    def make(store, params, allowed: bool = True):  # type: ignore[no-untyped-def]
        application = ui.create_app(params=params, ledger=lambda: Ledger(store, params.store))
        from airflow.api_fastapi.core_api.security import get_user

        application.dependency_overrides[get_user] = lambda: object()

        class Manager:
            def batch_is_authorized_dag(self, requests, *, user):  # type: ignore[no-untyped-def]
                assert {r["details"].id for r in requests} == {
                    "hopchain_nightly", "hopchain_annotations", "hopchain_release", "hopchain_labeling"}
                assert all(r["method"] == "GET" for r in requests)
                return allowed

        import airflow.api_fastapi.app as af_app

        monkeypatch.setattr(af_app, "get_auth_manager", lambda: Manager())
        assert require_hopchain_read is not None
        return TestClient(application)

    return make


def test_every_route_refuses_a_user_without_dag_read(client_for) -> None:  # type: ignore[no-untyped-def]
    params, store = Params(), MemoryStore()
    seed_batch(store, params.store, "r1", 0, 4, datetime(2026, 11, 2, tzinfo=UTC))
    client = client_for(store, params, allowed=False)
    for path in ("/", "/api/status", "/questions", "/api/questions", "/question/r1.shard-00000/q-r1-0-000000",
                 "/overlay/r1.shard-00000/q-r1-0-000000/1.png", "/annotators", "/api/annotators", "/trends",
                 "/trends/runs-rates.png", "/api/trends", "/docs/runs/r1/datadocs/index.html"):
        r = client.get(path)
        assert r.status_code == 403, (path, r.status_code)
        assert "q-r1" not in r.text


def test_the_question_pages_escape_data_and_show_the_answers(client_for) -> None:  # type: ignore[no-untyped-def]
    params, store = Params(), MemoryStore()
    seed_batch(store, params.store, "r1", 0, 4, datetime(2026, 11, 2, tzinfo=UTC),
               texts={1: "<script>alert('x')</script> How many cups?"})
    client = client_for(store, params)
    html = client.get("/questions", params={"status": "rejected"}).text
    assert "<script>alert" not in html and "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in html
    assert html.count("class='card question'") == 1 and "data-status='rejected'" in html
    assert "data-status='accepted'" not in html
    one = client.get("/question/r1.shard-00000/q-r1-0-000000").text
    assert one.count("<tr class='answer'>") == 4 and "careless@d" in one
    assert "/overlay/r1.shard-00000/q-r1-0-000000/1.png" in one
    png = client.get("/overlay/r1.shard-00000/q-r1-0-000000/1.png")
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    assert client.get("/overlay/r1.shard-00000/q-r1-0-000000/99.png").status_code == 404
    assert client.get("/question/r1.shard-00000/nope").status_code == 404
    api = client.get("/api/questions", params={"status": "accepted"}).json()
    assert {q["status"] for q in api["questions"]} == {"accepted"}
    assert client.get("/questions", params={"hops": "x"}).status_code == 422
    for path in ("/annotators", "/trends"):
        assert client.get(path).status_code == 200
    for plot in ("runs-rates", "runs-reasons", "releases-rates", "releases-released"):
        r = client.get(f"/trends/{plot}.png")
        assert r.status_code == 200 and r.content[:4] == b"\x89PNG"
    assert client.get("/trends/../../etc.png").status_code == 404


def test_an_image_outside_the_known_prefixes_is_not_served(client_for) -> None:  # type: ignore[no-untyped-def]
    import pyarrow as pa

    from pipelines.contracts import SCHEMAS, parquet_bytes

    params, store = Params(), MemoryStore()
    seed_batch(store, params.store, "r1", 0, 4, datetime(2026, 11, 2, tzinfo=UTC))
    key = Ledger(store, params.store).run("r1").table("manifest", 0)  # type: ignore[arg-type]
    rows = pa.Table.from_pylist([], schema=SCHEMAS["manifest"]).to_pylist()
    store.put_bytes("consensus/secret.png", b"secret")
    import pyarrow.parquet as pq

    manifest = pq.read_table(io.BytesIO(store.get_bytes(key))).to_pylist()
    for r in manifest:
        r["uri"] = "s3://memory/consensus/secret.png"
    store.put_bytes(key, parquet_bytes(pa.Table.from_pylist(rows + manifest, schema=SCHEMAS["manifest"])))
    client = client_for(store, params)
    r = client.get("/overlay/r1.shard-00000/q-r1-0-000000/image.png")
    assert r.status_code == 404 and b"secret" not in r.content


def test_the_dag_run_link_opens_the_questions_of_that_run() -> None:
    from hopchain_plugin import HopChainPlugin

    views = {v["destination"]: v for v in HopChainPlugin.external_views}
    assert views["dag_run"]["href"] == "/hopchain/questions?run={RUN_ID}&dag={DAG_ID}"
    assert views["nav"]["href"] == "/hopchain/"


def test_release_trends_read_the_cost_fields_when_the_metrics_have_them() -> None:
    from pipelines.store.ledger import ReleaseRecord

    params, store = Params(), MemoryStore()
    ledger = Ledger(store, params.store)  # type: ignore[arg-type]
    t = datetime(2026, 11, 3, tzinfo=UTC)
    for tag, cost in (("v1", None), ("v2", {"annotations": 70, "annotations_per_accepted": 4.4, "annotations_saved": 6})):
        metrics = {"acceptance_rate": 0.6, "generator_precision": 0.9, "consensus": {"accepted": 16, "rejected": 4}}
        if cost:
            metrics["annotation_cost"] = cost
        ledger.put_release(ReleaseRecord(tag=tag, registry="/r", commit="c", questions=16, images=4, metrics=metrics,
                                         card=None, run_ids=[], accepted_digest="d", released_by="x",
                                         released_at=t if tag == "v1" else t.replace(day=4)))
    _, releases = _review(store, params).trends()
    assert [(r.label, r.annotations_per_accepted, r.annotations_saved) for r in releases] == [
        ("v1", None, None), ("v2", 4.4, 6)]
    assert releases[1].acceptance_rate == 0.6 and releases[1].released == 16 and releases[1].accepted == 16


def test_the_kind_of_a_decision_comes_from_its_code_never_from_its_sentence() -> None:
    import pyarrow as pa

    from pipelines.contracts import SCHEMAS
    from pipelines.review import join_batch
    from pipelines.store.ledger import BatchRecord

    t = datetime(2026, 11, 2, tzinfo=UTC)
    batch = BatchRecord(batch_id="r.shard-00000", run_id="r", shard=0, questions=4, project_id=1, status="closed",
                        pushed_at=t, deadline=t, questions_key="k")
    questions = pa.Table.from_pylist([{"question_id": f"q{i}", "image_id": "i", "question": "?", "answer": "1",
                                       "num_hops": 1, "hops": "[]"} for i in range(4)], schema=SCHEMAS["questions"])
    consensus = pa.Table.from_pylist([
        # the sentence says one thing, the code another: the code wins
        {"question_id": "q0", "status": "rejected", "reason": "not answerable (1 of 4)",
         "reason_code": "decision.disagreement"},
        {"question_id": "q1", "status": "rejected", "reason": "ambiguous (2 of 4)", "reason_code": None},  # legacy
        {"question_id": "q2", "status": "accepted", "reason": "unanimous", "reason_code": None},  # legacy
    ], schema=SCHEMAS["consensus"])
    rows = {q.question_id: q for q in join_batch(batch, questions, consensus, None)}
    assert (rows["q0"].reason_kind, rows["q0"].reason) == ("disagreement", "not answerable (1 of 4)")
    assert (rows["q1"].reason_kind, rows["q1"].reason_code) == ("unrecorded", None)
    assert (rows["q2"].reason_kind, rows["q2"].reason_code) == ("unanimous", "decision.unanimous")
    assert (rows["q3"].reason_kind, rows["q3"].reason_code) == ("pending", "decision.pending")  # not decided
    assert QuestionFilter(reason="disagreement").matches(rows["q0"])
    assert not QuestionFilter(reason="not answerable").matches(rows["q0"])


def test_the_review_package_parses_no_reason_text() -> None:
    import ast
    import inspect

    import pipelines.review

    tree = ast.parse(inspect.getsource(pipelines.review))
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in (
                "startswith", "split", "partition", "lower"):
            target = ast.unparse(node.func.value)
            assert "reason" not in target and "detail" not in target, ast.unparse(node)
