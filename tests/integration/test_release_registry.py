"""Dataset releases against the real S3 server: publish, consumer pull, two releases, secrets.

Every test uses its own DVC remote prefix in the shared ``hopchain-dvc`` bucket and its own
registry (a local bare git repository under a temporary folder).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pipelines.release.dvc import DVC_BIN, tool_env
from pipelines.release.registry import publish, verify_checkout
from pipelines.release.snapshot import ReleaseSources
from pipelines.release.synthetic import make_inputs
from tests.support.stack import REPO_ROOT, params_with_ports

pytestmark = pytest.mark.integration

DAY = dt.date(2026, 5, 4)


def _params(s3_server, prefix: str, **release):
    base = params_with_ports(s3_server.params.stack.ports)
    rel = base.release.model_copy(update={"dvc_remote_prefix": prefix, "rows_per_shard": 4,
                                          "eval_fraction": 0.3, **release})
    return base.model_copy(update={"release": rel})


def _upload_images(object_store, inputs, run: str) -> str:
    """Put the images in the object store and point a manifest copy at s3:// uris."""
    import pyarrow as pa

    table = pq.read_table(inputs.manifest)
    uris = []
    for uri in table.column("uri").to_pylist():
        key = f"inputs/{run}/{Path(uri).name}"
        object_store.put_bytes(key, Path(uri).read_bytes(), "image/jpeg")
        uris.append(f"s3://{object_store.bucket}/{key}")
    table = table.set_column(table.schema.get_field_index("uri"), "uri", pa.array(uris, pa.string()))
    out = inputs.manifest.with_name("manifest-s3.parquet")
    pq.write_table(table, out)
    return str(out)


def _consumer_env(s3_creds) -> dict[str, str]:
    env = tool_env(s3_creds)
    env["HF_DATASETS_OFFLINE"] = "1"
    return env


def _run(args, cwd, env, timeout=120) -> subprocess.CompletedProcess:
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{args[:3]} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
    return proc


def _clone_and_pull(registry: Path, tag: str, dest: Path, env: dict[str, str]) -> Path:
    _run(["git", "clone", "--quiet", str(registry), str(dest)], None, env)
    _run(["git", "-c", "advice.detachedHead=false", "checkout", "--quiet", tag], dest, env)
    _run([str(DVC_BIN), "pull"], dest, env)
    return dest


@pytest.fixture(scope="module")
def registry_setup(tmp_path_factory, s3_server, s3_creds):
    root = tmp_path_factory.mktemp("registry")
    return {"root": root, "registry": root / "registry.git", "workdir": root / "work",
            "prefix": f"releases-{uuid.uuid4().hex[:8]}"}


