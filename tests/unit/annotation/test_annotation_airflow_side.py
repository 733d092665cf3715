"""Airflow side without a database: the hook reads an AIRFLOW_CONN_ variable, the trigger
serialises to a classpath + plain JSON kwargs and rebuilds identically."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

PLUGINS = str(Path(__file__).resolve().parents[3] / "plugins")
if PLUGINS not in sys.path:
    sys.path.insert(0, PLUGINS)

pytestmark = pytest.mark.unit


def test_hook_builds_client_from_connection(monkeypatch):
    from hopchain_airflow.hooks.label_studio import LabelStudioHook

    monkeypatch.setenv(
        "AIRFLOW_CONN_HOPCHAIN_LABEL_STUDIO",
        json.dumps(
            {
                "conn_type": "label_studio",
                "host": "http://127.0.0.1",
                "port": 8081,
                "password": "secret-token",
                "extra": {"timeout_s": 7},
            }
        ),
    )
    hook = LabelStudioHook()
    assert hook.default_conn_name == "hopchain_label_studio" and hook.conn_type == "label_studio"
    client = hook.get_conn()
    assert client.url == "http://127.0.0.1:8081"
    assert client.http.headers["Authorization"] == "Token secret-token"
    assert client.http.timeout.read == 7
    assert hook.get_client().url == client.url
    assert "secret-token" not in repr(hook.credentials())
    behaviour = LabelStudioHook.get_ui_field_behaviour()
    assert "login" in behaviour["hidden_fields"] and behaviour["relabeling"]["password"].startswith(
        "API token"
    )
    assert isinstance(LabelStudioHook.get_connection_form_widgets(), dict)


def test_base_url_from_parts():
    from pipelines.annotation.client import base_url_from_parts

    assert base_url_from_parts("http://127.0.0.1", 8081) == "http://127.0.0.1:8081"
    assert base_url_from_parts("ls.example.org", None, "https") == "https://ls.example.org"
    assert base_url_from_parts("https://h:9/prefix/", 443) == "https://h:9/prefix"
    with pytest.raises(ValueError):
        base_url_from_parts("", 1)


def test_trigger_serialize_round_trip():
    import importlib

    from hopchain_airflow.triggers.annotation import AnnotationCompleteTrigger

    deadline = (datetime.now(UTC) + timedelta(hours=2)).isoformat()
    trig = AnnotationCompleteTrigger(
        project_id=3, batch="run-1", deadline=deadline, poll_interval_s=5, conn_id="hopchain_label_studio"
    )
    classpath, kwargs = trig.serialize()
    assert json.loads(json.dumps(kwargs)) == kwargs  # plain JSON
    module, _, name = classpath.rpartition(".")
    rebuilt = getattr(importlib.import_module(module), name)(**kwargs)
    assert rebuilt.serialize() == (classpath, kwargs)
    assert kwargs["project_id"] == 3 and kwargs["batch"] == "run-1" and kwargs["token"] is None


def test_trigger_refuses_naive_deadline_and_missing_credentials():
    from hopchain_airflow.triggers.annotation import AnnotationCompleteTrigger

    with pytest.raises(ValueError, match="timezone"):
        AnnotationCompleteTrigger(1, "b", "2026-01-01T00:00:00", conn_id="x")
    with pytest.raises(ValueError, match="conn_id"):
        AnnotationCompleteTrigger(1, "b", "2026-01-01T00:00:00+00:00")


def test_trigger_reaches_deadline_while_label_studio_is_down():
    """Nothing listens on the port: connection errors are counted, the deadline event still comes."""
    import asyncio

    from hopchain_airflow.triggers.annotation import AnnotationCompleteTrigger
    from pipelines.stack.process import free_port

    deadline = (datetime.now(UTC) + timedelta(seconds=0.6)).isoformat()
    trig = AnnotationCompleteTrigger(
        1, "b", deadline, poll_interval_s=0.1, base_url=f"http://127.0.0.1:{free_port()}", token="t"
    )

    async def first_event():
        async for event in trig.run():
            return event.payload

    payload = asyncio.run(first_event())
    assert payload["status"] == "deadline" and payload["errors"] >= 2 and payload["total"] is None
    assert "ConnectError" in payload["last_error"]
