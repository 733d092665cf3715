"""The Label Studio hook without a database: it reads an ``AIRFLOW_CONN_`` variable, builds the sync
client and, in the triggerer, the async one; no token shows in a repr."""

from __future__ import annotations

import asyncio
import json

import pytest

from tests.support.scripted_label_studio import ScriptedLabelStudio

pytestmark = pytest.mark.unit


def test_hook_builds_client_from_connection(monkeypatch: pytest.MonkeyPatch) -> None:
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
    assert client.url == "http://127.0.0.1:8081" and client.timeout_s == 7
    assert hook.get_client().url == client.url
    assert "secret-token" not in repr(client)
    assert "secret-token" not in repr(hook.credentials())
    behaviour = LabelStudioHook.get_ui_field_behaviour()
    assert "login" in behaviour["hidden_fields"] and behaviour["relabeling"]["password"].startswith(
        "API token"
    )
    assert isinstance(LabelStudioHook.get_connection_form_widgets(), dict)


def test_base_url_from_parts() -> None:
    from pipelines.annotation.client import base_url_from_parts

    assert base_url_from_parts("http://127.0.0.1", 8081) == "http://127.0.0.1:8081"
    assert base_url_from_parts("ls.example.org", None, "https") == "https://ls.example.org"
    assert base_url_from_parts("https://h:9/prefix/", 443) == "https://h:9/prefix"
    with pytest.raises(ValueError):
        base_url_from_parts("", 1)


def test_hook_builds_an_async_client_in_the_triggerer(fake_ls: ScriptedLabelStudio) -> None:
    from hopchain_airflow.hooks.label_studio import LabelStudioHook

    client = asyncio.run(LabelStudioHook("ls_test").get_async_conn(timeout_s=3))
    assert client.url == f"http://127.0.0.1:{fake_ls.port}" and client.timeout_s == 3
    assert "tok-1" not in repr(client)
