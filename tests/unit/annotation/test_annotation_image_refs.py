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
    storage = ImageStorage("hopchain", None, "AK", "very-secret")
    assert "very-secret" not in repr(storage)
    ensure_image_storage(fake, 3, storage)  # type: ignore[arg-type]
    ensure_image_storage(fake, 3, storage)  # type: ignore[arg-type]
    assert fake.calls == ["create"]
    got = fake.storages[0]
    # the storage proxy (no signed URL reaches a browser) and Label Studio's own S3_ENDPOINT
    assert got["title"] == IMAGE_STORAGE_TITLE and got["presign"] is False and got["bucket"] == "hopchain"
    assert got["s3endpoint"] == ""
    fake.storages[0]["s3endpoint"] = None  # how the server may report "none": not a drift
    ensure_image_storage(fake, 3, storage)  # type: ignore[arg-type]
    assert fake.calls == ["create"]
    fake.storages[0]["presign"] = True  # drift
    ensure_image_storage(fake, 3, storage)  # type: ignore[arg-type]
    assert fake.calls == ["create", "update"] and fake.storages[0]["presign"] is False
