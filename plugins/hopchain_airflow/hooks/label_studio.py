"""Airflow hook for Label Studio: owns the connection, builds the pipelines' SDK-backed clients.

Connection (conn type ``label_studio``, default id ``hopchain_label_studio``): ``host`` is the
base URL with its scheme (``http://127.0.0.1``), ``port`` the port, ``password`` the API token
(a legacy token, which the SDK sends as ``Authorization: Token <token>``). Optional ``extra``:
``{"timeout_s": 60}``. The hook is stateless: every :meth:`get_conn` / :meth:`get_async_conn`
builds a fresh client.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import BaseHook

from pipelines.annotation.client import (
    AsyncLabelStudioClient,
    LabelStudioClient,
    LabelStudioCredentials,
    base_url_from_parts,
)


class LabelStudioHook(BaseHook):
    """Label Studio REST API (legacy token auth) for the HopChain verification project."""

    conn_name_attr = "label_studio_conn_id"
    default_conn_name = "hopchain_label_studio"
    conn_type = "label_studio"
    hook_name = "Label Studio"

    def __init__(self, label_studio_conn_id: str = default_conn_name, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.label_studio_conn_id = label_studio_conn_id

    @staticmethod
    def credentials_from_connection(conn: Any) -> tuple[LabelStudioCredentials, dict[str, Any]]:
        """An Airflow Connection → (credentials, extra options)."""
        if not conn.password:
            raise ValueError(f"connection {conn.conn_id!r} has no API token (password field)")
        url = base_url_from_parts(conn.host or "", conn.port, conn.schema or None)
        return LabelStudioCredentials(url, conn.password), dict(conn.extra_dejson or {})

    def credentials(self) -> LabelStudioCredentials:
        return self.credentials_from_connection(self.get_connection(self.label_studio_conn_id))[0]

    def get_conn(self) -> LabelStudioClient:
        creds, extra = self.credentials_from_connection(self.get_connection(self.label_studio_conn_id))
        return LabelStudioClient.from_credentials(creds, timeout_s=float(extra.get("timeout_s", 60.0)))

    async def get_async_conn(self, timeout_s: float | None = None) -> AsyncLabelStudioClient:
        """An async client for the triggerer (the connection is resolved without blocking the loop).

        ``timeout_s`` overrides the connection's ``extra.timeout_s`` (default 30 s).
        """
        conn = await self.aget_connection(self.label_studio_conn_id)
        creds, extra = self.credentials_from_connection(conn)
        timeout = timeout_s if timeout_s is not None else float(extra.get("timeout_s", 30.0))
        return AsyncLabelStudioClient.from_credentials(creds, timeout_s=timeout)

    def get_client(self) -> LabelStudioClient:
        """Alias of :meth:`get_conn` (the name the runtime uses)."""
        return self.get_conn()

    def test_connection(self) -> tuple[bool, str]:
        """Used by the UI's "Test" button: whoami with the token."""
        try:
            with self.get_conn() as client:
                me = client.whoami()
            return True, f"connected as {me.get('email')}"
        except Exception as err:  # noqa: BLE001 - reported to the user, not swallowed
            return False, str(err)

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """Connection form layout (provider-style ``ui-field-behaviour``)."""
        return {
            "hidden_fields": ["schema", "login"],
            "relabeling": {"host": "Base URL (with scheme)", "password": "API token (legacy)"},
            "placeholders": {
                "host": "http://127.0.0.1",
                "port": "8081",
                "password": "the token from Account & Settings → Legacy token",
                "extra": '{"timeout_s": 60}',
            },
        }

    @classmethod
    def get_connection_form_widgets(cls) -> dict[str, Any]:
        """Extra form fields (Airflow 2 style, wtforms). Airflow 3's UI reads ``conn-fields`` from
        provider info instead (:data:`CONN_FIELDS`); without wtforms there are no widgets."""
        try:
            from wtforms import IntegerField
        except ImportError:  # Airflow 3 without the FAB UI: the form comes from CONN_FIELDS
            return {}
        return {"timeout_s": IntegerField("Request timeout (s)", default=60)}


# Provider-info style description of the extra fields (``conn-fields``) for Airflow 3's UI.
CONN_FIELDS: dict[str, Any] = {
    "timeout_s": {
        "label": "Request timeout (s)",
        "schema": {"type": ["integer", "null"], "minimum": 1},
        "description": "HTTP timeout for Label Studio API calls",
    }
}
