"""The read-only image key a push needs (it refuses without one: :mod:`pipelines.annotation.image_key`),
taken from a test's SeaweedFS server or local stack."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pipelines.annotation.image_key import LABEL_STUDIO_S3_ENDPOINT, ReaderKey


def image_reader(s3: Any, label_studio_endpoint: str = "") -> Callable[[], ReaderKey]:
    """``RunEnv.image_reader`` for :class:`pipelines.stack.services.SeaweedS3` ``s3``: its read-only key.
    A Label Studio started alone reaches the store at the key's endpoint (``""``)."""
    c = s3.credentials()
    key = ReaderKey(c["endpoint"], c["reader_access_key"], c["reader_secret_key"], c.get("region", "us-east-1"),
                    label_studio_endpoint=label_studio_endpoint)
    return lambda: key


def stack_image_reader(stack: Any) -> Callable[[], ReaderKey]:
    """The local stack's: its Label Studio reaches the store through its own ``S3_ENDPOINT``."""
    return image_reader(stack.s3, LABEL_STUDIO_S3_ENDPOINT)
