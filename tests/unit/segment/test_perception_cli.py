"""The commands end to end on a local run root: ingest → detect → segment, with tiny models."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from PIL import Image

from pipelines.cli import main
from pipelines.config import DEFAULT_PARAMS, load_params
from pipelines.contracts import to_table, write_parquet_atomic
from pipelines.runner import open_root
from tests.support.checks import check_instances

pytestmark = pytest.mark.unit


def _params(tmp_path: Path, qwen: Path, sam3: Path) -> Path:
    raw = yaml.safe_load(DEFAULT_PARAMS.read_text())
    raw["ingest"]["shard_size"] = 2
    raw["vlm"] = {"backend": "qwen3vl", "qwen3vl": {"model": str(qwen), "device": "cpu", "batch_size": 2}}
    raw["detect"].update(backend="vlm", max_new_tokens=4)
    raw["segment"].update(backend="sam3", sam3={"model": str(sam3), "device": "cpu"},
                          score_threshold=0.0, min_area=1)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_ingest_detect_segment_commands(tmp_path: Path, tiny_qwen3vl: Path, tiny_sam3: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for k, size in enumerate([(60, 40), (50, 70), (33, 33)]):
        Image.new("RGB", size, (k * 60, 100, 150)).save(src / f"img{k}.png")
    (src / "copy.png").write_bytes((src / "img0.png").read_bytes())  # lands in another shard
    (src / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    params = _params(tmp_path, tiny_qwen3vl, tiny_sam3)
    root = str(tmp_path / "run")

    assert main(["--params", str(params), "ingest", "--source", str(src), "--out", root, "--plan"]) == 0
    assert json.loads(capsys.readouterr().out) == [0, 1, 2]
    assert main(["--params", str(params), "ingest", "--source", str(src), "--out", root]) == 0
    run = open_root(root, load_params())  # the layout of a run in the bucket
    manifest, quarantine = run.read_all("manifest"), run.read_all("quarantine")
    # sorted listing: copy.png (shard 0) keeps the bytes, img0.png (shard 1) is the duplicate
    assert sorted(Path(u).name for u in manifest["uri"].to_pylist()) == ["copy.png", "img1.png", "img2.png"]
    refused = {Path(r["uri"]).name: r for r in quarantine.to_pylist()}
    assert refused["img0.png"]["code"] == "duplicate" and refused["img0.png"]["detail"].endswith("copy.png")
    assert refused["broken.jpg"]["code"] in ("not_an_image", "truncated_or_corrupt")
    assert json.loads(capsys.readouterr().out)["duplicate"] == 1

    assert main(["--params", str(params), "detect", "--root", root]) == 0
    detections, rejects = run.read_all("detections"), run.read_rejects("detect")
    # random weights: every image is either detected or rejected with its raw answer, none lost
    unparseable = {r["item_id"] for r in rejects.to_pylist() if r["code"] == "answer.unparseable"}
    assert set(detections["image_id"].to_pylist()) | unparseable == set(manifest["image_id"].to_pylist())

    # segment from known detections (the random VLM finds nothing usable)
    for shard in range(3):
        ids = [r["image_id"] for r in manifest.to_pylist() if r["shard"] == shard]
        rows = [{"image_id": i, "category": "thing", "bbox": None, "score": 1.0, "source": "t"} for i in ids]
        write_parquet_atomic(to_table(rows, "detections"), Path(root) / "detections" / f"shard-{shard:05d}.parquet")
    assert main(["--params", str(params), "segment", "--root", root]) == 0
    instances = run.read_all("instances")
    check_instances(instances, {r["image_id"]: (r["height"], r["width"]) for r in manifest.to_pylist()})
    assert set(instances["image_id"].to_pylist()) == set(manifest["image_id"].to_pylist())
