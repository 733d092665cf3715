"""Object store access (S3 API via the minio SDK: SeaweedFS locally, MinIO in production).

Keys are built by :mod:`pipelines.store.layout` (the one module that builds keys; :func:`safe_key` is
re-exported here for callers that import it from this module). A single ``put_object`` is atomic on
S3 (readers see the old object or the complete new one, never a partial one), so a retried task
simply overwrites its own keys.
"""

from __future__ import annotations

import builtins
import io
import json
import os
import posixpath
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.contracts import conform, parquet_bytes
from pipelines.store.layout import KeyError_, RunKeys, safe_key

__all__ = ["KeyError_", "ObjectStore", "S3Credentials", "run_key", "safe_key"]

@dataclass(frozen=True)
class S3Credentials:
    """Endpoint + keys. ``repr`` never shows the secret."""

    endpoint: str  # host:port or http(s)://host:port
    access_key: str
    secret_key: str
    region: str = "us-east-1"

    def __repr__(self) -> str:  # keep secrets out of logs
        return f"S3Credentials(endpoint={self.endpoint!r}, access_key={self.access_key!r}, secret_key='***')"

    @property
    def url(self) -> str:
        return self.endpoint if "://" in self.endpoint else f"http://{self.endpoint}"

    @property
    def hostport(self) -> str:
        return urlparse(self.url).netloc

    @property
    def secure(self) -> bool:
        return urlparse(self.url).scheme == "https"

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> S3Credentials | None:
        """``HOPCHAIN_S3_ENDPOINT`` / ``HOPCHAIN_S3_ACCESS_KEY`` / ``HOPCHAIN_S3_SECRET_KEY``."""
        env = dict(os.environ if env is None else env)
        endpoint = env.get("HOPCHAIN_S3_ENDPOINT")
        if not endpoint:
            return None
        return cls(endpoint, env.get("HOPCHAIN_S3_ACCESS_KEY", ""), env.get("HOPCHAIN_S3_SECRET_KEY", ""))

    @classmethod
    def from_file(cls, path: str | Path) -> S3Credentials:
        data = json.loads(Path(path).read_text())
        return cls(data["endpoint"], data["access_key"], data["secret_key"], data.get("region", "us-east-1"))


