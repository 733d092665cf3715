"""Fixtures of the Airflow-side unit tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.scripted_label_studio import ScriptedLabelStudio


@pytest.fixture
def fake_ls(monkeypatch: pytest.MonkeyPatch) -> Iterator[ScriptedLabelStudio]:
    """A scripted Label Studio on loopback, reachable as Airflow connection ``ls_test`` (token ``tok-1``)."""
    server = ScriptedLabelStudio()
    monkeypatch.setenv("AIRFLOW_CONN_LS_TEST", server.connection("tok-1"))
    yield server
    server.close()
