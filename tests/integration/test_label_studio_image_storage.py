"""Task images through a key that cannot write (issue 30, item 3), against the real services.

* SeaweedFS: the push proves the image key read-only (reads the probe, is refused a write); the
  platform's own key, or a wrong secret, is refused with one line.
* The push on a real Label Studio: without a read-only key it stops before importing anything and the
  batch is pushed later; with one, tasks hold ``s3://`` references only.
* The local stack (the production set-up: Label Studio reaches the store through its own
  ``S3_ENDPOINT``, its SSRF guard keeps every private address banned): an opened task's image is
  streamed by Label Studio's storage proxy, so the browser never sees a signed URL, a key or the store.
"""

from __future__ import annotations

import io
import uuid

import httpx
import pyarrow as pa
import pytest

from pipelines.annotation import tasks as annotation_tasks
from pipelines.annotation.client import LabelStudioClient, LabelStudioError
from pipelines.annotation.image_key import ImageKeyRefused, reader_store, verify_read_only
from pipelines.annotation.project import ImageStorage, ensure_image_storage, ensure_project
from pipelines.config import AnnotationConfig, Params, StoreConfig
from pipelines.runner import RunEnv
from pipelines.store import ObjectStore, S3Credentials
from tests.support.image_reader import image_reader, stack_image_reader

pytestmark = pytest.mark.integration


def png() -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (10, 200, 10)).save(buf, format="PNG")
    return buf.getvalue()


def test_the_reader_key_reads_and_lists_the_bucket_and_cannot_write(s3_server, object_store):
    from minio.error import S3Error

    c = s3_server.credentials()
    reader = ObjectStore(S3Credentials(c["endpoint"], c["reader_access_key"], c["reader_secret_key"]),
                         object_store.bucket, retries=0)
    key = object_store.put_bytes(f"tests/reader/{uuid.uuid4().hex[:8]}/a.png", png(), "image/png")
    assert reader.get_bytes(key) == png() and key in reader.list(key.rsplit("/", 1)[0])
    with pytest.raises(S3Error) as denied:
        reader.client.put_object(object_store.bucket, key + ".new", io.BytesIO(b"x"), 1)
    assert denied.value.code == "AccessDenied"
    with pytest.raises(S3Error):
        reader.client.remove_object(object_store.bucket, key)
    assert object_store.get_bytes(key) == png()  # still there


def test_the_probe_tells_a_read_only_key_from_one_that_can_write_or_cannot_read(s3_server, object_store):
    probe = f"tests/probe-{uuid.uuid4().hex[:8]}/image-key-probe"
    c = s3_server.credentials()
    verify_read_only(object_store, reader_store(image_reader(s3_server)(), object_store.bucket), probe)

    platform_key = S3Credentials(c["endpoint"], c["access_key"], c["secret_key"])
    with pytest.raises(ImageKeyRefused, match="can write to bucket hopchain") as wrote:
        verify_read_only(object_store, reader_store(platform_key, object_store.bucket), probe)
    assert "\n" not in str(wrote.value) and c["secret_key"] not in str(wrote.value)
    assert object_store.get_bytes(probe) != b"written with the image key"  # put back

    wrong = S3Credentials(c["endpoint"], c["reader_access_key"], "not-the-secret")
    with pytest.raises(ImageKeyRefused, match=r"cannot read .*\(SignatureDoesNotMatch\)"):
        verify_read_only(object_store, reader_store(wrong, object_store.bucket), probe)


def _shard(env: RunEnv, store: ObjectStore, tag: str) -> None:
    from expectations.samples import sample_tables

    tables = sample_tables(n_images=2, questions_per_image=2, seed=5)
    for r in tables["manifest"].to_pylist():
        store.put_bytes(f"k-{tag}/{r['image_id']}.png", png(), "image/png")
    env.write_table("manifest", 0, pa.Table.from_pylist(
        [{**r, "uri": f"s3://{store.bucket}/k-{tag}/{r['image_id']}.png", "shard": 0}
         for r in tables["manifest"].to_pylist()]))
    env.write_table("questions", 0, tables["questions"])


def _params(tag: str) -> Params:
    return Params(store=StoreConfig(runs_prefix=f"k-{tag}/runs", batches_prefix=f"k-{tag}/batches",
                                    consensus_prefix=f"k-{tag}/consensus", releases_prefix=f"k-{tag}/releases",
                                    journal_prefix=f"k-{tag}/journal", annotators_prefix=f"k-{tag}/annotators"),
                  annotation=AnnotationConfig(project_title=f"keys-{tag}", handout="parallel"))