class ObjectStore:
    """A bucket on an S3-compatible server. Cheap to construct; connects lazily."""

    def __init__(self, creds: S3Credentials, bucket: str, *, timeout_s: float = 30.0, retries: int = 3):
        self.creds = creds
        self.bucket = bucket
        self._timeout_s = timeout_s
        self._retries = retries
        self._client: Any = None

    def __repr__(self) -> str:
        return f"ObjectStore({self.creds.url}, bucket={self.bucket!r})"

    @property
    def client(self) -> Any:
        if self._client is None:
            import urllib3
            from minio import Minio

            http = urllib3.PoolManager(
                timeout=urllib3.Timeout(connect=min(5.0, self._timeout_s), read=self._timeout_s),
                retries=urllib3.Retry(
                    total=self._retries, backoff_factor=0.3, status_forcelist=[500, 502, 503, 504]
                ),
                maxsize=16,
            )
            self._client = Minio(
                self.creds.hostport,
                access_key=self.creds.access_key,
                secret_key=self.creds.secret_key,
                secure=self.creds.secure,
                region=self.creds.region,
                http_client=http,
            )
        return self._client

    # -- bytes ---------------------------------------------------------------------------------
    def put_bytes(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> str:
        self.client.put_object(self.bucket, key, io.BytesIO(data), len(data), content_type=content_type)
        return key

    def get_bytes(self, key: str) -> bytes:
        resp = self.client.get_object(self.bucket, key)
        try:
            return resp.read()
        finally:
            resp.close()
            resp.release_conn()

    def exists(self, key: str) -> bool:
        from minio.error import S3Error

        try:
            self.client.stat_object(self.bucket, key)
            return True
        except S3Error as err:
            if err.code in ("NoSuchKey", "NoSuchObject", "NotFound"):
                return False
            raise

    def list(self, prefix: str, recursive: bool = True) -> Iterator[str]:
        for obj in self.client.list_objects(self.bucket, prefix=prefix, recursive=recursive):
            if not obj.is_dir:
                yield obj.object_name

    def list_prefixes(self, prefix: str) -> builtins.list[str]:
        """The immediate "folders" under ``prefix`` (e.g. ``runs/<run_id>/``), without listing their contents."""
        return sorted(o.object_name for o in self.client.list_objects(self.bucket, prefix=prefix, recursive=False)
                      if o.is_dir)

    def delete_keys(self, keys: builtins.list[str]) -> int:
        """Delete ``keys`` (one batched request per 1000); raises if any deletion failed."""
        from minio.deleteobjects import DeleteObject

        if not keys:
            return 0
        errors = list(self.client.remove_objects(self.bucket, [DeleteObject(k) for k in keys]))
        if errors:
            raise RuntimeError(f"failed to delete {len(errors)} of {len(keys)} objects: {errors[0]}")
        return len(keys)

    def delete_prefix(self, prefix: str) -> int:
        return self.delete_keys(list(self.list(prefix)))

    def presigned_get(self, key: str, expires_s: int = 7 * 24 * 3600) -> str:
        from datetime import timedelta

        return self.client.presigned_get_object(self.bucket, key, expires=timedelta(seconds=expires_s))

    # -- json / parquet ------------------------------------------------------------------------
    def put_json(self, key: str, obj: Any) -> str:
        return self.put_bytes(key, json.dumps(obj, indent=2, sort_keys=True).encode(), "application/json")

    def get_json(self, key: str) -> Any:
        return json.loads(self.get_bytes(key))

    def put_table(self, key: str, table: pa.Table, contract: str | None = None) -> str:
        if contract:
            table = conform(table, contract)
        return self.put_bytes(key, parquet_bytes(table), "application/vnd.apache.parquet")

    def get_table(self, key: str, contract: str | None = None) -> pa.Table:
        table = pq.read_table(io.BytesIO(self.get_bytes(key)))
        return conform(table, contract) if contract else table

    def ensure_bucket(self) -> None:
        if not self.client.bucket_exists(self.bucket):
            self.client.make_bucket(self.bucket)


def run_key(runs_prefix: str, run_id: str, stage: str, shard: int | None = None, name: str | None = None) -> str:
    """``runs/<run_id>/<stage>/shard-NNNNN.parquet`` (or ``.../<name>``); see
    :class:`pipelines.store.layout.RunKeys`."""
    keys = RunKeys(runs_prefix, run_id)
    return keys.table(stage, int(shard or 0)) if name is None else keys.stage_file(stage, name)


class FolderStore(ObjectStore):
    """A local folder used as a bucket: the object ``<key>`` is the file ``<root>/<key>``.

    The ``hopchain`` command's local mode: the same keys as the object store (the run layout of
    :class:`pipelines.store.ledger.RunKeys`), so a folder written by the command and a bucket written by the
    DAGs hold the same files. Each put is atomic (:func:`pipelines.contracts.files.write_atomic`: a reader sees
    the old file or the new one). There is no server and no credentials (``creds`` is None).
    """

    def __init__(self, root: str | Path) -> None:  # no server: nothing of ObjectStore.__init__ applies
        self.root = Path(root).resolve()
        self.bucket = ""
        self.creds = None  # type: ignore[assignment]
        self._client = None

    def __repr__(self) -> str:
        return f"FolderStore({str(self.root)!r})"

    @property
    def client(self) -> Any:
        raise RuntimeError(f"{self!r} is a local folder: it has no S3 client")

    def path(self, key: str) -> Path:
        """The file of ``key``; a key that would leave the folder is refused (:class:`KeyError_`)."""
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root) or path == self.root:
            raise KeyError_(f"key {key!r} escapes the folder {self.root}")
        return path

    def put_bytes(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> str:
        from pipelines.contracts.files import write_atomic

        write_atomic(self.path(key), data)
        return key

    def get_bytes(self, key: str) -> bytes:
        return self.path(key).read_bytes()

    def exists(self, key: str) -> bool:
        return self.path(key).is_file()

    def list(self, prefix: str, recursive: bool = True) -> Iterator[str]:
        """Keys under ``prefix``, sorted; only the folder of the prefix is walked (never the whole root)."""
        folder = self.root / posixpath.dirname(prefix) if prefix else self.root
        if not folder.resolve().is_relative_to(self.root) or not folder.is_dir():
            return
        files = folder.rglob("*") if recursive else folder.iterdir()
        found = sorted(p.relative_to(self.root).as_posix() for p in files
                       if p.is_file() and not p.name.startswith("."))  # temporaries of write_atomic
        for key in found:
            if key.startswith(prefix) and (recursive or "/" not in key[len(prefix):]):
                yield key

    def list_prefixes(self, prefix: str) -> builtins.list[str]:
        return sorted({prefix + k[len(prefix):].split("/", 1)[0] + "/" for k in self.list(prefix)
                       if "/" in k[len(prefix):]})

    def delete_keys(self, keys: builtins.list[str]) -> int:
        for key in keys:
            self.path(key).unlink(missing_ok=True)
        return len(keys)

    def presigned_get(self, key: str, expires_s: int = 7 * 24 * 3600) -> str:
        return self.path(key).as_uri()

    def ensure_bucket(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
