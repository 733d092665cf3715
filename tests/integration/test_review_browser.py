"""Issue 17 acceptance: the review workspace in the Airflow UI, in a real browser, after the demo.

Headless Chromium logs in through Airflow's login page and screenshots: the question browser filtered to
rejected questions, one question's hop trace with its overlays, the annotators table, the trend plots,
and the HopChain tab of a ``hopchain_nightly`` run page. One synthetic decided batch (older than the
demo's, with a ``<script>`` question and rejections of every kind: :mod:`tests.support.review_data`) is
added to the stack's ledger for the test and removed after it.

The screenshots go to the test's tmp dir; with ``HOPCHAIN_SAVE_SCREENSHOTS=1`` also to ``docs/img/review-*.png``.
"""

from __future__ import annotations

import io
import os
import shutil
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx
import jwt
import numpy as np
import pytest

from tests.support.cdp_browser import CHROMIUM, Browser
from tests.support.stack import REPO_ROOT

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which(CHROMIUM) is None, reason="Debian package chromium is not installed"),
]

SEEDED_RUN = "review_browser_test"
SCRIPT_TEXT = "<script>document.title='pwned'</script> How many cups are there?"


@pytest.fixture(scope="module")
def seeded(local_stack, demo_release):  # type: ignore[no-untyped-def]
    """A decided synthetic batch in the stack's ledger (older than the demo's), removed afterwards."""
    from pipelines.store.ledger import Ledger, NewestFirst
    from tests.support.faults import stack_store
    from tests.support.review_data import seed_batch

    store = stack_store(local_stack)
    layout = local_stack.params.store
    batch = seed_batch(store, layout, SEEDED_RUN, 0, 16, datetime(2026, 1, 1, tzinfo=UTC),
                       texts={1: SCRIPT_TEXT})
    yield batch
    ledger = Ledger(store, layout)
    decision = ledger.decision(batch.batch_id)
    store.delete_prefix(ledger.run(SEEDED_RUN).prefix)
    store.delete_prefix(ledger.consensus_prefix(batch.batch_id))
    store.delete_prefix(f"{layout.inputs_prefix}/review/")
    store.delete_keys([ledger.batch_key(batch.batch_id), ledger.consensus_key(batch.batch_id)])
    if decision is not None:  # the index markers, so that later tests see the demo's ledger only
        NewestFirst(store, layout.consensus_prefix).drop(batch.batch_id, decision.decided_at)
    NewestFirst(store, layout.batches_prefix).drop(batch.batch_id, batch.pushed_at)


def _token_without_dag_read(local_stack) -> str:  # type: ignore[no-untyped-def]
    """A token the api-server accepts (signed with the stack's secret, Airflow's own claims) for a user
    whose role grants nothing: authenticated, but no read access to any DAG."""
    real = local_stack.airflow.token()
    header = jwt.get_unverified_header(real)
    claims = jwt.decode(real, options={"verify_signature": False})
    claims.update(sub="no-dag-reader", role="", jti=uuid.uuid4().hex)
    secret = local_stack.airflow.credentials()["jwt_secret"]
    return jwt.encode(claims, secret, algorithm=header["alg"], headers={"kid": header.get("kid")})


def test_unauthenticated_and_users_without_dag_read_are_refused(local_stack, demo_release, seeded) -> None:  # type: ignore[no-untyped-def]
    base = f"{local_stack.airflow.url()}/hopchain"
    q = f"{seeded.batch_id}/q-{SEEDED_RUN}-0-000000"
    paths = ["/questions", "/api/questions", f"/question/{q}", f"/overlay/{q}/1.png", "/annotators",
             "/trends", "/trends/runs-rates.png", "/api/trends", "/", "/api/status"]
    no_read = _token_without_dag_read(local_stack)
    admin = local_stack.airflow.token()
    for path in paths:
        assert httpx.get(base + path, timeout=30).status_code == 401, path
        refused = httpx.get(base + path, headers={"Authorization": f"Bearer {no_read}"}, timeout=30)
        assert refused.status_code == 403, (path, refused.status_code, refused.text[:200])
        assert "read access to the HopChain DAGs" in refused.json()["detail"]
        ok = httpx.get(base + path, headers={"Authorization": f"Bearer {admin}"}, timeout=60)
        assert ok.status_code == 200, (path, ok.status_code, ok.text[:300])


