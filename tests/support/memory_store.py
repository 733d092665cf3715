"""An in-memory stand-in for :class:`pipelines.store.ObjectStore` (unit tests only: the
integration tests use the real S3 server). Keys behave like S3 keys: ``list`` is by prefix,
``list(recursive=False)`` and ``list_prefixes`` stop at the next ``/``."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any


class MemoryStore:
    bucket = "memory"

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}
        self.listings: list[str] = []  # every prefix listed, in order (to assert what a read costs)

    def put_bytes(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> str:
        self.objects[key] = data
        return key

    def get_bytes(self, key: str) -> bytes:
        if key not in self.objects:  # what the minio SDK raises for a missing key
            from minio.error import S3Error
            from urllib3 import HTTPResponse

            raise S3Error(HTTPResponse(status=404), "NoSuchKey", "The specified key does not exist.", key,
                          "", "", self.bucket, key)
        return self.objects[key]

    def exists(self, key: str) -> bool:
        return key in self.objects

    def put_json(self, key: str, obj: Any) -> str:
        return self.put_bytes(key, json.dumps(obj).encode())

    def get_json(self, key: str) -> Any:
        return json.loads(self.objects[key])

    def list(self, prefix: str, recursive: bool = True) -> Iterator[str]:
        self.listings.append(prefix)
        for key in sorted(self.objects):
            if key.startswith(prefix) and (recursive or "/" not in key[len(prefix):]):
                yield key

    def delete_keys(self, keys: list[str]) -> int:
        for key in keys:
            self.objects.pop(key, None)
        return len(keys)

    def list_prefixes(self, prefix: str) -> list[str]:
        self.listings.append(prefix)
        return sorted({prefix + key[len(prefix):].split("/", 1)[0] + "/" for key in self.objects
                       if key.startswith(prefix) and "/" in key[len(prefix):]})

    def put_table(self, key: str, table: Any, contract: str | None = None) -> str:
        from pipelines.contracts import conform
        from pipelines.store import parquet_bytes

        return self.put_bytes(key, parquet_bytes(conform(table, contract) if contract else table))

    def get_table(self, key: str, contract: str | None = None) -> Any:
        import io

        import pyarrow.parquet as pq

        from pipelines.contracts import conform

        table = pq.read_table(io.BytesIO(self.get_bytes(key)))
        return conform(table, contract) if contract else table
