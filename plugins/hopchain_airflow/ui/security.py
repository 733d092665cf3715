"""Who may see the HopChain pages, and how what they serve may behave in the browser.

**Who.** An authenticated Airflow user with READ access to every HopChain DAG (``hopchain_nightly``,
``hopchain_annotations``, ``hopchain_release``, ``hopchain_labeling``), asked of the configured auth
manager in one batch call. No token: 401 (Airflow's ``GetUserDep``); a token whose user lacks DAG read:
403. Multi-team mode is not considered (the DAGs carry no team here). The app makes this a dependency of
*every* route (:func:`~hopchain_airflow.ui.app.create_app`), so a route added later is covered without
asking; FastAPI's own API docs (``/docs``, ``/docs/oauth2-redirect``, ``/redoc``) are switched off and
the OpenAPI schema is an ordinary, guarded route.

**How.** The plugin is served from Airflow's own origin, where the UI keeps the user's JWT in the
``_token`` cookie that page scripts can read. So:

* stored documents (GX Data Docs, dataset cards and their plots: bytes someone else wrote, and GX
  renders failing values unescaped) are served with :data:`STORED_CONTENT_POLICY` — a CSP ``sandbox``
  *without* ``allow-scripts`` (no script, inline or loaded, no event handler, no ``javascript:`` URL, no
  meta refresh runs), loading nothing but images, styles and fonts of this origin; ``allow-same-origin``
  is kept so those sub-resources carry the session cookie (a release card's plots are guarded routes),
  which is harmless without scripts. Only the types in :data:`INLINE_TYPES` are shown in the browser;
  everything else — SVG included, which is a script-capable document — is a download
  (``application/octet-stream``, ``Content-Disposition: attachment``);
* the platform's own pages (Jinja2 templates, no scripts) get :data:`PAGE_POLICY`: no script at all,
  inline styles, images and forms of this origin;
* every response carries ``X-Content-Type-Options: nosniff`` (:class:`SecurityHeaders`).
"""

from __future__ import annotations

import mimetypes
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import PurePosixPath
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import Depends, HTTPException

try:  # available inside the api-server; kept importable for unit tests outside Airflow
    from airflow.api_fastapi.core_api.security import GetUserDep
except ImportError:  # pragma: no cover - only outside an Airflow installation
    GetUserDep = Any  # type: ignore[misc,assignment]

HOPCHAIN_DAGS = ("hopchain_nightly", "hopchain_annotations", "hopchain_release", "hopchain_labeling")

#: CSP of stored documents: sandboxed without scripts; images, styles and fonts from this origin only
STORED_CONTENT_POLICY = ("sandbox allow-same-origin; default-src 'none'; img-src 'self' data:; "
                         "style-src 'self' 'unsafe-inline'; font-src 'self' data:; form-action 'none'; "
                         "base-uri 'none'; frame-ancestors 'self'")
#: CSP of the platform's own pages (templates with inline styles, no scripts; embedded by Airflow's UI)
PAGE_POLICY = ("default-src 'none'; img-src 'self' data:; style-src 'unsafe-inline'; form-action 'self'; "
               "base-uri 'none'; frame-ancestors 'self'")
#: stored types the browser may display (HTML only ever under :data:`STORED_CONTENT_POLICY`)
INLINE_TYPES = frozenset({
    "text/html", "text/css", "text/plain", "application/json",
    "image/png", "image/jpeg", "image/gif", "image/webp", "image/x-icon", "image/vnd.microsoft.icon",
    "font/otf", "font/ttf", "font/woff", "font/woff2",
})
#: stored types shown as plain text (a Markdown dataset card reads as text, never as markup)
AS_TEXT = frozenset({"text/markdown", "text/x-markdown"})
DOWNLOAD_TYPE = "application/octet-stream"


def require_hopchain_read(user: GetUserDep) -> Any:
    """The user, when the auth manager grants GET on every HopChain DAG; 403 otherwise."""
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.models.resource_details import DagDetails

    requests: list[Any] = [{"method": "GET", "details": DagDetails(id=dag_id)} for dag_id in HOPCHAIN_DAGS]
    if not get_auth_manager().batch_is_authorized_dag(requests, user=user):
        raise HTTPException(403, "HopChain pages need read access to the HopChain DAGs")
    return user


HopChainReader = Annotated[Any, Depends(require_hopchain_read)]


def stored_content(key: str) -> tuple[str, dict[str, str]]:
    """The media type and headers a stored document is served with, from its key's extension.

    A type outside :data:`INLINE_TYPES` (SVG, XML, XHTML, scripts, PDF, no extension, ...) is served as
    :data:`DOWNLOAD_TYPE` with ``Content-Disposition: attachment``: the browser saves it, never renders
    it from this origin, and ``nosniff`` keeps it from being taken for a script or a style."""
    guessed = (mimetypes.guess_type(key)[0] or DOWNLOAD_TYPE).lower()
    headers = {"Content-Security-Policy": STORED_CONTENT_POLICY, "X-Content-Type-Options": "nosniff"}
    if guessed in AS_TEXT:
        return "text/plain", headers
    if guessed in INLINE_TYPES:
        return guessed, headers
    name = quote(PurePosixPath(key).name or "download", safe="")
    headers["Content-Disposition"] = f"attachment; filename*=UTF-8''{name}"
    return DOWNLOAD_TYPE, headers


Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class SecurityHeaders:
    """ASGI middleware: every response gets ``X-Content-Type-Options: nosniff`` and, unless the route set
    its own, a CSP — :data:`PAGE_POLICY` for the app's HTML pages, :data:`STORED_CONTENT_POLICY` for
    everything else (JSON, images, errors: none of it needs to run anything)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"x-content-type-options"]
                names = {k.lower() for k, _ in headers}
                headers.append((b"x-content-type-options", b"nosniff"))
                if b"content-security-policy" not in names:
                    ctype = next((v for k, v in headers if k.lower() == b"content-type"), b"")
                    policy = PAGE_POLICY if ctype.startswith(b"text/html") else STORED_CONTENT_POLICY
                    headers.append((b"content-security-policy", policy.encode()))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, with_headers)
