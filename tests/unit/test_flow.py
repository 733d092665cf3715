"""What a task does (:class:`pipelines.flow.Flow`), without servers: the simulated annotators refuse to run
where the deployment forbids them (issue 26), whatever profile the flow was built with."""

from __future__ import annotations

import pytest

from pipelines.config import Refused, load_params
from tests.support.memory_store import MemoryStore

pytestmark = pytest.mark.unit


def test_the_simulation_refuses_to_run_where_the_deployment_forbids_it(monkeypatch: pytest.MonkeyPatch) -> None:
    from pipelines.flow import Flow

    monkeypatch.setenv("HOPCHAIN_SIMULATED_ANNOTATORS", "forbid")
    flow = Flow(load_params(None, "demo"), MemoryStore(), "r")  # type: ignore[arg-type]
    with pytest.raises(Refused, match="^simulated annotators are forbidden in this deployment"):
        flow.simulate_annotators({"batches": [], "poll_interval_s": 1, "annotators_required": 4})
