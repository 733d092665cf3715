"""Issue 9 acceptance 3: the demo through the real scheduler, dag-processor and triggerer; the release
tag exists in the registry and a trainer's clone + ``dvc pull`` of it works."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
VENV_BIN = Path(sys.executable).parent


def _run(cmd: list[str], cwd: Path, env: dict[str, str], timeout: float = 300) -> str:
    out = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, f"{' '.join(cmd)} failed:\n{out.stdout[-2000:]}\n{out.stderr[-3000:]}"
    return out.stdout


def test_demo_releases_a_tag_that_a_trainer_can_pull(local_stack, demo_release, tmp_path: Path) -> None:
    tag = demo_release["tag"]
    assert tag and tag.startswith("v")
    assert demo_release["questions"] and demo_release["questions"] > 0
    registry = demo_release["registry"]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "HOPCHAIN_S3"))}
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    tags = _run(["git", "ls-remote", "--tags", registry], tmp_path, env)
    assert f"refs/tags/{tag}" in tags

    # A trainer: git clone, checkout the tag, dvc pull with credentials from the environment only.
    s3 = local_stack.s3.credentials()
    env.update({"AWS_ACCESS_KEY_ID": s3["access_key"], "AWS_SECRET_ACCESS_KEY": s3["secret_key"],
                "DVC_NO_ANALYTICS": "1"})
    clone = tmp_path / "hopchain-data"
    _run(["git", "clone", "--quiet", registry, str(clone)], tmp_path, env)
    _run(["git", "checkout", "--quiet", tag], clone, env)
    _run([str(VENV_BIN / "dvc"), "pull"], clone, env, timeout=600)
    _run([str(VENV_BIN / "hopchain"), "release", "verify", str(clone)], clone, env)
    train = sorted((clone / "data" / "train").glob("*.parquet"))
    assert train, "no train shards pulled"

    import datasets

    from pipelines.reward import extract_answer, score

    ds = datasets.load_dataset(str(clone), cache_dir=str(tmp_path / "hf"))  # one call: the root card's configs
    assert len(ds["train"]) > 0
    row = ds["train"][0]
    assert row["question"] and extract_answer(row["answer"]) == row["answer"]
    image = row["images"][0]
    assert image.size[0] > 0 and image.size[1] > 0  # decoded by the datasets Image feature
    # the shipped reward agrees with the canonical answer of every released question of the demo
    for split in ds.values():
        for r in split:
            assert score(f"Answer: {r['answer']}", r["reward_model"]["ground_truth"]) == 1.0
