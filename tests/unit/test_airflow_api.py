"""The REST client the demo, tests and benches drive Airflow with: retries and token refresh."""

from __future__ import annotations

import httpx
import pytest

from pipelines.ops.airflow_api import AirflowAPI, AirflowAPIError

pytestmark = pytest.mark.unit


def api_answering(*answers: int) -> tuple[AirflowAPI, list[str]]:
    """An AirflowAPI whose server answers ``answers`` in turn (then 200) to /api/v2 calls."""
    seen: list[str] = []
    queue = list(answers)

    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/auth/token":
            return httpx.Response(201, json={"access_token": f"t{len(seen)}"})
        seen.append(f"{request.method} {request.headers['Authorization']}")
        status = queue.pop(0) if queue else 200
        return httpx.Response(status, json={"detail": "Database error"} if status >= 400 else {"ok": True})

    api = AirflowAPI("http://airflow.test", "admin", "pw")
    api._http = httpx.Client(base_url=api.url, transport=httpx.MockTransport(handle))
    return api, seen


def test_an_idempotent_call_is_retried_through_a_locked_metadata_database(monkeypatch):
    sleeps: list[float] = []
    monkeypatch.setattr("pipelines.ops.airflow_api.time.sleep", sleeps.append)
    api, seen = api_answering(500, 500)
    api.unpause("hopchain_annotations")  # HTTP 500 ("database is locked") twice, then fine
    assert len(seen) == 3 and sleeps == [1.0, 2.0]


def test_a_post_is_not_retried_and_errors_name_the_call(monkeypatch):
    monkeypatch.setattr("pipelines.ops.airflow_api.time.sleep", lambda s: None)
    api, seen = api_answering(500)
    with pytest.raises(AirflowAPIError, match="POST /dags/d/dagRuns: HTTP 500"):
        api.request("POST", "/dags/d/dagRuns", json={})
    assert len(seen) == 1  # triggering twice could start two runs
    api, seen = api_answering(500, 500, 500, 500)
    with pytest.raises(AirflowAPIError, match="HTTP 500"):
        api.request("GET", "/dags")
    assert len(seen) == 4  # three retries, then the error


def test_an_expired_token_is_refreshed_once():
    api, seen = api_answering(401)
    assert api.request("GET", "/dags") == {"ok": True}
    assert seen == ["GET Bearer t0", "GET Bearer t1"]
    api, seen = api_answering(401, 401)
    with pytest.raises(AirflowAPIError, match="unauthorised"):
        api.request("GET", "/dags")


def test_task_instances_reads_every_page_when_the_server_caps_a_page_at_100():
    """Airflow's API server caps ``limit`` at ``maximum_page_limit`` (100): a night of 40 mapped shards has
    205 task instances, and one request returned the first 100 (the first 20,000-image scale run)."""
    tis = [{"task_id": "shard.detect", "map_index": i} for i in range(205)]
    asked: list[tuple[int, int]] = []

    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/auth/token":
            return httpx.Response(201, json={"access_token": "t"})
        limit = min(int(request.url.params["limit"]), 100)
        offset = int(request.url.params.get("offset", 0))
        asked.append((offset, limit))
        return httpx.Response(200, json={"task_instances": tis[offset:offset + limit], "total_entries": len(tis)})

    api = AirflowAPI("http://airflow.test", "admin", "pw")
    api._http = httpx.Client(base_url=api.url, transport=httpx.MockTransport(handle))
    assert api.task_instances("hopchain_nightly", "r1") == tis
    assert asked == [(0, 100), (100, 100), (200, 100)]
