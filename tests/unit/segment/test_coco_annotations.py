"""The annotations backend: COCO (polygons, RLE) → manifest + instances → COCO, masks unchanged."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from hopchain_demo.samples import write_samples
from pipelines.cli import main
from pipelines.config import load_params
from pipelines.contracts import REJECTS, read_parquet, to_table
from pipelines.runner import open_root
from pipelines.segment.annotations import export_coco, import_coco, match_coco_instances
from pipelines.segment.masks import decode_rle, encode_mask, suppress_duplicates
from tests.support.checks import check_instances

pytestmark = pytest.mark.unit


def _coco_fixture(tmp_path: Path) -> tuple[Path, Path, dict]:
    images = tmp_path / "images"
    images.mkdir()
    Image.new("RGB", (64, 48), (10, 20, 30)).save(images / "a.png")
    Image.new("RGB", (40, 30), (200, 20, 30)).save(images / "b.jpg")
    Image.new("RGB", (10, 10)).save(images / "wrong_size.png")
    mask = np.zeros((30, 40), np.uint8)
    mask[5:20, 3:33] = 1
    uncompressed = {"size": [30, 40], "counts": _uncompressed_counts(mask)}
    compressed = encode_mask(np.pad(np.ones((10, 10), bool), ((2, 36), (50, 4))))
    coco = {
        "images": [
            {"id": 7, "file_name": "a.png", "width": 64, "height": 48},
            {"id": 8, "file_name": "b.jpg", "width": 40, "height": 30},
            {"id": 9, "file_name": "missing.png", "width": 5, "height": 5},
            {"id": 10, "file_name": "wrong_size.png", "width": 11, "height": 10},
        ],
        "categories": [{"id": 1, "name": "Dogs"}, {"id": 2, "name": "Dining Tables"}],
        "annotations": [
            {"id": 1, "image_id": 7, "category_id": 1, "iscrowd": 0,
             "segmentation": [[10, 10, 30, 10, 30, 25, 10, 25], [40.5, 30, 60, 30, 50, 45]]},
            {"id": 2, "image_id": 7, "category_id": 2, "iscrowd": 0,
             "segmentation": {"size": [48, 64], "counts": compressed.counts}},
            {"id": 3, "image_id": 8, "category_id": 1, "iscrowd": 0, "segmentation": uncompressed},
            {"id": 4, "image_id": 8, "category_id": 1, "iscrowd": 1, "segmentation": uncompressed},
            {"id": 5, "image_id": 8, "category_id": 3, "iscrowd": 0, "segmentation": uncompressed},
            {"id": 6, "image_id": 8, "category_id": 1, "iscrowd": 0, "segmentation": [[1, 2, 3]]},
            {"id": 7, "image_id": 10, "category_id": 1, "iscrowd": 0, "segmentation": [[1, 1, 5, 1, 5, 5]]},
        ],
    }
    path = tmp_path / "coco.json"
    path.write_text(json.dumps(coco))
    return path, images, coco


def _uncompressed_counts(mask: np.ndarray) -> list[int]:
    flat = mask.flatten(order="F")
    counts, current, run = [], 0, 0
    for v in flat:
        if v != current:
            counts.append(run)
            current, run = v, 0
        run += 1
    counts.append(run)
    return counts


def test_import_polygons_and_rle_then_round_trip(tmp_path: Path) -> None:
    path, images, coco = _coco_fixture(tmp_path)
    res = import_coco(path, images, shard_size=1)
    check_instances(res.instances)
    assert res.manifest.column("shard").to_pylist() == [0, 1]
    rows = {(Path(u).name, r["instance_id"]): r for u, r in zip(
        [dict(zip(res.manifest["image_id"].to_pylist(), res.manifest["uri"].to_pylist(), strict=True))[i]
         for i in res.instances["image_id"].to_pylist()], res.instances.to_pylist(), strict=True)}
    assert set(rows) == {("a.png", 1), ("a.png", 2), ("b.jpg", 1)}
    assert rows[("a.png", 1)]["category"] == "dog" and rows[("a.png", 2)]["category"] == "dining table"
    # polygons: exactly pycocotools' rasterisation of the same polygons, merged
    poly = mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(coco["annotations"][0]["segmentation"], 48, 64)))
    assert (decode_rle(rows[("a.png", 1)]["mask_rle"], 48, 64) == poly).all()
    # compressed RLE kept verbatim; uncompressed RLE decodes to the original mask
    assert rows[("a.png", 2)]["mask_rle"] == coco["annotations"][1]["segmentation"]["counts"]
    assert int(decode_rle(rows[("b.jpg", 1)]["mask_rle"], 30, 40)[5:20, 3:33].sum()) == rows[("b.jpg", 1)]["area"] == 450
    codes = {r["item_id"]: r["code"] for r in res.rejects.to_pylist()}
    assert codes == {"4": "coco.crowd_region", "5": "coco.unknown_category", "6": "coco.invalid_segmentation",
                     "7": "coco.image_quarantined"}
    assert all(r["stage"] == "annotations" and r["detail"] and r["raw"] for r in res.rejects.to_pylist())
    quarantine = {Path(r["uri"]).name: r["code"] for r in res.quarantine.to_pylist()}
    assert quarantine == {"missing.png": "unreadable", "wrong_size.png": "size_mismatch"}
    assert res.counts["coco.crowd_region"] == 1 and res.counts["size_mismatch"] == 1

    exported = export_coco(res.manifest, res.instances)
    again_path = tmp_path / "exported.json"
    again_path.write_text(json.dumps(exported))
    again = import_coco(again_path, images, shard_size=1)
    assert again.manifest.to_pylist() == res.manifest.to_pylist()
    assert again.instances.drop(["source"]).to_pylist() == res.instances.drop(["source"]).to_pylist()


def test_annotation_of_an_unknown_image_is_a_counted_reject(tmp_path: Path) -> None:
    path, images, coco = _coco_fixture(tmp_path)
    coco["annotations"].append({"id": 99, "image_id": 12345, "category_id": 1, "iscrowd": 0,
                                "segmentation": [[1, 1, 5, 1, 5, 5]]})
    path.write_text(json.dumps(coco))
    res = import_coco(path, images)
    unknown = [r for r in res.rejects.to_pylist() if r["code"] == "coco.unknown_image"]
    assert [(r["stage"], r["item_id"]) for r in unknown] == [("annotations", "99")]
    assert "12345" in unknown[0]["detail"] and json.loads(unknown[0]["raw"])["image_id"] == 12345
    assert res.counts["coco.unknown_image"] == 1 and res.counts["rejected"] == res.rejects.num_rows == 5
    assert res.instances.num_rows == 3  # the other images' instances are unaffected


@pytest.mark.parametrize("kind", ["dotdot", "absolute", "symlink"])
def test_file_names_that_leave_the_images_folder_are_refused_and_never_opened(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    path, images, coco = _coco_fixture(tmp_path)
    secret = tmp_path / "outside" / "secret.png"
    secret.parent.mkdir()
    Image.new("RGB", (8, 8)).save(secret)
    name = {"dotdot": "../outside/secret.png", "absolute": str(secret), "symlink": "link.png"}[kind]
    if kind == "symlink":
        (images / "link.png").symlink_to(secret)
    coco["images"].append({"id": 11, "file_name": name, "width": 8, "height": 8})
    coco["annotations"].append({"id": 50, "image_id": 11, "category_id": 1, "iscrowd": 0,
                                "segmentation": [[1, 1, 5, 1, 5, 5]]})
    path.write_text(json.dumps(coco))
    opened: list[Path] = []
    real_read_bytes = Path.read_bytes
    monkeypatch.setattr(Path, "read_bytes", lambda p: opened.append(p) or real_read_bytes(p))
    res = import_coco(path, images)
    assert secret.resolve() not in [p.resolve() for p in opened]
    refused = [r for r in res.quarantine.to_pylist() if r["code"] == "outside_images_folder"]
    assert len(refused) == 1 and name in refused[0]["detail"]
    assert {r["item_id"]: r["code"] for r in res.rejects.to_pylist()}["50"] == "coco.image_quarantined"
    assert res.manifest.num_rows == 2 and res.counts["outside_images_folder"] == 1


def test_match_coco_instances_by_relative_name_then_base_name(tmp_path: Path) -> None:
    path, images, coco = _coco_fixture(tmp_path)
    res = import_coco(path, images)
    manifest = res.manifest.to_pylist()
    unlisted = {**manifest[0], "image_id": "f" * 64, "uri": "s3://b/in/images/unlisted.png"}
    resized = {**manifest[0], "image_id": "e" * 64, "uri": "s3://b/in/images/b.jpg"}  # b.jpg is 40x30
    rows = [{**manifest[0], "uri": "s3://b/in/a.png"}, unlisted, resized]
    instances, rejects = match_coco_instances(coco, to_table(rows, "manifest"),
                                              lambda uri: uri.removeprefix("s3://b/in/"))
    assert instances.column("image_id").to_pylist() == [manifest[0]["image_id"]] * 2
    assert {r["item_id"]: r["code"] for r in rejects.to_pylist()} == {
        "f" * 64: "coco.image_not_listed", "e" * 64: "coco.size_mismatch"}
    assert rejects.schema == REJECTS and rejects.column("stage").to_pylist() == ["annotations"] * 2


def test_samples_through_cli_import_and_export(tmp_path: Path) -> None:
    coco_path = write_samples(tmp_path / "samples", count=9)
    assert main(["import-coco", "--coco", str(coco_path), "--images", str(tmp_path / "samples" / "images"),
                 "--out", str(tmp_path / "run")]) == 0
    run = open_root(str(tmp_path / "run"), load_params())  # the layout of a run in the bucket
    manifest, instances = run.read_all("manifest"), run.read_all("instances")
    assert manifest.num_rows == 9 and read_parquet(tmp_path / "run" / "quarantine" / "shard-00000.parquet").num_rows == 0
    check_instances(instances, {r["image_id"]: (r["height"], r["width"]) for r in manifest.to_pylist()})
    per_image = {i: instances["image_id"].to_pylist().count(i) for i in manifest["image_id"].to_pylist()}
    assert min(per_image.values()) >= 4 and instances.num_rows == len(json.loads(coco_path.read_text())["annotations"])
    # samples' masks are unchanged by the import (compressed RLE kept verbatim)
    original = sorted(a["segmentation"]["counts"] for a in json.loads(coco_path.read_text())["annotations"])
    assert sorted(instances["mask_rle"].to_pylist()) == original
    assert main(["export-coco", "--root", str(tmp_path / "run"), "--coco", str(tmp_path / "out.json")]) == 0
    exported = json.loads((tmp_path / "out.json").read_text())
    assert sorted(a["segmentation"]["counts"] for a in exported["annotations"]) == original


def test_an_imported_root_runs_the_questions_command_in_the_run_layout(tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """``import-coco --out ROOT`` then ``questions --root ROOT``: tables, rejects and stats where a DAG run keeps
    them in the bucket; a second call with ``--resume`` does nothing."""
    coco_path = write_samples(tmp_path / "samples", count=4)
    root = str(tmp_path / "run")
    assert main(["--profile", "demo", "import-coco", "--coco", str(coco_path), "--images",
                 str(tmp_path / "samples" / "images"), "--out", root]) == 0
    capsys.readouterr()
    assert main(["--profile", "demo", "questions", "--root", root]) == 0
    out = json.loads(capsys.readouterr().out)
    run = open_root(root, load_params())
    assert out["shards"] == [0] and out["questions"] == run.read_all("questions").num_rows > 0
    assert run.store.get_json(run.keys.stats("questions", 0))["questions"] == out["questions"]
    assert run.read_rejects("questions").num_rows == out["rejected"]
    assert main(["--profile", "demo", "questions", "--root", root, "--resume"]) == 0
    assert json.loads(capsys.readouterr().out) == {"shards": []}  # shard 0 is done: nothing ran


def test_samples_are_deterministic_with_varied_scenes(tmp_path: Path) -> None:
    a = write_samples(tmp_path / "a", count=10)
    b = write_samples(tmp_path / "b", count=10)
    assert a.read_text() == b.read_text()
    for f in (tmp_path / "a" / "images").iterdir():
        assert f.read_bytes() == (tmp_path / "b" / "images" / f.name).read_bytes()
    coco = json.loads(a.read_text())
    names = {c["id"]: c["name"] for c in coco["categories"]}
    assert {"person", "chair", "circle", "square", "triangle"} <= set(names.values())
    flip = next(i for i in coco["images"] if i["file_name"] == "voc-flip.jpg")
    orig = next(i for i in coco["images"] if i["file_name"] == "voc.jpg")
    def masks(img_id: int) -> list[np.ndarray]:
        return [decode_rle(x["segmentation"]["counts"], *x["segmentation"]["size"])
                for x in coco["annotations"] if x["image_id"] == img_id]
    assert all((m1[:, ::-1] == m2).all() for m1, m2 in zip(masks(orig["id"]), masks(flip["id"]), strict=True))


def test_mask_dedup_keeps_highest_score() -> None:
    a = np.zeros((20, 20), bool)
    a[2:12, 2:12] = True
    b = a.copy()
    b[11, 2:12] = False  # IoU 0.9 with a
    c = np.zeros((20, 20), bool)
    c[14:18, 14:18] = True
    enc = [encode_mask(m) for m in (a, b, c)]
    assert suppress_duplicates(enc, [0.5, 0.9, 0.1], 0.7) == [1, 2]
    assert suppress_duplicates(enc, [0.5, 0.9, 0.1], 0.95) == [1, 0, 2]
    assert enc[0].area == 100 and enc[0].bbox == (2.0, 2.0, 10.0, 10.0)
