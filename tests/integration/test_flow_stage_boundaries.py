"""A critical validation failure at a stage boundary stops the shard before the next stage reads it.

Driven through the runner (:mod:`pipelines.runner`, as the Airflow tasks call it; :mod:`tests.support.nightly`) against the real S3 server:
one annotation claims an impossible score, the instances suite fails in the segment task, the full
result and its Data Docs are saved first, and the task raises.
"""

from __future__ import annotations

import json
import tempfile
import uuid
from pathlib import Path

import pytest

from pipelines.config import load_params
from pipelines.runner import RunEnv, summarize
from pipelines.store import safe_key
from tests.support import nightly

pytestmark = pytest.mark.integration


def _seed(store, prefix: str, corrupt: bool) -> None:
    from hopchain_demo.samples import write_samples

    with tempfile.TemporaryDirectory() as tmp:
        coco_path = write_samples(tmp, 3)
        coco = json.loads(coco_path.read_text())
        if corrupt:
            coco["annotations"][0]["score"] = 7.5  # scores must lie in 0..1
        coco_path.write_text(json.dumps(coco))
        for f in [coco_path, *sorted((Path(tmp) / "images").iterdir())]:
            store.put_bytes(safe_key("inputs", prefix, str(f.relative_to(tmp))), f.read_bytes())


@pytest.mark.parametrize("corrupt", [False, True], ids=["clean", "impossible-score"])
def test_segment_boundary_validation(object_store, corrupt: bool) -> None:
    from expectations.runner import ValidationFailed

    prefix = f"boundary-{uuid.uuid4().hex[:8]}"
    _seed(object_store, prefix, corrupt)
    params = load_params(None, "demo")
    if corrupt:
        # an impossible score no longer reaches the boundary (the importer refuses it: coco.invalid_score, a
        # reject row), so the failing expectation is a distribution one made critical: every category must
        # hold 10,000 instances
        v = params.validation
        params = params.model_copy(update={"validation": v.model_copy(update={
            "min_category_count": 10_000, "distribution_min_rows": 0,
            "severity": {**v.severity, "instances.category_counts": "critical"}})})
    env = RunEnv(params=params, store=object_store, run_id=prefix)
    shards = nightly.ingest(env, prefix)
    assert shards
    nightly.run(env, "detect", shards[0])
    if not corrupt:
        nightly.run(env, "segment", shards[0])
        assert nightly.run(env, "questions", shards[0]).totals["questions"] > 0
        nightly.run(env, "validate", shards[0])
        return
    with pytest.raises(ValidationFailed) as err:
        nightly.run(env, "segment", shards[0])
    assert any("category_counts" in n for n in err.value.report.critical_failures), err.value
    refused = object_store.get_table(env.keys.rejects("segment", shards[0])).to_pylist()
    assert [r["code"] for r in refused if r["code"].startswith("coco.")] == ["coco.invalid_score"]
    # saved before raising: the full GX result and the site of its Data Docs, which the run's summary
    # (it runs after a failed task too) links from the run's Data Docs index
    results = [k for k in object_store.list(f"runs/{prefix}/validation/instances/")]
    assert results, "the validation result was not saved before the task failed"
    assert object_store.exists(f"runs/{prefix}/datadocs/_sites/instances/shard-00000")
    assert summarize(env).datadocs == f"runs/{prefix}/datadocs/index.html"
    assert b"instances/shard-00000/index.html" in object_store.get_bytes(f"runs/{prefix}/datadocs/index.html")
