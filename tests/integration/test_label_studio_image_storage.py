"""Images that never expire: tasks reference ``s3://`` objects, and the project's S3 source storage on
the real Label Studio signs them each time a task is opened (SeaweedFS as the object store)."""

from __future__ import annotations

import base64
import io
import time
import uuid
from datetime import UTC, datetime
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from pipelines.annotation.client import LabelStudioClient, LabelStudioCredentials
from pipelines.annotation.project import ImageStorage, ensure_image_storage, ensure_project
from pipelines.annotation.push import push_questions, s3_image_refs

pytestmark = pytest.mark.integration


def png() -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (10, 200, 10)).save(buf, format="PNG")
    return buf.getvalue()


def test_the_reader_key_reads_and_lists_the_bucket_and_cannot_write(s3_server, object_store):
    from minio.error import S3Error

    from pipelines.store import ObjectStore, S3Credentials

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


def test_a_task_pushed_long_ago_still_shows_its_image(label_studio, object_store, s3_server):
    creds = LabelStudioCredentials.from_mapping(label_studio.credentials())
    admin = LabelStudioClient.from_credentials(creds)
    body = png()
    key = object_store.put_bytes(f"tests/storage/{uuid.uuid4().hex[:8]}/a.png", body, "image/png")
    pid = int(ensure_project(admin, f"img-{uuid.uuid4().hex[:8]}")["id"])
    s3 = object_store.creds
    c = s3_server.credentials()  # Label Studio signs with the bucket's read-only key
    storage = ImageStorage(object_store.bucket, s3.url, c["reader_access_key"], c["reader_secret_key"],
                           presign_ttl_min=1)
    first = ensure_image_storage(admin, pid, storage)
    assert ensure_image_storage(admin, pid, storage)["id"] == first["id"]  # idempotent
    assert len(admin.s3_import_storages(pid)) == 1
    assert c["reader_secret_key"] not in str(admin.s3_import_storages(pid))  # the server never returns it

    q = {"question_id": "q1", "image_id": "a", "question": "How many?", "answer": "1"}
    push_questions(admin, pid, [q], s3_image_refs(object_store.bucket, {"a": f"s3://{object_store.bucket}/{key}"}),
                   batch="b")
    stored = next(iter(admin.iter_tasks(pid, fields="task_only")))
    # what the task holds is the s3:// reference (Label Studio shows it as its resolve link): no
    # signature, no expiry, no secret
    ref = f"s3://{object_store.bucket}/{key}".encode()
    assert stored["data"]["image"].endswith("fileuri=" + base64.urlsafe_b64encode(ref).decode())
    assert "X-Amz" not in stored["data"]["image"] and s3.secret_key not in str(stored)
    pushed_at = datetime.now(UTC)
    time.sleep(1.5)

    # The reference carries no lifetime of its own: what an annotator opens is signed at that moment,
    # valid presign_ttl (1 minute here), however old the push is.
    opened = admin.get_task(int(stored["id"]))["data"]["image"]
    assert "/resolve/" in opened and "fileuri=" in opened
    headers = {"Authorization": f"Token {creds.token}"}
    r = httpx.get(opened, headers=headers, follow_redirects=False, timeout=10)
    assert r.status_code in (302, 303, 307), r.text[:200]
    signed = r.headers["location"]
    query = parse_qs(urlsplit(signed).query)
    signed_at = datetime.strptime(query["X-Amz-Date"][0], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    assert signed_at.replace(microsecond=0) >= pushed_at.replace(microsecond=0)
    assert query["X-Amz-Expires"] == ["60"]
    assert httpx.get(signed, timeout=10).content == body
    admin.close()
