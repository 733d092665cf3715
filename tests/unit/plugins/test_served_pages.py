"""What the HopChain app serves and to whom (issue 30, item 1): every route of the app — FastAPI's API
docs included — refuses a request without login and a user without HopChain DAG read; stored documents
come sandboxed without scripts, SVG and other script-capable types only as downloads; every response
says ``nosniff``; the platform's own pages get a policy without scripts."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from pipelines.config import Params
from pipelines.store.ledger import Ledger
from tests.support.memory_store import MemoryStore
from tests.support.review_data import seed_batch

pytestmark = pytest.mark.unit

#: a Data Docs page as GX renders a failing value it did not escape, plus a meta refresh
CRAFTED_HTML = (b"<!doctype html><html><head><meta http-equiv='refresh' content='0;url=https://evil.example/'>"
                b"<title>Data Docs</title></head><body><table><tr><td>"
                b"<img src=x onerror=\"document.title='pwned'\"><script>document.title='pwned'</script>"
                b"</td></tr></table></body></html>")
CRAFTED_SVG = (b"<svg xmlns='http://www.w3.org/2000/svg' onload=\"document.title='pwned'\">"
               b"<script>document.title='pwned'</script></svg>")
DOCS = "runs/r1/datadocs/questions/"
API_DOCS = ("/docs", "/docs/", "/docs/oauth2-redirect", "/redoc", "/openapi.json")


def _app(store: MemoryStore, params: Params) -> Any:
    from hopchain_airflow.ui.app import create_app

    return create_app(params=params, ledger=lambda: Ledger(store, params.store))  # type: ignore[arg-type]


def _as_reader(app: Any, monkeypatch: pytest.MonkeyPatch, allowed: bool) -> TestClient:
    """A client whose token is valid; the auth manager grants HopChain DAG read iff ``allowed``."""
    import airflow.api_fastapi.app as af_app
    from airflow.api_fastapi.core_api.security import get_user

    class Manager:
        def batch_is_authorized_dag(self, requests, *, user):  # type: ignore[no-untyped-def]
            return allowed

    app.dependency_overrides[get_user] = lambda: object()
    monkeypatch.setattr(af_app, "get_auth_manager", lambda: Manager())
    return TestClient(app)


def _concrete(path: str) -> str:
    """A request path for a route's template: every ``{param}`` / ``{param:path}`` filled in."""
    return re.sub(r"\{([^}:]+)(:path)?\}", lambda m: "runs/r1/datadocs/index.html" if m.group(2) else "1", path)


@pytest.fixture
def store_params() -> tuple[MemoryStore, Params]:
    params, store = Params(), MemoryStore()
    seed_batch(store, params.store, "r1", 0, 4, datetime(2026, 11, 2, tzinfo=UTC))
    for name, data in {"index.html": CRAFTED_HTML, "static/images/logo.svg": CRAFTED_SVG,
                       "page.xhtml": CRAFTED_HTML, "static/run.js": b"document.title='pwned'",
                       "static/plain": CRAFTED_HTML, "static/images/plot.png": b"\x89PNG\r\n\x1a\n"}.items():
        store.put_bytes(DOCS + name, data)
    store.put_bytes("releases/v1/README.md", b"# card\n<script>document.title='pwned'</script>")
    return store, params


# -- who -------------------------------------------------------------------------------------------
def test_every_route_is_guarded_by_the_hopchain_reader_dependency(store_params) -> None:  # type: ignore[no-untyped-def]
    """A route added with ``add_route`` or a mounted app would bypass FastAPI dependencies: none exists,
    and every API route (the app's own dependency) asks :func:`require_hopchain_read`."""
    from hopchain_airflow.ui.security import require_hopchain_read

    app = _app(*store_params)
    assert len(app.routes) >= 13
    for route in app.routes:
        assert isinstance(route, APIRoute), f"{route} is not an APIRoute: it would skip the login check"
        calls = {d.call for d in route.dependant.dependencies}
        assert require_hopchain_read in calls, route.path


def test_every_route_refuses_a_request_without_login(store_params) -> None:  # type: ignore[no-untyped-def]
    app = _app(*store_params)
    client = TestClient(app)
    requests = [(m, _concrete(r.path)) for r in app.routes for m in sorted(r.methods)]
    assert len(requests) >= 13
    for method, path in requests + [("GET", p) for p in API_DOCS]:
        r = client.request(method, path)
        assert r.status_code == 401, (method, path, r.status_code, r.text[:200])
        assert "swagger" not in r.text.lower() and "redoc" not in r.text.lower() and "q-r1" not in r.text
        assert r.headers["x-content-type-options"] == "nosniff"


