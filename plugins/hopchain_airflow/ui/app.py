"""The HopChain page in the Airflow UI: runs → batches → annotation progress → consensus → releases,
and the review workspace (questions with their hop traces, annotators, trends; :mod:`pipelines.review`).

Mounted by the plugin at ``/hopchain``; every route depends on
:func:`~hopchain_airflow.ui.security.require_hopchain_read` (a dependency of the app itself, so a new
route is covered too): no token is 401, a user without read access to the HopChain DAGs 403 (the UI's
iframe carries the user's ``_token`` cookie). FastAPI's API docs pages are off; ``/openapi.json`` is a
guarded route. Every response carries the headers of :class:`~hopchain_airflow.ui.security.SecurityHeaders`. Data
comes from the ledger the DAGs write (:mod:`pipelines.store.ledger`, through the ``hopchain_s3``
connection's hook) and, for live progress, from Label Studio (the ``hopchain_label_studio``
connection's hook). Data Docs and dataset cards are proxied from the object store so they need
no public bucket; they are someone else's bytes, served sandboxed without scripts and SVG only as a
download (:func:`~hopchain_airflow.ui.security.stored_content`). When the object store does not
answer, the page and the API say 502.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from hopchain_airflow.ui.cache import TTLCache
from hopchain_airflow.ui.review_pages import Pages
from hopchain_airflow.ui.security import HopChainReader, SecurityHeaders, require_hopchain_read, stored_content

if TYPE_CHECKING:
    from pipelines.config import Params
    from pipelines.review import Review
    from pipelines.store.ledger import Ledger

#: how long a page of the Status tab is served from the app's cache, and how many pages it keeps
STATUS_TTL_S, STATUS_PAGES = 5.0, 32


class BackendDown(RuntimeError):
    """The object store or Label Studio did not answer: the page says 502, naming which."""


def _load_params() -> Params:
    """``params.yaml`` (profile from ``HOPCHAIN_PROFILE``)."""
    from pipelines.config import load_params

    return load_params()


def _connect_ledger(params: Params) -> Ledger:
    """The ledger through the ``hopchain_s3`` connection; short timeouts, no retries (a page must not hang)."""
    from hopchain_airflow.hooks.object_store import ObjectStoreHook
    from pipelines.store.ledger import Ledger

    return Ledger(ObjectStoreHook().get_store(params.store.bucket, timeout_s=5, retries=0), params.store)


class Backends:
    """What one app reads, made on first use (never at import or plugin load): the parameters (read
    once), a ledger per request (cheap: a store handle), and the one review reader with its caches."""

    def __init__(self, params: Params | None = None, ledger: Callable[[], Ledger] | None = None) -> None:
        self._params = params
        self._ledger = ledger
        self._review: Review | None = None
        self._lock = threading.RLock()

    def params(self) -> Params:
        with self._lock:
            if self._params is None:
                self._params = _load_params()
            return self._params

    def ledger(self) -> Ledger:
        return self._ledger() if self._ledger is not None else _connect_ledger(self.params())

    def review(self) -> Review:
        """The review reader of this app (its per-batch and image caches live with it)."""
        from pipelines.review import Review

        with self._lock:
            if self._review is None:
                self._review = Review(self.ledger())
            return self._review


def _label_studio_progress(batches: list[dict[str, Any]], required: int) -> dict[str, dict[str, Any]]:
    """Live progress per open batch: tasks by number of distinct annotators (0..required)."""
    from hopchain_airflow.hooks.label_studio import LabelStudioHook
    from pipelines.annotation.completion import batch_progress

    open_batches = [b for b in batches if b.get("status") == "open" and b.get("project_id")]
    if not open_batches:
        return {}
    out: dict[str, dict[str, Any]] = {}
    try:
        with LabelStudioHook().get_conn() as client:
            for b in open_batches:
                out[b["batch_id"]] = batch_progress(client, int(b["project_id"]), b["batch_id"], required,
                                                    b.get("first_task_id"))
    except Exception as exc:  # noqa: BLE001 - a down Label Studio must not break the page: each open batch says so
        return {b["batch_id"]: {"error": type(exc).__name__} for b in open_batches}
    return out


PER_PAGE = 50


def collect_status(
    ledger: Ledger, required: int, with_progress: bool = True, page: int = 0, per_page: int = PER_PAGE
) -> dict[str, Any]:
    """One page of what the page shows, as JSON (also served at ``/hopchain/api/status?page=N``): the
    newest ``per_page`` runs, batches, decisions and releases after skipping ``page * per_page`` of
    each (:meth:`~pipelines.store.ledger.Ledger.view`), so a request reads a bounded part of the ledger.

    Raises :class:`BackendDown` when the object store does not answer."""
    try:
        data = ledger.view(per_page=per_page, page=max(0, page)).model_dump(mode="json")
    except Exception as exc:
        raise BackendDown(f"object store unreachable ({type(exc).__name__})") from exc
    data["annotators_required"] = required
    if with_progress:
        progress = _label_studio_progress(data["batches"], required)
        for b in data["batches"]:
            if b["batch_id"] in progress:
                b["progress"] = progress[b["batch_id"]]
    return data


#: at most this many pages in a folder's list (a run of many shards has one GX site per shard), found
#: among at most this many keys (a request reads a bounded part of the store)
LISTED_PAGES, SCANNED_KEYS = 500, 20_000


def document_list(pages: Pages, request: Request, folder: str, keys: Iterable[str]) -> str:
    """The HTML pages stored under ``folder``, each a link relative to the folder's own URL (at most
    :data:`LISTED_PAGES`): how a reader reaches GX's validation pages now that GX's site index, which
    lists them only through JavaScript, runs no script."""
    found: list[tuple[str, str]] = []
    more = False
    for n, key in enumerate(keys):
        if not key.endswith(".html"):
            more = n >= SCANNED_KEYS
            if more:
                break
            continue
        if len(found) == LISTED_PAGES:
            more = True
            break
        name = key[len(folder):]
        found.append((quote(name), name))
    base = str(request.scope.get("root_path") or "").rstrip("/")
    return pages.env.get_template("documents.html").render(
        base=base, active="docs", title="Stored pages", folder=folder, pages=found, more=more)


def create_app(params: Params | None = None, ledger: Callable[[], Ledger] | None = None) -> FastAPI:
    """The HopChain app. ``params`` and ``ledger`` (a factory) default to ``params.yaml`` and the
    ``hopchain_s3`` connection, read on first use; the app owns its caches and its template environment."""
    app = FastAPI(title="HopChain status", description="Runs, batches, annotation progress, consensus, releases",
                  docs_url=None, redoc_url=None, openapi_url=None,
                  dependencies=[Depends(require_hopchain_read)])
    app.add_middleware(SecurityHeaders)
    backends = Backends(params, ledger)
    pages = Pages()
    status_pages: TTLCache[dict[str, Any]] = TTLCache(STATUS_PAGES, STATUS_TTL_S)

    def cached_status(page: int) -> dict[str, Any]:
        page = max(0, int(page))
        return status_pages.get_or(page, lambda: collect_status(
            backends.ledger(), backends.params().annotation.annotators_required, page=page))

    @app.get("/openapi.json", include_in_schema=False)
    def openapi_schema(user: HopChainReader) -> JSONResponse:
        """The API's schema, for a reader only (FastAPI's own unguarded route is switched off)."""
        return JSONResponse(app.openapi())

    @app.get("/api/status")
    def api_status(user: HopChainReader, page: int = 0) -> JSONResponse:
        try:
            return JSONResponse(cached_status(page))
        except BackendDown as down:
            return JSONResponse({"error": str(down)}, status_code=502)

    @app.get("/docs/{key:path}")
    def proxied_document(request: Request, key: str, user: HopChainReader) -> Response:
        """A stored document, sandboxed (:func:`stored_content`); a folder (``.../``) is a list of its pages."""
        ledger = backends.ledger()
        if ".." in key.split("/") or not key.startswith(ledger.document_prefixes):
            raise HTTPException(404, "not a Data Docs or release document")
        from minio.error import S3Error

        try:
            if key.endswith("/"):
                return HTMLResponse(document_list(pages, request, key, ledger.store.list(key)))
            data = ledger.store.get_bytes(key)
        except S3Error as err:
            if err.code in ("NoSuchKey", "NoSuchObject", "NotFound"):
                raise HTTPException(404, f"{key} not found") from None
            raise HTTPException(502, f"object store error ({err.code})") from None
        except Exception as exc:  # noqa: BLE001 - the page says 502, naming the error type
            raise HTTPException(502, f"object store unreachable ({type(exc).__name__})") from None
        media_type, headers = stored_content(key)
        return Response(data, media_type=media_type, headers=headers)

    from hopchain_airflow.ui.review_routes import add_review_routes

    add_review_routes(app, review=backends.review, pages=pages)

    @app.get("/", response_class=HTMLResponse)
    def page(user: HopChainReader, page: int = 0) -> HTMLResponse:
        try:
            return HTMLResponse(pages.status(cached_status(page)))
        except BackendDown as down:
            empty: dict[str, Any] = {"runs": [], "batches": [], "consensus": [], "releases": []}
            return HTMLResponse(pages.status(empty, str(down)), status_code=502)

    @app.get("/{unknown:path}", include_in_schema=False)
    def not_a_page(unknown: str, user: HopChainReader) -> Response:
        """Last route: any other path (``/redoc``, ``/docs``, a typo) is 401 without login like every page,
        and 404 only for a reader, so the plugin tells an outsider nothing about which paths exist."""
        raise HTTPException(404, "no such HopChain page")

    return app


def render_page(data: dict[str, Any], error: str = "") -> str:
    """The Status tab for ``data`` (what :func:`collect_status` returns); ``error`` is shown on top."""
    return Pages().status(data, error)