def test_without_a_read_only_key_the_push_stops_and_the_batch_is_pushed_later(label_studio, object_store,
                                                                              s3_server):
    c = label_studio.credentials()
    tag = uuid.uuid4().hex[:8]
    params = _params(tag)
    make = lambda: LabelStudioClient(c["url"], c["token"])
    env = RunEnv(params, object_store, f"nightly-{tag}", label_studio=make)
    _shard(env, object_store, tag)
    with pytest.raises(ImageKeyRefused, match="no read-only image key") as refused:
        annotation_tasks.push(env, 0)
    assert "\n" not in str(refused.value)
    with make() as admin:
        pid = int(admin.find_project(params.annotation.project_title)["id"])
        assert admin.s3_import_storages(pid) == [] and list(admin.iter_tasks(pid, fields="task_only")) == []
    assert env.ledger.open_batches() == []  # nothing recorded: the batch is still to push

    s3 = s3_server.credentials()
    platform_as_reader = S3Credentials(s3["endpoint"], s3["access_key"], s3["secret_key"])
    with pytest.raises(ImageKeyRefused, match="can write"):
        annotation_tasks.push(RunEnv(params, object_store, env.run_id, label_studio=make,
                                     image_reader=lambda: platform_as_reader), 0)

    fixed = RunEnv(params, object_store, env.run_id, label_studio=make, image_reader=image_reader(s3_server))
    batch = annotation_tasks.push(fixed, 0)
    assert batch.created_tasks == 4 and batch.image_refs == "s3"
    with make() as admin:
        (storage,) = admin.s3_import_storages(pid)
        # (Label Studio returns neither half of the key: which key it holds shows in what it can read,
        # the local-stack test below)
        assert storage["presign"] is False and str(storage).count(s3["reader_secret_key"]) == 0
        data = [t["data"] for t in admin.iter_tasks(pid, fields="task_only")]
    assert all("X-Amz" not in str(d) and s3["access_key"] not in str(d) for d in data)


def test_the_local_stack_streams_images_through_label_studio_with_its_ssrf_guard_whole(local_stack):
    """The production path: the reader connection says Label Studio uses its own S3_ENDPOINT."""
    from tests.support.faults import ls_client, stack_store

    tag = uuid.uuid4().hex[:8]
    store = stack_store(local_stack)
    params = _params(tag)
    env = RunEnv(params, store, f"nightly-{tag}", label_studio=lambda: ls_client(local_stack.labelstudio),
                 image_reader=stack_image_reader(local_stack))
    _shard(env, store, tag)
    batch = annotation_tasks.push(env, 0)
    creds = local_stack.labelstudio.credentials()
    headers = {"Authorization": f"Token {creds['token']}"}
    with ls_client(local_stack.labelstudio) as admin:
        (storage,) = admin.s3_import_storages(int(batch.project_id or 0))
        assert not storage.get("s3endpoint") and storage["presign"] is False
        task = next(iter(admin.iter_tasks(int(batch.project_id or 0), fields="task_only")))
        opened = admin.get_task(int(task["id"]))["data"]["image"]
        assert "/resolve/" in opened and "fileuri=" in opened
        r = httpx.get(opened, headers=headers, follow_redirects=False, timeout=10)
        # the bytes themselves: no redirect to a signed URL, nothing of the store in what comes back
        assert r.status_code == 200 and r.content == png(), (r.status_code, r.text[:200])
        assert "location" not in r.headers and "X-Amz" not in str(r.headers)
        assert httpx.get(opened, follow_redirects=False, timeout=10).status_code in (401, 403, 302)  # login needed

        # The guard is whole: a storage naming the loopback store (what a user could type) is refused.
        s3 = local_stack.s3.credentials()
        typed = ImageStorage(store.bucket, s3["endpoint"], s3["reader_access_key"], s3["reader_secret_key"])
        project = ensure_project(admin, f"typed-{tag}")
        with pytest.raises(LabelStudioError) as refused:
            ensure_image_storage(admin, int(project["id"]), typed)
        assert refused.value.status_code in (400, 403), refused.value.body
        assert admin.s3_import_storages(int(project["id"])) == []
