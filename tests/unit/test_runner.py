"""The stage contract and the one runner (:mod:`pipelines.runner`): a new stage is one class; the runner reads
its inputs by contract, runs setup → process per shard → teardown, writes outputs, rejects and stats with one
put each under the run's keys (the same keys in a bucket and in a local folder), overwrites only its own keys
on a retry, resumes, and runs the stage's checks."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pytest

from pipelines.config import load_params
from pipelines.contracts import ContractError, to_table
from pipelines.contracts.rejects import Reject, rejects_table
from pipelines.runner import Check, RunEnv, Runner, Shard, ShardResult, SourceStage, Stage, StageBase, open_root
from tests.support.memory_store import MemoryStore

pytestmark = pytest.mark.unit


class ToyStage(StageBase):
    """A stage defined in a test: one ``thing`` detection per image; images wider than ``max_width`` refused."""

    name = "toy"
    inputs = ("manifest",)
    outputs = ("detections",)
    rejects = ("toy",)
    metrics = ("images", "detections", "rejected")

    def __init__(self, max_width: int = 100) -> None:
        self.max_width = max_width
        self.calls: list[str] = []

    def setup(self, env: RunEnv) -> None:
        self.calls.append("setup")
        self.source = f"toy:{env.params.profile}"

    def process(self, shard: Shard) -> ShardResult:
        self.calls.append(f"process {shard.number}")
        rows, refused = [], []
        for r in shard.tables["manifest"].to_pylist():
            if r["width"] > self.max_width:
                refused.append(Reject(stage=self.name, item_id=r["image_id"], code="toy.too_wide",
                                      detail=f"{r['width']} px wide"))
            else:
                rows.append({"image_id": r["image_id"], "category": "thing", "bbox": None, "score": 1.0,
                             "source": self.source})
        stats = {"images": shard.tables["manifest"].num_rows, "detections": len(rows), "rejected": len(refused)}
        return ShardResult({"detections": to_table(rows, "detections")}, rejects_table(refused), stats)

    def teardown(self) -> None:
        self.calls.append("teardown")


def _manifest(shard: int, widths: list[int]) -> pa.Table:
    return to_table([{"image_id": f"s{shard}i{k}", "uri": f"/img/{shard}/{k}.png", "width": w, "height": 10,
                      "format": "PNG", "shard": shard} for k, w in enumerate(widths)], "manifest")


def _env(store: object, run_id: str = "r1") -> RunEnv:
    return RunEnv(load_params(None, "demo"), store, run_id)  # type: ignore[arg-type]


def test_a_stage_defined_in_a_test_runs_through_the_runner() -> None:
    store = MemoryStore()
    env = _env(store)
    env.write_table("manifest", 0, _manifest(0, [50, 150]))
    env.write_table("manifest", 1, _manifest(1, [60]))
    stage = ToyStage()
    assert isinstance(stage, Stage) and not isinstance(stage, SourceStage)

    run = Runner(env, checks=False).run(stage)  # every shard of its first input

    assert stage.calls == ["setup", "process 0", "process 1", "teardown"]  # one setup for every shard
    assert run.shards == [0, 1] and run.totals == {"images": 3, "detections": 2, "rejected": 1}
    assert json.loads(run.model_dump_json())["stats"]["0"]["rejected"] == 1  # JSON for XCom and the command
    keys = env.keys
    assert env.read_table("detections", 0)["source"].to_pylist() == ["toy:demo"]
    assert store.get_table(keys.rejects("toy", 0), "rejects")["code"].to_pylist() == ["toy.too_wide"]
    assert store.get_json(keys.stats("toy", 1)) == {"images": 1, "detections": 1, "rejected": 0}
    # exactly the run's keys: inputs, outputs, rejects, stats
    assert sorted(store.objects) == sorted([keys.table("manifest", 0), keys.table("manifest", 1),
                                            keys.table("detections", 0), keys.table("detections", 1),
                                            keys.rejects("toy", 0), keys.rejects("toy", 1),
                                            keys.stats("toy", 0), keys.stats("toy", 1)])


def test_a_retried_shard_overwrites_only_its_own_keys_and_resume_skips_done_shards() -> None:
    store = MemoryStore()
    env = _env(store)
    for n in (0, 1):
        env.write_table("manifest", n, _manifest(n, [50, 150]))
    Runner(env, checks=False).run(ToyStage())
    before = dict(store.objects)

    Runner(env, checks=False).run(ToyStage(max_width=1000), [1])  # the task of shard 1, retried
    changed = {k for k in store.objects if store.objects[k] != before.get(k)}
    assert changed == {env.keys.table("detections", 1), env.keys.rejects("toy", 1), env.keys.stats("toy", 1)}

    resumed = ToyStage()
    run = Runner(env, checks=False, resume=True).run(resumed)
    assert run.resumed == [0, 1] and resumed.calls == ["setup", "teardown"]


def test_the_command_folder_holds_the_same_keys_as_the_bucket(tmp_path: Path) -> None:
    """``hopchain <stage> --root <folder>/<run>`` and a DAG run in the bucket write the same layout."""
    bucket = MemoryStore()
    folder = open_root(str(tmp_path / "runs" / "r1"), load_params(None, "demo"))
    for env in (_env(bucket), folder):
        env.write_table("manifest", 0, _manifest(0, [50, 150]))
        Runner(env, checks=False).run(ToyStage())
    on_disk = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file())
    assert on_disk == sorted(bucket.objects) and on_disk[0].startswith("runs/r1/")
    assert folder.read_table("detections", 0) == _env(bucket).read_table("detections", 0)


def test_inputs_are_read_by_contract_and_a_missing_output_is_a_bug() -> None:
    env = _env(MemoryStore())
    env.store.put_table(env.keys.table("manifest", 0), pa.table({"image_id": ["x"]}))  # breaks its contract
    stage = ToyStage()
    with pytest.raises(ContractError, match="manifest: missing required column"):
        Runner(env, checks=False).run(stage, [0])
    assert stage.calls == ["setup", "teardown"]  # torn down all the same

    class Forgetful(ToyStage):
        def process(self, shard: Shard) -> ShardResult:
            return ShardResult({}, None, {})

    env.write_table("manifest", 0, _manifest(0, [1]))
    with pytest.raises(RuntimeError, match=r"returned no \['detections'\]"):
        Runner(env, checks=False).run(Forgetful(), [0])


def test_no_shard_to_read_names_where_it_looked(tmp_path: Path) -> None:
    env = open_root(str(tmp_path / "empty-run"), load_params(None, "demo"))
    with pytest.raises(FileNotFoundError) as err:
        Runner(env, checks=False).run(ToyStage())
    assert err.value.filename == str(tmp_path / "empty-run" / "manifest")


def test_the_checks_a_stage_declares_run_on_its_shard(monkeypatch: pytest.MonkeyPatch) -> None:
    import pipelines.runner as runner_module

    seen: list[tuple[str, list[tuple[str, int, list[str]]]]] = []

    def fake_validate(env: RunEnv, label: str, plan: list) -> dict:  # type: ignore[type-arg]
        seen.append((label, [(suite, table.num_rows, sorted(refs)) for suite, table, refs in plan]))
        return {"detections": {"success": True}}

    monkeypatch.setattr(runner_module, "validate", fake_validate)

    class Checked(ToyStage):
        checks = (Check("detections", "detections", ("manifest",)),)

    env = _env(MemoryStore())
    env.write_table("manifest", 3, _manifest(3, [1, 2, 300]))
    run = Runner(env).run(Checked(), [3])
    assert seen == [("shard-00003", [("detections", 2, ["manifest"])])]
    assert run.checks == {"shard-00003": {"detections": {"success": True}}}
    Runner(env, checks=False).run(Checked(), [3])
    assert len(seen) == 1  # the command runs checks only when asked


def test_a_folder_store_lists_only_the_folder_of_the_prefix(tmp_path: Path) -> None:
    """A run root's parent may be any folder (a home, a checkout): listing a run's keys never walks beside it."""
    from pipelines.store import FolderStore

    store = FolderStore(tmp_path)
    store.put_bytes("r1/stats/toy/shard-00000.json", b"{}")
    store.put_bytes("r1/manifest/shard-00000.parquet", b"x")
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "unreadable").mkdir(mode=0)  # walking it would fail
    try:
        assert list(store.list("r1/stats/")) == ["r1/stats/toy/shard-00000.json"]
        assert list(store.list("r1/", recursive=False)) == []
        assert store.list_prefixes("r1/") == ["r1/manifest/", "r1/stats/"]
        assert store.get_bytes("r1/manifest/shard-00000.parquet") == b"x" and not store.exists("r1/nope")
    finally:
        (tmp_path / "elsewhere" / "unreadable").chmod(0o755)
