"""The HopChain page in the Airflow UI: runs → batches → annotation progress → consensus → releases.

Mounted by the plugin at ``/hopchain``; every route depends on Airflow's ``GetUserDep``, so an
unauthenticated request gets 401 (the UI's iframe carries the user's ``_token`` cookie). Data
comes from the platform's object store (the ledger the DAGs write: ``batches/``, ``consensus/``,
``releases/``, ``runs/<run_id>/summary.json``) and, for live progress, from Label Studio.
Data Docs and dataset cards are proxied from the object store so they need no public bucket.
"""

from __future__ import annotations

import html
import json
import mimetypes
import time
from typing import Any

from fastapi import FastAPI, HTTPException
from fastapi.responses import HTMLResponse, JSONResponse, Response

try:  # available inside the api-server; the import is kept lazy-safe for unit tests
    from airflow.api_fastapi.core_api.security import GetUserDep
except Exception:  # pragma: no cover - only outside an Airflow installation
    GetUserDep = Any  # type: ignore[misc,assignment]

ALLOWED_DOC_PREFIXES = ("runs/", "releases/")
_CACHE: dict[str, tuple[float, Any]] = {}


def _connection(conn_id: str):
    from airflow.models.connection import Connection

    return Connection.get_connection_from_secrets(conn_id)


def _store():
    from pipelines.config import load_params
    from pipelines.store import ObjectStore, S3Credentials

    conn = _connection("hopchain_s3")
    extra = conn.extra_dejson or {}
    scheme = "https" if extra.get("secure") else "http"
    host = (conn.host or "127.0.0.1").split("://", 1)[-1]
    creds = S3Credentials(f"{scheme}://{host}:{conn.port}", conn.login or "", conn.password or "",
                          extra.get("region", "us-east-1"))
    return ObjectStore(creds, load_params().store.bucket, timeout_s=5, retries=0)


def _label_studio_progress(batches: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    """Live progress per batch: tasks by number of distinct annotators (0..4)."""
    from pipelines.annotation.client import LabelStudioClient
    from pipelines.flow import batch_progress

    if not any(b.get("status") == "open" and b.get("project_id") for b in batches):
        return {}
    conn = _connection("hopchain_label_studio")
    base = f"{conn.host}:{conn.port}" if conn.port else str(conn.host)
    out: dict[str, dict[str, int]] = {}
    with LabelStudioClient(base, conn.password or "", timeout_s=5, retries=0) as client:
        for b in batches:
            if b.get("status") == "open" and b.get("project_id"):
                try:
                    out[b["batch_id"]] = batch_progress(client, int(b["project_id"]), b["batch_id"])
                except Exception as exc:  # a down Label Studio must not break the page: it says so instead
                    out[b["batch_id"]] = {"error": type(exc).__name__}  # type: ignore[dict-item]
    return out


def collect_status(store: Any, with_progress: bool = True) -> dict[str, Any]:
    """Everything the page shows, as JSON (also served at ``/hopchain/api/status``)."""
    from pipelines.flow import read_ledger

    ledger = read_ledger(store)
    if with_progress:
        progress = _label_studio_progress(ledger["batches"])
        for b in ledger["batches"]:
            if b["batch_id"] in progress:
                b["progress"] = progress[b["batch_id"]]
    return ledger


def create_app() -> FastAPI:
    app = FastAPI(title="HopChain status", description="Runs, batches, annotation progress, consensus, releases")

    def cached_status() -> dict[str, Any]:
        hit = _CACHE.get("status")
        if hit and time.monotonic() - hit[0] < 5:
            return hit[1]
        data = collect_status(_store())
        _CACHE["status"] = (time.monotonic(), data)
        return data

    @app.get("/api/status")
    def api_status(user: GetUserDep) -> JSONResponse:  # type: ignore[valid-type]
        return JSONResponse(cached_status())

    @app.get("/docs/{key:path}")
    def proxied_document(key: str, user: GetUserDep) -> Response:  # type: ignore[valid-type]
        if ".." in key.split("/") or not key.startswith(ALLOWED_DOC_PREFIXES):
            raise HTTPException(404, "not a Data Docs or release document")
        try:
            data = _store().get_bytes(key)
        except Exception:
            raise HTTPException(404, f"{key} not found") from None
        mime = mimetypes.guess_type(key)[0] or "application/octet-stream"
        return Response(data, media_type=mime)

    @app.get("/", response_class=HTMLResponse)
    def page(user: GetUserDep) -> HTMLResponse:  # type: ignore[valid-type]
        try:
            data = cached_status()
            error = ""
        except Exception as exc:
            data, error = {"runs": [], "batches": [], "consensus": [], "releases": []}, f"{type(exc).__name__}: {exc}"
        return HTMLResponse(render_page(data, error))

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
        batches.append([_esc(b.get("batch_id")), _esc(b.get("run_id")), _esc(b.get("questions")),
                        _esc(b.get("status")), prog_txt, _esc(b.get("pushed_at"))])
    consensus = [
        [_esc(c.get("batch_id")), _esc(c.get("accepted")), _esc(c.get("rejected")), _esc(c.get("pending")),
         _esc(c.get("agreement_rate")), _esc(c.get("decided_at"))]
        for c in data.get("consensus", [])
    ]
    releases = [
        [f"<b>{_esc(r.get('tag'))}</b>", _esc(r.get("questions")), _esc(r.get("images")), _esc(r.get("registry")),
         _link(r.get("card"), "dataset card"), _esc(r.get("released_at"))]
        for r in data.get("releases", [])
    ]
    err = f"<p class='error'>{_esc(error)}</p>" if error else ""
    return f"""<!doctype html><html><head><meta charset='utf-8'><title>HopChain</title>
<style>
body{{font-family:system-ui,sans-serif;margin:1.2rem;color:#1b1f24}} h1{{font-size:1.3rem}}
h2{{font-size:1.05rem;margin-top:1.4rem;border-bottom:1px solid #d0d7de}}
table{{border-collapse:collapse;font-size:.9rem}} td,th{{padding:.25rem .6rem;border-bottom:1px solid #eee;text-align:left}}
th{{background:#f6f8fa}} .empty{{color:#777}} .error{{color:#b00}}
</style></head><body>
<h1>HopChain — multi-hop question pipeline</h1>{err}
<h2>Runs</h2>{_table(["run", "images", "quarantined", "instances", "questions", "rejects", "validation"], runs)}
<h2>Batches in Label Studio</h2>{_table(["batch", "run", "questions", "status", "progress (distinct annotators: tasks)", "pushed"], batches)}
<h2>Consensus</h2>{_table(["batch", "accepted", "rejected", "pending", "agreement", "decided"], consensus)}
<h2>Releases</h2>{_table(["tag", "questions", "images", "registry", "card", "released"], releases)}
<script>const d={json.dumps({"n_releases": len(releases)})};</script>
</body></html>"""
