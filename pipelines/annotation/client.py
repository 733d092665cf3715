"""A small, typed client for the Label Studio 1.23 REST API (httpx, token auth).

Authentication is the legacy API token (``Authorization: Token <token>``), which the local
stack enables (``LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN=true``). The client is cheap to build and
connects lazily. httpx rather than the SDK: the deferrable trigger must poll with
``httpx.AsyncClient`` and both share :mod:`pipelines.annotation.completion`, so the sync side
speaks the same requests.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx

from pipelines.annotation.completion import tasks_page_params

log = logging.getLogger(__name__)


class LabelStudioError(RuntimeError):
    """Label Studio refused a request (the message has method, path, status and body head)."""

    def __init__(self, message: str, status_code: int | None = None):
        super().__init__(message)
        self.status_code = status_code


@dataclass(frozen=True)
class LabelStudioCredentials:
    """Base URL (``http://127.0.0.1:8081``) and legacy token. ``repr`` never shows the token."""

    url: str
    token: str

    def __repr__(self) -> str:
        return f"LabelStudioCredentials(url={self.url!r}, token='***')"

    @classmethod
    def from_mapping(cls, data: dict[str, Any]) -> LabelStudioCredentials:
        """From ``{"url", "token"}`` (the stack's credentials file / the test fixture)."""
        return cls(str(data["url"]).rstrip("/"), str(data["token"]))


def auth_headers(token: str) -> dict[str, str]:
    return {"Authorization": f"Token {token}"}


class LabelStudioClient:
    """Synchronous Label Studio API client. Use as a context manager or call :meth:`close`."""

    def __init__(self, url: str, token: str, *, timeout_s: float = 60.0, retries: int = 3):
        self.url = url.rstrip("/")
        self._token = token
        self._timeout_s = timeout_s
        self._retries = retries
        self._http: httpx.Client | None = None

    @property
    def token(self) -> str:
        return self._token

    @classmethod
    def from_credentials(cls, creds: LabelStudioCredentials, **kw: Any) -> LabelStudioClient:
        return cls(creds.url, creds.token, **kw)

    def __repr__(self) -> str:
        return f"LabelStudioClient({self.url})"

    def __enter__(self) -> LabelStudioClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._http is not None:
            self._http.close()
            self._http = None

    @property
    def http(self) -> httpx.Client:
        if self._http is None:
            self._http = httpx.Client(
                base_url=self.url,
                headers=auth_headers(self._token),
                timeout=httpx.Timeout(self._timeout_s, connect=min(10.0, self._timeout_s)),
                transport=httpx.HTTPTransport(retries=self._retries),  # connection failures only
            )
        return self._http

    # -- plumbing -------------------------------------------------------------------------------
    def request(self, method: str, path: str, **kw: Any) -> httpx.Response:
        """One request; HTTP errors become :class:`LabelStudioError`. GETs retry 5xx briefly."""
        attempts = self._retries + 1 if method == "GET" else 1
        for attempt in range(attempts):
            resp = self.http.request(method, path, **kw)
            if resp.status_code < 500 or attempt == attempts - 1:
                break
            time.sleep(0.5 * (attempt + 1))
        if resp.status_code >= 400:
            raise LabelStudioError(
                f"{method} {path} -> HTTP {resp.status_code}: {resp.text[:500]}", resp.status_code
            )
        return resp

    def json(self, method: str, path: str, **kw: Any) -> Any:
        resp = self.request(method, path, **kw)
        return resp.json() if resp.content else None

    # -- users ----------------------------------------------------------------------------------
    def whoami(self) -> dict[str, Any]:
        return self.json("GET", "/api/current-user/whoami")

    def users(self) -> list[dict[str, Any]]:
        """Members of the caller's organisation."""
        data = self.json("GET", "/api/users/")
        return list(data["results"] if isinstance(data, dict) else data)

    def invite_token(self) -> str:
        """The organisation's invite token (what ``/user/signup/?token=...`` needs)."""
        return str(self.json("GET", "/api/invite")["token"])

    # -- projects -------------------------------------------------------------------------------
    def find_project(self, title: str) -> dict[str, Any] | None:
        """The project with exactly this title (lowest id if several), or None."""
        found: list[dict[str, Any]] = []
        page = 1
        while True:
            data = self.json("GET", "/api/projects", params={"title": title, "page": page, "page_size": 100})
            found += [p for p in data.get("results", []) if p.get("title") == title]
            if not data.get("next"):
                break
            page += 1
        return min(found, key=lambda p: int(p["id"])) if found else None

    def get_project(self, project_id: int) -> dict[str, Any]:
        return self.json("GET", f"/api/projects/{project_id}")

    def create_project(self, payload: dict[str, Any]) -> dict[str, Any]:
        return self.json("POST", "/api/projects", json=payload)

    def update_project(self, project_id: int, payload: dict[str, Any]) -> dict[str, Any]:
        return self.json("PATCH", f"/api/projects/{project_id}", json=payload)

    # -- tasks ----------------------------------------------------------------------------------
    def import_tasks(self, project_id: int, tasks: list[dict[str, Any]]) -> int:
        """Import ``tasks`` (``[{"data": {...}}, ...]``) in ONE request; returns the task count."""
        data = self.json("POST", f"/api/projects/{project_id}/import", json=tasks)
        return int(data.get("task_count", len(tasks)))

    def iter_tasks(
        self, project_id: int, batch: str | None = None, fields: str = "all", page_size: int = 500
    ) -> Iterator[dict[str, Any]]:
        """Every task of the project (optionally of one ``batch``), page by page.

        With ``fields="all"`` each task carries its annotations, cancelled ones included.
        """
        page, seen = 1, 0
        while True:
            data = self.json(
                "GET", "/api/tasks", params=tasks_page_params(project_id, page, page_size, batch, fields)
            )
            tasks = data.get("tasks", []) if isinstance(data, dict) else data
            yield from tasks
            seen += len(tasks)
            total = int(data.get("total", seen)) if isinstance(data, dict) else seen
            if not tasks or seen >= total:
                return
            page += 1

    def get_task(self, task_id: int) -> dict[str, Any]:
        return self.json("GET", f"/api/tasks/{task_id}")

    def next_task(self, project_id: int) -> dict[str, Any] | None:
        """The next task the labeling stream gives the caller, or None when it has none left."""
        resp = self.http.get(f"/api/projects/{project_id}/next")
        if resp.status_code == 404:
            return None
        if resp.status_code >= 400:
            raise LabelStudioError(
                f"GET next -> HTTP {resp.status_code}: {resp.text[:300]}", resp.status_code
            )
        return resp.json()

    # -- annotations ----------------------------------------------------------------------------
    def create_annotation(
        self,
        task_id: int,
        result: list[dict[str, Any]],
        lead_time_s: float | None = None,
        was_cancelled: bool = False,
    ) -> dict[str, Any]:
        """Submit an annotation as the token's user (Label Studio validates almost nothing)."""
        body: dict[str, Any] = {"result": result, "was_cancelled": was_cancelled}
        if lead_time_s is not None:
            body["lead_time"] = lead_time_s
        return self.json("POST", f"/api/tasks/{task_id}/annotations/", json=body)


def base_url_from_parts(host: str, port: int | None = None, schema: str | None = None) -> str:
    """Connection parts → base URL: ``("http://127.0.0.1", 8081)`` → ``http://127.0.0.1:8081``.

    ``host`` may carry the scheme (``https://ls.example.org``); otherwise ``schema`` or ``http``.
    A path on ``host`` (Label Studio behind a prefix) is kept.
    """
    host = (host or "").strip().rstrip("/")
    if not host:
        raise ValueError("Label Studio connection has no host")
    if "://" not in host:
        host = f"{schema or 'http'}://{host}"
    scheme, rest = host.split("://", 1)
    netloc, slash, path = rest.partition("/")
    if port and ":" not in netloc:
        netloc = f"{netloc}:{int(port)}"
    return f"{scheme}://{netloc}{slash}{path}".rstrip("/")