@pytest.fixture(scope="module")
def first_release(registry_setup, s3_server, s3_creds, tmp_path_factory):
    """The first release, published through the `hopchain release` command line."""
    from pipelines.store import ObjectStore

    inputs = make_inputs(tmp_path_factory.mktemp("inputs1"), n_images=10, questions_per_image=3, seed=1)
    manifest = _upload_images(ObjectStore(s3_creds, "hopchain"), inputs, "r1")
    params = _params(s3_server, registry_setup["prefix"])
    params_file = registry_setup["root"] / "params.yaml"
    import yaml

    raw = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    raw["release"] = params.release.model_dump()
    params_file.write_text(yaml.safe_dump(raw))
    env = dict(os.environ, HOPCHAIN_S3_ENDPOINT=s3_creds.url, HOPCHAIN_S3_ACCESS_KEY=s3_creds.access_key,
               HOPCHAIN_S3_SECRET_KEY=s3_creds.secret_key, OMP_NUM_THREADS="1")
    env.pop("HOPCHAIN_PROFILE", None)
    proc = subprocess.run(
        [sys.executable, "-m", "pipelines.cli", "--params", str(params_file), "release",
         "--consensus", str(inputs.consensus), "--questions", str(inputs.questions),
         "--instances", str(inputs.instances), "--manifest", manifest, "--images-from", "s3",
         "--registry", str(registry_setup["registry"]), "--workdir", str(registry_setup["workdir"]),
         "--date", DAY.isoformat(), "--run-id", "manual-1"],
        capture_output=True, text=True, timeout=300, env=env, cwd=REPO_ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    tag = proc.stdout.strip().splitlines()[-1]
    assert s3_creds.secret_key not in proc.stdout + proc.stderr
    return {"tag": tag, "inputs": inputs, "params": params, "stderr": proc.stderr}


def test_consumer_clones_pulls_and_loads_the_release(first_release, registry_setup, s3_creds, tmp_path):
    tag, inputs = first_release["tag"], first_release["inputs"]
    assert tag == "v2026.05.04"
    env = _consumer_env(s3_creds)
    wc = _clone_and_pull(registry_setup["registry"], tag, tmp_path / "consumer", env)
    assert verify_checkout(wc) > 0
    status = _run([str(DVC_BIN), "status", "--json"], wc, env)
    assert json.loads(status.stdout or "{}") == {}

    import datasets

    index = json.loads((wc / "release" / "index.json").read_text())
    files = {s: str(wc / "data" / s / "*.parquet") for s in ("train", "eval") if index["splits"][s]["shards"]}
    ds = datasets.load_dataset("parquet", data_files=files, cache_dir=str(tmp_path / "hf"))
    consensus = {r["question_id"]: r for r in pq.read_table(inputs.consensus).to_pylist()}
    rows = [r for split in ds.values() for r in split]
    assert len(rows) == inputs.accepted
    for r in rows:
        assert r["images"][0].size == (r["width"], r["height"])
        r["images"][0].load()  # decodes
        assert r["question"].startswith("How many")
        assert consensus[r["question_id"]]["status"] == "accepted"
        assert r["answer"] == consensus[r["question_id"]]["agreed_answer"]  # the human answer
    train_images = set(ds["train"]["image_id"]) if "train" in ds else set()
    eval_images = set(ds["eval"]["image_id"]) if "eval" in ds else set()
    assert not train_images & eval_images

    coco = json.loads((wc / "release" / "coco" / "train" / "part-00001.json").read_text())
    assert {i["hopchain_image_id"] for i in coco["images"]} == train_images
    assert (wc / "README.md").read_text().count(".png") >= 4
    metrics = json.loads((wc / "metrics.json").read_text())
    assert metrics["released"]["questions"] == inputs.accepted
    assert "manual-1" in (wc / "README.md").read_text()
    # the root card's configs make the pulled folder one call for datasets
    whole = datasets.load_dataset(str(wc), cache_dir=str(tmp_path / "hf-root"))
    assert sum(len(whole[s]) for s in whole) == inputs.accepted

    # `dvc repro` at the tag rebuilds byte-identical outputs from the DVC-tracked data folder.
    _run([str(DVC_BIN), "repro", "--force"], wc, env, timeout=300)
    assert json.loads(_run([str(DVC_BIN), "status", "--json"], wc, env).stdout or "{}") == {}
    assert _run(["git", "status", "--porcelain"], wc, env).stdout.strip() == ""

    out = tmp_path / "got.json"
    _run([str(DVC_BIN), "get", str(registry_setup["registry"]), "release/coco/train/part-00001.json", "--rev", tag,
          "-o", str(out)], tmp_path, env)
    assert {i["hopchain_image_id"] for i in json.loads(out.read_text())["images"]} == train_images


def _remote_objects(s3_creds, prefix: str) -> dict[str, int]:
    from pipelines.store import ObjectStore

    store = ObjectStore(s3_creds, "hopchain-dvc")
    return {o.object_name: o.size for o in store.client.list_objects("hopchain-dvc", prefix=prefix + "/",
                                                                     recursive=True)}


def _data_digests(wc: Path) -> dict[str, str]:
    import hashlib

    return {p.relative_to(wc).as_posix(): hashlib.md5(p.read_bytes()).hexdigest()
            for p in sorted((wc / "data").rglob("*")) if p.is_file()}


def test_second_release_appends_a_part_pushes_only_new_objects_and_the_first_tag_still_pulls(
        first_release, registry_setup, s3_server, s3_creds, tmp_path):
    env = _consumer_env(s3_creds)
    # What the first tag holds, before anything else is released.
    before = _clone_and_pull(registry_setup["registry"], first_release["tag"], tmp_path / "before", env)
    lock_before = (before / "dvc.lock").read_text()
    files_before = _data_digests(before)
    rows_before = sum(pq.read_metadata(before / f).num_rows for f in files_before if f.startswith(("data/train/",
                                                                                                  "data/eval/")))
    remote_before = _remote_objects(s3_creds, registry_setup["prefix"])

    inputs = make_inputs(tmp_path / "inputs2", n_images=4, questions_per_image=3, seed=2)
    result = publish(
        first_release["params"],
        ReleaseSources(str(inputs.consensus), str(inputs.questions), str(inputs.instances), str(inputs.manifest),
                       images_from=str(inputs.images)),
        creds=s3_creds, workdir=registry_setup["workdir"], registry_url=str(registry_setup["registry"]), day=DAY,
    )
    assert result.tag == "v2026.05.04.2" and result.part is not None and result.part.part == 2
    assert f"Metrics diff against {first_release['tag']}" in result.notes
    assert "released.questions" in result.notes  # the `dvc metrics diff --md` table
    tag_message = _run(["git", "tag", "-l", "--format=%(contents)", result.tag], registry_setup["registry"], env).stdout
    assert "released.questions" in tag_message

    # only new objects went up: the new part's files, the derived files that changed, the listings
    remote_after = _remote_objects(s3_creds, registry_setup["prefix"])
    assert set(remote_before) <= set(remote_after)
    new_objects = set(remote_after) - set(remote_before)
    second = _clone_and_pull(registry_setup["registry"], result.tag, tmp_path / "second", env)
    verify_checkout(second)
    files_after = _data_digests(second)
    assert all(files_after[f] == md5 for f, md5 in files_before.items())  # earlier files byte-identical
    new_data_files = {f for f in files_after if f not in files_before}
    assert new_data_files and all("part-00002" in f for f in new_data_files)
    # every object sent is a new data file, a derived file of the second tag, or a folder listing
    import hashlib

    derived = {hashlib.md5(p.read_bytes()).hexdigest() for p in (second / "release").rglob("*") if p.is_file()}
    sent_md5 = {k.split("/files/md5/", 1)[1].replace("/", "") for k in new_objects}
    new_md5 = {files_after[f] for f in new_data_files}
    assert {m for m in sent_md5 if not m.endswith(".dir")} <= new_md5 | derived
    in_remote = {k.split("/files/md5/", 1)[1].replace("/", "") for k in remote_after}
    assert new_md5 <= in_remote  # and every new data file is there (sent now, or equal to an earlier file)
    rows2 = sum(pq.read_metadata(second / f).num_rows for f in files_after if f.startswith(("data/train/",
                                                                                            "data/eval/")))
    assert rows2 == rows_before + inputs.accepted

    first = _clone_and_pull(registry_setup["registry"], first_release["tag"], tmp_path / "first", env)
    assert (first / "dvc.lock").read_text() == lock_before
    verify_checkout(first)
    assert _data_digests(first) == files_before


def test_republishing_unchanged_inputs_returns_the_existing_tag(first_release, registry_setup, s3_creds):
    inputs = first_release["inputs"]
    # The first release's tables again: nothing is new, so no part and no tag are made.
    sources = ReleaseSources(str(inputs.consensus), str(inputs.questions), str(inputs.instances),
                             str(inputs.manifest), images_from=str(inputs.images))
    kw = dict(creds=s3_creds, workdir=registry_setup["workdir"], registry_url=str(registry_setup["registry"]),
              day=DAY + dt.timedelta(days=1))
    again = publish(first_release["params"], sources, **kw)
    assert again.reused and again.pushed_files == 0 and again.tag.startswith("v2026.05.04")


def test_no_committed_file_in_any_revision_holds_the_s3_secret(first_release, registry_setup, s3_creds):
    registry = registry_setup["registry"]
    blobs = subprocess.run(["git", "cat-file", "--batch-all-objects", "--batch"], cwd=registry,
                           capture_output=True, timeout=60, check=True).stdout
    assert len(blobs) > 10_000  # the registry really holds the releases' files
    assert b"dvc.lock" in blobs and b"endpointurl" in blobs
    assert s3_creds.secret_key.encode() not in blobs
    assert s3_creds.access_key.encode() not in blobs
    refs = subprocess.run(["git", "for-each-ref", "--format=%(refname) %(contents)"], cwd=registry,
                          capture_output=True, text=True, timeout=60, check=True).stdout
    assert s3_creds.secret_key not in refs
