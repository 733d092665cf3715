"""Issue 27: the release loads with ``datasets`` 3.x and the current major, the same way.

One registry folder (``tests.support.release_rows.build_registry``: data shards + the root card with
``configs:``) is loaded with ``datasets.load_dataset(<folder>)`` in this venv (the current major) and in
``.venv-datasets3`` (the latest 3.x, ``requirements/trainer-datasets3.lock``, built by ``scripts/setup.sh``),
in a subprocess. Both must give the same splits, row counts, decoded PIL images (same pixels) and the same
nested ``prompt`` / ``verl_prompt`` / ``reward_model`` / ``extra_info`` values, under the same feature tree.
"""

from __future__ import annotations

import inspect
import json
import os
import subprocess
import textwrap
from pathlib import Path
from typing import Any

import pytest

from pipelines.config import REPO_ROOT
from tests.support.release_rows import build_registry

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DATASETS3_PYTHON = REPO_ROOT / ".venv-datasets3" / "bin" / "python"


def summarize(folder: str, cache_dir: str) -> dict[str, Any]:
    """What a trainer sees after ``load_dataset(folder)``: self-contained (runs in either venv)."""
    import hashlib

    import datasets
    from PIL import Image

    def tree(feature: Any) -> Any:  # the feature tree, spelled the same in every datasets version
        if isinstance(feature, (list, tuple)):
            return ["list", tree(feature[0])]
        if isinstance(feature, dict):
            return {k: tree(v) for k, v in feature.items()}
        name = type(feature).__name__
        if name in ("List", "LargeList", "Sequence"):
            return ["list", tree(feature.feature)]
        if name == "Value":
            return feature.dtype
        return name  # Image, ...

    ds = datasets.load_dataset(folder, cache_dir=cache_dir)
    out: dict[str, Any] = {"version": datasets.__version__, "splits": {}}
    for split in sorted(ds):
        d = ds[split]
        rows = []
        for row in d:
            images = row["images"]
            rows.append({
                "question_id": row["question_id"],
                "answer": row["answer"],
                "images": [[isinstance(im, Image.Image), im.size, im.mode,
                            hashlib.sha256(im.tobytes()).hexdigest()] for im in images],
                "prompt": row["prompt"],
                "verl_prompt": row["verl_prompt"],
                "reward_model": row["reward_model"],
                "extra_info": row["extra_info"],
            })
        out["splits"][split] = {"num_rows": d.num_rows, "features": tree(d.features), "rows": rows}
    return out


def _summarize_in(python: Path, folder: Path, cache_dir: Path) -> dict[str, Any]:
    """:func:`summarize` run by another interpreter (a venv without the platform)."""
    code = textwrap.dedent(inspect.getsource(summarize)) + textwrap.dedent(f"""
        import json, sys
        json.dump(summarize({str(folder)!r}, {str(cache_dir)!r}), sys.stdout)
        """)
    code = "from typing import Any\n" + code
    env = {**os.environ, "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1", "PYTHONPATH": ""}
    proc = subprocess.run([str(python), "-c", code], capture_output=True, text=True, cwd=folder, env=env,
                          timeout=300, check=False)
    assert proc.returncode == 0, f"{python} failed to load the release:\n{proc.stderr[-4000:]}"
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory):
    return build_registry(tmp_path_factory.mktemp("trainer-datasets") / "registry")


def test_the_release_loads_the_same_in_datasets_3_and_the_current_major(registry, tmp_path) -> None:
    if not DATASETS3_PYTHON.exists():
        pytest.skip(".venv-datasets3 missing: run `bash scripts/setup.sh` (builds it from "
                    "requirements/trainer-datasets3.lock)")
    current = json.loads(json.dumps(summarize(str(registry.root), str(tmp_path / "hf-current"))))
    old = _summarize_in(DATASETS3_PYTHON, registry.root, tmp_path / "hf-3")

    assert int(current["version"].split(".")[0]) >= 4 and old["version"].startswith("3."), (
        current["version"], old["version"])
    expected = registry.rows_per_split()
    assert set(expected) == {"train", "eval"}
    for got in (current, old):
        assert {s: v["num_rows"] for s, v in got["splits"].items()} == expected, got["version"]
        for split in got["splits"].values():
            assert split["features"]["images"] == ["list", "Image"]
            assert split["features"]["prompt"] == ["list", {"role": "string", "content": [
                "list", {"type": "string", "text": "string"}]}]
            for row in split["rows"]:
                assert len(row["images"]) == 1
                is_pil, size, mode, _ = row["images"][0]
                assert is_pil and mode == "RGB" and size[0] > 0 and size[1] > 0
                assert [p["type"] for p in row["prompt"][0]["content"]] == ["image", "text"]
                assert row["verl_prompt"][0]["content"].startswith("<image>")
                assert row["reward_model"] == {"style": "rule", "ground_truth": row["answer"]}
                assert row["extra_info"]["question_id"] == row["question_id"]
    # the same rows, images (pixels) and nested fields, under the same feature tree
    assert old["splits"] == current["splits"]
