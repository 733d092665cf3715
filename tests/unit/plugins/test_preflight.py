"""The nightly's first task: the doctor checks with the Airflow connections; a failure fails the task
without retry, naming each failed check and its fix, before ``ingest`` (and so before any shard).

Connections are faked with ``AIRFLOW_CONN_<ID>`` (no database); the pool check needs the metadata
database and is left out here (``pool=False``)."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit
REPO = Path(__file__).resolve().parents[3]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _dead_connections(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_HOPCHAIN_S3", json.dumps({
        "conn_type": "hopchain_s3", "host": "127.0.0.1", "port": _closed_port(), "login": "k", "password": "s"}))
    monkeypatch.setenv("AIRFLOW_CONN_HOPCHAIN_LABEL_STUDIO", json.dumps({
        "conn_type": "label_studio", "host": "http://127.0.0.1", "port": _closed_port(), "password": "t"}))


def test_preflight_fails_the_run_naming_each_failed_check(monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow.sdk.exceptions import AirflowFailException

    from hopchain_airflow.runtime import preflight

    _dead_connections(monkeypatch)
    t0 = time.monotonic()
    import logging

    logged: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: logged.append(record.getMessage())  # type: ignore[method-assign]
    log = logging.getLogger("hopchain.preflight")
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        with pytest.raises(AirflowFailException) as err:
            preflight({"run_id": "r1", "params": {"profile": "demo"}}, pool=False)
    finally:
        log.removeHandler(handler)
    assert time.monotonic() - t0 < 10
    msg = str(err.value)
    assert "2 of 4 checks failed: s3, label studio" in msg
    assert "FAILED  s3: no answer at http://127.0.0.1:" in msg and "hopchain_s3 connection" in msg
    assert "FAILED  label studio: no answer at http://127.0.0.1:" in msg
    assert any(m.startswith("ok      airflow connection hopchain_s3:") for m in logged)


def test_a_missing_connection_is_its_own_failed_check(monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow.sdk.exceptions import AirflowFailException

    from hopchain_airflow.runtime import preflight

    _dead_connections(monkeypatch)
    monkeypatch.delenv("AIRFLOW_CONN_HOPCHAIN_LABEL_STUDIO")
    with pytest.raises(AirflowFailException) as err:
        preflight({"run_id": "r1", "params": {"profile": "demo"}}, pool=False)
    msg = str(err.value)
    assert "FAILED  airflow connection hopchain_label_studio: connection 'hopchain_label_studio' not found" in msg
    assert "FAILED  label studio: no Label Studio credentials" in msg


def test_a_gpu_profile_on_this_machine_fails_on_models_in_seconds(monkeypatch, tmp_path) -> None:
    from airflow.sdk.exceptions import AirflowFailException
    from huggingface_hub import constants

    from hopchain_airflow.runtime import preflight

    _dead_connections(monkeypatch)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.delenv("HOPCHAIN_ALLOW_DOWNLOADS", raising=False)
    t0 = time.monotonic()
    with pytest.raises(AirflowFailException) as err:
        preflight({"run_id": "r1", "params": {"profile": "gpu"}}, pool=False)
    assert time.monotonic() - t0 < 10
    assert "FAILED  model vlm.qwen3vl: vlm.qwen3vl.model 'Qwen/Qwen3-VL-8B-Instruct': not in the local" in str(err.value)


def test_preflight_refuses_a_run_conf_that_turns_on_simulated_annotators_before_any_check(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 26: a deployment that forbids simulated annotators (the production compose) given
    ``{"profile": "demo"}``: the run fails at its first task with one line, no check is run."""
    from airflow.sdk.exceptions import AirflowFailException

    from hopchain_airflow import runtime

    _dead_connections(monkeypatch)
    monkeypatch.setenv("HOPCHAIN_PROFILE", "gpu")
    monkeypatch.setenv("HOPCHAIN_SIMULATED_ANNOTATORS", "forbid")
    checked: list[object] = []
    monkeypatch.setattr(runtime, "preflight_checks", lambda params, pool=True: checked.append(params) or [])
    with pytest.raises(AirflowFailException) as err:
        runtime.preflight({"run_id": "r1", "params": {"profile": "demo"}}, pool=False)
    msg = str(err.value)
    assert msg.startswith("preflight: profile 'demo' from the run's conf turns on simulated annotators "
                          "(annotation.simulated.enabled), which this deployment (profile 'gpu') forbids "
                          "(HOPCHAIN_SIMULATED_ANNOTATORS is forbid)")
    assert "\n" not in msg and checked == []
    runtime.preflight({"run_id": "r2", "params": {}}, pool=False)  # the deployment's own profile is checked
    assert [p.profile for p in checked] == ["gpu"]  # type: ignore[attr-defined]


def test_preflight_is_the_nightly_first_task_and_gates_ingest() -> None:
    """Wiring, read from the DAG file as Airflow parses it: preflight has no upstream, ingest and so every
    mapped shard task waits for it; it runs on the gpu queue (where the models are) without the gpu pool."""
    import runpy

    dag = runpy.run_path(str(REPO / "dags" / "hopchain_nightly.py"))["hopchain_nightly"]()
    pre, ingest = dag.get_task("preflight"), dag.get_task("ingest")
    assert pre.upstream_task_ids == set() and "preflight" in ingest.upstream_task_ids
    assert pre.queue == "gpu" and pre.pool != "gpu" and pre.retries == 0
    roots = {t.task_id for t in dag.tasks if not t.upstream_task_ids}
    assert roots == {"preflight"}
