"""A running stack notices that the platform's code changed since Airflow started (make demo restarts it)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pipelines.stack.services import Airflow, code_fingerprint
from tests.support.stack import free_ports, params_with_ports

pytestmark = pytest.mark.unit


def test_the_fingerprint_follows_the_python_files(tmp_path: Path):
    pkg = tmp_path / "pipelines"
    (pkg / "annotation").mkdir(parents=True)
    module = pkg / "annotation" / "completion.py"
    module.write_text("A = 1\n")
    (pkg / "notes.md").write_text("not code")
    first = code_fingerprint([pkg])
    assert code_fingerprint([pkg]) == first
    (pkg / "notes.md").write_text("still not code")
    assert code_fingerprint([pkg]) == first
    module.write_text("A = 1\ndef ids_after_filter(): ...\n")
    assert code_fingerprint([pkg]) != first
    changed = code_fingerprint([pkg])
    os.utime(module, ns=(1, 1))  # same bytes, another modification time (e.g. a checkout)
    assert code_fingerprint([pkg]) != changed


def test_airflow_records_the_code_it_started_with(tmp_path: Path, monkeypatch):
    airflow = Airflow(params_with_ports(free_ports()), tmp_path)
    assert airflow.code_changed()  # never started (or started by a version that did not record it)
    monkeypatch.setattr(airflow, "process", lambda comp: type("P", (), {"start": lambda *a, **k: None})())
    monkeypatch.setattr(airflow, "env", lambda: {})
    airflow.start(["scheduler"])  # one component: the others still run what they imported
    assert airflow.code_changed()
    airflow.start()
    assert not airflow.code_changed()
    monkeypatch.setattr("pipelines.stack.services.code_fingerprint", lambda roots=None: "edited")
    assert airflow.code_changed()