def _picked_hop(questions: list[dict]) -> tuple[dict, dict]:
    """A question of the demo with an instance hop (one picked instance), and that hop."""
    for q in questions:
        for h in q["hops"]:
            if h["value_type"] == "instance" and len(h["picked"]) == 1:
                return q, h
    raise AssertionError("no demo question has an instance hop")


def test_the_overlay_is_drawn_on_the_instance_the_hop_picked(local_stack, demo_release) -> None:  # type: ignore[no-untyped-def]
    from PIL import Image
    from pycocotools import mask as mask_utils

    from pipelines.review import OVERLAY_ALPHA, PALETTE
    from pipelines.store.ledger import Ledger
    from tests.support.faults import stack_store

    base = f"{local_stack.airflow.url()}/hopchain"
    auth = {"Authorization": f"Bearer {local_stack.airflow.token()}"}
    run_id = demo_release["nightly_run_id"]
    page = httpx.get(f"{base}/api/questions", params={"run": run_id, "per_page": 100}, headers=auth, timeout=120)
    q, hop = _picked_hop(page.json()["questions"])
    url = f"{base}/overlay/{q['batch_id']}/{q['question_id']}"
    drawn = np.asarray(Image.open(io.BytesIO(httpx.get(f"{url}/{hop['index']}.png?size=2048", headers=auth,
                                                       timeout=60).content)).convert("RGB")).astype(float)
    plain = np.asarray(Image.open(io.BytesIO(httpx.get(f"{url}/image.png?size=2048", headers=auth,
                                                       timeout=60).content)).convert("RGB")).astype(float)
    store = stack_store(local_stack)
    instances = store.get_table(Ledger(store, local_stack.params.store).run(run_id).table("instances", q["shard"]))
    row = next(r for r in instances.to_pylist()
               if r["image_id"] == q["image_id"] and r["instance_id"] == hop["picked"][0])
    mask = mask_utils.decode({"size": [row["mask_height"], row["mask_width"]],
                              "counts": row["mask_rle"].encode()}).astype(bool)
    assert mask.shape == drawn.shape[:2] == plain.shape[:2]
    expected = plain * (1 - OVERLAY_ALPHA) + np.array(PALETTE[0]) * OVERLAY_ALPHA
    inside = np.abs(drawn[mask] - expected[mask]).max(axis=1)
    assert np.mean(inside <= 3) > 0.9  # the fill is on the picked instance's mask (box edges aside)
    x, y, w, h = (int(v) for v in row["bbox"])
    outside = np.ones_like(mask)
    outside[max(0, y - 8):y + h + 8, max(0, x - 8):x + w + 8] = False  # away from the box and its label
    assert np.abs(drawn[outside] - plain[outside]).max() <= 1  # nothing else is drawn


def _save(shot: Path) -> Path:
    if os.environ.get("HOPCHAIN_SAVE_SCREENSHOTS") == "1":
        target = REPO_ROOT / "docs" / "img" / shot.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, target)
    return shot


