"""The ``annotations`` backend reads each shard's slice of ``instances.json``, not the whole file.

Every detect and segment shard task used to parse the night's whole ``instances.json``: the cost of a
night grew with the square of its size (bench/scale.py, detect x2.0 and segment x1.8 per image from
1,000 to 7,000 images). Ingest now reads the file once and hands each shard its slice; a shard's
instances are the same as matching the whole file."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pytest

from hopchain_demo.samples import write_samples
from pipelines.config import load_params
from pipelines.detect.stage import DetectStage
from pipelines.ingest.stage import IngestStage
from pipelines.runner import Runner, open_root
from pipelines.segment.annotations import SHIPPED, coco_slice, match_coco_instances
from pipelines.segment.stage import SegmentStage

pytestmark = pytest.mark.unit


def _by_image(table: pa.Table) -> list[tuple]:
    return sorted((r["image_id"], r["category"], json.dumps(r["bbox"]), r.get("rle_counts", ""))
                  for r in table.to_pylist())


def test_each_shard_reads_its_slice_and_gets_what_the_whole_file_gives(tmp_path: Path) -> None:
    samples = tmp_path / "samples"
    write_samples(samples, 6)
    coco = json.loads((samples / "instances.json").read_text())
    env = open_root(str(tmp_path / "run"), load_params(None, "demo"))
    assert env.params.detect.backend == env.params.segment.backend == "annotations"
    runner = Runner(env, checks=False)
    shards = runner.run(IngestStage(str(samples), shard_size=2)).shards
    assert len(shards) == 3

    manifests = {n: env.read_table("manifest", n) for n in shards}
    for n, manifest in manifests.items():
        piece = env.store.get_json(env.keys.shard_document("ingest", SHIPPED, n))
        names = {Path(u).name for u in manifest.column("uri").to_pylist()}
        assert {im["file_name"].rsplit("/", 1)[-1] for im in piece["images"]} == names  # its own images only
        assert {a["image_id"] for a in piece["annotations"]} <= {im["id"] for im in piece["images"]}

    # the whole file is unreadable from here on: a shard that still read it would fail
    (samples / "instances.json").write_text("{not json")
    runner.run(DetectStage())
    runner.run(SegmentStage())
    base = str(samples).rstrip("/") + "/"
    for n, manifest in manifests.items():
        whole, _ = match_coco_instances(coco, manifest, lambda u: u.removeprefix(base))
        assert _by_image(env.read_table("instances", n)) == _by_image(whole)
        assert len(env.read_table("detections", n)) == len(whole)


def test_a_slice_matches_like_the_whole_dict_by_relative_then_base_name() -> None:
    coco = {"categories": [{"id": 1, "name": "cup"}],
            "images": [{"id": 1, "file_name": "a/x.png"}, {"id": 2, "file_name": "x.png"},
                       {"id": 3, "file_name": "y.png"}],
            "annotations": [{"id": 10, "image_id": 1}, {"id": 11, "image_id": 2}, {"id": 12, "image_id": 3}]}
    got = coco_slice(coco, ["/in/a/x.png", "/in/b/x.png"], lambda u: u.removeprefix("/in/"))
    assert [im["id"] for im in got["images"]] == [1, 2]  # a/x.png by its path; b/x.png by its base name
    assert [a["id"] for a in got["annotations"]] == [10, 11]
    assert got["categories"] == coco["categories"]


def test_a_run_ingested_without_slices_still_reads_the_whole_file(tmp_path: Path) -> None:
    samples = tmp_path / "samples"
    write_samples(samples, 2)
    env = open_root(str(tmp_path / "run"), load_params(None, "demo"))
    runner = Runner(env, checks=False)
    shards = runner.run(IngestStage(str(samples))).shards
    for n in shards:  # as an ingest from before the slices left it
        Path(env.store.root, env.keys.shard_document("ingest", SHIPPED, n)).unlink()  # type: ignore[attr-defined]
    runner.run(DetectStage())
    assert sum(len(env.read_table("detections", n)) for n in shards) > 0
