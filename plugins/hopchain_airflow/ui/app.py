"""The HopChain page in the Airflow UI: runs → batches → annotation progress → consensus → releases,
and the review workspace (questions with their hop traces, annotators, trends; :mod:`pipelines.review`).

Mounted by the plugin at ``/hopchain``; every route depends on
:func:`~hopchain_airflow.ui.security.require_hopchain_read`: no token is 401, a user without read
access to the HopChain DAGs 403 (the UI's iframe carries the user's ``_token`` cookie). Data
comes from the ledger the DAGs write (:mod:`pipelines.ledger`, through the ``hopchain_s3``
connection's hook) and, for live progress, from Label Studio (the ``hopchain_label_studio``
connection's hook). Data Docs and dataset cards are proxied from the object store so they need
no public bucket. When the object store does not answer, the page and the API say 502.
"""

from __future__ import annotations

import functools
import html
import json
import mimetypes
import time
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, HTTPException
from fastapi.responses import HTMLResponse, JSONResponse, Response

from hopchain_airflow.ui.security import HopChainReader

if TYPE_CHECKING:
    from pipelines.config import Params
    from pipelines.ledger import Ledger
    from pipelines.review import Review

_CACHE: dict[str, tuple[float, Any]] = {}


class BackendDown(RuntimeError):
    """The object store or Label Studio did not answer: the page says 502, naming which."""


@functools.cache
def _params() -> Params:
    """``params.yaml`` (profile from ``HOPCHAIN_PROFILE``), read once per api-server process."""
    from pipelines.config import load_params

    return load_params()


def _ledger() -> Ledger:
    """The ledger through the ``hopchain_s3`` connection; short timeouts, no retries (a page must not hang)."""
    from hopchain_airflow.hooks.object_store import ObjectStoreHook
    from pipelines.ledger import Ledger

    params = _params()
    return Ledger(ObjectStoreHook().get_store(params.store.bucket, timeout_s=5, retries=0), params.store)


def _review() -> Review:
    """The review reader of this api-server process (its per-batch and image caches live with it)."""
    from pipelines.review import Review

    hit = _CACHE.get("review")
    if hit is None:
        hit = _CACHE["review"] = (time.monotonic(), Review(_ledger()))
    return hit[1]


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
                out[b["batch_id"]] = batch_progress(client, int(b["project_id"]), b["batch_id"], required)
    except Exception as exc:  # noqa: BLE001 - a down Label Studio must not break the page: each open batch says so
        return {b["batch_id"]: {"error": type(exc).__name__} for b in open_batches}
    return out


PER_PAGE = 50


