"""Image references that never expire: s3:// refs, and the image storage bootstrap (idempotent, no secret shown)."""

from __future__ import annotations

import pytest

from pipelines.annotation.project import IMAGE_STORAGE_TITLE, ImageStorage, ensure_image_storage
from pipelines.annotation.push import build_task, s3_image_refs

pytestmark = pytest.mark.unit


def test_s3_refs_name_the_object_and_refuse_other_buckets():
    ref = s3_image_refs("hopchain", {"a": "s3://hopchain/inputs/a.png", "b": "inputs/b.png", "x": "s3://other/x.png"})
    assert ref("a") == "s3://hopchain/inputs/a.png" and ref("b") == "s3://hopchain/inputs/b.png"
    with pytest.raises(ValueError, match="not an object in bucket"):
        ref("x")
    data = build_task({"question": "?", "question_id": "q", "image_id": "a"}, ref("a"), "b1")["data"]
    assert data["image"] == "s3://hopchain/inputs/a.png" and "X-Amz" not in str(data)


class FakeStorages:
    def __init__(self) -> None:
        self.storages: list[dict] = []
        self.calls: list[str] = []

    def s3_import_storages(self, project_id: int) -> list[dict]:
        # the server never returns the secret
        return [{k: v for k, v in s.items() if k != "aws_secret_access_key"} for s in self.storages]

    def create_s3_import_storage(self, project_id: int, settings: dict) -> dict:
        self.calls.append("create")
        self.storages.append({"id": len(self.storages) + 1, "project": project_id, **settings})
        return self.storages[-1]

    def update_s3_import_storage(self, storage_id: int, settings: dict) -> dict:
        self.calls.append("update")
        self.storages[storage_id - 1].update(settings)
        return self.storages[storage_id - 1]


def test_image_storage_is_created_once_and_repaired_on_drift():
    fake = FakeStorages()
    storage = ImageStorage("hopchain", "http://127.0.0.1:9000", "AK", "very-secret")
    assert "very-secret" not in repr(storage)
    ensure_image_storage(fake, 3, storage)  # type: ignore[arg-type]
    ensure_image_storage(fake, 3, storage)  # type: ignore[arg-type]
    assert fake.calls == ["create"]
    got = fake.storages[0]
    assert got["title"] == IMAGE_STORAGE_TITLE and got["presign"] is True and got["bucket"] == "hopchain"
    fake.storages[0]["presign_ttl"] = 1  # drift
    ensure_image_storage(fake, 3, storage)  # type: ignore[arg-type]
    assert fake.calls == ["create", "update"] and fake.storages[0]["presign_ttl"] == 60


def test_the_push_gives_label_studio_the_read_only_key(caplog):
    """The push's image storage carries the reader key when one is configured; only without one does it
    fall back to the platform's own key, and it says so."""
    from pipelines.annotation.tasks import _image_refs
    from pipelines.config import load_params
    from pipelines.runner import RunEnv
    from pipelines.store import S3Credentials
    from tests.support.memory_store import MemoryStore

    store = MemoryStore()
    store.creds = S3Credentials("http://127.0.0.1:9000", "platform-key", "platform-secret")  # type: ignore[attr-defined]
    reader = S3Credentials("http://127.0.0.1:9000", "reader-key", "reader-secret")
    uris = {"a": "s3://memory/inputs/a.png"}
    for image_reader, key in ((lambda: reader, "reader-key"), (None, "platform-key")):
        fake = FakeStorages()
        env = RunEnv(load_params(), store, "run-1", image_reader=image_reader)  # type: ignore[arg-type]
        caplog.clear()
        kind, ref = _image_refs(env, fake, 3, uris)
        assert kind == "s3" and ref("a") == "s3://memory/inputs/a.png"
        assert fake.storages[0]["aws_access_key_id"] == key
        assert ("read-write key" in caplog.text) == (key == "platform-key")
