"""The task runner: one explicit call per task, JSON out, a critical validation failure fails without retry;
a run conf may not turn on simulated annotators where the deployment forbids them (issue 26)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from pipelines.store.ledger import RunSummary

pytestmark = pytest.mark.unit


class FakeEnv:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def summary(self) -> RunSummary:
        self.calls.append("summary")
        return RunSummary(run_id="r1", images=3, finished_at=datetime(2026, 11, 30, tzinfo=UTC))

    def validate_shard(self, shard: int) -> None:
        from expectations.runner import ValidationFailed, ValidationReport

        raise ValidationFailed(ValidationReport(suite="questions", run_id="r1", label=f"shard-{shard:05d}",
                                                rows=1, outcomes=[]))

    def push(self, shard: int) -> None:
        raise ConnectionError("Label Studio is restarting")

    def release(self) -> None:
        from pipelines.config import Refused

        raise Refused("release refused: 4 accepted questions carry simulated answers (1 batches: b1)")


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> FakeEnv:
    from hopchain_airflow import runtime

    fake = FakeEnv()
    monkeypatch.setattr(runtime, "run_env", lambda context: fake)
    return fake


def test_a_task_returns_its_record_as_json(env: FakeEnv) -> None:
    from hopchain_airflow.runtime import run_task

    out = run_task({"run_id": "r1"}, lambda f: f.summary())
    assert env.calls == ["summary"]
    assert out["images"] == 3 and out["finished_at"] == "2026-11-30T00:00:00Z"  # JSON, not a pydantic object
    assert run_task({"run_id": "r1"}, lambda f: [f.summary()])[0]["run_id"] == "r1"


def test_a_critical_validation_failure_fails_the_task_without_retry(env: FakeEnv) -> None:
    from airflow.sdk.exceptions import AirflowFailException

    from hopchain_airflow.runtime import run_task

    with pytest.raises(AirflowFailException, match="critical validation failure"):
        run_task({"run_id": "r1"}, lambda f: f.validate_shard(2))


def test_other_errors_propagate_unchanged_so_airflow_retries_them(env: FakeEnv) -> None:
    from hopchain_airflow.runtime import run_task

    with pytest.raises(ConnectionError):
        run_task({"run_id": "r1"}, lambda f: f.push(0))


def test_run_env_builds_the_run_from_connections_and_the_profile(monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    from hopchain_airflow.runtime import run_env

    monkeypatch.setenv("HOPCHAIN_SIMULATED_ANNOTATORS", "allow")  # the local demo stack: the run may pick the demo
    monkeypatch.setenv("AIRFLOW_CONN_HOPCHAIN_S3", json.dumps({
        "conn_type": "hopchain_s3", "host": "127.0.0.1", "port": 9, "login": "k", "password": "s"}))
    env = run_env({"run_id": "manual__1", "params": {"profile": "demo"}})
    assert env.run_id == "manual__1" and env.params.profile == "demo"
    assert env.store.bucket == env.params.store.bucket and env.store.creds.url == "http://127.0.0.1:9"


def test_a_refusal_of_this_deployment_fails_the_task_without_retry(env: FakeEnv) -> None:
    from airflow.sdk.exceptions import AirflowFailException

    from hopchain_airflow.runtime import run_task

    with pytest.raises(AirflowFailException, match=r"^refused \(no retry\): release refused: 4 accepted questions"):
        run_task({"run_id": "r1"}, lambda f: f.release())


def _forbidding_deployment(monkeypatch: pytest.MonkeyPatch) -> None:
    """What the production compose sets: its own profile, simulated annotators forbidden."""
    import json

    monkeypatch.setenv("HOPCHAIN_PROFILE", "gpu")
    monkeypatch.setenv("HOPCHAIN_SIMULATED_ANNOTATORS", "forbid")
    monkeypatch.setenv("AIRFLOW_CONN_HOPCHAIN_S3", json.dumps({
        "conn_type": "hopchain_s3", "host": "127.0.0.1", "port": 9, "login": "k", "password": "s"}))


def test_every_task_refuses_a_run_conf_that_turns_on_simulated_annotators(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each task builds its env with ``run_env``: given ``{"profile": "demo"}`` in a deployment that forbids
    simulated annotators, it fails at once (no retry) with one line, before the step is called."""
    from airflow.sdk.exceptions import AirflowFailException

    from hopchain_airflow.runtime import run_env, run_task

    _forbidding_deployment(monkeypatch)
    context = {"run_id": "manual__1", "params": {"profile": "demo"}}
    with pytest.raises(AirflowFailException) as err:
        run_env(context)
    msg = str(err.value)
    assert msg.startswith("refused: profile 'demo' from the run's conf turns on simulated annotators "
                          "(annotation.simulated.enabled), which this deployment (profile 'gpu') forbids")
    assert "HOPCHAIN_SIMULATED_ANNOTATORS is forbid" in msg and "\n" not in msg
    called: list[str] = []
    with pytest.raises(AirflowFailException, match="^refused: profile 'demo' from the run's conf"):
        run_task(context, lambda env: called.append("step"))
    assert called == []
    # the deployment's own profile (no conf, or the conf naming it) runs
    assert run_env({"run_id": "manual__2", "params": {}}).params.profile == "gpu"
    assert run_env({"run_id": "manual__3", "params": {"profile": "gpu"}}).params.profile == "gpu"


def test_a_forbidding_deployment_whose_own_profile_turns_on_simulation_fails_every_task(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow.sdk.exceptions import AirflowFailException

    from hopchain_airflow.runtime import run_env

    _forbidding_deployment(monkeypatch)
    monkeypatch.setenv("HOPCHAIN_PROFILE", "demo")
    with pytest.raises(AirflowFailException, match=r"^refused: profile 'demo' turns on simulated annotators "
                                                    r"\(annotation.simulated.enabled\), which this deployment forbids"):
        run_env({"run_id": "manual__1", "params": {}})



def test_a_stage_task_is_one_runner_call_with_json_out(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """What a DAG's stage task does: ``run_stage(context, "module:Class", shard, **options)``; here with the stage
    a unit test defines (tests/unit/test_runner.py), on a folder run instead of the bucket."""
    from hopchain_airflow import runtime
    from pipelines.config import load_params
    from pipelines.runner import open_root
    from tests.unit.test_runner import _manifest

    env = open_root(str(tmp_path / "manual__1"), load_params(None, "demo"))
    env.write_table("manifest", 2, _manifest(2, [5, 50]))
    monkeypatch.setattr(runtime, "run_env", lambda context: env)
    out = runtime.run_stage({"run_id": "manual__1"}, "tests.unit.test_runner:ToyStage", 2, max_width=10)
    assert out["stage"] == "toy" and out["shards"] == [2]
    assert out["totals"] == {"images": 2, "detections": 1, "rejected": 1}
    assert env.read_rejects("toy", 2)["code"].to_pylist() == ["toy.too_wide"]
