"""No command writes into the checkout: the validation path, run from the repository root the way a
developer runs it, leaves ``git status`` as it was (its files go under the stack home or the store)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from expectations.samples import sample_tables
from pipelines.config import load_params
from tests.support.memory_store import MemoryStore

pytestmark = pytest.mark.unit
REPO = Path(__file__).resolve().parents[2]


def _status() -> str:
    return subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=REPO, check=True,
                          capture_output=True, text=True).stdout


@pytest.fixture(scope="module")
def tables() -> dict[str, pa.Table]:
    return sample_tables(n_images=3, questions_per_image=2, seed=11)


def test_hopchain_validate_writes_under_the_stack_home(tables, tmp_path) -> None:
    """``hopchain validate`` with no ``--out``, from the repository root: its result and Data Docs go to
    ``<stack home>/validation/<run id>``, and the checkout is what it was."""
    data = tmp_path / "questions.parquet"
    manifest = tmp_path / "manifest.parquet"
    pq.write_table(tables["questions"], data)
    pq.write_table(tables["manifest"], manifest)
    home = tmp_path / "home"
    env = {**os.environ, "HOPCHAIN_HOME": str(home), "PYTHONPATH": str(REPO)}
    before = _status()
    proc = subprocess.run([sys.executable, "-m", "pipelines.cli", "validate", "--suite", "questions",
                           "--data", str(data), "--manifest", str(manifest)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert _status() == before
    out = home / "validation" / "manual"  # the default run id
    assert (out / "questions.validation.json").is_file()
    assert (out / "datadocs" / "questions" / "index.html").is_file()


def test_the_dag_validation_path_writes_only_to_the_store(tables, monkeypatch) -> None:
    """What the Airflow tasks run (the runner's ``validate`` then the run's summary), from the repository
    root: Data Docs and results land in the store; nothing in the checkout changes."""
    from pipelines.runner import RunEnv, summarize, validate

    monkeypatch.chdir(REPO)
    store = MemoryStore()
    before = _status()
    env = RunEnv(params=load_params(), store=store, run_id="checkout-check")  # type: ignore[arg-type]
    validate(env, "shard-00000", [("questions", tables["questions"], {"manifest": tables["manifest"]})])
    summary = summarize(env)
    assert _status() == before
    assert summary.datadocs == "runs/checkout-check/datadocs/index.html"
    assert b"questions/shard-00000/index.html" in store.objects[summary.datadocs]
