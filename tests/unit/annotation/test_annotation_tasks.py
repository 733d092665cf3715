"""The annotation tasks (:mod:`pipelines.annotation.tasks`), without servers: the simulated annotators refuse to
run where the deployment forbids them (issue 26), whatever profile the run was built with."""

from __future__ import annotations

import pytest

from pipelines.config import Refused, load_params
from tests.support.memory_store import MemoryStore

pytestmark = pytest.mark.unit


def test_the_simulation_refuses_to_run_where_the_deployment_forbids_it(monkeypatch: pytest.MonkeyPatch) -> None:
    from pipelines.annotation.tasks import simulate_annotators
    from pipelines.runner import RunEnv

    monkeypatch.setenv("HOPCHAIN_SIMULATED_ANNOTATORS", "forbid")
    env = RunEnv(load_params(None, "demo"), MemoryStore(), "r")  # type: ignore[arg-type]
    with pytest.raises(Refused, match="^simulated annotators are forbidden in this deployment"):
        simulate_annotators(env, {"batches": [], "poll_interval_s": 1, "annotators_required": 4})
