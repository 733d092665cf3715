"""A small client for Airflow 3's REST API (``/api/v2``), used by ``hopchain-demo``, tests and benches.

Authentication: ``POST /auth/token`` with the user's name and password gives a JWT, sent as
``Authorization: Bearer``. The token is refreshed on a 401. Nothing here imports Airflow.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx


class AirflowAPIError(RuntimeError):
    pass


class AirflowAPI:
    def __init__(self, url: str, username: str, password: str, timeout_s: float = 30.0):
        self.url = url.rstrip("/")
        self._username = username
        self._password = password
        self._http = httpx.Client(base_url=self.url, timeout=timeout_s)
        self._token: str | None = None

    def __repr__(self) -> str:
        return f"AirflowAPI({self.url!r}, user={self._username!r})"

    def close(self) -> None:
        self._http.close()

    def token(self) -> str:
        if self._token is None:
            r = self._http.post("/auth/token", json={"username": self._username, "password": self._password})
            if r.status_code >= 400:
                raise AirflowAPIError(f"login to Airflow at {self.url} failed: HTTP {r.status_code}")
            self._token = str(r.json()["access_token"])
        return self._token

    # idempotent calls are retried on a 5xx: the local stack's SQLite metadata database answers
    # "database is locked" (HTTP 500 after its 5 s busy timeout) while the scheduler writes a lot
    RETRIED: tuple[str, ...] = ("GET", "PATCH", "PUT", "DELETE")

    def request(self, method: str, path: str, retries: int = 3, **kw: Any) -> Any:
        refreshed = False
        attempt = 0
        while True:
            headers = {"Authorization": f"Bearer {self.token()}"}
            r = self._http.request(method, f"/api/v2{path}", headers=headers, **kw)
            if r.status_code == 401 and not refreshed:
                self._token, refreshed = None, True
                continue
            if r.status_code >= 500 and method.upper() in self.RETRIED and attempt < retries:
                attempt += 1
                time.sleep(min(8.0, 0.5 * 2**attempt))
                continue
            if r.status_code == 401:
                raise AirflowAPIError(f"{method} {path}: unauthorised")
            if r.status_code >= 400:
                raise AirflowAPIError(f"{method} {path}: HTTP {r.status_code}: {r.text[:500]}")
            return r.json() if r.content else None

    # -- DAGs and runs -------------------------------------------------------------------------
    def dags(self) -> list[dict[str, Any]]:
        return list(self.request("GET", "/dags", params={"limit": 100})["dags"])

    def import_errors(self) -> list[dict[str, Any]]:
        return list(self.request("GET", "/importErrors")["import_errors"])

    def wait_for_dags(self, dag_ids: list[str], timeout_s: float = 180,
                      on_wait: Callable[[], None] | None = None) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            have = {d["dag_id"] for d in self.dags()}
            if set(dag_ids) <= have:
                return
            errors = self.import_errors()
            if errors:
                raise AirflowAPIError(f"DAG import errors: {errors[0].get('filename')}: "
                                      f"{str(errors[0].get('stack_trace'))[-800:]}")
            if time.monotonic() > deadline:
                raise AirflowAPIError(f"DAGs {sorted(set(dag_ids) - have)} not parsed within {timeout_s:.0f}s")
            if on_wait:
                on_wait()
            time.sleep(2)

    def unpause(self, dag_id: str) -> None:
        self.request("PATCH", f"/dags/{dag_id}", json={"is_paused": False})

    def trigger(self, dag_id: str, conf: dict[str, Any] | None = None, run_id: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"conf": conf or {}, "logical_date": None}
        if run_id:
            body["dag_run_id"] = run_id
        return dict(self.request("POST", f"/dags/{dag_id}/dagRuns", json=body))

    def dag_run(self, dag_id: str, run_id: str) -> dict[str, Any]:
        return dict(self.request("GET", f"/dags/{dag_id}/dagRuns/{run_id}"))

    def dag_runs(self, dag_id: str, limit: int = 20) -> list[dict[str, Any]]:
        data = self.request("GET", f"/dags/{dag_id}/dagRuns", params={"limit": limit, "order_by": "-start_date"})
        return list(data["dag_runs"])

    def task_instances(self, dag_id: str, run_id: str, page: int = 100) -> list[dict[str, Any]]:
        """Every task instance of a run, page by page: the API server caps a page at its
        ``maximum_page_limit`` (100 by default) whatever ``limit`` asks, so one request for a night of
        40 mapped shards (205 task instances) silently returned the first 100 (bench/scale.py's first
        20,000-image run counted half its shards)."""
        path = f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances"
        out: list[dict[str, Any]] = []
        while True:
            data = self.request("GET", path, params={"limit": page, "offset": len(out)})
            got = list(data["task_instances"])
            out += got
            if not got or len(out) >= int(data.get("total_entries", len(out))):
                return out

    def wait_for_run(self, dag_id: str, run_id: str, timeout_s: float,
                     on_poll: Callable[[dict[str, Any]], None] | None = None,
                     interval_s: float = 3.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while True:
            run = self.dag_run(dag_id, run_id)
            if on_poll:
                on_poll(run)
            if run["state"] in ("success", "failed"):
                return run
            if time.monotonic() > deadline:
                raise AirflowAPIError(f"{dag_id} run {run_id} still {run['state']} after {timeout_s:.0f}s")
            time.sleep(interval_s)

    def wait_for_new_run(self, dag_id: str, after: set[str], timeout_s: float,
                         on_wait: Callable[[], None] | None = None) -> dict[str, Any]:
        """The first run of ``dag_id`` whose id is not in ``after`` (e.g. an asset-triggered run)."""
        deadline = time.monotonic() + timeout_s
        while True:
            for run in self.dag_runs(dag_id):
                if run["dag_run_id"] not in after:
                    return run
            if time.monotonic() > deadline:
                raise AirflowAPIError(f"no new {dag_id} run within {timeout_s:.0f}s")
            if on_wait:
                on_wait()
            time.sleep(2)