def test_every_route_refuses_a_user_without_dag_read(store_params, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    app = _app(*store_params)
    client = _as_reader(app, monkeypatch, allowed=False)
    for route in app.routes:
        r = client.get(_concrete(route.path))
        assert r.status_code == 403, (route.path, r.status_code)
        assert "q-r1" not in r.text and "pwned" not in r.text


def test_the_api_docs_pages_are_gone_and_the_schema_is_for_readers_only(store_params, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    client = _as_reader(_app(*store_params), monkeypatch, allowed=True)
    for path in ("/redoc", "/docs/oauth2-redirect"):
        r = client.get(path)
        assert r.status_code == 404 and "swagger" not in r.text.lower() and "redoc" not in r.text.lower()
    schema = client.get("/openapi.json")
    assert schema.status_code == 200 and "/api/status" in schema.json()["paths"]


# -- how -------------------------------------------------------------------------------------------
def _directives(policy: str) -> dict[str, str]:
    return {d.strip().split(" ", 1)[0]: (d.strip().split(" ", 1) + [""])[1] for d in policy.split(";") if d.strip()}


def test_a_stored_page_is_sandboxed_without_scripts(store_params, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    client = _as_reader(_app(*store_params), monkeypatch, allowed=True)
    r = client.get(f"/docs/{DOCS}index.html")
    assert r.status_code == 200 and r.content == CRAFTED_HTML  # the page is shown as it was stored ...
    assert r.headers["content-type"].startswith("text/html")
    assert r.headers["x-content-type-options"] == "nosniff"
    csp = _directives(r.headers["content-security-policy"])
    # ... in a sandbox that runs no script of it (inline, loaded, handler, meta refresh) and loads
    # nothing from anywhere else
    assert "sandbox" in csp and "allow-scripts" not in csp["sandbox"] and "allow-forms" not in csp["sandbox"]
    assert csp["default-src"] == "'none'" and "script-src" not in csp and "connect-src" not in csp
    assert csp["img-src"] == "'self' data:" and csp["form-action"] == "'none'" and csp["base-uri"] == "'none'"


@pytest.mark.parametrize("name", ["static/images/logo.svg", "page.xhtml", "static/run.js", "static/plain"])
def test_svg_and_other_script_capable_files_are_only_downloads(store_params, monkeypatch, name: str) -> None:  # type: ignore[no-untyped-def]
    client = _as_reader(_app(*store_params), monkeypatch, allowed=True)
    r = client.get(f"/docs/{DOCS}{name}")
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/octet-stream"  # never image/svg+xml, never a script
    assert r.headers["content-disposition"].startswith("attachment; filename*=UTF-8''")
    assert r.headers["x-content-type-options"] == "nosniff"
    assert "allow-scripts" not in _directives(r.headers["content-security-policy"])["sandbox"]


def test_images_show_and_a_markdown_card_is_plain_text(store_params, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    client = _as_reader(_app(*store_params), monkeypatch, allowed=True)
    png = client.get(f"/docs/{DOCS}static/images/plot.png")
    assert png.headers["content-type"] == "image/png" and "content-disposition" not in png.headers
    card = client.get("/docs/releases/v1/README.md")
    assert card.headers["content-type"].startswith("text/plain") and "sandbox" in card.headers["content-security-policy"]


def test_the_platforms_own_pages_run_no_script_and_say_nosniff(store_params, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    client = _as_reader(_app(*store_params), monkeypatch, allowed=True)
    for path in ("/", "/questions", "/question/r1.shard-00000/q-r1-0-000000", "/annotators", "/trends"):
        r = client.get(path)
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/html"), path
        assert "<script" not in r.text.lower(), path  # the pages need no script, so the policy allows none
        csp = _directives(r.headers["content-security-policy"])
        assert csp["default-src"] == "'none'" and "script-src" not in csp, path
        assert csp["frame-ancestors"] == "'self'" and csp["form-action"] == "'self'", path  # embedded by the UI
        assert r.headers["x-content-type-options"] == "nosniff", path
    for path in ("/api/status", "/overlay/r1.shard-00000/q-r1-0-000000/1.png", "/trends/runs-rates.png"):
        r = client.get(path)
        assert r.status_code == 200 and r.headers["x-content-type-options"] == "nosniff", path
        assert "sandbox" in r.headers["content-security-policy"], path


def test_a_folder_lists_its_pages_so_validations_are_reachable_without_scripts(store_params, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """GX's site index lists the validation pages only through JavaScript, which no longer runs: the
    folder's own list (a page of the platform, no script) links them."""
    store, params = store_params
    store.put_bytes(DOCS + "validations/questions/r1/<b>x</b>.html", CRAFTED_HTML)
    client = _as_reader(_app(store, params), monkeypatch, allowed=True)
    r = client.get(f"/docs/{DOCS}")
    assert r.status_code == 200 and "sandbox" not in r.headers["content-security-policy"]
    assert "href='index.html'" in r.text and "href='validations/questions/r1/%3Cb%3Ex%3C/b%3E.html'" in r.text
    assert "&lt;b&gt;x&lt;/b&gt;.html" in r.text and "<b>x</b>" not in r.text  # names are data
    assert "logo.svg" not in r.text and "<script" not in r.text.lower()
    assert client.get("/docs/batches/").status_code == 404  # only the document prefixes
    from hopchain_airflow.ui.app import render_page

    status = render_page({"runs": [{"run_id": "r1", "datadocs": f"{DOCS}index.html"}], "batches": [],
                          "consensus": [], "releases": []})
    assert f"href='docs/{DOCS}' target='_blank'>all pages" in status  # the Status tab links the list
