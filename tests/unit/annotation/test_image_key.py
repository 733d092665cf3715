"""Keys fail closed (issue 30, item 3): the push hands Label Studio only a key it has proved read-only,
and stops with one line otherwise; nothing of the batch is imported or recorded. The same checks run
against the real SeaweedFS in ``tests/integration/test_label_studio_image_storage.py``."""

from __future__ import annotations

from typing import Any

import pytest

from pipelines.annotation.image_key import LABEL_STUDIO_S3_ENDPOINT, ImageKeyRefused, ReaderKey, verify_read_only
from pipelines.config import Refused, load_params
from pipelines.runner import RunEnv
from pipelines.store import S3Credentials
from tests.support.memory_store import MemoryStore
from tests.unit.annotation.test_annotation_image_refs import FakeStorages

pytestmark = pytest.mark.unit

PROBE = "annotators/image-key-probe"


class SharedView:
    """The same bucket through another key: ``writable`` says whether that key may write."""

    def __init__(self, store: MemoryStore, writable: bool) -> None:
        self.store, self.writable, self.bucket = store, writable, store.bucket

    def get_bytes(self, key: str) -> bytes:
        return self.store.get_bytes(key)

    def put_bytes(self, key: str, data: bytes, content_type: str = "") -> str:
        if not self.writable:
            raise PermissionError("AccessDenied")
        return self.store.put_bytes(key, data, content_type)


def test_a_read_only_key_passes_and_a_key_that_can_write_is_refused() -> None:
    store = MemoryStore()
    verify_read_only(store, SharedView(store, writable=False), PROBE)
    with pytest.raises(ImageKeyRefused, match="can write to bucket memory") as err:
        verify_read_only(store, SharedView(store, writable=True), PROBE, token=lambda: "fresh")
    assert "\n" not in str(err.value) and isinstance(err.value, Refused)  # one line; Airflow: no retry
    assert store.get_bytes(PROBE) == b"fresh"  # the probe is put back


def test_a_key_that_cannot_read_is_refused() -> None:
    with pytest.raises(ImageKeyRefused, match=r"cannot read s3://memory/.*\(NoSuchKey\)"):
        verify_read_only(MemoryStore(), SharedView(MemoryStore(), writable=False), PROBE)


def test_the_reader_key_hides_its_secret_and_names_the_endpoint_label_studio_uses() -> None:
    own = ReaderKey("http://minio:9000", "AK", "very-secret", label_studio_endpoint=LABEL_STUDIO_S3_ENDPOINT)
    assert "very-secret" not in repr(own) and own.storage_endpoint is None
    assert ReaderKey("http://127.0.0.1:9000", "AK", "s").storage_endpoint == "http://127.0.0.1:9000"
    from pipelines.ops import deploy

    assert deploy.LABEL_STUDIO_S3_ENDPOINT == LABEL_STUDIO_S3_ENDPOINT


def _env(store: MemoryStore, reader: Any) -> RunEnv:
    return RunEnv(load_params(), store, "run-1", image_reader=reader)  # type: ignore[arg-type]


def _shared(store: MemoryStore, writable: bool) -> Any:
    return lambda creds, bucket: SharedView(store, writable)


def test_without_a_read_only_key_the_push_stops_with_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    from pipelines.annotation import image_key
    from pipelines.annotation.tasks import _image_refs

    store = MemoryStore()
    store.creds = S3Credentials("http://127.0.0.1:9000", "platform-key", "platform-secret")  # type: ignore[attr-defined]
    monkeypatch.setattr(image_key, "reader_store", _shared(store, writable=False))
    for reader in (None, lambda: None):  # no connection at all, or one without a key
        fake = FakeStorages()
        with pytest.raises(ImageKeyRefused, match="no read-only image key") as err:
            _image_refs(_env(store, reader), fake, 3, {"a": "s3://memory/inputs/a.png"})
        assert "\n" not in str(err.value) and fake.storages == []  # Label Studio got no key at all


def test_a_reader_key_that_can_write_never_reaches_label_studio(monkeypatch: pytest.MonkeyPatch) -> None:
    from pipelines.annotation import image_key
    from pipelines.annotation.tasks import _image_refs

    store = MemoryStore()
    writer = S3Credentials("http://127.0.0.1:9000", "platform-key", "platform-secret")
    monkeypatch.setattr(image_key, "reader_store", _shared(store, writable=True))
    fake = FakeStorages()
    with pytest.raises(ImageKeyRefused, match="can write"):
        _image_refs(_env(store, lambda: writer), fake, 3, {"a": "s3://memory/inputs/a.png"})
    assert fake.storages == []


def test_the_push_gives_label_studio_the_proved_read_only_key(monkeypatch: pytest.MonkeyPatch) -> None:
    from pipelines.annotation import image_key
    from pipelines.annotation.tasks import _image_refs

    store = MemoryStore()
    monkeypatch.setattr(image_key, "reader_store", _shared(store, writable=False))
    reader = ReaderKey("http://minio:9000", "reader-key", "reader-secret",
                       label_studio_endpoint=LABEL_STUDIO_S3_ENDPOINT)
    fake = FakeStorages()
    kind, ref = _image_refs(_env(store, lambda: reader), fake, 3, {"a": "s3://memory/inputs/a.png"})
    assert kind == "s3" and ref("a") == "s3://memory/inputs/a.png"
    got = fake.storages[0]
    assert got["aws_access_key_id"] == "reader-key" and got["s3endpoint"] == "" and got["presign"] is False


def test_label_studio_refusing_the_storage_stops_the_push(monkeypatch: pytest.MonkeyPatch) -> None:
    """No fallback to URLs signed at push time (they were signed with the platform's key)."""
    from pipelines.annotation import image_key
    from pipelines.annotation.client import LabelStudioError
    from pipelines.annotation.tasks import _image_refs

    class Refusing(FakeStorages):
        def create_s3_import_storage(self, project_id: int, settings: dict) -> dict:
            raise LabelStudioError(status_code=400,
                                   body={"s3_endpoint": ["URL resolves to a reserved network address"]})

    store = MemoryStore()
    monkeypatch.setattr(image_key, "reader_store", _shared(store, writable=False))
    reader = S3Credentials("http://minio:9000", "reader-key", "reader-secret")
    with pytest.raises(ImageKeyRefused, match=r"Label Studio refused the image storage \(HTTP 400") as err:
        _image_refs(_env(store, lambda: reader), Refusing(), 3, {"a": "s3://memory/inputs/a.png"})
    assert "\n" not in str(err.value)
