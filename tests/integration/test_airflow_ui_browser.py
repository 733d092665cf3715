"""Issue 9 acceptance 4: a real browser logs into the Airflow UI after the demo release.

Headless Chromium (Debian's ``/usr/bin/chromium``, driven over the DevTools protocol) signs in
through Airflow's own login page with the stack's preset credentials, screenshots the grid of
``hopchain_nightly`` and the HopChain page, and the page must list the release the demo made.
The screenshots are written under the test's tmp dir and their paths printed (``pytest -s``).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import httpx
import pytest

from tests.support.cdp_browser import CHROMIUM, Browser

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which(CHROMIUM) is None, reason="Debian package chromium is not installed"),
]

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _is_png(path: Path) -> bool:
    return path.read_bytes()[:8] == PNG_MAGIC and path.stat().st_size > 10_000


def test_plugin_api_refuses_unauthenticated_requests(local_stack) -> None:
    url = local_stack.airflow.url()
    assert httpx.get(f"{url}/hopchain/api/status", timeout=30).status_code == 401
    assert httpx.get(f"{url}/hopchain/", timeout=30).status_code == 401
    bad = httpx.get(f"{url}/hopchain/api/status", headers={"Authorization": "Bearer not-a-jwt"}, timeout=30)
    assert bad.status_code in (401, 403)


def test_browser_logs_in_and_sees_the_dag_grid_and_the_release(demo_release, local_stack, tmp_path: Path) -> None:
    creds = local_stack.airflow.credentials()
    base = creds["url"]
    tag = demo_release["tag"]
    assert tag, demo_release
    with Browser() as browser:
        page = browser.new_page()

        # A fresh browser has no session: the UI sends it to Airflow's login page.
        page.goto(f"{base}/dags/hopchain_nightly")
        page.wait_for("!!document.querySelector('input[name=\"password\"]')", 60, what="the login form")
        assert "/auth/login" in page.url()
        assert not [c for c in page.cookies() if c["name"] == "_token"]
        login = page.screenshot(tmp_path / "00-login.png")
        page.type_into('input[name="username"]', creds["username"])
        page.type_into('input[name="password"]', creds["password"])
        page.wait_for("!document.querySelector('button[type=\"submit\"]').disabled", 10, what="Sign in enabled")
        page.click('button[type="submit"]')
        page.wait_for("!location.pathname.startsWith('/auth/')", 60, what="the redirect after signing in")
        assert [c for c in page.cookies() if c["name"] == "_token"], "login did not set the session cookie"

        # The DAG's grid: the nightly run of the demo is there and succeeded.
        page.wait_for("document.body.innerText.includes('hopchain_nightly')", 60, what="the DAG page")
        page.wait_for("document.querySelectorAll('a[href*=\"/runs/\"]').length > 0", 60,
                      what="the grid to show the demo's run")
        grid_text = page.text()
        assert "Sign into Airflow" not in grid_text
        page.wait_for("!document.body.innerText.includes('Loading')", 30, what="the grid to finish loading")
        grid = page.screenshot(tmp_path / "01-hopchain_nightly-grid.png")

        # The run itself (the grid link to it): state success.
        page.goto(f"{base}/dags/hopchain_nightly/runs/{demo_release['nightly_run_id']}")
        page.wait_for("document.body.innerText.toLowerCase().includes('success')", 60,
                      what="the nightly run to show as success")
        run = page.screenshot(tmp_path / "02-hopchain_nightly-run.png")

        # The HopChain page itself: it lists the release tag.
        page.goto(f"{base}/hopchain/")
        page.wait_for(f"document.body.innerText.includes({tag!r})", 30, what=f"release {tag} on the page")
        plugin_text = page.text()
        assert "Releases" in plugin_text or "releases" in plugin_text
        plugin = page.screenshot(tmp_path / "03-hopchain-page.png")

        # ... and embedded in the Airflow UI through the nav entry (external view, Browse → HopChain).
        page.goto(f"{base}/plugin/hopchain")
        page.wait_for(
            "(() => { const f = document.querySelector('iframe'); try { return f && f.contentDocument"
            f" && f.contentDocument.body.innerText.includes({tag!r}); }} catch (e) {{ return false; }} }})()",
            60, what="the HopChain page embedded in the UI")
        embedded = page.screenshot(tmp_path / "04-hopchain-in-airflow-ui.png")

        # The API the page uses answers the browser session (cookie) and lists the release too.
        status = page.evaluate("fetch('/hopchain/api/status').then(r => r.json())")
        assert tag in [r.get("tag") for r in status["releases"]], status["releases"]

    for shot in (login, grid, run, plugin, embedded):
        assert _is_png(shot), shot
        print(f"screenshot: {shot}")