def collect_status(
    ledger: Ledger, required: int, with_progress: bool = True, page: int = 0, per_page: int = PER_PAGE
) -> dict[str, Any]:
    """One page of what the page shows, as JSON (also served at ``/hopchain/api/status?page=N``): the
    newest ``per_page`` runs, batches, decisions and releases after skipping ``page * per_page`` of
    each (:meth:`~pipelines.ledger.Ledger.view`), so a request reads a bounded part of the ledger.

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


def create_app() -> FastAPI:
    app = FastAPI(title="HopChain status", description="Runs, batches, annotation progress, consensus, releases")

    def cached_status(page: int) -> dict[str, Any]:
        page = max(0, int(page))
        hit = _CACHE.get(f"status:{page}")
        if hit and time.monotonic() - hit[0] < 5:
            return hit[1]
        data = collect_status(_ledger(), _params().annotation.annotators_required, page=page)
        if len(_CACHE) > 32:  # a crawler walking the pages must not grow the cache without bound
            _CACHE.clear()
        _CACHE[f"status:{page}"] = (time.monotonic(), data)
        return data

    @app.get("/api/status")
    def api_status(user: HopChainReader, page: int = 0) -> JSONResponse:
        try:
            return JSONResponse(cached_status(page))
        except BackendDown as down:
            return JSONResponse({"error": str(down)}, status_code=502)

    @app.get("/docs/{key:path}")
    def proxied_document(key: str, user: HopChainReader) -> Response:
        ledger = _ledger()
        if ".." in key.split("/") or not key.startswith(ledger.document_prefixes):
            raise HTTPException(404, "not a Data Docs or release document")
        from minio.error import S3Error

        try:
            data = ledger.store.get_bytes(key)
        except S3Error as err:
            if err.code in ("NoSuchKey", "NoSuchObject", "NotFound"):
                raise HTTPException(404, f"{key} not found") from None
            raise HTTPException(502, f"object store error ({err.code})") from None
        except Exception as exc:  # noqa: BLE001 - the page says 502, naming the error type
            raise HTTPException(502, f"object store unreachable ({type(exc).__name__})") from None
        mime = mimetypes.guess_type(key)[0] or "application/octet-stream"
        return Response(data, media_type=mime)

    from hopchain_airflow.ui.review_routes import add_review_routes

    add_review_routes(app, review=lambda: _review(), cache=_CACHE)

    @app.get("/", response_class=HTMLResponse)
    def page(user: HopChainReader, page: int = 0) -> HTMLResponse:
        try:
            return HTMLResponse(render_page(cached_status(page)))
        except BackendDown as down:
            empty: dict[str, Any] = {"runs": [], "batches": [], "consensus": [], "releases": []}
            return HTMLResponse(render_page(empty, str(down)), status_code=502)

    return app


def _esc(v: Any) -> str:
    return html.escape(str(v if v is not None else ""))


def _table(headers: list[str], rows: list[list[str]]) -> str:
    if not rows:
        return "<p class='empty'>nothing yet</p>"
    head = "".join(f"<th>{_esc(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _link(key: str | None, text: str) -> str:
    return f"<a href='docs/{_esc(key)}' target='_blank'>{_esc(text)}</a>" if key else ""


def render_page(data: dict[str, Any], error: str = "") -> str:
    runs = [
        [_esc(r.get("run_id")), _esc(r.get("images")), _esc(r.get("quarantined")), _esc(r.get("instances")),
         _esc(r.get("questions")), _esc(r.get("rejects")), _link(r.get("datadocs"), "Data Docs")]
        for r in data.get("runs", [])
    ]
    batches = []
    for b in data.get("batches", []):
        prog = b.get("progress") or {}
        if "error" in prog:
            prog_txt = f"Label Studio unreachable ({_esc(prog['error'])})"
        else:
            prog_txt = " ".join(f"{k}&#8239;ann:&nbsp;{v}" for k, v in sorted(prog.items())) or "-"
        status = _esc(b.get("status"))
        if b.get("held"):  # its project changed outside the platform: no decision, no release
            status = f"<b class='error'>held</b>: {_esc(b['held'])}"
        batches.append([_esc(b.get("batch_id")), _esc(b.get("run_id")), _esc(b.get("questions")),
                        status, prog_txt, _esc(b.get("pushed_at"))])
    def per_accepted(c: dict[str, Any]) -> str:
        value = c.get("annotations_per_accepted")
        return "-" if value is None else f"{float(value):.2f}"

    def not_counted(c: dict[str, Any]) -> str:
        found = c.get("integrity") or {}
        if not found:
            return "0"
        codes = ", ".join(f"{_esc(code.removeprefix('integrity.'))}: {_esc(n)}" for code, n in sorted(found.items()))
        return f"<b class='error'>{_esc(sum(found.values()))}</b> ({codes})"

    consensus = [
        [_esc(c.get("batch_id")), _esc(c.get("accepted")), _esc(c.get("rejected")), _esc(c.get("pending")),
         _esc(c.get("agreement_rate")), _esc(per_accepted(c)), _esc(c.get("annotations_saved", 0)),
         not_counted(c), _esc(c.get("source", "label-studio")), _esc(c.get("decided_at"))]
        for c in data.get("consensus", [])
    ]
    releases = [
        [f"<b>{_esc(r.get('tag'))}</b>", _esc(r.get("questions")), _esc(r.get("images")), _esc(r.get("registry")),
         _link(r.get("card"), "dataset card"), _esc(r.get("released_at"))]
        for r in data.get("releases", [])
    ]
    err = f"<p class='error'>{_esc(error)}</p>" if error else ""
    page_no = int(data.get("page") or 0)
    nav = [f"<a href='?page={page_no - 1}'>newer</a>"] if page_no > 0 else []
    if data.get("more"):
        nav.append(f"<a href='?page={page_no + 1}'>older</a>")
    nav_html = f"<p class='nav'>page {page_no + 1} &middot; {' &middot; '.join(nav)}</p>" if nav else ""
    progress_head = f"progress (tasks by distinct annotators, of {_esc(data.get('annotators_required', 4))})"
    return f"""<!doctype html><html><head><meta charset='utf-8'><title>HopChain</title>
<style>
body{{font-family:system-ui,sans-serif;margin:1.2rem;color:#1b1f24}} h1{{font-size:1.3rem}}
h2{{font-size:1.05rem;margin-top:1.4rem;border-bottom:1px solid #d0d7de}}
table{{border-collapse:collapse;font-size:.9rem}}
td,th{{padding:.25rem .6rem;border-bottom:1px solid #eee;text-align:left}}
th{{background:#f6f8fa}} .empty{{color:#777}} .error{{color:#b00}}
</style></head><body>
<h1>HopChain — multi-hop question pipeline</h1>
<nav class='tabs'><b>Status</b> &middot; <a href='questions'>Questions</a> &middot;
<a href='annotators'>Annotators</a> &middot; <a href='trends'>Trends</a></nav>{err}{nav_html}
<h2>Runs</h2>{_table(["run", "images", "quarantined", "instances", "questions", "rejects", "validation"], runs)}
<h2>Batches in Label Studio</h2>{_table(["batch", "run", "questions", "status", progress_head, "pushed"], batches)}
<h2>Consensus</h2>{_table(["batch", "accepted", "rejected", "pending", "agreement", "annotations / accepted",
                           "saved by early stop", "answers not counted", "read from", "decided"], consensus)}
<h2>Releases</h2>{_table(["tag", "questions", "images", "registry", "card", "released"], releases)}
{nav_html}
<script>const d={json.dumps({"n_releases": len(releases)})};</script>
</body></html>"""
