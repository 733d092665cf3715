"""The key Label Studio reads task images with: read-only, proved so before every push, never replaced.

Label Studio's image storage holds an S3 key in its database and uses it for every image an annotator
opens; in Community Edition every account of the organisation can use that storage. So the key it gets
must not be able to write: a push without a key proved read-only stops (:class:`ImageKeyRefused`, one
line, no retry) instead of falling back to the platform's read-write key, and nothing of the batch is
imported or recorded, so it is pushed again once the key is fixed (clear the Airflow task).

"Proved read-only" (:func:`verify_read_only`, about 3 requests per push): the platform's key writes a
fresh random value to the probe object (:attr:`pipelines.store.layout.BucketLayout.image_key_probe`),
the reader key must read exactly that value back, then tries to overwrite it and must be refused
(``AccessDenied``). A key that overwrote it is refused and the probe is put back.

:class:`ReaderKey` says how Label Studio reaches the object store: at the key's own endpoint, or
(:data:`LABEL_STUDIO_S3_ENDPOINT`) through Label Studio's ``S3_ENDPOINT`` setting, the one endpoint its
SSRF guard trusts without lifting the ban on private addresses (the production compose and the local
stack both work that way).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pipelines.config import Refused
from pipelines.store import ObjectStore, S3Credentials

__all__ = ["LABEL_STUDIO_S3_ENDPOINT", "ImageKeyRefused", "ReaderKey", "reader_store", "verify_read_only"]

#: ``ReaderKey.label_studio_endpoint`` value: the image storage names no endpoint, Label Studio uses its
#: own ``S3_ENDPOINT`` environment variable (set by the operator, trusted by its SSRF guard).
LABEL_STUDIO_S3_ENDPOINT = "S3_ENDPOINT"
_DENIED = ("AccessDenied", "AllAccessDisabled")


class ImageKeyRefused(Refused):
    """The push will not hand Label Studio this image key (missing, unreadable, or able to write);
    the message is one line saying which and what to fix."""


@dataclass(frozen=True, repr=False)
class ReaderKey(S3Credentials):
    """A read-only key of the platform bucket (connection ``hopchain_s3_reader``). ``endpoint`` is where
    the platform's workers reach the store; ``label_studio_endpoint`` is ``""`` (Label Studio reaches it
    there too) or :data:`LABEL_STUDIO_S3_ENDPOINT`."""

    label_studio_endpoint: str = ""

    def __repr__(self) -> str:  # keep secrets out of logs
        return (f"ReaderKey(endpoint={self.endpoint!r}, access_key={self.access_key!r}, secret_key='***', "
                f"label_studio_endpoint={self.label_studio_endpoint!r})")

    @property
    def storage_endpoint(self) -> str | None:
        """The endpoint the image storage names: None when Label Studio uses its own ``S3_ENDPOINT``."""
        return None if self.label_studio_endpoint == LABEL_STUDIO_S3_ENDPOINT else self.url


def reader_store(creds: S3Credentials, bucket: str) -> Any:
    """The bucket as the reader key sees it (no retries: a refusal is an answer, not a fault)."""
    return ObjectStore(creds, bucket, timeout_s=10.0, retries=0)


def _code(err: Exception) -> str | None:
    """The S3 error code of ``err`` (``AccessDenied``, ``InvalidAccessKeyId``, ...), None if not an S3 error."""
    from minio.error import S3Error

    if isinstance(err, S3Error):
        return str(err.code)
    if isinstance(err, PermissionError):
        return "AccessDenied"
    return None


def verify_read_only(platform: Any, reader: Any, probe_key: str,
                     token: Callable[[], str] = lambda: secrets.token_hex(16)) -> None:
    """Prove ``reader`` (the bucket through the image key) can read ``probe_key`` and cannot overwrite it;
    ``platform`` (the bucket through the platform's key) writes the probe. Raises
    :class:`ImageKeyRefused` otherwise; other failures (the store unreachable) propagate unchanged, so
    Airflow retries them."""
    bucket = getattr(platform, "bucket", "?")
    value = token().encode()
    platform.put_bytes(probe_key, value, "text/plain")
    try:
        seen = reader.get_bytes(probe_key)
    except Exception as err:
        code = _code(err)
        if code is None:
            raise
        raise ImageKeyRefused(f"push refused: Label Studio's image key cannot read s3://{bucket}/{probe_key} "
                              f"({code}); fix connection hopchain_s3_reader (a read-only key of the "
                              "bucket), then clear this task") from None
    if seen != value:
        raise ImageKeyRefused(f"push refused: Label Studio's image key read another value at s3://{bucket}/"
                              f"{probe_key} (another store?); check connection hopchain_s3_reader")
    try:
        reader.put_bytes(probe_key, b"written with the image key", "text/plain")
    except Exception as err:
        code = _code(err)
        if code in _DENIED:
            return
        if code is None:
            raise
        raise ImageKeyRefused(f"push refused: could not prove Label Studio's image key read-only (a write "
                              f"answered {code}, not AccessDenied); check connection hopchain_s3_reader") from None
    platform.put_bytes(probe_key, value, "text/plain")
    raise ImageKeyRefused(f"push refused: Label Studio's image key can write to bucket {bucket} (it "
                          "overwrote the probe object); give connection hopchain_s3_reader a key that may only "
                          "read and list, then clear this task")