def test_a_reviewer_browses_questions_annotators_trends_and_the_run_link(  # type: ignore[no-untyped-def]
        local_stack, demo_release, seeded, tmp_path: Path) -> None:
    creds = local_stack.airflow.credentials()
    base = creds["url"]
    run_id = demo_release["nightly_run_id"]
    shots = []
    with Browser(width=1440, height=1000) as browser:
        page = browser.new_page()
        page.goto(f"{base}/dags/hopchain_nightly")
        page.wait_for("!!document.querySelector('input[name=\"password\"]')", 60, what="the login form")
        page.type_into('input[name="username"]', creds["username"])
        page.type_into('input[name="password"]', creds["password"])
        page.wait_for("!document.querySelector('button[type=\"submit\"]').disabled", 10, what="Sign in enabled")
        page.click('button[type="submit"]')
        page.wait_for("!location.pathname.startsWith('/auth/')", 60, what="the redirect after signing in")

        # The question browser: every question, then only the rejected ones.
        page.goto(f"{base}/hopchain/questions?per_page=100")
        every = page.evaluate("document.querySelectorAll('.card.question').length")
        statuses = set(page.evaluate("[...document.querySelectorAll('.card.question')].map(c => c.dataset.status)"))
        assert every > 16 and "rejected" in statuses and len(statuses) >= 2, (every, statuses)
        page.evaluate("document.querySelector('select[name=status]').value = 'rejected'")
        page.click("form.filters button[type=submit]")
        page.wait_for("location.search.includes('status=rejected')", 30, what="the filtered page")
        page.wait_for("document.readyState === 'complete'", 30)
        rejected = page.evaluate("[...document.querySelectorAll('.card.question')].map(c => c.dataset.status)")
        assert rejected and set(rejected) == {"rejected"} and len(rejected) < every
        assert page.evaluate("document.title") != "pwned"
        assert SCRIPT_TEXT in page.text()  # the question text holding <script> shows as text
        assert page.evaluate("[...document.querySelectorAll('.card.question .q')].some(p => p.children.length)") \
            is False
        page.wait_for("[...document.querySelectorAll('.card > a > img')].filter(i => i.getBoundingClientRect().top"
                      " < innerHeight).every(i => i.complete && i.naturalWidth > 0)", 60, what="the question images")
        shots.append(page.screenshot(tmp_path / "review-questions-rejected.png"))

        # One demo question's hop trace: four answers, every hop's value, the overlays loaded.
        auth = {"Authorization": f"Bearer {local_stack.airflow.token()}"}
        found = httpx.get(f"{base}/hopchain/api/questions", params={"run": run_id, "per_page": 100}, headers=auth,
                          timeout=120).json()["questions"]
        q, _ = _picked_hop([x for x in found if len(x["answers"]) == 4] or found)
        page.goto(f"{base}/hopchain/question/{q['batch_id']}/{q['question_id']}")
        assert page.evaluate("document.querySelectorAll('tr.answer').length") == 4
        annotators = page.evaluate("[...document.querySelectorAll('tr.answer td:first-child')].map(t => t.innerText)")
        assert sorted(annotators) == sorted(a["annotator"] for a in q["answers"])
        assert page.evaluate("document.querySelectorAll('.hop').length") == len(q["hops"])
        page.wait_for("[...document.querySelectorAll('.hop img')].every(i => i.complete && i.naturalWidth > 0)",
                      60, what="the hop overlays")
        shots.append(page.screenshot(tmp_path / "review-hop-trace.png"))

        # Annotators: the demo's simulated annotators and the synthetic ones; the careless one is flagged.
        page.goto(f"{base}/hopchain/annotators")
        rows = page.evaluate("[...document.querySelectorAll('#annotators tbody tr')]"
                             ".map(r => [r.dataset.annotator, r.className])")
        assert len(rows) >= 4 and ["careless@d", "flagged"] in rows, rows
        shots.append(page.screenshot(tmp_path / "review-annotators.png"))

        # Trends: four plots rendered by the server, and the demo's release in the table.
        page.goto(f"{base}/hopchain/trends")
        page.wait_for("[...document.querySelectorAll('.plots img')].every(i => i.complete && i.naturalWidth > 500)",
                      60, what="the trend plots")
        assert page.evaluate("document.querySelectorAll('.plots img').length") == 4
        assert demo_release["tag"] in page.text()
        shots.append(page.screenshot(tmp_path / "review-trends.png"))

        # The HopChain tab of the nightly run's page opens the questions of that run.
        page.goto(f"{base}/dags/hopchain_nightly/runs/{run_id}")
        tab = f"a[href$='/runs/{run_id}/plugin/hopchain-run'], a[href$='/plugin/hopchain-run']"
        page.wait_for(f"!!document.querySelector({tab!r})", 60, what="the HopChain tab on the run page")
        assert "HopChain" in page.evaluate(f"document.querySelector({tab!r}).innerText")
        page.click(tab)
        page.wait_for(
            "(() => { const f = document.querySelector('iframe'); try { return f && f.src.includes("
            "'/hopchain/questions?run=') && f.contentDocument.querySelectorAll('.card.question').length > 0; }"
            " catch (e) { return false; } })()", 60, what="the run's questions inside the run page")
        src = page.evaluate("document.querySelector('iframe').src")
        assert f"run={run_id.replace(':', '%3A').replace('+', '%2B')}" in src, src
        assert "dag=hopchain_nightly" in src
        runs_shown = page.evaluate("[...document.querySelector('iframe').contentDocument"
                                   ".querySelectorAll('.card.question')].map(c => c.innerText.includes('run ' + "
                                   f"{run_id!r}))")
        assert runs_shown and all(runs_shown)
        time.sleep(1)
        shots.append(page.screenshot(tmp_path / "review-dag-run-link.png"))

    for shot in shots:
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000, shot
        print(f"screenshot: {_save(shot)}")
