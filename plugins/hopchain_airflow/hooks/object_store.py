"""``ObjectStoreHook``: the platform's S3-compatible object store (SeaweedFS locally, MinIO in production).

The hook owns the connection and is stateless; it builds a :class:`pipelines.store.ObjectStore`
(minio SDK) from the Airflow connection ``hopchain_s3`` (conn type ``hopchain_s3``):
host, port, login = access key, password = secret key, extra ``{"secure": bool, "region": str}``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseHook

if TYPE_CHECKING:
    from pipelines.store import ObjectStore, S3Credentials


class ObjectStoreHook(BaseHook):
    conn_name_attr = "s3_conn_id"
    default_conn_name = "hopchain_s3"
    conn_type = "hopchain_s3"
    hook_name = "HopChain object store (S3 API)"

    def __init__(self, s3_conn_id: str = default_conn_name, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.s3_conn_id = s3_conn_id

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        return {
            "hidden_fields": ["schema"],
            "relabeling": {"host": "Endpoint host", "login": "Access key", "password": "Secret key"},
            "placeholders": {"host": "127.0.0.1 or minio.internal", "port": "8333 (SeaweedFS) / 9000 (MinIO)",
                             "extra": '{"secure": false, "region": "us-east-1"}'},
        }

    def get_credentials(self) -> S3Credentials:
        from pipelines.store import S3Credentials

        conn = self.get_connection(self.s3_conn_id)
        extra = conn.extra_dejson or {}
        scheme = "https" if extra.get("secure") else "http"
        host = (conn.host or "127.0.0.1").split("://", 1)[-1]
        endpoint = f"{scheme}://{host}:{conn.port}" if conn.port else f"{scheme}://{host}"
        return S3Credentials(endpoint, conn.login or "", conn.password or "", extra.get("region", "us-east-1"))

    def get_store(self, bucket: str, *, timeout_s: float = 30.0, retries: int = 3) -> ObjectStore:
        """An ObjectStore on ``bucket`` with this connection's credentials (a web page asks for a
        short ``timeout_s`` and no ``retries``: it answers 502 rather than hang)."""
        from pipelines.store import ObjectStore

        return ObjectStore(self.get_credentials(), bucket, timeout_s=timeout_s, retries=retries)

    def test_connection(self) -> tuple[bool, str]:
        try:
            store = self.get_store("hopchain")
            names = [b.name for b in store.client.list_buckets()]
            return True, f"connected; buckets: {', '.join(names) or 'none'}"
        except Exception as exc:  # noqa: BLE001 - reported to the UI's "Test" button, not swallowed
            return False, f"{type(exc).__name__}: {exc}"
